"""Proven PostgreSQL backups: pg_dump with checksums, retention, offsite copies and restore drills.

Where things live: `--dest`, else `settings.backup_dest` (`[backup] dest`, STACKAUDIT_BACKUP_DEST),
else `<state_dir>/backups`. Drill records are kept beside the backups in `<dest>/drills/`, so the
one folder proves itself (see manifest.py for the layout).

Other features ask one question before a destructive step (removing a database volume, restarting
PostgreSQL with new settings): "is there a verified backup of database X newer than T?"
`find_verified_backup(settings, "shop", newer_than=t)` answers it, re-checking the file's sha256.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from stackaudit.backups.manifest import Manifest, delete_backup, inventory, newest_verified
from stackaudit.backups.retention import Decision, Policy, generations, plan
from stackaudit.config import Settings


def resolve_dest(settings: Settings, dest: Path | None = None) -> Path:
    if dest is not None:
        return dest
    if settings.backup_dest is not None:
        return settings.backup_dest
    return settings.state_dir / "backups"


def find_verified_backup(settings: Settings, database: str, newer_than: datetime | None = None, *,
                         dest: Path | None = None, recheck: bool = True) -> Manifest | None:
    """The newest verified backup of `database` started after `newer_than` (aware datetime), or None.

    With `recheck` (the default) the dump file (or every file of a directory dump) must still exist
    with its size and sha256, so a backup deleted or damaged since it was verified does not count.
    """
    from stackaudit.backups.dump import content_matches  # lazy: start-up

    folder = resolve_dest(settings, dest)
    candidates = inventory(folder).manifests
    while True:
        found = newest_verified(candidates, database, newer_than)
        if found is None or not recheck:
            return found
        if found.file is not None and content_matches(folder / found.file, found):
            return found
        candidates = [m for m in candidates if m.id != found.id]


def recent_verified_backup(settings: Settings, volume: Mapping[str, Any],
                           max_age_hours: float = 24.0) -> str | None:
    """For `stackaudit clean --volume`: a description of the backups that cover a database volume.

    A volume holds a whole cluster and nothing maps it to the databases inside with certainty, so
    every database this destination has backed up must have a verified, intact backup newer than
    `max_age_hours`; one stale or damaged database means "no" (None).
    """
    since = datetime.now(UTC) - timedelta(hours=max_age_hours)
    databases = sorted({m.database for m in inventory(resolve_dest(settings)).manifests})
    found = [find_verified_backup(settings, name, newer_than=since) for name in databases]
    if not databases or any(m is None for m in found):
        return None
    names = ", ".join(f"{m.database} ({m.id})" for m in found if m is not None)
    return f"verified backups from the last {max_age_hours:g} hours of {names} (volume {volume.get('name')})"


def apply_retention(dest: Path, policy: Policy | None = None) -> list[Decision]:
    """Plan retention over `dest` (pure, see retention.py) and delete what it does not keep."""
    decisions = plan(generations(inventory(dest)), policy)
    for decision in decisions:
        if not decision.keep:
            delete_backup(dest, decision.generation.id)
    return decisions


__all__ = ["Decision", "Manifest", "Policy", "apply_retention", "find_verified_backup", "resolve_dest"]
