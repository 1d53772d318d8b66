"""The command line as a user runs it: exit codes, the JSON contract, snapshots, no tracebacks.

Commands run in this process (tests/cli_runner.py: the same parsing and output, no interpreter start);
the secrets canary and the priorities run real processes, which is what they are about."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from stackaudit.priority import nice_level
from stackaudit.rules import load_all
from tests.cli_runner import invoke

EXAMPLE = Path(__file__).parents[1] / "stackaudit" / "examples" / "reference-stack"


def run(*args: str, env: dict[str, str] | None = None,
        cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return invoke(*args, env=env, cwd=cwd)


def run_process(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m stackaudit ARGS` as a separate process."""
    full_env = {**os.environ, "DOCKER_HOST": "unix:///nonexistent/docker.sock", **(env or {})}
    return subprocess.run([sys.executable, "-m", "stackaudit", *args], capture_output=True, text=True,
                          env=full_env, timeout=120)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    target = tmp_path / "stack"
    shutil.copytree(EXAMPLE, target)
    (target / ".env.example").rename(target / ".env")
    return target


def test_json_report_has_the_documented_keys() -> None:
    result = run("audit", "--sources", "host", "--format", "json")
    assert result.returncode in (0, 1), result.stderr
    report = json.loads(result.stdout)
    for key in ("schema_version", "generated_at", "tool_version", "facts", "findings", "skipped",
                "collection_errors"):
        assert key in report
    assert report["facts"]["host"]["cpus"] == os.cpu_count()
    for finding in report["findings"]:
        assert set(finding) >= {"code", "name", "severity", "subject", "message", "evidence",
                                "recommendation"}


def test_fail_on_sets_the_exit_code(tmp_path: Path) -> None:
    # The host's / holds root: with a threshold of 0% SYS001 fires critical on it.
    config = tmp_path / "stackaudit.toml"
    config.write_text('[thresholds.SYS001]\nhigh_percent = 0\ncritical_percent = 0\n')
    assert run("audit", "--sources", "host", "--config", str(config), "--select", "SYS001").returncode == 1
    assert run("audit", "--sources", "host", "--config", str(config), "--select", "SYS004").returncode == 0
    relaxed = run("audit", "--sources", "host", "--config", str(config), "--select", "SYS001",
                  "--ignore", "SYS001")
    assert relaxed.returncode == 0


