"""A Debian cluster on a host without Docker: found, audited, tuned, applied and rolled back as root
with no --pg at all (peer authentication on its Unix socket, as the cluster's owner).

The cluster is this module's own (`pg_createcluster 15 <unique name> -p <free port>`, dropped with
`pg_dropcluster --stop`). Colleagues' test clusters may run at the same time: every assertion is
about this one, by its name, port and data directory, never about "the only cluster".
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from stackaudit.localpg import free_port
from stackaudit.model import Risk
from stackaudit.remediation.plan import ALTER_SYSTEM, PG_SETTING, Plan, Step

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
HBA_REJECT = "local all all reject\n"


@dataclass(frozen=True)
class DebianCluster:
    name: str
    port: int

    @property
    def data_dir(self) -> Path:
        return Path(f"/var/lib/postgresql/15/{self.name}")

    @property
    def conf_dir(self) -> Path:
        return Path(f"/etc/postgresql/15/{self.name}")

    @property
    def label(self) -> str:
        return f"15/{self.name}"

    def ctl(self, action: str) -> None:
        subprocess.run(["pg_ctlcluster", "15", self.name, action], check=True, capture_output=True)

    def auto_conf(self) -> bytes:
        return (self.data_dir / "postgresql.auto.conf").read_bytes()

    def show(self, name: str) -> str:
        """Read as the owner, the way an operator would (psql through runuser)."""
        out = subprocess.run(
            ["runuser", "-u", "postgres", "--", "psql", "-h", "/var/run/postgresql", "-p", str(self.port),
             "-d", "postgres", "-Atc", f"SHOW {name}"],
            check=True, capture_output=True, text=True,
        )
        return out.stdout.strip()


@pytest.fixture(scope="module")
def debian_cluster() -> Iterator[DebianCluster]:
    cluster = DebianCluster(f"sa{secrets.token_hex(3)}", free_port())
    try:
        made = subprocess.run(
            ["pg_createcluster", "15", cluster.name, "-p", str(cluster.port), "-o", "work_mem=7MB",
             "-o", "fsync=off", "--", "--auth-local=peer", "--auth-host=scram-sha-256"],
            capture_output=True, text=True, check=False,
        )
        assert made.returncode == 0, made.stdout + made.stderr
        # loopback only (pg_createcluster's -o writes 127.0.0.1 unquoted, which postgresql.conf rejects)
        (cluster.conf_dir / "conf.d" / "loopback.conf").write_text("listen_addresses = '127.0.0.1'\n")
        cluster.ctl("start")
        yield cluster
    finally:
        subprocess.run(["pg_dropcluster", "--stop", "15", cluster.name], capture_output=True, check=False)
        shutil.rmtree(cluster.conf_dir, ignore_errors=True)  # pg_dropcluster leaves our conf.d file


def run(*args: str, state: Path) -> subprocess.CompletedProcess[str]:
    """The CLI as root with no PostgreSQL hint at all in its environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "STACKAUDIT_PG"))}
    env["STACKAUDIT_STATE_DIR"] = str(state)
    return subprocess.run(
        [sys.executable, "-m", "stackaudit", *args],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=600, check=False,
    )


def test_collect_finds_and_reads_the_cluster_as_its_owner(
    debian_cluster: DebianCluster, tmp_path: Path
) -> None:
    facts_file = tmp_path / "facts.json"
    made = run("collect", "--sources", "host,postgres", "--out", str(facts_file), state=tmp_path)
    assert made.returncode == 0, made.stdout + made.stderr
    pg = json.loads(facts_file.read_text())["data"]["postgres"]
    socket_label = f"postgres@/var/run/postgresql:{debian_cluster.port}/postgres"
    assert pg["target"] == f"{debian_cluster.label} ({socket_label})"
    assert pg["target_origin"] == "local cluster" and pg["current_user"] == "postgres"
    assert pg["settings"]["work_mem"]["value"] == "7MB"  # this cluster's own setting
    assert pg["runs_in"]["kind"] == "host" and pg["data_directory"]["path"] == str(debian_cluster.data_dir)
    [ours] = [c for c in pg["local_clusters"] if c["data_dir"] == str(debian_cluster.data_dir)]
    assert ours["audited"] and ours["debian"] == debian_cluster.label and ours["port"] == debian_cluster.port
    assert pg["system_identifier"].isdigit()


