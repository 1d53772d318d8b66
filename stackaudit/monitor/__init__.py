"""Scheduled checks: history (SQLite), fill-rate forecasts, change-based alerts, Prometheus metrics.

The monitor reuses the audit's rules and codes: a disk alert *is* the finding SYS001 seen again, with
the same threshold and the same explain page. `check` runs one pass; `watch` runs passes in a loop.
"""

from __future__ import annotations

from dataclasses import dataclass

from stackaudit import units

DAY_SECONDS = 86400.0
# The port `stackaudit metrics --listen` documents: `fleet prometheus` targets it unless a host's
# stackaudit_metrics_port says otherwise, and the role stackaudit_metrics listens on it.
METRICS_PORT = 9814


def parse_duration(text: str) -> float:
    """`30m`, `1.5h`, `45s`, `7d`, `90` (seconds) -> seconds, for an interval: it must be positive."""
    seconds = units.parse_duration(text)
    if seconds <= 0:
        raise ValueError(f"a duration must be positive: {text!r}")
    return seconds


@dataclass(frozen=True)
class MonitorOptions:
    """How the monitor keeps history and when it speaks; every default is here."""

    retention_days: float = 90.0  # samples and check rows older than this are deleted
    forecast_window_days: float = 7.0  # the fill rate is fitted over this much recent history
    repeat_seconds: float = 6 * 3600.0  # re-notify a still-critical condition this often
    recover_checks: int = 3  # consecutive checks below a level before it is called recovered
    send_attempts: int = 3  # tries per destination within one pass ...
    send_backoff_seconds: float = 1.0  # ... waiting 1 s, 2 s, ... between them
    retry_base_seconds: float = 300.0  # then later passes retry: 5 min, 10 min, ... (outbox)
    retry_max_seconds: float = 3600.0
    give_up_seconds: float = DAY_SECONDS  # a notification older than this is dropped (logged)
