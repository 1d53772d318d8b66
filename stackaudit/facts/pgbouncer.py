"""Live PgBouncer facts from its admin console: SHOW POOLS, STATS, CONFIG, DATABASES, VERSION.

The target is `--pgbouncer DSN` (STACKAUDIT_PGBOUNCER_DSN, `[targets] pgbouncer`), else each
PgBouncer service of the compose stack (facts.pooler recognises them): its published port on
loopback or its container address, logging in with the users the stack gives it (the image's
DB_USER / POSTGRESQL_USERNAME, the apps' DATABASE_URL) until one is an admin or stats user.

The console is the virtual database "pgbouncer"; it speaks only the simple query protocol, so
queries go through a ClientCursor without parameters (psycopg docs, "Simple query protocol"), in
autocommit, with libpq's connect_timeout for the login and a watchdog that shuts the socket when a
SHOW does not answer in time. It accepts no `options` startup parameter, so none is sent
(pgbouncer.org/usage.html, "Admin console"). Passwords stay in this module; facts hold labels.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import unquote, urlsplit

import psycopg
from psycopg import conninfo as pg_conninfo
from psycopg.rows import dict_row

from stackaudit.facts import CollectContext, SourceUnavailable
from stackaudit.facts.pooler import PGBOUNCER_DEFAULTS, URL_VARIABLES, is_pgbouncer
from stackaudit.facts.postgres import classify_connection_error, container_ips
from stackaudit.network import local_address
from stackaudit.redact import dsn_password, redact_dsn, remember, scrub

ADMIN_DATABASE = "pgbouncer"
EXAMPLE_DSN = "postgresql://USER@HOST:6432/pgbouncer (the password in it, PGPASSWORD or .pgpass)"
MAX_LOGIN_ATTEMPTS = 3  # per service: each refused login is a line in PgBouncer's log
# SHOW CONFIG keys kept in the facts: the ones that size pools and bound clients (never auth_*).
CONFIG_KEYS = ("pool_mode", "default_pool_size", "min_pool_size", "reserve_pool_size",
               "reserve_pool_timeout", "max_client_conn", "max_db_connections", "max_user_connections",
               "query_wait_timeout", "server_idle_timeout", "server_lifetime", "listen_port")
POOL_COLUMNS = ("cl_active", "cl_waiting", "sv_active", "sv_idle", "sv_used", "sv_tested", "sv_login")
SERVER_STATES = ("sv_active", "sv_idle", "sv_used", "sv_tested", "sv_login")
DATABASE_COLUMNS = ("host", "port", "database", "force_user", "pool_size", "min_pool_size",
                    "reserve_pool", "pool_mode", "max_connections", "current_connections", "paused",
                    "disabled")
# SHOW STATS: times are in microseconds (pgbouncer.org/usage.html, "SHOW STATS").
STATS_COLUMNS = ("total_xact_count", "total_query_count", "total_wait_time", "avg_wait_time",
                 "avg_xact_time", "avg_query_time")
# Where the common images take the user their entrypoint writes into the auth file.
IMAGE_USERS = (("DB_USER", "DB_PASSWORD"), ("POSTGRESQL_USERNAME", "POSTGRESQL_PASSWORD"),
               ("PGBOUNCER_AUTH_USER", "PGBOUNCER_AUTH_PASSWORD"))


@dataclass
class Target:
    """One PgBouncer: the logins to try (conninfo strings, passwords in-process only)."""

    logins: list[str]
    label: str  # host:port, no user or password
    origin: str  # "--pgbouncer" | "compose"
    project: str | None = None
    service: str | None = None
    users: list[str] = field(default_factory=list)  # tried, for the message


class Refused(Exception):
    """The console refused this login (wrong password, not an admin/stats user)."""


def collect(ctx: CollectContext) -> dict[str, Any]:
    targets = find_targets(ctx)
    if len(targets) == 1:
        instances = [read_target(ctx, targets[0])]  # its reason is the source's reason
    else:
        instances = []
        for target in targets:
            try:
                instances.append(read_target(ctx, target))
            except SourceUnavailable as exc:
                ctx.error(where_of(target), str(exc))
        if not instances:
            raise SourceUnavailable("no PgBouncer could be read (see the errors above)")
    return {"instances": instances, "summary": summarise(instances)}


# --- finding targets ----------------------------------------------------------------------------


def find_targets(ctx: CollectContext) -> list[Target]:
    if ctx.settings.pgbouncer_dsn:
        dsn = ctx.settings.pgbouncer_dsn
        redact_dsn(dsn)  # remembers the password for scrub()
        remember(dsn_password(dsn), "pgbouncer:--pgbouncer")
        try:
            pg_conninfo.conninfo_to_dict(dsn)
        except psycopg.ProgrammingError as exc:
            raise SourceUnavailable(f"--pgbouncer is not a connection string ({scrub(str(exc).strip())}): "
                                    f"give {EXAMPLE_DSN}") from None
        return [Target([dsn], describe(dsn), "--pgbouncer")]
    errors_before = len(ctx.facts.errors)
    targets = list(compose_targets(ctx))
    if not targets and len(ctx.facts.errors) > errors_before:  # services found, none reachable
        raise SourceUnavailable("the stack's PgBouncer cannot be reached (see above): give --pgbouncer DSN")
    if not targets:
        raise SourceUnavailable("no PgBouncer target: give --pgbouncer DSN (or STACKAUDIT_PGBOUNCER_DSN), "
                                "or audit a compose project with a pgbouncer service")
    return targets


def describe(dsn: str) -> str:
    try:
        params = pg_conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return redact_dsn(dsn)
    if params.get("password"):
        remember(str(params["password"]))
    port = params.get("port") or PGBOUNCER_DEFAULTS["listen_port"]
    return f"{params.get('host') or '(local socket)'}:{port}"


def compose_targets(ctx: CollectContext) -> Iterator[Target]:
    poolers = ctx.facts.get("app").get("poolers") or []
    for project in ctx.facts.get("compose").get("projects") or []:
        name = str(project.get("name") or "")
        services: Mapping[str, Any] = project.get("services") or {}
        envs: Mapping[str, Any] = ctx.private.get("compose_env", {}).get(name, {})
        for service_name, service in services.items():
            if not is_pgbouncer(service, _argv(service)):
                continue
            port = _listen_port(poolers, name, service_name)
            address = _address(ctx, name, service_name, service, port)
            if address is None:
                ctx.error(f"pgbouncer {name}/{service_name}", "no published port and no running "
                          "container: not read (give --pgbouncer DSN)")
                continue
            users = login_candidates(envs.get(service_name) or service.get("environment") or {},
                                     envs, service_name)
            logins = [pg_conninfo.make_conninfo(host=address[0], port=address[1], user=u, password=p)
                      for u, p in users]
            for _, password in users:
                if password:
                    remember(password)
            yield Target(logins, f"{address[0]}:{address[1]}", "compose", name, service_name,
                         [u for u, _ in users])


def _argv(service: Mapping[str, Any]) -> list[str]:
    words: list[str] = []
    for key in ("entrypoint", "command"):
        value = service.get(key)
        words += value.split() if isinstance(value, str) else [str(w) for w in value or []]
    return words


def _listen_port(poolers: Sequence[Mapping[str, Any]], project: str, service: str) -> int:
    for pooler in poolers:
        if pooler.get("project") == project and pooler.get("service") == service:
            port = pooler.get("listen_port")
            if isinstance(port, int):
                return port
    return int(PGBOUNCER_DEFAULTS["listen_port"])


def _address(ctx: CollectContext, project: str, name: str, service: Mapping[str, Any],
             port: int) -> tuple[str, int] | None:
    """The published port on loopback (or all interfaces), else the running container's IP."""
    for published in service.get("ports") or []:
        if str(published.get("target")) != str(port) or not published.get("published"):
            continue
        try:
            return (local_address(published.get("host_ip")),
                    int(str(published["published"]).split("-")[0]))
        except ValueError:
            continue
    for container in ctx.facts.get("docker").get("containers") or []:
        if container.get("compose_project") == project and container.get("compose_service") == name:
            for ip in container_ips(container):
                return ip, port
    return None


