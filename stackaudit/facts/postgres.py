"""Live PostgreSQL facts: settings, sizes, activity, vacuum, indexes, checkpoints, statements.

The target is `--pg DSN`, else libpq's own variables and files (PGHOST, PGSERVICE, PGDATABASE with
PGPORT, PGUSER, .pgpass, read by libpq itself from an empty conninfo), else the compose stack's
postgres service (published port or container address; credentials from its environment or an
app's DATABASE_URL), else a cluster running on this host (facts.local_servers). A Unix socket owned
by another user is read, as root, by a child that has become that user (peer auth: stackaudit.peer).
Every session is read-only with a statement_timeout. A view that needs more
privilege becomes a collection error for that part only. The SQL is in `postgres_sql`.
"""

from __future__ import annotations

import os
import re
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import psycopg
from psycopg import conninfo as pg_conninfo
from psycopg.rows import dict_row

from stackaudit import pacing
from stackaudit.facts import CollectContext, SourceUnavailable, local_servers
from stackaudit.facts import postgres_sql as sql
from stackaudit.facts.postgres_indexes import never_scanned
from stackaudit.images import service_product
from stackaudit.peer import socket_owner
from stackaudit.redact import dsn_password, redact_dsn, remember, scrub

SOURCE = "postgres"
LOCAL_ORIGIN = "local cluster"
TABLE_LIMIT = 500  # per database, largest first: enough for every rule, bounded facts size
INDEX_LIMIT = 2000
DEFINED_UNUSED = 100  # never-scanned indexes whose definition is read, largest first
STATEMENT_LIMIT = 25  # top N by total, by mean and by temp blocks (union)
MAX_DATABASES = 50
# Never queue behind another session's lock: statements that need one (sizes) give up after this.
# The sizing queries already skip relations under ACCESS EXCLUSIVE; this covers a lock taken between.
LOCK_TIMEOUT_MS = 500
QUERY_TEXT_CHARS = 300

_LOOPBACK_OR_ANY = {None, "", "0.0.0.0", "127.0.0.1", "::", "::1", "localhost"}

# pg_settings.unit -> multiplier to bytes or milliseconds.
# https://www.postgresql.org/docs/current/config-setting.html#CONFIG-SETTING-NAMES-VALUES
MEMORY_UNITS = {"B": 1, "kB": 1024, "8kB": 8192, "16kB": 16384, "32kB": 32768, "MB": 1024**2,
                "GB": 1024**3, "TB": 1024**4}
TIME_UNITS = {"us": 0.001, "ms": 1, "s": 1000, "min": 60_000, "h": 3_600_000, "d": 86_400_000}


@dataclass(frozen=True)
class Target:
    """Where to connect. `conninfo` may hold a password: it never goes into facts or messages."""

    conninfo: str
    origin: str  # "--pg" | "libpq environment" | "compose" | "local cluster"
    label: str  # user@host:port/db, no password
    project: str | None = None
    service: str | None = None
    hint: str | None = None  # how to reach it by hand when this fails (a local cluster's --pg)
    local_clusters: tuple[Mapping[str, Any], ...] = ()


def collect(ctx: CollectContext) -> dict[str, Any]:
    target = find_target(ctx)
    owner = socket_owner(target.conninfo)
    try:
        if owner is not None:
            data = local_servers.collect_as_owner(ctx, owner, lambda: collect_target(ctx, target))
        else:
            data = collect_target(ctx, target)
    except SourceUnavailable as exc:
        raise SourceUnavailable(f"{exc}; {target.hint}" if target.hint else str(exc)) from None
    if target.local_clusters:
        data["local_clusters"] = list(target.local_clusters)
    ctx.wait_for("docker", "compose")
    data["runs_in"] = runs_in(ctx.facts.get("docker"), target, data)
    data["summary"] = summarise(data)
    return data


def collect_target(ctx: CollectContext, target: Target) -> dict[str, Any]:
    """Everything read over one connection (and the per-database ones): JSON-able, no secrets."""
    started = time.monotonic()
    with connect(target.conninfo, ctx.settings.timeout_seconds, target.label) as conn:
        data = collect_server(ctx, conn, target)
        deadline = started + max(30.0, 3 * ctx.settings.timeout_seconds)
        data["per_database"], statements = collect_databases(ctx, conn, target, data, deadline)
        data["statements"] = collect_statements(ctx, conn, data, statements)
    return data


# --- finding the target -------------------------------------------------------------------


def find_target(ctx: CollectContext, environ: Mapping[str, str] | None = None) -> Target:
    environ = os.environ if environ is None else environ
    if ctx.settings.pg_dsn:
        redact_dsn(ctx.settings.pg_dsn)  # remembers the password for scrub()
        remember(dsn_password(ctx.settings.pg_dsn), "postgres:--pg")
        return Target(ctx.settings.pg_dsn, "--pg", describe_conninfo(ctx.settings.pg_dsn))
    if any(environ.get(name) for name in ("PGHOST", "PGSERVICE", "PGDATABASE")):
        return Target("", "libpq environment", describe_environment(environ))
    ctx.wait_for("docker", "compose")
    targets = list(compose_targets(ctx.facts.get("compose"), ctx.facts.get("docker"),
                                   ctx.private.get("compose_env", {})))
    if targets:
        return targets[0]
    clusters = local_servers.find_postgres_clusters(ctx.settings.proc_root)
    chosen, others = local_servers.choose_cluster(clusters)
    if chosen is not None:
        return local_target(ctx, chosen, others, clusters)
    raise SourceUnavailable("no PostgreSQL target: give --pg DSN (or STACKAUDIT_PG_DSN), set PGHOST/"
                            "PGSERVICE for libpq, or audit a compose project with a postgres service "
                            "that publishes its port or runs in a reachable container"
                            + local_servers.not_running_reason(clusters))


