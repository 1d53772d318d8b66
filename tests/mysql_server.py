"""A real MariaDB for the tests: Debian's mariadb-server (10.11) on 127.0.0.1:<free port>, with its own
datadir and socket in a temporary folder, removed afterwards (stackaudit.localmysql, which the demo
uses too). It raises when it cannot start (a test fails, never skips). MySQL 8 is not packaged in
Debian 12, so only MariaDB is tested live here.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from stackaudit.localmysql import LocalMariaDB

ROOT_PASSWORD = "root-pw-7f3c9a"
# What the tests' rules need: a small pool, statement digests, a binary log.
TEST_OPTIONS = {"innodb-buffer-pool-size": "32M", "performance-schema": "ON", "log-bin": "binlog",
                "server-id": "1", "skip-name-resolve": "ON"}


class MariaDBServer(LocalMariaDB):
    def execute(self, *statements: str, database: str | None = None) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        with self.connect(database) as conn, conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)
                rows = list(cur.fetchall())
        return rows


def start_mariadb(options: dict[str, str] | None = None) -> MariaDBServer:
    """mariadb-install-db into a fresh datadir, then mariadbd --no-defaults on loopback."""
    server = MariaDBServer(Path(tempfile.mkdtemp(prefix="sa-mariadb-")), ROOT_PASSWORD,
                           {**TEST_OPTIONS, **(options or {})})
    server.start()
    return server
