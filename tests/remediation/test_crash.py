"""SIGKILL at every phase boundary of apply, from outside, then one `rollback` (or the next `apply`).

tests/remediation/kill_harness.py runs the CLI and parks it right after the journal records the phase
(stackaudit.remediation.apply.PHASES); the test then kills it with SIGKILL. After each kill the
journal is left "running"; one `rollback` must finish it and restore the state before the apply:
undone when the kill came before the health checks passed, completed then rolled back when it came
after them (the operator asked for a rollback: they get one). The plans name their server, so
neither command is given --pg.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from stackaudit.localpg import LocalCluster
from stackaudit.remediation.apply import PHASES
from stackaudit.remediation.journal import list_journals
from stackaudit.remediation.plan import Plan
from tests.remediation.test_apply_live import ROOT, auto_conf, cli, host_plan, pg_step, show
from tests.services import running_cluster

pytestmark = pytest.mark.integration

# PG15: a restart setting (recovery must restart); PG18: a reload setting.
CASES = {15: ("shared_buffers", "128MB", "144MB", True), 18: ("work_mem", "4MB", "24MB", False)}
HANG_GUARD_SECONDS = 300  # only so a broken run fails instead of hanging the suite


@pytest.fixture(scope="module", params=[15, 18], ids=["pg15", "pg18"])
def crash_cluster(request: pytest.FixtureRequest) -> Iterator[tuple[int, LocalCluster]]:
    with running_cluster(request.param) as cluster:
        yield request.param, cluster


def named_plan(cluster: LocalCluster, major: int) -> Plan:
    name, current, desired, restart = CASES[major]
    plan = host_plan(pg_step(name, current, desired, restart))
    return Plan(plan.steps, plan.noops, {**plan.target, "dsn": cluster.dsn(), "label": f"test pg{major}"})


def kill_at(phase: str, *args: str) -> None:
    """Run `stackaudit ARGS` until its journal records PHASE, then SIGKILL it."""
    read, write = os.pipe()
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.remediation.kill_harness", phase, str(write), *args],
        cwd=ROOT,
        pass_fds=(write,),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    os.close(write)
    with os.fdopen(read) as pipe:
        ready, _, _ = select.select([pipe], [], [], HANG_GUARD_SECONDS)
        reached = pipe.readline().strip() if ready else ""
    process.send_signal(signal.SIGKILL)
    out, err = process.communicate()
    assert reached == phase, f"apply never reached {phase}: {out}{err}"
    assert process.returncode == -signal.SIGKILL


@pytest.mark.parametrize("phase", PHASES)
def test_kill_at_each_boundary_then_one_rollback_restores(
    crash_cluster: tuple[int, LocalCluster], phase: str, tmp_path: Path
) -> None:
    major, cluster = crash_cluster
    name, current, _desired, _restart = CASES[major]
    state = tmp_path / "state"
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps(named_plan(cluster, major).to_json()))
    before = auto_conf(cluster)

    kill_at(phase, "apply", str(plan_file), "--yes", "--allow-restart", "--state-dir", str(state))
    journal = list_journals(state, "apply")[-1]
    assert journal.document["status"] == "running"
    assert [s["phase"] for s in journal.steps][-1] == phase

    result = cli("rollback", "--yes", "--format", "json", "--state-dir", str(state))
    assert result.returncode == 0, result.stdout + result.stderr
    output = json.loads(result.stdout)
    action = output["recovered"][0]["action"]
    status = list_journals(state, "apply")[-1].document["status"]
    if phase == "healthy":  # every change was made and checked: completed, then rolled back as asked
        assert action == "completed" and output["status"] == "rolled-back" and status == "rolled-back"
    elif PHASES.index(phase) < PHASES.index("snapshot"):
        assert action.startswith("abandoned") and status == "abandoned" and output["status"] == "nothing"
    else:
        assert action.startswith("undone") and status == "rolled-back" and output["status"] == "nothing"
    assert auto_conf(cluster) == before
    assert show(cluster, name) == current
    assert not _pending_restart(cluster)
    again = cli("rollback", "--yes", "--format", "json", "--state-dir", str(state))
    assert json.loads(again.stdout)["status"] == "nothing"  # nothing left: the first one did it all


def test_next_apply_recovers_then_applies(crash_cluster: tuple[int, LocalCluster], tmp_path: Path) -> None:
    major, cluster = crash_cluster
    name, current, desired, _restart = CASES[major]
    state = tmp_path / "state"
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps(named_plan(cluster, major).to_json()))
    before = auto_conf(cluster)
    common = ["--state-dir", str(state)]
    kill_at("written", "apply", str(plan_file), "--yes", "--allow-restart", *common)
    again = cli("apply", str(plan_file), "--yes", "--allow-restart", "--format", "json", *common)
    output = json.loads(again.stdout)
    assert output["recovered"][0]["action"].startswith("undone") and output["status"] == "done"
    assert show(cluster, name) == desired
    assert [j.document["status"] for j in list_journals(state, "apply")] == ["rolled-back", "done"]
    assert cli("rollback", "--yes", *common).returncode == 0
    assert auto_conf(cluster) == before and show(cluster, name) == current


def test_journal_of_a_vanished_server_is_set_aside_and_stops_blocking(
    crash_cluster: tuple[int, LocalCluster], tmp_path: Path
) -> None:
    """A run killed after writing, whose server then disappears, blocks every later rollback until
    it is set aside; setting it aside is journalled and keeps the file."""
    major, cluster = crash_cluster
    state = tmp_path / "state"
    gone = tmp_path / "gone"
    with running_cluster(major) as doomed:
        plan_file = tmp_path / "plan.json"
        plan_file.write_text(json.dumps(named_plan(doomed, major).to_json()))
        kill_at("written", "apply", str(plan_file), "--yes", "--allow-restart", "--state-dir", str(state))
        doomed.stop("immediate")
        doomed.data_dir.rename(gone)  # the server and its files are gone for good
    [journal] = list_journals(state, "apply")

    blocked = cli("rollback", "--yes", "--state-dir", str(state))
    assert blocked.returncode == 2
    assert "could not be undone" in blocked.stderr and f"--set-aside {journal.id}" in blocked.stderr

    aside = cli(
        "rollback", "--set-aside", journal.id, "--reason", "server rebuilt", "--format", "json",
        "--state-dir", str(state),
    )
    assert aside.returncode == 0, aside.stdout + aside.stderr
    assert json.loads(aside.stdout)["status"] == "set-aside"
    kept = list_journals(state, "apply")[0]
    assert kept.document["status"] == "set-aside" and kept.steps[-1]["phase"] == "set-aside"
    assert kept.steps[-1]["previous_status"] == "running" and kept.steps[-1]["reason"] == "server rebuilt"

    after = cli("rollback", "--yes", "--format", "json", "--state-dir", str(state))
    assert after.returncode == 0 and json.loads(after.stdout)["status"] == "nothing"
    plan_file.write_text(json.dumps(named_plan(cluster, major).to_json()))
    applied = cli(
        "apply", str(plan_file), "--yes", "--allow-restart", "--format", "json", "--state-dir", str(state)
    )
    assert json.loads(applied.stdout)["status"] == "done", applied.stdout + applied.stderr
    assert cli("rollback", "--yes", "--state-dir", str(state)).returncode == 0


def _pending_restart(cluster: LocalCluster) -> bool:
    import psycopg

    with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
        row = conn.execute("SELECT bool_or(pending_restart) FROM pg_settings").fetchone()
    return bool(row and row[0])
