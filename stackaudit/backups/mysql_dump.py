"""MariaDB/MySQL backups and restore drills, in the same destination and manifests as PostgreSQL's.

A backup of one database:
1. `mariadb-dump` (or `mysqldump`) `--single-transaction` streams into `.<id>.dump.partial` while
   we hash it (`dump.stream_dump`); fsync, rename to `<id>.dump`, fsync the folder;
2. verify by reading the file again: the same sha256, the "-- Dump completed" trailer the dump
   tools write last (a truncated dump has none), and the rows per table counted from the dump's
   own INSERT statements - the rows of the one consistent snapshot the dump was taken in;
3. the manifest (format `mysql-sql`) is written atomically, last.

A drill restores the dump into a scratch database `stackaudit_drill_<db>_<time>` with the `mariadb`
/ `mysql` client, counts the rows of every table, compares them with the manifest, and always drops
the scratch database.

When the host has no mariadb-dump/mysqldump (or --container names the server's container), the
dump and the drill's restore run inside the server's container with `docker exec` (the image has
the matching tools), streaming through the docker CLI's stdout/stdin, as the PostgreSQL backups do.
Row counts and the scratch database go through PyMySQL from the host as before.

The password reaches host tools only in a 0600 `--defaults-extra-file` that is removed after the
run; tools in a container get it as MYSQL_PWD copied from the docker CLI's environment (`-e
MYSQL_PWD`, no value in argv; MariaDB's and MySQL's clients read it,
https://mariadb.com/kb/en/mariadb-environment-variables/). Never argv (visible in `ps`).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pymysql

from stackaudit import __version__
from stackaudit.backups.drill import choose_backups, compare_counts, scratch_name
from stackaudit.backups.dump import CHUNK_BYTES, BackupError, sha256_of, stream_dump
from stackaudit.backups.manifest import (
    Manifest,
    backup_id,
    dump_path,
    inventory,
    iso,
    partial_path,
    write_manifest,
)
from stackaudit.backups.records import DrillRecord, save_record
from stackaudit.fsutil import fsync_dir
from stackaudit.mysqlconn import SYSTEM_SCHEMAS, Target, connect, connection_error
from stackaudit.redact import scrub

MYSQL_FORMAT = "mysql-sql"
DUMP_TOOLS = ("mariadb-dump", "mysqldump")
CLIENT_TOOLS = ("mariadb", "mysql")
DUMP_OPTIONS = ("--single-transaction", "--quick", "--routines", "--triggers", "--events", "--hex-blob",
                "--default-character-set=utf8mb4", "--skip-lock-tables")
TRAILER = re.compile(rb"^-- Dump completed( on .*)?$")
INSERT = re.compile(rb"^INSERT INTO `((?:[^`]|``)+)` VALUES ?")
CREATE = re.compile(rb"^CREATE TABLE `((?:[^`]|``)+)`")
QUOTED = re.compile(rb"'(?:[^'\\]|\\.)*'", re.DOTALL)
RESTORE_TIMEOUT_SECONDS = 24 * 3600
ToolChoice = Callable[[str], "Tools"]  # the server's version -> where the tools run


@dataclass(frozen=True)
class Tools:
    """Where the dump and client tools run: host paths, or names inside the server's container."""

    dump: str
    client: str
    container: str | None = None
    docker_host: str | None = None

    @property
    def mode(self) -> str:
        return "docker-exec" if self.container else "host"

    def describe(self, tool: str) -> str:
        return f"{Path(tool).name} (docker exec {self.container})" if self.container else \
            f"{Path(tool).name} ({tool})"

    @contextmanager
    def command(self, tool: str, target: Target, args: list[str], stdin: bool = False
                ) -> Iterator[tuple[list[str], dict[str, str]]]:
        """(argv, env) for `tool args`: the password in a 0600 file on the host, or in MYSQL_PWD
        for the docker CLI to copy into the exec (inside the container: its default socket)."""
        env = {k: v for k, v in os.environ.items() if k != "MYSQL_PWD"}
        if self.container is None:
            with client_options(target) as options:
                yield [tool, *options, *args], env
            return
        if target.password is not None:
            env["MYSQL_PWD"] = target.password
        if self.docker_host:
            env["DOCKER_HOST"] = self.docker_host
        docker = shutil.which("docker") or "docker"
        yield [docker, "exec", *(["-i"] if stdin else []), "-e", "MYSQL_PWD", self.container, tool,
               f"--user={target.user}", *args], env


