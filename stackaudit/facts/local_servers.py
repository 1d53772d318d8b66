"""PostgreSQL clusters and a Redis running on this host without Docker: found by themselves.

Not a source of its own: the postgres and redis collectors ask here when neither a flag, libpq's
environment nor the compose stack names a server.

PostgreSQL, from three places that agree on the data directory:
- running postmasters: /proc/<pid>/comm is `postgres` (or `postmaster`); their data directory is
  the `-D` argument, else their working directory (the server chdir()s into it);
- Debian's cluster list, which `pg_lsclusters` prints: /etc/postgresql/<version>/<name>/postgresql.conf
  and its `data_directory` (default /var/lib/postgresql/<version>/<name>);
- each data directory's postmaster.pid: pid, port, first socket directory and listen address
  (https://www.postgresql.org/docs/current/storage-file-layout.html), alive when that pid is a
  postgres process.
The cluster is reached on its Unix socket as its owner (see stackaudit.peer: as root the collection
runs in a child that has become that user, for peer authentication).

Redis: the default port on loopback (127.0.0.1:6379) when something answers there.
"""

from __future__ import annotations

import os
import re
import shlex
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from stackaudit.facts import CollectContext, SourceUnavailable
from stackaudit.model import CollectionError
from stackaudit.peer import OsUser, PeerError, os_user, run_as

PROC = Path("/proc")
DEBIAN_ETC = Path("/etc/postgresql")
DEBIAN_DATA = "/var/lib/postgresql/{version}/{name}"
POSTGRES_COMMS = {"postgres", "postmaster"}
DEFAULT_PORT = 5432
REDIS_DEFAULT = ("127.0.0.1", 6379)
_DATA_DIRECTORY = re.compile(r"^\s*data_directory\s*=?\s*'([^']*)'", re.MULTILINE)


@dataclass(frozen=True)
class FoundCluster:
    data_dir: str
    running: bool
    port: int | None = None
    socket_dir: str | None = None
    listen: str | None = None
    pid: int | None = None
    owner: str | None = None
    version: str | None = None
    debian: str | None = None  # "15/main": Debian's name for it (pg_ctlcluster 15 main ...)
    config_dir: str | None = None  # where postgresql.conf lives (Debian: /etc/postgresql/15/main)

    @property
    def name(self) -> str:
        return self.debian or self.data_dir

    def conninfo(self) -> str:
        """The Unix socket as the owner, the maintenance database: what peer authentication lets in."""
        parts = {"host": self.socket_dir or "/var/run/postgresql", "port": str(self.port or DEFAULT_PORT),
                 "user": self.owner or "postgres", "dbname": "postgres"}
        return " ".join(f"{k}={v}" for k, v in parts.items())

    def describe(self) -> str:
        where = f"port {self.port}" if self.port else "port unknown"
        version = self.version or "?"
        return f"PostgreSQL {version} cluster {self.name} (data directory {self.data_dir}, {where})"

    def pg_hint(self) -> str:
        """The exact flag that audits it, and as whom."""
        owner = self.owner or "postgres"
        return (f"--pg {shlex.quote(self.conninfo())} (run as root or as {owner}), or over TCP "
                f"--pg 'postgresql://USER@{self.tcp_host()}:{self.port or DEFAULT_PORT}/postgres' "
                "with PGPASSWORD set")

    def tcp_host(self) -> str:
        return "127.0.0.1" if self.listen in (None, "", "*", "0.0.0.0", "localhost") else str(self.listen)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# --- PostgreSQL ------------------------------------------------------------------------------


def find_postgres_clusters(proc: Path = PROC, etc: Path = DEBIAN_ETC) -> list[FoundCluster]:
    """Every cluster found, running ones first (Debian's, then the default port, then by port)."""
    debian = debian_clusters(etc)
    directories = set(debian) | postmaster_directories(proc)
    found = [read_cluster(Path(d), proc, *debian.get(d, (None, None))) for d in sorted(directories)]
    return sorted(found, key=lambda c: (not c.running, c.debian is None, c.port != DEFAULT_PORT,
                                        c.port or 0, c.data_dir))


def debian_clusters(etc: Path = DEBIAN_ETC) -> dict[str, tuple[str, str]]:
    """data directory -> ("15/main", config directory), from /etc/postgresql/*/*/postgresql.conf."""
    clusters: dict[str, tuple[str, str]] = {}
    for conf in sorted(etc.glob("*/*/postgresql.conf")):
        version, name = conf.parent.parent.name, conf.parent.name
        try:
            match = _DATA_DIRECTORY.search(conf.read_text(encoding="utf-8", errors="replace"))
        except OSError:
            match = None
        data_dir = match.group(1) if match else DEBIAN_DATA.format(version=version, name=name)
        clusters[os.path.normpath(data_dir)] = (f"{version}/{name}", str(conf.parent))
    return clusters


def postmaster_directories(proc: Path = PROC) -> set[str]:
    """Data directories of the postgres processes visible here (children share their postmaster's)."""
    found = set()
    for entry in _pids(proc):
        try:
            if (entry / "comm").read_text().strip() not in POSTGRES_COMMS:
                continue
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        directory = _dash_d(args) or _cwd(entry)
        if directory and (Path(directory) / "PG_VERSION").is_file():
            found.add(os.path.normpath(directory))
    return found


def _pids(proc: Path) -> Iterable[Path]:
    try:
        return [p for p in proc.iterdir() if p.name.isdigit()]
    except OSError:
        return []


