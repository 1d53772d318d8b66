"""Start-up: a command imports only what it needs (real subprocesses, their own sys.modules).

Not timed (speed is in bench/audit.py): these assert which modules a real `stackaudit` process
loaded, so a top-level `import docker` creeping back into a module `check` uses fails here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import typer

from stackaudit import __version__
from stackaudit.cli.app import COMMANDS, app, load_commands, modules_for

HEAVY = ("docker", "psycopg", "jinja2")
# Runs the real entry point, then prints the top-level packages it imported on the last line.
WRAPPER = """
import atexit, json, sys
atexit.register(lambda: sys.__stderr__.write("\\nMODULES " + json.dumps(sorted({m.split(".")[0]
                for m in sys.modules})) + "\\n"))
sys.argv = ["stackaudit", *sys.argv[1:]]
from stackaudit.__main__ import main
main()
"""


def run_cli(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "STACKAUDIT_"))}
    # STACKAUDIT_NICE=0: a child at the lowest priority waits behind every busy process (the other
    # test worker's too) on a loaded machine; the lowering is tested in test_cli.py and imports
    # only psutil, which no case here rules out.
    env.update(HOME=str(tmp_path), DOCKER_HOST="unix:///nonexistent/docker.sock",
               STACKAUDIT_STATE_DIR=str(tmp_path / "state"), STACKAUDIT_NICE="0")
    result = subprocess.run([sys.executable, "-c", WRAPPER, *args], capture_output=True, text=True,
                            env=env, cwd=tmp_path, timeout=120)
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("MODULES "), result.stderr
    return result, set(json.loads(last.removeprefix("MODULES ")))


def test_version_imports_no_cli_framework(tmp_path: Path) -> None:
    result, modules = run_cli(tmp_path, "--version")
    assert result.returncode == 0
    assert result.stdout == f"stackaudit {__version__}\n"
    assert not modules & {*HEAVY, "typer", "click", "rich"}, modules


def test_check_imports_no_docker_psycopg_or_jinja2(tmp_path: Path) -> None:
    result, modules = run_cli(tmp_path, "check", "--sources", "host", "--format", "json")
    assert result.returncode in (0, 1), result.stderr
    assert json.loads(result.stdout)["findings"] is not None
    assert not modules & {*HEAVY, "ruamel", "apprise", "redis"}, modules


def test_audit_of_the_host_and_its_backups_imports_no_docker_or_psycopg(tmp_path: Path) -> None:
    """Reading the backup folder's manifests and drill records needs no PostgreSQL client (a
    MariaDB-only host has none to spare 0.15 s on); running a drill does."""
    result, modules = run_cli(tmp_path, "audit", "--sources", "host,backups", "--format", "json")
    assert result.returncode in (0, 1), result.stderr
    assert "backups" in json.loads(result.stdout)["facts"]
    assert not modules & {"docker", "psycopg"}, modules


def test_a_full_audit_loads_no_sdk_or_driver_it_does_not_use(tmp_path: Path) -> None:
    """Every source, on a host with a local (unix socket) Docker engine and no Redis or MariaDB: the
    Docker SDK (requests), redis-py, PyMySQL and typer 0.29's pydantic stay out of the process."""
    result, modules = run_cli(tmp_path, "audit", "--format", "json", "--pg",
                              "postgresql://nobody@127.0.0.1:1/none?connect_timeout=1")
    assert result.returncode in (0, 1, 2), result.stderr
    errors = {e["source"]: e["why"] for e in json.loads(result.stdout)["collection_errors"]}
    assert {"docker", "redis", "mysql"} <= set(errors), errors  # each one looked, and found none
    assert not modules & {"docker", "requests", "urllib3", "redis", "pymysql", "pydantic"}, modules


def test_every_command_is_in_the_lazy_table() -> None:
    """COMMANDS names, for each top-level command, every module that registers part of it."""
    load_commands()
    root = typer.main.get_group(app)

    def modules_of(typer_app: typer.Typer) -> set[str]:
        found = {c.callback.__module__ for c in typer_app.registered_commands if c.callback}
        for group in typer_app.registered_groups:
            assert group.typer_instance is not None
            found |= modules_of(group.typer_instance)
        return found

    owners: dict[str, set[str]] = {}
    for command in app.registered_commands:
        assert command.callback is not None
        name = command.name or command.callback.__name__.replace("_", "-")
        owners[name] = {command.callback.__module__}
    for group in app.registered_groups:
        assert group.name is not None and group.typer_instance is not None
        owners[group.name] = modules_of(group.typer_instance)
    assert set(owners) == set(root.commands) == set(COMMANDS)
    for name, modules in owners.items():
        assert modules <= {f"stackaudit.cli.{m}" for m in modules_for(name) or ()}, (name, modules)
    assert modules_for("tune") == ("tune", "tune_app", "tune_mysql")
    assert modules_for("no-such-command") is None
