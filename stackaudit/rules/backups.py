"""Backup rules: is there a recent verified dump, and has one been restored lately (BAK)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from stackaudit.config import Settings
from stackaudit.facts import Facts
from stackaudit.model import Evidence, Hit, Phase, Recommendation, Risk, Severity
from stackaudit.rules import rule

NOT_BACKED_UP = frozenset({"template0", "template1", "postgres"})  # "postgres" only when it has dumps


def live_databases(facts: Facts) -> list[str]:
    """Databases the postgres source saw (strings or dicts with a name), minus templates/maintenance."""
    names = []
    for entry in facts.get("postgres").get("databases", []) or []:
        if isinstance(entry, dict):
            entry = entry.get("name") or entry.get("datname") or entry.get("database")
        name = entry
        if isinstance(name, str) and name not in NOT_BACKED_UP:
            names.append(name)
    return names


def _sentence(text: Any) -> str:
    return f"{str(text or 'no message').strip().rstrip('.')}."


def _by_database(facts: Facts) -> dict[str, dict[str, Any]]:
    return {d["database"]: d for d in facts.get("backups").get("databases", [])}


def _backup_recommendation(dest: str) -> Recommendation:
    return Recommendation(
        summary="Run `stackaudit backup` at least daily (a cron job or systemd timer) and copy each "
                "verified dump offsite with --offsite.",
        estimated_effect="A lost disk or a bad migration costs at most a day of data instead of all of it.",
        risk=Risk.SAFE, effort_minutes=30, phase=Phase.NOW,
        action=f"stackaudit backup --dest {dest} --offsite s3://BUCKET/PREFIX")


@rule("BAK001", "backup-missing-or-stale", Severity.HIGH, needs=("backups",))
def backup_missing_or_stale(facts: Facts, settings: Settings) -> Iterator[Hit]:
    """
    ## What it checks
    For every database with backups in the destination, and every database the postgres source
    found (templates and an unused `postgres` database aside): the newest backup that finished AND
    was verified (`pg_restore --list` read it and its sha256 matched when re-read) is younger than
    26 hours. No verified backup at all is critical.

    ## Why it matters
    A backup that was never taken, failed last night, or was written half (disk full, server
    restarted) is discovered on the day it is needed. "docker-compose down" is not a backup: it
    stops the stack and copies nothing.

    ## Recommendation
    Schedule `stackaudit backup` daily; it dumps with the server's own pg_dump version, verifies
    the archive, keeps 7 daily / 4 weekly / 6 monthly generations and copies them offsite.
    Tune the age with `[thresholds.BAK001] max_age_hours`.

    ## Estimated effect
    Bounds data loss to the backup interval (a day) instead of everything since the last copy.

    ## Fix safety
    Safe: pg_dump reads in one snapshot and does not block writes; it needs disk space in the
    destination (about the compressed size of the data).

    ## References
    - PostgreSQL docs, "SQL Dump": https://www.postgresql.org/docs/current/backup-dump.html
    - PostgreSQL docs, pg_dump (--format=custom, --snapshot):
      https://www.postgresql.org/docs/current/app-pgdump.html
    - PostgreSQL docs, pg_restore (--list): https://www.postgresql.org/docs/current/app-pgrestore.html
    """
    limit = settings.threshold("BAK001", "max_age_hours")
    data = facts.get("backups")
    dest = str(data.get("dest", "the backup destination"))
    known = _by_database(facts)
    for database in sorted(set(known) | set(live_databases(facts))):
        info = known.get(database)
        age = info.get("newest_verified_age_hours") if info else None
        last_failed = bool(info and info.get("newest_status") == "failed")
        failure = ""
        if last_failed and info:
            failure = f" The last attempt failed: {_sentence(info.get('newest_error'))}"
        evidence = [Evidence("backups", "newest_verified_age_hours", age, f"<= {limit:g}"),
                    Evidence("backups", "dest", dest),
                    Evidence("backups", "newest_status", info.get("newest_status") if info else None)]
        if age is None:
            yield Hit(database, f"Database {database} has no verified backup in {dest}.{failure}",
                      _backup_recommendation(dest), evidence, Severity.CRITICAL)
        elif age > limit:
            yield Hit(database, f"The newest verified backup of database {database} is {age:.1f} hours "
                      f"old (limit {limit:g} hours).{failure}", _backup_recommendation(dest), evidence)


@rule("BAK002", "backup-never-restored", Severity.MEDIUM, needs=("backups",))
def backup_never_restored(facts: Facts, settings: Settings) -> Iterator[Hit]:
    """
    ## What it checks
    For every database that has verified backups: a restore drill succeeded within the last 35
    days. A drill restores a dump into a scratch database, checks the exact row count of every
    table against the dump's snapshot, measures the restore time and drops the scratch database.

    ## Why it matters
    A backup is proven only by restoring it. `pg_restore --list` accepts a dump cut in half, a
    dump of an uncompressed archive with one flipped byte restores wrong data, and missing roles,
    extensions or disk space show up only during a real restore. The drill also tells how long
    recovery takes.

    ## Recommendation
    Run `stackaudit restore-drill` monthly (after a backup, from a cron job); it never touches the
    source database. Tune the interval with `[thresholds.BAK002] max_age_days`.

    ## Estimated effect
    Turns "we have backups" into a known recovery time with evidence that the data comes back.

    ## Fix safety
    Safe: the drill creates and drops its own database `stackaudit_drill_*`; it needs free disk on
    the server for one extra copy of the database while it runs.

    ## References
    - PostgreSQL docs, pg_restore: https://www.postgresql.org/docs/current/app-pgrestore.html
    - PostgreSQL docs, "Backup and Restore": https://www.postgresql.org/docs/current/backup.html
    """
    limit = settings.threshold("BAK002", "max_age_days")
    for database, info in sorted(_by_database(facts).items()):
        if not info.get("verified_backups"):
            continue  # BAK001 covers a database without a verified backup
        age = info.get("last_ok_drill_age_days")
        evidence = [Evidence("backups", "last_ok_drill_age_days", age, f"<= {limit:g}"),
                    Evidence("backups", "last_drill_ok", info.get("last_drill_ok"))]
        last_error = info.get("last_drill_error")
        failed = ""
        if info.get("last_drill_ok") is False:
            failed = f" The last drill failed: {_sentence(last_error)}"
        recommendation = Recommendation(
            summary=f"Run `stackaudit restore-drill` for {database} now and monthly from then on.",
            estimated_effect="Proves the backups restore and measures the recovery time.",
            risk=Risk.SAFE, effort_minutes=15, phase=Phase.WEEK, action="stackaudit restore-drill")
        if age is None:
            yield Hit(database, f"No backup of database {database} has ever been restored successfully in a "
                      f"drill.{failed}", recommendation, evidence, Severity.HIGH)
        elif age > limit:
            yield Hit(database, f"The last successful restore drill of database {database} was {age:.0f} "
                      f"days ago (limit {limit:g} days).{failed}", recommendation, evidence)
