"""The CLI contract for every command, as a user runs it (`python -m stackaudit ...`):

- `--help` exits 0 and shows an example;
- a garbage option exits 2 with click's usage error, never a traceback;
- `--format json` prints JSON that parses in a minimal setting (the host alone, or a facts snapshot),
  or, for a command that needs a live target, exits 2 with a clear `error:` line.

Commands are read from the typer app itself, so a new command is covered without editing this file.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import typer

from stackaudit.cli import _load_commands, app
from tests.services import RedisServer

EXAMPLE = Path(__file__).parents[1] / "stackaudit" / "examples" / "reference-stack"
Result = subprocess.CompletedProcess[str]


def command_paths() -> list[tuple[str, ...]]:
    """Every command and group of the app, e.g. ("tune",), ("tune", "postgres"), ("audit",)."""
    paths: list[tuple[str, ...]] = []

    def walk(command: object, path: tuple[str, ...]) -> None:
        if path:
            paths.append(path)
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, (*path, name))

    _load_commands()  # the app imports command modules lazily; walking needs them all
    walk(typer.main.get_command(app), ())
    return paths


COMMANDS = command_paths()


def run(*args: str, tmp_path: Path, env: dict[str, str] | None = None) -> Result:
    full_env = {**os.environ, "DOCKER_HOST": "unix:///nonexistent/docker.sock",
                "STACKAUDIT_STATE_DIR": str(tmp_path / "state"), **(env or {})}
    return subprocess.run([sys.executable, "-m", "stackaudit", *args], capture_output=True, text=True,
                          env=full_env, cwd=tmp_path, timeout=120)


def run_many(tmp_path: Path, runs: dict[str, tuple[str, ...]]) -> dict[str, Result]:
    """Many short runs at once: each is mostly interpreter start-up."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {key: pool.submit(run, *args, tmp_path=tmp_path) for key, args in runs.items()}
        return {key: future.result() for key, future in futures.items()}


def test_the_command_list_is_complete() -> None:
    names = {path[0] for path in COMMANDS}
    for expected in ("audit", "collect", "rules", "explain", "tune", "plan", "apply", "rollback", "verify",
                     "clean", "check", "watch", "metrics", "backup", "restore-drill", "serve", "demo",
                     "monitoring", "schedule"):
        assert expected in names
    assert ("tune", "postgres") in COMMANDS and ("backup", "list") in COMMANDS
    assert ("schedule", "install") in COMMANDS and ("monitoring", "rules") in COMMANDS


@pytest.fixture(scope="module")
def help_and_garbage(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Result]:
    root = tmp_path_factory.mktemp("contract")
    runs: dict[str, tuple[str, ...]] = {}
    for path in COMMANDS:
        runs[f"help:{' '.join(path)}"] = (*path, "--help")
        runs[f"garbage:{' '.join(path)}"] = (*path, "--no-such-option", "zz")
    runs["help:"] = ("--help",)
    return run_many(root, runs)


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_help_exits_0_with_an_example(help_and_garbage: dict[str, Result], path: tuple[str, ...]) -> None:
    result = help_and_garbage[f"help:{' '.join(path)}"]
    assert result.returncode == 0, result.stderr
    assert "Example" in result.stdout, result.stdout


def test_top_level_help_lists_every_command(help_and_garbage: dict[str, Result]) -> None:
    result = help_and_garbage["help:"]
    assert result.returncode == 0
    for path in COMMANDS:
        if len(path) == 1:
            assert path[0] in result.stdout


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_garbage_option_exits_2_without_traceback(help_and_garbage: dict[str, Result],
                                                  path: tuple[str, ...]) -> None:
    result = help_and_garbage[f"garbage:{' '.join(path)}"]
    assert result.returncode == 2
    assert "Traceback" not in result.stdout + result.stderr
    assert "No such option" in result.stderr and "--no-such-option" in result.stderr


# ------------------------------------------------------------------ --format json in a minimal setting


