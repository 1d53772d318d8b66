"""A backup that fails (disk full, server stopped mid-dump) leaves nothing that looks complete.

Also: the password reaches pg_dump only through its environment, never argv, files or output.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psutil
import psycopg
import pytest
from typer.testing import CliRunner

from stackaudit.backups import find_verified_backup
from stackaudit.backups.dump import Connection, backup_database
from stackaudit.backups.manifest import Manifest, inventory
from stackaudit.cli import app
from stackaudit.config import Settings
from stackaudit.localpg import LocalCluster
from tests.backups.seed import database_of, seed
from tests.services import create_database, running_cluster

pytestmark = pytest.mark.integration

PASSWORD = "Sup3r-secret-pw-42"


def assert_nothing_looks_complete(dest: Path, manifest: Manifest) -> None:
    assert manifest.status == "failed" and manifest.verified is False and manifest.error
    names = [p.name for p in dest.iterdir()] if dest.exists() else []
    assert not [n for n in names if n.endswith((".dump", ".partial"))], names
    assert not [m for m in inventory(dest).manifests if m.good]
    assert find_verified_backup(Settings(backup_dest=dest), manifest.database) is None


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.fixture(scope="module")
def seeded(pg_dsn: str) -> str:
    seed(pg_dsn)
    return pg_dsn


def test_disk_full_during_backup(seeded: str, small_disk: Path) -> None:
    manifest = backup_database(Connection.from_dsn(seeded), database_of(seeded), small_disk)

    assert manifest.error and "No space left" in manifest.error
    assert_nothing_looks_complete(small_disk, manifest)
    # the failure itself is on record (the partial dump was removed first, so it fitted)
    assert [m.status for m in inventory(small_disk).manifests] == ["failed"]


@pytest.fixture(scope="module")
def own_cluster() -> Iterator[LocalCluster]:
    """A cluster of our own with a password: this module stops it."""
    with running_cluster(15, password=PASSWORD) as cluster:
        yield cluster


def _pg_dump_children() -> list[list[str]]:
    found = []
    for process in psutil.Process().children(recursive=True):
        try:
            if "pg_dump" in process.name():
                found.append(process.cmdline())
        except psutil.Error:
            continue  # finished between listing and reading (a zombie has no cmdline)
    return found


def test_password_only_in_child_environment(own_cluster: LocalCluster, tmp_path: Path) -> None:
    dsn = create_database(own_cluster, "pw_db")
    seed(dsn)
    seen: list[list[str]] = []

    manifest = backup_database(Connection.from_dsn(dsn), "pw_db", tmp_path,
                               progress=lambda _: seen.extend(_pg_dump_children()))

    assert manifest.good, manifest.error
    assert seen and all(PASSWORD not in " ".join(argv) for argv in seen)
    assert all(PASSWORD not in p.read_text(errors="replace") for p in tmp_path.glob("*.json"))
    result = CliRunner().invoke(app, ["backup", "--pg", dsn, "--dest", str(tmp_path / "cli"),
                                      "--databases", "pw_db", "--format", "json"])
    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output
    assert json.loads(result.stdout)["backups"][0]["verified"] is True


def test_wrong_password_fails_cleanly(own_cluster: LocalCluster, tmp_path: Path) -> None:
    dsn = own_cluster.dsn("postgres", password="wrong-password-123")
    result = CliRunner().invoke(app, ["backup", "--pg", dsn, "--dest", str(tmp_path)])
    assert result.exit_code == 2
    assert "password authentication failed" in result.output
    assert "wrong-password-123" not in result.output


def test_server_stopped_mid_dump(own_cluster: LocalCluster, tmp_path: Path) -> None:
    dsn = create_database(own_cluster, "stopped_db")
    with psycopg.connect(dsn, autocommit=True) as conn:  # far more than socket and pipe buffers hold
        conn.execute("CREATE TABLE big AS SELECT g, md5(g::text) || md5((-g)::text) AS pad "
                     "FROM generate_series(1, 1000000) g")
    stopped: list[int] = []

    def stop_server(written: int) -> None:
        if not stopped:
            stopped.append(written)
            own_cluster.stop("fast")

    try:
        manifest = backup_database(Connection.from_dsn(dsn), "stopped_db", tmp_path, progress=stop_server)
    finally:
        own_cluster.start()

    assert stopped and stopped[0] > 0  # the server went away while pg_dump was streaming
    assert manifest.error and "pg_dump exited" in manifest.error
    assert PASSWORD not in manifest.error
    assert_nothing_looks_complete(tmp_path, manifest)
