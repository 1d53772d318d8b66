"""A real Prometheus (Debian's /usr/bin/prometheus) on 127.0.0.1 with a config the test writes.

It scrapes itself (a target that is up) and a closed port (a target that is down) every second,
and loads the alert rules the test gives. `running_prometheus` waits until both targets have been
scraped once and the rules are loaded, so a test sees settled health. It never skips: a Prometheus
that cannot start fails the test.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from stackaudit.localpg import free_port
from tests.services import end_process

PROMETHEUS_BIN = "/usr/bin/prometheus"
START_TIMEOUT_SECONDS = 60.0

DISK_ALERT_RULES = """\
groups:
  - name: host
    rules:
      - alert: DiskAlmostFull
        expr: node_filesystem_avail_bytes{fstype!="tmpfs"} / node_filesystem_size_bytes < 0.10
        for: 10m
        labels: {severity: critical}
"""

NO_DISK_ALERT_RULES = """\
groups:
  - name: availability
    rules:
      - alert: TargetDown
        expr: up == 0
        for: 5m
"""


@dataclass(frozen=True)
class PrometheusServer:
    url: str
    port: int
    down_target: str  # host:port of the closed port it tries to scrape
    process: subprocess.Popen[bytes]


def _config(port: int, down_port: int, rules_file: Path) -> str:
    return f"""\
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: ["{rules_file}"]
scrape_configs:
  - job_name: prometheus
    static_configs: [{{targets: ["127.0.0.1:{port}"]}}]
  - job_name: node
    static_configs: [{{targets: ["127.0.0.1:{down_port}"]}}]
"""


@contextmanager
def running_prometheus(workdir: Path, rules: str) -> Iterator[PrometheusServer]:
    workdir.mkdir(parents=True, exist_ok=True)
    port, down_port = free_port(), free_port()
    rules_file = workdir / "rules.yml"
    rules_file.write_text(rules)
    config = workdir / "prometheus.yml"
    config.write_text(_config(port, down_port, rules_file))
    with prometheus_process(config, workdir, port) as process:
        server = PrometheusServer(f"http://127.0.0.1:{port}", port, f"127.0.0.1:{down_port}", process)
        _wait_until_settled(server, workdir / "prometheus.log")
        yield server


@contextmanager
def prometheus_process(config: Path, workdir: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """Prometheus with this config file, its data and log (prometheus.log) in `workdir`, serving on
    127.0.0.1:port; stopped on exit."""
    command = [PROMETHEUS_BIN, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'data'}",
               f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"]
    with server_process(command, workdir / "prometheus.log") as process:
        yield process


@contextmanager
def server_process(command: list[str], log_file: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A program that runs until stopped, its output in `log_file`; terminated (killed after 20 s)
    on exit."""
    with log_file.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            yield process
        finally:
            end_process(process, grace_s=20)


def api_get(url: str) -> dict[str, object]:
    """The `data` of a Prometheus HTTP API answer."""
    with urllib.request.urlopen(url, timeout=2) as response:
        data: dict[str, object] = json.loads(response.read())["data"]
        return data


def _wait_until_settled(server: PrometheusServer, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"prometheus exited: {log.read_text()[-2000:]}")
        try:
            targets = api_get(server.url + "/api/v1/targets")["activeTargets"]
            groups = api_get(server.url + "/api/v1/rules")["groups"]
        except OSError:
            time.sleep(0.2)
            continue
        assert isinstance(targets, list) and isinstance(groups, list)
        if len(targets) == 2 and all(t["health"] != "unknown" for t in targets) and groups:
            return
        time.sleep(0.2)
    raise RuntimeError(f"prometheus did not scrape its targets within {START_TIMEOUT_SECONDS}s")


ALERTMANAGER_BIN = "/usr/bin/prometheus-alertmanager"  # Debian's prometheus-alertmanager


@contextmanager
def alertmanager_process(config: Path, workdir: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """Alertmanager with this config on 127.0.0.1:port, alone (no cluster port opened); stopped on
    exit. Its log is alertmanager.log in `workdir`."""
    command = [ALERTMANAGER_BIN, f"--config.file={config}", f"--storage.path={workdir / 'alertmanager'}",
               f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=", "--log.level=warn"]
    with server_process(command, workdir / "alertmanager.log") as process:
        yield process