def local_target(ctx: CollectContext, chosen: local_servers.FoundCluster,
                 others: list[local_servers.FoundCluster],
                 clusters: list[local_servers.FoundCluster]) -> Target:
    """The cluster running here; the other running ones are named with the --pg that audits them."""
    for other in others:
        ctx.error("local clusters", f"also running here, not audited: {other.describe()}: "
                  f"audit it with {other.pg_hint()}")
    label = f"{chosen.name} ({_label(chosen.owner, chosen.socket_dir, chosen.port, 'postgres')})"
    return Target(chosen.conninfo(), LOCAL_ORIGIN, label,
                  hint=f"found {chosen.describe()}: audit it with {chosen.pg_hint()}",
                  local_clusters=tuple(local_servers.cluster_json(clusters, chosen)))


def describe_conninfo(text: str) -> str:
    try:
        params = pg_conninfo.conninfo_to_dict(text)
    except psycopg.ProgrammingError:
        return redact_dsn(text)
    for key in ("password", "sslpassword"):
        if params.get(key):
            remember(str(params[key]))
    return _label(params.get("user"), params.get("host"), params.get("port"), params.get("dbname"))


def describe_environment(environ: Mapping[str, str]) -> str:
    if environ.get("PGSERVICE"):
        return f"service {environ['PGSERVICE']} (pg_service.conf)"
    return _label(environ.get("PGUSER"), environ.get("PGHOST"), environ.get("PGPORT"),
                  environ.get("PGDATABASE"))


def _label(user: Any, host: Any, port: Any, dbname: Any) -> str:
    return f"{user or '(default user)'}@{host or '(local socket)'}:{port or 5432}/{dbname or '(default db)'}"


def compose_targets(compose: Mapping[str, Any], docker: Mapping[str, Any],
                    private_env: Mapping[str, Any]) -> Iterator[Target]:
    """One target per postgres service of the compose stack that we can reach."""
    for project in compose.get("projects", []):
        services: dict[str, Any] = project.get("services", {})
        project_env: Mapping[str, Any] = private_env.get(project.get("name"), {})
        for name, service in services.items():
            if service_product(service) != "postgres":  # derived images and builds too (images.py)
                continue
            env = project_env.get(name) or {}
            address = service_address(service, project.get("name"), name, docker, env)
            if address is None:
                continue
            user, password, dbname = service_credentials(env, app_database_url(project_env, name))
            if password:
                remember(password)
            conninfo = pg_conninfo.make_conninfo(host=address[0], port=address[1], user=user,
                                                 password=password, dbname=dbname)
            yield Target(conninfo, "compose", _label(user, address[0], address[1], dbname),
                         project.get("name"), name)


def service_address(service: Mapping[str, Any], project: str | None, name: str,
                    docker: Mapping[str, Any], env: Mapping[str, Any] | None = None
                    ) -> tuple[str, int] | None:
    """The published port on loopback/any interface; with `network_mode: host` the server's own port
    on loopback; else the running container's IP on 5432."""
    if service.get("network_mode") == "host":
        return "127.0.0.1", host_network_port(service.get("command"), env or {})
    for port in service.get("ports") or []:
        if str(port.get("target")) != "5432" or port.get("host_ip") not in _LOOPBACK_OR_ANY:
            continue
        try:
            return "127.0.0.1", int(str(port.get("published")).split("-")[0])
        except ValueError:
            continue
    for container in docker.get("containers", []):
        if container.get("compose_project") == project and container.get("compose_service") == name:
            for ip in container_ips(container):
                return ip, 5432
    return None


def host_network_port(command: Any, env: Mapping[str, Any]) -> int:
    """The port a server on the host's network listens on: `-c port=N` or `-p N` on its command line,
    else PGPORT in its environment (postgres reads it too), else 5432."""
    parts = [str(p) for p in command] if isinstance(command, list) else []
    port: Any = env.get("PGPORT")
    for i, part in enumerate(parts):
        following = parts[i + 1] if i + 1 < len(parts) else ""
        flag = following if part == "-c" else part[2:] if part.startswith("-c") else ""
        if flag.replace(" ", "").startswith("port="):
            port = flag.split("=", 1)[1].strip()
        elif part == "-p" and following:
            port = following
    try:
        return int(str(port).strip("'\""))
    except ValueError:
        return 5432


def container_ips(container: Mapping[str, Any]) -> list[str]:
    """IPs from the docker facts, whichever key the docker collector uses."""
    ips = [ip for ip in container.get("ip_addresses") or [] if ip]
    networks = container.get("networks") or {}
    if isinstance(networks, Mapping):
        for net in networks.values():
            if isinstance(net, Mapping):
                ip = net.get("ip_address") or net.get("IPAddress")
                if ip:
                    ips.append(str(ip))
    return ips


def app_database_url(project_env: Mapping[str, Any], db_service: str) -> dict[str, str | None] | None:
    """user/password/dbname from an app service's DATABASE_URL that points at the db service."""
    for env in project_env.values():
        url = (env or {}).get("DATABASE_URL")
        if not url or not url.startswith(("postgres://", "postgresql://")):
            continue
        parts = urlsplit(url)
        if parts.hostname != db_service:
            continue
        return {"user": unquote(parts.username) if parts.username else None,
                "password": unquote(parts.password) if parts.password else None,
                "dbname": unquote(parts.path.lstrip("/")) or None}
    return None


