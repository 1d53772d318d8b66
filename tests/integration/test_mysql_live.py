"""MariaDB end to end: `tune mysql` against the live server (its conf and compose outputs checked by
mariadbd itself) and `audit` with the MY rules on states each test makes. MySQL 8 is not packaged in
Debian 12, so only MariaDB 10.11 runs here."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from stackaudit.cli import _load_commands, app
from stackaudit.config import Settings
from stackaudit.facts import Facts
from stackaudit.rules import evaluate
from stackaudit.tuning.units import parse_memory
from tests.mysql_server import ROOT_PASSWORD, MariaDBServer

# audit/collect renice their process (nice 19): in-process runs must not renice pytest itself
IN_PROCESS = {"STACKAUDIT_NICE": "0"}

pytestmark = pytest.mark.integration


def run(*args: str, expect: int = 0) -> str:
    _load_commands()
    result = CliRunner().invoke(app, list(args), env=IN_PROCESS)
    assert result.exit_code == expect, result.output
    return result.stdout


def mariadbd_accepts(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """mariadbd parses every option and refuses an unknown one (MariaDB has no --validate-config)."""
    return subprocess.run(["mariadbd", *args, "--user=mysql", "--verbose", "--help"], capture_output=True,
                          text=True, check=False, cwd=tmp_path)


def test_tune_mysql_json_reads_the_live_values(mariadb: MariaDBServer) -> None:
    data = json.loads(run("tune", "mysql", "--mysql", mariadb.url(), "--sources", "host,mysql",
                          "--memory", "2GiB", "--format", "json"))
    assert {"total_bytes", "mysql_bytes", "co_tenants", "worst_case_bytes"} <= data["budget"].keys()
    pool = data["settings"]["innodb_buffer_pool_size"]
    assert pool["current"] == str(32 * 2**20)
    assert pool["source"] in ("command-line", "sql")  # the fixture's flag, or a test's SET GLOBAL
    recommended = parse_memory(pool["recommended"])
    assert recommended % (32 * 2**20) == 0 and recommended <= 1152 * 2**20  # <= 75% of 2GiB - 512MiB
    budget = data["budget"]
    assert budget["fits"] is True and budget["worst_case_bytes"] <= budget["mysql_bytes"]
    assert ROOT_PASSWORD not in json.dumps(data)


def test_tune_mysql_conf_and_compose_outputs_are_accepted_by_mariadbd(mariadb: MariaDBServer,
                                                                      tmp_path: Path) -> None:
    conf = run("tune", "mysql", "--mysql", mariadb.url(), "--sources", "host,mysql", "--memory", "4GiB",
               "--format", "conf", "--all")
    (tmp_path / "tuned.cnf").write_text(conf)
    checked = mariadbd_accepts(tmp_path, f"--defaults-file={tmp_path / 'tuned.cnf'}")
    assert checked.returncode == 0, checked.stderr[-1000:]
    wanted = next(line.split("=")[1].strip() for line in conf.splitlines()
                  if line.startswith("innodb_buffer_pool_size"))
    parsed = next(line.split()[1] for line in checked.stdout.splitlines()
                  if line.startswith("innodb-buffer-pool-size "))
    assert int(parsed) == parse_memory(wanted)  # mariadbd read the value we wrote
    compose = run("tune", "mysql", "--mysql", mariadb.url(), "--sources", "host,mysql", "--memory", "4GiB",
                  "--format", "compose", "--all")
    flags = json.loads(compose.split("command: ", 1)[1])
    checked = mariadbd_accepts(tmp_path, "--no-defaults", *flags)
    assert checked.returncode == 0, checked.stderr[-1000:]


def test_tune_mysql_sql_applies_on_the_live_server(mariadb: MariaDBServer) -> None:
    sql = run("tune", "mysql", "--mysql", mariadb.url(), "--sources", "host,mysql", "--memory", "1GiB",
              "--format", "sql")
    statements = [line for line in sql.splitlines() if line.startswith("SET GLOBAL")]
    wanted = {line.split()[2]: int(line.split()[4].rstrip(";")) for line in statements}
    assert "innodb_buffer_pool_size" in wanted
    # 512MiB budget: 151 connections x 2.9MB pass a quarter of it, so max_connections comes down
    assert wanted["max_connections"] < 151
    names = ", ".join(f"@@{name} AS {name}" for name in wanted)
    before = mariadb.execute(f"SELECT {names}")[0]
    try:
        mariadb.execute(*statements)
        after = wanted_now(mariadb, names, wanted)
        assert after == wanted
    finally:
        mariadb.execute(*[f"SET GLOBAL {name} = {value}" for name, value in before.items()])


def wanted_now(mariadb: MariaDBServer, names: str, wanted: dict[str, int]) -> dict[str, int]:
    """The buffer pool resizes in the background: wait (bounded) until the server reports it."""
    deadline = time.monotonic() + 30
    while True:
        now = {k: int(v) for k, v in mariadb.execute(f"SELECT {names}")[0].items()}
        if now == wanted or time.monotonic() > deadline:
            return now
        time.sleep(0.2)


def test_audit_fires_my601_for_an_account_made_without_a_password(mariadb: MariaDBServer) -> None:
    mariadb.execute("DROP USER IF EXISTS 'nopw_live'@'%'", "CREATE USER 'nopw_live'@'%'")
    try:
        report = json.loads(run("audit", "--mysql", mariadb.url(), "--sources", "mysql", "--select", "MY6",
                                "--format", "json", expect=1))
    finally:
        mariadb.execute("DROP USER IF EXISTS 'nopw_live'@'%'")
    subjects = [f["subject"] for f in report["findings"] if f["code"] == "MY601"]
    assert any("'nopw_live'@'%'" in s for s in subjects)
    assert not [f for f in report["findings"] if f["code"] == "MY601" and "'root'@" in f["subject"]]


def test_audit_fires_my004_for_temp_tables_spilled_to_disk(mariadb: MariaDBServer) -> None:
    mariadb.execute("DROP DATABASE IF EXISTS spill", "CREATE DATABASE spill",
                    "CREATE TABLE spill.t (id INT PRIMARY KEY, body TEXT)",
                    "INSERT INTO spill.t VALUES (1, 'a'), (2, 'b'), (3, 'c')", "FLUSH STATUS")
    # GROUP BY a TEXT column builds an on-disk (Aria) temporary table on MariaDB 10.11
    mariadb.execute(*["SELECT body, COUNT(*) FROM spill.t GROUP BY body ORDER BY RAND()"] * 120)
    report = json.loads(run("audit", "--mysql", mariadb.url(), "--sources", "mysql", "--select",
                            "MY004,MY401", "--format", "json", "--fail-on", "critical"))
    codes = [f["code"] for f in report["findings"]]
    assert "MY004" in codes and "MY401" not in codes  # performance_schema is on in the fixture


def test_a_saved_snapshot_audits_to_the_same_findings(mariadb: MariaDBServer, tmp_path: Path) -> None:
    mariadb.execute("DROP USER IF EXISTS 'snap_nopw'@'%'", "CREATE USER 'snap_nopw'@'%'")
    try:
        out = tmp_path / "facts.json"
        run("collect", "--mysql", mariadb.url(), "--sources", "host,mysql", "--out", str(out))
    finally:
        mariadb.execute("DROP USER IF EXISTS 'snap_nopw'@'%'")
    assert ROOT_PASSWORD not in out.read_text()
    saved = Facts.load(out)
    findings, _ = evaluate(saved, Settings(select=("MY",)))
    assert any(f.code == "MY601" and "snap_nopw" in f.subject for f in findings)
    again = json.loads(run("audit", "--facts", str(out), "--select", "MY", "--format", "json",
                           "--fail-on", "critical"))
    assert sorted((f["code"], f["subject"]) for f in again["findings"]) == sorted(
        (f.code, f.subject) for f in findings)


def test_tune_mysql_refuses_a_bad_url_clearly() -> None:
    _load_commands()
    result = CliRunner().invoke(app, ["tune", "mysql", "--mysql", "http://nope", "--memory", "2GiB"],
                               env=IN_PROCESS)
    assert result.exit_code == 2 and "mysql:// or mariadb://" in result.output
    assert "Traceback" not in result.output
