"""Redis facts: memory, limits, eviction policy, persistence, auth, and who uses each Redis for what.

Targets come from `--redis URL` or the stack: `REDIS_URL`-like variables in the services'
(unredacted, in-process) environment, and redis/valkey services' published ports; else a Redis
answering on this host's default port (127.0.0.1:6379, facts.local_servers). Reads with
redis-py over RESP2 (`protocol=2`), with timeouts. CONFIG may be renamed or refused (ACL): then
`config_readable` is False and INFO's maxmemory/maxmemory_policy are used. Passwords never leave
this module: targets are shown without them and error messages are our own words.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from stackaudit.facts import CollectContext, Facts, SourceUnavailable, local_servers
from stackaudit.images import service_product
from stackaudit.network import local_address
from stackaudit.redact import remember, url_without_password

if TYPE_CHECKING:
    import redis

REDIS_PORT = 6379
URL_KEY = re.compile(r"(^|_)(REDIS|BROKER|CACHE|RESULT_BACKEND)(_|$)")
QUEUE_KINDS = {"sidekiq": "sidekiq", "celery": "celery", "rq": "rq"}


@dataclass
class Target:
    """One Redis server: how to reach it from here, and what the stack calls it."""

    url: str  # with the password, in-process only
    project: str | None = None
    service: str | None = None
    discovered_from: str = "--redis"
    users: list[dict[str, Any]] = field(default_factory=list)

    @property
    def key(self) -> tuple[str | None, str | None, str]:
        parts = urlsplit(self.url)
        return (self.project, self.service, f"{parts.hostname}:{parts.port or REDIS_PORT}")


# ---------------------------------------------------------------------------------------------
# discovery


def discover(ctx: CollectContext) -> list[Target]:
    """`--redis URL` alone when given (with the users the stack has for it), else the stack's."""
    stack = list(_stack_targets(ctx))
    if not ctx.settings.redis_url:
        return stack
    target = Target(ctx.settings.redis_url)
    remember(urlsplit(target.url).password, "redis:--redis")
    target.project, target.service = _stack_service_for_host(ctx.facts, urlsplit(target.url).hostname)
    same = next((s for s in stack if target.service and (s.project, s.service) == (target.project,
                                                                                    target.service)), None)
    if same is not None:
        target.users = same.users
    return [target]


def _stack_targets(ctx: CollectContext) -> Iterator[Target]:
    """Redis servers the stack names: URL variables of app services, and redis-image services."""
    found: dict[tuple[str, str], Target] = {}
    for project in ctx.facts.get("compose").get("projects") or []:
        name = str(project.get("name"))
        services = project.get("services") or {}
        for service_name, env in _service_envs(ctx, name, services):
            for key, value in env.items():
                if not value or not URL_KEY.search(key) or not str(value).startswith(("redis://", "rediss://")):
                    continue
                host = urlsplit(str(value)).hostname or ""
                if host not in services:
                    continue  # an external Redis: reachable only with --redis
                target = found.setdefault((name, host), _target_for_service(ctx, name, services[host], value))
                target.users.append(_user(ctx.facts, name, service_name, key, str(value)))
        for service_name, service in services.items():
            if (name, service_name) not in found and _is_redis(service):
                found[(name, service_name)] = _target_for_service(ctx, name, service, None)
    yield from found.values()