def service_credentials(env: Mapping[str, Any], app_url: Mapping[str, str | None] | None
                        ) -> tuple[str, str | None, str]:
    """The image's POSTGRES_USER/PASSWORD (often the superuser) and the app's database if known.

    The official image defaults POSTGRES_USER to postgres and POSTGRES_DB to the user's name
    (https://hub.docker.com/_/postgres, "Environment Variables").
    """
    user = env.get("POSTGRES_USER") or "postgres"
    password = env.get("POSTGRES_PASSWORD")
    dbname = env.get("POSTGRES_DB") or user
    if app_url:
        dbname = app_url.get("dbname") or dbname
        if not password and app_url.get("password"):
            user, password = app_url.get("user") or user, app_url["password"]
    return user, password, dbname


# --- connecting -----------------------------------------------------------------------------


def connect(conninfo: str, timeout_seconds: float, label: str,
            dbname: str | None = None) -> psycopg.Connection[dict[str, Any]]:
    """A read-only autocommit session that never waits long: statement_timeout, a short lock_timeout
    and application_name=stackaudit, all set in the startup packet (libpq `options`), so they hold
    from the first statement and our sessions can be told apart in pg_stat_activity."""
    timeout_ms = int(timeout_seconds * 1000)
    options = (f"-c default_transaction_read_only=on -c statement_timeout={timeout_ms} "
               f"-c lock_timeout={min(LOCK_TIMEOUT_MS, timeout_ms)} "
               f"-c idle_in_transaction_session_timeout={timeout_ms * 6}")
    extra: dict[str, Any] = {"dbname": dbname} if dbname else {}
    try:
        with pacing.waiting_on():  # the server starts a backend for it
            return psycopg.connect(conninfo, connect_timeout=max(1, int(timeout_seconds)),
                                   application_name=sql.OWN_APPLICATION, options=options, autocommit=True,
                                   row_factory=dict_row, **extra)
    except psycopg.Error as exc:
        # str(), never repr(): the repr holds the connection string with its password.
        detail = scrub(redact_dsn(str(exc).strip().splitlines()[0] if str(exc).strip() else ""))
        raise SourceUnavailable(f"PostgreSQL at {label}: {classify_connection_error(str(exc))} "
                                f"({detail})") from None


def classify_connection_error(message: str) -> str:
    """A short reason from libpq's message (connection failures carry no sqlstate)."""
    text = message.lower()
    checks = (
        ("password authentication failed", "wrong user name or password"),
        ("no password supplied", "a password is required and none was given"),
        ("does not exist", "the database or role does not exist"),
        ("no pg_hba.conf entry", "the server's pg_hba.conf refuses this client"),
        ("ssl", "SSL negotiation failed"),
        ("could not translate host name", "the host name does not resolve"),
        ("connection refused", "nothing listens at that address (connection refused)"),
        ("timeout expired", "the server did not answer in time (unreachable or filtered)"),
        ("no route to host", "the host is unreachable"),
        ("network is unreachable", "the host is unreachable"),
        ("no such file or directory", "no server socket at that path"),
        ("too many connections", "the server has no free connection slot"),
        ("the database system is starting up", "the server is starting up"),
        ("the database system is shutting down", "the server is shutting down"),
    )
    for needle, reason in checks:
        if needle in text:
            return reason
    return "connection failed"


# --- running queries ------------------------------------------------------------------------


def run(ctx: CollectContext, conn: psycopg.Connection[dict[str, Any]], where: str, query: str,
        params: tuple[Any, ...] | None = None) -> list[dict[str, Any]] | None:
    """Rows as JSON-ready dicts, or None after recording why this part could not be read."""
    try:
        with pacing.waiting_on():
            rows = conn.execute(query, params).fetchall()
    except psycopg.errors.InsufficientPrivilege as exc:
        ctx.error(where, f"needs pg_monitor / superuser (or a GRANT): {_one_line(exc)}")
        return None
    except psycopg.errors.LockNotAvailable:
        ctx.error(where, f"not read: another session took a lock it needs, and the audit does not wait "
                  f"for locks (gave up after {LOCK_TIMEOUT_MS} ms)")
        return None
    except psycopg.errors.QueryCanceled:
        ctx.error(where, f"query cancelled by statement_timeout ({ctx.settings.timeout_seconds:g}s)")
        return None
    except psycopg.Error as exc:
        if conn.closed:
            raise SourceUnavailable(f"PostgreSQL connection lost during {where}: {_one_line(exc)}") from None
        ctx.error(where, f"{exc.__class__.__name__}: {_one_line(exc)}")
        return None
    return [{k: jsonable(v) for k, v in row.items()} for row in rows]


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return scrub(text[0]) if text else exc.__class__.__name__


_AS_THEY_ARE = frozenset({type(None), str, int, float, bool})  # most values: no conversion to try


def jsonable(value: Any) -> Any:
    if type(value) in _AS_THEY_ARE:
        return value
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    return value


# --- server-wide facts ----------------------------------------------------------------------


