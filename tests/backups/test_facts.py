"""The "backups" source reads manifests and drill records; BAK001/BAK002 judge what it collected."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from stackaudit.backups.manifest import Manifest, iso, partial_path, write_manifest
from stackaudit.backups.records import DrillRecord, save_record
from stackaudit.config import Settings
from stackaudit.facts import CollectContext, Facts, collect
from stackaudit.facts.backups import read_destination
from stackaudit.rules import evaluate

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def manifest(ident: str, database: str, hours_ago: float, good: bool = True) -> Manifest:
    return Manifest(id=ident, database=database, status="ok" if good else "failed", verified=good,
                    started_at=iso(NOW - timedelta(hours=hours_ago)), bytes=1000 if good else None,
                    file=f"{ident}.dump" if good else None, error=None if good else "pg_dump exited with 1")


def drill(database: str, backup: str, days_ago: float, ok: bool) -> DrillRecord:
    return DrillRecord(id=f"drill-{backup}", backup_id=backup, database=database,
                       started_at=iso(NOW - timedelta(days=days_ago)), ok=ok, restore_seconds=2.5,
                       error=None if ok else "pg_restore failed")


def make_dest(dest: Path) -> None:
    dest.mkdir()
    write_manifest(dest, manifest("shop-1", "shop", 30))
    write_manifest(dest, manifest("shop-2", "shop", 2))
    write_manifest(dest, manifest("crm-1", "crm", 50))
    write_manifest(dest, manifest("crm-2", "crm", 1, good=False))
    save_record(dest, drill("shop", "shop-1", 3, ok=True))
    save_record(dest, drill("crm", "crm-1", 1, ok=False))
    partial_path(dest, "shop-3").write_bytes(b"x")
    (dest / "garbage.json").write_text("{not json")


def test_collector_summarises_each_database(tmp_path: Path) -> None:
    dest = tmp_path / "backups"
    make_dest(dest)
    ctx = CollectContext(settings=Settings(backup_dest=dest), facts=Facts(), source="backups")

    data = read_destination(ctx, dest, NOW)

    assert data["summary"]["backups"] == 4 and data["summary"]["verified_backups"] == 3
    assert data["summary"]["newest_verified_age_hours"] == 2.0
    assert data["summary"]["newest_ok_drill_age_days"] == 3.0
    assert data["summary"]["incomplete_files"] == 1
    by_db = {d["database"]: d for d in data["databases"]}
    assert by_db["shop"]["newest_verified_id"] == "shop-2"
    assert by_db["shop"]["last_ok_drill_age_days"] == 3.0
    assert by_db["crm"]["newest_status"] == "failed" and by_db["crm"]["newest_verified_age_hours"] == 50.0
    assert by_db["crm"]["last_drill_ok"] is False and by_db["crm"]["last_ok_drill_age_days"] is None
    assert [e.where for e in ctx.facts.errors] == [str(dest)]  # garbage.json reported, not fatal


def test_rules_on_collected_facts_survive_a_snapshot(tmp_path: Path) -> None:
    dest = tmp_path / "backups"
    make_dest(dest)
    ctx = CollectContext(settings=Settings(backup_dest=dest), facts=Facts(), source="backups")
    facts = Facts(data={"backups": read_destination(ctx, dest, NOW)})
    settings = Settings(select=("BAK",))

    found, skipped = evaluate(facts, settings)
    again, _ = evaluate(Facts.from_json(facts.to_json()), settings)

    assert sorted((f.code, f.subject) for f in found) == [("BAK001", "crm"), ("BAK002", "crm")]
    assert found == again and not skipped


def test_collect_without_destination_reports_no_backups(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path, sources=("backups",))
    facts = collect(settings)
    data = facts.get("backups")
    assert data["dest"] == str(tmp_path / "backups") and data["dest_exists"] is False
    assert data["summary"]["backups"] == 0 and not facts.errors
