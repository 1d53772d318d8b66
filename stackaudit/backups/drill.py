"""Restore drill: prove a dump restores, and measure how long it takes (the recovery time to expect).

The dump is restored into a scratch database `stackaudit_drill_<db>_<time>` that the drill creates
and always drops; the source database is only read (for row counts when the manifest has none).
Success needs all three: the file still has its sha256, pg_restore finished without error, and every
table has exactly the rows the manifest counted in the dump's snapshot (or the source has now).
A flipped byte in a compressed dump usually breaks the restore; in an uncompressed one it can restore
wrong data silently, which is why the checksum is checked as well.

Each drill leaves a record (records.py).
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from stackaudit.backups.dump import (
    BackupError,
    Client,
    Connection,
    choose_client,
    content_matches,
    count_rows,
    server_version,
)
from stackaudit.backups.manifest import DIRECTORY_FORMAT, Manifest, inventory, iso
from stackaudit.backups.records import DrillRecord, save_record
from stackaudit.config import Settings
from stackaudit.redact import scrub

RESTORE_TIMEOUT_SECONDS = 24 * 3600
MAX_IDENTIFIER = 63  # NAMEDATALEN - 1


def scratch_name(database: str, started: datetime) -> str:
    safe = re.sub(r"[^a-z0-9_]+", "_", database.lower()).strip("_") or "db"
    stamp = f"{started.astimezone(UTC):%Y%m%d%H%M%S}"
    prefix = "stackaudit_drill_"
    return f"{prefix}{safe[: MAX_IDENTIFIER - len(prefix) - len(stamp) - 1]}_{stamp}"


def compare_counts(expected: dict[str, int], restored: dict[str, int]) -> list[dict[str, Any]]:
    """Tables whose restored row count differs, including tables missing on either side."""
    mismatches = []
    for table in sorted(set(expected) | set(restored)):
        want, got = expected.get(table), restored.get(table)
        if want != got:
            mismatches.append({"table": table, "expected_rows": want, "restored_rows": got})
    return mismatches


def run_drill(connection: Connection, dest: Path, manifest: Manifest, *, container: str | None = None,
              docker_host: str | None = None, now: Callable[[], datetime] | None = None) -> DrillRecord:
    """Restore `manifest`'s dump into a scratch database, check it, drop it, record the result."""
    clock = now or (lambda: datetime.now(UTC))
    started = clock()
    record = DrillRecord(id=f"drill-{manifest.id}-{started:%Y%m%dT%H%M%SZ}", backup_id=manifest.id,
                         database=manifest.database, started_at=iso(started))
    try:
        _drill(connection, dest, manifest, record, started, container, docker_host)
    except BackupError as exc:
        record.error = str(exc)
    except psycopg.Error as exc:
        record.error = scrub(f"PostgreSQL: {exc}").strip()
    except OSError as exc:
        record.error = scrub(f"{exc.__class__.__name__}: {exc}")
    record.ok = bool(record.error is None and record.checksum_ok and record.restore_ok
                     and not record.mismatches and record.scratch_dropped)
    record.finished_at = iso(clock())
    save_record(dest, record)
    return record


def _drill(connection: Connection, dest: Path, manifest: Manifest, record: DrillRecord,
           started: datetime, container: str | None, docker_host: str | None) -> None:
    directory = manifest.format == DIRECTORY_FORMAT
    path = dest / (manifest.file or "")
    if not manifest.file or not (path.is_dir() if directory else path.is_file()):
        raise BackupError(f"backup {manifest.id} has no dump {'folder' if directory else 'file'} in {dest}")
    record.checksum_ok = content_matches(path, manifest, manifest.jobs or 1)
    scratch = scratch_name(manifest.database, started)
    if scratch == manifest.database:
        raise BackupError("refusing to restore over the source database")
    with connection.connect() as admin:
        record.server_version, major = server_version(admin)
        # Only --container names one here, and naming it means "run pg_restore in there".
        client = choose_client(connection, major, container, docker_host,
                               prefer_container=container is not None)
        if directory and client.container is not None:
            raise BackupError("a directory-format dump (backup --jobs) is restored with pg_restore on "
                              "this host, not through docker exec")
        admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(scratch)))
        record.scratch_database = scratch
        try:
            record.restore_ok, record.restore_seconds, error = restore(client, path, scratch,
                                                                       manifest.jobs or 1)
            if not record.restore_ok:
                raise BackupError(f"pg_restore failed: {error}")
            with connection.connect(scratch) as conn:
                restored = count_rows(conn)
            expected = _expected_counts(connection, manifest, record)
            record.tables_checked = len(restored)
            record.rows_restored = sum(restored.values())
            record.mismatches = compare_counts(expected, restored)
        finally:
            record.scratch_dropped = _drop(admin, scratch)


