"""Prometheus metrics of the check: served over HTTP or written for node_exporter's textfile collector.

Each check's measurements become gauges (prometheus client_python's custom-collector pattern:
https://prometheus.github.io/client_python/collector/custom/), rendered once into the exposition
text when the check lands; a scrape is answered with those bytes and computes nothing
(`CheckCollector`, `serve`). It reads the history for the forecast but never writes it:
`check`/`watch` are the one writer.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from stackaudit.fsutil import atomic_write
from stackaudit.redact import scrub

if TYPE_CHECKING:  # a type only: `metrics --listen` serves bytes and never loads the check itself
    from stackaudit.monitor.check import CheckResult

log = logging.getLogger(__name__)

PREFIX = "stackaudit_"
TEXTFILE_NAME = "stackaudit.prom"

# metric -> (help, label names). Units are in the names, as Prometheus' naming guide asks.
GAUGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "disk_used_ratio": (
        "Used share of the mount as df computes it: used / (used + available).",
        ("mountpoint", "device", "holds"),
    ),
    "disk_used_bytes": ("Bytes used on the mount.", ("mountpoint", "device", "holds")),
    "disk_size_bytes": (
        "Bytes a normal user can fill on the mount: used + available.",
        ("mountpoint", "device", "holds"),
    ),
    "disk_free_bytes": ("Bytes available to a normal user on the mount.", ("mountpoint", "device", "holds")),
    "disk_inodes_used_ratio": ("Used share of the mount's inodes.", ("mountpoint", "device", "holds")),
    "disk_forecast_seconds_to_full": (
        "Seconds until the mount is full at the recent fill rate (Theil-Sen "
        "fit of the check history); absent when it is not filling.",
        ("mountpoint",),
    ),
    "memory_available_ratio": ("Available memory over usable memory (host RAM or the cgroup limit).", ()),
    "postgres_connections": ("PostgreSQL sessions (pg_stat_activity rows).", ()),
    "postgres_connections_used_ratio": ("PostgreSQL sessions over max_connections.", ()),
    "mysql_connections": ("MariaDB/MySQL sessions (Threads_connected).", ("instance",)),
    "mysql_connections_used_ratio": ("MariaDB/MySQL sessions over max_connections.", ("instance",)),
    "redis_memory_used_ratio": (
        "Redis used memory over maxmemory or the container limit, the lower.",
        ("instance",),
    ),
    "backup_age_seconds": ("Age of the newest verified backup, per database.", ("database",)),
    "tls_certificate_expiry_seconds": ("Seconds until the TLS certificate expires.", ("domain",)),
}


def families(result: CheckResult) -> Iterator[Metric]:
    """Every gauge of one check result."""
    by_metric: dict[str, list[tuple[list[str], float]]] = defaultdict(list)
    for m in result.measurements:
        if m.metric in GAUGES:
            names = GAUGES[m.metric][1]
            by_metric[m.metric].append(([m.labels.get(n, "") for n in names], m.value))
    for metric, rows in by_metric.items():
        help_text, names = GAUGES[metric]
        family = GaugeMetricFamily(PREFIX + metric, help_text, labels=list(names))
        for values, value in rows:
            family.add_metric(values, value)
        yield family
    yield from _findings(result)
    yield from _check_info(result)


def _findings(result: CheckResult) -> Iterator[Metric]:
    counts = GaugeMetricFamily(
        PREFIX + "findings", "Findings of the check rules, by severity.", labels=["severity"]
    )
    for severity, count in result.report.counts().items():
        counts.add_metric([severity], count)
    yield counts
    active = GaugeMetricFamily(
        PREFIX + "finding_active",
        "1 for each finding of the check rules.",
        labels=["code", "severity", "subject"],
    )
    for finding in result.report.findings:
        active.add_metric([finding.code, finding.severity.label(), finding.subject], 1)
    yield active


def _check_info(result: CheckResult) -> Iterator[Metric]:
    yield GaugeMetricFamily(
        PREFIX + "check_timestamp_seconds", "When the check ran (unix time).", value=result.ts
    )
    yield GaugeMetricFamily(
        PREFIX + "check_duration_seconds", "How long the check took.", value=result.duration_seconds
    )
    up = GaugeMetricFamily(
        PREFIX + "source_up", "1 when the source could be collected, else 0.", labels=["source"]
    )
    facts = result.report.facts
    for source in sorted({*facts.data, *(e.source for e in facts.errors)}):
        up.add_metric([source], 1.0 if facts.has(source) else 0.0)
    yield up


class CheckCollector:
    """Serves the last check's exposition; a scrape never waits for a check, except the very first.

    `produce` returns a CheckResult, or its exposition already rendered (what `metrics --listen`
    gets from its child, so this process never loads the rules or unpickles a report). The bytes
    are made once per check, off the request path. When they are older than `max_age_seconds`, a
    scrape starts a new check on a thread and gets the previous bytes at once (Prometheus' scrape
    timeout is 10 s by default, a check can take longer; the answer must not depend on it). A
    failed refresh keeps the previous result.
    """

    def __init__(self, produce: Callable[[], CheckResult | bytes], max_age_seconds: float = 30.0) -> None:
        self.produce = produce
        self.max_age_seconds = max_age_seconds
        self._lock = threading.Lock()
        self._last: tuple[float, bytes] | None = None
        self._refreshing = False
        self._ready = threading.Event()  # set once the first check has finished (or failed)
        self._error: str | None = None

    def current(self) -> bytes:
        """The exposition text of the last check (starting a new check when it is stale)."""
        with self._lock:
            stale = self._last is None or time.monotonic() - self._last[0] >= self.max_age_seconds
            if stale and not self._refreshing:
                self._refreshing = True
                threading.Thread(target=self._refresh, name="metrics-check", daemon=True).start()
        self._ready.wait()
        last = self._last
        if last is None:
            raise RuntimeError(f"the check failed: {self._error}")
        return last[1]

    def _refresh(self) -> None:
        try:
            produced = self.produce()
            body = produced if isinstance(produced, bytes) else exposition(produced)
        except Exception as exc:  # noqa: BLE001 - the previous result stays; the next scrape retries
            log.error("metrics check failed: %s: %s", exc.__class__.__name__, scrub(str(exc)))
            with self._lock:
                self._error, self._refreshing = scrub(str(exc)), False
        else:
            with self._lock:
                self._last, self._refreshing = (time.monotonic(), body), False
        self._ready.set()


class ResultCollector(Collector):
    """A fixed result: for the textfile written after a check."""

    def __init__(self, result: CheckResult) -> None:
        self.result = result

    def collect(self) -> Iterator[Metric]:
        yield from families(self.result)


def registry_for(collector: Collector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def exposition(result: CheckResult) -> bytes:
    return generate_latest(registry_for(ResultCollector(result)))


def write_textfile(directory: Path, result: CheckResult, name: str = TEXTFILE_NAME) -> Path:
    """Atomically (temp file + rename), since node_exporter may read the file at any moment; the temp
    file starts with a dot and ends in .tmp, so the collector (which reads *.prom) never sees it."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    atomic_write(path, exposition(result), mode=0o644)
    return path


def serve(collector: CheckCollector, host: str, port: int, stop: threading.Event) -> None:
    """Serve the collector's bytes on host:port (any path, as client_python's server does) until
    `stop` is set."""

    class Handler(BaseHTTPRequestHandler):
        # buffered: the headers and the body leave in one write when the handler finishes, not as a
        # small header segment that waits for the client's ACK before the body (Nagle)
        wbufsize = 1 << 16

        def do_GET(self) -> None:
            try:
                body, status = collector.current(), 200
            except RuntimeError as exc:
                body, status = f"{exc}\n".encode(), 503
            self.send_response(status)
            self.send_header("Content-Type", CONTENT_TYPE_LATEST if status == 200 else "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            """Scrapes are not logged (client_python's server is quiet too)."""

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True)
    thread.start()
    try:
        stop.wait()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
