"""Facts -> Derived: what several rules, the plan and the report all need, worked out once per audit.

`derive(facts)` runs after collection and before the rules (see `stackaudit.pipeline.audit`):

- `resources`: the host's memory and cores (its cgroup limits when tighter), the one answer to
  "how much does this host have" (`service_resources` answers it for one service);
- `memory_budget` and `postgres`: PostgreSQL's memory budget with its co-tenants, and the tuning the
  PG0xx rules compare the live settings with (None when PostgreSQL was not collected);
- `app`: the app tuner's advice and the connection budget before and after it;
- `redis`: maxmemory and eviction advice per Redis instance.

Everything here is pure: the facts go in, plain dataclasses come out. A `Derived` is never saved;
`stackaudit audit --facts` derives it again from the snapshot, so the findings are identical.
"""

from __future__ import annotations

from dataclasses import dataclass

from stackaudit.derive.memory import Resources, host_resources, memory_budget, service_resources
from stackaudit.derive.postgres import postgres_tuning
from stackaudit.facts import Facts
from stackaudit.shapes import rows, source
from stackaudit.tuning import appserver
from stackaudit.tuning.postgres import Budget, Tuning
from stackaudit.tuning.redis import RedisAdvice, advise

__all__ = ["Derived", "Resources", "app_tuning", "derive", "service_resources"]


@dataclass(frozen=True)
class Derived:
    resources: Resources
    memory_budget: Budget | None  # None when the host's memory is unknown
    postgres: Tuning | None  # None when PostgreSQL was not collected
    app: appserver.AppTuning | None  # None without app processes or the host's cores
    redis: tuple[RedisAdvice, ...] = ()


def derive(facts: Facts) -> Derived:
    resources = host_resources(facts)
    return Derived(
        resources=resources,
        memory_budget=memory_budget(facts) if resources.memory_bytes else None,
        postgres=postgres_tuning(facts) if facts.has("postgres") else None,
        app=app_tuning(facts),
        redis=tuple(advise(instance) for instance in rows(source(facts, "redis").get("instances"))),
    )


def app_tuning(facts: Facts, cores: float | None = None, memory_bytes: int | None = None,
               limits: appserver.PostgresLimits | None = None) -> appserver.AppTuning | None:
    """Workers, threads and pools for the host's cores and memory (or the given ones, for what-if),
    against PostgreSQL's connection limits (`limits` when given, else the live server's)."""
    processes = rows(source(facts, "app").get("processes"))
    resources = host_resources(facts)
    cores = cores or resources.cores
    if not processes or not cores:
        return None
    limits = limits or appserver.postgres_limits(source(facts, "postgres"))
    measured = appserver.measured_process_bytes(processes, rows(source(facts, "docker").get("containers")))
    memory = memory_bytes or resources.memory_bytes
    return appserver.recommend(processes, appserver.Resources(float(cores), memory), limits, measured,
                               poolers=rows(source(facts, "app").get("poolers")))
