"""MON001 and MON002 on monitoring facts snapshots: each fires, and a near miss stays silent."""

from __future__ import annotations

from typing import Any

import stackaudit.rules.monitoring  # noqa: F401 - registers the MON rules
from stackaudit.config import Settings
from stackaudit.derive import derive
from stackaudit.facts import Facts
from stackaudit.model import Severity
from stackaudit.rules import REGISTRY


def run(code: str, monitoring: dict[str, Any]) -> list[tuple[str, Severity, str]]:
    registered = REGISTRY[code]
    hits = registered.run(facts := Facts(data={"monitoring": monitoring}), Settings(), derive(facts))
    return [(h.subject, registered.severity if h.severity is None else h.severity, h.message) for h in hits]


def component(kind: str, name: str | None = None, state: str = "running") -> dict[str, Any]:
    return {
        "kind": kind,
        "where": "container",
        "name": name or kind,
        "project": "shop",
        "service": name or kind,
        "image": f"example/{kind}:1",
        "state": state,
        "ports": [],
    }


def target(job: str, health: str = "up", error: str | None = None) -> dict[str, Any]:
    return {"job": job, "instance": f"{job}:9100", "health": health, "last_error": error}


DISK_RULE = {
    "type": "alerting",
    "name": "DiskAlmostFull",
    "expr": "node_filesystem_avail_bytes / node_filesystem_size_bytes < 0.1",
}
UP_RULE = {"type": "alerting", "name": "TargetDown", "expr": "up == 0"}


def prometheus(
    targets: list[dict[str, Any]], rules: list[dict[str, Any]], alertmanagers: list[str] | None = None
) -> dict[str, Any]:
    return {
        "url": "http://127.0.0.1:9090",
        "reachable": True,
        "error": None,
        "targets": targets,
        "rules": rules,
        "alertmanagers": {"active": alertmanagers or [], "dropped": 0},
    }


def covered(**changes: Any) -> dict[str, Any]:
    """A well-monitored stack: MON001 must be silent on it."""
    facts: dict[str, Any] = {
        "components": [
            component("prometheus"),
            component("node_exporter"),
            component("postgres_exporter"),
            component("alertmanager"),
        ],
        "datastores": [
            {"kind": "postgres", "project": "shop", "service": "db", "image": "postgres:16.4"},
            {"kind": "redis", "project": "shop", "service": "redis", "image": "redis:7.4"},
        ],
        "prometheus": prometheus(
            [target("node"), target("redis")],
            [DISK_RULE, UP_RULE],
            ["http://alertmanager:9093/api/v2/alerts"],
        ),
        "alertmanager": {
            "url": "http://127.0.0.1:9093",
            "reachable": True,
            "route_receiver": "ops",
            "receivers": [{"name": "ops", "integrations": ["email"], "placeholder": False}],
        },
    }
    facts.update(changes)
    return facts


# --- MON001 ---------------------------------------------------------------------------------------


def test_mon001_silent_on_a_covered_stack() -> None:
    assert run("MON001", covered()) == []


def test_mon001_fires_when_nothing_monitors_the_stack() -> None:
    hits = run("MON001", {"components": [], "datastores": [], "prometheus": None, "alertmanager": None})
    assert [(s, sev) for s, sev, _ in hits] == [("stack", Severity.HIGH)]


def test_mon001_fires_on_host_and_datastore_gaps() -> None:
    facts = covered(
        components=[component("prometheus"), component("grafana")],
        prometheus=prometheus([target("prometheus")], [DISK_RULE], ["http://am:9093/api/v2/alerts"]),
    )
    subjects = [s for s, _, _ in run("MON001", facts)]
    assert subjects == ["host", "shop/db", "shop/redis"]


def test_mon001_fires_low_when_an_agent_may_collect_the_datastore() -> None:
    facts = covered(
        components=[component("prometheus"), component("agent", "alloy"), component("alertmanager")]
    )
    hits = run("MON001", facts)
    assert [(s, sev) for s, sev, _ in hits] == [("shop/db", Severity.LOW)]
    assert "alloy" in hits[0][2]


def test_mon001_fires_without_disk_alert_rule() -> None:
    facts = covered(
        prometheus=prometheus([target("node"), target("redis")], [UP_RULE], ["http://am:9093/api/v2/alerts"])
    )
    hits = run("MON001", facts)
    assert [s for s, _, _ in hits] == ["prometheus alert rules"]
    assert "1 alert rule(s) and none on disk space" in hits[0][2]


def test_mon001_fires_on_alerts_without_alertmanager_or_receiver() -> None:
    no_am = covered(prometheus=prometheus([target("node"), target("redis")], [DISK_RULE]), alertmanager=None)
    assert [(s, sev) for s, sev, _ in run("MON001", no_am)] == [("alertmanager", Severity.HIGH)]
    placeholder = covered(
        alertmanager={
            "url": "http://127.0.0.1:9093",
            "reachable": True,
            "route_receiver": "web.hook",
            "receivers": [{"name": "web.hook", "integrations": ["webhook"], "placeholder": True}],
        }
    )
    hits = run("MON001", placeholder)
    assert len(hits) == 1 and "example webhook" in hits[0][2]


# --- MON002 ---------------------------------------------------------------------------------------


def test_mon002_fires_on_targets_down_grouped_by_job() -> None:
    facts = covered(
        prometheus=prometheus(
            [
                target("node", "down", "connection refused"),
                target("node"),
                target("redis", "down", "timeout"),
            ],
            [DISK_RULE],
        )
    )
    hits = run("MON002", facts)
    assert [s for s, _, _ in hits] == ["prometheus job node", "prometheus job redis"]
    assert (
        "1 of 2 target(s) of Prometheus job node are down" in hits[0][2]
        and "connection refused" in hits[0][2]
    )


def test_mon002_fires_on_stopped_components_and_unreachable_prometheus() -> None:
    facts = covered(
        components=[
            component("prometheus", state="exited"),
            component("grafana", state="restarting"),
            component("node_exporter"),
        ],
        prometheus=None,
        prometheus_unreachable=[{"url": "http://127.0.0.1:9090", "error": "connection refused"}],
    )
    hits = {s: sev for s, sev, _ in run("MON002", facts)}
    assert hits == {
        "prometheus http://127.0.0.1:9090": Severity.HIGH,
        "prometheus prometheus": Severity.HIGH,
        "grafana grafana": Severity.MEDIUM,
    }


def test_mon002_silent_when_all_up_or_not_scraped_yet() -> None:
    facts = covered(prometheus=prometheus([target("node"), target("redis", "unknown")], [DISK_RULE]))
    assert run("MON002", facts) == []


def test_mon002_silent_for_a_prometheus_only_declared_in_compose() -> None:
    facts = covered(
        prometheus=None,
        prometheus_unreachable=[
            {"url": "http://127.0.0.1:9090", "error": "connection refused", "expected": False}
        ],
    )
    assert run("MON002", facts) == []