def _dash_d(args: list[bytes]) -> str | None:
    for i, arg in enumerate(args):
        if arg == b"-D" and i + 1 < len(args):
            return args[i + 1].decode(errors="replace")
        if arg.startswith(b"-D") and len(arg) > 2:
            return arg[2:].decode(errors="replace")
    return None


def _cwd(entry: Path) -> str | None:
    try:
        return os.readlink(entry / "cwd")
    except OSError:  # another user's process, when not root
        return None


def read_cluster(data_dir: Path, proc: Path = PROC, debian: str | None = None,
                 config_dir: str | None = None) -> FoundCluster:
    """What postmaster.pid, PG_VERSION and the directory's owner say about one data directory."""
    lines = _read_lines(data_dir / "postmaster.pid")
    pid = _int(lines[0]) if lines else None
    running = pid is not None and _is_postgres(proc / str(pid))
    if not lines and config_dir and not os.access(data_dir, os.R_OK | os.X_OK):
        return _seen_from_outside(data_dir, debian, config_dir)
    try:
        owner = os_user(data_dir.stat().st_uid)
    except OSError:
        owner = None
    version = next(iter(_read_lines(data_dir / "PG_VERSION")), None)
    return FoundCluster(
        data_dir=str(data_dir), running=running,
        port=_int(lines[3]) if len(lines) > 3 else _debian_port(config_dir),
        socket_dir=(lines[4].strip() or None) if len(lines) > 4 else None,
        listen=(lines[5].strip() or None) if len(lines) > 5 else None,
        pid=pid if running else None, owner=owner.name if owner else None, version=version,
        debian=debian, config_dir=config_dir or (str(data_dir) if (data_dir / "postgresql.conf").exists()
                                                 else None),
    )


def _seen_from_outside(data_dir: Path, debian: str | None, config_dir: str) -> FoundCluster:
    """A Debian cluster whose data directory we may not read (not root): its configuration says
    the port and socket directory, and the socket is there while it runs."""
    port = _debian_port(config_dir) or DEFAULT_PORT
    text = "\n".join(_read_lines(Path(config_dir) / "postgresql.conf"))
    match = re.search(r"^\s*unix_socket_directories\s*=?\s*'([^',]*)", text, re.MULTILINE)
    socket_dir = match.group(1).strip() if match else "/var/run/postgresql"
    version = debian.split("/")[0] if debian else None
    running = Path(socket_dir, f".s.PGSQL.{port}").is_socket()
    return FoundCluster(str(data_dir), running, port, socket_dir, version=version, debian=debian,
                        config_dir=config_dir)


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []


def _int(text: str) -> int | None:
    try:
        return int(text.strip())
    except ValueError:
        return None


def _is_postgres(entry: Path) -> bool:
    try:
        return (entry / "comm").read_text().strip() in POSTGRES_COMMS
    except OSError:
        return False


def _debian_port(config_dir: str | None) -> int | None:
    if not config_dir:
        return None
    text = "\n".join(_read_lines(Path(config_dir) / "postgresql.conf"))
    match = re.search(r"^\s*port\s*=?\s*(\d+)", text, re.MULTILINE)
    return int(match.group(1)) if match else None


def choose_cluster(clusters: list[FoundCluster]) -> tuple[FoundCluster | None, list[FoundCluster]]:
    """The cluster to audit (the first running one in find_postgres_clusters' order) and the others
    that are running too."""
    running = [c for c in clusters if c.running]
    return (running[0], running[1:]) if running else (None, [])


def not_running_reason(clusters: list[FoundCluster]) -> str:
    """For the "no PostgreSQL target" message: the clusters that are here but down."""
    down = [c for c in clusters if not c.running]
    if not down:
        return ""
    names = "; ".join(c.describe() + (f": start it with pg_ctlcluster {c.debian.replace('/', ' ')} start"
                                      if c.debian else "") for c in down)
    return f"; found here but not running: {names}"


def collect_as_owner(ctx: CollectContext, owner: OsUser, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run a collector body as `owner` in a forked child (peer authentication); its data, its
    collection errors and its SourceUnavailable come back as if it had run here."""

    def body() -> dict[str, Any]:
        before = len(ctx.facts.errors)
        data = fn()
        return {"data": data, "errors": [asdict(e) for e in ctx.facts.errors[before:]]}

    try:
        answer = run_as(owner, body, timeout_seconds=max(120.0, 12 * ctx.settings.timeout_seconds))
    except PeerError as exc:
        if exc.kind == "SourceUnavailable":
            raise SourceUnavailable(str(exc)) from None
        raise SourceUnavailable(f"collecting as {owner.name} failed: {exc.kind}: {exc}") from None
    ctx.facts.errors.extend(CollectionError(**e) for e in answer["errors"])
    data: dict[str, Any] = answer["data"]
    return data


# --- Redis -----------------------------------------------------------------------------------


def local_redis(address: tuple[str, int] = REDIS_DEFAULT, timeout: float = 1.0) -> str | None:
    """redis://HOST:PORT/0 when something accepts a TCP connection at the default address."""
    try:
        with socket.create_connection(address, timeout=timeout):
            pass
    except OSError:
        return None
    return f"redis://{address[0]}:{address[1]}/0"


def cluster_json(clusters: Iterable[FoundCluster], chosen: FoundCluster | None) -> list[Mapping[str, Any]]:
    return [{**c.to_json(), "audited": c == chosen} for c in clusters]
