"""`stackaudit fleet prometheus`: the four files it writes, checked as data and by promtool/amtool."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from ruamel.yaml import YAML
from typer.testing import CliRunner

from stackaudit.cli import app
from stackaudit.config import Settings
from stackaudit.fleet.inventory import FleetError, InventoryHost
from stackaudit.fleet.prometheus import FILES, fleet_files, write_files
from stackaudit.monitor import METRICS_PORT
from stackaudit.monitor.prom_rules import rules_yaml

HOSTS = [
    InventoryHost("db1", ("db", "prod"), {"ansible_host": "10.0.0.5", "stackaudit_metrics_port": "9100"}),
    InventoryHost("edge", (), {"ansible_host": "2001:db8::7"}),
    InventoryHost("nodeonly", ("web",), {"stackaudit_metrics_mode": "textfile"}),
    InventoryHost("web1", ("prod", "web"), {"ansible_host": "203.0.113.4",
                                            "stackaudit_metrics_address": "10.8.0.4"}),
    InventoryHost("web2", ("prod", "web"), {"ansible_host": "web2.example.net",
                                            "stackaudit_metrics_address": "0.0.0.0"}),
]
INVENTORY = """\
[web]
web1 ansible_host=127.0.0.1 stackaudit_metrics_port=19101 stackaudit_pg_dsn=postgres://a:CANARY-p41@h/d
web2 ansible_host=127.0.0.1 stackaudit_metrics_port=19102
[db]
db1 ansible_host=127.0.0.1 stackaudit_metrics_port=19103
[prod:children]
web
db
"""


def yaml(text: str) -> object:
    return YAML(typ="safe").load(text)


def test_targets_are_each_hosts_metrics_endpoint_with_host_and_groups_labels() -> None:
    made = fleet_files(HOSTS, Settings())
    targets = json.loads(made.files["targets.json"])
    assert targets == [
        {"targets": ["10.0.0.5:9100"], "labels": {"host": "db1", "groups": ",db,prod,"}},
        {"targets": [f"[2001:db8::7]:{METRICS_PORT}"], "labels": {"host": "edge", "groups": ","}},
        {"targets": [f"10.8.0.4:{METRICS_PORT}"], "labels": {"host": "web1", "groups": ",prod,web,"}},
        # a wildcard listen address is no place to scrape: the host's own address is
        {"targets": [f"web2.example.net:{METRICS_PORT}"], "labels": {"host": "web2", "groups": ",prod,web,"}},
    ]
    assert made.textfile_hosts == ("nodeonly",)  # node_exporter serves its metrics


@pytest.mark.parametrize("port", ["http", 0, 70000])
def test_a_port_that_is_no_port_is_a_plain_error(port: object) -> None:
    with pytest.raises(FleetError, match="web9: stackaudit_metrics_port"):
        fleet_files([InventoryHost("web9", (), {"stackaudit_metrics_port": port})], Settings())


def test_the_rules_are_monitoring_rules_with_the_config_thresholds() -> None:
    settings = Settings(thresholds={"SYS001": {"high_percent": 60.0}})
    rules = fleet_files(HOSTS, settings).files["rules.yml"]
    assert rules == rules_yaml(settings)  # the same generator, not a copy
    assert "stackaudit_disk_used_ratio{} >= 0.6" in rules


def test_prometheus_yml_reads_the_files_beside_it_and_sends_to_the_alertmanager() -> None:
    config = yaml(fleet_files(HOSTS, Settings(), alertmanager="am.internal:9093").files["prometheus.yml"])
    assert isinstance(config, dict)
    assert config["rule_files"] == ["rules.yml"]
    (job,) = config["scrape_configs"]
    assert job["file_sd_configs"] == [{"files": ["targets.json"], "refresh_interval": "5m"}]
    assert config["alerting"]["alertmanagers"] == [{"static_configs": [{"targets": ["am.internal:9093"]}]}]


def test_alertmanager_has_a_route_per_group_and_a_default_receiver() -> None:
    config = yaml(fleet_files(HOSTS, Settings()).files["alertmanager.yml"])
    assert isinstance(config, dict)
    route = config["route"]
    assert route["receiver"] == "stackaudit-default"
    assert [(r["matchers"], r["receiver"], r["continue"]) for r in route["routes"]] == [
        (['groups=~".*,db,.*"'], "group-db", True),
        (['groups=~".*,prod,.*"'], "group-prod", True),
        (['groups=~".*,web,.*"'], "group-web", True),
    ]
    assert {r["name"] for r in config["receivers"]} == {"stackaudit-default", "group-db", "group-prod",
                                                         "group-web"}


def test_the_folder_is_0700_and_the_files_0600(tmp_path: Path) -> None:
    out = tmp_path / "prom"
    out.mkdir(mode=0o755)
    written = write_files(out, fleet_files(HOSTS, Settings()).files)
    assert [p.name for p in written] == list(FILES)
    assert out.stat().st_mode & 0o777 == 0o700
    assert {p.stat().st_mode & 0o777 for p in written} == {0o600}
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES)  # no temp file left


def test_an_unwritable_folder_is_a_plain_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(FleetError, match="cannot write into"):
        write_files(tmp_path / "file" / "prom", {"targets.json": "[]"})


def run_cli(*args: str) -> tuple[int, str, str]:
    done = CliRunner().invoke(app, ["fleet", "prometheus", *args], env={"COLUMNS": "80"})
    return done.exit_code, done.stdout, done.stderr


def test_the_command_lists_the_targets_and_the_files_it_wrote_at_80_columns(tmp_path: Path) -> None:
    (tmp_path / "hosts.ini").write_text(INVENTORY)
    code, stdout, stderr = run_cli("-i", str(tmp_path / "hosts.ini"), "--out", str(tmp_path / "prom"),
                                   "--limit", "web")
    assert code == 0, stderr
    lines = stdout.splitlines()
    assert lines[0] == "2 of 2 hosts scraped on their stackaudit metrics endpoint"
    start = lines.index("files written:")
    assert lines[start + 1:start + 5] == [f"  {tmp_path / 'prom' / name}" for name in FILES]
    assert "127.0.0.1:19101" in stdout and "prod, web" in stdout and "db1" not in stdout
    assert max(len(line) for line in lines if " " in line.strip()) <= 80  # a path alone may be longer
    assert "CANARY-p41" not in stdout + stderr + "".join(p.read_text() for p in (tmp_path / "prom").iterdir())


def test_an_unreadable_inventory_exits_2_with_one_error_line(tmp_path: Path) -> None:
    code, stdout, stderr = run_cli("-i", str(tmp_path / "none.ini"), "--out", str(tmp_path / "prom"))
    assert code == 2 and not stdout
    assert stderr.startswith("error: ansible-inventory") and "Traceback" not in stderr
    assert not (tmp_path / "prom").exists()


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fleet-prom")
    write_files(out, fleet_files(HOSTS, Settings()).files)
    return out


def tool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.integration
def test_promtool_accepts_the_config_with_its_rules(written: Path) -> None:
    done = tool("promtool", "check", "config", str(written / "prometheus.yml"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 1 rule files found" in done.stdout
    done = tool("promtool", "check", "rules", str(written / "rules.yml"))
    assert done.returncode == 0 and "SUCCESS" in done.stdout, done.stdout + done.stderr


@pytest.mark.integration
def test_amtool_accepts_the_alertmanager_config(written: Path) -> None:
    done = tool("amtool", "check-config", str(written / "alertmanager.yml"))
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.integration
@pytest.mark.parametrize(("groups", "receivers"), [
    (",prod,web,", {"group-prod", "group-web"}),  # every group the host is in
    (",db,prod,", {"group-db", "group-prod"}),
    (",", {"stackaudit-default"}),  # in no group
    (",webfront,", {"stackaudit-default"}),  # a group named like another is not it
])
def test_amtool_routes_an_alert_to_the_receivers_of_its_hosts_groups(
        written: Path, groups: str, receivers: set[str]) -> None:
    done = tool("amtool", "config", "routes", "test", f"--config.file={written / 'alertmanager.yml'}",
                f"groups={groups}", "alertname=StackauditDiskSpaceHigh")
    assert done.returncode == 0, done.stdout + done.stderr
    assert set(done.stdout.strip().split(",")) == receivers