def login_candidates(service_env: Mapping[str, Any], project_env: Mapping[str, Any],
                     service: str) -> list[tuple[str, str | None]]:
    """(user, password) pairs to try, the image's own user first, then the apps' URLs to it."""
    found: list[tuple[str, str | None]] = []
    for user_var, password_var in IMAGE_USERS:
        if service_env.get(user_var):
            found.append((str(service_env[user_var]), _text(service_env.get(password_var))))
    for env in project_env.values():
        for variable in URL_VARIABLES:
            url = str((env or {}).get(variable) or "")
            if "://" not in url:
                continue
            parts = urlsplit(url)
            if parts.hostname == service and parts.username:
                found.append((unquote(parts.username), unquote(parts.password) if parts.password else None))
    unique = list(dict.fromkeys(found))
    return unique[:MAX_LOGIN_ATTEMPTS] or [("pgbouncer", None)]


def _text(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


# --- reading one PgBouncer ----------------------------------------------------------------------


def where_of(target: Target) -> str:
    return f"pgbouncer {target.project}/{target.service}" if target.service else f"pgbouncer {target.label}"


def read_target(ctx: CollectContext, target: Target) -> dict[str, Any]:
    """The console's facts, trying each login in turn; SourceUnavailable says why not."""
    where = where_of(target)
    refused: list[str] = []
    for login in target.logins:
        try:
            with connect(login, ctx.settings.timeout_seconds, target.label) as conn:
                return read_console(ctx, conn, target, where)
        except Refused as exc:
            refused.append(str(exc))
    users = f" as {', '.join(target.users)}" if target.users else ""
    raise SourceUnavailable(
        f"the PgBouncer admin console at {target.label} refused the login{users} ({refused[-1]}): give "
        f"--pgbouncer {EXAMPLE_DSN} with a user in its admin_users or stats_users")


def connect(conninfo: str, timeout_seconds: float, label: str) -> psycopg.Connection[dict[str, Any]]:
    """An autocommit session on the console; Refused for a refused login, else SourceUnavailable."""
    try:
        return psycopg.connect(conninfo, dbname=ADMIN_DATABASE, connect_timeout=max(1, int(timeout_seconds)),
                               application_name="stackaudit", autocommit=True, row_factory=dict_row,
                               cursor_factory=psycopg.ClientCursor)
    except psycopg.Error as exc:
        # str(), never repr(): the repr holds the connection string with its password.
        text = str(exc).strip()
        detail = scrub(redact_dsn(text.splitlines()[0] if text else exc.__class__.__name__))
        lowered = text.lower()
        if any(n in lowered for n in ("password authentication failed", "not allowed", "no such user",
                                      "no password supplied", "sasl authentication failed")):
            raise Refused(detail) from None
        reason = classify_connection_error(text)
        raise SourceUnavailable(f"PgBouncer at {label}: {reason} ({detail})") from None


def show(ctx: CollectContext, conn: psycopg.Connection[dict[str, Any]], where: str,
         command: str) -> list[dict[str, Any]] | None:
    """The rows of one SHOW, or None after recording why; the socket is shut if it hangs."""
    watchdog = threading.Timer(ctx.settings.timeout_seconds, _shut, (conn,))
    watchdog.start()
    try:
        rows = conn.execute(command).fetchall()
    except psycopg.Error as exc:
        if conn.closed or conn.broken:
            raise SourceUnavailable(f"PgBouncer did not answer {command} within "
                                    f"{ctx.settings.timeout_seconds:g}s") from None
        ctx.error(f"{where} {command}", scrub(str(exc).strip().splitlines()[0] if str(exc).strip()
                                              else exc.__class__.__name__))
        return None
    finally:
        watchdog.cancel()
    return [{k: _plain(v) for k, v in row.items()} for row in rows]


def _shut(conn: psycopg.Connection[dict[str, Any]]) -> None:
    """Shut the connection's socket, so a blocked read returns at once with an error."""
    try:
        sock = socket.socket(fileno=conn.pgconn.socket)
    except (OSError, psycopg.Error):
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    finally:
        sock.detach()  # the descriptor is libpq's: shut it, never close it here


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def read_console(ctx: CollectContext, conn: psycopg.Connection[dict[str, Any]], target: Target,
                 where: str) -> dict[str, Any]:
    try:
        version_rows = show(ctx, conn, where, "SHOW VERSION") or []
        config_rows = show(ctx, conn, where, "SHOW CONFIG") or []
        database_rows = show(ctx, conn, where, "SHOW DATABASES") or []
        pool_rows = show(ctx, conn, where, "SHOW POOLS") or []
        stats_rows = show(ctx, conn, where, "SHOW STATS") or []
    except SourceUnavailable as exc:
        raise SourceUnavailable(f"{where}: {exc}") from None
    pools = parse_pools(pool_rows)
    return {
        "target": target.label, "origin": target.origin, "project": target.project,
        "service": target.service, "version": parse_version(version_rows),
        "config": parse_config(config_rows), "databases": parse_databases(database_rows),
        "pools": pools, "stats": parse_stats(stats_rows),
        "server_connections": sum(sum(int(p.get(s) or 0) for s in SERVER_STATES) for p in pools),
        "clients_waiting": sum(int(p.get("cl_waiting") or 0) for p in pools),
    }


# --- parsing (pure, tested on recorded rows) ----------------------------------------------------


def parse_version(rows: Sequence[Mapping[str, Any]]) -> str | None:
    """'PgBouncer 1.18.0' -> '1.18.0'."""
    text = str(rows[0].get("version") or "") if rows else ""
    return text.split()[-1] if text else None


def parse_config(rows: Sequence[Mapping[str, Any]]) -> dict[str, int | str | None]:
    config: dict[str, int | str | None] = {}
    for row in rows:
        key = str(row.get("key") or "")
        if key in CONFIG_KEYS:
            value = row.get("value")
            config[key] = int(value) if isinstance(value, str) and value.isdigit() else value
    return config


def parse_databases(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The pooled databases (the console's own excluded), sizes as PgBouncer applies them."""
    return [{"name": r.get("name"), **{c: r.get(c) for c in DATABASE_COLUMNS}}
            for r in rows if r.get("name") != ADMIN_DATABASE]


def parse_pools(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    pools = []
    for row in rows:
        if row.get("database") == ADMIN_DATABASE:
            continue
        # maxwait is whole seconds and maxwait_us the microseconds beside them (1.8+).
        maxwait = float(row.get("maxwait") or 0) + float(row.get("maxwait_us") or 0) / 1e6
        pools.append({"database": row.get("database"), "user": row.get("user"),
                      **{c: int(row.get(c) or 0) for c in POOL_COLUMNS},
                      "maxwait_seconds": round(maxwait, 6), "pool_mode": row.get("pool_mode")})
    return pools


def parse_stats(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [{"database": r.get("database"),
             **{(f"{c}_us" if c.endswith("_time") else c): r.get(c) for c in STATS_COLUMNS}}
            for r in rows if r.get("database") != ADMIN_DATABASE]


def summarise(instances: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    return {
        str(inst.get("service") or inst.get("target")): {
            "version": inst.get("version"), "pool_mode": (inst.get("config") or {}).get("pool_mode"),
            "databases": len(inst.get("databases") or []), "pools": len(inst.get("pools") or []),
            "server_connections": inst.get("server_connections"),
            "clients_waiting": inst.get("clients_waiting"),
        }
        for inst in instances
    }
