"""Drill records: what each restore drill proved, kept as JSON files in `<dest>/drills/` beside
the backups they prove, so whoever reads the backups (facts/backups.py too) sees the drills. Written
atomically; read without a database client (drill.py runs the drills).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from stackaudit import __version__
from stackaudit.backups.manifest import DRILLS_DIR, parse_time
from stackaudit.fsutil import atomic_write


@dataclass
class DrillRecord:
    id: str
    backup_id: str
    database: str
    started_at: str
    ok: bool = False
    finished_at: str | None = None
    checksum_ok: bool | None = None
    restore_ok: bool | None = None
    restore_seconds: float | None = None
    scratch_database: str | None = None
    scratch_dropped: bool | None = None
    counts_compared_with: str | None = None  # "manifest" (dump snapshot) | "source" (live now)
    tables_checked: int = 0
    rows_restored: int = 0
    mismatches: list[dict[str, Any]] = field(default_factory=list)
    server_version: str | None = None
    tool_version: str = f"stackaudit {__version__}"
    error: str | None = None

    @property
    def started(self) -> datetime:
        return parse_time(self.started_at)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DrillRecord:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


def drills_dir(dest: Path) -> Path:
    return dest / DRILLS_DIR


def save_record(dest: Path, record: DrillRecord) -> Path:
    directory = drills_dir(dest)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{record.id}.json"
    atomic_write(path, (json.dumps(record.to_json(), indent=2) + "\n").encode("utf-8"), mode=0o600)
    return path


def load_records(dest: Path) -> tuple[list[DrillRecord], list[str]]:
    """Every drill record, oldest first, and the files that could not be read."""
    records: list[DrillRecord] = []
    unreadable: list[str] = []
    directory = drills_dir(dest)
    if not directory.is_dir():
        return [], []
    for path in sorted(directory.glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            record = DrillRecord.from_json(data)
            record.started  # noqa: B018 - validates the timestamp
            records.append(record)
        except (OSError, UnicodeDecodeError, ValueError, TypeError) as exc:
            unreadable.append(f"{path.name}: {exc}")
    records.sort(key=lambda r: r.started)
    return records, unreadable
