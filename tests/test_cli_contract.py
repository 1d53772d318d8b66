"""The CLI contract for every command, as a user runs it (`python -m stackaudit ...`):

- `--help` exits 0 and shows an example;
- a garbage option exits 2 with click's usage error, never a traceback;
- `--format json` prints JSON that parses in a minimal setting (the host alone, or a facts snapshot),
  or, for a command that needs a live target, exits 2 with a clear `error:` line.

Commands are read from the typer app itself, so a new command is covered without editing this file.
The real entry point runs as a subprocess for the top-level help, a usage error and the snapshot the
cases audit; the cases themselves run in this process (tests/cli_runner.py), which is the same
parsing and output without an interpreter start each.
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
from stackaudit.rules import load_all
from tests.cli_runner import invoke
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


def run_process(*args: str, tmp_path: Path, env: dict[str, str] | None = None) -> Result:
    """`python -m stackaudit ARGS`: the real entry point, as a user's shell runs it."""
    full_env = {**os.environ, "DOCKER_HOST": "unix:///nonexistent/docker.sock",
                "STACKAUDIT_STATE_DIR": str(tmp_path / "state"), **(env or {})}
    return subprocess.run([sys.executable, "-m", "stackaudit", *args], capture_output=True, text=True,
                          env=full_env, cwd=tmp_path, timeout=120)


def run(*args: str, tmp_path: Path, env: dict[str, str] | None = None) -> Result:
    """The same command in this process (tests/cli_runner.py), in `tmp_path` with its own state."""
    return invoke(*args, env={"STACKAUDIT_STATE_DIR": str(tmp_path / "state"), **(env or {})}, cwd=tmp_path)


