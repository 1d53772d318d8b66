"""Every check result in an SQLite database in the state directory.

WAL mode lets a reader (the metrics exporter, the web dashboard, a person with `sqlite3`) read while
a check writes, without "database is locked"; `synchronous=NORMAL` in WAL mode survives a killed
process (only a power loss may drop the last transaction). Retention bounds the size: rows older
than `retention_days` are deleted at every write pass.
See https://www.sqlite.org/wal.html and https://www.sqlite.org/pragma.html#pragma_synchronous.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

DB_NAME = "history.sqlite3"
SCHEMA_VERSION = 1
BUSY_TIMEOUT_MS = 30_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS checks (
    id INTEGER PRIMARY KEY, ts REAL NOT NULL, duration_seconds REAL NOT NULL, worst TEXT,
    counts TEXT NOT NULL, sources TEXT NOT NULL, errors INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS checks_by_ts ON checks(ts);
CREATE TABLE IF NOT EXISTS samples (
    ts REAL NOT NULL, metric TEXT NOT NULL, subject TEXT NOT NULL, value REAL NOT NULL);
CREATE INDEX IF NOT EXISTS samples_by_series ON samples(metric, subject, ts);
CREATE INDEX IF NOT EXISTS samples_by_ts ON samples(ts);
CREATE TABLE IF NOT EXISTS alert_state (
    code TEXT NOT NULL, subject TEXT NOT NULL, level TEXT NOT NULL, since REAL NOT NULL,
    last_notified REAL, lower_streak INTEGER NOT NULL DEFAULT 0, lower_level TEXT,
    message TEXT NOT NULL DEFAULT '', evidence TEXT NOT NULL DEFAULT '[]',
    PRIMARY KEY (code, subject));
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY, created REAL NOT NULL, destination TEXT NOT NULL, label TEXT NOT NULL,
    title TEXT NOT NULL, body TEXT NOT NULL, notify_type TEXT NOT NULL, attempts INTEGER NOT NULL,
    next_attempt REAL NOT NULL, code TEXT NOT NULL, subject TEXT NOT NULL, kind TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS notifications (
    ts REAL NOT NULL, code TEXT NOT NULL, subject TEXT NOT NULL, kind TEXT NOT NULL,
    label TEXT NOT NULL, delivered INTEGER NOT NULL, attempts INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS notifications_by_ts ON notifications(ts);
"""


@dataclass(frozen=True)
class AlertState:
    """What was last said about one condition (code, subject)."""

    code: str
    subject: str
    level: str  # "ok" | "warning" | "critical"
    since: float
    last_notified: float | None = None
    lower_streak: int = 0  # consecutive checks seen below `level` (hysteresis)
    lower_level: str | None = None  # the highest level seen during that streak
    message: str = ""
    evidence: str = "[]"  # JSON of the finding's evidence when it was last seen


@dataclass(frozen=True)
class Pending:
    """A notification not delivered yet, waiting for its next attempt."""

    id: int
    created: float
    destination: str  # sha256 of the URL: URLs carry tokens and never go into the database
    label: str  # the URL without credentials, for logs
    title: str
    body: str
    notify_type: str
    attempts: int
    next_attempt: float
    code: str
    subject: str
    kind: str


def database_path(state_dir: Path) -> Path:
    return state_dir / DB_NAME