def _expected_counts(connection: Connection, manifest: Manifest, record: DrillRecord) -> dict[str, int]:
    if manifest.row_counts is not None:
        record.counts_compared_with = "manifest"
        return manifest.row_counts
    record.counts_compared_with = "source"
    with connection.connect(manifest.database) as source:
        return count_rows(source)


def restore(client: Client, path: Path, scratch: str, jobs: int = 1) -> tuple[bool, float, str | None]:
    """pg_restore into `scratch` (`pg_restore -j` for a directory dump made with --jobs); (ok,
    seconds, error). Subscriptions are skipped: a restored subscription could start pulling from a
    production publisher."""
    args = ["--no-owner", "--no-privileges", "--no-subscriptions", "--no-publications",
            "--exit-on-error", "--no-password", f"--dbname={client.dbname_arg(scratch)}",
            *([f"--jobs={jobs}"] if jobs > 1 else [])]
    began = time.monotonic()
    if client.container is None:
        result = subprocess.run(client.argv("pg_restore", [*args, str(path)]), capture_output=True,
                                env=client.env(), timeout=RESTORE_TIMEOUT_SECONDS, check=False)
    else:
        with path.open("rb") as handle:
            result = subprocess.run(client.argv("pg_restore", args, stdin=True), stdin=handle,
                                    capture_output=True, env=client.env(),
                                    timeout=RESTORE_TIMEOUT_SECONDS, check=False)
    seconds = round(time.monotonic() - began, 3)
    if result.returncode == 0:
        return True, seconds, None
    return False, seconds, scrub(result.stderr.decode("utf-8", "replace").strip()[-800:]) or "no message"


def _drop(admin: psycopg.Connection[Any], scratch: str) -> bool:
    try:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(scratch)))
        return True
    except psycopg.Error:
        return False


def choose_backups(manifests: list[Manifest], backup: str | None) -> list[Manifest]:
    """The backup named, or the newest verified backup of each database."""
    if backup is not None:
        return [m for m in manifests if m.id == backup]
    newest: dict[str, Manifest] = {}
    for manifest in manifests:  # oldest first, so the last one wins
        if manifest.good:
            newest[manifest.database] = manifest
    return [newest[db] for db in sorted(newest)]


def run_drills(settings: Settings, dest: Path, backup: str | None = None, container: str | None = None,
               progress: Callable[[Manifest, DrillRecord | None], None] | None = None) -> list[DrillRecord]:
    """Drill the chosen backups; raises BackupError when there is nothing to drill."""
    # MariaDB/MySQL dumps in the same folder are drilled by `restore-drill --mysql` (mysql_dump.py)
    chosen = choose_backups([m for m in inventory(dest).manifests if m.format != "mysql-sql"], backup)
    if not chosen:
        wanted = f"backup {backup}" if backup else "verified backup"
        raise BackupError(f"found no {wanted} in {dest}")
    connection = Connection.from_dsn(settings.pg_dsn)
    records = []
    for manifest in chosen:
        if progress:
            progress(manifest, None)
        record = run_drill(connection, dest, manifest, container=container, docker_host=settings.docker_host)
        if progress:
            progress(manifest, record)
        records.append(record)
    return records
