"""A real Prometheus and Alertmanager run on what `stackaudit fleet prometheus` wrote.

Three inventory hosts (web1, web2 in group web; db1 in db; both groups in prod), each a `stackaudit
metrics --listen 127.0.0.1:PORT` of its own with its own project and config, whose `[disk] paths`
is a 4 MiB tmpfs of its own: web1's is 90% full (above SYS001's 75% and 85%), the others' 10%. The
alert rules are the generated ones (thresholds untouched); only their `for:` and the intervals are
shortened in the test's copies, so the alerts fire in seconds. Waits poll with a deadline.
"""

from __future__ import annotations

import calendar
import json
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from ruamel.yaml import YAML
from typer.testing import CliRunner

from stackaudit.cli import app
from stackaudit.localpg import free_port
from tests.monitor.conftest import DISK_BYTES, SmallDisk
from tests.monitoring_fixtures import alertmanager_process, api_get, prometheus_process, server_process

pytestmark = pytest.mark.integration

DEADLINE_SECONDS = 240.0
FILL = {"web1": 90.0, "web2": 10.0, "db1": 10.0}
GROUPS = {"web1": ",prod,web,", "web2": ",prod,web,", "db1": ",db,prod,"}
T = TypeVar("T")


@dataclass(frozen=True)
class Fleet:
    prometheus: str  # base URLs
    alertmanager: str
    instances: dict[str, str]  # host -> 127.0.0.1:port, the scrape target
    mounts: dict[str, str]  # host -> its tmpfs
    written: Path  # what fleet prometheus wrote


@contextmanager
def tmpfs(path: Path) -> Iterator[SmallDisk]:
    path.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs", str(path)], check=True)
    try:
        yield SmallDisk(path)
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def inventory(ports: dict[str, int]) -> str:
    def line(host: str) -> str:
        return f"{host} ansible_host=127.0.0.1 stackaudit_metrics_port={ports[host]}"

    return (f"[web]\n{line('web1')}\n{line('web2')}\n[db]\n{line('db1')}\n"
            "[prod:children]\nweb\ndb\n")