def _service_envs(ctx: CollectContext, project: str,
                  services: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    private = ctx.private.get("compose_env", {}).get(project, {})
    for name, service in services.items():
        yield name, private.get(name) or service.get("environment") or {}


def _is_redis(service: Mapping[str, Any]) -> bool:
    """A Redis by all the service's evidence (images.classify_service), not its image name alone."""
    return service_product(service) == "redis"


def _target_for_service(ctx: CollectContext, project: str, service: Mapping[str, Any],
                        app_url: str | None) -> Target:
    """A URL reachable from here: the app's URL (password, db) with the host swapped for the
    service's published port on loopback, or its container address."""
    name = str(service.get("name"))
    host, port = _reachable_address(ctx.facts, project, service)
    base = urlsplit(app_url or f"redis://{name}:{REDIS_PORT}/0")
    auth = ""
    if base.username or base.password:
        auth = f"{base.username or ''}:{base.password}@" if base.password else f"{base.username}@"
    url = urlunsplit((base.scheme, f"{auth}{host}:{port}", base.path, base.query, ""))
    return Target(url, project, name, "compose environment" if app_url else "compose service")


def _reachable_address(facts: Facts, project: str, service: Mapping[str, Any]) -> tuple[str, int]:
    container = _container(facts, project, str(service.get("name")))
    ports = (container or {}).get("ports") or []
    for port in ports:
        if port.get("container_port") == REDIS_PORT and port.get("host_port"):
            return local_address(port.get("host_ip")), int(port["host_port"])
    for port in service.get("ports") or []:
        if int(port.get("target") or 0) == REDIS_PORT and port.get("published"):
            return local_address(port.get("host_ip")), int(port["published"])
    for key in ("ip_addresses", "ips"):
        for ip in (container or {}).get(key) or []:
            return str(ip), REDIS_PORT
    networks = (container or {}).get("networks") or {}
    for net in networks.values() if isinstance(networks, Mapping) else []:
        if isinstance(net, Mapping) and (net.get("ip") or net.get("ip_address")):
            return str(net.get("ip") or net.get("ip_address")), REDIS_PORT
    return str(service.get("name")), REDIS_PORT


def _container(facts: Facts, project: str, service: str) -> dict[str, Any] | None:
    for container in facts.get("docker").get("containers") or []:
        if container.get("compose_project") == project and container.get("compose_service") == service:
            return dict(container)
    return None


def _stack_service_for_host(facts: Facts, host: str | None) -> tuple[str | None, str | None]:
    for project in facts.get("compose").get("projects") or []:
        services = project.get("services") or {}
        if host in services:
            return str(project.get("name")), host
        redis_services = [n for n, s in services.items() if _is_redis(s)]
        if host in ("127.0.0.1", "localhost", "::1") and len(redis_services) == 1:
            return str(project.get("name")), redis_services[0]
    return None, None


def _user(facts: Facts, project: str, service: str, key: str, url: str) -> dict[str, Any]:
    """How a service uses a Redis: a job queue (Sidekiq/Celery/RQ broker) or a cache."""
    process: Mapping[str, Any] = next((p for p in facts.get("app").get("processes") or []
                    if p.get("project") == project and p.get("service") == service), {})
    kind_of_process = str(process.get("kind") or "")
    upper = key.upper()
    db = urlsplit(url).path.lstrip("/") or "0"
    if "CACHE" in upper or "RESULT_BACKEND" in upper:
        kind, framework = "cache", _framework(process, upper)
    elif kind_of_process in QUEUE_KINDS or any(w in upper for w in ("SIDEKIQ", "BROKER", "CELERY",
                                                                     "RQ_", "QUEUE", "JOB")):
        kind, framework = "queue", QUEUE_KINDS.get(kind_of_process) or _framework(process, upper)
    elif _sidekiq_shares(facts, project, key):
        kind, framework = "queue", "sidekiq"  # a Rails web process pushes jobs to Sidekiq's Redis
    else:
        kind, framework = "unknown", _framework(process, upper)
    return {"service": service, "kind": kind, "framework": framework, "env_var": key, "db": db}


def _framework(process: Mapping[str, Any], upper_key: str) -> str | None:
    for name in ("SIDEKIQ", "CELERY", "RQ"):
        if name in upper_key:
            return name.lower()
    return str(process.get("framework")) if process.get("framework") else None


def _sidekiq_shares(facts: Facts, project: str, key: str) -> bool:
    """A variable of the same name is also what a Sidekiq/RQ worker of the project reads."""
    workers = [p for p in facts.get("app").get("processes") or []
               if p.get("project") == project and p.get("kind") in ("sidekiq", "rq")]
    return bool(workers) and key in ("REDIS_URL",)


# ---------------------------------------------------------------------------------------------
# reading one server


def collect(ctx: CollectContext) -> dict[str, Any]:
    targets = discover(ctx) or [Target(url) for url in [local_servers.local_redis()] if url]
    if not targets:
        raise SourceUnavailable("no Redis found: give --redis URL, or a compose project with a redis "
                                "service or REDIS_URL (nothing answers on 127.0.0.1:6379 either)")
    instances = [inst for t in targets if (inst := read_instance(ctx, t)) is not None]
    if not instances:
        raise SourceUnavailable("no Redis could be read (see the errors above)")
    return {"instances": instances, "summary": _summary(instances)}


def _client(url: str, timeout: float, without_password: bool = False) -> redis.Redis:
    import redis  # lazy: start-up (redis-py costs 0.1 s and 20 MiB: only when a Redis is there to read)
    from redis.backoff import NoBackoff  # lazy: start-up
    from redis.retry import Retry  # lazy: start-up

    parts = urlsplit(url)
    if parts.password:
        remember(parts.password)
    return redis.Redis(
        host=parts.hostname or "127.0.0.1", port=parts.port or REDIS_PORT,
        username=None if without_password else (parts.username or None),
        password=None if without_password else parts.password,
        db=int(parts.path.lstrip("/") or 0) if parts.path.lstrip("/").isdigit() else 0,
        ssl=parts.scheme == "rediss", protocol=2,
        socket_timeout=timeout, socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),  # redis-py 6+ retries 3 times, even on AuthenticationError
    )


def read_instance(ctx: CollectContext, target: Target) -> dict[str, Any] | None:
    import redis  # lazy: start-up
    shown = url_without_password(target.url)
    timeout = ctx.settings.timeout_seconds
    where = f"redis {shown}"
    auth_required = _auth_required(target.url, timeout)
    if auth_required is None:
        ctx.error(where, "cannot connect (connection refused, timed out or unknown host)")
        return None
    client = _client(target.url, timeout)
    try:
        info = client.info("all")
    except redis.AuthenticationError:
        has_password = bool(urlsplit(target.url).password)
        why = ("authentication failed: the server refused the password or user" if has_password
               else "needs a password: give --redis redis://:PASSWORD@host:port")
        ctx.error(where, why)
        return _instance(target, shown, {}, auth_required, None, ctx.facts)
    except redis.RedisError as exc:
        ctx.error(where, f"INFO failed: {exc.__class__.__name__}")
        return _instance(target, shown, {}, auth_required, None, ctx.facts)
    finally:
        client.close()
    config = _config(target.url, timeout)
    return _instance(target, shown, info, auth_required, config, ctx.facts)


