"""The role stackaudit_metrics, applied for real with `ansible-playbook -c local` into a temp root.

Four inventory hosts, all this machine, one per case: the service (systemd), the textfile timer
(systemd), the textfile cron entry (no systemd) and the service where systemd is not PID 1 (a clear
failure). systemctl is off: systemd is not PID 1 in this sandbox, so the units are checked with
`systemd-analyze verify` and their commands are run as systemd and cron would run them.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shlex
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from stackaudit.fleet.inventory import ansible_program
from stackaudit.localpg import free_port
from stackaudit.monitor import METRICS_PORT
from stackaudit.monitor.metrics import TEXTFILE_NAME

ROLES = Path(__file__).parents[2] / "stackaudit" / "fleet" / "ansible" / "roles"
ROLE = ROLES / "stackaudit_metrics"
BIN = str(Path(sys.executable).parent / "stackaudit")
CANARY = "CANARY-metrics-5e1"
CASES = ("service", "timer", "cron", "nosystemd")


@dataclass(frozen=True)
class Applied:
    root: Path
    port: int
    runs: tuple[subprocess.CompletedProcess[str], ...]

    def case(self, name: str) -> Path:
        return self.root / name

    def unit(self, case: str, name: str) -> str:
        return (self.case(case) / "units" / name).read_text()


def _host_vars(root: Path, case: str, port: int) -> dict[str, object]:
    where = root / case
    return {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        "stackaudit_bin": BIN,
        "stackaudit_metrics_become": False,
        "stackaudit_metrics_systemctl": False,
        "stackaudit_metrics_scheduler": "cron" if case in ("cron", "nosystemd") else "systemd",
        "stackaudit_metrics_mode": "service" if case in ("service", "nosystemd") else "textfile",
        "stackaudit_metrics_unit_dir": str(where / "units"),
        "stackaudit_metrics_env_dir": str(where / "etc"),
        "stackaudit_metrics_cron_file": str(where / "cron.d" / "stackaudit-metrics"),
        "stackaudit_textfile_dir": str(where / "textfile"),
        "stackaudit_metrics_address": "127.0.0.1",
        "stackaudit_metrics_port": port,
        "stackaudit_project_dirs": [str(where / "my 50% project")],
        "stackaudit_sources": "host",
        "stackaudit_pg_dsn": f"postgresql://app:{CANARY}@127.0.0.1:1/app",
    }


def _playbook(root: Path) -> list[subprocess.CompletedProcess[str]]:
    port = free_port()
    inventory = {"all": {"hosts": {case: _host_vars(root, case, port) for case in CASES}}}
    (root / "inventory.json").write_text(json.dumps(inventory))
    (root / "play.yml").write_text(
        "- hosts: all\n  gather_facts: false\n  roles: [stackaudit_metrics]\n")
    for case in CASES:
        (root / case / "my 50% project").mkdir(parents=True)
    (root / "timer" / "textfile").mkdir(mode=0o750)  # node_exporter's, already there: left as it is
    env = {**os.environ, "ANSIBLE_ROLES_PATH": str(ROLES), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_LOCAL_TEMP": str(root / "tmp"), "ANSIBLE_HOME": str(root / "ansible"),
           "ANSIBLE_PIPELINING": "True"}
    command = [ansible_program("ansible-playbook"), "-i", str(root / "inventory.json"),
               str(root / "play.yml")]
    # the second run (is it idempotent?) leaves out the host that fails anyway
    return [subprocess.run([*command, *limit], capture_output=True, text=True, env=env, timeout=600,
                           check=False) for limit in ([], ["--limit", "!nosystemd"])]


@pytest.fixture(scope="module")
def applied(tmp_path_factory: pytest.TempPathFactory) -> Applied:
    root = tmp_path_factory.mktemp("role")
    runs = _playbook(root)
    port = json.loads((root / "inventory.json").read_text())["all"]["hosts"]["service"][
        "stackaudit_metrics_port"]
    return Applied(root, port, tuple(runs))


def recap(run: subprocess.CompletedProcess[str], host: str) -> dict[str, int]:
    line = next(line for line in run.stdout.splitlines() if re.match(rf"{host}\s+:", line))
    return {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", line)}


def exec_start(unit: str) -> list[str]:
    """The command systemd runs: ExecStart= split as systemd does (quotes, %% and $$ undone)."""
    line = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    words = shlex.split(line.removeprefix("ExecStart="))
    return [word.replace("%%", "%").replace("$$", "$") for word in words]


def verify(*units: Path) -> str:
    """systemd-analyze verify's complaints about these units (none is the goal)."""
    done = subprocess.run(["systemd-analyze", "verify", *map(str, units)], capture_output=True,
                          text=True, timeout=60, check=False)
    names = [unit.name for unit in units]
    return "\n".join(line for line in (done.stdout + done.stderr).splitlines()
                     if any(name in line for name in names)) + ("" if done.returncode == 0 else "exit != 0")


