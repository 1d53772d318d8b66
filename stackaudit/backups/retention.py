"""Which backups to keep: daily/weekly/monthly generations. Pure: decisions from a list and a policy.

Each rule works like `borg prune` / `restic forget --keep-daily`: of the verified backups of a
database, keep the newest one in each of the last N days (weeks, months) that HAVE a backup, so a
week without backups does not silently shorten the history. The rules are applied independently
and their selections joined, so with daily backups the defaults (7/4/6) keep at most 17 dumps.

Two guards come before any rule, per database:
- nothing is deleted while the newest attempt (a manifest or a leftover partial dump) failed:
  the old dumps may be all there is;
- the newest verified backup is always kept.
Failed attempts and partial files older than the newest verified backup are deleted.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from stackaudit.backups.manifest import Inventory

_STAMP = re.compile(r"-\d{8}T\d{6}Z(-\d+)?$")


@dataclass(frozen=True)
class Policy:
    daily: int = 7
    weekly: int = 4
    monthly: int = 6


@dataclass(frozen=True)
class Generation:
    id: str
    database: str
    started: datetime
    good: bool  # finished and verified
    partial: bool = False  # a `.partial` file with no manifest (a killed run)


@dataclass(frozen=True)
class Decision:
    generation: Generation
    keep: bool
    reason: str


def _day(moment: datetime) -> Hashable:
    return moment.astimezone(UTC).date()


def _week(moment: datetime) -> Hashable:
    iso = moment.astimezone(UTC).isocalendar()
    return (iso.year, iso.week)


def _month(moment: datetime) -> Hashable:
    utc = moment.astimezone(UTC)
    return (utc.year, utc.month)


def _newest_per_bucket(good_newest_first: list[Generation], bucket: Callable[[datetime], Hashable],
                       count: int) -> set[str]:
    kept: set[str] = set()
    seen: set[Hashable] = set()
    for gen in good_newest_first:
        key = bucket(gen.started)
        if key in seen:
            continue
        if len(seen) >= count:
            break
        seen.add(key)
        kept.add(gen.id)
    return kept


def plan_database(generations: list[Generation], policy: Policy) -> list[Decision]:
    """Decisions for the generations of ONE database."""
    ordered = sorted(generations, key=lambda g: g.started, reverse=True)
    if not ordered:
        return []
    if not ordered[0].good:
        return [Decision(g, True, "the newest backup of this database failed: nothing is deleted until "
                                  "one succeeds") for g in ordered]
    good = [g for g in ordered if g.good]
    reasons: dict[str, str] = {good[0].id: "newest verified backup"}
    for label, bucket, count in (("daily", _day, policy.daily), ("weekly", _week, policy.weekly),
                                 ("monthly", _month, policy.monthly)):
        for ident in _newest_per_bucket(good, bucket, count):
            reasons.setdefault(ident, f"{label} generation")
    decisions = []
    for gen in ordered:
        if gen.id in reasons:
            decisions.append(Decision(gen, True, reasons[gen.id]))
        elif not gen.good:
            decisions.append(Decision(gen, False, "failed or unfinished, and a newer verified backup exists"))
        else:
            decisions.append(Decision(gen, False, "beyond the daily/weekly/monthly generations kept"))
    return decisions


def plan(generations: Iterable[Generation], policy: Policy | None = None) -> list[Decision]:
    """Decisions for every database, newest first within each."""
    policy = policy or Policy()
    by_database: dict[str, list[Generation]] = {}
    for gen in generations:
        by_database.setdefault(gen.database, []).append(gen)
    return [d for db in sorted(by_database) for d in plan_database(by_database[db], policy)]


def generations(inv: Inventory) -> list[Generation]:
    """The inventory as generations. A partial dump's database is read from its id prefix."""
    known = {m.id: m.database for m in inv.manifests}
    gens = [Generation(m.id, m.database, m.started, m.good) for m in inv.manifests]
    for ident, mtime in inv.partials:
        if ident not in known:
            gens.append(Generation(ident, _database_of(ident, inv), mtime, good=False, partial=True))
    return gens


def _database_of(ident: str, inv: Inventory) -> str:
    """`shop-20260101T000000Z` -> the database whose manifests share that prefix, else the prefix."""
    prefix = _STAMP.sub("", ident)
    for manifest in inv.manifests:
        if manifest.id.startswith(prefix + "-"):
            return manifest.database
    return prefix
