"""Redis rules: memory limits, eviction against the Redis' use, memory headroom (RDS)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from stackaudit.config import Settings
from stackaudit.derive import Derived
from stackaudit.facts import Facts
from stackaudit.model import Evidence, Hit, Phase, Recommendation, Risk, Severity
from stackaudit.rules import rule
from stackaudit.tuning.redis import advise
from stackaudit.units import format_bytes


def _source(instance: Mapping[str, Any], key: str) -> str:
    """Where a value came from: `compose.yml:12` for a file view, "redis" for the live server."""
    if not instance.get("from_files"):
        return "redis"
    return str((instance.get("origins") or {}).get(key) or "compose")


def _subject(instance: Mapping[str, Any]) -> str:
    if instance.get("service"):
        return f"{instance.get('project')}/{instance['service']}"
    return str(instance.get("target"))


def _fix(instance: Mapping[str, Any], summary: str, effect: str) -> Recommendation:
    advice = advise(instance)
    action = "\n".join(advice.conf_lines()) + "\n# or in compose: command: " + str(advice.compose_command())
    return Recommendation(summary=summary, estimated_effect=effect, risk=Risk.CONFIRM, effort_minutes=10,
                          phase=Phase.NOW, action=action)


@rule("RDS001", "redis-maxmemory-unset", Severity.HIGH, needs_any=("redis", "compose"))
def maxmemory_unset(facts: Facts, settings: Settings, derived: Derived) -> Iterator[Hit]:
    """
    ## What it checks
    A Redis whose container has a memory limit but whose maxmemory is 0 (unset) or above that limit.

    When no live Redis can be read, the files decide: the `redis-server` flags of the service's
    command, a redis.conf it mounts (with its includes), the image's documented variables
    (REDIS_EXTRA_FLAGS, REDIS_ARGS) and the container's `mem_limit` / `deploy.resources.limits.memory`;
    the evidence names the file and line. Redis' own defaults (no maxmemory, noeviction) apply to
    what the files leave out, unless its config is baked into the image (then nothing is judged).

    ## Why it matters
    Without maxmemory Redis grows until the kernel's cgroup OOM killer ends it at the container
    limit: every connection drops, and what was not yet saved is lost. With maxmemory below the
    limit, Redis refuses writes (noeviction) or evicts keys (other policies) instead - a clear,
    recoverable error. A 512 MB container with no maxmemory is not "fine" even while usage is low.

    ## Recommendation
    Set maxmemory to 60-75% of the container limit (headroom for fragmentation and the BGSAVE
    fork's copy-on-write pages) and a policy that fits the use (RDS002). `stackaudit tune redis`
    prints the redis.conf lines and the compose `command:`.

    ## Estimated effect
    Redis refuses writes or evicts at a known size instead of being killed.

    ## Fix safety
    `CONFIG SET maxmemory` applies live; persist it in the config or the compose command. If used
    memory is already above the new value, writes fail (noeviction) or keys go at once.

    ## References
    - redis.io, "Key eviction" (maxmemory, policies): https://redis.io/docs/latest/develop/reference/eviction/
    - redis.io, "Redis administration" (memory use while saving can double):
      https://redis.io/docs/latest/operate/oss_and_stack/management/admin/
    """
    for instance in derived.redis_instances:
        limit = instance.get("container_memory_limit_bytes")
        maxmemory = instance.get("maxmemory_bytes")
        if not limit or maxmemory is None or (maxmemory and maxmemory <= limit):
            continue
        state = "no maxmemory" if not maxmemory else f"maxmemory {format_bytes(maxmemory)} above the limit"
        yield Hit(
            _subject(instance),
            f"Redis {_subject(instance)} has {state} inside a {format_bytes(limit)} container limit: it "
            "will be OOM-killed at the limit instead of refusing writes.",
            _fix(instance, "Set maxmemory below the container limit.",
                 "a refused write instead of a killed Redis"),
            (Evidence(_source(instance, "maxmemory_bytes"), "maxmemory_bytes", maxmemory,
                      f"0 < maxmemory < {limit}"),
             Evidence(_source(instance, "container_memory_limit_bytes"), "container_memory_limit_bytes",
                      limit, instance.get("limit_source")),
             *([] if instance.get("from_files") else
               [Evidence("redis", "used_memory_bytes", instance.get("used_memory_bytes"))])),
        )


@rule("RDS002", "redis-eviction-unsafe-for-queue", Severity.HIGH, needs_any=("redis", "compose"))
def eviction_unsafe_for_queue(facts: Facts, settings: Settings, derived: Derived) -> Iterator[Hit]:
    """
    ## What it checks
    A Redis used as a job queue (a Sidekiq, Celery or RQ broker) whose maxmemory-policy evicts keys
    (anything but noeviction). Users are the services whose redis:// variables name it: a worker
    (Sidekiq, Celery, RQ...) or a queue variable (SIDEKIQ_*, CELERY_BROKER_URL, *_QUEUE_*) makes it a
    queue, a web process that shares its worker's variable too.

    When no live Redis can be read, the files decide: the `redis-server` flags of the service's
    command, a redis.conf it mounts (with its includes), the image's documented variables
    (REDIS_EXTRA_FLAGS, REDIS_ARGS) and the container's `mem_limit` / `deploy.resources.limits.memory`;
    the evidence names the file and line. Redis' own defaults (no maxmemory, noeviction) apply to
    what the files leave out, unless its config is baked into the image (then nothing is judged).

    ## Why it matters
    At maxmemory an evicting policy deletes keys to make room: queued jobs, retries, scheduled jobs
    and locks vanish without an error. Sidekiq's docs require noeviction for this reason. The policy
    is per server, so a cache sharing the Redis cannot have its own.

    ## Recommendation
    `maxmemory-policy noeviction` on the queue's Redis; put a cache that should evict in its own Redis.

    ## Estimated effect
    No silently lost jobs; a full Redis shows as failed pushes that alerting can see.

    ## Fix safety
    `CONFIG SET maxmemory-policy noeviction` applies live; persist it in the config/compose command.

    ## References
    - Sidekiq wiki, "Using Redis" ("set maxmemory-policy noeviction"):
      https://github.com/sidekiq/sidekiq/wiki/Using-Redis
    - redis.io, "Key eviction": https://redis.io/docs/latest/develop/reference/eviction/
    """
    for instance in derived.redis_instances:
        policy = instance.get("maxmemory_policy")
        queues = [u for u in instance.get("users") or [] if u.get("kind") == "queue"]
        if not queues or not policy or policy == "noeviction":
            continue
        names = ", ".join(sorted({f"{u.get('service')} ({u.get('framework') or 'queue'})" for u in queues}))
        yield Hit(
            _subject(instance),
            f"Redis {_subject(instance)} holds the job queue of {names} but its maxmemory-policy is "
            f"{policy}: at maxmemory it deletes keys, and jobs are lost without an error.",
            _fix(instance, "Set maxmemory-policy noeviction.", "no silently lost jobs"),
            (Evidence(_source(instance, "maxmemory_policy"), "maxmemory_policy", policy, "noeviction"),
             Evidence(_source(instance, "maxmemory_policy"), "policy_source", instance.get("policy_source")),
             Evidence(_queue_source(instance, queues), "queue_users", names),
             *([] if instance.get("from_files") else
               [Evidence("redis", "evicted_keys", instance.get("evicted_keys"), 0)])),
        )


def _queue_source(instance: Mapping[str, Any], queues: list[Mapping[str, Any]]) -> str:
    origins = sorted({str(u["origin"]) for u in queues if u.get("origin")})
    return ", ".join(origins) if instance.get("from_files") and origins else _source(instance, "users")


@rule("RDS003", "redis-memory-near-limit", Severity.MEDIUM, needs_any=("redis", "compose"))
def memory_near_limit(facts: Facts, settings: Settings, derived: Derived) -> Iterator[Hit]:
    """
    ## What it checks
    used_memory against maxmemory, and used_memory_rss (what the kernel counts) against the
    container limit: 85% or more (`[thresholds.RDS003] used_ratio`). From the files alone (no live
    Redis), maxmemory against the container limit: a maxmemory at 85% or more of the limit leaves
    no room for fragmentation and the save fork once Redis is full.

    ## Why it matters
    Near maxmemory a noeviction Redis starts refusing writes and an evicting one starts deleting
    keys; near the container limit the next BGSAVE fork or traffic burst gets it OOM-killed.

    ## Recommendation
    Find what grows (`redis-cli --bigkeys`, `MEMORY STATS`), expire or trim it, or raise the limit
    and maxmemory together (`stackaudit tune redis`).

    ## Estimated effect
    Room for peaks and for the save fork.

    ## Fix safety
    Display only: what to delete or how much memory to give is a decision.

    ## References
    - redis.io, "Memory optimization":
      https://redis.io/docs/latest/operate/oss_and_stack/management/optimization/memory-optimization/
    - redis.io, INFO (the memory section's fields): https://redis.io/docs/latest/commands/info/
    """
    threshold = settings.threshold("RDS003", "used_ratio")
    for instance in derived.redis_instances:
        if instance.get("from_files"):
            yield from _maxmemory_near_limit(instance, threshold)
            continue
        for used_key, limit_key, what in (("used_memory_bytes", "maxmemory_bytes", "maxmemory"),
                                          ("used_memory_rss_bytes", "container_memory_limit_bytes",
                                           "the container limit")):
            used, limit = instance.get(used_key), instance.get(limit_key)
            if not isinstance(used, int) or not isinstance(limit, int) or limit <= 0:
                continue
            ratio = used / limit
            if ratio < threshold:
                continue
            yield Hit(
                _subject(instance),
                f"Redis {_subject(instance)} uses {format_bytes(used)}, {ratio:.0%} of {what} "
                f"({format_bytes(limit)}).",
                Recommendation(summary="Trim what grows or raise the limit and maxmemory together.",
                               estimated_effect="headroom for peaks and the save fork", risk=Risk.MANUAL,
                               effort_minutes=30, phase=Phase.WEEK, action="stackaudit tune redis"),
                (Evidence("redis", used_key, used), Evidence(_source(instance, limit_key), limit_key, limit),
                 Evidence("redis", "used_ratio", round(ratio, 3), f"< {threshold}")),
                Severity.HIGH if ratio >= 0.95 else None,
            )
            break


def _maxmemory_near_limit(instance: Mapping[str, Any], threshold: float) -> Iterator[Hit]:
    """A file view: what Redis will use when full (maxmemory) against the container limit."""
    maxmemory, limit = instance.get("maxmemory_bytes"), instance.get("container_memory_limit_bytes")
    if not isinstance(maxmemory, int) or not isinstance(limit, int) or not 0 < maxmemory <= limit:
        return
    ratio = maxmemory / limit
    if ratio < threshold:
        return
    yield Hit(
        _subject(instance),
        f"Redis {_subject(instance)} may fill {format_bytes(maxmemory)}, {ratio:.0%} of its container limit "
        f"({format_bytes(limit)}): fragmentation and the save fork leave it no room, so it is OOM-killed "
        "when full.",
        _fix(instance, "Set maxmemory to 60-75% of the container limit.",
             "room for fragmentation and the fork"),
        (Evidence(_source(instance, "maxmemory_bytes"), "maxmemory_bytes", maxmemory),
         Evidence(_source(instance, "container_memory_limit_bytes"), "container_memory_limit_bytes", limit),
         Evidence("compose", "maxmemory_ratio", round(ratio, 3), f"< {threshold}")),
    )
