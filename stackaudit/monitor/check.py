"""One quick pass of the cheap rules, for cron, a systemd timer or the `watch` loop.

A pass collects only the cheap sources (host always; PostgreSQL, Redis, backups and TLS when they
are configured), adds the fill-rate forecast from the history to the host facts, and runs the same
rules as the audit, selected by code. So a disk alert is SYS001, with SYS001's thresholds and
`stackaudit explain SYS001`. `run_pass` adds the history record and the change-based alerts.
"""

from __future__ import annotations

import fcntl
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from stackaudit.config import ALL_SOURCES, Settings
from stackaudit.derive.forecast import Forecast, forecast_full
from stackaudit.facts import Facts, collect
from stackaudit.facts.host import effective_memory_bytes
from stackaudit.monitor import DAY_SECONDS, MonitorOptions
from stackaudit.monitor.alerts import Notifier, process
from stackaudit.monitor.history import History
from stackaudit.report import Report
from stackaudit.rules import evaluate, is_selected, load_all
from stackaudit.rules.host import watched_mounts
from stackaudit.shapes import number

log = logging.getLogger(__name__)

# The rules a check runs (when their sources are there): disk and inodes, memory, connections,
# Redis memory, backup age, certificate expiry.
CHECK_CODES = ("SYS001", "SYS002", "PG101", "MY101", "RDS003", "BAK001", "SEC006")
CHEAP_SOURCES = ("host", "postgres", "mysql", "redis", "backups", "tls")
LOCK_NAME = "check.lock"


@dataclass(frozen=True)
class Measurement:
    """One measured number of a check: what goes into the history and out as a Prometheus gauge."""

    metric: str
    subject: str
    value: float
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CheckResult:
    report: Report
    ts: float
    duration_seconds: float
    measurements: list[Measurement]
    forecasts: dict[str, Forecast]  # mountpoint -> forecast
    evaluated: tuple[str, ...]  # codes whose rules ran (not skipped for a missing source)
    alerts: tuple[Any, ...] = ()  # the alerts.Transition list of this pass (run_pass only)

    def exit_code(self, fail_on: Any) -> int:
        return 2 if not self.report.facts.data else self.report.exit_code(fail_on)


def check_sources(settings: Settings) -> tuple[str, ...]:
    """Sources given explicitly (--sources) win; otherwise the cheap ones that are configured."""
    if settings.sources != ALL_SOURCES:
        return settings.sources
    configured = {
        "host": True,
        "postgres": settings.pg_dsn is not None,
        "mysql": settings.mysql_url is not None,
        "redis": settings.redis_url is not None,
        "backups": settings.backup_dest is not None or (settings.state_dir / "backups").is_dir(),
        "tls": bool(settings.tls_domains),
    }
    return tuple(s for s in CHEAP_SOURCES if configured[s])


def check_codes(settings: Settings) -> tuple[str, ...]:
    registry = load_all()
    return tuple(c for c in CHECK_CODES if c in registry and is_selected(c, settings.select, settings.ignore))


def run_check(
    settings: Settings,
    history: History | None = None,
    options: MonitorOptions | None = None,
    facts: Facts | None = None,
    now: float | None = None,
) -> CheckResult:
    """Collect, forecast from the history (read only here), evaluate the check rules."""
    options = options or MonitorOptions()
    started = time.monotonic()
    now = time.time() if now is None else now
    if facts is None:
        # The storage probe feeds the tuner only; a frequent check does not need it.
        facts = collect(replace(settings, sources=check_sources(settings), storage_probe=False))
    measurements = measure(facts)
    forecasts = forecast_mounts(facts, history, now, options) if history is not None else {}
    add_forecasts(facts, forecasts)
    measurements += [
        Measurement(
            "disk_forecast_seconds_to_full", point, f.days_to_full * DAY_SECONDS, {"mountpoint": point}
        )
        for point, f in forecasts.items()
    ]
    codes = check_codes(settings)
    findings, skipped = evaluate(facts, replace(settings, select=codes)) if codes else ([], [])
    skipped_codes = {s.code for s in skipped}
    report = Report(facts=facts, findings=findings, skipped=skipped)
    return CheckResult(
        report,
        now,
        time.monotonic() - started,
        measurements,
        forecasts,
        tuple(c for c in codes if c not in skipped_codes),
    )


def forecast_mounts(
    facts: Facts, history: History, now: float, options: MonitorOptions
) -> dict[str, Forecast]:
    """A forecast per watched mount from its used-bytes history plus the sample taken now."""
    result: dict[str, Forecast] = {}
    since = now - options.forecast_window_days * DAY_SECONDS
    for mount in watched_mounts(facts) if facts.has("host") else ():
        point = mount["mountpoint"]
        series = history.series("disk_used_bytes", point, since)
        series.append((now, float(mount["used_bytes"])))
        capacity = float(mount["used_bytes"]) + float(mount["free_bytes"])
        found = forecast_full(series, capacity, now, window_days=options.forecast_window_days)
        if found is not None:
            result[point] = found
    return result


def add_forecasts(facts: Facts, forecasts: dict[str, Forecast]) -> None:
    """Put each forecast into its host mount, where SYS001 reads `forecast_days_to_full`."""
    for mount in facts.get("host").get("mounts", []):
        found = forecasts.get(mount["mountpoint"])
        if found is not None:
            mount["forecast_days_to_full"] = round(found.days_to_full, 2)
            mount["forecast_rate_bytes_per_day"] = round(found.rate_bytes_per_day)