def test_audit_and_tune_without_pg(debian_cluster: DebianCluster, tmp_path: Path) -> None:
    audit = run("audit", "--sources", "host,postgres", "--format", "json", state=tmp_path)
    assert audit.returncode in (0, 1), audit.stdout + audit.stderr
    report = json.loads(audit.stdout)
    assert report["facts"]["postgres"]["target"].startswith(debian_cluster.label)
    assert not [e for e in report["collection_errors"] if (e["source"], e["where"]) == ("postgres",) * 2]
    tune = run("tune", "postgres", "--format", "json", state=tmp_path)
    assert tune.returncode == 0, tune.stdout + tune.stderr
    assert json.loads(tune.stdout)["settings"]["work_mem"]["current"] == "7MB"


def test_plan_apply_rollback_without_pg(debian_cluster: DebianCluster, tmp_path: Path) -> None:
    plan_file, state = tmp_path / "plan.json", tmp_path / "state"
    before = debian_cluster.auto_conf()
    made = run("plan", "--sources", "host,postgres", "--out", str(plan_file), state=state)
    assert made.returncode == 0, made.stdout + made.stderr
    plan = json.loads(plan_file.read_text())
    assert plan["target"]["method"] == ALTER_SYSTEM
    assert f"port={debian_cluster.port}" in plan["target"]["dsn"]
    safe = [s for s in plan["steps"] if s["risk"] == "safe" and s["kind"] == PG_SETTING]
    assert safe, plan["steps"]

    applied = run("apply", str(plan_file), "--format", "json", state=state)
    output = json.loads(applied.stdout)
    assert output["status"] == "done", applied.stdout + applied.stderr
    backup = Path(output["backup"]["file"])  # taken by pg_dump as postgres, handed to root
    assert output["backup"]["taken"] and backup.stat().st_uid == 0 and backup.stat().st_size > 0
    assert debian_cluster.auto_conf() != before

    undone = run("rollback", "--yes", "--format", "json", state=state)
    assert json.loads(undone.stdout)["status"] == "rolled-back", undone.stdout + undone.stderr
    assert debian_cluster.auto_conf() == before


def test_restart_goes_through_pg_ctlcluster_and_says_why(
    debian_cluster: DebianCluster, tmp_path: Path
) -> None:
    current = debian_cluster.show("shared_buffers")
    step = Step(
        id="pg:shared_buffers", kind=PG_SETTING, subject="PostgreSQL shared_buffers",
        change="shared_buffers -> 144MB", current=current, desired="144MB", risk=Risk.CONFIRM,
        restart=True, reason="test", undo="auto.conf restored",
        params={"name": "shared_buffers", "method": ALTER_SYSTEM},
    )
    dsn = f"host=/var/run/postgresql port={debian_cluster.port} user=postgres dbname=postgres"
    plan = Plan((step,), (), {"method": ALTER_SYSTEM, "dsn": dsn, "database": "postgres",
                              "budget": {"postgres_bytes": 64 * 2**30}, "app_projects": []})
    plan_file, state = tmp_path / "plan.json", tmp_path / "state"
    plan_file.write_text(json.dumps(plan.to_json()))
    before = debian_cluster.auto_conf()

    flags = ("--yes", "--allow-restart", "--no-backup", "--format", "json")
    applied = run("apply", str(plan_file), *flags, state=state)
    output = json.loads(applied.stdout)
    assert output["status"] == "done", applied.stdout + applied.stderr
    [restarted] = [c for c in output["checks"] if c["name"] == "restarted"]
    assert f"pg_ctlcluster 15 {debian_cluster.name} restart" in restarted["detail"]
    if Path("/proc/1/comm").read_text().strip() != "systemd":
        assert "not systemd" in restarted["detail"]
    assert debian_cluster.show("shared_buffers") == "144MB"

    undone = run("rollback", "--yes", "--format", "json", state=state)
    assert json.loads(undone.stdout)["status"] == "rolled-back", undone.stdout + undone.stderr
    assert debian_cluster.auto_conf() == before and debian_cluster.show("shared_buffers") == current


def test_a_cluster_that_refuses_us_is_named_with_the_pg_to_use(
    debian_cluster: DebianCluster, tmp_path: Path
) -> None:
    hba = debian_cluster.conf_dir / "pg_hba.conf"
    original = hba.read_bytes()
    hba.write_bytes(HBA_REJECT.encode() + original)
    debian_cluster.ctl("reload")
    try:
        audit = run("audit", "--sources", "host,postgres", "--format", "json", state=tmp_path)
    finally:
        hba.write_bytes(original)
        debian_cluster.ctl("reload")
    report = json.loads(audit.stdout)
    [error] = [e for e in report["collection_errors"] if (e["source"], e["where"]) == ("postgres",) * 2]
    assert f"found PostgreSQL 15 cluster {debian_cluster.label}" in error["why"]
    conninfo = f"host=/var/run/postgresql port={debian_cluster.port} user=postgres dbname=postgres"
    assert f"--pg '{conninfo}'" in error["why"]
