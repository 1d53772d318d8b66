"""MariaDB/MySQL in the frequent check: its connections measured, MY101 among the checked codes, and
an alert rule for the same threshold (pure: facts snapshots, no server)."""

from __future__ import annotations

from pathlib import Path

from stackaudit.config import Settings
from stackaudit.facts import Facts
from stackaudit.monitor.check import check_codes, check_sources, measure
from stackaudit.monitor.prom_rules import rule_groups


def mysql_facts(connected: int | None, max_connections: str | None) -> Facts:
    variables = {"max_connections": max_connections} if max_connections is not None else {}
    return Facts(data={"mysql": {"instances": [{"target": "127.0.0.1:3306", "variables": variables,
                                                "derived": {"threads_connected": connected}}]}})


def test_mysql_connections_are_measured_against_max_connections() -> None:
    measured = {(m.metric, m.subject): m.value for m in measure(mysql_facts(120, "151"))}
    assert measured[("mysql_connections", "127.0.0.1:3306")] == 120.0
    assert abs(measured[("mysql_connections_used_ratio", "127.0.0.1:3306")] - 120 / 151) < 1e-9


def test_nothing_is_measured_without_max_connections() -> None:
    assert not [m for m in measure(mysql_facts(120, None)) if m.metric.startswith("mysql")]
    assert not [m for m in measure(mysql_facts(None, "151")) if m.metric.startswith("mysql")]


def test_a_configured_mysql_is_checked_with_my101(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path, mysql_url="mysql://audit@127.0.0.1/app")
    assert "mysql" in check_sources(settings) and "MY101" in check_codes(settings)
    assert "mysql" not in check_sources(Settings(state_dir=tmp_path))


def test_the_alert_rule_uses_my101s_threshold() -> None:
    groups = rule_groups(Settings())["groups"]
    rules = [r for g in groups for r in g["rules"] if r["labels"]["code"] == "MY101"]
    assert [r["expr"] for r in rules] == ["stackaudit_mysql_connections_used_ratio >= 0.85"]
