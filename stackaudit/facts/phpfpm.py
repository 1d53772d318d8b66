"""PHP-FPM pools of the stack's services: how many children (= database connections at once) each
can run. Not a source of its own: the mysql collector adds it as the servers' clients.

A service runs PHP-FPM when its image tag says `fpm` (php:8.3-fpm, wordpress:fpm, nextcloud:fpm,
...), its command names php-fpm, or it mounts pool files. The pools start from the official php
image's `www.conf` (pm = dynamic, pm.max_children = 5, docs: hub.docker.com/_/php "Configuration")
and every pool file the service bind-mounts into a php-fpm pool directory overrides it, in the
order php-fpm includes them (alphabetical, `zz-docker.conf` last). Each child runs one request at
a time, so it holds at most one connection to a server (two with a second DSN): the pool's
pm.max_children x the service's replicas is what it can open.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

POOL_DIRS = ("/usr/local/etc/php-fpm.d", "/etc/php-fpm.d", "/usr/local/etc/php-fpm.conf")
DEBIAN_POOL_DIR = re.compile(r"^/etc/php/[\d.]+/fpm(/pool\.d)?")
IMAGE_DEFAULT = {"www": {"pm": "dynamic", "pm.max_children": "5"}}
SECTION = re.compile(r"^\s*\[([^\]]+)\]\s*$")
SETTING = re.compile(r"^\s*(pm(?:\.[a-z_]+)?)\s*=\s*(.*?)\s*$")


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
    """The service's pools with pm and max_children and where each came from."""
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
                pools.setdefault(pool, {})[key] = {"value": value, "source": f"{path}:{line} ({name})"}
    return {pool: _pool_summary(keys) for pool, keys in pools.items()}


def _pool_summary(keys: Mapping[str, Mapping[str, str]]) -> dict[str, Any]:
    children = keys.get("pm.max_children", {"value": "5", "source": "php-fpm default"})
    try:
        count = int(children["value"])
    except ValueError:
        count = None
    return {"pm": (keys.get("pm") or {}).get("value", "dynamic"), "max_children": count,
            "source": children["source"]}


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
