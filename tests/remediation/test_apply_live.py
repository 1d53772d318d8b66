"""apply and rollback against real PostgreSQL 15 and 18 clusters these tests own (and restart).

Each test makes its own cluster (tests.services.running_cluster), so the restarts never disturb the
session-wide fixtures. Nothing here is mocked: ALTER SYSTEM, `postgres -C`, pg_ctl restarts, pg_dump
backups and the health checks run for real.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from stackaudit.config import Settings
from stackaudit.localpg import LocalCluster
from stackaudit.model import Risk
from stackaudit.remediation import actions
from stackaudit.remediation.apply import ApplyOptions, apply_plan
from stackaudit.remediation.journal import list_journals
from stackaudit.remediation.plan import ALTER_SYSTEM, COMPOSE_OVERRIDE, ENV, PG_SETTING, Plan, Step
from stackaudit.remediation.rollback import rollback
from tests.services import running_cluster

pytestmark = pytest.mark.integration

BIG_BUDGET = {"postgres_bytes": 64 * 2**30, "explanation": "test budget"}
ROOT = Path(__file__).resolve().parents[2]


def pg_step(name: str, current: str | None, desired: str, restart: bool) -> Step:
    return Step(
        id=f"pg:{name}",
        kind=PG_SETTING,
        subject=f"PostgreSQL {name}",
        change=f"{name} -> {desired}",
        current=current,
        desired=desired,
        risk=Risk.CONFIRM if restart else Risk.SAFE,
        restart=restart,
        reason="test",
        undo="auto.conf restored",
        params={"name": name, "method": ALTER_SYSTEM},
    )


def host_plan(*steps: Step, budget: dict[str, Any] | None = None) -> Plan:
    return Plan(
        tuple(steps),
        (),
        {"method": ALTER_SYSTEM, "database": "postgres", "budget": budget or BIG_BUDGET, "app_projects": []},
    )


def show(cluster: LocalCluster, name: str) -> str:
    with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
        row = conn.execute("SELECT current_setting(%s)", (name,)).fetchone()
    assert row is not None
    return str(row[0])


def started_at(cluster: LocalCluster) -> str:
    with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
        row = conn.execute("SELECT pg_postmaster_start_time()::text").fetchone()
    assert row is not None
    return str(row[0])


def auto_conf(cluster: LocalCluster) -> bytes:
    return (cluster.data_dir / "postgresql.auto.conf").read_bytes()


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stackaudit", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        timeout=300,
        check=False,
    )


@pytest.fixture(params=[15, 18], ids=["pg15", "pg18"])
def own_cluster(request: pytest.FixtureRequest) -> Iterator[LocalCluster]:
    with running_cluster(request.param) as cluster:
        yield cluster


def test_reload_setting_applies_with_backup_and_rolls_back_byte_identical(
    own_cluster: LocalCluster, state_dir: Path
) -> None:
    settings = Settings(state_dir=state_dir)
    before = auto_conf(own_cluster)
    plan = host_plan(pg_step("work_mem", "4MB", "16MB", restart=False))
    result = apply_plan(plan, settings, ApplyOptions(dsn=own_cluster.dsn()))  # SAFE: no flag needed
    assert result.status == "done", result.message
    assert show(own_cluster, "work_mem") == "16MB"
    assert "work_mem = '16MB'" in auto_conf(own_cluster).decode()
    assert (
        result.backup is not None
        and result.backup["taken"]
        and Path(result.backup["file"]).stat().st_size > 0
    )
    assert {c["name"] for c in result.checks} >= {
        "postgres -C",
        "memory budget",
        "server accepts connections",
        "settings read back as planned",
    }
    journal = json.loads((state_dir / "journal" / f"{result.journal}.json").read_text())
    snapshot = next(s for s in journal["steps"] if s["phase"] == "snapshot")
    assert snapshot["settings"]["work_mem"]["value"] == "4MB"  # taken before the change
    assert actions.file_matches(snapshot["files"][0]) is False  # ... and the file did change since

    preview = rollback(settings, None, yes=False, dsn=own_cluster.dsn(), docker_host=None)
    assert preview.status == "dry-run" and preview.would_restore is not None
    assert show(own_cluster, "work_mem") == "16MB"
    undone = rollback(settings, None, yes=True, dsn=own_cluster.dsn(), docker_host=None)
    assert undone.status == "rolled-back", undone.message
    assert auto_conf(own_cluster) == before
    assert show(own_cluster, "work_mem") == "4MB"


def test_restart_setting_needs_both_flags_then_restarts_and_rolls_back(
    own_cluster: LocalCluster, state_dir: Path
) -> None:
    settings = Settings(state_dir=state_dir)
    before, start = auto_conf(own_cluster), started_at(own_cluster)
    plan = host_plan(pg_step("shared_buffers", "128MB", "160MB", restart=True))
    refused = apply_plan(plan, settings, ApplyOptions(dsn=own_cluster.dsn(), allow_restart=True))
    assert refused.status == "nothing" and "needs --yes" in refused.skipped[0]["why"]
    refused = apply_plan(plan, settings, ApplyOptions(dsn=own_cluster.dsn(), yes=True))
    assert refused.status == "nothing" and "--allow-restart" in refused.skipped[0]["why"]
    assert started_at(own_cluster) == start

    result = apply_plan(plan, settings, ApplyOptions(dsn=own_cluster.dsn(), yes=True, allow_restart=True))
    assert result.status == "done", result.message
    assert show(own_cluster, "shared_buffers") == "160MB" and started_at(own_cluster) != start
    restarted = started_at(own_cluster)
    undone = rollback(settings, result.journal, yes=True, dsn=own_cluster.dsn(), docker_host=None)
    assert undone.status == "rolled-back", undone.message
    assert auto_conf(own_cluster) == before and show(own_cluster, "shared_buffers") == "128MB"
    assert started_at(own_cluster) != restarted  # the undo of a restart setting restarts too


@pytest.mark.parametrize(
    "name,value,current", [("shared_buffers", "100TB", "128MB"), ("huge_pages", "maybe", "try")]
)
def test_bad_value_rejected_by_postgres_C_before_any_restart(
    own_cluster: LocalCluster, state_dir: Path, name: str, value: str, current: str
) -> None:
    before, start = auto_conf(own_cluster), started_at(own_cluster)
    plan = host_plan(pg_step(name, current, value, restart=True))
    result = apply_plan(
        plan, Settings(state_dir=state_dir), ApplyOptions(dsn=own_cluster.dsn(), yes=True, allow_restart=True)
    )
    assert result.status == "rejected" and result.failed_phase == "validated"
    assert "postgres -C" in result.message and f'invalid value for parameter "{name}"' in result.message
    assert auto_conf(own_cluster) == before and started_at(own_cluster) == start
    assert show(own_cluster, name) == current
    assert result.backup is None  # rejected before the backup and before any snapshot or write


def test_memory_over_budget_rejected(own_cluster: LocalCluster, state_dir: Path) -> None:
    before = auto_conf(own_cluster)
    plan = host_plan(
        pg_step("shared_buffers", "128MB", "2GB", restart=True),
        budget={"postgres_bytes": 512 * 2**20, "explanation": "512MB left for PostgreSQL"},
    )
    result = apply_plan(
        plan, Settings(state_dir=state_dir), ApplyOptions(dsn=own_cluster.dsn(), yes=True, allow_restart=True)
    )
    assert result.status == "rejected" and "memory budget" in result.message and "2GB" in result.message
    assert auto_conf(own_cluster) == before


def test_failed_health_check_rolls_back_automatically(own_cluster: LocalCluster, state_dir: Path) -> None:
    """huge_pages=on passes `postgres -C` (a valid value) but the server cannot start without reserved
    huge pages (vm.nr_hugepages is 0 here): the restart fails, the server is down, and apply puts
    the old auto.conf back and starts it again."""
    assert Path("/proc/sys/vm/nr_hugepages").read_text().strip() == "0"
    before = auto_conf(own_cluster)
    plan = host_plan(pg_step("huge_pages", "try", "on", restart=True))
    result = apply_plan(
        plan, Settings(state_dir=state_dir), ApplyOptions(dsn=own_cluster.dsn(), yes=True, allow_restart=True)
    )
    assert result.status == "rolled-back", result.message
    assert result.failed_phase == "activated" and "restart" in result.message
    assert "shared memory" in result.message  # the server's own reason, from its log
    assert auto_conf(own_cluster) == before and show(own_cluster, "huge_pages") == "try"
    rollback_checks = {c["name"]: c["ok"] for c in result.checks}
    assert rollback_checks["files byte-identical"] and rollback_checks["settings as before"]
    assert list_journals(state_dir, "apply")[-1].document["status"] == "rolled-back"


def test_settings_not_read_back_as_planned_roll_back(state_dir: Path) -> None:
    """A value on the server's command line wins over ALTER SYSTEM: the reload 'works' but work_mem
    reads back unchanged, so the health check fails and the change is undone."""
    with running_cluster(15) as cluster:
        cluster.stop()
        cluster._run(
            [
                str(cluster.bin_dir / "pg_ctl"),
                "-D",
                str(cluster.data_dir),
                "-l",
                str(cluster.log_file),
                "-o",
                "-c work_mem=4MB",
                "-w",
                "start",
            ]
        )
        before = auto_conf(cluster)
        result = apply_plan(
            host_plan(pg_step("work_mem", "4MB", "32MB", restart=False)),
            Settings(state_dir=state_dir),
            ApplyOptions(dsn=cluster.dsn()),
        )
        assert result.status == "rolled-back" and result.failed_phase == "healthy"
        assert "work_mem is 4MB (planned 32MB" in result.message
        assert auto_conf(cluster) == before


def test_stale_plan_stops_before_any_change(own_cluster: LocalCluster, state_dir: Path) -> None:
    before = auto_conf(own_cluster)
    result = apply_plan(
        host_plan(pg_step("work_mem", "8MB", "16MB", restart=False)),
        Settings(state_dir=state_dir),
        ApplyOptions(dsn=own_cluster.dsn()),
    )
    assert result.status == "stopped" and "work_mem is 4MB now, the plan saw 8MB" in result.message
    assert auto_conf(own_cluster) == before and show(own_cluster, "work_mem") == "4MB"


def test_env_file_edit_keeps_mode_and_rolls_back_byte_identical(tmp_path: Path, state_dir: Path) -> None:
    env = tmp_path / "project" / ".env"
    env.parent.mkdir()
    original = b"# app\nWEB_CONCURRENCY=4\r\nDATABASE_URL=postgres://u:secret@db/app\n"
    env.write_bytes(original)
    env.chmod(0o640)
    step = Step(
        id="env:x",
        kind=ENV,
        subject=".env",
        change="",
        current=None,
        desired="2",
        risk=Risk.CONFIRM,
        restart=False,
        reason="t",
        undo="u",
        params={"path": str(env), "key": "WEB_CONCURRENCY", "present": True},
    )
    plan = Plan((step,), (), {"method": None, "app_projects": []})
    settings = Settings(state_dir=state_dir)
    assert apply_plan(plan, settings, ApplyOptions()).status == "nothing"  # CONFIRM needs --yes
    result = apply_plan(plan, settings, ApplyOptions(yes=True))
    assert result.status == "done", result.message
    assert env.read_bytes() == original.replace(b"WEB_CONCURRENCY=4", b"WEB_CONCURRENCY=2")
    assert env.stat().st_mode & 0o777 == 0o640
    assert rollback(settings, None, True, None, None).status == "rolled-back"
    assert env.read_bytes() == original and env.stat().st_mode & 0o777 == 0o640


def test_compose_override_file_written_and_restored_byte_identical(tmp_path: Path) -> None:
    """The file half of the containerised path (recreate: tests/integration/test_container_postgres.py)."""
    override = tmp_path / "compose.override.yaml"
    original = b"services:\n  web:\n    environment:\n      A: '1'  # keep me\n"
    override.write_bytes(original)
    override.chmod(0o600)
    snapshot = actions.snapshot_file(override)
    actions.write_override(override, "db", ["postgres", "-c", "max_connections=50"], {"work_mem": "16MB"})
    text = override.read_text()
    assert "A: '1'  # keep me" in text
    assert "command: [postgres, -c, max_connections=50, -c, work_mem=16MB]" in text
    assert override.stat().st_mode & 0o777 == 0o600
    actions.restore_file(snapshot)
    assert override.read_bytes() == original
    absent = tmp_path / "other.override.yaml"
    gone = actions.snapshot_file(absent)
    actions.write_override(absent, "db", None, {"work_mem": "16MB"})
    actions.restore_file(gone)
    assert not absent.exists()


def test_compose_flags_validated_by_the_servers_parser(own_cluster: LocalCluster) -> None:
    """The -c flags the override would pass, checked by the same `postgres -C` (here on the host's
    binaries of the same version; in production through `docker exec -u postgres`)."""
    server = actions.discover_host_server(str(own_cluster.data_dir))
    assert server.owner == "postgres" and server.manager == "pg_ctl"
    assert (
        Path(server.bin_dir) == own_cluster.bin_dir.resolve() or (Path(server.bin_dir) / "postgres").exists()
    )
    server.validate({"work_mem": "16MB", "max_connections": "50"})
    with pytest.raises(actions.ActionError, match='invalid value for parameter "work_mem"'):
        server.validate({"work_mem": "16 parsecs"})


def test_compose_plan_without_a_known_container_is_rejected_before_writing(
    tmp_path: Path, state_dir: Path, own_cluster: LocalCluster
) -> None:
    override = tmp_path / "compose.override.yaml"
    step = Step(
        id="pg:work_mem",
        kind=PG_SETTING,
        subject="work_mem",
        change="",
        current="4MB",
        desired="16MB",
        risk=Risk.CONFIRM,
        restart=True,
        reason="t",
        undo="u",
        params={"name": "work_mem", "method": COMPOSE_OVERRIDE},
    )
    plan = Plan(
        (step,),
        (),
        {
            "method": COMPOSE_OVERRIDE,
            "database": "postgres",
            "budget": BIG_BUDGET,
            "compose": {
                "dir": str(tmp_path),
                "files": [],
                "override_file": str(override),
                "service": "db",
                "container": None,
            },
            "app_projects": [],
        },
    )
    result = apply_plan(
        plan, Settings(state_dir=state_dir), ApplyOptions(dsn=own_cluster.dsn(), yes=True, allow_restart=True)
    )
    assert result.status == "rejected" and "container of the postgres service is not known" in result.message
    assert not override.exists()


def test_cli_plan_then_apply_end_to_end(state_dir: Path, tmp_path: Path) -> None:
    with running_cluster(18) as cluster:
        plan_file = tmp_path / "plan.json"
        made = cli("plan", "--pg", cluster.dsn(), "--sources", "host,postgres", "--out", str(plan_file))
        assert made.returncode == 0, made.stderr
        plan = json.loads(plan_file.read_text())
        assert plan["target"]["method"] == ALTER_SYSTEM and plan["noops"]
        safe = [s for s in plan["steps"] if s["risk"] == "safe"]
        assert safe, plan["steps"]
        ran = cli("apply", str(plan_file), "--pg", cluster.dsn(), "--format", "json")
        assert ran.returncode == 0, ran.stdout + ran.stderr
        output = json.loads(ran.stdout)
        assert output["status"] == "done" and sorted(output["applied"]) == sorted(s["id"] for s in safe)
        assert all(s["risk"] != "safe" for s in output["skipped"] if s["id"].startswith("pg:"))
        for step in safe:
            row = actions.read_settings(cluster.dsn(), [step["params"]["name"]])[step["params"]["name"]]
            assert actions.same_value(row["value"], step["desired"], row)
        undone = cli("rollback", "--pg", cluster.dsn(), "--yes")
        assert undone.returncode == 0 and "ROLLED-BACK" in undone.stdout
