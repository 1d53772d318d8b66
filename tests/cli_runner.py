"""Commands run in the test process through click's runner, for tests where start-up is not the point.

The same parsing, exit codes, stdout and stderr as `python -m stackaudit ...`, without an interpreter
start and the imports per run (which made the CLI tests most of `make unit`). What only a real process
shows stays a subprocess: the entry point itself (tests/test_cli_contract.py), start-up imports
(tests/test_cli_startup.py), priorities, signals, and secrets that must not leave a process
(tests/test_cli.py's canary).
"""

from __future__ import annotations

import os
import subprocess
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import typer
import typer.main
import typer.testing
from typer.testing import CliRunner

from stackaudit.cli import _load_commands, app
from stackaudit.redact import forget_all

Result = subprocess.CompletedProcess[str]

# What every run gets: no Docker engine (a test that wants one says so), the normal priority (an
# observing command would lower the test process's own), and the width a pipe gets
# (report.terminal.terminal_width), whatever terminal pytest itself runs in.
BASE_ENV = {"DOCKER_HOST": "unix:///nonexistent/docker.sock", "STACKAUDIT_NICE": "0", "COLUMNS": "120"}

_load_commands()

_built: dict[tuple[int, int, int], Any] = {}  # typer's (vendored) click command


def _command_built_once(typer_app: typer.Typer) -> Any:
    """typer's runner turns the app into click commands on every invoke (inspecting each command's
    signature: ~70 ms here, most of a short run). A process builds them once too, so the runner
    builds them once per app (and again if commands were added since)."""
    key = (id(typer_app), len(typer_app.registered_commands), len(typer_app.registered_groups))
    if key not in _built:
        _built[key] = typer.main.get_command(typer_app)
    return _built[key]


typer.testing._get_command = _command_built_once  # type: ignore[assignment]  # for every CliRunner


def invoke(*args: str, env: Mapping[str, str] | None = None, cwd: Path | None = None) -> Result:
    """`stackaudit ARGS` in this process, in `cwd`, with `env` over the base environment. An
    exception the CLI let through is added to stderr as its traceback, so "no Traceback" checks see it.
    Like a new process, the run starts with no remembered secrets (redact's registry, which the
    snapshot's secret fingerprints are made of)."""
    forget_all()
    before = os.getcwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        result = CliRunner().invoke(app, list(args), env={**BASE_ENV, **(env or {})}, catch_exceptions=True)
    finally:
        os.chdir(before)
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "".join(traceback.format_exception(result.exception))
    return subprocess.CompletedProcess(list(args), result.exit_code, result.stdout, stderr)
