"""Backups at pg_dump speed without losing the proof (issue #17), on real PostgreSQL 15 and 18.

- exact row counts come from the dump's own snapshot, counted while pg_dump runs: a row inserted
  during the dump is neither counted nor dumped, and the drill still proves every count;
- `backup --jobs N`: pg_dump's directory format with a sha256 per file, the same verification,
  drill (pg_restore -j), retention and offsite copy as a single-file dump.
"""

from __future__ import annotations

import hashlib
import json
import threading
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from stackaudit.backups import apply_retention, find_verified_backup
from stackaudit.backups.drill import run_drill
from stackaudit.backups.dump import Connection, backup_database, count_rows
from stackaudit.backups.manifest import SUMS_FILE, inventory, read_manifest
from stackaudit.backups.offsite import FolderRemote, S3Remote, parse_remote, send_backup
from stackaudit.backups.retention import Policy
from stackaudit.cli import app
from stackaudit.config import Settings
from tests.backups.seed import EXPECTED_COUNTS, database_of, flip_byte, seed, server_dsn
from tests.backups.test_offsite import BUCKET, S3Server
from tests.backups.test_offsite import aws_env as aws_env
from tests.backups.test_offsite import s3_server as s3_server

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def seeded(pg_dsn: str) -> str:
    seed(pg_dsn)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE public.feed (id bigserial PRIMARY KEY, at timestamptz DEFAULT now())")
    return pg_dsn


