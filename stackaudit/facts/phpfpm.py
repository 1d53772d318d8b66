"""PHP-FPM pools of the stack's services: how many children (= database connections at once) each
can run. Not a source of its own: the mysql collector adds it as the servers' clients.

A service runs PHP-FPM when its image tag says `fpm` (php:8.3-fpm, wordpress:fpm, nextcloud:fpm,
...), its command names php-fpm, or it mounts pool files. The pools start from the official php
image's `www.conf` (pm = dynamic, pm.max_children = 5, docs: hub.docker.com/_/php "Configuration")
and every pool file the service bind-mounts into a php-fpm pool directory overrides it, in the
order php-fpm includes them (alphabetical, `zz-docker.conf` last). Each child runs one request at
a time, so it holds at most one connection to a server (two with a second DSN): the pool's
pm.max_children x the service's replicas is what it can open.

Each child may also grow to PHP's `memory_limit` before PHP stops the request: 128M unless set
(PHP manual, "Description of core php.ini directives"), 512M in the nextcloud image (its
PHP_MEMORY_LIMIT, github.com/nextcloud/docker README), then what the mounted php.ini and conf.d
files set, then a pool's own `php_admin_value[memory_limit]` / `php_value[memory_limit]`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from stackaudit.units import parse_size

POOL_DIRS = ("/usr/local/etc/php-fpm.d", "/etc/php-fpm.d", "/usr/local/etc/php-fpm.conf")
DEBIAN_POOL_DIR = re.compile(r"^/etc/php/[\d.]+/fpm(/pool\.d)?")
IMAGE_DEFAULT = {"www": {"pm": "dynamic", "pm.max_children": "5"}}
SECTION = re.compile(r"^\s*\[([^\]]+)\]\s*$")
SETTING = re.compile(r"^\s*(pm(?:\.[a-z_]+)?|php(?:_admin)?_value\[memory_limit\])\s*=\s*(.*?)\s*$")
INI_DIRS = re.compile(r"^(/usr/local/etc/php|/etc/php/[\d.]+/fpm)(/conf\.d)?(/[^/]+\.ini)?/?$")
MEMORY_LIMIT = re.compile(r"^\s*memory_limit\s*=\s*(.*?)\s*(;.*)?$")
PHP_DEFAULT_MEMORY_LIMIT = ("128M", "PHP default memory_limit")
IMAGE_MEMORY_LIMIT = {"nextcloud": ("512M", "nextcloud image default", "PHP_MEMORY_LIMIT")}


def parse_pool_file(text: str) -> dict[str, dict[str, tuple[str, int]]]:
    """{pool: {key: (value, line)}} for the pm keys of a php-fpm pool file ([global] left out)."""
    pools: dict[str, dict[str, tuple[str, int]]] = {}
    pool = None
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith((";", "#")):
            continue
        if match := SECTION.match(line):
            pool = None if match.group(1) == "global" else match.group(1)
            continue
        if pool and (match := SETTING.match(line)):
            pools.setdefault(pool, {})[match.group(1)] = (match.group(2).strip("'\""), number)
    return pools


def _is_pool_target(target: str) -> bool:
    return target.startswith(POOL_DIRS) or bool(DEBIAN_POOL_DIR.match(target))


def _mounted_pool_files(service: Mapping[str, Any]) -> Iterator[tuple[str, Path]]:
    """(name php-fpm sees, host path) of every pool file a bind mount brings in."""
    for volume in service.get("volumes") or []:
        source, target = volume.get("source"), str(volume.get("target") or "")
        if volume.get("type") != "bind" or not source or not _is_pool_target(target):
            continue
        path = Path(str(source))
        if path.is_dir():
            yield from ((f.name, f) for f in sorted(path.glob("*.conf")))
        elif path.is_file():
            yield Path(target).name, path


def runs_php_fpm(service: Mapping[str, Any]) -> bool:
    tag = str(service.get("image_tag") or "")
    command = " ".join(str(c) for c in service.get("command") or [])
    return "fpm" in tag or "php-fpm" in command or any(True for _ in _mounted_pool_files(service))


def service_pools(service: Mapping[str, Any], error: Any = None) -> dict[str, Any]:
    """The service's pools with pm, max_children and memory_limit, and where each came from."""
    pools: dict[str, dict[str, Any]] = {
        name: {key: {"value": value, "source": "php image default www.conf"} for key, value in keys.items()}
        for name, keys in IMAGE_DEFAULT.items()}
    for name, path in sorted(_mounted_pool_files(service), key=lambda item: item[0]):
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            if error is not None:
                error(str(path), f"cannot read the PHP-FPM pool file: {exc.strerror or exc}")
            continue
        for pool, keys in parse_pool_file(text).items():
            for key, (value, line) in keys.items():
                if key.endswith("[memory_limit]"):
                    key = "memory_limit"
                pools.setdefault(pool, {})[key] = {"value": value, "source": f"{path}:{line} ({name})"}
    memory = service_memory_limit(service)
    return {pool: _pool_summary(keys, memory) for pool, keys in pools.items()}


