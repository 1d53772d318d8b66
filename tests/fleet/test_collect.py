"""`stackaudit fleet collect` end to end: a real sshd on loopback addresses, real Ansible, three hosts
that differ (each its own compose project and PostgreSQL cluster, through its host variables), one
host that is down and one whose host key does not match known_hosts.

The expensive parts run once for the module (one sshd, the wheelhouse, the venv on the "hosts",
which are aliases of this machine and share one venv, so its install is also the concurrent-aliases
case the flock is for); each test reads the runs' results.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from stackaudit.localpg import LocalCluster
from tests.services import create_database, running_cluster
from tests.sshd import SshServer, start_sshd

pytestmark = pytest.mark.integration

GOOD = ("web1", "web2", "db1")
BAD = ("badkey", "down")
ADDRESSES = {"web1": "127.0.0.2", "web2": "127.0.0.3", "db1": "127.0.0.4", "badkey": "127.0.0.5",
             "down": "127.0.0.6"}  # nothing listens on .6
CANARIES = {host: f"Canary-{host}-7Qx2vLp9Zr" for host in GOOD}
GROUPS = {"web1": ["prod", "web"], "web2": ["prod", "web"], "badkey": ["prod", "web"], "db1": ["db", "prod"],
          "down": ["db", "prod"]}
Result = subprocess.CompletedProcess[str]


@dataclass
class Fleet:
    root: Path
    out: Path
    inventory: Path
    env: dict[str, str]
    projects: dict[str, Path]
    databases: dict[str, str]
    venv: Path

    def run(self, *args: str) -> Result:
        command = [sys.executable, "-m", "stackaudit", "fleet", "collect", "-i", str(self.inventory),
                   "--out", str(self.out), *args]
        return subprocess.run(command, capture_output=True, text=True, env=self.env, cwd=self.root,
                              timeout=900)


@pytest.fixture(scope="session")
def ssh_server() -> Iterator[SshServer]:
    server = start_sshd([ADDRESSES[h] for h in (*GOOD, "badkey")])
    server.trust_wrong_key(ADDRESSES["badkey"])
    yield server
    server.stop()


@pytest.fixture(scope="module")
def own_cluster() -> Iterator[LocalCluster]:
    """db1's PostgreSQL: a cluster of its own, where the canary is the real password."""
    with running_cluster(15, password=CANARIES["db1"]) as cluster:
        yield cluster


def project(root: Path, host: str) -> Path:
    """A compose project whose .env holds the host's canary secret."""
    directory = root / f"stack-{host}"
    directory.mkdir()
    (directory / "compose.yaml").write_text(
        "services:\n  db:\n    image: postgres:16\n    environment:\n"
        "      POSTGRES_PASSWORD: ${POSTGRES_PASSWORD}\n"
        f"  {host}-app:\n    image: nginx:1.27\n")
    (directory / ".env").write_text(f"POSTGRES_PASSWORD={CANARIES[host]}\n")
    (directory / ".env").chmod(0o600)
    return directory


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, ssh_server: SshServer, pg15: LocalCluster,
          pg18: LocalCluster, own_cluster: LocalCluster) -> Fleet:
    root = tmp_path_factory.mktemp("fleet")
    clusters = {"web1": pg15, "web2": pg18, "db1": own_cluster}
    databases = {host: f"fleet_{host}" for host in GOOD}
    dsns = {}
    for host, cluster in clusters.items():
        create_database(cluster, databases[host])  # the test clusters trust loopback: any password works
        dsns[host] = cluster.dsn(databases[host], password=CANARIES[host])
    projects = {host: project(root, host) for host in GOOD}
    venv = root / "target-home" / "venv"
    common = {"ansible_python_interpreter": "/usr/bin/python3", "stackaudit_python": "/usr/bin/python3",
              "stackaudit_venv": str(venv), "stackaudit_sources": "host,compose,env,postgres"}
    hostvars = {host: {**ssh_server.host_vars(ADDRESSES[host]), **common} for host in ADDRESSES}
    for host in GOOD:
        hostvars[host].update(stackaudit_project_dirs=[str(projects[host])], stackaudit_pg_dsn=dsns[host])
    inventory = {"all": {"children": {
        "prod": {"children": {"web": {"hosts": {h: hostvars[h] for h in ("web1", "web2", "badkey")}},
                              "db": {"hosts": {h: hostvars[h] for h in ("db1", "down")}}}}}}}
    (root / "hosts.yml").write_text(json.dumps(inventory, indent=2))  # JSON is YAML
    # Ansible's and the wheelhouse's files in the test's folder, never in ~/.ansible or ~/.cache.
    env = {**os.environ, "COLUMNS": "80", "XDG_CACHE_HOME": str(root / "cache"),
           "PIP_CACHE_DIR": os.environ.get("PIP_CACHE_DIR", str(Path.home() / ".cache" / "pip")),
           "ANSIBLE_HOME": str(root / "ansible-home"), "ANSIBLE_REMOTE_TMP": str(root / "remote-tmp"),
           "ANSIBLE_LOG_PATH": str(root / "ansible.log"), "STACKAUDIT_STATE_DIR": str(root / "state")}
    return Fleet(root, root / "out", root / "hosts.yml", env, projects, databases, venv)


