"""Plans that know their server: apply and rollback without --pg go to the server the plan was made
for, --pg only overrides, and a server with another data directory or system identifier is refused.

Two real clusters at once (PostgreSQL 15 and 18): the one the plan is not for must keep its
postgresql.auto.conf byte-identical whatever happens.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict

from stackaudit.localpg import LocalCluster
from stackaudit.remediation.plan import Plan
from tests.remediation.test_apply_live import auto_conf, cli, host_plan, pg_step
from tests.services import running_cluster

pytestmark = pytest.mark.integration
NO_LIBPQ = {"PGPASSWORD": "", "PGPASSFILE": "/nonexistent", "STACKAUDIT_PG_DSN": ""}


@pytest.fixture(scope="module")
def two_clusters() -> Iterator[tuple[LocalCluster, LocalCluster]]:
    with running_cluster(18) as planned, running_cluster(15) as other:
        yield planned, other


def make_plan(cluster: LocalCluster, out: Path) -> dict[str, object]:
    made = cli("plan", "--pg", cluster.dsn(), "--sources", "host,postgres", "--out", str(out))
    assert made.returncode == 0, made.stdout + made.stderr
    plan: dict[str, object] = json.loads(out.read_text())
    return plan


def test_apply_and_rollback_reuse_the_plans_server(
    two_clusters: tuple[LocalCluster, LocalCluster], tmp_path: Path
) -> None:
    planned, other = two_clusters
    plan_file, state = tmp_path / "plan.json", tmp_path / "state"
    plan = make_plan(planned, plan_file)
    target = plan["target"]
    assert isinstance(target, dict)
    assert conninfo_to_dict(str(target["dsn"])) == {
        "host": "127.0.0.1", "port": str(planned.port), "user": "postgres", "dbname": "postgres"
    }
    assert str(target["system_identifier"]).isdigit()
    before, other_before = auto_conf(planned), auto_conf(other)

    ran = cli("apply", str(plan_file), "--format", "json", "--state-dir", str(state))  # no --pg
    output = json.loads(ran.stdout)
    assert ran.returncode == 0 and output["status"] == "done" and output["applied"], ran.stdout + ran.stderr
    assert auto_conf(planned) != before and auto_conf(other) == other_before

    undone = cli("rollback", "--yes", "--format", "json", "--state-dir", str(state))  # no --pg
    assert json.loads(undone.stdout)["status"] == "rolled-back", undone.stdout + undone.stderr
    assert auto_conf(planned) == before and auto_conf(other) == other_before


def test_pg_override_to_another_server_is_refused_naming_the_plans_server(
    two_clusters: tuple[LocalCluster, LocalCluster], tmp_path: Path
) -> None:
    planned, other = two_clusters
    plan_file = tmp_path / "plan.json"
    target = make_plan(planned, plan_file)["target"]
    assert isinstance(target, dict)
    other_before = auto_conf(other)
    state = str(tmp_path / "s")
    ran = cli("apply", str(plan_file), "--pg", other.dsn(), "--format", "json", "--state-dir", state)
    output = json.loads(ran.stdout)
    assert ran.returncode == 1 and output["status"] == "stopped" and output["failed_phase"] == "preconditions"
    assert "not the server the plan was made for" in output["message"]
    assert f"data directory {planned.data_dir}" in output["message"]
    assert f"system identifier {target['system_identifier']}" in output["message"]
    assert auto_conf(other) == other_before


def test_a_new_cluster_at_the_same_path_is_refused_by_its_system_identifier(tmp_path: Path) -> None:
    with running_cluster(18) as cluster:
        plan_file = tmp_path / "plan.json"
        target = make_plan(cluster, plan_file)["target"]
        assert isinstance(target, dict)
        cluster.stop()  # the same path and port, another initdb: a restored copy or a rebuilt server
        shutil.rmtree(cluster.data_dir)
        cluster.init().start()
        before = auto_conf(cluster)
        ran = cli("apply", str(plan_file), "--format", "json", "--state-dir", str(tmp_path / "s"))
        output = json.loads(ran.stdout)
        assert output["status"] == "stopped", output
        assert "its system identifier is" in output["message"] and "data directory" not in output[
            "message"
        ].split("the plan was made for")[0]
        assert str(target["system_identifier"]) in output["message"]
        assert auto_conf(cluster) == before


def test_a_plan_made_from_the_stack_gets_its_password_from_the_stacks_env(tmp_path: Path) -> None:
    """The plan keeps no password; apply and rollback read it again from the project's .env, the way
    the audit found it (here a compose service whose published port is a real password-only server)."""
    secret = "s3cret-" + tmp_path.name[-6:]
    with running_cluster(18, password=secret) as cluster:
        project = tmp_path / "shop"
        project.mkdir()
        (project / "compose.yaml").write_text(
            "services:\n  db:\n    image: postgres:16\n    environment:\n"
            "      POSTGRES_PASSWORD: ${DB_PASSWORD}\n"
            f"    ports:\n      - \"127.0.0.1:{cluster.port}:5432\"\n"
        )
        (project / ".env").write_text(f"DB_PASSWORD={secret}\n")
        step = pg_step("work_mem", "4MB", "12MB", restart=False)
        target = {
            **host_plan(step).target,
            "dsn": f"host=127.0.0.1 port={cluster.port} user=postgres dbname=postgres",
            "origin": "compose",
            "compose": {"dir": str(project), "files": [str(project / "compose.yaml")]},
        }
        plan_file, state = tmp_path / "plan.json", tmp_path / "state"
        plan_file.write_text(json.dumps(Plan((step,), (), target).to_json()))
        before = auto_conf(cluster)
        elsewhere = tmp_path / "elsewhere.json"  # the same plan, not from the stack: no password known
        elsewhere.write_text(json.dumps(Plan((step,), (), {**target, "origin": "--pg"}).to_json()))
        refused = cli("apply", str(elsewhere), "--format", "json", "--state-dir", str(state), env=NO_LIBPQ)
        assert "password" in json.loads(refused.stdout)["message"], refused.stdout + refused.stderr

        ran = cli("apply", str(plan_file), "--format", "json", "--state-dir", str(state), env=NO_LIBPQ)
        assert json.loads(ran.stdout)["status"] == "done", ran.stdout + ran.stderr
        assert auto_conf(cluster) != before
        undone = cli("rollback", "--yes", "--format", "json", "--state-dir", str(state), env=NO_LIBPQ)
        assert json.loads(undone.stdout)["status"] == "rolled-back", undone.stdout + undone.stderr
        assert auto_conf(cluster) == before
        written = [p.read_text() for p in (state / "journal").glob("*.json")] + [ran.stdout, undone.stdout]
        assert not any(secret in text for text in written)
