"""`stackaudit tune postgres` end to end: against the real PostgreSQL 18 fixture, and "what if" with
--memory/--cpus whose conf, sql and compose outputs are checked by PostgreSQL itself."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg
import pytest
from ruamel.yaml import YAML
from typer.testing import CliRunner

from stackaudit.cli import _load_commands, app
from stackaudit.localpg import LocalCluster, debian_bin_dir
from stackaudit.tuning.units import GB, MB, parse_memory

pytestmark = pytest.mark.integration

UNREACHABLE = "postgresql://nobody@127.0.0.1:1/none?connect_timeout=2"
WHAT_IF = ["tune", "postgres", "--memory", "23GiB", "--cpus", "4", "--pg", UNREACHABLE,
           "--sources", "host,postgres"]


def run(*args: str) -> str:
    _load_commands()
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


def test_tune_json_against_live_pg18(pg18: LocalCluster) -> None:
    data = json.loads(run("tune", "postgres", "--pg", pg18.dsn(), "--sources", "host,postgres",
                          "--format", "json"))
    with psycopg.connect(pg18.dsn()) as conn:
        live_shared_buffers = conn.execute("SHOW shared_buffers").fetchone()[0]  # type: ignore[index]
        live_work_mem = conn.execute("SHOW work_mem").fetchone()[0]  # type: ignore[index]
    assert data["inputs"]["server_reached"] is True and data["inputs"]["major"] == 18
    budget = data["budget"]
    assert 0 < budget["postgres_bytes"] <= budget["total_bytes"]
    assert budget["worst_case_bytes"] > 0 and budget["worst_case_current_bytes"] > 0
    settings = data["settings"]
    assert settings["shared_buffers"]["current"] == live_shared_buffers
    assert settings["work_mem"]["current"] == live_work_mem
    assert settings["shared_buffers"]["restart"] is True and settings["work_mem"]["restart"] is False
    assert settings["io_method"]["recommended"] == "worker"  # PG18
    assert int(settings["max_worker_processes"]["recommended"]) >= 8
    for proposal in settings.values():
        assert proposal["reason"] and proposal["recommended"]


def _what_if(fmt: str, *extra: str) -> str:
    return run(*WHAT_IF, "--format", fmt, *extra)


def test_what_if_json_without_a_server() -> None:
    data = json.loads(_what_if("json"))
    assert data["inputs"]["server_reached"] is False
    assert data["budget"]["total_bytes"] == 23 * GB
    shared = data["settings"]["shared_buffers"]
    assert shared["current"] == "128MB"  # PostgreSQL's default, assumed
    assert 2 * GB <= parse_memory(shared["recommended"], "kB") <= 6 * GB
    assert data["settings"]["max_parallel_workers_per_gather"]["recommended"] == "2"


def test_what_if_conf_is_accepted_by_postgres_C() -> None:
    conf = _what_if("conf", "--pg-major", "15", "--all")
    directory = Path(tempfile.mkdtemp(prefix="sa-tune-conf-"))
    try:
        (directory / "postgresql.conf").write_text(conf)
        shutil.chown(directory, "postgres")
        shutil.chown(directory / "postgresql.conf", "postgres")
        os.chmod(directory, 0o700)

        def show(name: str) -> str:
            postgres = str(debian_bin_dir(15) / "postgres")
            command = ["runuser", "-u", "postgres", "--", postgres, "-D", str(directory), "-C", name]
            result = subprocess.run(command, capture_output=True, text=True, timeout=60)
            assert result.returncode == 0, result.stderr
            return result.stdout.strip()

        assert int(show("shared_buffers")) * 8 * 1024 == parse_memory(_setting(conf, "shared_buffers"))
        assert int(show("work_mem")) * 1024 == parse_memory(_setting(conf, "work_mem"))
        assert show("max_parallel_workers_per_gather") == "2"
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _setting(conf: str, name: str) -> str:
    line = next(line for line in conf.splitlines() if line.startswith(f"{name} = "))
    return line.split("=", 1)[1].split("#", 1)[0].strip().strip("'")


def test_what_if_sql_is_accepted_by_alter_system(pg15: LocalCluster) -> None:
    sql = _what_if("sql", "--pg-major", "15")
    statements = [line for line in sql.splitlines() if line.startswith("ALTER SYSTEM SET")]
    assert len(statements) >= 5 and "SELECT pg_reload_conf();" in sql
    names = [s.split()[3] for s in statements]
    with psycopg.connect(pg15.dsn(), autocommit=True) as conn:
        try:
            for statement in statements:  # PostgreSQL validates names, units and ranges here
                conn.execute(statement)
            auto = conn.execute("SELECT name, setting FROM pg_file_settings "
                                "WHERE sourcefile LIKE '%postgresql.auto.conf'").fetchall()
            assert {row[0] for row in auto} >= set(names)
        finally:
            for name in names:
                conn.execute(f"ALTER SYSTEM RESET {name}")


def test_what_if_compose_override_is_valid_yaml() -> None:
    text = _what_if("compose")
    assert "POSTGRES_INITDB_ARGS" not in text
    doc = YAML(typ="safe").load(io.StringIO(text))
    [(service, body)] = doc["services"].items()
    assert service == "postgres"  # no stack detected: the conventional name
    command = body["command"]
    assert command[0] == "postgres"
    pairs = command[1:]
    assert all(flag == "-c" for flag in pairs[0::2]) and all("=" in kv for kv in pairs[1::2])
    assert any(kv.startswith("shared_buffers=") for kv in pairs[1::2])
    assert parse_memory(body["shm_size"]) >= 256 * MB


def test_bad_options_fail_cleanly() -> None:
    _load_commands()
    result = CliRunner().invoke(app, ["tune", "postgres", "--memory", "lots", "--format", "json"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    result = CliRunner().invoke(app, [*WHAT_IF, "--workload", "gaming"])
    assert result.exit_code == 2 and "workload" in result.output
