"""A real MariaDB for the tests: Debian's mariadb-server (10.11) on 127.0.0.1:<free port>, with its own
datadir and socket in a temporary folder, removed afterwards. It raises when it cannot start (a test
fails, never skips). MySQL 8 is not packaged in Debian 12, so only MariaDB is tested live here.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pymysql
import pymysql.cursors

from stackaudit.localpg import free_port

ROOT_PASSWORD = "root-pw-7f3c9a"


@dataclass
class MariaDBServer:
    port: int
    directory: Path
    process: subprocess.Popen[bytes]

    @property
    def socket(self) -> Path:
        return self.directory / "mysqld.sock"

    def url(self, user: str = "root", password: str | None = ROOT_PASSWORD, database: str = "") -> str:
        auth = f"{user}:{password}" if password else user
        return f"mysql://{auth}@127.0.0.1:{self.port}/{database}"

    def connect(self, database: str | None = None) -> Any:
        return pymysql.connect(host="127.0.0.1", port=self.port, user="root", password=ROOT_PASSWORD,
                               database=database, autocommit=True, connect_timeout=5,
                               cursorclass=pymysql.cursors.DictCursor)

    def execute(self, *statements: str, database: str | None = None) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        with self.connect(database) as conn, conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)
                rows = list(cur.fetchall())
        return rows

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        shutil.rmtree(self.directory, ignore_errors=True)


def _user_args(directory: Path) -> list[str]:
    """As root, run as the Debian package's `mysql` user (mariadbd refuses root without --user)."""
    if os.geteuid() != 0:
        return []
    entry = pwd.getpwnam("mysql")
    os.chown(directory, entry.pw_uid, entry.pw_gid)
    return ["--user=mysql"]


def start_mariadb(options: dict[str, str] | None = None) -> MariaDBServer:
    """mariadb-install-db into a fresh datadir, then mariadbd --no-defaults on loopback."""
    directory = Path(tempfile.mkdtemp(prefix="sa-mariadb-"))
    user = _user_args(directory)
    install = subprocess.run(["mariadb-install-db", "--no-defaults", *user, f"--datadir={directory}/data",
                              "--auth-root-authentication-method=normal", "--skip-test-db"],
                             capture_output=True, text=True, check=False)
    if install.returncode != 0:
        shutil.rmtree(directory, ignore_errors=True)
        raise RuntimeError(f"mariadb-install-db failed: {install.stderr[-2000:]}")
    port = free_port()
    settings = {"innodb-buffer-pool-size": "32M", "performance-schema": "ON", "log-bin": "binlog",
                "server-id": "1", "skip-name-resolve": "ON", **(options or {})}
    args = ["mariadbd", "--no-defaults", *user, f"--datadir={directory}/data", f"--port={port}",
            "--bind-address=127.0.0.1", f"--socket={directory}/mysqld.sock",
            f"--pid-file={directory}/mysqld.pid", f"--log-error={directory}/error.log",
            *(f"--{k}={v}" for k, v in settings.items())]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = MariaDBServer(port, directory, process)
    try:
        _wait_and_secure(server)
    except BaseException:
        server.stop()
        raise
    return server


def _wait_and_secure(server: MariaDBServer) -> None:
    """Wait for the socket, then give root a password and a TCP account for the tests."""
    deadline = time.monotonic() + 60
    while True:
        try:
            conn = pymysql.connect(unix_socket=str(server.socket), user="root", connect_timeout=2)
            break
        except pymysql.err.MySQLError:
            if server.process.poll() is not None or time.monotonic() > deadline:
                log = (server.directory / "error.log")
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                raise RuntimeError(f"mariadbd did not start on port {server.port}:\n{tail}") from None
            time.sleep(0.1)
    with conn, conn.cursor() as cur:
        # mariadb-install-db also makes root@<hostname> and root@::1 without a password: not ours to test
        cur.execute("SELECT user, host FROM mysql.user WHERE user = '' OR (user = 'root' AND host NOT IN "
                    "('localhost', '127.0.0.1'))")
        for user, host in cur.fetchall():
            cur.execute(f"DROP USER '{user}'@'{host}'")
        cur.execute(f"CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY '{ROOT_PASSWORD}'")
        cur.execute(f"ALTER USER 'root'@'127.0.0.1' IDENTIFIED BY '{ROOT_PASSWORD}'")
        cur.execute("GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION")
        cur.execute(f"ALTER USER 'root'@'localhost' IDENTIFIED BY '{ROOT_PASSWORD}'")
