"""The alert state machine (pure): escalation, hysteresis, repeats, no duplicates."""

from __future__ import annotations

from stackaudit.monitor import MonitorOptions
from stackaudit.monitor.alerts import destination_label, step
from stackaudit.monitor.history import AlertState

OPTIONS = MonitorOptions(recover_checks=3, repeat_seconds=3600)


def run(levels: list[str], every: float = 600.0) -> list[str | None]:
    state: AlertState | None = None
    kinds = []
    for i, level in enumerate(levels):
        state, kind = step(state, "SYS001", "/data", level, i * every, OPTIONS)
        kinds.append(kind)
    return kinds


def test_escalation_is_immediate_and_said_once() -> None:
    assert run(["ok", "warning", "warning", "critical", "critical"]) == [
        None,
        "firing",
        None,
        "escalated",
        None,
    ]


def test_a_value_hovering_at_the_threshold_alerts_once() -> None:
    kinds = run(["warning", "ok", "warning", "ok", "ok", "warning", "ok", "warning"])
    assert kinds == ["firing", None, None, None, None, None, None, None]


def test_recovery_needs_consecutive_ok_checks() -> None:
    assert run(["warning", "ok", "ok", "ok", "ok"]) == ["firing", None, None, "resolved", None]


def test_down_from_critical_lands_on_the_highest_level_seen() -> None:
    kinds = run(["critical", "warning", "ok", "ok", "ok", "ok", "ok"])
    assert kinds == ["firing", None, None, "de-escalated", None, None, "resolved"]


def test_still_critical_is_repeated_at_the_interval_only() -> None:
    kinds = run(["critical"] * 14, every=600.0)  # 6 checks per repeat interval of one hour
    assert kinds == ["firing", *[None] * 5, "repeat", *[None] * 5, "repeat", None]


def test_warning_is_not_repeated() -> None:
    assert run(["warning"] * 20, every=3600.0) == ["firing", *[None] * 19]


def test_destination_label_hides_tokens() -> None:
    assert destination_label("slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ") == "slack://…"
    assert destination_label("json://127.0.0.1:8080/hook") == "json://127.0.0.1"
