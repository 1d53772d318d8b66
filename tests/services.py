"""Real services for the tests: PostgreSQL clusters, Redis servers, a private Docker engine.

Each starts on loopback in a temporary folder and is removed afterwards. None of them skips: a
service that cannot start raises, so the test fails (in CI and locally alike).
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import psycopg
import redis

from stackaudit.localpg import LocalCluster, debian_bin_dir, embedded_bin_dir, free_port

PG_TEST_SETTINGS = {
    "shared_preload_libraries": "'pg_stat_statements'",
    "pg_stat_statements.track": "all",
    "fsync": "off",  # test data is throwaway; this keeps initdb and seeding fast
    "log_min_messages": "warning",
}


def pg_bin_dir(major: int) -> Path:
    return embedded_bin_dir() if major == 18 else debian_bin_dir(major)


@contextmanager
def running_cluster(major: int, password: str | None = None,
                    settings: dict[str, str] | None = None) -> Iterator[LocalCluster]:
    root = Path(tempfile.mkdtemp(prefix=f"sa-pg{major}-"))
    cluster = LocalCluster(bin_dir=pg_bin_dir(major), data_dir=root / "data", password=password,
                           settings={**PG_TEST_SETTINGS, **(settings or {})})
    try:
        cluster.init().start()
        yield cluster
    finally:
        cluster.destroy()
        shutil.rmtree(root, ignore_errors=True)


def create_database(cluster: LocalCluster, name: str) -> str:
    """A fresh database (dropped first if a previous run left it); returns its DSN."""
    with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    dsn = cluster.dsn(name)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    return dsn


@dataclass
class RedisServer:
    port: int
    password: str | None
    process: subprocess.Popen[bytes]
    directory: Path

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password, protocol=2,
                           socket_timeout=5)

    def stop(self) -> None:
        stop_process(self.process, self.directory)


def end_process(process: subprocess.Popen[Any], grace_s: float = 10) -> None:
    """Terminate a process the tests started; kill it if it is still there after `grace_s`."""
    process.terminate()
    try:
        process.wait(grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def stop_process(process: subprocess.Popen[bytes], directory: Path) -> None:
    """End a server the tests started and remove its folder."""
    end_process(process)
    shutil.rmtree(directory, ignore_errors=True)


def start_redis(config: dict[str, str] | None = None, password: str | None = None) -> RedisServer:
    """redis-server on 127.0.0.1 with the given config directives (e.g. {"maxmemory": "64mb"})."""
    directory = Path(tempfile.mkdtemp(prefix="sa-redis-"))
    port = free_port()
    lines = {"bind": "127.0.0.1", "port": str(port), "dir": str(directory), "save": '""',
             "appendonly": "no", "protected-mode": "yes", **(config or {})}
    if password:
        lines["requirepass"] = password
    conf = directory / "redis.conf"
    conf.write_text("".join(f"{k} {v}\n" for k, v in lines.items()))
    process = subprocess.Popen(["redis-server", str(conf)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    server = RedisServer(port, password, process, directory)
    deadline = time.monotonic() + 20
    while True:
        try:
            server.client().ping()
            return server
        except redis.RedisError:
            if process.poll() is not None or time.monotonic() > deadline:
                server.stop()
                raise RuntimeError(f"redis-server did not start on port {port}") from None
            time.sleep(0.05)


BUSYBOX = Path("/usr/bin/busybox")


@dataclass
class DockerEngine:
    """A private dockerd (its own data root and socket), so tests never see each other's objects."""

    root: Path
    process: subprocess.Popen[bytes]
    client: docker.DockerClient
    _rootfs: bytes | None = field(default=None, repr=False)

    @property
    def host(self) -> str:
        return f"unix://{self.root}/docker.sock"

    @property
    def data_root(self) -> Path:
        return self.root / "data"

    def _rootfs_tar(self, extra_files: dict[str, bytes] | None = None) -> bytes:
        """A tiny root filesystem: busybox and its applets (sh, sleep, ...), plus extra files."""
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            tar.add(BUSYBOX, arcname="bin/busybox")
            for applet in ("sh", "sleep", "echo", "cat", "yes", "head", "dd", "true"):
                info = tarfile.TarInfo(f"bin/{applet}")
                info.type = tarfile.SYMTYPE
                info.linkname = "busybox"
                tar.addfile(info)
            for name, content in (extra_files or {}).items():
                info = tarfile.TarInfo(name.lstrip("/"))
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
        return buffer.getvalue()

    def make_image(self, repository: str, tag: str | None = "latest", *,
                   extra_files: dict[str, bytes] | None = None,
                   cmd: tuple[str, ...] = ("/bin/sleep", "3600")) -> str:
        """`docker import` of a small tarball; a distinct extra file makes a distinct image id.

        tag=None makes an untagged image (it becomes dangling only when a tag moves away from it).
        """
        changes = f'CMD {list(cmd)!r}'.replace("'", '"')
        repo = f"{repository}:{tag}" if tag else ""
        args = ["docker", "-H", self.host, "import", "-c", changes, "-", *([repo] if repo else [])]
        result = subprocess.run(args, input=self._rootfs_tar(extra_files), capture_output=True,
                                check=True)
        return result.stdout.decode().strip()

    def run_container(self, image: str, name: str, *, detach_running: bool = True,
                      labels: dict[str, str] | None = None, **kwargs: Any) -> Any:
        container = self.client.containers.create(image, name=name, labels=labels or {},
                                                  network_mode="none", **kwargs)
        if detach_running:
            container.start()
        return container

    def stop(self) -> None:
        try:
            for container in self.client.containers.list(all=True):
                container.remove(force=True)
        except docker.errors.DockerException:
            pass
        self.client.close()
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        unmount_below(self.root)
        shutil.rmtree(self.root, ignore_errors=True)


