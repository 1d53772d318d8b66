"""What the compose files say about a Redis service, for audits without a live Redis.

Redis reads its config file first, then the command-line `--option value` pairs, which win
(redis.io, "Redis configuration": "passing arguments via the command line"). So we read, in that
order: a redis.conf the service mounts from the host (and the files it `include`s), then the
command's flags, then the flags the image takes from variables (bitnami's REDIS_EXTRA_FLAGS,
redis-stack's REDIS_ARGS) and the images' documented password switches. Each value keeps where it
came from (`compose.yml:12`, `redis.conf:40`). Passwords are never kept: only whether one is set.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from stackaudit.facts import not_a_regular_file
from stackaudit.images import parse_image
from stackaudit.redact import remember

MAX_CONF_BYTES = 1_000_000
MAX_INCLUDE_DEPTH = 5
# Redis memory units (redis.conf header): 1k = 1000, 1kb = 1024, 1m = 10^6, 1mb = 2^20, ...
_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1024, "m": 1000**2, "mb": 1024**2, "g": 1000**3, "gb": 1024**3}
_MEMORY = re.compile(r"^\s*(\d+)\s*([kmg]?b?)\s*$", re.IGNORECASE)
# bitnami/redis reads a mounted config here (its README, "Configuration file").
BITNAMI_CONF = ("/opt/bitnami/redis/mounted-etc/redis.conf", "/opt/bitnami/redis/mounted-etc/overrides.conf")
_SERVERS = ("redis-server", "valkey-server", "keydb-server", "redis-stack-server")
_YES = {"yes", "true", "1", "on"}


def parse_memory(text: str | None) -> int | None:
    """`400mb` -> 419430400 in Redis' units; None when it is not a size (a percentage, say)."""
    match = _MEMORY.match(text or "")
    if not match:
        return None
    return int(match.group(1)) * _UNITS[match.group(2).lower()]


@dataclass
class RedisFiles:
    """The directives found, in the order Redis applies them (later wins), with their origins."""

    values: dict[str, tuple[str, str]] = field(default_factory=dict)  # directive -> (value, origin)
    renamed: dict[str, str] = field(default_factory=dict)  # command -> new name ("" = disabled)
    config_files: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)  # why part of the config cannot be known

    def set(self, directive: str, value: str, origin: str) -> None:
        directive = directive.lower()
        if directive == "rename-command":
            old, _, new = value.partition(" ")
            self.renamed[old.upper()] = new.strip().strip('"')
        elif directive == "user" and value.split(" ", 1)[0] == "default":
            self.values["user default"] = (value, origin)
        else:
            self.values[directive] = (value.strip().strip('"').strip("'"), origin)


def conf_lines(text: str) -> Iterator[tuple[int, str, str]]:
    """(line, directive, arguments) of a redis.conf, comments and blanks skipped."""
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        directive, _, rest = stripped.partition(" ")
        yield number, directive.lower(), rest.strip()


def argv_pairs(argv: list[str]) -> tuple[str | None, list[tuple[str, str]]]:
    """(config file, [(option, value)...]) of `redis-server [file] --opt value --opt2 a b`."""
    conf = None
    pairs: list[tuple[str, str]] = []
    current: str | None = None
    values: list[str] = []
    for word in argv:
        if word.startswith("--"):
            if current:
                pairs.append((current, " ".join(values)))
            current, values = word[2:], []
        elif current:
            values.append(word)
        elif conf is None and not word.startswith("-"):
            conf = word
    if current:
        pairs.append((current, " ".join(values)))
    return conf, pairs


def server_argv(command: list[str] | None, entrypoint: list[str] | None) -> list[str] | None:
    """The redis-server arguments of a service, looking into `sh -c "redis-server ..."`."""
    words = (entrypoint or []) + (command or [])
    for i, word in enumerate(words):
        if word.rsplit("/", 1)[-1] in _SERVERS:
            return words[i + 1:]
        if word == "-c" and i + 1 < len(words) and any(s in words[i + 1] for s in _SERVERS):
            try:
                inner = shlex.split(words[i + 1])
            except ValueError:
                return None
            return server_argv(inner, None)
    return None if words else []


def _host_path(container_path: str, volumes: list[Mapping[str, Any]]) -> Path | None:
    """The host file a bind mount puts at `container_path` (a file mount or its directory's)."""
    target = PurePosixPath(container_path)
    for volume in volumes:
        if volume.get("type") != "bind" or not volume.get("source"):
            continue
        mount = PurePosixPath(str(volume.get("target") or ""))
        if target == mount:
            return Path(str(volume["source"]))
        if mount in target.parents:
            return Path(str(volume["source"])) / target.relative_to(mount)
    return None