def collect_server(ctx: CollectContext, conn: psycopg.Connection[dict[str, Any]],
                   target: Target) -> dict[str, Any]:
    server = (run(ctx, conn, "server", sql.SERVER) or [{}])[0]
    major = int(server.get("server_version_num") or conn.info.server_version) // 10000
    settings = parse_settings(run(ctx, conn, "pg_settings", sql.SETTINGS) or [])
    databases = parse_databases(run(ctx, conn, "pg_stat_database", sql.DATABASES) or [])
    data: dict[str, Any] = {
        "target": target.label,
        "target_origin": target.origin,
        "server_version": server.get("server_version"),
        "server_version_num": server.get("server_version_num") or conn.info.server_version,
        "major": major,
        "current_database": server.get("current_database") or conn.info.dbname,
        "current_user": server.get("current_user"),
        "is_superuser": bool(server.get("is_superuser")),
        "has_pg_monitor": bool(server.get("has_pg_monitor")),
        "in_recovery": server.get("in_recovery"),
        "postmaster_start_time": server.get("postmaster_start_time"),
        "uptime_seconds": server.get("uptime_seconds"),
        "collected_at": server.get("collected_at"),
        "settings": settings,
        # None when hidden: shared_preload_libraries is superuser/pg_read_all_settings only
        "shared_preload_libraries": (split_list(_value(settings, "shared_preload_libraries"))
                                     if "shared_preload_libraries" in settings else None),
        "file_settings": collect_file_settings(ctx, conn, server),
        "databases": databases,
        "data_directory": collect_data_directory(ctx, conn, settings, databases),
        "connections": collect_connections(ctx, conn, settings, server),
        "checkpoints": collect_checkpoints(ctx, conn, major, server),
        "system_identifier": (run(ctx, conn, "pg_control_system", sql.SYSTEM_IDENTIFIER)
                              or [{}])[0].get("system_identifier"),
        "target_dsn": password_free_dsn(conn),
    }
    return data


# What reaches this server again (apply, rollback): never the password, nor our session options.
_DSN_KEYS = ("host", "port", "user", "dbname", "sslmode", "sslrootcert", "sslcert", "sslkey")


def password_free_dsn(conn: psycopg.Connection[Any]) -> str:
    params = conn.info.get_parameters()  # psycopg leaves the password out
    return pg_conninfo.make_conninfo(**{k: v for k, v in params.items() if k in _DSN_KEYS and v})


