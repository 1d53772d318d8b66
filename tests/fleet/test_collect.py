"""`stackaudit fleet collect` end to end: a real sshd on loopback addresses, real Ansible, three hosts
that differ (each its own compose project and PostgreSQL cluster, through its host variables), one
host that is down, one whose host key does not match known_hosts, and one whose stackaudit_metrics
role fails after its snapshot was fetched (a textfile folder that cannot be made). web1 and web2
share one secret, so the fleet key's fingerprints (checked against an HMAC computed here) must
meet in `fleet report`'s secret reuse.

The expensive parts run once for the module (one sshd, the wheelhouse, the venv on the "hosts",
which are aliases of this machine and share one venv, so its install is also the concurrent-aliases
case the flock is for); each test reads the runs' results.
"""

from __future__ import annotations

import hashlib
import hmac
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
METRICS = "metrics1"  # web1's address; its metrics role fails after the fetch
CANARIES = {host: f"Canary-{host}-7Qx2vLp9Zr" for host in GOOD}
SHARED = "Shared-Canary-4Rk8pWz2QyN"  # REDIS_PASSWORD of web1 and web2
GROUPS = {"web1": ["prod", "web"], "web2": ["prod", "web"], "badkey": ["prod", "web"], "db1": ["db", "prod"],
          "down": ["db", "prod"], METRICS: ["prod", "web"]}
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
    shared = f"REDIS_PASSWORD={SHARED}\n" if host in ("web1", "web2") else ""
    (directory / ".env").write_text(f"POSTGRES_PASSWORD={CANARIES[host]}\n{shared}")
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
    hostvars[METRICS] = {**hostvars["web1"], **metrics_vars(root)}
    inventory = {"all": {"children": {
        "prod": {"children": {"web": {"hosts": {h: hostvars[h] for h in ("web1", "web2", "badkey", METRICS)}},
                              "db": {"hosts": {h: hostvars[h] for h in ("db1", "down")}}}}}}}
    (root / "hosts.yml").write_text(json.dumps(inventory, indent=2))  # JSON is YAML
    # Ansible's and the wheelhouse's files in the test's folder, never in ~/.ansible or ~/.cache.
    env = {**os.environ, "COLUMNS": "80", "XDG_CACHE_HOME": str(root / "cache"),
           "PIP_CACHE_DIR": os.environ.get("PIP_CACHE_DIR", str(Path.home() / ".cache" / "pip")),
           "ANSIBLE_HOME": str(root / "ansible-home"), "ANSIBLE_REMOTE_TMP": str(root / "remote-tmp"),
           "ANSIBLE_LOG_PATH": str(root / "ansible.log"), "STACKAUDIT_STATE_DIR": str(root / "state")}
    return Fleet(root, root / "out", root / "hosts.yml", env, projects, databases, venv)


def metrics_vars(root: Path) -> dict[str, object]:
    """The role stackaudit_metrics in mode textfile, in the test's folder, failing at the textfile
    folder (under a regular file: not even root can make it)."""
    (root / "a-file").write_text("")
    return {"stackaudit_sources": "host", "stackaudit_metrics_mode": "textfile",
            "stackaudit_textfile_dir": str(root / "a-file" / "textfile"), "stackaudit_metrics_become": False,
            "stackaudit_metrics_systemctl": False, "stackaudit_metrics_scheduler": "cron",
            "stackaudit_metrics_env_dir": str(root / "metrics-etc"),
            "stackaudit_metrics_cron_file": str(root / "metrics-cron" / "stackaudit-metrics")}


@pytest.fixture(scope="module")
def runs(fleet: Fleet) -> dict[str, Result]:
    """Every host (terminal output), the good ones again (JSON: nothing to install), the bad ones."""
    everyone = fleet.run()
    marker = fleet.venv / ".stackaudit-build"
    installed_at = marker.stat().st_mtime_ns if marker.exists() else None
    good = fleet.run("--limit", ",".join(GOOD), "--forks", "3", "--format", "json")
    reinstalled = marker.exists() and marker.stat().st_mtime_ns != installed_at
    bad = fleet.run("--limit", ",".join(BAD), "--format", "json")
    report = subprocess.run([sys.executable, "-m", "stackaudit", "fleet", "report", str(fleet.out),
                             "--format", "json"], capture_output=True, text=True, env=fleet.env,
                            cwd=fleet.root, timeout=300)
    return {"all": everyone, "good": good, "bad": bad, "report": report,
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
    for canary in (*CANARIES.values(), SHARED):
        for where, text in places.items():
            assert canary not in text, where


def test_terminal_output_lists_every_host_within_80_columns(runs: dict[str, Result]) -> None:
    result = runs["all"]
    lines = result.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines), result.stdout
    assert "3 of 6 hosts collected" in result.stdout
    for host in (*GOOD, *BAD, METRICS):
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


def test_a_metrics_role_failure_after_the_fetch_fails_the_host_and_keeps_its_snapshot(
        fleet: Fleet, runs: dict[str, Result]) -> None:
    error = json.loads((fleet.out / METRICS / "last-error.json").read_text())
    assert error["stage"] == "metrics", error
    # the task that failed, then its error
    assert error["reason"] == "is node_exporter's textfile folder there: Not a directory"
    assert len(snapshots(fleet, METRICS)) == 1  # fetched before the role ran, moved into place
    assert f"✗ {METRICS} metrics: " in runs["all"].stderr
    summary = next(line for line in runs["all"].stdout.splitlines() if line.lstrip().startswith(METRICS))
    assert "failed" in summary and "metrics:" in summary
    host = next(h for h in json.loads(runs["report"].stdout)["hosts"] if h["name"] == METRICS)
    assert (host["status"], host["stage"], host["audited"]) == ("ok", "metrics", True)
    assert host["reason"].startswith("metrics (") and "Not a directory" in host["reason"]


def test_the_fleet_key_reaches_each_host_and_never_leaves_the_controller(
        fleet: Fleet, runs: dict[str, Result]) -> None:
    key = (fleet.out / ".fleet-key").read_text().strip()
    newest = {host: json.loads(snapshots(fleet, host)[-1].read_text()) for host in (*GOOD, METRICS)}
    assert all("secret_fingerprints" in payload for payload in newest.values())
    places = {e["where"]: e["fingerprint"] for e in newest["db1"]["secret_fingerprints"]}
    expected = hmac.new(bytes.fromhex(key), CANARIES["db1"].encode(), hashlib.sha256).hexdigest()[:16]
    assert places[f"env:{fleet.projects['db1']}/.env:POSTGRES_PASSWORD"] == expected
    shared = {host: {e["fingerprint"] for e in newest[host]["secret_fingerprints"]
                     if e["where"].endswith(".env:REDIS_PASSWORD")} for host in ("web1", "web2")}
    assert shared["web1"] == shared["web2"] and len(shared["web1"]) == 1
    reuse = json.loads(runs["report"].stdout)["secret_reuse"]
    redis = [r for r in reuse if any(p["where"].endswith(".env:REDIS_PASSWORD") for p in r["places"])]
    assert [r["hosts"] for r in redis] == [["web1", "web2"]]
    texts = {str(p): p.read_text(errors="replace") for p in fleet.out.rglob("*")
             if p.is_file() and p.name != ".fleet-key"}
    texts["ansible.log"] = (fleet.root / "ansible.log").read_text()
    texts.update({f"{name} output": r.stdout + r.stderr for name, r in runs.items()})
    assert [where for where, text in texts.items() if key in text] == []
