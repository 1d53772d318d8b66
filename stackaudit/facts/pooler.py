"""Connection poolers in front of PostgreSQL (PgBouncer), and which app processes go through them.

A compose service is a PgBouncer when its image or command names pgbouncer. Its settings come from
a pgbouncer.ini the service mounts (or bakes in), else from the environment the common images turn
into that file (edoburu/pgbouncer: the setting's name in capitals, e.g. DEFAULT_POOL_SIZE;
bitnami/pgbouncer: PGBOUNCER_DEFAULT_POOL_SIZE), else PgBouncer's defaults. An app process goes
through a pooler when the host of its database URL (or DB_HOST, PGHOST, ...) names the pooler's
service. Only host names, ports and database names are kept: never a user or a password.
"""

from __future__ import annotations

import configparser
import re
from collections.abc import Mapping, Sequence
from typing import Any, Protocol
from urllib.parse import urlsplit

from stackaudit.facts.appconfig import Env
from stackaudit.images import parse_image

# PgBouncer's defaults (pgbouncer.org/config.html): session pooling, 20 server connections per
# database/user pair, no reserve, 100 clients, no per-database cap.
PGBOUNCER_DEFAULTS: dict[str, int | str] = {
    "pool_mode": "session", "default_pool_size": 20, "reserve_pool_size": 0, "max_client_conn": 100,
    "max_db_connections": 0, "listen_port": 6432,
}
# Where the common images read their file: edoburu/pgbouncer, bitnami/pgbouncer, Debian's package.
INI_PATHS = ("/etc/pgbouncer/pgbouncer.ini", "/opt/bitnami/pgbouncer/conf/pgbouncer.ini")
ENV_PREFIXES = ("", "PGBOUNCER_")

# Where an app names its database server, in the order frameworks read them.
URL_VARIABLES = ("DATABASE_URL", "POSTGRES_URL", "PG_URL", "DB_URL")
HOST_VARIABLES = ("DB_HOST", "DATABASE_HOST", "POSTGRES_HOST", "POSTGRESQL_HOST", "PGHOST")
NAME_VARIABLES = ("DB_NAME", "DATABASE_NAME", "POSTGRES_DB", "PGDATABASE")
PORT_VARIABLES = ("DB_PORT", "DATABASE_PORT", "POSTGRES_PORT", "PGPORT")


class ConfigFiles(Protocol):
    """What this module needs of facts.app.Files: a config file as the service sees it."""

    def find(self, relative: str, explicit: str | None = None) -> tuple[str, str] | None: ...


def is_pgbouncer(service: Mapping[str, Any], argv: Sequence[str]) -> bool:
    return "pgbouncer" in parse_image(service.get("image")).basename or any(
        w.rsplit("/", 1)[-1] == "pgbouncer" for w in argv)


def recognise_pooler(project: str, service: Mapping[str, Any], argv: Sequence[str], env: Env,
                     files: ConfigFiles) -> dict[str, Any] | None:
    """The pooler a compose service runs, with its limits and where each came from, or None."""
    if not is_pgbouncer(service, argv):
        return None
    name = str(service.get("name", ""))
    explicit = next((w for w in argv if w.endswith(".ini")), None)
    ini = _read_ini(files, explicit)
    settings: dict[str, Any] = {}
    evidence: list[dict[str, Any]] = []
    for key, default in PGBOUNCER_DEFAULTS.items():
        text, origin = _setting(key, ini, env)
        value: int | str = default if text is None else text.lower()
        if text is None:
            origin = "PgBouncer's default"
        elif isinstance(default, int):
            value = int(text) if text.isdigit() else default
            if not text.isdigit():
                origin += f" = {text!r}, not a number: PgBouncer's default assumed"
        settings[key] = value
        evidence.append({"field": key, "value": value, "from": origin})
    version = image_version(str(service.get("image") or ""))
    prepared, origin = _prepared_statements_limit(_setting("max_prepared_statements", ini, env), version)
    settings["max_prepared_statements"] = prepared
    evidence.append({"field": "max_prepared_statements", "value": prepared, "from": origin})
    return {"project": project, "service": name, "kind": "pgbouncer", "version": version,
            "aliases": sorted(_aliases(service)), **settings, "evidence": evidence}


