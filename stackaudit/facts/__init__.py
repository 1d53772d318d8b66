"""Read-only collection of the outside world into `Facts`.

Each source is a module here with `collect(ctx: CollectContext) -> dict` returning JSON-like data.
A collector raises `SourceUnavailable` (or anything else) when the whole source cannot be read, and
calls `ctx.error(...)` for a part it could not read; both end up in `Facts.errors` and the audit goes
on. Sources run in the order of ALL_SOURCES so later ones (postgres, redis) can use what earlier
ones found (compose services, container addresses, live PostgreSQL sessions).
"""

from __future__ import annotations

import importlib
import json
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stackaudit import __version__
from stackaudit.config import ALL_SOURCES, Settings
from stackaudit.model import CollectionError, to_jsonable
from stackaudit.redact import scrub_data

FACTS_SCHEMA_VERSION = 1


class SourceUnavailable(Exception):
    """The whole source could not be read; the message is the user-facing reason (no secrets)."""


@dataclass
class Facts:
    """Collected data per source, plus a reason for every source (or part) that could not be read."""

    data: dict[str, dict[str, Any]] = field(default_factory=dict)
    errors: list[CollectionError] = field(default_factory=list)
    collected_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    def has(self, source: str) -> bool:
        return source in self.data

    def get(self, source: str) -> dict[str, Any]:
        """The source's data, or an empty dict when it was not collected."""
        return self.data.get(source, {})

    def __getitem__(self, source: str) -> dict[str, Any]:
        return self.data[source]

    def why_missing(self, source: str) -> str:
        reasons = [e.why for e in self.errors if e.source == source]
        return "; ".join(reasons) if reasons else f"{source} was not collected"

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": FACTS_SCHEMA_VERSION,
            "tool_version": __version__,
            "collected_at": self.collected_at,
            "data": scrub_data(self.data),
            "errors": scrub_data(to_jsonable(self.errors)),
        }

    @classmethod
    def from_json(cls, payload: Any) -> Facts:
        """A snapshot written by `to_json`; ValueError (a sentence for the user) for any other shape."""
        if not isinstance(payload, dict):
            raise ValueError(f"a facts snapshot is a JSON object, not a {type(payload).__name__}")
        if payload.get("schema_version") != FACTS_SCHEMA_VERSION:
            raise ValueError(f"facts schema_version {payload.get('schema_version')!r} is not "
                             f"{FACTS_SCHEMA_VERSION}; collect them again with this version")
        data, errors = payload.get("data"), payload.get("errors", [])
        if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
            raise ValueError("'data' must be an object with an object per source")
        if not isinstance(errors, list) or not all(isinstance(e, dict) for e in errors):
            raise ValueError("'errors' must be a list of objects")
        return cls(
            data=data,
            errors=[CollectionError(str(e.get("source", "")), str(e.get("where", "")), str(e.get("why", "")),
                                    e.get("invalid") is True)
                    for e in errors],
            collected_at=str(payload.get("collected_at", "")),
        )

    @classmethod
    def load(cls, path: Path) -> Facts:
        try:
            return cls.from_json(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"cannot read facts snapshot {path}: {exc}") from None


@dataclass
class CollectContext:
    """What a collector gets: the settings, what was collected so far, and a place for errors.

    `private` carries values between collectors in this process only (credentials found in the
    compose environment for the postgres collector, say); it is never saved or rendered.
    """

    settings: Settings
    facts: Facts
    private: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    def error(self, where: str, why: str, source: str | None = None, invalid: bool = False) -> None:
        self.facts.errors.append(CollectionError(source or self.source, where, why, invalid))


Progress = Callable[[str, str], None]  # (source, state) where state is "start" | "done" | "failed"


def collect(settings: Settings, progress: Progress | None = None) -> Facts:
    """Run every wanted collector; never raises for a source that fails."""
    ctx = CollectContext(settings=settings, facts=Facts())
    for source in ALL_SOURCES:
        if not settings.wants(source):
            continue
        if progress:
            progress(source, "start")
        ok = collect_source(ctx, source)
        if progress:
            progress(source, "done" if ok else "failed")
    return ctx.facts


def collect_source(ctx: CollectContext, source: str) -> bool:
    ctx.source = source
    collector = _collector_for(source)
    if collector is None:
        ctx.error(source, "this version of stackaudit has no collector for it yet")
        return False
    try:
        data = collector(ctx)
    except SourceUnavailable as exc:
        ctx.error(source, str(exc))
        return False
    except Exception as exc:  # noqa: BLE001 - a collector bug must not end the audit
        # str(), never repr(): a psycopg error's repr holds the connection string.
        ctx.error(source, f"unexpected {exc.__class__.__name__}: {exc}")
        return False
    if data is not None:
        ctx.facts.data[source] = data
    bad_input = any(e.invalid for e in ctx.facts.errors if e.source == source)
    return data is not None and not bad_input


def _collector_for(source: str) -> Callable[[CollectContext], dict[str, Any] | None] | None:
    try:
        module = importlib.import_module(f"stackaudit.facts.{source}")
    except ModuleNotFoundError as exc:
        if exc.name == f"stackaudit.facts.{source}":
            return None
        raise
    return getattr(module, "collect", None)


def not_a_regular_file(path: Path) -> str | None:
    """Why `path` must not be read as a file (a directory, a FIFO, a socket, a device), else None.

    Opening a FIFO blocks until something writes to it: the audit would hang, so collectors refuse
    anything but regular files. A missing or unreadable path is None here: reading it says why.
    """
    try:
        mode = path.stat().st_mode
    except OSError:
        return None
    if stat.S_ISREG(mode):
        return None
    kinds = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
             (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"))
    kind = next((name for test, name in kinds if test(mode)), "not a file")
    return f"{kind}, not a regular file: not read"


def iter_services(facts: Facts) -> Iterator[dict[str, Any]]:
    """Every compose service of every project found (the unit most rules talk about)."""
    for project in facts.get("compose").get("projects", []):
        yield from project.get("services", {}).values()
