"""maxmemory and maxmemory-policy for a Redis, from its container limit and its users. Pure.

maxmemory bounds the dataset (used_memory), not the process: allocator fragmentation, client
buffers and - during BGSAVE / AOF rewrite - the forked child's copy-on-write pages come on top.
The Redis docs warn that a write-heavy instance "may use up to 2 times the memory normally used"
while saving (redis.io, "Redis administration" / "Memory optimization"), and managed services keep
25% or more in reserve (AWS ElastiCache reserved-memory-percent). So maxmemory is 60% of the
container limit when Redis persists (RDB or AOF) and 75% when it does not.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

PERSISTENT_SHARE = 0.60
VOLATILE_SHARE = 0.75
MIB = 2**20


@dataclass(frozen=True)
class RedisAdvice:
    service: str | None
    target: str
    limit_bytes: int | None
    maxmemory_bytes: int | None
    policy: str
    current_maxmemory_bytes: int | None
    current_policy: str | None
    reasons: tuple[str, ...]

    @property
    def maxmemory(self) -> str | None:
        """As redis.conf writes it: whole megabytes (1mb = 1048576 bytes in Redis)."""
        return None if self.maxmemory_bytes is None else f"{self.maxmemory_bytes // MIB}mb"

    def conf_lines(self) -> list[str]:
        lines = [f"maxmemory {self.maxmemory}"] if self.maxmemory else []
        return [*lines, f"maxmemory-policy {self.policy}"]

    def compose_command(self) -> list[str]:
        command = ["redis-server"]
        if self.maxmemory:
            command += ["--maxmemory", self.maxmemory]
        return [*command, "--maxmemory-policy", self.policy]

    def to_json(self) -> dict[str, Any]:
        return {"service": self.service, "target": self.target,
                "container_memory_limit_bytes": self.limit_bytes,
                "current": {"maxmemory_bytes": self.current_maxmemory_bytes,
                            "maxmemory_policy": self.current_policy},
                "recommended": {"maxmemory": self.maxmemory, "maxmemory_bytes": self.maxmemory_bytes,
                                "maxmemory_policy": self.policy},
                "redis_conf": self.conf_lines(), "compose_command": self.compose_command(),
                "reasons": list(self.reasons)}


def persists(instance: Mapping[str, Any]) -> bool:
    """RDB snapshots or AOF on (unknown counts as on: the image's default config saves RDB)."""
    persistence = instance.get("persistence") or {}
    rdb, aof = persistence.get("rdb_enabled"), persistence.get("aof_enabled")
    return rdb is not False or bool(aof)


def policy_for(users: list[Mapping[str, Any]]) -> tuple[str, str]:
    kinds = {str(u.get("kind")) for u in users}
    if "queue" in kinds:
        queues = sorted({str(u.get("framework") or u.get("service"))
                         for u in users if u.get("kind") == "queue"})
        extra = " (keep the cache in another Redis: one policy applies to the whole server)" \
            if "cache" in kinds else ""
        return "noeviction", (f"a job queue ({', '.join(queues)}) must never lose keys: noeviction makes "
                              f"writes fail loudly at maxmemory instead of dropping jobs{extra}")
    if kinds == {"cache"}:
        return "allkeys-lru", ("used only as a cache: evict the least recently used keys "
                               "(allkeys-lfu suits skewed access too)")
    return "noeviction", "use unknown: noeviction refuses writes rather than silently dropping data"


def advise(instance: Mapping[str, Any], limit_bytes: int | None = None) -> RedisAdvice:
    limit = limit_bytes or instance.get("container_memory_limit_bytes")
    policy, why_policy = policy_for(list(instance.get("users") or []))
    reasons = [why_policy]
    maxmemory = None
    if limit:
        share = PERSISTENT_SHARE if persists(instance) else VOLATILE_SHARE
        maxmemory = int(limit * share) // MIB * MIB
        reasons.append(f"{share:.0%} of the {limit // MIB} MiB container limit: the rest is headroom for "
                       "fragmentation, client buffers and the copy-on-write pages of the BGSAVE/AOF-rewrite "
                       "fork" + ("" if share == PERSISTENT_SHARE else " (no persistence: less headroom)"))
        used = instance.get("used_memory_bytes")
        if isinstance(used, int) and used > maxmemory:
            reasons.append(f"used memory ({used // MIB} MiB) is already above this: raise the container "
                           "limit first")
    else:
        reasons.append("no container memory limit known: set one (mem_limit), then maxmemory to 60-75% of "
                       "it, or pass --memory")
    return RedisAdvice(instance.get("service"), str(instance.get("target")), limit, maxmemory, policy,
                       instance.get("maxmemory_bytes"), instance.get("maxmemory_policy"), tuple(reasons))
