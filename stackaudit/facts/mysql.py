"""MariaDB / MySQL facts: variables with their origin, status over a short window, statement digests,
unused and redundant indexes, buffer pool, redo, temp tables, table cache, connections, binary logs,
accounts and data size.

Targets, first found wins: `--mysql URL` (mysql://user:pass@host:port/db?unix_socket=/path), the
compose stack (a mariadb/mysql/percona service: its published port or container address, with the
credentials of its MARIADB_*/MYSQL_* variables or of an app's `mysql://` DATABASE_URL), a local
server's socket, or the [client] section of ~/.my.cnf. Read with PyMySQL (pure Python) with connect
and read timeouts. Passwords stay in this module: targets are shown without them.

Versions differ (MariaDB 10.6/10.11/11.x, MySQL 8.0/8.4): MariaDB says where a variable comes from
in information_schema.SYSTEM_VARIABLES.GLOBAL_VALUE_ORIGIN, MySQL in
performance_schema.variables_info.VARIABLE_SOURCE; MySQL 8.0.30+ sizes redo by
innodb_redo_log_capacity, MariaDB and older MySQL by innodb_log_file_size x innodb_log_files_in_group.
"""

from __future__ import annotations

import configparser
import os
import re
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from stackaudit import pacing
from stackaudit.facts import CollectContext, SourceUnavailable
from stackaudit.facts.phpfpm import php_fpm_clients
from stackaudit.facts.postgres import container_ips
from stackaudit.images import service_product
from stackaudit.mysqlconn import (
    MYSQL_PORT,
    SYSTEM_SCHEMAS,
    MysqlUrlError,
    Target,
    connect,
    connection_error,
    parse_url,
)
from stackaudit.redact import remember

LOCAL_SOCKETS = ("/run/mysqld/mysqld.sock", "/var/run/mysqld/mysqld.sock", "/tmp/mysql.sock")
STATUS_WINDOW_SECONDS = 2.0  # short: the audit waits this long; rates over uptime are kept too
DIGEST_LIMIT = 25
# Status counters whose change over the window is kept (per second).
RATE_COUNTERS = (
    "Innodb_os_log_written", "Innodb_data_written", "Innodb_buffer_pool_reads",
    "Innodb_buffer_pool_read_requests", "Innodb_buffer_pool_pages_flushed", "Created_tmp_disk_tables",
    "Created_tmp_tables", "Opened_tables", "Table_open_cache_misses", "Table_open_cache_hits",
    "Questions", "Com_select", "Com_insert", "Com_update", "Com_delete", "Connections",
    "Aborted_connects", "Aborted_clients", "Innodb_rows_inserted", "Innodb_rows_updated",
    "Innodb_rows_deleted", "Innodb_rows_read",
)


# ---------------------------------------------------------------------------------------------
# discovery


def discover(ctx: CollectContext, home: Path | None = None) -> list[Target]:
    if ctx.settings.mysql_url:
        try:
            target = parse_url(ctx.settings.mysql_url)
        except MysqlUrlError as exc:
            raise SourceUnavailable(str(exc)) from None
        remember(target.password, "mysql:--mysql")
        target.project, target.service = _service_for_port(ctx, target.port)
        return [target]
    stack = list(stack_targets(ctx))
    if stack:
        return stack
    local = [Target(host=None, unix_socket=str(path), discovered_from="local socket")
             for path in LOCAL_SOCKETS if Path(path).exists()]
    return local[:1] or list(my_cnf_targets(home or Path.home()))


def is_mysql_service(service: Mapping[str, Any]) -> bool:
    """MariaDB, MySQL or Percona, as the one service classifier (images.py) decides it."""
    return service_product(service) == "mysql"


def stack_targets(ctx: CollectContext) -> Iterator[Target]:
    """One target per mariadb/mysql/percona service that publishes its port or runs in a container."""
    private = ctx.private.get("compose_env", {})
    for project in ctx.facts.get("compose").get("projects") or []:
        name = str(project.get("name"))
        services = project.get("services") or {}
        project_env: Mapping[str, Any] = private.get(name, {})
        for service_name, service in services.items():
            if not is_mysql_service(service):
                continue
            address = _service_address(ctx, name, service_name, service)
            if address is None:
                continue
            env = project_env.get(service_name) or service.get("environment") or {}
            user, password, database = service_credentials(env, _app_url(project_env, service_name))
            remember(password)
            yield Target(address[0], address[1], user, password, database, None, "compose", name,
                         service_name)


