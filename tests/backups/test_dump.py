"""Backup and restore drill of a seeded database on real PostgreSQL 15 and 18."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from stackaudit.backups import find_verified_backup
from stackaudit.backups.drill import run_drill
from stackaudit.backups.dump import (
    BackupError,
    Client,
    Connection,
    backup_database,
    choose_client,
    dump_args,
    list_databases,
)
from stackaudit.backups.manifest import inventory, read_manifest
from stackaudit.backups.records import load_records
from stackaudit.cli import app
from stackaudit.config import Settings
from tests.backups.seed import EXPECTED_COUNTS, database_of, seed, server_dsn

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def seeded(pg_dsn: str) -> str:
    seed(pg_dsn)
    return pg_dsn


def test_backup_is_verified_with_manifest(seeded: str, tmp_path: Path) -> None:
    database = database_of(seeded)
    manifest = backup_database(Connection.from_dsn(seeded), database, tmp_path)

    assert manifest.good, manifest.error
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{manifest.id}.dump", f"{manifest.id}.json"]
    on_disk = read_manifest(tmp_path / f"{manifest.id}.json")
    assert on_disk.verified and on_disk.sha256 == manifest.sha256
    assert on_disk.bytes == (tmp_path / f"{manifest.id}.dump").stat().st_size
    assert on_disk.row_counts == EXPECTED_COUNTS  # exact, in the dump's own snapshot
    assert on_disk.row_estimates["sales.orders"] > 150_000  # reltuples after ANALYZE
    assert on_disk.verification["pg_restore_list_ok"] and on_disk.verification["sha256_reread_ok"]
    with psycopg.connect(seeded) as conn:
        major = int(conn.execute("SHOW server_version_num").fetchone()[0]) // 10000  # type: ignore[index]
    assert on_disk.server_major == major
    assert on_disk.client and f"pg_dump {major}" in on_disk.client
    assert on_disk.duration_seconds is not None and on_disk.finished_at


def test_drill_restores_into_scratch_and_counts_match(seeded: str, tmp_path: Path) -> None:
    connection = Connection.from_dsn(server_dsn(seeded))
    manifest = backup_database(connection, database_of(seeded), tmp_path)
    before = set(list_databases(connection))

    record = run_drill(connection, tmp_path, manifest)

    assert record.ok, (record.error, record.mismatches)
    assert record.checksum_ok and record.restore_ok and record.scratch_dropped
    assert record.scratch_database and record.scratch_database.startswith("stackaudit_drill_")
    assert record.tables_checked == len(EXPECTED_COUNTS)
    assert record.rows_restored == sum(EXPECTED_COUNTS.values())
    assert record.counts_compared_with == "manifest"
    assert record.restore_seconds is not None and record.restore_seconds > 0
    assert set(list_databases(connection)) == before  # scratch dropped, source still there
    records, unreadable = load_records(tmp_path)
    assert [r.id for r in records] == [record.id] and not unreadable


def test_drill_falls_back_to_source_counts(seeded: str, tmp_path: Path) -> None:
    connection = Connection.from_dsn(seeded)
    manifest = backup_database(connection, database_of(seeded), tmp_path, exact_count_limit_bytes=0)
    assert manifest.good and manifest.row_counts is None

    record = run_drill(connection, tmp_path, manifest)

    assert record.ok and record.counts_compared_with == "source"


def test_find_verified_backup(seeded: str, tmp_path: Path) -> None:
    database = database_of(seeded)
    manifest = backup_database(Connection.from_dsn(seeded), database, tmp_path)
    settings = Settings(backup_dest=tmp_path)

    found = find_verified_backup(settings, database, newer_than=manifest.started.replace(year=2000))
    assert found is not None and found.id == manifest.id
    assert find_verified_backup(settings, database, newer_than=manifest.started) is None
    assert find_verified_backup(settings, "other_db") is None
    (tmp_path / f"{manifest.id}.dump").unlink()
    assert find_verified_backup(settings, database) is None  # the file must still be there


def test_cli_backup_list_and_drill_json(seeded: str, tmp_path: Path, state_dir: Path) -> None:
    runner = CliRunner()
    database = database_of(seeded)
    dest = tmp_path / "dest"

    result = runner.invoke(app, ["backup", "--pg", seeded, "--dest", str(dest), "--databases", database,
                                 "--format", "json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    [row] = payload["backups"]
    assert {"id", "database", "path", "bytes", "sha256", "verified"} <= set(row)
    assert row["verified"] is True and row["database"] == database
    assert Path(row["path"]).stat().st_size == row["bytes"]

    listed = runner.invoke(app, ["backup", "list", "--dest", str(dest), "--format", "json"])
    assert listed.exit_code == 0, listed.output
    assert [(b["id"], b["verified"]) for b in json.loads(listed.stdout)["backups"]] == [(row["id"], True)]
    table = runner.invoke(app, ["backup", "list", "--dest", str(dest)], env={"COLUMNS": "200"})
    assert row["id"] in table.stdout and "verified" in table.stdout

    drill = runner.invoke(app, ["restore-drill", "--pg", seeded, "--dest", str(dest), "--format", "json"])
    assert drill.exit_code == 0, drill.output
    [record] = json.loads(drill.stdout)["drills"]
    assert record["ok"] is True and record["backup_id"] == row["id"]


def test_cli_backup_defaults_to_all_databases_under_state_dir(seeded: str, state_dir: Path) -> None:
    result = CliRunner().invoke(app, ["backup", "--pg", server_dsn(seeded), "--format", "json",
                                      "--no-prune"])
    assert result.exit_code == 0, result.output
    databases = {b["database"] for b in json.loads(result.stdout)["backups"]}
    assert {"postgres", database_of(seeded)} <= databases
    assert not any(d.startswith("template") for d in databases)
    assert all(m.good for m in inventory(state_dir / "backups").manifests)


def test_docker_exec_client_keeps_password_out_of_argv() -> None:
    connection = Connection.from_dsn("postgresql://app:Pw-In-Dsn-123@db.internal:5433/shop")
    client = Client(connection, container="stack-db-1", docker_host="unix:///run/docker.sock")

    argv = client.argv("pg_dump", dump_args(client, "shop", "00000003-1"))
    env = client.env()

    assert argv[1:6] == ["exec", "-e", "PGPASSWORD", "stack-db-1", "pg_dump"]
    assert "--dbname=dbname=shop user=app" in argv and "--snapshot=00000003-1" in argv
    assert "Pw-In-Dsn-123" not in " ".join(argv)
    assert env["PGPASSWORD"] == "Pw-In-Dsn-123" and env["DOCKER_HOST"] == "unix:///run/docker.sock"
    host_client = Client(connection, bin_dir=Path("/usr/lib/postgresql/15/bin"))
    host_argv = " ".join(host_client.argv("pg_dump", dump_args(host_client, "shop", None)))
    assert "host=db.internal" in host_argv and "port=5433" in host_argv
    assert "Pw-In-Dsn-123" not in host_argv


def test_no_matching_client_and_no_container_is_a_clear_error() -> None:
    with pytest.raises(BackupError) as error:
        choose_client(Connection.from_dsn("postgresql://u@h/db"), 11)
    assert "postgresql-client-11" in str(error.value)
