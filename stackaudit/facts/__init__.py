"""Read-only collection of the outside world into `Facts`.

Each source is a module here with `collect(ctx: CollectContext) -> dict` returning JSON-like data.
A collector raises `SourceUnavailable` (or anything else) when the whole source cannot be read, and
calls `ctx.error(...)` for a part it could not read; both end up in `Facts.errors` and the audit goes
on. Sources run at the same time (they mostly wait on sockets), each once the sources it reads are
done (`AFTER`: compose after docker, postgres after compose, app after host and compose, ...); the facts
and errors are then put in the order of ALL_SOURCES, so a report never depends on which finished
first.
"""

from __future__ import annotations

import importlib
import json
import stat
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stackaudit import __version__, pacing
from stackaudit.config import ALL_SOURCES, Settings
from stackaudit.facts.fingerprints import fingerprints, fleet_key
from stackaudit.model import CollectionError, to_jsonable
from stackaudit.redact import remember, scrub_data, secret_places

FACTS_SCHEMA_VERSION = 1
FLEET_KEY_WHERE = "STACKAUDIT_FLEET_KEY"


class SourceUnavailable(Exception):
    """The whole source could not be read; the message is the user-facing reason (no secrets)."""


@dataclass
class Facts:
    """Collected data per source, plus a reason for every source (or part) that could not be read."""

    data: dict[str, dict[str, Any]] = field(default_factory=dict)
    errors: list[CollectionError] = field(default_factory=list)
    collected_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    # {"where", "fingerprint"} per secret met, when STACKAUDIT_FLEET_KEY was set (facts/fingerprints.py)
    secret_fingerprints: list[dict[str, str]] | None = None

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
        payload = {
            "schema_version": FACTS_SCHEMA_VERSION,
            "tool_version": __version__,
            "collected_at": self.collected_at,
            "data": scrub_data(self.data),
            "errors": scrub_data(to_jsonable(self.errors)),
        }
        if self.secret_fingerprints is not None:
            payload["secret_fingerprints"] = self.secret_fingerprints
        return payload

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
            secret_fingerprints=_fingerprints_of(payload.get("secret_fingerprints")),
        )

    @classmethod
    def load(cls, path: Path) -> Facts:
        try:
            return cls.from_json(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"cannot read facts snapshot {path}: {exc}") from None


def _fingerprints_of(value: Any) -> list[dict[str, str]] | None:
    """The snapshot's fingerprints (entries of another shape left out); None when it has none."""
    if not isinstance(value, list):
        return None
    return [{"where": e["where"], "fingerprint": e["fingerprint"]} for e in value
            if isinstance(e, dict) and isinstance(e.get("where"), str)
            and isinstance(e.get("fingerprint"), str)]


@dataclass
class CollectContext:
    """What a collector gets: the settings, what was collected so far, and a place for errors.

    `private` carries values between collectors in this process only (credentials found in the
    compose environment for the postgres collector, say); it is never saved or rendered. `errors`,
    when set, keeps this source's errors apart while sources run at the same time.
    """

    settings: Settings
    facts: Facts
    private: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    errors: list[CollectionError] | None = None
    finished: dict[str, threading.Event] = field(default_factory=dict)

    def error(self, where: str, why: str, source: str | None = None, invalid: bool = False) -> None:
        sink = self.facts.errors if self.errors is None else self.errors
        sink.append(CollectionError(source or self.source, where, why, invalid))

    def wait_for(self, *sources: str) -> None:
        """Block until these sources are done (those this collection runs at all; see LATER)."""
        for source in sources:
            if source in self.finished:
                self.finished[source].wait()


Progress = Callable[[str, str], None]  # (source, state) where state is "start" | "done" | "failed"

# What each collector reads of the others (ctx.facts, ctx.private): it starts once those are done
# (those that are collected at all). A source not listed here waits for every source before it in
# ALL_SOURCES, which is how collection ran before sources ran side by side.
AFTER: dict[str, tuple[str, ...]] = {
    "host": (),
    "docker": (),
    "compose": ("docker",),  # projects found from the containers' labels
    "env": ("compose",),
    "postgres": (),  # the stack's targets and credentials: ctx.wait_for (LATER)
    "app": ("host", "compose"),  # cores, services (the live cross-check is derived, derive/app.py)
    "redis": ("docker", "compose", "app"),  # whether a queue or a cache uses it
    "pgbouncer": ("docker", "compose", "app"),  # the stack's poolers and the apps' login users
    "monitoring": ("docker", "compose"),
    "tls": ("docker", "compose"),
    "backups": (),
}


# Sources a collector may need only for part of its work: it starts at once and calls
# ctx.wait_for(...) where it does (postgres needs the stack only to find its server when no DSN was
# given, and to say which container runs it: with --pg its queries overlap the docker source).
LATER: dict[str, tuple[str, ...]] = {
    "postgres": ("docker", "compose"),
}


# Sources whose time goes mostly to a database server's work (a new session's catalog reads, sizing
# every relation): they start first, before the others' modules are imported, so that work overlaps
# the CPU the other sources spend here (one interpreter lock: imports do not overlap each other).
SERVER_BOUND = ("postgres", "mysql")


def after(source: str) -> tuple[str, ...]:
    if source in AFTER:
        return AFTER[source]
    return ALL_SOURCES[:ALL_SOURCES.index(source)] if source in ALL_SOURCES else ALL_SOURCES