def service_credentials(env: Mapping[str, Any], app_url: Target | None) -> tuple[str, str | None, str | None]:
    """root with MARIADB_ROOT_PASSWORD / MYSQL_ROOT_PASSWORD (the images' documented variables), else
    the app's URL, else MYSQL_USER / MYSQL_PASSWORD."""
    database = env.get("MARIADB_DATABASE") or env.get("MYSQL_DATABASE")
    root = env.get("MARIADB_ROOT_PASSWORD") or env.get("MYSQL_ROOT_PASSWORD")
    if root:
        return "root", str(root), database
    if app_url is not None:
        return app_url.user, app_url.password, app_url.database or database
    user = env.get("MARIADB_USER") or env.get("MYSQL_USER")
    password = env.get("MARIADB_PASSWORD") or env.get("MYSQL_PASSWORD")
    return str(user or "root"), (str(password) if password else None), database


def _app_url(project_env: Mapping[str, Any], db_service: str) -> Target | None:
    for env in project_env.values():
        for key in ("DATABASE_URL", "MYSQL_URL", "DB_URL"):
            url = str((env or {}).get(key) or "")
            if url.startswith(("mysql://", "mysql2://", "mariadb://", "mysql+pymysql://")):
                try:
                    target = parse_url(url.replace("mysql2://", "mysql://", 1))
                except MysqlUrlError:
                    continue
                if target.host == db_service:
                    return target
    return None


def _service_address(ctx: CollectContext, project: str, name: str,
                     service: Mapping[str, Any]) -> tuple[str, int] | None:
    for port in service.get("ports") or []:
        if str(port.get("target")) == str(MYSQL_PORT) and port.get("published"):
            try:
                return "127.0.0.1", int(str(port["published"]).split("-")[0])
            except ValueError:
                continue
    for container in ctx.facts.get("docker").get("containers") or []:
        if container.get("compose_project") == project and container.get("compose_service") == name:
            for ip in container_ips(container):
                return ip, MYSQL_PORT
    return None


def _service_for_port(ctx: CollectContext, port: int) -> tuple[str | None, str | None]:
    for project in ctx.facts.get("compose").get("projects") or []:
        for name, service in (project.get("services") or {}).items():
            if is_mysql_service(service) and any(str(p.get("published")) == str(port)
                                                 for p in service.get("ports") or []):
                return str(project.get("name")), str(name)
    return None, None


def my_cnf_targets(home: Path) -> Iterator[Target]:
    """The [client] (or [mysql]) section of ~/.my.cnf, as the mysql client reads it."""
    path = home / ".my.cnf"
    if not path.is_file():
        return
    parser = configparser.ConfigParser(allow_no_value=True, interpolation=None, strict=False)
    try:
        parser.read_string(path.read_text(encoding="utf-8", errors="replace"))
    except (OSError, configparser.Error):
        return
    for section in ("client", "mysql", "mariadb-client"):
        if not parser.has_section(section):
            continue
        values = parser[section]
        password = (values.get("password") or "").strip("'\"") or None
        remember(password)
        port = str(values.get("port") or "")
        user = values.get("user") or os.environ.get("USER", "root")
        yield Target(values.get("host") or "127.0.0.1", int(port) if port.isdigit() else MYSQL_PORT, user,
                     password, values.get("database"), values.get("socket"), str(path))
        return


# ---------------------------------------------------------------------------------------------
# reading one server


def collect(ctx: CollectContext) -> dict[str, Any]:
    targets = discover(ctx)
    if not targets:
        raise SourceUnavailable("no MariaDB/MySQL found: give --mysql URL, or a compose project with a "
                                "mariadb/mysql service, a local server socket or ~/.my.cnf")
    instances = [inst for t in targets if (inst := read_instance(ctx, t)) is not None]
    if not instances:
        raise SourceUnavailable("no MariaDB/MySQL server could be read (see the errors)")
    clients = php_fpm_clients(ctx.facts.get("compose"), ctx.error)
    projects = {str(p.get("name")) for p in ctx.facts.get("compose").get("projects") or []}
    for instance in instances:
        project = instance.get("project") or (next(iter(projects)) if len(projects) == 1 else None)
        instance["php_fpm_clients"] = [c for c in clients if c["project"] == project]
    return {"instances": instances, "php_fpm": clients, "summary": summary(instances)}