def read_conf(found: RedisFiles, container_path: str, volumes: list[Mapping[str, Any]],
              depth: int = 0) -> None:
    """Apply a mounted redis.conf (and its includes) to `found`; say why when it cannot be read."""
    host = _host_path(container_path, volumes)
    if host is None:
        found.unknown.append(f"{container_path} is in the image, not mounted from the host")
        return
    odd = not_a_regular_file(host)
    try:
        if odd is not None:
            raise OSError(odd)
        if host.stat().st_size > MAX_CONF_BYTES:
            raise OSError(f"larger than {MAX_CONF_BYTES} bytes")
        text = host.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        found.unknown.append(f"{host}: {exc.strerror or exc}")
        return
    found.config_files.append(str(host))
    for number, directive, rest in conf_lines(text):
        if directive == "include":
            if depth >= MAX_INCLUDE_DEPTH:
                found.unknown.append(f"{host}:{number}: includes nested deeper than {MAX_INCLUDE_DEPTH}")
            else:
                read_conf(found, rest, volumes, depth + 1)
        else:
            if directive in ("requirepass", "masterauth"):
                remember(rest.strip('"\''))  # never kept, but redacted should it appear anywhere
            found.set(directive, rest, f"{host}:{number}")


def redis_from_files(raw: Mapping[str, Any], shape: Mapping[str, Any],
                     origins: Mapping[str, str]) -> dict[str, Any]:
    """The Redis settings the files decide for one service (`raw`: the unredacted compose model)."""
    found = RedisFiles()
    volumes = list(shape.get("volumes") or [])
    ref = parse_image(str(raw.get("image") or ""))
    bitnami = ref.repository.startswith("bitnami/")
    env = {str(k): "" if v is None else str(v) for k, v in (raw.get("environment") or {}).items()}
    argv = server_argv(_words(raw.get("command")), _words(raw.get("entrypoint")))
    if argv is None:
        found.unknown.append("the command does not run redis-server")
        argv = []
    conf, pairs = argv_pairs(argv)
    for path in ([conf] if conf else []) + [p for p in BITNAMI_CONF if bitnami and _host_path(p, volumes)]:
        read_conf(found, path, volumes)
    if not conf and not raw.get("image") and raw.get("build") is not None and not argv:
        found.unknown.append("a local build without a command: its config is baked into the image")
    command_origin = origins.get("command") or origins.get("entrypoint") or "compose"
    for option, value in pairs:
        found.set(option, value, command_origin)
    for variable in ("REDIS_EXTRA_FLAGS", "REDIS_ARGS", "VALKEY_EXTRA_FLAGS"):
        if env.get(variable):
            for option, value in argv_pairs(_words(env[variable]) or [])[1]:
                found.set(option, value, origins.get(f"environment.{variable}", command_origin))
    return _summary(found, env, bitnami, origins)


def _summary(found: RedisFiles, env: Mapping[str, str], bitnami: bool,
             origins: Mapping[str, str]) -> dict[str, Any]:
    known = not found.unknown
    maxmemory, maxmemory_origin = found.values.get("maxmemory", ("0" if known else "", "Redis default"))
    policy, policy_origin = found.values.get("maxmemory-policy",
                                             ("noeviction" if known else "", "Redis default"))
    auth, auth_origin = _auth(found, env, bitnami, origins, known)
    return {
        "maxmemory_bytes": parse_memory(maxmemory) if maxmemory else None,
        "maxmemory_origin": maxmemory_origin if maxmemory else None,
        "maxmemory_policy": policy.lower() or None,
        "policy_origin": policy_origin if policy else None,
        "auth": auth, "auth_origin": auth_origin,
        "renamed_commands": dict(sorted(found.renamed.items())),
        "config_files": found.config_files,
        "unknown": found.unknown,
    }


def _auth(found: RedisFiles, env: Mapping[str, str], bitnami: bool, origins: Mapping[str, str],
          known: bool) -> tuple[str, str | None]:
    """"password" | "none" | "unknown", and where that was decided."""
    if "requirepass" in found.values:
        value, origin = found.values["requirepass"]
        return ("password" if value else "none"), origin
    if "user default" in found.values:
        value, origin = found.values["user default"]
        open_user = " nopass" in f" {value} " and " off" not in f" {value} "
        return ("none" if open_user else "password"), origin
    if bitnami:  # bitnami/redis README: REDIS_PASSWORD(_FILE), or ALLOW_EMPTY_PASSWORD=yes
        for key in ("REDIS_PASSWORD", "REDIS_PASSWORD_FILE"):
            if env.get(key):
                return "password", origins.get(f"environment.{key}", "compose")
        if env.get("ALLOW_EMPTY_PASSWORD", "").lower() in _YES:
            return "none", origins.get("environment.ALLOW_EMPTY_PASSWORD", "compose")
        return "unknown", None
    if known:
        # The official image runs without a config file and is built with protected mode off
        # (docker-library/redis Dockerfile: CONFIG_DEFAULT_PROTECTED_MODE 0): no password at all.
        return "none", origins.get("command") or origins.get("image") or "Redis default"
    return "unknown", None


def _words(value: Any) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, list):
        return [str(v) for v in value]
    try:
        return shlex.split(str(value))
    except ValueError:
        return str(value).split()
