"""`tune mysql --apply` and `rollback --mysql` on the real MariaDB 10.11 fixture: applied live and to
a conf file, validated by mariadbd first, undone exactly (values and file bytes), recovered after a kill."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from stackaudit.cli import _load_commands, app
from stackaudit.config import Settings
from stackaudit.facts import collect
from stackaudit.mysqlconn import parse_url
from stackaudit.remediation.journal import Journal
from stackaudit.remediation.mysql_apply import KIND, MysqlApplyOptions, apply_tuning, read_values, recover
from stackaudit.tuning.mysql import MysqlTuning
from stackaudit.tuning.postgres import Proposal
from tests.mysql_server import MariaDBServer

# audit/collect renice their process (nice 19): in-process runs must not renice pytest itself
IN_PROCESS = {"STACKAUDIT_NICE": "0"}

pytestmark = pytest.mark.integration
NAMES = ["max_connections", "innodb_buffer_pool_size", "innodb_io_capacity", "innodb_io_capacity_max"]


@pytest.fixture
def restored(mariadb: MariaDBServer) -> Iterator[dict[str, str]]:
    """The fixture server's values before the test, put back after it whatever happened."""
    before = read_values(parse_url(mariadb.url()), NAMES)
    # Max_used_connections of the shared server depends on the tests before: start from now
    mariadb.execute("FLUSH STATUS")
    yield before
    mariadb.execute(*[f"SET GLOBAL {name} = {value}" for name, value in before.items()])


def invoke(*args: str) -> tuple[int, str]:
    _load_commands()
    result = CliRunner().invoke(app, list(args), env=IN_PROCESS)
    return result.exit_code, result.stdout + (result.stderr or "")


def tuning_of(mariadb: MariaDBServer, memory: int = 2**30) -> MysqlTuning:
    from stackaudit.derive.mysql import instances, tuning_for

    facts = collect(Settings(sources=("mysql",), mysql_url=mariadb.url()))
    return tuning_for(facts, instances(facts)[0], memory_bytes=memory)


def test_apply_then_rollback_restores_values_and_file_bytes(mariadb: MariaDBServer, restored: dict[str, str],
                                                            tmp_path: Path) -> None:
    conf = tmp_path / "conf.d" / "tuned.cnf"
    conf.parent.mkdir()
    conf.write_bytes(b"# hand-written\n[mysqld]\nmax_connections = 151\n")
    state = tmp_path / "state"
    code, out = invoke("tune", "mysql", "--apply", "--mysql", mariadb.url(), "--sources", "host,mysql",
                       "--memory", "1GiB", "--conf-file", str(conf), "--state-dir", str(state))
    assert code == 0, out
    result = json.loads(out)
    assert result["status"] == "done" and "max_connections" in result["applied"]
    live = read_values(parse_url(mariadb.url()), NAMES)
    assert int(live["max_connections"]) < 151  # a 512MiB budget cannot carry 151 x 2.9MB
    assert "[mysqld]" in conf.read_text() and "max_connections" in conf.read_text()
    code, out = invoke("rollback", "--mysql", mariadb.url(), "--yes", "--state-dir", str(state))
    assert code == 0, out
    assert read_values(parse_url(mariadb.url()), ["max_connections", "innodb_io_capacity"]) == {
        "max_connections": restored["max_connections"], "innodb_io_capacity": restored["innodb_io_capacity"]}
    assert conf.read_bytes() == b"# hand-written\n[mysqld]\nmax_connections = 151\n"


def test_a_value_mariadbd_rejects_changes_nothing(mariadb: MariaDBServer, restored: dict[str, str],
                                                  tmp_path: Path) -> None:
    tuning = tuning_of(mariadb)
    bad = Proposal("innodb_io_capacity", restored["innodb_io_capacity"], "banana", False, "test", True, "sql")
    tuning = dataclasses.replace(tuning, settings={**tuning.settings, "innodb_io_capacity": bad})
    conf = tmp_path / "tuned.cnf"
    result = apply_tuning(Settings(state_dir=tmp_path), parse_url(mariadb.url()), tuning,
                          MysqlApplyOptions(conf_file=conf))
    assert result["status"] == "failed" and "rejects" in result["error"] and "banana" in result["error"]
    assert read_values(parse_url(mariadb.url()), NAMES) == restored and not conf.exists()


def test_a_failure_after_writing_is_undone(mariadb: MariaDBServer, restored: dict[str, str],
                                           tmp_path: Path) -> None:
    tuning = tuning_of(mariadb)
    # innodb_flush_method is read-only on a running server: SET GLOBAL fails after the others ran
    read_only = Proposal("innodb_flush_method", None, "O_DIRECT", False, "test", True, "compiled-in default")
    tuning = dataclasses.replace(tuning, settings={**tuning.settings, "innodb_flush_method": read_only})
    result = apply_tuning(Settings(state_dir=tmp_path), parse_url(mariadb.url()), tuning, MysqlApplyOptions())
    assert result["status"] == "rolled-back", result
    assert read_values(parse_url(mariadb.url()), ["max_connections", "innodb_io_capacity"]) == {
        "max_connections": restored["max_connections"], "innodb_io_capacity": restored["innodb_io_capacity"]}


def test_a_run_killed_after_writing_is_undone_by_the_next(mariadb: MariaDBServer, restored: dict[str, str],
                                                          tmp_path: Path) -> None:
    journal = Journal.start(tmp_path, KIND, meta={"target": "test"})
    journal.record({"phase": "snapshot", "snapshot": {
        "variables": {"innodb_io_capacity": restored["innodb_io_capacity"]}, "verb": "SET GLOBAL",
        "conf": None}})
    mariadb.execute("SET GLOBAL innodb_io_capacity = 1234")  # what the killed run had written
    recovered = recover(Settings(state_dir=tmp_path), parse_url(mariadb.url()))
    assert [r["journal"] for r in recovered] == [journal.id]
    assert read_values(parse_url(mariadb.url()), ["innodb_io_capacity"]) == {
        "innodb_io_capacity": restored["innodb_io_capacity"]}
    assert Journal.load(journal.path).document["status"] == "rolled-back"