def summary(instances: list[dict[str, Any]]) -> dict[str, Any]:
    """The numbers a reader sees first (report facts), per server."""
    return {"servers": [{
        "target": i["target"], "version": i["version"], "uptime_seconds": i["uptime_seconds"],
        "innodb_buffer_pool_size": i["variables"].get("innodb_buffer_pool_size"),
        "max_connections": i["variables"].get("max_connections"),
        "max_used_connections": i["derived"]["max_used_connections"],
        "buffer_pool_hit_ratio": i["derived"]["buffer_pool_hit_ratio"],
        "data_bytes": i["data_bytes"], "performance_schema": i["performance_schema"],
    } for i in instances]}


def read_instance(ctx: CollectContext, target: Target, window_seconds: float = STATUS_WINDOW_SECONDS
                  ) -> dict[str, Any] | None:
    import pymysql  # lazy: start-up (the driver only once there is a server to read)

    try:
        conn = connect(target, ctx.settings.timeout_seconds)
    except pymysql.err.MySQLError as exc:
        ctx.error(target.label, connection_error(exc, target))
        return None
    with conn:
        reader = _Reader(ctx, conn, target.label)
        data = read_server(reader, target, window_seconds)
    data["runs_in"] = runs_in(ctx.facts.get("docker"), target)
    data["config_files"] = mounted_config(_service(ctx, target))
    for name, where in data["config_files"].items():
        if data["origins"].get(name) == "config":  # MariaDB says "config" without the file
            data["origins"][name] = f"config {where}"
    return data


def _service(ctx: CollectContext, target: Target) -> Mapping[str, Any]:
    for project in ctx.facts.get("compose").get("projects") or []:
        if project.get("name") == target.project:
            return (project.get("services") or {}).get(target.service) or {}
    return {}


def mounted_config(service: Mapping[str, Any]) -> dict[str, str]:
    """variable -> "host path:line" from the my.cnf / conf.d files the service bind-mounts under
    /etc/mysql, read in the server's order (my.cnf, then conf.d files alphabetically); the last wins."""
    files: list[tuple[str, Path]] = []
    for volume in service.get("volumes") or []:
        source, target = volume.get("source"), str(volume.get("target") or "")
        if volume.get("type") != "bind" or not source or not target.startswith("/etc/mysql"):
            continue
        path = Path(str(source))
        if path.is_dir():
            files += [(f"{target}/{f.name}", f) for f in sorted(path.glob("*.cnf"))]
        elif path.is_file():
            files.append((target, path))
    found: dict[str, str] = {}
    for _, path in sorted(files, key=lambda item: (not item[0].endswith("my.cnf"), item[0])):
        found.update(config_settings(path))
    return found


SERVER_SECTIONS = ("mysqld", "mariadb", "server", "mariadbd")


def config_settings(path: Path) -> dict[str, str]:
    """variable -> "path:line" for the server sections of one option file."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    found, section = {}, ""
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", ";", "!")):
            continue
        if stripped.startswith("[") and stripped.endswith("]"):
            section = stripped[1:-1].strip().lower()
        elif section.split("-", 1)[0] in SERVER_SECTIONS:
            name = stripped.split("=", 1)[0].strip().replace("-", "_").lower()
            found[name] = f"{path}:{number}"
    return found


def runs_in(docker: Mapping[str, Any], target: Target) -> dict[str, Any]:
    """container (its compose service, or the one publishing the port) | host (a socket) | unknown:
    the budget takes the container's memory limit from here."""
    for container in docker.get("containers") or []:
        where = (container.get("compose_service"), container.get("compose_project"))
        same = target.service is not None and where == (target.service, target.project)
        publishes = any(str(p.get("host_port")) == str(target.port) for p in container.get("ports") or [])
        if same or (publishes and not target.unix_socket):
            return {"kind": "container", "container": container.get("name"),
                    "service": container.get("compose_service"), "project": container.get("compose_project"),
                    "memory_limit_bytes": container.get("memory_limit_bytes")}
    if target.service is not None:
        return {"kind": "container", "container": None, "service": target.service, "project": target.project}
    if target.unix_socket:
        return {"kind": "host", "container": None, "service": None, "project": None}
    return {"kind": "unknown", "container": None, "service": None, "project": None}