def _pool_summary(keys: Mapping[str, Mapping[str, str]], memory: tuple[str, str]) -> dict[str, Any]:
    children = keys.get("pm.max_children", {"value": "5", "source": "php-fpm default"})
    try:
        count = int(children["value"])
    except ValueError:
        count = None
    limit = keys.get("memory_limit", {"value": memory[0], "source": memory[1]})
    return {"pm": (keys.get("pm") or {}).get("value", "dynamic"), "max_children": count,
            "source": children["source"], "memory_limit_bytes": php_bytes(limit["value"]),
            "memory_limit_source": limit["source"]}


def php_bytes(value: str) -> int | None:
    """PHP's shorthand ("128M", "1G", "-1" = no limit -> None; a bad value -> None)."""
    try:
        size = parse_size(value.strip().strip("'\""))
    except ValueError:
        return None
    return size if size > 0 else None


def service_memory_limit(service: Mapping[str, Any]) -> tuple[str, str]:
    """(memory_limit, where it came from) for the service's PHP, before a pool's own value: the
    mounted ini files in the order PHP scans them (php.ini, then conf.d alphabetically) over the
    image's default and environment."""
    value, source = PHP_DEFAULT_MEMORY_LIMIT
    image = IMAGE_MEMORY_LIMIT.get(str(service.get("image_repository") or "").rsplit("/", 1)[-1])
    if image is not None:
        value, source = image[0], image[1]
        if (service.get("environment") or {}).get(image[2]):
            value, source = str(service["environment"][image[2]]), f"environment {image[2]}"
    for path in _mounted_ini_files(service):
        try:
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            continue
        for number, line in enumerate(lines, 1):
            if match := MEMORY_LIMIT.match(line):
                value, source = match.group(1).strip("'\""), f"{path}:{number}"
    return value, source


def _mounted_ini_files(service: Mapping[str, Any]) -> list[Path]:
    """Host paths of the php.ini and conf.d/*.ini files the service bind-mounts, in PHP's scan order."""
    found: list[tuple[tuple[int, str], Path]] = []
    for volume in service.get("volumes") or []:
        source, target = volume.get("source"), str(volume.get("target") or "")
        match = INI_DIRS.match(target)
        if volume.get("type") != "bind" or not source or not match:
            continue
        path = Path(str(source))
        in_conf_d = bool(match.group(2)) or path.is_dir()
        files = sorted(path.glob("*.ini")) if path.is_dir() else [path] if path.is_file() else []
        found += [((1 if in_conf_d else 0, f.name), f) for f in files]
    return [path for _, path in sorted(found)]


def php_fpm_clients(compose: Mapping[str, Any], error: Any = None) -> list[dict[str, Any]]:
    """Every PHP-FPM service of every compose project, with its pools and the total children."""
    clients = []
    for project in compose.get("projects") or []:
        for name, service in (project.get("services") or {}).items():
            if not isinstance(service, Mapping) or not runs_php_fpm(service):
                continue
            pools = service_pools(service, error)
            replicas = int(service.get("replicas") or 1)
            per_replica = sum(p["max_children"] or 0 for p in pools.values())
            clients.append({"project": project.get("name"), "service": name, "replicas": replicas,
                            "pools": pools, "max_children_total": per_replica * replicas})
    return clients