def container_tools(version: str) -> tuple[str, str]:
    """The tools an image of this server has: MariaDB 10.5+ names them mariadb-*, and MariaDB
    11's images dropped the mysql* names; MySQL and older MariaDB have mysqldump/mysql."""
    match = re.match(r"(\d+)\.(\d+)", version)
    release = (int(match.group(1)), int(match.group(2))) if match else (0, 0)
    if "mariadb" in version.lower() and release >= (10, 5):
        return "mariadb-dump", "mariadb"
    return "mysqldump", "mysql"


def choose_tools(version: str, container: str | None = None, docker_host: str | None = None,
                 prefer_container: bool = False,
                 find_container: Callable[[], tuple[str | None, str | None]] | None = None) -> Tools:
    """Host tools, else `docker exec` into the server's container (first when `prefer_container`:
    the user named it with --container); `find_container` is asked only when needed."""
    if not (container and prefer_container):
        dump, client = _which(DUMP_TOOLS), _which(CLIENT_TOOLS)
        if dump and client:
            return Tools(dump, client)
        if container is None and find_container is not None:
            container, docker_host = find_container()
    if container:
        return Tools(*container_tools(version), container=container, docker_host=docker_host)
    raise BackupError(f"no {' or '.join(DUMP_TOOLS)} on this host and the server is not known to run in "
                      "a container: install mariadb-client (Debian) or mysql-client, or pass --container")


def _which(names: tuple[str, ...]) -> str | None:
    return next((path for name in names if (path := shutil.which(name))), None)


@contextmanager
def client_options(target: Target) -> Iterator[list[str]]:
    """[--defaults-extra-file=F, --host/--port or --socket, --user]: the password only in F (0600)."""
    handle, name = tempfile.mkstemp(prefix="stackaudit-my-", suffix=".cnf")
    try:
        password = (target.password or "").replace("\\", "\\\\").replace('"', '\\"')
        os.write(handle, f'[client]\npassword="{password}"\n'.encode())
        os.close(handle)
        where = ([f"--socket={target.unix_socket}"] if target.unix_socket
                 else [f"--host={target.host}", f"--port={target.port}", "--protocol=TCP"])
        yield [f"--defaults-extra-file={name}", *where, f"--user={target.user}"]
    finally:
        with suppress(OSError):
            os.unlink(name)


def _connect(target: Target, database: str | None = None) -> Any:
    copy = Target(**{**target.__dict__, "database": database})
    try:
        return connect(copy, 30)
    except pymysql.err.MySQLError as exc:
        raise BackupError(f"cannot connect to MariaDB/MySQL: {connection_error(exc, copy)}") from None


def list_databases(target: Target) -> list[str]:
    with _connect(target) as conn, conn.cursor() as cur:
        cur.execute("SHOW DATABASES")
        names = [str(next(iter(r.values()))) for r in cur.fetchall()]
    return [n for n in names if n not in SYSTEM_SCHEMAS and not n.startswith("stackaudit_drill_")]


def server_version(target: Target) -> str:
    with _connect(target) as conn, conn.cursor() as cur:
        cur.execute("SELECT VERSION() AS v")
        return str(cur.fetchone()["v"])


# ---------------------------------------------------------------- reading a dump


def inspect_dump(path: Path) -> dict[str, Any]:
    """One pass over the file: sha256, the trailer, and rows per table from its INSERT statements.

    An extended INSERT holds one tuple more than the `),(` outside quoted strings; recent
    mariadb-dump writes a tuple per line, older tools the whole statement on one. Strings never hold
    a raw newline (the tools write \\n) and --hex-blob keeps binary data out of quotes.
    """
    digest = hashlib.sha256()
    counts: dict[str, int] = {}
    last, table, statement = b"", None, []
    with path.open("rb") as handle:
        for line in _lines(handle, digest):
            stripped = line.rstrip(b"\r\n")
            if stripped:
                last = stripped
            if table is None and (match := INSERT.match(stripped)):
                table, stripped = _name(match.group(1)), stripped[match.end():]
            elif table is None:
                if match := CREATE.match(stripped):
                    counts.setdefault(_name(match.group(1)), 0)
                continue
            statement.append(stripped)
            if stripped.endswith(b";"):
                counts[table] = counts.get(table, 0) + _tuples(b"".join(statement))
                table, statement = None, []
    return {"sha256": digest.hexdigest(), "complete": bool(TRAILER.match(last)) and table is None,
            "row_counts": counts}


