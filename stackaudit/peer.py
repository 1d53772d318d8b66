"""Connecting to a local PostgreSQL as its owner when run as root (peer authentication).

Debian's clusters accept local connections with `peer`: the server asks the kernel who is at the
other end of the Unix socket (SO_PEERCRED, which reports the effective uid at connect()), so root is
refused and the `postgres` user gets in. Two ways to be that user here:

- `run_as(user, fn)`: fork a child that drops to the user for good (initgroups, setgid, setuid),
  runs `fn` (the read-only collection) and hands its JSON-able result back through a pipe. The
  audit uses it: nothing in the parent ever runs with less (or more) privilege than it had.
- `connect_as(user)`: the effective uid is the user's for the connect() call only, then root again
  (apply and rollback: short, single-threaded sessions that must stay in this process).

`socket_owner(conninfo)` says whether either is needed: when root, and the conninfo's host is a
socket directory whose `.s.PGSQL.<port>` belongs to someone else.
"""

from __future__ import annotations

import json
import os
import pwd
import select
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_SOCKET_DIR = "/var/run/postgresql"  # Debian's (and most distributions') libpq default


class PeerError(RuntimeError):
    """The child could not run as the user, or `fn` failed there; the message says why."""

    def __init__(self, message: str, kind: str = "PeerError") -> None:
        super().__init__(message)
        self.kind = kind  # the exception class name raised in the child


@dataclass(frozen=True)
class OsUser:
    name: str
    uid: int
    gid: int


def os_user(uid: int) -> OsUser | None:
    try:
        entry = pwd.getpwuid(uid)
    except KeyError:
        return None
    return OsUser(entry.pw_name, entry.pw_uid, entry.pw_gid)


def socket_path(conninfo: str) -> Path | None:
    """The Unix socket a conninfo reaches, or None for TCP (or an unreadable conninfo)."""
    from psycopg import ProgrammingError  # lazy: start-up
    from psycopg import conninfo as pg_conninfo  # lazy: start-up

    try:
        params = pg_conninfo.conninfo_to_dict(conninfo)
    except ProgrammingError:
        return None
    host = str(params.get("host") or os.environ.get("PGHOST") or DEFAULT_SOCKET_DIR)
    if params.get("hostaddr") or not host.startswith("/") or "," in host:
        return None
    port = str(params.get("port") or os.environ.get("PGPORT") or "5432")
    return Path(host) / f".s.PGSQL.{port}"


def socket_owner(conninfo: str) -> OsUser | None:
    """The owner of the socket when this process is root and the owner is not: peer auth needs it."""
    if os.geteuid() != 0:
        return None
    path = socket_path(conninfo)
    try:
        uid = path.stat().st_uid if path is not None else 0
    except OSError:
        return None
    return os_user(uid) if uid != 0 else None


@contextmanager
def connect_as(user: OsUser | None) -> Iterator[None]:
    """Effective uid/gid of `user` inside the block (keep it to the connect call), root again after."""
    if user is None or os.geteuid() != 0:
        yield
        return
    os.setegid(user.gid)
    os.seteuid(user.uid)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


def run_as(user: OsUser, fn: Callable[[], Any], timeout_seconds: float = 600.0) -> Any:
    """`fn()` in a forked child running as `user`; its JSON-able result, or PeerError. A child that
    has not answered within `timeout_seconds` is killed (a fork copies only the calling thread, so
    a lock another thread held stays held in the child: this bounds what that could cost)."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into the caller's code
        os.close(read_fd)
        _child(user, fn, write_fd)
    os.close(write_fd)
    try:
        payload = _read_all(read_fd, time.monotonic() + timeout_seconds)
    except TimeoutError:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise PeerError(f"the child running as {user.name} did not answer in {timeout_seconds:g}s") from None
    finally:
        os.close(read_fd)
    _, status = os.waitpid(pid, 0)
    try:
        answer = json.loads(payload)
    except ValueError:
        raise PeerError(f"the child running as {user.name} gave no answer (wait status {status})") from None
    if "error" in answer:
        raise PeerError(str(answer["error"]), str(answer.get("kind") or "PeerError"))
    return answer["result"]


def _read_all(fd: int, deadline: float) -> bytes:
    chunks: list[bytes] = []
    while True:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            raise TimeoutError
        chunk = os.read(fd, 65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _child(user: OsUser, fn: Callable[[], Any], write_fd: int) -> None:
    code = 0
    try:
        os.initgroups(user.name, user.gid)
        os.setgid(user.gid)
        os.setuid(user.uid)
        os.environ["HOME"] = pwd.getpwuid(user.uid).pw_dir  # libpq looks for ~/.pgpass there
        answer: dict[str, Any] = {"result": fn()}
    except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent as a message
        answer = {"error": str(exc), "kind": exc.__class__.__name__}
        code = 1
    try:
        data = json.dumps(answer, default=str).encode("utf-8")
        with os.fdopen(write_fd, "wb") as pipe:
            pipe.write(data)
    finally:
        os._exit(code)