def _auth_required(url: str, timeout: float) -> bool | None:
    """Whether a connection without a password is refused (NOAUTH); None when unreachable."""
    import redis  # lazy: start-up
    client = _client(url, timeout, without_password=True)
    try:
        client.ping()
        return False
    except redis.AuthenticationError:
        return True
    except redis.ResponseError as exc:
        return "NOAUTH" in str(exc).upper() or None
    except redis.RedisError:
        return None
    finally:
        client.close()


def _config(url: str, timeout: float) -> dict[str, str] | None:
    """CONFIG GET of what matters; None when CONFIG is renamed away or refused by an ACL."""
    import redis  # lazy: start-up
    client = _client(url, timeout)
    try:
        values: dict[str, str] = {}
        for name in ("maxmemory", "maxmemory-policy", "appendonly", "save"):
            values.update({str(k): str(v) for k, v in client.config_get(name).items()})
        return values
    except redis.RedisError:
        return None
    finally:
        client.close()


def _instance(target: Target, shown: str, info: Mapping[str, Any], auth_required: bool,
              config: Mapping[str, str] | None, facts: Facts) -> dict[str, Any]:
    limit, limit_source = container_memory_limit(facts, target.project, target.service)
    maxmemory = _int(config.get("maxmemory")) if config else None
    if maxmemory is None:
        maxmemory = _int(info.get("maxmemory"))
    policy = (config or {}).get("maxmemory-policy") or info.get("maxmemory_policy")
    return {
        "target": shown, "project": target.project, "service": target.service,
        "discovered_from": target.discovered_from,
        "reachable": True, "readable": bool(info),
        "version": info.get("redis_version"),
        "used_memory_bytes": _int(info.get("used_memory")),
        "used_memory_rss_bytes": _int(info.get("used_memory_rss")),
        "used_memory_peak_bytes": _int(info.get("used_memory_peak")),
        "mem_fragmentation_ratio": info.get("mem_fragmentation_ratio"),
        "maxmemory_bytes": maxmemory,
        "maxmemory_policy": str(policy) if policy else None,
        "policy_source": ("config" if config and config.get("maxmemory-policy")
                          else "info" if policy else None),
        "container_memory_limit_bytes": limit, "limit_source": limit_source,
        "auth_required": auth_required,
        "config_readable": config is not None,
        "config": dict(config) if config is not None else None,
        "users": target.users,
        "connected_clients": _int(info.get("connected_clients")),
        "evicted_keys": _int(info.get("evicted_keys")),
        "rejected_connections": _int(info.get("rejected_connections")),
        "persistence": _persistence(info, config),
    }


def container_memory_limit(facts: Facts, project: str | None,
                           service: str | None) -> tuple[int | None, str | None]:
    """The memory limit of the Redis container: docker's (as running), else compose's mem_limit."""
    if service is None:
        return None, None
    container = _container(facts, project or "", service)
    if container is not None and container.get("memory_limit_bytes"):
        return int(container["memory_limit_bytes"]), "docker"
    for proj in facts.get("compose").get("projects") or []:
        if proj.get("name") == project:
            svc = (proj.get("services") or {}).get(service) or {}
            if svc.get("mem_limit_bytes"):
                return int(svc["mem_limit_bytes"]), "compose"
    return None, None


def _persistence(info: Mapping[str, Any], config: Mapping[str, str] | None) -> dict[str, Any]:
    save = (config or {}).get("save")
    return {
        "rdb_enabled": bool(save and save.strip()) if save is not None else None,
        "rdb_save_rules": save,
        "aof_enabled": bool(info.get("aof_enabled")) if "aof_enabled" in info else None,
        "rdb_last_save_time": _int(info.get("rdb_last_save_time")),
        "rdb_last_bgsave_status": info.get("rdb_last_bgsave_status"),
        "rdb_changes_since_last_save": _int(info.get("rdb_changes_since_last_save")),
        "aof_last_bgrewrite_status": info.get("aof_last_bgrewrite_status"),
        "aof_last_write_status": info.get("aof_last_write_status"),
    }


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _summary(instances: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        inst["service"] or inst["target"]: {
            "version": inst["version"], "used_memory_bytes": inst["used_memory_bytes"],
            "maxmemory_bytes": inst["maxmemory_bytes"], "maxmemory_policy": inst["maxmemory_policy"],
            "container_memory_limit_bytes": inst["container_memory_limit_bytes"],
            "users": sorted({f"{u['service']}:{u['kind']}" for u in inst["users"]}),
        }
        for inst in instances
    }