def fast_copies(written: Path, run: Path, alertmanager_port: int) -> Path:
    """The generated config and rules with fast intervals and `for: 0s`; targets.json as written."""
    yaml = YAML(typ="safe")
    shutil.copy(written / "targets.json", run / "targets.json")
    rules = yaml.load((written / "rules.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule["for"] = "0s"
    yaml.dump(rules, run / "rules.yml")
    config = yaml.load((written / "prometheus.yml").read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["scrape_configs"][0].update(scrape_interval="2s", scrape_timeout="2s")
    config["alerting"]["alertmanagers"][0]["static_configs"] = [
        {"targets": [f"127.0.0.1:{alertmanager_port}"]}]
    yaml.dump(config, run / "prometheus.yml")
    return run / "prometheus.yml"


def metrics_command(host: str, port: int, root: Path, mount: Path) -> list[str]:
    """The host's `stackaudit metrics`, with a project whose config watches the host's disk."""
    project = root / host / "project"
    project.mkdir(parents=True)
    (project / "stackaudit.toml").write_text(f'[disk]\npaths = ["{mount}"]\n')
    return [sys.executable, "-m", "stackaudit", "metrics", "--listen", f"127.0.0.1:{port}",
            "-p", str(project), "--sources", "host", "--state-dir", str(root / host / "state")]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp("fleet-live")
    ports = {host: free_port() for host in FILL}
    (root / "hosts.ini").write_text(inventory(ports))
    done = CliRunner().invoke(app, ["fleet", "prometheus", "-i", str(root / "hosts.ini"),
                                    "--out", str(root / "prom")])
    assert done.exit_code == 0, done.output
    run = root / "run"
    run.mkdir()
    prometheus_port, alertmanager_port = free_port(), free_port()
    config = fast_copies(root / "prom", run, alertmanager_port)
    with ExitStack() as stack:
        mounts = {}
        for host, percent in FILL.items():
            disk = stack.enter_context(tmpfs(root / host / "disk"))
            disk.fill(percent)
            mounts[host] = str(disk.path)
            stack.enter_context(server_process(metrics_command(host, ports[host], root, disk.path),
                                               root / host / "metrics.log"))
        stack.enter_context(alertmanager_process(root / "prom" / "alertmanager.yml", run, alertmanager_port))
        stack.enter_context(prometheus_process(config, run, prometheus_port))
        yield Fleet(f"http://127.0.0.1:{prometheus_port}", f"http://127.0.0.1:{alertmanager_port}",
                    {host: f"127.0.0.1:{port}" for host, port in ports.items()}, mounts, root / "prom")


def poll(what: str, probe: Callable[[], T | None]) -> T:
    """The first truthy answer of `probe`; an unreachable server counts as not yet."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while time.monotonic() < deadline:
        try:
            answer = probe()
        except OSError:
            answer = None
        if answer:
            return answer
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {DEADLINE_SECONDS:g}s")


def query(fleet: Fleet, promql: str) -> list[dict[str, Any]]:
    data = api_get(f"{fleet.prometheus}/api/v1/query?query={urllib.parse.quote(promql)}")
    result: list[dict[str, Any]] = data["result"]  # type: ignore[assignment]
    return result


def our_disk_alerts(fleet: Fleet) -> list[dict[str, Any]]:
    alerts: list[dict[str, Any]] = api_get(f"{fleet.prometheus}/api/v1/alerts")["alerts"]  # type: ignore[assignment]
    return [a for a in alerts if a["labels"].get("mountpoint") in fleet.mounts.values()
            and a["labels"]["alertname"].startswith("StackauditDisk")]


def settled_alerts(fleet: Fleet) -> list[dict[str, Any]]:
    """The disk alerts once every host's disk has been scraped and the rules evaluated after that."""
    def every_disk_seen() -> float | None:
        seen = [s for s in query(fleet, "stackaudit_disk_used_ratio")
                if s["metric"].get("mountpoint") in fleet.mounts.values()]
        return float(seen[0]["value"][0]) if len(seen) == len(fleet.mounts) else None

    seen_at = poll("every host's disk scraped", every_disk_seen)

    def evaluated_after() -> bool:
        groups: list[dict[str, Any]] = api_get(f"{fleet.prometheus}/api/v1/rules")["groups"]  # type: ignore[assignment]
        stamps = [g["lastEvaluation"][:19] for g in groups if g["name"] == "stackaudit"]
        return bool(stamps) and calendar.timegm(time.strptime(stamps[0], "%Y-%m-%dT%H:%M:%S")) > seen_at + 1

    poll("the rules evaluated on every host's disk", evaluated_after)
    return our_disk_alerts(fleet)


def test_prometheus_scrapes_every_host_with_its_inventory_labels(fleet: Fleet) -> None:
    def all_up() -> list[dict[str, Any]] | None:
        targets: list[dict[str, Any]] = api_get(f"{fleet.prometheus}/api/v1/targets")["activeTargets"]  # type: ignore[assignment]
        return targets if len(targets) == 3 and all(t["health"] == "up" for t in targets) else None

    targets = poll("three targets up", all_up)
    labels = {t["labels"]["host"]: (t["labels"]["instance"], t["labels"]["groups"], t["labels"]["job"])
              for t in targets}
    assert labels == {host: (fleet.instances[host], GROUPS[host], "stackaudit") for host in FILL}


def test_the_disk_alert_fires_for_the_one_host_over_the_threshold_with_its_instance(fleet: Fleet) -> None:
    alerts = settled_alerts(fleet)
    firing = [a for a in alerts if a["state"] == "firing"]
    assert {a["labels"]["instance"] for a in alerts} == {fleet.instances["web1"]}  # and for no other
    assert {a["labels"]["alertname"] for a in firing} == {"StackauditDiskSpaceHigh",
                                                         "StackauditDiskSpaceCritical"}
    for alert in firing:
        assert alert["labels"]["host"] == "web1" and alert["labels"]["groups"] == GROUPS["web1"]
        assert alert["labels"]["mountpoint"] == fleet.mounts["web1"] and alert["labels"]["code"] == "SYS001"
        assert alert["annotations"]["summary"].endswith(f"full on {fleet.instances['web1']}")


def test_alertmanager_routes_it_to_the_hosts_groups_and_the_critical_silences_the_warning(
        fleet: Fleet) -> None:
    def both_there() -> list[dict[str, Any]] | None:
        with urllib.request.urlopen(f"{fleet.alertmanager}/api/v2/alerts", timeout=5) as response:
            alerts: list[dict[str, Any]] = json.loads(response.read())
        ours = [a for a in alerts if a["labels"].get("mountpoint") == fleet.mounts["web1"]]
        names = {a["labels"]["alertname"]: a for a in ours}
        warning = names.get("StackauditDiskSpaceHigh")
        settled = warning is not None and warning["status"]["state"] == "suppressed"
        return ours if settled and "StackauditDiskSpaceCritical" in names else None

    alerts = {a["labels"]["alertname"]: a for a in poll("web1's disk alerts in Alertmanager", both_there)}
    critical, warning = alerts["StackauditDiskSpaceCritical"], alerts["StackauditDiskSpaceHigh"]
    assert {r["name"] for r in critical["receivers"]} == {"group-prod", "group-web"}
    assert critical["status"]["state"] == "active"
    assert warning["status"]["inhibitedBy"] == [critical["fingerprint"]]


def test_what_the_test_ran_is_what_was_written_but_for_timing(fleet: Fleet) -> None:
    run = fleet.written.parent / "run"
    assert (run / "targets.json").read_text() == (fleet.written / "targets.json").read_text()
    yaml = YAML(typ="safe")
    ran, written = (yaml.load((d / "rules.yml").read_text()) for d in (run, fleet.written))
    for group in (*ran["groups"], *written["groups"]):
        for rule in group["rules"]:
            rule.pop("for")
    assert ran == written