def parse_settings(rows: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    return {row["name"]: {
        "value": row.get("value"),
        "setting": row.get("setting"),
        "unit": row.get("unit"),
        "base_value": base_value(row.get("setting"), row.get("unit"), row.get("vartype")),
        "source": row.get("source"),
        "sourcefile": row.get("sourcefile"),
        "sourceline": row.get("sourceline"),
        "pending_restart": bool(row.get("pending_restart")),
        "context": row.get("context"),
        "vartype": row.get("vartype"),
    } for row in rows}


def base_value(setting: str | None, unit: str | None, vartype: str | None) -> float | None:
    """Bytes for memory units, milliseconds for time units, the number itself otherwise.

    Negative values (-1 = "use the other setting" / "disabled") are kept as they are, unscaled.
    Strings, enums and booleans give None.
    """
    if setting is None or vartype not in ("integer", "real"):
        return None
    try:
        number = float(setting)
    except ValueError:
        return None
    if number < 0 or not unit:
        return number
    factor = MEMORY_UNITS.get(unit) or TIME_UNITS.get(unit)
    return number * factor if factor is not None else number


def _value(settings: Mapping[str, Mapping[str, Any]], name: str) -> Any:
    return settings.get(name, {}).get("value")


def split_list(text: str | None) -> list[str]:
    return [part.strip().strip('"') for part in (text or "").split(",") if part.strip()]


def collect_file_settings(ctx: CollectContext, conn: psycopg.Connection[dict[str, Any]],
                          server: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """pg_file_settings is superuser-only by default: skip quietly for others (noted once)."""
    if not server.get("is_superuser"):
        ctx.error("pg_file_settings", "needs superuser: the values waiting in configuration files "
                  "(pending restarts) are shown without their new value")
        return None
    return run(ctx, conn, "pg_file_settings", sql.FILE_SETTINGS)


def parse_databases(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    databases = []
    for row in rows:
        hit, read = row.get("blks_hit"), row.get("blks_read")
        row["cache_hit_ratio"] = (hit / (hit + read)) if hit is not None and read and hit + read else None
        if read == 0 and hit:
            row["cache_hit_ratio"] = 1.0
        databases.append(row)
    return databases


def collect_data_directory(ctx: CollectContext, conn: psycopg.Connection[dict[str, Any]],
                           settings: Mapping[str, Mapping[str, Any]],
                           databases: list[dict[str, Any]]) -> dict[str, Any]:
    """The path, and its size: walked on disk when it is this host's, else databases + WAL."""
    path = _value(settings, "data_directory")
    wal = run(ctx, conn, "pg_ls_waldir", sql.WAL_DIRECTORY_BYTES)
    wal_bytes = wal[0]["wal_bytes"] if wal else None
    result: dict[str, Any] = {"path": path, "wal_bytes": wal_bytes, "size_bytes": None, "method": None,
                              "local": False}
    oids = {d.pop("oid", None): d.get("size_bytes") for d in databases}  # the oid stays out of facts
    if path and local_data_directory(Path(path), conn.info.port):
        result["local"] = True
        size = data_directory_size(Path(path), oids, time.monotonic() + ctx.settings.timeout_seconds)
        if size is not None:
            result.update(size_bytes=size, method="filesystem")
            return result
    sizes = [d["size_bytes"] for d in databases if d.get("size_bytes") is not None]
    if sizes:
        result.update(size_bytes=sum(sizes) + (wal_bytes or 0), method="databases+wal")
    return result


def local_data_directory(path: Path, port: int | None) -> bool:
    """True when `path` here is the live server's: its postmaster.pid names the same port.

    postmaster.pid line 4 is the port: https://www.postgresql.org/docs/current/storage-file-layout.html
    """
    try:
        lines = (path / "postmaster.pid").read_text(encoding="utf-8").splitlines()
    except OSError:
        return False
    return len(lines) > 3 and lines[3].strip() == str(port)


def data_directory_size(path: Path, database_bytes: Mapping[Any, int | None], deadline: float) -> int | None:
    """The walk's count of the data directory, without walking base/<oid> again for a database
    whose pg_database_size() the server has just summed (base/ is most of the files: one per
    table, index and fork, 0.1 s of the audit at 8,000 tables).

    pg_database_size() is the sizes of the files in base/<oid> plus the database's directories in
    other tablespaces (calculate_database_size, src/backend/utils/adt/dbsize.c), so it stands for
    base/<oid> only while pg_tblspc is empty; with a tablespace everything is walked.
    """
    if any(True for _ in _entries(path / "pg_tblspc")):
        return directory_size(path, deadline)
    base = path / "base"
    known = {str(base / str(oid)): size for oid, size in database_bytes.items()
             if oid is not None and size is not None}
    return directory_size(path, deadline, known)


def _entries(path: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(path) as entries:
            return list(entries)
    except OSError:
        return []


def directory_size(path: Path, deadline: float, known: Mapping[str, int] | None = None) -> int | None:
    """Bytes of the files under `path` (symbolic links not followed); a directory in `known` counts
    as the size given for it instead of being walked."""
    total = 0
    for root, dirs, files in os.walk(path):
        if time.monotonic() > deadline:
            return None
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                continue
        if known:
            given = [d for d in dirs if os.path.join(root, d) in known
                     and not os.path.islink(os.path.join(root, d))]
            for name in given:
                total += known[os.path.join(root, name)]
                dirs.remove(name)
    return total


def collect_connections(ctx: CollectContext, conn: psycopg.Connection[dict[str, Any]],
                        settings: Mapping[str, Mapping[str, Any]],
                        server: Mapping[str, Any]) -> dict[str, Any]:
    rows = run(ctx, conn, "pg_stat_activity", sql.ACTIVITY) or []
    if not server.get("has_pg_monitor") and not server.get("is_superuser"):
        ctx.error("pg_stat_activity", "needs pg_monitor: other roles' sessions show no state, client "
                  "or query, so idle-in-transaction ages are only known for this role")
    theirs = [r for r in rows if not r.pop("own", False)]
    return {**summarise_activity(theirs, settings), "own_sessions_excluded": len(rows) - len(theirs)}


def summarise_activity(rows: list[dict[str, Any]],
                       settings: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    def count(key: str) -> dict[str, int]:
        return dict(Counter(str(r.get(key) or "(none)") for r in rows).most_common(50))

    idle = [r for r in rows if (r.get("state") or "").startswith("idle in transaction")]
    idle.sort(key=lambda r: r.get("state_age_seconds") or 0, reverse=True)
    max_conn = settings.get("max_connections", {}).get("base_value")
    xact_ages = [r["xact_age_seconds"] for r in rows if r.get("xact_age_seconds") is not None]
    return {
        "total": len(rows),
        "max_connections": int(max_conn) if max_conn is not None else None,
        "by_state": count("state"),
        "by_application": count("application"),
        "by_client": count("client"),
        "by_database": count("database"),
        "by_user": count("user"),
        "longest_transaction_seconds": max(xact_ages, default=None),
        "idle_in_transaction": [
            {"pid": r["pid"], "database": r.get("database"), "user": r.get("user"),
             "application": r.get("application"), "client": r.get("client"), "state": r.get("state"),
             "state_age_seconds": r.get("state_age_seconds"),
             "xact_age_seconds": r.get("xact_age_seconds"), "holds_xid": r.get("holds_xid"),
             "query": mask_query(r.get("query"))}
            for r in idle[:50]
        ],
    }


_PASSWORD_LITERAL = re.compile(r"(password\s*=?\s*)('(?:[^']|'')*'|\"[^\"]*\")", re.IGNORECASE)


def mask_query(text: str | None) -> str | None:
    """Query text as it may be shown: passwords in utility statements (ALTER ROLE ... PASSWORD
    '...') are not normalised by pg_stat_statements before PG16 and show in pg_stat_activity."""
    if text is None:
        return None
    text = _PASSWORD_LITERAL.sub(lambda m: f"{m.group(1)}'***'", text)
    return scrub(text)[:QUERY_TEXT_CHARS]


def collect_checkpoints(ctx: CollectContext, conn: psycopg.Connection[dict[str, Any]], major: int,
                        server: Mapping[str, Any]) -> dict[str, Any]:
    rows = run(ctx, conn, "checkpoint statistics", sql.checkpoints(major))
    result: dict[str, Any] = dict(rows[0]) if rows else {"view": None}
    timed, requested = result.get("checkpoints_timed"), result.get("checkpoints_requested")
    total = (timed or 0) + (requested or 0)
    result["requested_share"] = (requested / total) if total and requested is not None else None
    result["stats_age_seconds"] = seconds_between(result.get("stats_reset"), server.get("collected_at"))
    if major >= 14:
        wal = run(ctx, conn, "pg_stat_wal", sql.WAL_STATS)
        if wal:
            result["wal_bytes"] = wal[0].get("wal_bytes")
            result["wal_stats_reset"] = wal[0].get("stats_reset")
            result["wal_stats_age_seconds"] = seconds_between(wal[0].get("stats_reset"),
                                                              server.get("collected_at"))
    return result


def seconds_between(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


# --- per database ---------------------------------------------------------------------------


def collect_databases(ctx: CollectContext, conn: psycopg.Connection[dict[str, Any]], target: Target,
                      data: dict[str, Any], deadline: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """Tables and indexes of the target database, then of every other one we may connect to, in
    time: one connection per database, opened only where the role has CONNECT. pg_stat_statements
    is read on the first of these connections whose database has the extension (the target's
    first), never through a connection of its own."""
    current = data["current_database"]
    statements: dict[str, Any] = {}
    per_database = {current: visit_database(ctx, conn, data, current, statements)}
    others = [d for d in data["databases"]
              if d.get("allow_connections") and not d.get("is_template") and d["name"] != current]
    for row in others[:MAX_DATABASES]:
        name = row["name"]
        if row.get("can_connect") is False:
            ctx.error(f"database {name}", "not read: this role has no CONNECT privilege on it")
            continue
        if time.monotonic() > deadline:
            ctx.error(f"database {name}", "skipped: the time budget for per-database statistics ran out")
            continue
        try:
            with connect(target.conninfo, ctx.settings.timeout_seconds, target.label, dbname=name) as other:
                per_database[name] = visit_database(ctx, other, data, name, statements)
        except SourceUnavailable as exc:
            ctx.error(f"database {name}", str(exc))
    return per_database, statements


def visit_database(ctx: CollectContext, conn: psycopg.Connection[dict[str, Any]], data: Mapping[str, Any],
                   name: str, statements: dict[str, Any]) -> dict[str, Any]:
    """One database's facts; reads pg_stat_statements here too if it lives here and is not read yet."""
    info = collect_database(ctx, conn, data, name)
    schema = next((e["schema"] for e in info["extensions"] if e["name"] == "pg_stat_statements"), None)
    libraries = data["shared_preload_libraries"]
    preloaded = libraries is None or "pg_stat_statements" in libraries
    if schema is not None and preloaded and "read_from_database" not in statements:
        statements.update(read_statements(ctx, conn, schema, data), read_from_database=name)
    return info


def collect_database(ctx: CollectContext, conn: psycopg.Connection[dict[str, Any]],
                     data: Mapping[str, Any], name: str) -> dict[str, Any]:
    where = f"{name}: "
    major = data["major"]
    tables = run(ctx, conn, where + "pg_stat_user_tables", sql.tables(TABLE_LIMIT))
    indexes = run(ctx, conn, where + "pg_stat_user_indexes", sql.indexes(major, INDEX_LIMIT)) or []
    extensions = run(ctx, conn, where + "pg_extension", sql.EXTENSIONS) or []
    stats = stats_since(ctx, conn, data, name)
    total = tables[0].pop("tables_total") if tables else (0 if tables is not None else None)
    for table in tables or []:
        table.pop("tables_total", None)
    report_locked(ctx, name, tables or [], indexes)
    duplicates = find_duplicate_indexes(indexes)
    add_definitions(ctx, conn, where, indexes, duplicates)
    return {
        "tables_total": total,
        "tables": tables or [],
        "indexes": [public_index(i) for i in indexes],
        "duplicate_indexes": duplicates,
        "invalid_indexes": [public_index(i) for i in indexes if i.get("is_valid") is False],
        "extensions": extensions,
        **stats,
    }


def report_locked(ctx: CollectContext, database: str, tables: list[dict[str, Any]],
                  indexes: list[dict[str, Any]]) -> None:
    """One collection error per locking session, naming what was not sized because it holds
    (or waits for) an ACCESS EXCLUSIVE lock on them: reading their sizes would have waited."""
    locked: dict[Any, list[str]] = {}
    for kind, rows, key in (("table", tables, "table"), ("index", indexes, "index")):
        for row in rows:
            if row.get("locked_by_pid") is not None:
                locked.setdefault(row["locked_by_pid"], []).append(f"{kind} {row['schema']}.{row[key]}")
    for pid, names in sorted(locked.items(), key=lambda item: str(item[0])):
        shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
        ctx.error(f"{database}: relation sizes", f"not read for {shown}: session {pid} holds or waits for "
                  "an ACCESS EXCLUSIVE lock on them, and the audit does not wait for locks (their "
                  "statistics were read; sizes and index definitions are left empty)")


def add_definitions(ctx: CollectContext, conn: psycopg.Connection[dict[str, Any]], where: str,
                    indexes: list[dict[str, Any]], duplicates: list[dict[str, Any]]) -> None:
    """The definitions a finding may show, in one statement: both sides of each duplicate, and the
    largest never-scanned indexes (DEFINED_UNUSED; PG301 shows 20 per database). Not of an index
    under an ACCESS EXCLUSIVE lock: pg_get_indexdef would wait for it."""
    by_name = {(i["schema"], i["table"], i["index"]): i for i in indexes}
    pairs = [(d, by_name[(d["schema"], d["table"], d["index"])],
              by_name[(d["schema"], d["table"], d["covered_by"])]) for d in duplicates]
    unused = sorted((i for i in indexes if never_scanned(i)), key=lambda i: i.get("size_bytes") or 0,
                    reverse=True)[:DEFINED_UNUSED]
    sides = [x for _, index, cover in pairs for x in (index, cover)]
    wanted = {id(x): x for x in unused + sides if x.get("oid") is not None and x.get("locked_by_pid") is None}
    if wanted:
        oids = sorted(int(x["oid"]) for x in wanted.values())
        found = {r["oid"]: r["definition"] for r in run(ctx, conn, where + "index definitions",
                                                         sql.INDEX_DEFINITIONS, (oids,)) or []}
        for index in wanted.values():
            index["definition"] = found.get(index["oid"])
    for duplicate, index, cover in pairs:
        duplicate["definition"] = index.get("definition")
        duplicate["covered_by_definition"] = cover.get("definition")


def public_index(index: Mapping[str, Any]) -> dict[str, Any]:
    """The index as facts show it (catalog internals used for duplicate detection left out)."""
    hidden = {"column_numbers", "opclasses", "collations", "options", "key_columns", "oid"}
    backs = bool(index.get("constraint_type")) or bool(index.get("is_primary"))
    return {**{k: v for k, v in index.items() if k not in hidden}, "backs_constraint": backs}


def stats_since(ctx: CollectContext, conn: psycopg.Connection[dict[str, Any]], data: Mapping[str, Any],
                name: str) -> dict[str, Any]:
    """Since when the cumulative statistics of this database run, and how we know.

    stats_reset is NULL until someone resets them; then the database's creation (superuser only)
    or, failing that, the server start is the best estimate. Per-index counters have no reset time
    of their own (not even in PG18): a database-wide reset is what resets them.
    """
    row: dict[str, Any] = next((d for d in data["databases"] if d["name"] == name), {})
    since, basis = row.get("stats_reset"), "stats_reset"
    if since is None and data.get("is_superuser"):
        created = run(ctx, conn, f"{name}: database creation time", sql.DATABASE_CREATED)
        since, basis = (created[0]["created"] if created else None), "database_created"
    if since is None:
        since, basis = data.get("postmaster_start_time"), "server_start"
    return {"stats_reset": row.get("stats_reset"), "stats_since": since, "stats_since_basis": basis,
            "stats_age_seconds": seconds_between(since, data.get("collected_at")),
            "index_stats_note": "pg_stat_user_indexes has no reset time of its own (PG13-18): its counters "
                                "run since the database's stats_since unless a single table was reset "
                                "with pg_stat_reset_single_table_counters"}


def find_duplicate_indexes(indexes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Indexes made redundant by another on the same table.

    Identical: same method, key columns (or expressions), opclasses, collations, sort options,
    INCLUDE columns and predicate. Prefix: a btree whose keys are a left prefix of another btree's
    keys with the same opclasses; a unique index is never redundant to a wider one (it enforces
    something the wider one does not), nor is an index that backs a constraint.
    """
    by_table: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for index in indexes:
        if (index.get("is_valid") is not False and index.get("column_numbers") is not None
                and index.get("locked_by_pid") is None):  # a locked one's expressions were not read
            by_table.setdefault((index["schema"], index["table"]), []).append(index)
    found = []
    for group in by_table.values():
        for index in group:
            cover = next((other for other in group if other is not index and covers(other, index)), None)
            if cover is not None:
                found.append({
                    "schema": index["schema"], "table": index["table"], "index": index["index"],
                    "covered_by": cover["index"],
                    "kind": "identical" if same_keys(index, cover) else "prefix",
                    "size_bytes": index.get("size_bytes"), "idx_scan": index.get("idx_scan"),
                    "definition": index.get("definition"), "covered_by_definition": cover.get("definition"),
                })
    return found


def _keys(index: Mapping[str, Any]) -> tuple[list[Any], list[Any], list[Any], list[Any], list[Any]]:
    n = index.get("key_columns") or len(index["column_numbers"])
    cols = list(index["column_numbers"])
    return (cols[:n], list(index.get("opclasses") or [])[:n], list(index.get("collations") or [])[:n],
            list(index.get("options") or [])[:n], cols[n:])


def same_keys(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return _keys(a) == _keys(b) and a.get("expressions") == b.get("expressions")


def _is_protected(index: Mapping[str, Any]) -> bool:
    return bool(index.get("is_primary") or index.get("constraint_type") or index.get("is_unique"))


def covers(big: Mapping[str, Any], small: Mapping[str, Any]) -> bool:
    """True when `small` is redundant given `big` (never both ways for identical indexes)."""
    if big.get("method") != small.get("method") or big.get("predicate") != small.get("predicate"):
        return False
    if same_keys(small, big):
        return _identical_loser(small, big)
    if _is_protected(small) or small.get("method") != "btree" or small.get("expressions"):
        return False
    s_cols, s_ops, s_coll, s_opt, s_incl = _keys(small)
    b_cols, b_ops, b_coll, b_opt, _ = _keys(big)
    n = len(s_cols)
    return (not s_incl and 0 not in s_cols and n < len(b_cols) and b_cols[:n] == s_cols
            and b_ops[:n] == s_ops and b_coll[:n] == s_coll and b_opt[:n] == s_opt)


def _identical_loser(small: Mapping[str, Any], big: Mapping[str, Any]) -> bool:
    """Of two identical indexes, the one to drop: never a constraint's; unique beats non-unique."""
    def rank(index: Mapping[str, Any]) -> tuple[int, int, int]:
        return (int(bool(index.get("is_primary") or index.get("constraint_type"))),
                int(bool(index.get("is_unique"))), 0)

    if rank(small) != rank(big):
        return rank(small) < rank(big)
    if rank(small)[0]:
        return False  # both back constraints: dropping either means dropping a constraint
    return str(small["index"]) > str(big["index"])


# --- pg_stat_statements ----------------------------------------------------------------------


def collect_statements(ctx: CollectContext, conn: psycopg.Connection[dict[str, Any]],
                       data: Mapping[str, Any], read: Mapping[str, Any]) -> dict[str, Any]:
    """What is known about pg_stat_statements, with the rows `visit_database` read (if any)."""
    installed_in = sorted(db for db, info in data["per_database"].items()
                          if any(e["name"] == "pg_stat_statements" for e in info.get("extensions", [])))
    available = run(ctx, conn, "pg_available_extensions", sql.EXTENSION_AVAILABLE)
    libraries = data["shared_preload_libraries"]
    result: dict[str, Any] = {
        "available": bool(available and available[0]["available"]),
        "preloaded": None if libraries is None else "pg_stat_statements" in libraries,
        "installed_in": installed_in,
        "track_planning": _value(data["settings"], "pg_stat_statements.track_planning") == "on",
        "track": _value(data["settings"], "pg_stat_statements.track"),
        "installed": False,
        "top": [],
    }
    if result["preloaded"] is False or not installed_in:
        return result
    return {**result, **read}


def read_statements(ctx: CollectContext, conn: psycopg.Connection[dict[str, Any]], schema: str,
                    data: Mapping[str, Any]) -> dict[str, Any]:
    columns = {r["attname"] for r in run(ctx, conn, "pg_stat_statements columns", sql.STATEMENTS_COLUMNS,
                                           (f'"{schema}".pg_stat_statements',)) or []}
    if not columns:
        return {}
    try:
        conn.execute(f'SELECT {sql.TAG} 1 FROM "{schema}".pg_stat_statements LIMIT 1')
    except psycopg.errors.ObjectNotInPrerequisiteState:
        return {"preloaded": False}  # created but not loaded: "must be loaded via shared_preload_libraries"
    except psycopg.Error as exc:
        ctx.error("pg_stat_statements", _one_line(exc))
        return {}
    totals = run(ctx, conn, "pg_stat_statements totals", sql.statements_totals(schema, columns))
    rows = run(ctx, conn, "pg_stat_statements", sql.statements(schema, columns, STATEMENT_LIMIT))
    if rows is None:
        return {}
    result: dict[str, Any] = {"installed": True, "preloaded": True, "exec_time_column": "total_exec_time"
                              if "total_exec_time" in columns else "total_time"}
    if totals:
        result["totals"] = totals[0]
    total_ms = (totals[0]["total_exec_ms"] if totals else 0) or 0
    plan_on = _value(data["settings"], "pg_stat_statements.track_planning") == "on"
    hidden = 0
    for row in rows:
        if row["query"] == "<insufficient privilege>":
            hidden += 1
        row["query"] = mask_query(row["query"])
        row["share_of_total_exec"] = row["total_exec_ms"] / total_ms if total_ms else None
        if not plan_on:
            row["total_plan_ms"] = row["mean_plan_ms"] = None
    if hidden:
        ctx.error("pg_stat_statements", f"needs pg_monitor (or pg_read_all_stats): the text of {hidden} "
                  "statements of other roles is hidden; their timings are still counted")
    result["top"] = rows
    if data["major"] >= 14 and "toplevel" in columns:
        info = run(ctx, conn, "pg_stat_statements_info", sql.statements_info(schema))
        if info:
            result["stats_reset"] = info[0]["stats_reset"]
            result["dealloc"] = info[0]["dealloc"]
            result["stats_age_seconds"] = seconds_between(info[0]["stats_reset"], data.get("collected_at"))
    return result


# --- where it runs, summary -----------------------------------------------------------------


def runs_in(docker: Mapping[str, Any], target: Target, data: Mapping[str, Any]) -> dict[str, Any]:
    """container (matched in the docker facts) | host (its data directory is here) | unknown."""
    port = _target_port(target)
    for container in docker.get("containers", []):
        same_service = (target.service is not None and container.get("compose_service") == target.service
                        and container.get("compose_project") == target.project)
        publishes = port is not None and any(str(p.get("host_port")) == str(port)
                                             for p in container.get("ports") or [])
        if same_service or publishes:
            return {"kind": "container", "container": container.get("name"),
                    "service": container.get("compose_service"), "project": container.get("compose_project"),
                    "memory_limit_bytes": container.get("memory_limit_bytes")}
    if target.service is not None:
        return {"kind": "container", "container": None, "service": target.service, "project": target.project}
    if data.get("data_directory", {}).get("local"):
        return {"kind": "host", "container": None, "service": None, "project": None}
    return {"kind": "unknown", "container": None, "service": None, "project": None}


def _target_port(target: Target) -> str | None:
    try:
        port = pg_conninfo.conninfo_to_dict(target.conninfo).get("port")
    except psycopg.ProgrammingError:
        return None
    return str(port) if port else (os.environ.get("PGPORT") or "5432")


def summarise(data: Mapping[str, Any]) -> dict[str, Any]:
    databases = data.get("databases", [])
    per_db = data.get("per_database", {})
    hits = sum(d.get("blks_hit") or 0 for d in databases)
    reads = sum(d.get("blks_read") or 0 for d in databases)
    indexes = [i for info in per_db.values() for i in info.get("indexes", [])]
    return {
        "version": data.get("server_version"),
        "target": data.get("target"),
        "runs_in": data.get("runs_in", {}).get("kind"),
        "databases": len([d for d in databases if not d.get("is_template")]),
        "database_bytes": sum(d.get("size_bytes") or 0 for d in databases),
        "data_directory_bytes": data.get("data_directory", {}).get("size_bytes"),
        "connections": data.get("connections", {}).get("total"),
        "max_connections": data.get("connections", {}).get("max_connections"),
        "idle_in_transaction": len(data.get("connections", {}).get("idle_in_transaction", [])),
        "cache_hit_ratio": round(hits / (hits + reads), 4) if hits + reads else None,
        "temp_bytes": sum(d.get("temp_bytes") or 0 for d in databases),
        "max_xid_age": max((d.get("xid_age") or 0 for d in databases), default=None),
        "requested_checkpoint_share": data.get("checkpoints", {}).get("requested_share"),
        "unused_indexes": sum(1 for i in indexes if i.get("idx_scan") == 0 and not i["backs_constraint"]
                              and not i.get("is_unique")),
        "duplicate_indexes": sum(len(info.get("duplicate_indexes", [])) for info in per_db.values()),
        "invalid_indexes": sum(len(info.get("invalid_indexes", [])) for info in per_db.values()),
        "pg_stat_statements": bool(data.get("statements", {}).get("installed")),
        "pending_restart": sorted(n for n, s in data.get("settings", {}).items() if s.get("pending_restart")),
    }
