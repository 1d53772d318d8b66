"""Every Redis the rules judge: the live ones read, then the stack's others as their files describe them.

The live server wins: a file view (`from_files`) is made only for a Redis service of the compose
stack that no readable live instance names. A file view has the live instance's keys that files can
decide (maxmemory, policy, the container limit, whether a password is set, who uses it as a queue),
and `origins`: the `file:line` each value came from. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stackaudit.facts import Facts
from stackaudit.images import queue_or_cache, redis_host, service_kind, service_product


def redis_instances(facts: Facts) -> tuple[Mapping[str, Any], ...]:
    """Every Redis to judge: the live ones read, then the stack's others as their files describe them.

    The live server wins: a file view is made only for a Redis service no readable instance names.
    A file view's `origins` say which file and line each value came from."""
    live = [i for i in facts.get("redis").get("instances") or [] if isinstance(i, Mapping)]
    readable = [i for i in live if i.get("readable", True)]
    seen = {(i.get("project"), i.get("service")) for i in readable}
    views: list[Mapping[str, Any]] = []
    for project in facts.get("compose").get("projects") or []:
        services = project.get("services") or {}
        for name, service in sorted(services.items()):
            if (project.get("name"), name) in seen or service_product(service) != "redis":
                continue
            if isinstance(service.get("redis_files"), Mapping):
                views.append(file_instance(str(project.get("name")), service, services))
    return (*readable, *views)


def file_instance(project: str, service: Mapping[str, Any],
                  services: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """A Redis service as its compose file, mounted redis.conf and image variables describe it."""
    files = service["redis_files"]
    origins = service.get("origins") or {}
    auth = {"password": True, "none": False}.get(str(files.get("auth")))
    limit_origin = origins.get("mem_limit") or origins.get("deploy.resources.limits.memory")
    return {
        "target": f"{project}/{service.get('name')} (compose files)", "project": project,
        "service": service.get("name"), "discovered_from": "compose files", "readable": True,
        "from_files": True,
        "maxmemory_bytes": files.get("maxmemory_bytes"), "maxmemory_policy": files.get("maxmemory_policy"),
        "policy_source": files.get("policy_origin"),
        "container_memory_limit_bytes": service.get("mem_limit_bytes"),
        "limit_source": limit_origin if service.get("mem_limit_bytes") else None,
        "auth_required": auth, "auth_source": files.get("auth_origin"),
        "users": file_users(service, services),
        "origins": {"maxmemory_bytes": files.get("maxmemory_origin"),
                    "maxmemory_policy": files.get("policy_origin"),
                    "container_memory_limit_bytes": limit_origin, "auth_required": files.get("auth_origin")},
        "persistence": {},
    }


def file_users(redis_service: Mapping[str, Any],
               services: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The services whose redis:// variables name this Redis, and whether each uses it as a queue."""
    names = {redis_service.get("name"), redis_service.get("container_name"),
             *(redis_service.get("network_aliases") or [])} - {None}
    found: list[dict[str, Any]] = []
    for user_name, user in sorted(services.items()):
        user_kind = service_kind(user).kind
        for key, value in sorted((user.get("environment") or {}).items()):
            if redis_host(key, value) not in names:
                continue
            kind = queue_or_cache(key, user_kind)
            words = " ".join(str(w) for w in user.get("command") or []).lower()
            framework = next((f for f in ("sidekiq", "celery", "rq") if f in words or f.upper() in key), None)
            found.append({"service": user_name, "kind": kind, "framework": framework, "env_var": key,
                          "origin": (user.get("origins") or {}).get(f"environment.{key}")})
    queue_vars = {u["env_var"] for u in found if u["kind"] == "queue"}
    for user in found:  # a web process pushes jobs through the variable its worker reads
        if user["kind"] == "unknown" and user["env_var"] in queue_vars:
            user["kind"] = "queue"
    return found