def image_version(image: str) -> str | None:
    """The release in an image tag: edoburu/pgbouncer:v1.23.1-p2 -> 1.23.1; None for latest or none."""
    match = re.match(r"v?(\d+\.\d+(?:\.\d+)?)", parse_image(image).tag or "")
    return match.group(1) if match else None


def version_tuple(version: str | None) -> tuple[int, ...] | None:
    return tuple(int(p) for p in version.split(".")) if version else None


def _prepared_statements_limit(found: tuple[str | None, str], version: str | None) -> tuple[int | None, str]:
    """max_prepared_statements: protocol-level prepared statements in transaction pooling exist since
    PgBouncer 1.21 (off by default, 0) and are on by default (200) since 1.24 (pgbouncer.org
    changelog). None when neither the setting nor the version is known."""
    text, origin = found
    release = version_tuple(version)
    if release is not None and release < (1, 21):
        return 0, f"PgBouncer {version}: no prepared statement support before 1.21"
    if text is not None and text.isdigit():
        return int(text), origin
    if release is None:
        return None, "not set, and the version is not in the image tag (200 since 1.24, 0 before)"
    if release >= (1, 24):
        return 200, f"PgBouncer {version} default 200"
    return 0, f"PgBouncer {version} default 0 (off until 1.24)"



def _read_ini(files: ConfigFiles, explicit: str | None) -> tuple[configparser.ConfigParser, str] | None:
    for path in ([explicit] if explicit else []) + list(INI_PATHS):
        found = files.find("pgbouncer.ini", path)
        if found is None:
            continue
        parser = configparser.ConfigParser(interpolation=None, comment_prefixes=(";", "#"), strict=False)
        try:
            parser.read_string(found[0])
        except configparser.Error:
            continue  # not an ini PgBouncer could read either; the environment and defaults remain
        return parser, found[1]
    return None


def _setting(key: str, ini: tuple[configparser.ConfigParser, str] | None,
             env: Env) -> tuple[str | None, str]:
    if ini is not None and ini[0].has_option("pgbouncer", key):
        return ini[0].get("pgbouncer", key).strip(), f"{ini[1]} [pgbouncer] {key}"
    for prefix in ENV_PREFIXES:
        variable = prefix + key.upper()
        if env.get(variable) not in (None, ""):
            return str(env[variable]).strip(), f"env {variable}"
    return None, ""


def _aliases(service: Mapping[str, Any]) -> set[str]:
    """The names other containers reach a service by: its name, container_name, network aliases."""
    names = {str(service.get("name", "")), str(service.get("container_name") or "")}
    names.update(str(a) for a in service.get("network_aliases") or [])
    return {n for n in names if n}


def database_target(env: Env) -> dict[str, Any]:
    """The host, port and database name an app connects to, and where that was read (no secret)."""
    for variable in URL_VARIABLES:
        url = env.get(variable)
        if not url or "://" not in str(url):
            continue
        try:
            parts = urlsplit(str(url))
            port = parts.port
        except ValueError:
            continue
        return {"host": parts.hostname, "port": port, "database": parts.path.lstrip("/") or None,
                "from": f"env {variable} (host part)"}
    host = next(((v, env[v]) for v in HOST_VARIABLES if env.get(v)), None)
    if host is None:
        return {}
    name = next((env[v] for v in NAME_VARIABLES if env.get(v)), None)
    port_text = next((str(env[v]) for v in PORT_VARIABLES if env.get(v)), "")
    return {"host": str(host[1]), "port": int(port_text) if port_text.isdigit() else None,
            "database": name, "from": f"env {host[0]}"}


def route_through_poolers(processes: list[dict[str, Any]], poolers: Sequence[Mapping[str, Any]]) -> None:
    """Mark each process whose database host is a pooler of the same project with `via_pooler`."""
    for proc in processes:
        target = proc.get("database_target") or {}
        host = target.get("host")
        pooler = next((p for p in poolers if host and p["project"] == proc["project"]
                       and host in p["aliases"]), None)
        proc["via_pooler"] = pooler["service"] if pooler else None