@pytest.fixture(scope="module")
def runs(fleet: Fleet) -> dict[str, Result]:
    """Every host (terminal output), the good ones again (JSON: nothing to install), the bad ones."""
    everyone = fleet.run()
    marker = fleet.venv / ".stackaudit-build"
    installed_at = marker.stat().st_mtime_ns if marker.exists() else None
    good = fleet.run("--limit", ",".join(GOOD), "--forks", "3", "--format", "json")
    reinstalled = marker.exists() and marker.stat().st_mtime_ns != installed_at
    bad = fleet.run("--limit", ",".join(BAD), "--format", "json")
    return {"all": everyone, "good": good, "bad": bad,
            "reinstalled": subprocess.CompletedProcess([], int(reinstalled), "", "")}


def snapshots(fleet: Fleet, host: str) -> list[Path]:
    return sorted(p for p in (fleet.out / host).glob("2*.json"))


def test_exit_codes_say_all_some_or_none(runs: dict[str, Result]) -> None:
    assert runs["all"].returncode == 1, runs["all"].stderr
    assert runs["good"].returncode == 0, runs["good"].stderr
    assert runs["bad"].returncode == 2, runs["bad"].stderr


def test_each_host_gets_a_valid_snapshot_of_its_own_stack(fleet: Fleet, runs: dict[str, Result]) -> None:
    for host in GOOD:
        found = snapshots(fleet, host)
        assert len(found) >= 2, f"{host}: {found}"  # the first run and the --limit run
        assert found[-1].stat().st_mode & 0o777 == 0o600
        text = found[-1].read_text()
        assert str(fleet.projects[host]) in text and fleet.databases[host] in text
        for other in set(GOOD) - {host}:
            assert str(fleet.projects[other]) not in text
        audited = subprocess.run([sys.executable, "-m", "stackaudit", "audit", "--facts", str(found[-1]),
                                  "--format", "json"], capture_output=True, text=True, env=fleet.env,
                                 timeout=120)
        assert audited.returncode in (0, 1), audited.stderr
        assert json.loads(audited.stdout)["facts"], host


def test_the_down_host_and_the_wrong_host_key_are_reported_with_a_reason(fleet: Fleet,
                                                                         runs: dict[str, Result]) -> None:
    for host in BAD:
        error = json.loads((fleet.out / host / "last-error.json").read_text())
        assert error["host"] == host and error["stage"] == "unreachable"
        assert error["failed_at"].endswith("+00:00")
        assert not snapshots(fleet, host)
    assert "refused" in json.loads((fleet.out / "down" / "last-error.json").read_text())["reason"].lower()
    assert "host key" in json.loads((fleet.out / "badkey" / "last-error.json").read_text())["reason"].lower()
    assert all(not (fleet.out / host / "last-error.json").exists() for host in GOOD)


def test_groups_and_modes_of_the_fleet_folder(fleet: Fleet, runs: dict[str, Result]) -> None:
    assert fleet.out.stat().st_mode & 0o777 == 0o700
    key = fleet.out / ".fleet-key"
    assert key.stat().st_mode & 0o777 == 0o600 and len(bytes.fromhex(key.read_text().strip())) == 32
    for host, groups in GROUPS.items():
        assert (fleet.out / host).stat().st_mode & 0o777 == 0o700
        assert json.loads((fleet.out / host / "groups.json").read_text()) == {"host": host, "groups": groups}
    for path in fleet.out.rglob("*"):
        if path.is_file():
            assert path.stat().st_mode & 0o077 == 0, path


def test_no_canary_anywhere(fleet: Fleet, runs: dict[str, Result]) -> None:
    places = {"out": "".join(p.read_text(errors="replace") for p in fleet.out.rglob("*") if p.is_file()),
              "ansible.log": (fleet.root / "ansible.log").read_text() if (fleet.root / "ansible.log").exists()
              else "",
              **{f"{name} output": r.stdout + r.stderr for name, r in runs.items()}}
    for canary in CANARIES.values():
        for where, text in places.items():
            assert canary not in text, where


def test_terminal_output_lists_every_host_within_80_columns(runs: dict[str, Result]) -> None:
    result = runs["all"]
    lines = result.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines), result.stdout
    assert "3 of 5 hosts collected" in result.stdout
    for host in (*GOOD, *BAD):
        assert host in result.stdout and host in result.stderr  # summary, and progress as it went
    assert "✓ web1 collected" in result.stderr and "✗ down unreachable" in result.stderr


def test_json_output_and_an_installed_build_is_left_alone(runs: dict[str, Result]) -> None:
    good = json.loads(runs["good"].stdout)
    assert (good["collected"], good["failed"]) == (3, 0)
    assert {h["host"]: h["status"] for h in good["hosts"]} == dict.fromkeys(GOOD, "collected")
    assert all(Path(h["snapshot"]).exists() for h in good["hosts"])
    bad = json.loads(runs["bad"].stdout)
    assert (bad["collected"], bad["failed"]) == (0, 2)
    assert {h["stage"] for h in bad["hosts"]} == {"unreachable"}
    assert runs["reinstalled"].returncode == 0  # the second run found the build and installed nothing