def run_many(tmp_path: Path, runs: dict[str, tuple[str, ...]]) -> dict[str, Result]:
    """Many short real runs at once: each is mostly interpreter start-up."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {key: pool.submit(run_process, *args, tmp_path=tmp_path) for key, args in runs.items()}
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
    results: dict[str, Result] = {}
    for path in COMMANDS:
        results[f"help:{' '.join(path)}"] = invoke(*path, "--help", env={"COLUMNS": "80"})
        results[f"garbage:{' '.join(path)}"] = invoke(*path, "--no-such-option", "zz", env={"COLUMNS": "80"})
    real = run_many(root, {"help:": ("--help",), "real-garbage": ("tune", "postgres", "--no-such-option")})
    return {**results, **real}


def test_the_real_entry_point_reports_a_garbage_option_like_the_runner(
        help_and_garbage: dict[str, Result]) -> None:
    real, runner = help_and_garbage["real-garbage"], help_and_garbage["garbage:tune postgres"]
    assert real.returncode == runner.returncode == 2
    assert "No such option" in real.stderr and "Traceback" not in real.stderr


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
    result = run_process("collect", "--sources", "host,compose,env,app", "-p", str(project), "--out",
                         str(out), tmp_path=root)
    assert result.returncode == 0, result.stderr
    return out


def fleet_of(snapshot: Path) -> Path:
    """A fleet directory (`fleet collect`'s layout) holding the snapshot for one host."""
    fleet = snapshot.parent / "fleet"
    if not fleet.exists():
        (fleet / "host-1").mkdir(parents=True)
        shutil.copy(snapshot, fleet / "host-1" / "20261203T142400Z.json")
    return fleet


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
    "tune mysql": (("tune", "mysql", "--facts", "{snapshot}", "--memory", "4GiB", "--format", "json"),
                   "json"),
    "backup list": (("backup", "list", "--dest", "{tmp}/backups", "--format", "json"), "json"),
    "fleet report": (("fleet", "report", "{fleet}", "--format", "json"), "json"),
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
    "fleet collect": (("fleet", "collect", "-i", "{tmp}/no-inventory.ini", "--out", "{tmp}/fleet", "--format",
                       "json"), "ansible-inventory"),
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


def _json_case(case: str) -> object:
    """A case that talks to a real Redis is an integration test; the others run without services."""
    needs_redis = "{redis}" in JSON_CASES[case][0]
    return pytest.param(case, marks=pytest.mark.integration) if needs_redis else case


@pytest.mark.parametrize("case", [_json_case(case) for case in JSON_CASES])
def test_format_json_parses_or_fails_clearly(case: str, tmp_path: Path, project_snapshot: Path,
                                             request: pytest.FixtureRequest) -> None:
    args, expected = JSON_CASES[case]
    values = {"snapshot": str(project_snapshot), "tmp": str(tmp_path), "redis": "",
              "fleet": str(fleet_of(project_snapshot))}
    if "{redis}" in args:
        redis_factory: Callable[..., RedisServer] = request.getfixturevalue("redis_factory")
        values["redis"] = redis_factory({"maxmemory": "64mb"}).url
    result = run(*(arg.format(**values) for arg in args), tmp_path=tmp_path)
    assert "Traceback" not in result.stdout + result.stderr
    if expected == "json":
        assert result.returncode in (0, 1), result.stderr
        assert json.loads(result.stdout) is not None
    else:
        assert result.returncode == 2, result.stdout
        assert "error:" in result.stderr and expected in result.stderr, result.stderr


# ------------------------------------------------------------------ terminal output, as a user sees it

WIDTH = 80
# (arguments, what is expected: "ok" = exit 0/1 and a result on stdout; "stderr" = exit 0 and the
# result is on stderr (progress of a command whose product is a file); else exit 2 with this error)
TERMINAL_CASES: dict[str, tuple[tuple[str, ...], str]] = {
    "audit": (("audit", "--sources", "host"), "ok"),
    "audit --facts": (("audit", "--facts", "{snapshot}"), "ok"),
    "collect": (("collect", "--sources", "host", "--out", "{tmp}/facts.json"), "stderr"),
    "rules": (("rules",), "ok"),
    "explain": (("explain", "PG003"), "ok"),
    "check": (("check", "--sources", "host"), "ok"),
    "plan": (("plan", "--facts", "{snapshot}"), "ok"),
    "tune postgres": (("tune", "postgres", "--facts", "{snapshot}", "--memory", "8GiB", "--cpus", "4"), "ok"),
    "tune app": (("tune", "app", "--facts", "{snapshot}"), "ok"),
    "tune redis": (("tune", "redis", "--redis", "{redis}"), "ok"),
    "tune mysql": (("tune", "mysql", "--facts", "{snapshot}", "--memory", "4GiB"), "ok"),
    "backup list": (("backup", "list", "--dest", "{tmp}/backups"), "ok"),
    "fleet report": (("fleet", "report", "{fleet}"), "ok"),
    "schedule install": (("schedule", "install", "--dry-run", "--unit-dir", "{tmp}/units"), "ok"),
    "schedule remove": (("schedule", "remove", "--dry-run", "--unit-dir", "{tmp}/units"), "stderr"),
    "monitoring rules": (("monitoring", "rules"), "ok"),
    "monitoring dashboard": (("monitoring", "dashboard"), "ok"),
    "fleet prometheus": (("fleet", "prometheus", "-i", "web1,db1,", "--out", "{tmp}/prom"), "ok"),
    # these need a live target; without one they say so in one line, exit 2
    "backup": (("backup", "--pg", "postgresql://nobody@127.0.0.1:1/none", "--dest", "{tmp}/b"), "PostgreSQL"),
    "clean": (("clean",), "Docker engine"),
    "verify": (("verify",), "--pg"),
    "restore-drill": (("restore-drill", "--dest", "{tmp}/backups"), "backup"),
    "apply": (("apply", "{tmp}/no-plan.json"), "plan"),
    "rollback": (("rollback", "no-such-journal"), "journal"),
    # its output over real hosts is tested in tests/fleet/test_collect.py (sshd fixture)
    "fleet collect": (("fleet", "collect", "-i", "{tmp}/no-inventory.ini", "--out", "{tmp}/fleet"),
                      "ansible-inventory"),
}
# Files they print (YAML, JSON, unit files) keep their own line lengths.
FILE_CONTENT = {"monitoring rules", "monitoring dashboard", "schedule install"}
# Commands that run until stopped (or start a server); their output is tested where they run.
LONG_RUNNING = {
    "watch": "tests/monitor/test_watch.py",
    "metrics": "tests/monitor/test_metrics.py",
    "serve": "tests/web/test_serve.py",
    "demo": "tests/integration/test_demo.py",
}


def _leaf_commands() -> set[str]:
    groups = {path[:-1] for path in COMMANDS if len(path) > 1}
    callbacks = {"backup"}  # a group that is also a command (`stackaudit backup --pg ...`)
    return {" ".join(path) for path in COMMANDS if path not in groups or " ".join(path) in callbacks}


def test_every_command_has_a_terminal_output_case() -> None:
    leaves = _leaf_commands()
    assert {"audit", "rules", "tune postgres", "backup list", "backup"} <= leaves
    missing = leaves - set(TERMINAL_CASES) - set(LONG_RUNNING)
    assert not missing, f"add a TERMINAL_CASES entry for {sorted(missing)}"
    for test_file in LONG_RUNNING.values():
        assert (Path(__file__).parents[1] / test_file).is_file(), test_file


def too_wide(line: str, width: int = WIDTH) -> bool:
    """Longer than the terminal, and not because of one word that cannot be broken (a path, a URL,
    a command) standing alone on its line, as the wrapping leaves it."""
    if len(line) <= width:
        return False
    words = line.strip().removeprefix("- ").split()
    return len(words) > 1 or not any(mark in line for mark in ("/", "=", "`", "_"))


def wide_lines(text: str, *folders: Path) -> list[str]:
    """too_wide lines, with the test's temporary folders (whose length depends on the runner:
    pytest-xdist adds popen-gwN/) shown as a short folder a user could have."""
    for folder in folders:
        text = text.replace(str(folder), "/srv/stack")
    return [line for line in text.splitlines() if too_wide(line)]


def test_too_wide_tells_prose_from_an_unbreakable_path() -> None:
    assert too_wide("word " * 20)
    assert not too_wide("  https://www.postgresql.org/docs/current/" + "x" * 60)
    assert not too_wide("short line")


def _repeated_first_line(stdout: str) -> int:
    first = next((line for line in stdout.splitlines() if any(c.isalnum() for c in line)), "")
    return stdout.splitlines().count(first)


def _terminal_case(case: str) -> object:
    needs_redis = "{redis}" in TERMINAL_CASES[case][0]
    return pytest.param(case, marks=pytest.mark.integration) if needs_redis else case


@pytest.mark.parametrize("case", [_terminal_case(case) for case in TERMINAL_CASES])
def test_terminal_output_is_printed_once_and_readable_at_80_columns(
        case: str, tmp_path: Path, project_snapshot: Path, request: pytest.FixtureRequest) -> None:
    args, expected = TERMINAL_CASES[case]
    values = {"snapshot": str(project_snapshot), "tmp": str(tmp_path), "redis": "",
              "fleet": str(fleet_of(project_snapshot))}
    if "{redis}" in args:
        redis_factory: Callable[..., RedisServer] = request.getfixturevalue("redis_factory")
        values["redis"] = redis_factory({"maxmemory": "64mb"}).url
    result = run(*(arg.format(**values) for arg in args), tmp_path=tmp_path, env={"COLUMNS": str(WIDTH)})
    assert "Traceback" not in result.stdout + result.stderr
    if expected == "ok":
        assert result.returncode in (0, 1), result.stderr
        assert result.stdout.strip(), "nothing printed"
        assert _repeated_first_line(result.stdout) == 1, result.stdout[:2000]
        if case not in FILE_CONTENT:
            wide = wide_lines(result.stdout, tmp_path, project_snapshot.parent)
            assert not wide, f"{len(wide)} lines over {WIDTH} columns, e.g. {wide[:3]}"
    elif expected == "stderr":
        assert result.returncode == 0, result.stderr
        assert result.stderr.strip() and not wide_lines(result.stderr, tmp_path, project_snapshot.parent)
    else:
        assert result.returncode == 2, result.stdout
        assert not result.stdout.strip()
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and expected in errors[0], result.stderr


def test_rules_lists_each_code_once_without_cutting_names(tmp_path: Path) -> None:
    result = run("rules", tmp_path=tmp_path, env={"COLUMNS": str(WIDTH)})
    assert result.returncode == 0, result.stderr
    words = result.stdout.split()
    for code, rule in load_all().items():
        assert words.count(code) == 1, code
        assert rule.name in words, f"{rule.name} cut or wrapped"
    assert words.count("code") == 1  # one header: one table
    listed = run("rules", "--format", "md", tmp_path=tmp_path)
    assert listed.returncode == 2
    assert "Invalid value for '--format'" in listed.stderr and "'md'" in listed.stderr
    assert "terminal or json" in invoke("rules", "--help").stdout