class History:
    """One connection to the history database; use as a context manager."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
        self.path = path
        # Autocommit (isolation_level=None): transactions are explicit, see `transaction`.
        self.db = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        self.db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        self.db.execute("PRAGMA journal_mode = WAL")
        self.db.execute("PRAGMA synchronous = NORMAL")
        self.db.executescript(_SCHEMA)
        if self.db.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
            self.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @classmethod
    def open(cls, state_dir: Path) -> History:
        return cls(database_path(state_dir))

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> History:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE takes the write lock first, so two passes never interleave their writes."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # --- checks and samples ----------------------------------------------------------------------

    def record_check(
        self,
        ts: float,
        duration_seconds: float,
        worst: str | None,
        counts: dict[str, int],
        sources: dict[str, bool],
        errors: int,
        samples: Iterable[tuple[str, str, float]],
    ) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO checks (ts, duration_seconds, worst, counts, sources, errors) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (ts, duration_seconds, worst, json.dumps(counts), json.dumps(sources), errors),
            )
            db.executemany(
                "INSERT INTO samples (ts, metric, subject, value) VALUES (?, ?, ?, ?)",
                [(ts, metric, subject, float(value)) for metric, subject, value in samples],
            )

    def add_samples(self, rows: Iterable[tuple[float, str, str, float]]) -> None:
        with self.transaction() as db:
            db.executemany("INSERT INTO samples (ts, metric, subject, value) VALUES (?, ?, ?, ?)", rows)

    def series(self, metric: str, subject: str, since: float = 0.0) -> list[tuple[float, float]]:
        rows = self.db.execute(
            "SELECT ts, value FROM samples WHERE metric = ? AND subject = ? AND ts >= ? ORDER BY ts",
            (metric, subject, since),
        ).fetchall()
        return [(float(ts), float(value)) for ts, value in rows]

    def subjects(self, metric: str) -> list[str]:
        rows = self.db.execute(
            "SELECT DISTINCT subject FROM samples WHERE metric = ? ORDER BY subject", (metric,)
        ).fetchall()
        return [str(r[0]) for r in rows]

    def checks(self, limit: int = 100) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT ts, duration_seconds, worst, counts, sources, errors FROM checks "
            "ORDER BY ts DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [
            {
                "ts": ts,
                "duration_seconds": dur,
                "worst": worst,
                "counts": json.loads(counts),
                "sources": json.loads(sources),
                "errors": errors,
            }
            for ts, dur, worst, counts, sources, errors in rows
        ]

    def check_count(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM checks").fetchone()[0])

    def prune(self, now: float, retention_days: float) -> int:
        """Delete what is older than the retention; returns the number of rows removed."""
        cutoff = now - retention_days * 86400.0
        removed = 0
        with self.transaction() as db:
            for table in ("checks", "samples", "notifications"):
                removed += db.execute(f"DELETE FROM {table} WHERE ts < ?", (cutoff,)).rowcount
        return removed

    # --- alert state -----------------------------------------------------------------------------

    def alert_states(self) -> dict[tuple[str, str], AlertState]:
        rows = self.db.execute(
            "SELECT code, subject, level, since, last_notified, lower_streak, lower_level, "
            "message, evidence FROM alert_state"
        ).fetchall()
        return {(r[0], r[1]): AlertState(*r) for r in rows}

    def save_alert_states(self, states: Iterable[AlertState], outbox: Iterable[Pending] = ()) -> None:
        """The new states and the notifications they cause, in one transaction (an outbox): a kill
        between the two can neither lose a notification nor send one twice."""
        with self.transaction() as db:
            db.executemany(
                "INSERT INTO alert_state (code, subject, level, since, last_notified, lower_streak, "
                "lower_level, message, evidence) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (code, subject) DO UPDATE SET level = excluded.level, since = excluded.since, "
                "last_notified = excluded.last_notified, lower_streak = excluded.lower_streak, "
                "lower_level = excluded.lower_level, message = excluded.message, "
                "evidence = excluded.evidence",
                [
                    (
                        s.code,
                        s.subject,
                        s.level,
                        s.since,
                        s.last_notified,
                        s.lower_streak,
                        s.lower_level,
                        s.message,
                        s.evidence,
                    )
                    for s in states
                ],
            )
            db.execute("DELETE FROM alert_state WHERE level = 'ok' AND lower_streak = 0")
            db.executemany(
                "INSERT INTO outbox (created, destination, label, title, body, notify_type, attempts, "
                "next_attempt, code, subject, kind) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        i.created,
                        i.destination,
                        i.label,
                        i.title,
                        i.body,
                        i.notify_type,
                        i.attempts,
                        i.next_attempt,
                        i.code,
                        i.subject,
                        i.kind,
                    )
                    for i in outbox
                ],
            )

    # --- notifications ---------------------------------------------------------------------------

    def pending(self, now: float | None = None) -> list[Pending]:
        """Waiting notifications, all or only those due at `now`."""
        query = (
            "SELECT id, created, destination, label, title, body, notify_type, attempts, next_attempt, "
            "code, subject, kind FROM outbox"
        )
        params: tuple[float, ...] = ()
        if now is not None:
            query += " WHERE next_attempt <= ?"
            params = (now,)
        return [Pending(*row) for row in self.db.execute(query + " ORDER BY id", params).fetchall()]

    def reschedule(self, item_id: int, attempts: int, next_attempt: float) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE outbox SET attempts = ?, next_attempt = ? WHERE id = ?",
                (attempts, next_attempt, item_id),
            )

    def dequeue(self, item_id: int) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM outbox WHERE id = ?", (item_id,))

    def log_notification(
        self, ts: float, code: str, subject: str, kind: str, label: str, delivered: bool, attempts: int
    ) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO notifications (ts, code, subject, kind, label, delivered, attempts) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (ts, code, subject, kind, label, int(delivered), attempts),
            )

    def notifications(self) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT ts, code, subject, kind, label, delivered, attempts FROM notifications ORDER BY ts, rowid"
        ).fetchall()
        keys = ("ts", "code", "subject", "kind", "label", "delivered", "attempts")
        return [dict(zip(keys, row, strict=True)) for row in rows]


def disk_history(state_dir: Path) -> dict[str, list[tuple[float, float]]]:
    """Used bytes per mount from the watch database, or {} when there is none (never creates it)."""
    if not database_path(state_dir).is_file():
        return {}
    try:
        with History.open(state_dir) as db:
            return {m: db.series("disk_used_bytes", m) for m in db.subjects("disk_used_bytes")}
    except Exception:  # noqa: BLE001 - history is optional: a broken database costs one chart
        return {}