def live_count(dsn: str, table: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
    return int(row[0]) if row else -1


def test_rows_inserted_during_the_dump_are_neither_counted_nor_dumped(seeded: str, tmp_path: Path) -> None:
    before = live_count(seeded, "public.feed")
    writer = psycopg.connect(seeded, autocommit=True)
    inserted: list[int] = []

    def insert_while_streaming(_written: int) -> None:  # called as pg_dump's bytes arrive
        writer.execute("INSERT INTO public.feed DEFAULT VALUES")
        inserted.append(1)

    try:
        manifest = backup_database(Connection.from_dsn(seeded), database_of(seeded), tmp_path,
                                   progress=insert_while_streaming)
    finally:
        writer.close()
    assert manifest.good, manifest.error
    assert inserted and live_count(seeded, "public.feed") == before + len(inserted)
    assert manifest.row_counts is not None and manifest.snapshot_consistent_counts
    assert manifest.row_counts["public.feed"] == before  # counted in the dump's snapshot
    assert {k: v for k, v in manifest.row_counts.items() if k != "public.feed"} == EXPECTED_COUNTS

    record = run_drill(Connection.from_dsn(server_dsn(seeded)), tmp_path, manifest)
    assert record.ok, (record.error, record.mismatches)  # restored rows == the counts, table by table
    assert record.counts_compared_with == "manifest" and record.mismatches == []


def test_a_writer_during_a_directory_dump_keeps_counts_exact(seeded: str, tmp_path: Path) -> None:
    stop = threading.Event()
    writes: list[int] = []

    def write() -> None:
        with psycopg.connect(seeded, autocommit=True) as conn:
            while not stop.is_set():
                conn.execute("INSERT INTO public.feed DEFAULT VALUES")
                writes.append(1)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        manifest = backup_database(Connection.from_dsn(seeded), database_of(seeded), tmp_path, jobs=2)
    finally:
        stop.set()
        writer.join()
    assert manifest.good, manifest.error
    assert writes and manifest.row_counts is not None
    assert live_count(seeded, "public.feed") > manifest.row_counts["public.feed"]
    record = run_drill(Connection.from_dsn(server_dsn(seeded)), tmp_path, manifest)
    assert record.ok and record.counts_compared_with == "manifest", (record.error, record.mismatches)


def test_jobs_write_a_directory_with_a_checksum_per_file(seeded: str, tmp_path: Path) -> None:
    manifest = backup_database(Connection.from_dsn(seeded), database_of(seeded), tmp_path, jobs=2)

    assert manifest.good, manifest.error
    folder = tmp_path / f"{manifest.id}.dir"
    assert manifest.format == "directory" and manifest.jobs == 2 and manifest.file == folder.name
    assert sorted(p.name for p in tmp_path.iterdir()) == [folder.name, f"{manifest.id}.json"]
    on_disk = read_manifest(tmp_path / f"{manifest.id}.json")
    assert on_disk.files is not None and "toc.dat" in on_disk.files and len(on_disk.files) > 3
    for name, info in on_disk.files.items():
        data = (folder / name).read_bytes()
        assert info == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    assert on_disk.bytes == sum(f["bytes"] for f in on_disk.files.values())
    sums = (folder / SUMS_FILE).read_bytes()
    assert hashlib.sha256(sums).hexdigest() == on_disk.sha256
    assert sums.decode().splitlines()[0].endswith(f"  {sorted(on_disk.files)[0]}")
    assert on_disk.verification["pg_restore_list_ok"] and on_disk.verification["sha256_reread_ok"]
    assert on_disk.row_counts is not None
    assert on_disk.row_counts["sales.orders"] == EXPECTED_COUNTS["sales.orders"]

    settings = Settings(backup_dest=tmp_path)
    assert find_verified_backup(settings, manifest.database) is not None
    record = run_drill(Connection.from_dsn(server_dsn(seeded)), tmp_path, manifest)
    assert record.ok, (record.error, record.mismatches)
    assert record.rows_restored >= sum(EXPECTED_COUNTS.values())


def test_a_changed_file_in_a_directory_dump_is_caught(seeded: str, tmp_path: Path) -> None:
    manifest = backup_database(Connection.from_dsn(seeded), database_of(seeded), tmp_path, jobs=2)
    assert manifest.good and manifest.files
    folder = tmp_path / f"{manifest.id}.dir"
    biggest = max(manifest.files, key=lambda n: manifest.files[n]["bytes"])  # type: ignore[index]
    flip_byte(folder / biggest, manifest.files[biggest]["bytes"] // 2)

    assert find_verified_backup(Settings(backup_dest=tmp_path), manifest.database) is None
    record = run_drill(Connection.from_dsn(server_dsn(seeded)), tmp_path, manifest)
    assert record.ok is False and record.checksum_ok is False


def test_retention_removes_a_directory_dump(seeded: str, tmp_path: Path) -> None:
    old = backup_database(Connection.from_dsn(seeded), database_of(seeded), tmp_path, jobs=2,
                          now=lambda: datetime(2026, 1, 1, 2, tzinfo=UTC))
    newest = backup_database(Connection.from_dsn(seeded), database_of(seeded), tmp_path, jobs=2)
    assert old.good and newest.good and (tmp_path / f"{old.id}.dir").is_dir()
    decisions = apply_retention(tmp_path, Policy(0, 0, 0))  # only the newest verified one stays
    assert [d.generation.id for d in decisions if not d.keep] == [old.id]
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{newest.id}.dir", f"{newest.id}.json"]
    assert [m.id for m in inventory(tmp_path).manifests] == [newest.id]


def test_directory_dump_offsite_to_a_folder_and_s3(seeded: str, tmp_path: Path, s3_server: S3Server,
                                                   aws_env: None) -> None:
    dest = tmp_path / "dest"
    manifest = backup_database(Connection.from_dsn(seeded), database_of(seeded), dest, jobs=2)
    assert manifest.good and manifest.files
    folder_remote = parse_remote(str(tmp_path / "nas"))
    s3_remote = parse_remote(f"s3://{BUCKET}/dir-dumps", endpoint=s3_server.endpoint)
    assert isinstance(folder_remote, FolderRemote) and isinstance(s3_remote, S3Remote)

    s3_root = s3_server.root / BUCKET / "dir-dumps"
    for remote, root in ((folder_remote, tmp_path / "nas"), (s3_remote, s3_root)):
        result = send_backup(dest, manifest, remote)
        assert result["verified"] is True, result
        assert result["files"] == len(manifest.files) and result["mismatched_files"] == []
        copied = root / f"{manifest.id}.dir"
        assert (copied / SUMS_FILE).read_bytes() == (dest / f"{manifest.id}.dir" / SUMS_FILE).read_bytes()
        assert json.loads((root / f"{manifest.id}.json").read_text())["files"] == manifest.files
    with psycopg.connect(server_dsn(seeded), autocommit=True) as conn:
        conn.execute("SELECT 1")  # the source is untouched by all this
    assert count_rows(psycopg.connect(seeded, autocommit=True))["sales.customers"] == 500


def test_cli_backup_jobs_json_keeps_its_shape(seeded: str, tmp_path: Path, state_dir: Path) -> None:
    runner = CliRunner()
    dest = tmp_path / "dest"
    result = runner.invoke(app, ["backup", "--pg", seeded, "--dest", str(dest), "--databases",
                                 database_of(seeded), "--jobs", "2", "--no-prune", "--format", "json"])
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.stdout)["backups"]
    assert {"id", "database", "path", "bytes", "sha256", "verified"} <= set(row)
    assert row["verified"] is True and row["format"] == "directory" and Path(row["path"]).is_dir()
    drill = runner.invoke(app, ["restore-drill", "--pg", seeded, "--dest", str(dest), "--format", "json"])
    assert drill.exit_code == 0, drill.output
    assert json.loads(drill.stdout)["drills"][0]["ok"] is True

    bad = runner.invoke(app, ["backup", "--pg", seeded, "--dest", str(dest), "--jobs", "0"])
    assert bad.exit_code == 2 and "Traceback" not in bad.output