@pytest.fixture(scope="module")
def project_snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Facts of the example stack's files and this host: enough for audit, plan and tune."""
    root = tmp_path_factory.mktemp("snapshot")
    project = root / "stack"
    shutil.copytree(EXAMPLE, project)
    (project / ".env.example").rename(project / ".env")
    out = root / "facts.json"
    result = run("collect", "--sources", "host,compose,env,app", "-p", str(project), "--out", str(out),
                 tmp_path=root)
    assert result.returncode == 0, result.stderr
    return out


# (arguments, what is expected: "json" = exit 0/1 and parseable JSON; else exit 2 and this error text)
JSON_CASES: dict[str, tuple[tuple[str, ...], str]] = {
    "audit": (("audit", "--sources", "host", "--format", "json"), "json"),
    "audit --facts": (("audit", "--facts", "{snapshot}", "--format", "json"), "json"),
    "rules": (("rules", "--format", "json"), "json"),
    "check": (("check", "--sources", "host", "--format", "json"), "json"),
    "plan": (("plan", "--facts", "{snapshot}", "--format", "json"), "json"),
    "tune postgres": (("tune", "postgres", "--facts", "{snapshot}", "--memory", "8GiB", "--cpus", "4",
                       "--format", "json"), "json"),
    "tune app": (("tune", "app", "--facts", "{snapshot}", "--format", "json"), "json"),
    "tune redis": (("tune", "redis", "--redis", "{redis}", "--format", "json"), "json"),
    "backup list": (("backup", "list", "--dest", "{tmp}/backups", "--format", "json"), "json"),
    "schedule install": (("schedule", "install", "--dry-run", "--unit-dir", "{tmp}/units", "--format",
                          "json"), "json"),
    "schedule remove": (("schedule", "remove", "--dry-run", "--unit-dir", "{tmp}/units", "--format",
                         "json"), "json"),
    # these need a live target; without one they must say so, exit 2
    "backup": (("backup", "--pg", "postgresql://nobody@127.0.0.1:1/none", "--dest", "{tmp}/backups",
                "--format", "json"), "PostgreSQL"),
    "clean": (("clean", "--format", "json"), "Docker engine"),
    "verify": (("verify", "--format", "json"), "--pg"),
    "restore-drill": (("restore-drill", "--dest", "{tmp}/backups", "--format", "json"), "backup"),
    "apply": (("apply", "{tmp}/no-plan.json", "--format", "json"), "plan"),
    "rollback": (("rollback", "no-such-journal", "--format", "json"), "journal"),
}


def test_every_command_with_format_json_is_covered() -> None:
    with_format = {" ".join(path) for path in COMMANDS if "--format" in _options(path)}
    assert {"audit", "tune postgres", "backup"} <= with_format
    assert with_format <= set(JSON_CASES), with_format - set(JSON_CASES)


ROOT_COMMAND = typer.main.get_command(app)


def _options(path: tuple[str, ...]) -> list[str]:
    command: object = ROOT_COMMAND
    for name in path:
        command = getattr(command, "commands", {})[name]
    return [opt for param in getattr(command, "params", []) for opt in param.opts]


@pytest.mark.parametrize("case", list(JSON_CASES))
def test_format_json_parses_or_fails_clearly(case: str, tmp_path: Path, project_snapshot: Path,
                                             redis_factory: Callable[..., RedisServer]) -> None:
    args, expected = JSON_CASES[case]
    values = {"snapshot": str(project_snapshot), "tmp": str(tmp_path), "redis": ""}
    if "{redis}" in args:
        values["redis"] = redis_factory({"maxmemory": "64mb"}).url
    result = run(*(arg.format(**values) for arg in args), tmp_path=tmp_path)
    assert "Traceback" not in result.stdout + result.stderr
    if expected == "json":
        assert result.returncode in (0, 1), result.stderr
        assert json.loads(result.stdout) is not None
    else:
        assert result.returncode == 2, result.stdout
        assert "error:" in result.stderr and expected in result.stderr, result.stderr