def unmount_below(root: Path) -> None:
    """dockerd leaves mounts in its exec root (the netns/default nsfs bind mount): undo them all,
    deepest first, or the folder cannot be removed."""
    prefix = str(root).rstrip("/") + "/"
    points = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()
              if line.split()[1].startswith(prefix)]
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def start_docker_engine() -> DockerEngine:
    if os.geteuid() != 0:
        raise RuntimeError("the Docker engine fixture needs root (dockerd)")
    root = Path(tempfile.mkdtemp(prefix="sa-dockerd-"))
    log = (root / "dockerd.log").open("wb")
    process = subprocess.Popen(
        ["dockerd", "--storage-driver=vfs", "--iptables=false", "--bridge=none",
         "--data-root", str(root / "data"), "--exec-root", str(root / "exec"),
         "-H", f"unix://{root}/docker.sock", "--pidfile", str(root / "dockerd.pid")],
        stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while True:
        try:
            client = docker.DockerClient(base_url=f"unix://{root}/docker.sock", timeout=30)
            client.ping()
            return DockerEngine(root, process, client)
        except docker.errors.DockerException:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                tail = (root / "dockerd.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"dockerd did not start:\n{tail}") from None
            time.sleep(0.2)


@dataclass
class PgBouncerServer:
    """Debian's pgbouncer on 127.0.0.1 in its own folder, run as the clusters' OS user (it refuses
    to run as root). Clients log in with md5 against its own auth file; it reaches PostgreSQL over
    trust, as the test clusters allow on loopback."""

    port: int
    directory: Path
    process: subprocess.Popen[bytes]
    passwords: dict[str, str]

    def dsn(self, dbname: str, user: str) -> str:
        return f"postgresql://{user}:{self.passwords[user]}@127.0.0.1:{self.port}/{dbname}"

    def stop(self) -> None:
        stop_process(self.process, self.directory)


PGBOUNCER_OS_USER = "postgres"


def start_pgbouncer(databases: dict[str, str], settings: dict[str, str] | None = None,
                    passwords: dict[str, str] | None = None) -> PgBouncerServer:
    """`databases` are [databases] lines (name -> connection string); `settings` [pgbouncer] lines.
    `admin` is an admin user and `postgres` a plain one unless `passwords` says otherwise."""
    from stackaudit.localpg import ensure_os_user

    passwords = passwords or {"admin": "admin-Secret-1", "postgres": "app-Secret-2"}
    directory = Path(tempfile.mkdtemp(prefix="sa-pgbouncer-"))
    port = free_port()
    (directory / "userlist.txt").write_text("".join(f'"{u}" "{p}"\n' for u, p in passwords.items()))
    lines = {"listen_addr": "127.0.0.1", "listen_port": str(port), "unix_socket_dir": "",
             "auth_type": "md5", "auth_file": str(directory / "userlist.txt"), "admin_users": "admin",
             "logfile": str(directory / "pgbouncer.log"), "pidfile": str(directory / "pgbouncer.pid"),
             **(settings or {})}
    ini = "[databases]\n" + "".join(f"{k} = {v}\n" for k, v in databases.items())
    ini += "[pgbouncer]\n" + "".join(f"{k} = {v}\n" for k, v in lines.items())
    (directory / "pgbouncer.ini").write_text(ini)
    command = ["pgbouncer", "-q", str(directory / "pgbouncer.ini")]
    if os.geteuid() == 0:
        ensure_os_user(PGBOUNCER_OS_USER)
        for path in (directory, *directory.iterdir()):
            shutil.chown(path, PGBOUNCER_OS_USER, PGBOUNCER_OS_USER)
        command = ["runuser", "-u", PGBOUNCER_OS_USER, "--", *command]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = PgBouncerServer(port, directory, process, passwords)
    deadline = time.monotonic() + 20
    while True:
        try:
            with psycopg.connect(server.dsn("pgbouncer", "admin"), autocommit=True, connect_timeout=2,
                                 cursor_factory=psycopg.ClientCursor) as conn:
                conn.execute("SHOW VERSION")
            return server
        except psycopg.Error:
            if process.poll() is not None or time.monotonic() > deadline:
                log = (directory / "pgbouncer.log")
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                server.stop()
                raise RuntimeError(f"pgbouncer did not start on port {port}:\n{tail}") from None
            time.sleep(0.1)
