"""The manifest beside every dump, and the inventory of a backup destination.

Layout of a destination (one flat folder, so `ls` tells the story):

    <dest>/<id>.dump            the pg_dump archive (custom format), complete and fsynced
    <dest>/<id>.dir/            or, with `backup --jobs N`, pg_dump's directory format, with a
                                SHA256SUMS file listing each file's sha256 (`sha256sum -c` works)
    <dest>/<id>.json            its manifest, written atomically and LAST
    <dest>/.<id>.dump.partial   a dump being written (or left by a killed run: never trusted)
    <dest>/.<id>.dir.partial/   the same for the directory format
    <dest>/drills/<drill>.json  restore-drill records (see drill.py)

A dump counts as good only when its manifest says `"status": "ok"` and `"verified": true`, and
`verified` is set only after `pg_restore --list` succeeded and a re-read of the file matched the
sha256 computed while streaming. A failed run writes a manifest with `"status": "failed"` (when the
disk still allows it) so retention and the rules can see that the newest attempt failed.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stackaudit.fsutil import atomic_write

MANIFEST_VERSION = 1
DUMP_SUFFIX = ".dump"
PARTIAL_SUFFIX = ".dump.partial"
DIRECTORY_FORMAT = "directory"
DIR_SUFFIX = ".dir"
DIR_PARTIAL_SUFFIX = ".dir.partial"
SUMS_FILE = "SHA256SUMS"
DRILLS_DIR = "drills"


@dataclass
class Manifest:
    id: str
    database: str
    status: str  # "ok" | "failed"
    verified: bool
    started_at: str  # ISO 8601, UTC
    finished_at: str | None = None
    duration_seconds: float | None = None
    file: str | None = None  # name inside the destination
    bytes: int | None = None
    sha256: str | None = None
    format: str = "custom"  # "custom" (one file) | "directory" (pg_dump -Fd -j, `jobs` workers)
    jobs: int | None = None
    files: dict[str, dict[str, Any]] | None = None  # directory format: name -> {"bytes", "sha256"}
    server_version: str | None = None
    server_major: int | None = None
    client: str | None = None  # "pg_dump (PostgreSQL) 15.14" and where it ran
    client_mode: str | None = None  # "host" | "docker-exec"
    tool_version: str | None = None
    snapshot_consistent_counts: bool = False
    row_estimates: dict[str, int] = field(default_factory=dict)  # "schema.table" -> reltuples
    row_counts: dict[str, int] | None = None  # exact, in the dump's snapshot, when cheap
    row_count_error: str | None = None  # why the exact counts are missing, if they failed
    verification: dict[str, Any] = field(default_factory=dict)
    offsite: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    manifest_version: int = MANIFEST_VERSION

    @property
    def started(self) -> datetime:
        return parse_time(self.started_at)

    @property
    def good(self) -> bool:
        return self.status == "ok" and self.verified

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Manifest:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


def parse_time(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")


_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def backup_id(database: str, started: datetime, dest: Path) -> str:
    """`<database>-<UTC time>`, made file-name safe and unique inside `dest`."""
    safe = _UNSAFE.sub("_", database).strip("._") or "db"
    base = f"{safe[:60]}-{started.astimezone(UTC):%Y%m%dT%H%M%SZ}"
    candidate, n = base, 1
    suffixes = (".json", DUMP_SUFFIX, PARTIAL_SUFFIX, DIR_SUFFIX, DIR_PARTIAL_SUFFIX)
    while any((dest / f"{candidate}{s}").exists() for s in suffixes):
        n += 1
        candidate = f"{base}-{n}"
    return candidate


def manifest_path(dest: Path, ident: str) -> Path:
    return dest / f"{ident}.json"


def dump_path(dest: Path, ident: str, fmt: str = "custom") -> Path:
    return dest / f"{ident}{DIR_SUFFIX if fmt == DIRECTORY_FORMAT else DUMP_SUFFIX}"


def partial_path(dest: Path, ident: str, fmt: str = "custom") -> Path:
    return dest / f".{ident}{DIR_PARTIAL_SUFFIX if fmt == DIRECTORY_FORMAT else PARTIAL_SUFFIX}"


def write_manifest(dest: Path, manifest: Manifest) -> Path:
    path = manifest_path(dest, manifest.id)
    atomic_write(path, (json.dumps(manifest.to_json(), indent=2) + "\n").encode("utf-8"), mode=0o600)
    return path


def read_manifest(path: Path) -> Manifest:
    """Raises ValueError for anything that is not a readable manifest."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or "id" not in data or "database" not in data:
            raise ValueError("not a stackaudit backup manifest")
        manifest = Manifest.from_json(data)
        manifest.started  # noqa: B018 - validates the timestamp
        return manifest
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, TypeError) as exc:
        raise ValueError(f"{path.name}: {exc}") from None


@dataclass(frozen=True)
class Inventory:
    manifests: list[Manifest]
    partials: list[tuple[str, datetime]]  # (id, mtime) of dumps never finished
    unreadable: list[str]  # "file: why"


def inventory(dest: Path) -> Inventory:
    """Every manifest and leftover partial dump in `dest`, oldest first."""
    manifests: list[Manifest] = []
    unreadable: list[str] = []
    partials: list[tuple[str, datetime]] = []
    if not dest.is_dir():
        return Inventory([], [], [])
    for path in sorted(dest.glob("*.json")):
        try:
            manifests.append(read_manifest(path))
        except ValueError as exc:
            unreadable.append(str(exc))
    for suffix in (PARTIAL_SUFFIX, DIR_PARTIAL_SUFFIX):
        for path in dest.glob(f".*{suffix}"):
            ident = path.name[1 : -len(suffix)]
            try:
                partials.append((ident, datetime.fromtimestamp(path.stat().st_mtime, UTC)))
            except OSError:
                continue
    manifests.sort(key=lambda m: m.started)
    partials.sort(key=lambda p: p[1])
    return Inventory(manifests, partials, unreadable)


def newest_verified(manifests: Iterable[Manifest], database: str,
                    newer_than: datetime | None = None) -> Manifest | None:
    good = [m for m in manifests if m.database == database and m.good]
    if newer_than is not None:
        good = [m for m in good if m.started > newer_than]
    return max(good, key=lambda m: m.started, default=None)


def delete_backup(dest: Path, ident: str) -> None:
    """Manifest first: interrupted half-way, what remains is a dump without a manifest (never trusted)."""
    manifest_path(dest, ident).unlink(missing_ok=True)
    for fmt in ("custom", DIRECTORY_FORMAT):
        for path in (dump_path(dest, ident, fmt), partial_path(dest, ident, fmt)):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