# --- measurements ------------------------------------------------------------------------------


def measure(facts: Facts) -> list[Measurement]:
    return [*_host(facts), *_postgres(facts), *_mysql(facts), *_redis(facts), *_backups(facts), *_tls(facts)]


def _host(facts: Facts) -> Iterator[Measurement]:
    if not facts.has("host"):
        return
    host = facts["host"]
    for mount in watched_mounts(facts):
        point = mount["mountpoint"]
        labels = {
            "mountpoint": point,
            "device": str(mount.get("device", "")),
            "holds": ",".join(mount["holds"]),
        }
        capacity = float(mount["used_bytes"]) + float(mount["free_bytes"])
        yield Measurement("disk_used_bytes", point, float(mount["used_bytes"]), labels)
        yield Measurement("disk_size_bytes", point, capacity, labels)
        yield Measurement("disk_free_bytes", point, float(mount["free_bytes"]), labels)
        yield Measurement("disk_used_ratio", point, float(mount["used_percent"]) / 100.0, labels)
        if mount.get("inodes_used_percent") is not None:
            yield Measurement(
                "disk_inodes_used_ratio", point, float(mount["inodes_used_percent"]) / 100.0, labels
            )
    usable = effective_memory_bytes(host)
    if usable:
        yield Measurement("memory_available_ratio", "memory", float(host["memory_available_bytes"]) / usable)


def _postgres(facts: Facts) -> Iterator[Measurement]:
    connections = facts.get("postgres").get("connections", {})
    used, most = connections.get("total"), connections.get("max_connections")
    if used is not None and most:
        yield Measurement("postgres_connections", "postgres", float(used))
        yield Measurement("postgres_connections_used_ratio", "postgres", float(used) / float(most))


def _mysql(facts: Facts) -> Iterator[Measurement]:
    """Sessions now against max_connections per MariaDB/MySQL server (MY101 judges the peak)."""
    for instance in facts.get("mysql").get("instances", []):
        used = (instance.get("derived") or {}).get("threads_connected")
        most = number((instance.get("variables") or {}).get("max_connections"))
        if used is None or not most:
            continue
        target = str(instance.get("target", "mysql"))
        yield Measurement("mysql_connections", target, float(used), {"instance": target})
        yield Measurement("mysql_connections_used_ratio", target, float(used) / most, {"instance": target})


def _redis(facts: Facts) -> Iterator[Measurement]:
    for instance in facts.get("redis").get("instances", []):
        limits = [
            v for v in (instance.get("maxmemory_bytes"), instance.get("container_memory_limit_bytes")) if v
        ]
        used = instance.get("used_memory_bytes")
        if used is None or not limits:
            continue
        target = str(instance.get("target", "redis"))
        yield Measurement(
            "redis_memory_used_ratio", target, float(used) / float(min(limits)), {"instance": target}
        )


def _backups(facts: Facts) -> Iterator[Measurement]:
    for database in facts.get("backups").get("databases", []):
        hours = database.get("newest_verified_age_hours")
        if hours is not None:
            name = str(database["database"])
            yield Measurement("backup_age_seconds", name, float(hours) * 3600.0, {"database": name})


def _tls(facts: Facts) -> Iterator[Measurement]:
    for cert in facts.get("tls").get("certificates", []):
        if cert.get("days_left") is not None:
            domain = str(cert.get("domain", cert.get("host", "")))
            yield Measurement(
                "tls_certificate_expiry_seconds",
                domain,
                float(cert["days_left"]) * DAY_SECONDS,
                {"domain": domain},
            )


# --- one pass with history and alerts ----------------------------------------------------------


@contextmanager
def pass_lock(state_dir: Path) -> Iterator[None]:
    """One pass at a time per state dir: a cron `check` and `watch` never alert twice for one change."""
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
    with open(state_dir / LOCK_NAME, "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def record(history: History, result: CheckResult, options: MonitorOptions) -> None:
    report = result.report
    worst = report.worst()
    sources = {s: report.facts.has(s) for s in {*report.facts.data, *(e.source for e in report.facts.errors)}}
    samples = [(m.metric, m.subject, m.value) for m in result.measurements]
    history.record_check(
        result.ts,
        result.duration_seconds,
        worst.label() if worst else None,
        report.counts(),
        sources,
        len(report.facts.errors),
        samples,
    )
    history.prune(result.ts, options.retention_days)


def run_pass(
    settings: Settings,
    options: MonitorOptions | None = None,
    facts: Facts | None = None,
    now: float | None = None,
) -> CheckResult:
    """check + history + alerts: what `stackaudit check` and each turn of `watch` do."""
    options = options or MonitorOptions()
    with pass_lock(settings.state_dir), History.open(settings.state_dir) as history:
        result = run_check(settings, history, options, facts, now)
        record(history, result, options)
        changes = process(history, result, Notifier(settings.alert_urls, history, options), options)
    return replace(result, alerts=tuple(changes))


def flush_pending(settings: Settings, options: MonitorOptions) -> int:
    """Deliver queued notifications that are due (between two passes of `watch`)."""
    with pass_lock(settings.state_dir), History.open(settings.state_dir) as history:
        if not history.pending(time.time()):
            return 0
        return Notifier(settings.alert_urls, history, options).flush()
