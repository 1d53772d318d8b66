"""A journal of what a command changed: one JSON document per run in `<state_dir>/journal/`.

It is the record a person (or a later `rollback`) reads to know exactly what was done: every step is
appended as it happens and the whole document is rewritten atomically (temp file, fsync, rename), so
a crash leaves the journal as it was after the last completed step, with status "running".

    journal = Journal.start(settings.state_dir, "clean", meta={"keep": 3})
    journal.record({"action": "remove-image", "id": "sha256:...", "result": "removed"})
    journal.finish("done")

Steps are plain JSON-able dicts; each gets an "at" timestamp. `remediation_lock` is the one lock
every apply and rollback holds while it reads or writes these journals. The format is deliberately generic
(kind + meta + steps + status) so other commands can use it unchanged.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stackaudit.fsutil import atomic_write

KIND = "apply"  # the kind of the journals `apply` writes and `rollback` reads
LOCK_FILE = "remediation.lock"
JOURNAL_DIR = "journal"
JOURNAL_VERSION = 1
RUNNING = "running"


class ApplyError(RuntimeError):
    """Apply could not start (lock held, no DSN); the message says why."""


@contextmanager
def remediation_lock(state_dir: Path) -> Iterator[None]:
    """One apply/rollback at a time per state directory (flock: released by the kernel on SIGKILL)."""
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    with (state_dir / LOCK_FILE).open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ApplyError(
                f"another apply or rollback holds {state_dir / LOCK_FILE}: wait for it"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass
class Journal:
    path: Path
    document: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def start(cls, state_dir: Path, kind: str, meta: Mapping[str, Any] | None = None) -> Journal:
        """Create `<state_dir>/journal/<time>-<kind>-<random>.json` with status "running"."""
        directory = Path(state_dir) / JOURNAL_DIR
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        started = _now()
        stamp = started.replace(":", "").replace("-", "").replace("+0000", "Z").replace(".", "")
        journal_id = f"{stamp}-{kind}-{secrets.token_hex(3)}"
        journal = cls(directory / f"{journal_id}.json", {
            "version": JOURNAL_VERSION, "id": journal_id, "kind": kind, "started_at": started,
            "finished_at": None, "status": RUNNING, "pid": os.getpid(), "meta": dict(meta or {}),
            "steps": [],
        })
        journal._save()
        return journal

    @property
    def id(self) -> str:
        return str(self.document["id"])

    @property
    def steps(self) -> list[dict[str, Any]]:
        return list(self.document["steps"])

    def record(self, step: Mapping[str, Any]) -> None:
        """Append one step (a JSON-able dict) and write the journal before returning."""
        self.document["steps"].append({**step, "at": _now()})
        self._save()

    def finish(self, status: str, **extra: Any) -> None:
        """Close the journal: status such as "done", "partial", "failed"; extra keys are kept."""
        self.document.update(extra, status=status, finished_at=_now())
        self._save()

    def _save(self) -> None:
        data = json.dumps(self.document, indent=2, default=str).encode("utf-8")
        atomic_write(self.path, data, mode=0o600)

    @classmethod
    def load(cls, path: Path) -> Journal:
        return cls(path, json.loads(path.read_text(encoding="utf-8")))


def list_journals(state_dir: Path, kind: str | None = None) -> list[Journal]:
    """Every journal in the state directory, oldest first (file names sort by start time)."""
    directory = Path(state_dir) / JOURNAL_DIR
    if not directory.is_dir():
        return []
    journals = [Journal.load(p) for p in sorted(directory.glob("*.json"))]
    return [j for j in journals if kind is None or j.document.get("kind") == kind]