def _tuples(values: bytes) -> int:
    return QUOTED.sub(b"''", values).count(b"),(") + 1


def _lines(handle: Any, digest: Any) -> Iterator[bytes]:
    pending = b""
    while chunk := handle.read(CHUNK_BYTES):
        digest.update(chunk)
        pending += chunk
        *complete, pending = pending.split(b"\n")
        yield from complete
    if pending:
        yield pending


def _name(quoted: bytes) -> str:
    return quoted.replace(b"``", b"`").decode("utf-8", "replace")


# ---------------------------------------------------------------- one backup


def backup_database(target: Target, database: str, dest: Path, *, tools: ToolChoice | None = None,
                    now: Callable[[], datetime] | None = None) -> Manifest:
    """Dump one database into `dest`. Never raises for a failed backup: the manifest says why."""
    clock = now or (lambda: datetime.now(UTC))
    dest.mkdir(parents=True, exist_ok=True)
    started, monotonic = clock(), time.monotonic()
    manifest = Manifest(id=backup_id(database, started, dest), database=database, status="failed",
                        verified=False, started_at=iso(started), format=MYSQL_FORMAT,
                        tool_version=f"stackaudit {__version__}")
    try:
        _run_backup(target, manifest, dest, tools or choose_tools)
    except BaseException as exc:
        partial_path(dest, manifest.id).unlink(missing_ok=True)
        dump_path(dest, manifest.id).unlink(missing_ok=True)
        manifest.error = (str(exc) if isinstance(exc, BackupError)
                          else scrub(f"{exc.__class__.__name__}: {exc}"))
        manifest.file, manifest.status, manifest.verified = None, "failed", False
        _finish(manifest, clock, monotonic)
        with suppress(OSError):
            write_manifest(dest, manifest)
        if not isinstance(exc, Exception):
            raise
        return manifest
    _finish(manifest, clock, monotonic)
    write_manifest(dest, manifest)
    return manifest


def _run_backup(target: Target, manifest: Manifest, dest: Path, tools: ToolChoice) -> None:
    partial, final = partial_path(dest, manifest.id), dump_path(dest, manifest.id)
    manifest.server_version = server_version(target)
    chosen = tools(manifest.server_version)
    manifest.client, manifest.client_mode = chosen.describe(chosen.dump), chosen.mode
    with chosen.command(chosen.dump, target, [*DUMP_OPTIONS, "--", manifest.database]) as (argv, env):
        manifest.bytes, manifest.sha256 = stream_dump(argv, env, partial)
    os.replace(partial, final)
    fsync_dir(dest)
    manifest.file = final.name
    seen = inspect_dump(final)
    manifest.row_counts = {f"{manifest.database}.{t}": n for t, n in seen["row_counts"].items()}
    manifest.row_estimates = dict(manifest.row_counts)
    manifest.snapshot_consistent_counts = True
    manifest.verification = {"dump_complete": seen["complete"],
                             "sha256_reread_ok": seen["sha256"] == manifest.sha256,
                             "tables": len(seen["row_counts"]), "verified_at": iso(datetime.now(UTC))}
    if not seen["complete"]:
        raise BackupError("the dump has no '-- Dump completed' trailer: it is truncated")
    if not manifest.verification["sha256_reread_ok"]:
        raise BackupError("the dump read back from disk does not match the checksum computed while writing")
    manifest.status, manifest.verified = "ok", True


def _finish(manifest: Manifest, clock: Callable[[], datetime], monotonic: float) -> None:
    manifest.finished_at = iso(clock())
    manifest.duration_seconds = round(time.monotonic() - monotonic, 3)


def run_backups(target: Target, dest: Path, databases: list[str] | None = None,
                progress: Callable[[str, Manifest | None], None] | None = None,
                tools: ToolChoice | None = None) -> list[Manifest]:
    """`tools`: the server's version -> Tools (default: choose_tools, host tools or nothing)."""
    results = []
    for name in databases or list_databases(target):
        if progress:
            progress(name, None)
        manifest = backup_database(target, name, dest, tools=tools)
        if progress:
            progress(name, manifest)
        results.append(manifest)
    return results


# ---------------------------------------------------------------- restore drill


