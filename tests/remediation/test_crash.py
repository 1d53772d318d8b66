"""SIGKILL at every phase boundary of apply, then recovery by the next `rollback` or `apply`.

The test hook STACKAUDIT_TEST_KILL_AT=<phase> makes `apply` SIGKILL itself right after journalling
that phase (stackaudit.remediation.apply.PHASES). After each kill the journal is left "running"; the
next command must find it and either complete it (killed after the health checks) or undo it, and
the server and its files must be exactly as before (or exactly as planned, when completed).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from stackaudit.localpg import LocalCluster
from stackaudit.remediation.apply import KILL_HOOK_ENV, PHASES
from stackaudit.remediation.journal import list_journals
from tests.remediation.test_apply_live import auto_conf, cli, host_plan, pg_step, show
from tests.services import running_cluster

pytestmark = pytest.mark.integration

# PG15: a restart setting (recovery must restart); PG18: a reload setting.
CASES = {15: ("shared_buffers", "128MB", "144MB", True), 18: ("work_mem", "4MB", "24MB", False)}


@pytest.fixture(scope="module", params=[15, 18], ids=["pg15", "pg18"])
def crash_cluster(request: pytest.FixtureRequest) -> Iterator[tuple[int, LocalCluster]]:
    with running_cluster(request.param) as cluster:
        yield request.param, cluster


@pytest.mark.parametrize("phase", PHASES)
def test_kill_at_each_boundary_then_rollback_recovers(
    crash_cluster: tuple[int, LocalCluster], phase: str, tmp_path: Path
) -> None:
    major, cluster = crash_cluster
    name, current, desired, restart = CASES[major]
    state = tmp_path / "state"
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps(host_plan(pg_step(name, current, desired, restart)).to_json()))
    before = auto_conf(cluster)
    common = ["--pg", cluster.dsn(), "--state-dir", str(state)]

    killed = cli("apply", str(plan_file), "--yes", "--allow-restart", *common, env={KILL_HOOK_ENV: phase})
    assert killed.returncode == -9, killed.stdout + killed.stderr
    journal = list_journals(state, "apply")[-1]
    assert journal.document["status"] == "running"
    assert [s["phase"] for s in journal.steps][-1] == phase

    recovered = cli("rollback", "--yes", "--format", "json", *common)
    assert recovered.returncode == 0, recovered.stdout + recovered.stderr
    action = json.loads(recovered.stdout)["recovered"][0]["action"]
    status = list_journals(state, "apply")[-1].document["status"]
    if phase == "healthy":  # every change was made and checked: completed, then rolled back by hand
        assert action.startswith("completed") and status == "done"
        assert show(cluster, name) == desired
        assert cli("rollback", "--yes", *common).returncode == 0
    elif PHASES.index(phase) < PHASES.index("snapshot"):
        assert action.startswith("abandoned") and status == "abandoned"
    else:
        assert action.startswith("undone") and status == "rolled-back"
    assert auto_conf(cluster) == before
    assert show(cluster, name) == current
    assert show(cluster, "server_version") and not _pending_restart(cluster)


def test_next_apply_recovers_then_applies(crash_cluster: tuple[int, LocalCluster], tmp_path: Path) -> None:
    major, cluster = crash_cluster
    name, current, desired, restart = CASES[major]
    state = tmp_path / "state"
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps(host_plan(pg_step(name, current, desired, restart)).to_json()))
    before = auto_conf(cluster)
    common = ["--pg", cluster.dsn(), "--state-dir", str(state)]
    assert (
        cli(
            "apply", str(plan_file), "--yes", "--allow-restart", *common, env={KILL_HOOK_ENV: "written"}
        ).returncode
        == -9
    )
    again = cli("apply", str(plan_file), "--yes", "--allow-restart", "--format", "json", *common)
    output = json.loads(again.stdout)
    assert output["recovered"][0]["action"].startswith("undone") and output["status"] == "done"
    assert show(cluster, name) == desired
    assert [j.document["status"] for j in list_journals(state, "apply")] == ["rolled-back", "done"]
    assert cli("rollback", "--yes", *common).returncode == 0
    assert auto_conf(cluster) == before and show(cluster, name) == current


def _pending_restart(cluster: LocalCluster) -> bool:
    import psycopg

    with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
        row = conn.execute("SELECT bool_or(pending_restart) FROM pg_settings").fetchone()
    return bool(row and row[0])