class _Reader:
    """Runs one named query; a failure becomes a collection error and an empty result."""

    def __init__(self, ctx: CollectContext, conn: Any, where: str) -> None:
        self.ctx, self.conn, self.where = ctx, conn, where

    def rows(self, name: str, sql: str, args: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        import pymysql  # lazy: start-up (loaded by connect() already)

        try:
            with self.conn.cursor() as cur, pacing.waiting_on():
                cur.execute(sql, args)
                return [dict(r) for r in cur.fetchall()]
        except pymysql.err.MySQLError as exc:
            why = exc.args[-1] if exc.args else exc
            self.ctx.error(f"{self.where} {name}", f"{exc.__class__.__name__}: {why}")
            return []

    def pairs(self, name: str, sql: str) -> dict[str, str]:
        return {str(r["Variable_name"]).lower(): str(r["Value"]) for r in self.rows(name, sql)}


def read_server(reader: _Reader, target: Target, window_seconds: float) -> dict[str, Any]:
    variables = reader.pairs("variables", "SHOW GLOBAL VARIABLES")
    version = variables.get("version", "")
    flavor = "mariadb" if "mariadb" in version.lower() else "mysql"
    first = reader.pairs("status", "SHOW GLOBAL STATUS")
    started = time.monotonic()
    time.sleep(window_seconds)
    second = reader.pairs("status", "SHOW GLOBAL STATUS")
    elapsed = time.monotonic() - started
    status = {k: _number(v) for k, v in second.items()}
    uptime = _number(second.get("uptime")) or 0
    data: dict[str, Any] = {
        "target": target.label, "discovered_from": target.discovered_from,
        "project": target.project, "service": target.service,
        "flavor": flavor, "version": version, "version_tuple": list(version_tuple(version)),
        "variables": variables, "origins": read_origins(reader, flavor),
        "uptime_seconds": uptime,
        "status": {k: v for k, v in status.items() if v is not None},
        "rates": rates(first, second, elapsed),
        "window_seconds": round(elapsed, 3),
        "performance_schema": variables.get("performance_schema", "OFF").upper() == "ON",
    }
    data["digests"] = read_digests(reader) if data["performance_schema"] else []
    data["unused_indexes"] = read_unused_indexes(reader) if data["performance_schema"] else []
    data["redundant_indexes"] = read_redundant_indexes(reader)
    data["binlog"] = read_binlog(reader, variables)
    data["accounts"] = read_accounts(reader)
    data["schemas"] = read_schemas(reader)
    data["data_bytes"] = sum(s["bytes"] for s in data["schemas"])
    data["derived"] = derived_figures(variables, status, data["rates"])
    return data


def version_tuple(version: str) -> tuple[int, int, int]:
    match = re.match(r"(\d+)\.(\d+)\.(\d+)", version)
    return (int(match[1]), int(match[2]), int(match[3])) if match else (0, 0, 0)


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def rates(first: Mapping[str, str], second: Mapping[str, str], elapsed: float) -> dict[str, float]:
    """Per-second change of the RATE_COUNTERS over the window."""
    out: dict[str, float] = {}
    for name in RATE_COUNTERS:
        a, b = _number(first.get(name.lower())), _number(second.get(name.lower()))
        if a is not None and b is not None and elapsed > 0:
            out[name] = round(max(0.0, b - a) / elapsed, 3)
    return out


def read_origins(reader: _Reader, flavor: str) -> dict[str, str]:
    """Where each non-default global value comes from: MariaDB's GLOBAL_VALUE_ORIGIN (CONFIG,
    COMMAND-LINE, SQL, AUTO), MySQL's variables_info (GLOBAL, EXPLICIT = a my.cnf with its path,
    COMMAND_LINE, PERSISTED, DYNAMIC)."""
    if flavor == "mariadb":
        rows = reader.rows("origins", "SELECT VARIABLE_NAME AS name, GLOBAL_VALUE_ORIGIN AS origin "
                           "FROM information_schema.SYSTEM_VARIABLES WHERE GLOBAL_VALUE_ORIGIN <> "
                           "'COMPILE-TIME'")
        return {str(r["name"]).lower(): str(r["origin"]).lower() for r in rows}
    rows = reader.rows("origins", "SELECT VARIABLE_NAME AS name, VARIABLE_SOURCE AS origin, VARIABLE_PATH "
                       "AS path FROM performance_schema.variables_info WHERE VARIABLE_SOURCE <> 'COMPILED'")
    return {str(r["name"]).lower(): (f"{str(r['origin']).lower()} {r['path']}" if r.get("path")
                                     else str(r["origin"]).lower()) for r in rows}


def read_digests(reader: _Reader) -> list[dict[str, Any]]:
    """The statements with most total latency (timers are picoseconds)."""
    rows = reader.rows("digests", f"""
        SELECT SCHEMA_NAME AS schema_name, DIGEST AS digest, LEFT(DIGEST_TEXT, 300) AS query,
               COUNT_STAR AS calls, SUM_TIMER_WAIT / 1e9 AS total_ms, AVG_TIMER_WAIT / 1e9 AS mean_ms,
               SUM_ROWS_EXAMINED AS rows_examined, SUM_ROWS_SENT AS rows_sent,
               SUM_CREATED_TMP_DISK_TABLES AS tmp_disk_tables, SUM_CREATED_TMP_TABLES AS tmp_tables,
               SUM_NO_INDEX_USED AS no_index_used
        FROM performance_schema.events_statements_summary_by_digest
        WHERE DIGEST_TEXT IS NOT NULL
        ORDER BY SUM_TIMER_WAIT DESC LIMIT {DIGEST_LIMIT}""")
    return [{k: _digest_value(k, v) for k, v in r.items()} for r in rows]


def _digest_value(key: str, value: Any) -> Any:
    """Timers as float ms, counters as int (the server returns Decimal), text as it is."""
    if key.endswith("_ms"):
        return round(float(value), 3) if value is not None else None
    if key in ("calls", "rows_examined", "rows_sent", "tmp_disk_tables", "tmp_tables", "no_index_used"):
        return int(value or 0)
    return value


def read_unused_indexes(reader: _Reader) -> list[dict[str, Any]]:
    """sys.schema_unused_indexes (no reads since start, from performance_schema), with sizes."""
    rows = reader.rows("unused indexes", """
        SELECT u.object_schema AS schema_name, u.object_name AS table_name, u.index_name AS index_name,
               (SELECT s.stat_value * @@innodb_page_size FROM mysql.innodb_index_stats s
                 WHERE s.database_name = u.object_schema AND s.table_name = u.object_name
                   AND s.index_name = u.index_name AND s.stat_name = 'size') AS bytes,
               (SELECT MIN(st.NON_UNIQUE) FROM information_schema.STATISTICS st
                 WHERE st.TABLE_SCHEMA = u.object_schema AND st.TABLE_NAME = u.object_name
                   AND st.INDEX_NAME = u.index_name) AS non_unique
        FROM sys.schema_unused_indexes u""")
    return [{**r, "bytes": int(r["bytes"]) if r.get("bytes") is not None else None,
             "unique": r.get("non_unique") == 0} for r in rows]


def read_redundant_indexes(reader: _Reader) -> list[dict[str, Any]]:
    rows = reader.rows("redundant indexes", """
        SELECT table_schema AS schema_name, table_name, redundant_index_name AS index_name,
               redundant_index_columns AS columns, dominant_index_name AS covered_by,
               dominant_index_columns AS covered_by_columns, sql_drop_index
        FROM sys.schema_redundant_indexes""")
    return rows


def read_binlog(reader: _Reader, variables: Mapping[str, str]) -> dict[str, Any]:
    enabled = variables.get("log_bin", "OFF").upper() == "ON"
    logs = reader.rows("binary logs", "SHOW BINARY LOGS") if enabled else []
    expire_seconds = _number(variables.get("binlog_expire_logs_seconds")) or 0
    if not expire_seconds:
        expire_seconds = (_number(variables.get("expire_logs_days")) or 0) * 86400
    return {"enabled": enabled, "files": len(logs),
            "bytes": int(sum(_number(r.get("File_size")) or 0 for r in logs)),
            "expire_seconds": int(expire_seconds)}


def read_accounts(reader: _Reader) -> list[dict[str, Any]]:
    """User, host, plugin, whether it is locked and whether it has a password: never the hash
    itself. A locked account cannot log in (MariaDB 10.4+ ships 'mariadb.sys'@'localhost' locked
    with an empty password), so it does not count as one without a password."""
    rows = reader.rows("accounts", f"""
        SELECT u.User AS user, u.Host AS host, u.plugin, ({_locked_sql(reader)}) AS locked,
               (u.authentication_string = '' OR u.authentication_string IS NULL) AS empty_auth
        FROM mysql.user u""")
    passwordless_plugins = ("", "mysql_native_password", "caching_sha2_password", "sha256_password",
                            "mysql_old_password", "ed25519", "parsec")
    return [{"user": str(r["user"]), "host": str(r["host"]), "plugin": str(r.get("plugin") or ""),
             "locked": bool(r["locked"]),
             "no_password": bool(r["empty_auth"]) and not r["locked"]
             and str(r.get("plugin") or "") in passwordless_plugins}
            for r in rows]


def _locked_sql(reader: _Reader) -> str:
    """MySQL 5.7.6+ has mysql.user.account_locked; MariaDB 10.4+ keeps the lock in
    mysql.global_priv's JSON (https://mariadb.com/kb/en/mysql-global_priv-table/); older: none."""
    found = {(str(r["t"]), str(r["c"])) for r in reader.rows("accounts", """
        SELECT TABLE_NAME AS t, COLUMN_NAME AS c FROM information_schema.COLUMNS
        WHERE TABLE_SCHEMA = 'mysql' AND ((TABLE_NAME = 'user' AND COLUMN_NAME = 'account_locked')
              OR (TABLE_NAME = 'global_priv' AND COLUMN_NAME = 'Priv'))""")}
    if ("user", "account_locked") in found:
        return "u.account_locked = 'Y'"
    if ("global_priv", "Priv") in found:
        return ("SELECT COALESCE(MAX(JSON_VALUE(g.Priv, '$.account_locked') IN ('1', 'true')), 0) "
                "FROM mysql.global_priv g WHERE g.User = u.User AND g.Host = u.Host")
    return "0"


def read_schemas(reader: _Reader) -> list[dict[str, Any]]:
    placeholders = ", ".join(["%s"] * len(SYSTEM_SCHEMAS))
    rows = reader.rows("schemas", f"""
        SELECT table_schema AS name, COUNT(*) AS tables,
               SUM(COALESCE(data_length, 0) + COALESCE(index_length, 0)) AS bytes
        FROM information_schema.TABLES WHERE table_schema NOT IN ({placeholders})
        GROUP BY table_schema ORDER BY bytes DESC""", SYSTEM_SCHEMAS)
    return [{"name": str(r["name"]), "tables": int(r["tables"]), "bytes": int(r["bytes"] or 0)} for r in rows]


def redo_capacity_bytes(variables: Mapping[str, Any]) -> int | None:
    """innodb_redo_log_capacity (MySQL 8.0.30+), else log_file_size x files (MariaDB has one file)."""
    capacity = _number(variables.get("innodb_redo_log_capacity"))
    if capacity:
        return int(capacity)
    size = _number(variables.get("innodb_log_file_size"))
    files = _number(variables.get("innodb_log_files_in_group")) or 1
    return int(size * files) if size else None


def derived_figures(variables: Mapping[str, str], status: Mapping[str, float | None],
                    window: Mapping[str, float]) -> dict[str, Any]:
    """Ratios the rules and the tuner read, computed once from the raw counters."""
    def s(name: str) -> float:
        return status.get(name.lower()) or 0.0

    uptime = s("Uptime") or 1.0
    requests, reads = s("Innodb_buffer_pool_read_requests"), s("Innodb_buffer_pool_reads")
    tmp, tmp_disk = s("Created_tmp_tables"), s("Created_tmp_disk_tables")
    hits, misses = s("Table_open_cache_hits"), s("Table_open_cache_misses")
    written = window.get("Innodb_os_log_written")
    return {
        "buffer_pool_hit_ratio": round(1 - reads / requests, 5) if requests else None,
        "buffer_pool_read_requests": int(requests),
        "buffer_pool_pages_free": int(s("Innodb_buffer_pool_pages_free")),
        "buffer_pool_pages_total": int(s("Innodb_buffer_pool_pages_total")),
        "redo_capacity_bytes": redo_capacity_bytes(variables),
        "redo_write_bytes_per_second": written,
        "redo_write_bytes_per_second_since_start": round(s("Innodb_os_log_written") / uptime, 1),
        "tmp_tables": int(tmp), "tmp_disk_tables": int(tmp_disk),
        "tmp_disk_ratio": round(tmp_disk / tmp, 4) if tmp else None,
        "table_open_cache_hits": int(hits), "table_open_cache_misses": int(misses),
        "table_open_cache_miss_ratio": round(misses / (hits + misses), 4) if hits + misses else None,
        "open_tables": int(s("Open_tables")), "opened_tables": int(s("Opened_tables")),
        "max_used_connections": int(s("Max_used_connections")),
        "threads_connected": int(s("Threads_connected")),
        "aborted_connects": int(s("Aborted_connects")), "aborted_clients": int(s("Aborted_clients")),
        "connections": int(s("Connections")),
    }
