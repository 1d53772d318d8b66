"""How to reach a MariaDB/MySQL server: a parsed URL (password in-process only), a PyMySQL
connection with timeouts, and connection errors in our words. Shared by the mysql facts, the
backups and the apply step (a helper: it reads nothing by itself)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

from stackaudit.redact import remember

if TYPE_CHECKING:
    import pymysql

MYSQL_PORT = 3306
SYSTEM_SCHEMAS = ("mysql", "information_schema", "performance_schema", "sys")


@dataclass
class Target:
    """How to reach one server (password in-process only) and what the stack calls it."""

    host: str | None = "127.0.0.1"
    port: int = MYSQL_PORT
    user: str = "root"
    password: str | None = field(default=None, repr=False)  # never in a repr, a log or a traceback
    database: str | None = None
    unix_socket: str | None = None
    discovered_from: str = "--mysql"
    project: str | None = None
    service: str | None = None

    @property
    def label(self) -> str:
        where = f"socket {self.unix_socket}" if self.unix_socket else f"{self.host}:{self.port}"
        return f"{self.user}@{where}" + (f"/{self.database}" if self.database else "")


class MysqlUrlError(ValueError):
    """A --mysql URL that cannot be used; the message says why (without the password)."""


def parse_url(url: str) -> Target:
    """mysql://user:pass@host:port/db?unix_socket=/path (also mariadb://, mysql+pymysql://)."""
    parts = urlsplit(url)
    scheme = parts.scheme.split("+", 1)[0].lower()
    if scheme not in ("mysql", "mariadb"):
        raise MysqlUrlError(f"--mysql must be a mysql:// or mariadb:// URL, not {scheme or 'no'} scheme")
    try:
        port = parts.port or MYSQL_PORT
    except ValueError:
        raise MysqlUrlError("--mysql: the port is not a number") from None
    query = parse_qs(parts.query)
    sockets = query.get("unix_socket") or query.get("socket") or []
    password = unquote(parts.password) if parts.password is not None else None
    remember(password)
    return Target(host=parts.hostname or "127.0.0.1", port=port, user=unquote(parts.username or "root"),
                  password=password, database=parts.path.lstrip("/") or None,
                  unix_socket=sockets[0] if sockets else None)


def connect(target: Target, timeout: float) -> pymysql.connections.Connection[Any]:
    import pymysql  # lazy: start-up (PyMySQL and its cryptography cost 0.07 s and 20 MiB: only to connect)
    import pymysql.cursors  # lazy: start-up

    return pymysql.connect(host=target.host or "localhost", port=target.port, user=target.user,
                           password=target.password or "", database=target.database,
                           unix_socket=target.unix_socket, connect_timeout=max(1, int(timeout)),
                           read_timeout=max(1, int(timeout)), write_timeout=max(1, int(timeout)),
                           cursorclass=pymysql.cursors.DictCursor, autocommit=True, charset="utf8mb4")


def connection_error(exc: BaseException, target: Target) -> str:
    """Our words for why a connection failed (PyMySQL's args never hold the password)."""
    code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
    if code == 1045:
        return f"{target.label}: access denied (wrong user or password)"
    if code in (2003, 2002):
        return f"{target.label}: cannot connect (server down, wrong port, or not reachable)"
    return f"{target.label}: {exc.__class__.__name__}: {exc.args[-1] if exc.args else exc}"