def test_nothing_collected_exits_2_with_the_reason() -> None:
    result = run("audit", "--sources", "docker", "--format", "json")
    assert result.returncode == 2
    report = json.loads(result.stdout)
    assert report["collection_errors"][0]["source"] == "docker"
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("args", [
    ("audit", "--sources", "nosuch"),
    ("audit", "--fail-on", "loud"),
    ("audit", "--facts", "/nonexistent/facts.json"),
    ("audit", "--project-dir", "/nonexistent/dir"),
    ("explain", "XYZ999"),
])
def test_usage_errors_exit_2_without_traceback(args: tuple[str, ...]) -> None:
    result = run(*args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr + result.stdout
    assert "error" in result.stderr.lower()


def test_malformed_config_and_facts_are_clear_errors(tmp_path: Path) -> None:
    bad_config = tmp_path / "bad.toml"
    bad_config.write_text("[thresholds\n")
    result = run("audit", "--config", str(bad_config))
    assert result.returncode == 2 and "not valid TOML" in result.stderr
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("[thresholds.SYS001]\nhigh_pct = 3\n")
    result = run("audit", "--config", str(unknown))
    assert result.returncode == 2 and "high_pct" in result.stderr
    bad_facts = tmp_path / "facts.json"
    bad_facts.write_text("{not json")
    result = run("audit", "--facts", str(bad_facts))
    assert result.returncode == 2 and "Traceback" not in result.stderr


def test_collect_then_audit_facts_gives_identical_findings(tmp_path: Path, project: Path) -> None:
    snapshot = tmp_path / "facts.json"
    collected = run("collect", "--sources", "host,compose,env,app", "-p", str(project),
                    "--out", str(snapshot))
    assert collected.returncode == 0, collected.stderr
    live = run("audit", "--sources", "host,compose,env,app", "-p", str(project), "--format", "json")
    replay = run("audit", "--facts", str(snapshot), "--format", "json", cwd=tmp_path)
    live_findings = [(f["code"], f["subject"]) for f in json.loads(live.stdout)["findings"]]
    replay_report = json.loads(replay.stdout)
    replay_findings = [(f["code"], f["subject"]) for f in replay_report["findings"]]
    assert live_findings and live_findings == replay_findings
    # and the snapshot's own findings are reproduced exactly, messages included
    again = json.loads(run("audit", "--facts", str(snapshot), "--format", "json").stdout)
    assert again["findings"] == replay_report["findings"]


def test_canary_secrets_never_leave(tmp_path: Path, project: Path) -> None:
    canaries = {"env": "CanaryEnvPassw0rd-7f3a", "compose": "CanaryComposeToken-91be",
                "dsn": "CanaryDsnSecret-55c1", "environ": "CanaryEnvironSecret-0d2e"}
    env_file = project / ".env"
    env_file.write_text(env_file.read_text().replace("changeme", canaries["env"]))
    compose = project / "compose.yml"
    compose.write_text(compose.read_text().replace(
        "TUNNEL_TOKEN: ${TUNNEL_TOKEN}", f"TUNNEL_TOKEN: {canaries['compose']}"))
    env = {"STACKAUDIT_REDIS_URL": f"redis://:{canaries['environ']}@127.0.0.1:1/0"}
    dsn = f"postgresql://app:{canaries['dsn']}@127.0.0.1:1/app"
    outputs = []
    for fmt in ("json", "md", "terminal"):
        result = run_process("audit", "-p", str(project), "--pg", dsn, "--format", fmt, env=env)
        outputs += [result.stdout, result.stderr]
    snapshot = tmp_path / "facts.json"
    result = run_process("collect", "-p", str(project), "--pg", dsn, "--out", str(snapshot), env=env)
    outputs += [result.stdout, result.stderr, snapshot.read_text()]
    everything = "\n".join(outputs)
    assert "SEC" in everything or "compose" in everything  # the audit did run
    for where, secret in canaries.items():
        assert secret not in everything, f"the {where} canary leaked"


def test_rules_and_explain_list_every_code() -> None:
    listed = json.loads(run("rules", "--format", "json").stdout)
    assert [r["code"] for r in listed] == sorted(load_all())
    page = run("explain", "sys001")
    assert page.returncode == 0
    for heading in ("What it checks", "Why it matters", "Recommendation", "Estimated effect",
                    "Fix safety", "References"):
        assert f"## {heading}" in page.stdout


def test_markdown_report_follows_the_reference_structure(project: Path) -> None:
    result = run("audit", "--sources", "host,compose,env,app", "-p", str(project), "--format", "md")
    text = result.stdout
    for heading in ("## Executive summary", "## Infrastructure", "## Optimization plan by phase",
                    "## Risk assessment", "## Expected results", "## Maintenance schedule"):
        assert heading in text, heading
    assert "3-5x" not in text


def test_out_writes_the_file_atomically(tmp_path: Path) -> None:
    out = tmp_path / "r" / "report.json"
    result = run("audit", "--sources", "host", "--format", "json", "--out", str(out))
    assert result.returncode in (0, 1)
    assert json.loads(out.read_text())["schema_version"] == 1
    assert not list(out.parent.glob(".*tmp"))


def test_html_report_draws_history_from_check_and_verify_results(tmp_path: Path) -> None:
    state = tmp_path / "state"
    env = {"STACKAUDIT_STATE_DIR": str(state)}
    for _ in range(3):  # `check` records disk use in the history database
        assert run("check", "--sources", "host", env=env).returncode in (0, 1)
    verify = tmp_path / "verify.json"
    verify.write_text(json.dumps({"statements": [{"label": "SELECT 1", "before_ms": 12.5, "after_ms": 3.5}]}))
    out = tmp_path / "report.html"
    result = run("audit", "--sources", "host", "--format", "html", "--out", str(out),
                 "--verify", str(verify), env=env)
    assert result.returncode in (0, 1), result.stderr
    page = out.read_text()
    assert "Disk use of / over time" in page
    assert "Measured before and after the changes" in page and "12.5" in page
    broken = run("audit", "--sources", "host", "--format", "html", "--verify", str(tmp_path / "nope.json"))
    assert broken.returncode == 2 and "cannot read verify results" in broken.stderr


def test_text_that_looks_like_rich_markup_is_printed_as_it_is(tmp_path: Path) -> None:
    """A path such as [/srv/x] once made Rich raise MarkupError (a traceback) and [tags] vanish."""
    missing = tmp_path / "[/srv]" / "stackaudit.toml"
    result = run("audit", "--sources", "host", "--config", str(missing))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "MarkupError" not in result.stderr
    assert "[/srv]" in result.stderr
    assert "[thresholds.APP002]" in run("rules").stdout


PRIORITY_PROBE = ("import os, sys, psutil\n"
                  "from stackaudit.cli.common import below_the_services\n"
                  "below_the_services(sys.argv[1])\n"
                  "print(os.getpriority(os.PRIO_PROCESS, 0), int(psutil.Process().ionice().ioclass),\n"
                  "      os.sched_getscheduler(0) == os.SCHED_IDLE)")


def priority_after(command: str, nice: str) -> list[str]:
    """The nice level, I/O class and idle scheduling class of a child that ran below_the_services,
    unattended (stdin not a terminal)."""
    return subprocess.run([sys.executable, "-c", PRIORITY_PROBE, command], capture_output=True, text=True,
                          check=True, stdin=subprocess.DEVNULL,
                          env={**os.environ, "STACKAUDIT_NICE": nice}).stdout.split()


# Records the priority when the CLI framework is first imported, then runs a real `stackaudit audit`.
IMPORT_PRIORITY_PROBE = """
import os, sys
seen = []
class Watch:
    def find_spec(self, name, path=None, target=None):
        if name == "typer" and not seen:
            seen.append(os.getpriority(os.PRIO_PROCESS, 0))
sys.meta_path.insert(0, Watch())
sys.argv = ["stackaudit", "audit", "--sources", "host", "--format", "json"]
import atexit
atexit.register(lambda: print("PRIORITY", seen[0]))  # the entry point ends the process itself
from stackaudit.__main__ import main
main()
"""


def test_an_audit_is_below_the_services_before_its_imports(tmp_path: Path) -> None:
    """The CLI framework and the collectors are imported at the lower priority too (they are a third
    of an audit's CPU): `stackaudit.__main__` lowers it first."""
    done = subprocess.run([sys.executable, "-c", IMPORT_PRIORITY_PROBE], capture_output=True, text=True,
                          env={**os.environ, "STACKAUDIT_NICE": "1", "STACKAUDIT_STATE_DIR": str(tmp_path)},
                          cwd=tmp_path, timeout=120)
    assert done.stdout.splitlines()[-1] == "PRIORITY 19", done.stderr


AUTOGROUP_PROBE = ("import os, sys\n"
                   "from stackaudit.priority import below_the_services\n"
                   "below_the_services('audit')\n"
                   "autogroup = open('/proc/self/autogroup').read().split()\n"
                   # a session that never called setsid since boot is in the root group: an empty file
                   "print(os.getsid(0) == os.getpid(), autogroup[-1] if autogroup else 'root-group',\n"
                   "      os.sched_getscheduler(0) == os.SCHED_IDLE)")


@pytest.mark.skipif(not Path("/proc/self/autogroup").exists(), reason="no autogroup scheduling here")
def test_from_a_script_an_audit_is_an_idle_session_of_its_own_on_a_terminal_it_stays() -> None:
    """Autogroup shares CPU between sessions before nice counts: a script's audit takes its own
    session at nice 19 and the idle scheduling class; one on a terminal stays in the user's session
    (Ctrl-C reaches it) and in the normal class (the user is waiting for it)."""
    env = {**os.environ, "STACKAUDIT_NICE": "1"}
    scripted = subprocess.run([sys.executable, "-c", AUTOGROUP_PROBE], stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, env=env)
    assert scripted.returncode == 0, scripted.stderr
    assert scripted.stdout.split() == ["True", "19", "True"]
    primary, secondary = os.openpty()
    try:
        on_terminal = subprocess.run([sys.executable, "-c", AUTOGROUP_PROBE], stdin=secondary,
                                     capture_output=True, text=True, env=env)
    finally:
        os.close(primary)
        os.close(secondary)
    assert on_terminal.returncode == 0, on_terminal.stderr
    # its session's autogroup keeps the nice it had
    assert [on_terminal.stdout.split()[0], on_terminal.stdout.split()[2]] == ["False", "False"]


def test_observing_commands_run_below_the_services_unless_told_not_to() -> None:
    import psutil

    idle_io = str(int(psutil.IOPRIO_CLASS_IDLE))
    assert priority_after("audit", "1") == ["19", idle_io, "True"]
    assert priority_after("collect", "on") == ["19", idle_io, "True"]  # a typo is the default
    # the alerting path keeps the normal scheduling class, so it is not held up on a saturated host
    assert priority_after("check", "1") == ["19", idle_io, "False"]
    # a level chosen by the user is that level and nothing more
    chosen = str(max(12, os.getpriority(os.PRIO_PROCESS, 0)))
    assert priority_after("audit", "12") == [chosen, idle_io, "False"]
    normal = priority_after("audit", "0")
    assert normal == [str(os.getpriority(os.PRIO_PROCESS, 0)), str(int(psutil.Process().ionice().ioclass)),
                      "False"]


@pytest.mark.parametrize(("setting", "level"), [(None, None), ("1", None), ("0", 0), ("7", 7), ("19", 19),
                                                ("20", None), ("-5", None), ("high", None), ("", None)])
def test_stackaudit_nice_never_raises_the_priority_by_a_typo(setting: str | None, level: int | None) -> None:
    assert nice_level(setting) == level
