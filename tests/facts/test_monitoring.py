"""The monitoring collector against a real Prometheus (one target up, one down), and its parsers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

import stackaudit.rules.monitoring  # noqa: F401 - registers the MON rules
from stackaudit.config import Settings
from stackaudit.derive import derive
from stackaudit.facts import CollectContext, Facts
from stackaudit.facts import monitoring as collector
from stackaudit.localpg import free_port
from stackaudit.rules import REGISTRY
from tests.monitoring_fixtures import (
    DISK_ALERT_RULES,
    NO_DISK_ALERT_RULES,
    PrometheusServer,
    running_prometheus,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def prom_with_disk_alert(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    with running_prometheus(tmp_path_factory.mktemp("prom-disk"), DISK_ALERT_RULES) as server:
        yield server


@pytest.fixture(scope="module")
def prom_without_disk_alert(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    with running_prometheus(tmp_path_factory.mktemp("prom-nodisk"), NO_DISK_ALERT_RULES) as server:
        yield server


def collect(settings: Settings, facts: Facts | None = None) -> tuple[dict[str, Any], Facts]:
    ctx = CollectContext(settings=settings, facts=facts or Facts(), source="monitoring")
    data = collector.collect(ctx)
    ctx.facts.data["monitoring"] = data
    return data, ctx.facts


def subjects(code: str, facts: Facts) -> list[str]:
    return [hit.subject for hit in REGISTRY[code].run(facts, Settings(), derive(facts))]


def test_targets_up_and_down_and_rules_from_a_live_prometheus(prom_with_disk_alert: PrometheusServer) -> None:
    data, facts = collect(Settings(prometheus_url=prom_with_disk_alert.url))
    prometheus = data["prometheus"]
    assert prometheus["reachable"] and prometheus["url"] == prom_with_disk_alert.url
    health = {t["job"]: t for t in prometheus["targets"]}
    assert health["prometheus"]["health"] == "up"
    assert health["node"]["health"] == "down" and "connection refused" in health["node"]["last_error"]
    assert health["node"]["instance"] == prom_with_disk_alert.down_target
    assert [r["name"] for r in prometheus["rules"]] == ["DiskAlmostFull"]
    assert prometheus["config"]["scrape_jobs"] == ["prometheus", "node"]
    assert data["summary"]["targets_up"] == 1 and data["summary"]["targets_down"] == 1
    assert data["summary"]["alert_rules"] == 1
    # The rules on these live facts: the down target is MON002 (not a MON001 host gap: a "node" job is
    # configured); the disk rule is loaded, but alerts go nowhere (no Alertmanager).
    assert subjects("MON002", facts) == ["prometheus job node"]
    mon001 = subjects("MON001", facts)
    assert "alertmanager" in mon001 and "prometheus alert rules" not in mon001 and "host" not in mon001


def test_missing_disk_alert_is_a_gap(prom_without_disk_alert: PrometheusServer) -> None:
    data, facts = collect(Settings(prometheus_url=prom_without_disk_alert.url))
    assert [r["name"] for r in data["prometheus"]["rules"]] == ["TargetDown"]
    assert "prometheus alert rules" in subjects("MON001", facts)


def test_prometheus_found_as_a_host_process(prom_with_disk_alert: PrometheusServer) -> None:
    processes = collector.host_processes(Settings().proc_root)
    ours = [p for p in processes if p["pid"] == prom_with_disk_alert.process.pid]
    assert ours and ours[0]["kind"] == "prometheus"
    assert ours[0]["listen"] == f"127.0.0.1:{prom_with_disk_alert.port}"
    assert prom_with_disk_alert.url in collector.prometheus_urls(None, processes)


def test_credentials_in_the_url_never_reach_the_facts(prom_with_disk_alert: PrometheusServer) -> None:
    url = prom_with_disk_alert.url.replace("http://", "http://admin:Sup3rSecretPw@")
    data, _ = collect(Settings(prometheus_url=url))
    assert data["prometheus"]["reachable"]
    text = json.dumps(data)
    assert "Sup3rSecretPw" not in text and "admin:***@" in data["prometheus"]["url"]


def test_unreachable_prometheus_is_an_error_and_mon002() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    data, facts = collect(Settings(prometheus_url=url, timeout_seconds=2))
    # Another Prometheus (this module's, found as a host process) may answer instead: the given one
    # is still reported.
    assert data["prometheus_unreachable"][0]["url"] == url
    assert "refused" in data["prometheus_unreachable"][0]["error"]
    assert any(e.source == "monitoring" and url in e.where for e in facts.errors)
    assert f"prometheus {url}" in subjects("MON002", facts)


# --- pure parts ------------------------------------------------------------------------------------


def test_components_from_containers_and_compose_services() -> None:
    facts = Facts(
        data={
            "docker": {
                "containers": [
                    {
                        "name": "shop-prometheus-1",
                        "image": "prom/prometheus:v2.54.1",
                        "state": "running",
                        "compose_project": "shop",
                        "compose_service": "prometheus",
                        "ports": [{"host_ip": "127.0.0.1", "host_port": 9091, "container_port": 9090}],
                    },
                    {
                        "name": "shop-cadvisor-1",
                        "image": "gcr.io/cadvisor/cadvisor:v0.49.1",
                        "state": "exited",
                        "compose_project": "shop",
                        "compose_service": "cadvisor",
                        "ports": [],
                    },
                    {
                        "name": "shop-db-1",
                        "image": "postgres:16.4",
                        "state": "running",
                        "compose_project": "shop",
                        "compose_service": "db",
                        "ports": [],
                    },
                ]
            },
            "compose": {
                "projects": [
                    {
                        "name": "shop",
                        "services": {
                            "prometheus": {
                                "name": "prometheus",
                                "image": "prom/prometheus:v2.54.1",
                                "ports": [],
                            },
                            "exporter": {
                                "name": "exporter",
                                "image": "quay.io/prometheuscommunity/postgres-exporter:v0.15.0",
                                "ports": [],
                                "profiles": [],
                            },
                            "grafana": {
                                "name": "grafana",
                                "image": "grafana/grafana:11.2.0",
                                "ports": [],
                                "profiles": ["monitoring"],
                            },
                            "db": {"name": "db", "image": "postgres:16.4", "ports": []},
                        },
                    }
                ]
            },
        }
    )
    found = {(c["kind"], c["where"]): c["state"] for c in collector.stack_components(facts)}
    assert found == {
        ("prometheus", "container"): "running",
        ("cadvisor", "container"): "exited",
        ("postgres_exporter", "compose"): "not running",
        ("grafana", "compose"): None,
    }
    components = list(collector.stack_components(facts))
    assert collector.prometheus_urls(None, components) == ["http://127.0.0.1:9091"]
    assert [d["kind"] for d in collector.stack_datastores(facts)] == ["postgres"]


UPSTREAM_EXAMPLE_ALERTMANAGER = """\
route:
  receiver: 'web.hook'
receivers:
  - name: 'web.hook'
    webhook_configs:
      - url: 'http://127.0.0.1:5001/'
"""


def test_receivers_of_the_example_config_are_placeholders() -> None:
    shape = collector.receivers_shape(UPSTREAM_EXAMPLE_ALERTMANAGER)
    assert shape["route_receiver"] == "web.hook"
    assert shape["receivers"] == [{"name": "web.hook", "integrations": ["webhook"], "placeholder": True}]
    real = collector.receivers_shape(
        "route: {receiver: ops}\nreceivers:\n  - name: ops\n"
        "    email_configs: [{to: ops@example.com}]\n  - name: blackhole\n"
    )
    assert real["receivers"] == [
        {"name": "ops", "integrations": ["email"], "placeholder": False},
        {"name": "blackhole", "integrations": [], "placeholder": False},
    ]


def test_listen_address_from_the_command_line() -> None:
    assert (
        collector.listen_address("prometheus", ["prometheus", "--web.listen-address=0.0.0.0:9095"])
        == "0.0.0.0:9095"
    )
    assert collector.listen_address("alertmanager", ["alertmanager"]) == ":9093"
    assert collector.listen_address("node_exporter", ["node_exporter"]) is None