def test_the_service_runs_the_metrics_of_the_host_as_the_venvs_owner(applied: Applied) -> None:
    unit = applied.unit("service", "stackaudit-metrics.service")
    project = str(applied.case("service") / "my 50% project")
    assert exec_start(unit) == [BIN, "metrics", "--listen", f"127.0.0.1:{applied.port}",
                                f"--project-dir={project}", "--sources", "host"]
    assert f"User={pwd.getpwuid(os.stat(BIN).st_uid).pw_name}" in unit.splitlines()
    assert "WantedBy=multi-user.target" in unit and "Restart=on-failure" in unit
    assert verify(applied.case("service") / "units" / "stackaudit-metrics.service") == ""


def test_the_dsn_is_in_an_environment_file_for_the_metrics_user_only(applied: Applied) -> None:
    env_file = applied.case("service") / "etc" / "metrics.env"
    assert env_file.stat().st_mode & 0o777 == 0o600
    assert env_file.read_text() == f"STACKAUDIT_PG_DSN=postgresql://app:{CANARY}@127.0.0.1:1/app\n"
    assert f"EnvironmentFile=-{env_file}" in applied.unit("service", "stackaudit-metrics.service")
    for run in applied.runs:
        assert CANARY not in run.stdout + run.stderr  # no_log: Ansible's output never shows it
    assert not [p for p in (applied.case("service") / "units").iterdir() if CANARY in p.read_text()]


def test_the_textfile_mode_is_a_timer_on_systemd(applied: Applied) -> None:
    units = applied.case("timer") / "units"
    assert sorted(p.name for p in units.iterdir()) == [
        "stackaudit-metrics-textfile.service", "stackaudit-metrics-textfile.timer"]
    service = applied.unit("timer", "stackaudit-metrics-textfile.service")
    assert exec_start(service)[:4] == [BIN, "metrics", "--textfile", str(applied.case("timer") / "textfile")]
    assert "Type=oneshot" in service
    assert "OnCalendar=*:0/5" in applied.unit("timer", "stackaudit-metrics-textfile.timer")
    assert verify(*units.iterdir()) == ""
    assert not (applied.case("timer") / "cron.d" / "stackaudit-metrics").exists()
    assert (applied.case("timer") / "textfile").stat().st_mode & 0o777 == 0o750


def test_the_textfile_mode_is_a_cron_entry_without_systemd_and_it_writes_the_textfile(
        applied: Applied) -> None:
    case = applied.case("cron")
    assert not (case / "units").exists()
    lines = (case / "cron.d" / "stackaudit-metrics").read_text().splitlines()
    entry = next(line for line in lines if line.startswith("*/5 * * * * "))
    user, command = entry.removeprefix("*/5 * * * * ").split(" ", 1)
    assert user == pwd.getpwuid(os.stat(BIN).st_uid).pw_name
    assert "\\%" in command  # cron turns a bare % into a newline
    # as cron runs it: /bin/sh (SHELL=), % unescaped, the environment file sourced
    done = subprocess.run(["/bin/sh", "-c", command.replace("\\%", "%")], capture_output=True, text=True,
                          timeout=180, check=False, env={"PATH": "/usr/bin:/bin",
                                                         "STACKAUDIT_STATE_DIR": str(case / "state")})
    assert done.returncode == 0, done.stderr
    assert "stackaudit_disk_used_ratio" in (case / "textfile" / TEXTFILE_NAME).read_text()


def test_the_service_mode_without_systemd_fails_with_the_reason(applied: Applied) -> None:
    first = applied.runs[0]
    assert recap(first, "nosystemd")["failed"] == 1
    assert "needs systemd as PID 1" in first.stdout
    assert not (applied.case("nosystemd") / "units").exists()


def test_a_second_run_changes_nothing(applied: Applied) -> None:
    first, second = applied.runs
    for case in ("service", "timer", "cron"):
        assert recap(first, case)["failed"] == 0, first.stdout[-3000:]
        assert recap(first, case)["changed"] > 0
        assert recap(second, case)["changed"] == 0, second.stdout[-3000:]


def test_the_roles_default_port_is_the_one_metrics_documents() -> None:
    defaults = YAML(typ="safe").load((ROLE / "defaults" / "main.yml").read_text())
    assert defaults["stackaudit_metrics_port"] == METRICS_PORT


@pytest.mark.integration
def test_the_service_command_serves_metrics_where_targets_json_points(applied: Applied,
                                                                      tmp_path: Path) -> None:
    """The unit's ExecStart, run as systemd would (its environment file loaded), answers a scrape."""
    command = exec_start(applied.unit("service", "stackaudit-metrics.service"))
    env = {"PATH": "/usr/bin:/bin", "STACKAUDIT_STATE_DIR": str(tmp_path / "state"),
           "STACKAUDIT_SOURCES": "host"}
    with subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as process:
        try:
            text = _scrape(f"http://127.0.0.1:{applied.port}/metrics", process)
        finally:
            process.terminate()
            process.wait(timeout=30)
    assert "stackaudit_check_timestamp_seconds" in text


def _scrape(url: str, process: subprocess.Popen[bytes]) -> str:
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                return str(response.read().decode())
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise
            time.sleep(0.2)