def count_rows(target: Target, database: str) -> dict[str, int]:
    """Exact rows of every base table of `database`, keyed "<database>.<table>"."""
    with _connect(target, database) as conn, conn.cursor() as cur:
        cur.execute("SELECT TABLE_NAME AS t FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s "
                    "AND TABLE_TYPE = 'BASE TABLE'", (database,))
        tables = [str(r["t"]) for r in cur.fetchall()]
        counts = {}
        for table in tables:
            cur.execute(f"SELECT COUNT(*) AS n FROM `{table.replace('`', '``')}`")
            counts[table] = int(cur.fetchone()["n"])
    return counts


def restore(target: Target, path: Path, scratch: str, tools: Tools) -> tuple[bool, float, str | None]:
    began = time.monotonic()
    with tools.command(tools.client, target, [f"--database={scratch}"], stdin=True) as (argv, env), \
            path.open("rb") as handle:
        result = subprocess.run(argv, stdin=handle, capture_output=True, env=env,
                                timeout=RESTORE_TIMEOUT_SECONDS, check=False)
    seconds = round(time.monotonic() - began, 3)
    if result.returncode == 0:
        return True, seconds, None
    return False, seconds, scrub(result.stderr.decode("utf-8", "replace").strip()[-800:]) or "no message"


def run_drill(target: Target, dest: Path, manifest: Manifest, now: Callable[[], datetime] | None = None,
              tools: ToolChoice | None = None) -> DrillRecord:
    clock = now or (lambda: datetime.now(UTC))
    started = clock()
    record = DrillRecord(id=f"drill-{manifest.id}-{started:%Y%m%dT%H%M%SZ}", backup_id=manifest.id,
                         database=manifest.database, started_at=iso(started))
    try:
        _drill(target, dest, manifest, record, started, tools or choose_tools)
    except (BackupError, OSError, pymysql.err.MySQLError) as exc:
        record.error = scrub(str(exc) if isinstance(exc, BackupError) else f"{exc.__class__.__name__}: {exc}")
    record.ok = bool(record.error is None and record.checksum_ok and record.restore_ok
                     and not record.mismatches and record.scratch_dropped)
    record.finished_at = iso(clock())
    save_record(dest, record)
    return record


def _drill(target: Target, dest: Path, manifest: Manifest, record: DrillRecord, started: datetime,
           tools: ToolChoice) -> None:
    if not manifest.file or not (dest / manifest.file).is_file():
        raise BackupError(f"backup {manifest.id} has no dump file in {dest}")
    path = dest / manifest.file
    record.checksum_ok = sha256_of(path) == manifest.sha256
    scratch = scratch_name(manifest.database, started)
    if scratch == manifest.database:
        raise BackupError("refusing to restore over the source database")
    record.server_version = server_version(target)
    chosen = tools(record.server_version)
    _admin(target, f"CREATE DATABASE `{scratch}`")
    record.scratch_database = scratch
    try:
        record.restore_ok, record.restore_seconds, error = restore(target, path, scratch, chosen)
        if not record.restore_ok:
            raise BackupError(f"restore failed: {error}")
        restored = {f"{manifest.database}.{t}": n for t, n in count_rows(target, scratch).items()}
        record.counts_compared_with = "manifest"
        record.tables_checked, record.rows_restored = len(restored), sum(restored.values())
        record.mismatches = compare_counts(manifest.row_counts or {}, restored)
    finally:
        record.scratch_dropped = _drop(target, scratch)


def _admin(target: Target, statement: str) -> None:
    with _connect(target) as conn, conn.cursor() as cur:
        cur.execute(statement)


def _drop(target: Target, scratch: str) -> bool:
    try:
        _admin(target, f"DROP DATABASE IF EXISTS `{scratch}`")
        return True
    except (BackupError, pymysql.err.MySQLError):
        return False


def run_drills(target: Target, dest: Path, backup: str | None = None,
               progress: Callable[[Manifest, DrillRecord | None], None] | None = None,
               tools: ToolChoice | None = None) -> list[DrillRecord]:
    """Drill the backup named, or the newest verified MariaDB/MySQL backup of each database."""
    manifests = [m for m in inventory(dest).manifests if m.format == MYSQL_FORMAT]
    chosen = choose_backups(manifests, backup)
    if not chosen:
        raise BackupError(f"found no {'backup ' + backup if backup else 'verified MariaDB/MySQL backup'} "
                          f"in {dest}")
    records = []
    for manifest in chosen:
        if progress:
            progress(manifest, None)
        record = run_drill(target, dest, manifest, tools=tools)
        if progress:
            progress(manifest, record)
        records.append(record)
    return records

