"""Source "backups": the manifests and restore-drill records in the backup destination.

Ages are measured here, at collection time, so `audit --facts` on a saved snapshot judges the same
ages (rules never look at the clock). A missing destination is not an error: "no backups" is the
fact BAK001 judges.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stackaudit.backups import resolve_dest
from stackaudit.backups.manifest import Inventory, Manifest, inventory
from stackaudit.backups.records import DrillRecord, load_records
from stackaudit.facts import CollectContext

LISTED = 50  # newest backups and drills listed in the facts; the summaries cover all of them


def collect(ctx: CollectContext, now: datetime | None = None) -> dict[str, Any]:
    dest = resolve_dest(ctx.settings)
    return read_destination(ctx, dest, now or datetime.now(UTC))


def read_destination(ctx: CollectContext, dest: Path, now: datetime) -> dict[str, Any]:
    inv = inventory(dest)
    drills, unreadable_drills = load_records(dest)
    for problem in inv.unreadable + unreadable_drills:
        ctx.error(str(dest), f"unreadable backup record {problem}")
    names = sorted({m.database for m in inv.manifests})
    databases = [_database_summary(db, inv, drills, now) for db in names]
    verified = [m for m in inv.manifests if m.good]
    ok_drills = [d for d in drills if d.ok]
    return {
        "dest": str(dest),
        "dest_exists": dest.is_dir(),
        "summary": {
            "backups": len(inv.manifests),
            "verified_backups": len(verified),
            "databases": len(databases),
            "newest_verified_age_hours": _age_hours(max((m.started for m in verified), default=None), now),
            "newest_ok_drill_age_days": _age_days(max((d.started for d in ok_drills), default=None), now),
            "verified_bytes": sum(m.bytes or 0 for m in verified),
            "incomplete_files": len(inv.partials),
        },
        "databases": databases,
        "backups": [_backup_row(m, now) for m in inv.manifests[-LISTED:]],
        "drills": [_drill_row(d, now) for d in drills[-LISTED:]],
        "incomplete": [{"id": ident, "modified_at": t.isoformat(timespec="seconds")}
                       for ident, t in inv.partials],
    }


def _age_hours(moment: datetime | None, now: datetime) -> float | None:
    return None if moment is None else round((now - moment).total_seconds() / 3600, 2)


def _age_days(moment: datetime | None, now: datetime) -> float | None:
    return None if moment is None else round((now - moment).total_seconds() / 86400, 2)


def _database_summary(database: str, inv: Inventory, drills: list[DrillRecord],
                      now: datetime) -> dict[str, Any]:
    mine = [m for m in inv.manifests if m.database == database]
    verified = [m for m in mine if m.good]
    newest = mine[-1]
    good = verified[-1] if verified else None
    my_drills = [d for d in drills if d.database == database]
    ok_drills = [d for d in my_drills if d.ok]
    last_ok = ok_drills[-1] if ok_drills else None
    last = my_drills[-1] if my_drills else None
    return {
        "database": database,
        "backups": len(mine),
        "verified_backups": len(verified),
        "newest_id": newest.id,
        "newest_status": "ok" if newest.good else "failed",
        "newest_error": newest.error,
        "newest_verified_id": good.id if good else None,
        "newest_verified_at": good.started_at if good else None,
        "newest_verified_age_hours": _age_hours(good.started if good else None, now),
        "newest_verified_bytes": good.bytes if good else None,
        "newest_verified_offsite": bool(good and any(o.get("verified") for o in good.offsite)),
        "last_drill_id": last.id if last else None,
        "last_drill_ok": last.ok if last else None,
        "last_drill_error": last.error if last else None,
        "last_ok_drill_at": last_ok.started_at if last_ok else None,
        "last_ok_drill_age_days": _age_days(last_ok.started if last_ok else None, now),
        "last_ok_drill_restore_seconds": last_ok.restore_seconds if last_ok else None,
    }


def _backup_row(m: Manifest, now: datetime) -> dict[str, Any]:
    return {"id": m.id, "database": m.database, "status": m.status, "verified": m.good,
            "started_at": m.started_at, "age_hours": _age_hours(m.started, now), "bytes": m.bytes,
            "duration_seconds": m.duration_seconds, "server_version": m.server_version,
            "offsite_verified": any(o.get("verified") for o in m.offsite), "error": m.error}


def _drill_row(d: DrillRecord, now: datetime) -> dict[str, Any]:
    return {"id": d.id, "backup_id": d.backup_id, "database": d.database, "ok": d.ok,
            "started_at": d.started_at, "age_days": _age_days(d.started, now),
            "restore_seconds": d.restore_seconds, "tables_checked": d.tables_checked,
            "mismatches": len(d.mismatches), "error": d.error}