def collect(settings: Settings, progress: Progress | None = None) -> Facts:
    """Run every wanted collector, side by side where they do not depend on each other; never
    raises for a source that fails. Progress is reported from this thread, once per state."""
    run = _Run(settings, [s for s in ALL_SOURCES if settings.wants(s)], progress)
    pool = ThreadPoolExecutor(max_workers=max(1, len(run.wanted)), thread_name_prefix="collect")
    try:
        while run.waiting or run.running:
            run.start_ready(pool)
            run.finish(run.next_finished())
    finally:  # after an interrupt nothing more starts; running collectors end within their timeouts
        for done in run.done.values():
            done.set()  # and none of them waits for a source that will never finish
        pool.shutdown(wait=False, cancel_futures=True)
    facts = run.facts_in_order()
    add_fingerprints(facts)
    return facts


def add_fingerprints(facts: Facts, environ: dict[str, str] | None = None) -> None:
    """The secrets this process met as keyed fingerprints, when the fleet gave a key."""
    try:
        key = fleet_key(environ)
    except ValueError as exc:
        facts.errors.append(CollectionError("fleet", FLEET_KEY_WHERE, str(exc)))
        return
    if key is not None:
        remember(key.hex())  # the key is a secret too: scrubbed should it appear anywhere
        facts.secret_fingerprints = fingerprints(key, secret_places())


class _Run:
    """One collection: which sources wait for which, which run, what they found."""

    def __init__(self, settings: Settings, wanted: list[str], progress: Progress | None) -> None:
        self.wanted, self.progress = wanted, progress
        self.facts = Facts()
        private: dict[str, Any] = {}
        self.done = {s: threading.Event() for s in wanted}
        self.contexts = {s: CollectContext(settings, self.facts, private, s, errors=[], finished={
            w: self.done[w] for w in LATER.get(s, ()) if w in self.done}) for s in wanted}
        self.waiting = {s: set(after(s)) & set(wanted) for s in wanted}
        self.running: dict[Future[dict[str, Any] | None], str] = {}
        self.imported: set[str] = set()

    def start_ready(self, pool: ThreadPoolExecutor) -> None:
        """Each ready collector's module is imported here, then it starts: the SERVER_BOUND ones
        first, so their servers work while the next modules import."""
        ready = [s for s in self.wanted if s in self.waiting and not self.waiting[s]]
        for source in sorted(ready, key=lambda s: s not in SERVER_BOUND):
            del self.waiting[source]
            if source not in self.imported:
                self._import(source)
            if self.progress:
                self.progress(source, "start")
            self.running[pool.submit(run_collector, self.contexts[source], source)] = source

    def next_finished(self) -> set[Future[dict[str, Any] | None]]:
        """The next waiting collector's module is imported here, in this one thread, while the
        running ones mostly wait on sockets: imports overlap the waits, and two threads never
        import into each other's half-initialised modules. Then what has finished (or will next)."""
        unimported = [s for s in self.wanted if s in self.waiting and s not in self.imported]
        if unimported:
            self._import(unimported[0])
            return wait(self.running, timeout=0).done
        if not self.running:
            raise RuntimeError(f"sources wait for each other: {sorted(self.waiting)}")
        return wait(self.running, return_when=FIRST_COMPLETED).done

    def _import(self, source: str) -> None:
        self.imported.add(source)
        _collector_for(source)
        pacing.checkpoint()  # an import is the audit's own CPU too

    def finish(self, finished: set[Future[dict[str, Any] | None]]) -> None:
        for future in sorted(finished, key=lambda f: self.wanted.index(self.running[f])):
            source = self.running.pop(future)
            data = future.result()
            if data is not None:
                self.facts.data[source] = data
            for needs in self.waiting.values():
                needs.discard(source)
            self.done[source].set()
            if self.progress:  # bad input (a file Compose would refuse) fails its source too
                bad_input = any(e.invalid for e in self.contexts[source].errors or [])
                self.progress(source, "done" if data is not None and not bad_input else "failed")

    def facts_in_order(self) -> Facts:
        """Sources and errors in ALL_SOURCES order, whichever finished first."""
        self.facts.data = {s: self.facts.data[s] for s in self.wanted if s in self.facts.data}
        self.facts.errors = [e for s in self.wanted for e in self.contexts[s].errors or []]
        return self.facts


def collect_source(ctx: CollectContext, source: str) -> bool:
    """Collect one source into ctx.facts (a caller that wants just that one)."""
    data = run_collector(ctx, source)
    if data is not None:
        ctx.facts.data[source] = data
    return data is not None


def run_collector(ctx: CollectContext, source: str) -> dict[str, Any] | None:
    """The source's data, or None with the reason in ctx's errors."""
    ctx.source = source
    collector = _collector_for(source)
    if collector is None:
        ctx.error(source, "this version of stackaudit has no collector for it yet")
        return None
    try:
        return collector(ctx)
    except SourceUnavailable as exc:
        ctx.error(source, str(exc))
    except Exception as exc:  # noqa: BLE001 - a collector bug must not end the audit
        # str(), never repr(): a psycopg error's repr holds the connection string.
        ctx.error(source, f"unexpected {exc.__class__.__name__}: {exc}")
    finally:
        pacing.checkpoint()
    return None


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
