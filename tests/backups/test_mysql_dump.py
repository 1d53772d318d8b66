"""MariaDB backups and restore drills against the real MariaDB 10.11 fixture (mariadb-dump, mariadb)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from stackaudit.backups.manifest import inventory
from stackaudit.backups.mysql_dump import (
    MYSQL_FORMAT,
    Tools,
    backup_database,
    choose_tools,
    container_tools,
    inspect_dump,
    run_drill,
)
from stackaudit.cli import _load_commands, app
from stackaudit.mysqlconn import parse_url
from tests.mysql_server import ROOT_PASSWORD, MariaDBServer

# audit/collect renice their process (nice 19): in-process runs must not renice pytest itself
IN_PROCESS = {"STACKAUDIT_NICE": "0"}

DB = "bk_shop"
# quotes, "),(" and a newline inside strings, binary data, a backtick in a table name
SEED = (
    f"DROP DATABASE IF EXISTS {DB}", f"CREATE DATABASE {DB}",
    f"CREATE TABLE {DB}.orders (id INT PRIMARY KEY, note TEXT, data BLOB)",
    f"INSERT INTO {DB}.orders VALUES (1, 'it''s', x'00ff'), (2, 'a),(b', NULL), (3, 'line\\nbreak', x'2729')",
    f"INSERT INTO {DB}.orders SELECT seq + 10, CONCAT('n', seq), NULL FROM {DB}.seq_1_to_997",
    f"CREATE TABLE {DB}.`we``ird` (id INT PRIMARY KEY)",
    f"INSERT INTO {DB}.`we``ird` VALUES (1), (2)",
    f"CREATE TABLE {DB}.empty_one (id INT)",
    f"CREATE VIEW {DB}.v_orders AS SELECT id FROM {DB}.orders",
)
EXPECTED = {f"{DB}.orders": 1000, f"{DB}.we`ird": 2, f"{DB}.empty_one": 0}


@pytest.mark.parametrize(("version", "tools"), [
    ("10.11.19-MariaDB", ("mariadb-dump", "mariadb")),
    ("11.4.2-MariaDB-ubu2404", ("mariadb-dump", "mariadb")),  # 11.x images have no mysql* names
    ("10.4.34-MariaDB", ("mysqldump", "mysql")),
    ("8.0.36", ("mysqldump", "mysql")),
    ("8.4.0-commercial", ("mysqldump", "mysql")),
])
def test_the_tools_a_servers_image_has(version: str, tools: tuple[str, str]) -> None:
    assert container_tools(version) == tools


def test_a_named_container_wins_over_host_tools_and_the_finder_is_not_asked() -> None:
    def finder() -> tuple[str | None, str | None]:
        raise AssertionError("not needed")

    chosen = choose_tools("10.11.19-MariaDB", "db-1", "unix:///d.sock", prefer_container=True,
                          find_container=finder)
    assert chosen == Tools("mariadb-dump", "mariadb", "db-1", "unix:///d.sock")
    assert choose_tools("10.11.19-MariaDB", find_container=finder).mode == "host"  # this host has them


def test_in_a_container_the_password_is_only_in_the_docker_clis_environment() -> None:
    target = parse_url("mysql://app:s3cr%27t@127.0.0.1:3306/")
    with Tools("mysqldump", "mysql", "db-1", "unix:///d.sock").command("mysqldump", target, ["shop"],
                                                                      stdin=True) as (argv, env):
        assert argv[1:] == ["exec", "-i", "-e", "MYSQL_PWD", "db-1", "mysqldump", "--user=app", "shop"]
        assert env["MYSQL_PWD"] == "s3cr't" and env["DOCKER_HOST"] == "unix:///d.sock"
        assert not any("s3cr" in a for a in argv)


def invoke(*args: str) -> tuple[int, str]:
    _load_commands()
    result = CliRunner().invoke(app, list(args), env=IN_PROCESS)
    return result.exit_code, result.stdout


def test_inspect_dump_counts_rows_and_needs_the_trailer(tmp_path: Path) -> None:
    path = tmp_path / "x.dump"
    path.write_bytes(b"CREATE TABLE `t` (\n  `id` int\n);\nINSERT INTO `t` VALUES (1,'a),(b'),(2,'it\\'s'),"
                     b"(3,NULL);\nCREATE TABLE `e` (id int);\n-- Dump completed on 2026-12-03 12:00:00\n")
    seen = inspect_dump(path)
    assert seen["row_counts"] == {"t": 3, "e": 0} and seen["complete"] is True
    path.write_bytes(b"INSERT INTO `t` VALUES\n(1,'a),(b'),\n(2,'x;'),\n(3,NULL);\n-- Dump completed\n")
    assert inspect_dump(path)["row_counts"] == {"t": 3}  # a tuple per line (mariadb-dump 10.11.8+)
    path.write_bytes(path.read_bytes()[:60])
    assert inspect_dump(path)["complete"] is False


@pytest.mark.integration
def test_backup_and_drill_prove_each_other(mariadb: MariaDBServer, tmp_path: Path) -> None:
    mariadb.execute(*SEED)
    target = parse_url(mariadb.url())
    manifest = backup_database(target, DB, tmp_path)
    assert manifest.good, manifest.error
    assert manifest.format == MYSQL_FORMAT and manifest.row_counts == EXPECTED
    assert manifest.snapshot_consistent_counts and manifest.verification["dump_complete"]
    assert ROOT_PASSWORD not in json.dumps(manifest.to_json())
    record = run_drill(target, tmp_path, manifest)
    assert record.ok, (record.error, record.mismatches)
    assert record.rows_restored == 1002 and record.tables_checked == 3 and record.scratch_dropped
    assert not [r for r in mariadb.execute("SHOW DATABASES") if "stackaudit_drill" in str(r)]


@pytest.mark.integration
def test_drill_fails_on_a_damaged_dump(mariadb: MariaDBServer, tmp_path: Path) -> None:
    mariadb.execute(*SEED)
    target = parse_url(mariadb.url())
    manifest = backup_database(target, DB, tmp_path)
    assert manifest.good and manifest.file
    dump = tmp_path / manifest.file
    text = dump.read_bytes()
    dump.write_bytes(text.replace(b"(12,'n2',NULL),", b"", 1))  # one row gone, still valid SQL
    record = run_drill(target, tmp_path, manifest)
    assert not record.ok and record.checksum_ok is False
    assert record.mismatches == [{"table": f"{DB}.orders", "expected_rows": 1000, "restored_rows": 999}]


@pytest.mark.integration
def test_backup_of_a_missing_database_fails_cleanly(mariadb: MariaDBServer, tmp_path: Path) -> None:
    manifest = backup_database(parse_url(mariadb.url()), "no_such_db", tmp_path)
    assert not manifest.good and "mariadb-dump exited" in (manifest.error or "")
    assert [p.name for p in tmp_path.iterdir()] == [f"{manifest.id}.json"]  # no dump left behind


@pytest.mark.integration
def test_cli_backup_and_restore_drill_with_mysql(mariadb: MariaDBServer, tmp_path: Path) -> None:
    mariadb.execute(*SEED)
    dest = tmp_path / "backups"
    code, out = invoke("backup", "--mysql", mariadb.url(), "--databases", DB, "--dest", str(dest),
                       "--format", "json", "--state-dir", str(tmp_path / "state"))
    assert code == 0, out
    [row] = json.loads(out)["backups"]
    assert row["database"] == DB and row["verified"] and len(row["sha256"]) == 64
    code, out = invoke("restore-drill", "--mysql", mariadb.url(), "--dest", str(dest), "--format", "json",
                       "--state-dir", str(tmp_path / "state"))
    assert code == 0, out
    [drill] = json.loads(out)["drills"]
    assert drill["ok"] and drill["rows_restored"] == 1002
    assert ROOT_PASSWORD not in out
    assert [m.database for m in inventory(dest).manifests] == [DB]
    code, out = invoke("backup", "--mysql", "mysql://root:" + ROOT_PASSWORD + "@127.0.0.1:1/", "--dest",
                       str(dest), "--state-dir", str(tmp_path / "state"))
    assert code == 2 and ROOT_PASSWORD not in out
