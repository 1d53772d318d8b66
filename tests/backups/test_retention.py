"""Retention over simulated dates (pure), and its application to a folder."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from stackaudit.backups import apply_retention
from stackaudit.backups.manifest import Manifest, dump_path, inventory, iso, partial_path, write_manifest
from stackaudit.backups.retention import Generation, Policy, generations, plan

START = datetime(2025, 1, 1, 2, 0, tzinfo=UTC)


def daily(days: int, database: str = "shop", every: int = 1, good: bool = True) -> list[Generation]:
    return [Generation(f"{database}-{i}", database, START + timedelta(days=i), good)
            for i in range(0, days, every)]


def kept(decisions: list) -> set[str]:  # type: ignore[type-arg]
    return {d.generation.id for d in decisions if d.keep}


def test_daily_weekly_monthly_generations_over_400_days() -> None:
    gens = daily(400)
    newest = max(g.started for g in gens)
    keep = kept(plan(gens))
    kept_dates = sorted(g.started for g in gens if g.id in keep)

    assert len(keep) <= 7 + 4 + 6
    assert {f"shop-{i}" for i in range(393, 400)} <= keep  # the last 7 days
    weeks = {g.started.isocalendar()[:2] for g in gens if g.id in keep}
    assert len(weeks) >= 4
    months = {(d.year, d.month) for d in kept_dates}
    assert len(months) == 6  # one per month for the last 6 months with backups
    assert newest - kept_dates[0] < timedelta(days=6 * 31)
    for month in months:  # the monthly generation is the newest backup of its month
        in_month = [g for g in gens if (g.started.year, g.started.month) == month]
        assert max(in_month, key=lambda g: g.started).id in keep


def test_gaps_do_not_shorten_the_history() -> None:
    keep = kept(plan(daily(100, every=10), Policy(daily=7, weekly=0, monthly=0)))
    assert keep == {f"shop-{i}" for i in range(30, 100, 10)}


def test_nothing_deleted_when_newest_backup_failed() -> None:
    gens = [*daily(60), Generation("shop-failed", "shop", START + timedelta(days=61), good=False)]
    decisions = plan(gens)
    assert all(d.keep for d in decisions)
    assert "failed" in decisions[0].reason


def test_unfinished_partial_newer_than_newest_verified_blocks_deletion() -> None:
    gens = [*daily(60), Generation("shop-x", "shop", START + timedelta(days=70), False, partial=True)]
    assert all(d.keep for d in plan(gens))


def test_newest_verified_is_kept_even_with_empty_policy() -> None:
    decisions = plan(daily(30), Policy(daily=0, weekly=0, monthly=0))
    assert kept(decisions) == {"shop-29"}
    assert [d.reason for d in decisions if d.keep] == ["newest verified backup"]


def test_old_failures_are_removed_once_a_newer_backup_is_verified() -> None:
    gens = [Generation("shop-bad", "shop", START, good=False), *daily(3)[1:]]
    decisions = {d.generation.id: d for d in plan(gens)}
    assert decisions["shop-bad"].keep is False
    assert "failed" in decisions["shop-bad"].reason


def test_databases_are_independent() -> None:
    gens = [*daily(40, "shop"), *daily(40, "crm")[:-1],
            Generation("crm-failed", "crm", START + timedelta(days=39), good=False)]
    decisions = plan(gens, Policy(daily=2, weekly=0, monthly=0))
    shop = [d for d in decisions if d.generation.database == "shop"]
    crm = [d for d in decisions if d.generation.database == "crm"]
    assert sum(d.keep for d in shop) == 2
    assert all(d.keep for d in crm)  # crm's newest failed: keep everything of crm


def _write(dest: Path, ident: str, started: datetime, good: bool) -> None:
    if good:
        dump_path(dest, ident).write_bytes(b"PGDMP")
    write_manifest(dest, Manifest(id=ident, database="shop", status="ok" if good else "failed",
                                  verified=good, started_at=iso(started),
                                  file=dump_path(dest, ident).name if good else None))


def test_apply_retention_deletes_files(tmp_path: Path) -> None:
    for i in range(10):
        _write(tmp_path, f"shop-2025010{i}T020000Z", START + timedelta(days=i), True)
    leftover = partial_path(tmp_path, "shop-20241231T020000Z")  # a killed run, older than all
    leftover.write_bytes(b"half")
    os.utime(leftover, (START.timestamp() - 86400,) * 2)

    decisions = apply_retention(tmp_path, Policy(daily=3, weekly=0, monthly=0))

    remaining = inventory(tmp_path)
    assert [m.id for m in remaining.manifests] == [f"shop-2025010{i}T020000Z" for i in (7, 8, 9)]
    assert sorted(p.name for p in tmp_path.glob("*.dump")) == [f"shop-2025010{i}T020000Z.dump"
                                                               for i in (7, 8, 9)]
    assert remaining.partials == []  # the old leftover of a killed run is gone too
    assert sum(not d.keep for d in decisions) == 8  # 7 old generations + the partial
    assert {g.database for g in generations(inventory(tmp_path))} == {"shop"}
