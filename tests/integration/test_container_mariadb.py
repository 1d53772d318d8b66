"""MariaDB in a container, backed up and drilled through `docker exec` on a host without a client.

The image is tests/mariadb_image.py's `sa-test/mariadb:10.11` (`docker import` of the host's Debian
mariadbd, mariadb and mariadb-dump), run by the private Docker engine of the `docker_engine` fixture
with `network_mode: host` on 127.0.0.1:<free port> (the engine has no bridge), its datadir made by
the host's mariadb-install-db and bind-mounted. The host side of every test has a PATH holding only
`docker`: mariadb-dump and mariadb can only run inside the container.

Covered: `backup --mysql URL --container NAME` dumps with the container's mariadb-dump, streamed
out, sha256 re-read, row counts from the dump's one snapshot, manifest client_mode "docker-exec";
`restore-drill --container` restores with the container's mariadb and compares the counts; without
--container, the tool choice falls back to the server's container when the host has no client, and
says what to do when no container is known either. The password is never in argv or the outputs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pymysql
import pytest

from stackaudit.backups.dump import BackupError
from stackaudit.backups.manifest import inventory
from stackaudit.backups.mysql_dump import backup_database, choose_tools, run_drills
from stackaudit.localmysql import server_user_args
from stackaudit.localpg import free_port
from stackaudit.mysqlconn import parse_url
from tests.mariadb_image import DATADIR, IMAGE, build_image
from tests.services import DockerEngine

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

NAME = "sa-mariadb-ct"
PASSWORD = "ct-pw-'quote\"4b1"  # quotes: it must survive the trip into the exec's environment
STACKAUDIT = [sys.executable, "-m", "stackaudit"]


@dataclass
class Containerised:
    port: int
    docker_host: str
    directory: Path
    no_client_path: str  # a PATH with `docker` and nothing of MariaDB's

    @property
    def url(self) -> str:
        return f"mysql://root:{quote(PASSWORD, safe='')}@127.0.0.1:{self.port}/"

    def connect(self, database: str | None = None) -> Any:
        return pymysql.connect(host="127.0.0.1", port=self.port, user="root", password=PASSWORD,
                               database=database, autocommit=True, connect_timeout=5)


def _exec_sql(engine: DockerEngine, sql: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", "-H", engine.host, "exec", NAME, "mariadb", "-uroot", "-e", sql],
                          capture_output=True, text=True, check=False)


def _wait_and_secure(engine: DockerEngine) -> None:
    """Until the socket answers inside the container, then root gets a password and a TCP account."""
    deadline = time.monotonic() + 90
    while _exec_sql(engine, "SELECT 1").returncode != 0:
        if time.monotonic() > deadline:
            logs = engine.client.containers.get(NAME).logs().decode(errors="replace")[-2000:]
            raise RuntimeError(f"the containerised mariadbd did not start:\n{logs}")
        time.sleep(0.5)
    quoted = PASSWORD.replace("\\", "\\\\").replace("'", "\\'")
    result = _exec_sql(engine, (
        "DELETE FROM mysql.global_priv WHERE user = '' OR (user = 'root' AND host <> 'localhost'); "
        "FLUSH PRIVILEGES; "
        f"CREATE USER 'root'@'127.0.0.1' IDENTIFIED BY '{quoted}'; "
        "GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION; "
        f"ALTER USER 'root'@'localhost' IDENTIFIED BY '{quoted}';"))
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def served(docker_engine: DockerEngine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Containerised]:
    build_image(docker_engine.host, tmp_path_factory.mktemp("mariadb-image"))
    directory = Path(tempfile.mkdtemp(prefix="sa-mariadb-ct-"))
    user = server_user_args(directory)
    install = subprocess.run(["mariadb-install-db", "--no-defaults", *user, f"--datadir={directory}/data",
                              "--auth-root-authentication-method=normal", "--skip-test-db"],
                             capture_output=True, text=True, check=False)
    assert install.returncode == 0, install.stderr[-2000:]
    port = free_port()
    container = docker_engine.client.containers.run(
        IMAGE, ["mariadbd", "--no-defaults", f"--datadir={DATADIR}", f"--port={port}",
                "--bind-address=127.0.0.1", "--skip-name-resolve", "--innodb-buffer-pool-size=32M"],
        name=NAME, user="mysql", network_mode="host", detach=True,
        volumes={f"{directory}/data": {"bind": DATADIR, "mode": "rw"}})
    bin_dir = directory / "bin"
    bin_dir.mkdir()
    docker = shutil.which("docker")
    assert docker, "the docker CLI (Debian docker.io) runs `docker exec`"
    (bin_dir / "docker").symlink_to(docker)
    try:
        _wait_and_secure(docker_engine)
        yield Containerised(port, docker_engine.host, directory, str(bin_dir))
    finally:
        container.remove(force=True)
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def shop(served: Containerised) -> dict[str, int]:
    """The database the tests back up: rows that must come back exactly."""
    with served.connect() as conn, conn.cursor() as cur:
        cur.execute("CREATE DATABASE shop")
        cur.execute("CREATE TABLE shop.orders (id INT PRIMARY KEY AUTO_INCREMENT, note TEXT)")
        cur.executemany("INSERT INTO shop.orders (note) VALUES (%s)",
                        [(f"order {i}, it's \"quoted\"\nand (parenthesised),(twice)",) for i in range(1500)])
        cur.execute("CREATE TABLE shop.empty_one (id INT PRIMARY KEY)")
    return {"shop.orders": 1500, "shop.empty_one": 0}


def _cli(served: Containerised, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": served.no_client_path, "DOCKER_HOST": served.docker_host}
    return subprocess.run([*STACKAUDIT, *args], capture_output=True, text=True, env=env, timeout=300,
                          check=False)


def test_cli_backup_and_drill_run_in_the_container(served: Containerised, shop: dict[str, int],
                                                   tmp_path: Path) -> None:
    dest = tmp_path / "backups"
    backup = _cli(served, "backup", "--mysql", served.url, "--databases", "shop", "--container", NAME,
                  "--dest", str(dest), "--format", "json")
    assert backup.returncode == 0, backup.stderr
    [row] = json.loads(backup.stdout)["backups"]
    assert row["verified"] and row["database"] == "shop"
    [manifest] = inventory(dest).manifests
    assert manifest.client_mode == "docker-exec"
    assert manifest.client == f"mariadb-dump (docker exec {NAME})"
    assert manifest.row_counts == shop and manifest.snapshot_consistent_counts
    drill = _cli(served, "restore-drill", "--mysql", served.url, "--container", NAME, "--dest", str(dest))
    assert drill.returncode == 0, drill.stderr
    assert "2 tables and 1500 rows match (manifest)" in drill.stdout
    for output in (backup.stdout, backup.stderr, drill.stdout, drill.stderr,
                   *(p.read_text(errors="replace") for p in dest.rglob("*.json"))):
        assert PASSWORD not in output
    with served.connect() as conn, conn.cursor() as cur:  # the scratch database was dropped
        cur.execute("SHOW DATABASES LIKE 'stackaudit_drill_%'")
        assert cur.fetchall() == ()


def test_without_a_host_client_the_servers_container_is_used(served: Containerised, shop: dict[str, int],
                                                             tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", served.no_client_path)
    target = parse_url(served.url)
    asked: list[str] = []

    def tools(version: str) -> Any:
        def find() -> tuple[str, str]:
            asked.append(version)
            return NAME, served.docker_host
        return choose_tools(version, find_container=find)

    manifest = backup_database(target, "shop", tmp_path, tools=tools)
    assert manifest.good, manifest.error
    assert manifest.client_mode == "docker-exec" and asked and "MariaDB" in asked[0]
    [record] = run_drills(target, tmp_path, tools=tools)
    assert record.ok and record.rows_restored == 1500, record.error


def test_no_host_client_and_no_container_says_what_to_do(monkeypatch: pytest.MonkeyPatch,
                                                         served: Containerised) -> None:
    monkeypatch.setenv("PATH", served.no_client_path)
    with pytest.raises(BackupError, match=r"no mariadb-dump or mysqldump on this host .* --container"):
        choose_tools("10.11.19-MariaDB", find_container=lambda: (None, None))
