"""A throwaway MariaDB on loopback: Debian's mariadb-server (mariadb-install-db, mariadbd) with its
own datadir, socket and port in one folder, root given a password. Used by `stackaudit demo
--mysql` and the tests' fixture (tests/mysql_server.py), as localpg.py is for PostgreSQL."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymysql
import pymysql.cursors

from stackaudit.localpg import free_port

START_SECONDS = 60


class LocalMariaDBError(RuntimeError):
    """mariadb-install-db or mariadbd failed; the message holds the tail of its log."""


def server_user_args(directory: Path) -> list[str]:
    """As root, run as the Debian package's `mysql` user (mariadbd refuses root without --user)."""
    if os.geteuid() != 0:
        return []
    entry = pwd.getpwnam("mysql")
    os.chown(directory, entry.pw_uid, entry.pw_gid)
    return ["--user=mysql"]


@dataclass
class LocalMariaDB:
    directory: Path  # holds data/, the socket, the pid file and the error log
    root_password: str
    options: dict[str, str] = field(default_factory=dict)  # mariadbd --key=value
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def socket(self) -> Path:
        return self.directory / "mysqld.sock"

    def url(self, user: str = "root", password: str | None = None, database: str = "") -> str:
        secret = self.root_password if password is None and user == "root" else password
        auth = f"{user}:{secret}" if secret else user
        return f"mysql://{auth}@127.0.0.1:{self.port}/{database}"

    def connect(self, database: str | None = None) -> Any:
        return pymysql.connect(host="127.0.0.1", port=self.port, user="root", password=self.root_password,
                               database=database, autocommit=True, connect_timeout=5,
                               cursorclass=pymysql.cursors.DictCursor)

    def start(self) -> LocalMariaDB:
        """mariadb-install-db into a fresh datadir, mariadbd --no-defaults on 127.0.0.1, root secured."""
        if shutil.which("mariadbd") is None or shutil.which("mariadb-install-db") is None:
            raise LocalMariaDBError("no mariadbd / mariadb-install-db: apt-get install mariadb-server")
        self.directory.mkdir(parents=True, exist_ok=True)
        user = server_user_args(self.directory)
        install = subprocess.run(["mariadb-install-db", "--no-defaults", *user,
                                  f"--datadir={self.directory}/data", "--skip-test-db",
                                  "--auth-root-authentication-method=normal"],
                                 capture_output=True, text=True, check=False)
        if install.returncode != 0:
            raise LocalMariaDBError(f"mariadb-install-db failed: {install.stderr[-2000:]}")
        args = ["mariadbd", "--no-defaults", *user, f"--datadir={self.directory}/data",
                f"--port={self.port}", "--bind-address=127.0.0.1", f"--socket={self.socket}",
                f"--pid-file={self.directory}/mysqld.pid", f"--log-error={self.directory}/error.log",
                *(f"--{k}={v}" for k, v in self.options.items())]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            self._secure(self._wait())
        except BaseException:
            self.stop()
            raise
        return self

    def _wait(self) -> Any:
        assert self.process is not None
        deadline = time.monotonic() + START_SECONDS
        while True:
            try:
                return pymysql.connect(unix_socket=str(self.socket), user="root", connect_timeout=2)
            except pymysql.err.MySQLError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    log = self.directory / "error.log"
                    tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                    raise LocalMariaDBError(f"mariadbd did not start on port {self.port}:\n{tail}") from None
                time.sleep(0.1)

    def _secure(self, conn: Any) -> None:
        """root gets the password, on the socket and on 127.0.0.1; the other accounts
        mariadb-install-db makes (root@<hostname>, root@::1, anonymous ones) go."""
        with conn, conn.cursor() as cur:
            cur.execute("SELECT user, host FROM mysql.user WHERE user = '' OR (user = 'root' AND host NOT IN "
                        "('localhost', '127.0.0.1'))")
            for user, host in cur.fetchall():
                cur.execute("DROP USER %s@%s", (user, host))
            password = (self.root_password,)
            cur.execute("CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY %s", password)
            cur.execute("ALTER USER 'root'@'127.0.0.1' IDENTIFIED BY %s", password)
            cur.execute("GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION")
            cur.execute("ALTER USER 'root'@'localhost' IDENTIFIED BY %s", password)

    def stop(self, remove: bool = True) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if remove:
            shutil.rmtree(self.directory, ignore_errors=True)
