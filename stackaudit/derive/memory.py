"""How much memory and how many cores each part of the stack has, and what is left for a database.

One answer for every consumer: the PostgreSQL tuner's budget, the app tuner's resources, the rules
and the report's memory chart all read what this module works out from the facts.

- `host_resources(facts)`: what this host (or the cgroup stackaudit runs in) really has.
- `service_resources(facts, service)`: the same for one compose service or container: its own
  limits when it has them, else the host's.
- `memory_budget(facts, database=...)`: total = min(host RAM, the database's own limit); the
  database gets the total minus every co-located service (its limit, else its measured use + 25%,
  else an estimate by kind) minus an OS reserve. "The database" is a `Database` (where it runs, its
  product): PostgreSQL's (`postgres_database`, the default) or a MariaDB/MySQL server's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from stackaudit.facts import Facts, iter_services
from stackaudit.facts.host import effective_cores, effective_memory_bytes
from stackaudit.images import service_kind, service_product
from stackaudit.shapes import mapping, number, rows, source
from stackaudit.tuning.postgres import Budget, CoTenant, os_reserve
from stackaudit.tuning.units import GB, MB
from stackaudit.units import format_bytes


@dataclass(frozen=True)
class Resources:
    """Memory and cores one process group can use, and where each number comes from."""

    memory_bytes: int | None
    cores: float | None
    memory_basis: str
    cores_basis: str


def host_resources(facts: Facts) -> Resources:
    """The host's RAM and cores, or the cgroup limits of stackaudit's own process when tighter."""
    host = source(facts, "host")
    memory = effective_memory_bytes(host) if number(host.get("memory_total_bytes")) else None
    cores = effective_cores(host) if number(host.get("cpu_count")) else None
    limit = number(host.get("memory_limit_bytes"))
    limited = bool(limit) and memory == int(limit or 0)
    quota = number(host.get("cpu_limit_cores")) and cores == number(host.get("cpu_limit_cores"))
    return Resources(memory, cores, "cgroup limit" if limited else "host RAM" if memory else "unknown",
                     "cgroup CPU quota" if quota else "host CPUs" if cores else "unknown")


def service_resources(facts: Facts, service: str | None) -> Resources:
    """A compose service's (or its container's) own limits where it has them, else the host's."""
    host = host_resources(facts)
    if not service:
        return host
    container = next((c for c in rows(source(facts, "docker").get("containers"))
                      if c.get("compose_service") == service or c.get("name") == service), {})
    declared = next((s for s in iter_services(facts) if s.get("name") == service), {})
    memory_limits = [number(container.get("memory_limit_bytes")), number(declared.get("mem_limit_bytes"))]
    cpu_limits = [number(container.get("cpu_limit_cores")), number(declared.get("cpus"))]
    memory = min((int(m) for m in memory_limits if m), default=None)
    cores = min((c for c in cpu_limits if c), default=None)
    return Resources(
        min(memory, host.memory_bytes) if memory and host.memory_bytes else memory or host.memory_bytes,
        min(cores, host.cores) if cores and host.cores else cores or host.cores,
        f"{service}'s memory limit" if memory else host.memory_basis,
        f"{service}'s CPU limit" if cores else host.cores_basis,
    )


# Conservative memory estimates for co-located services that have neither a limit nor a
# measurement (ours, from typical resident sizes; a measurement or a limit always wins).
ESTIMATE_BY_KIND: dict[str, int] = {
    "app-process": 384 * MB,  # one Puma/Gunicorn worker process of a Rails/Django app
    "worker-process": 512 * MB,  # one Sidekiq/Celery process (threads share it, but it grows)
    "app": 768 * MB,  # an app container whose processes we could not count
    "redis": 256 * MB,
    "database": GB,
    "proxy": 64 * MB,
    "other": 256 * MB,
}


MONITORING_ESTIMATES: dict[str, int] = {
    "prometheus": GB, "loki": 512 * MB, "grafana": 256 * MB, "alertmanager": 64 * MB,
    "cadvisor": 256 * MB, "node-exporter": 32 * MB, "node_exporter": 32 * MB, "promtail": 128 * MB,
    "tempo": 512 * MB, "jaeger": 256 * MB, "vector": 128 * MB, "fluent": 128 * MB,
    "postgres-exporter": 32 * MB, "postgres_exporter": 32 * MB, "redis-exporter": 32 * MB,
    "redis_exporter": 32 * MB, "uptime-kuma": 256 * MB, "netdata": 256 * MB,
}


PROXY_WORDS = ("nginx", "caddy", "traefik", "haproxy", "cloudflared", "envoy")


REDIS_WORDS = ("redis", "valkey", "keydb", "dragonfly")


DATABASE_WORDS = ("postgres", "postgis", "timescale", "mysql", "mariadb", "mongo")


WORKER_WORDS = ("sidekiq", "worker", "celery", "jobs", "rq", "queue")


APP_KINDS_WEB = ("puma", "gunicorn", "uvicorn", "unicorn", "passenger")


MEASURED_HEADROOM = 1.25  # a measurement is one moment: allow a quarter more for peaks


@dataclass(frozen=True)
class Database:
    """The database a budget is for: where its collector says it runs (`runs_in`: kind, container,
    service, project, memory_limit_bytes), the memory limit its server reports, and its product
    (images.service_product), which finds its compose service when runs_in names none."""

    product: str
    name: str
    runs_in: Mapping[str, Any]
    memory_limit_bytes: float | None = None


def postgres_database(facts: Facts) -> Database:
    postgres = source(facts, "postgres")
    return Database("postgres", "PostgreSQL", mapping(postgres.get("runs_in")),
                    number(postgres.get("memory_limit_bytes")))


def memory_budget(facts: Facts, memory_bytes: int | None = None, dedicated: bool = False, *,
                  database: Database | None = None) -> Budget:
    """total = min(host RAM, the database's own cgroup limit); the database (PostgreSQL's when not
    given) gets total minus co-located services minus an OS reserve. `memory_bytes` replaces the
    host RAM (what-if, ignores limits); `dedicated` ignores co-located services."""
    database = database or postgres_database(facts)
    host = source(facts, "host")
    notes: list[str] = []
    host_ram = memory_bytes or int(number(host.get("memory_total_bytes")) or 0)
    if not host_ram:
        host_ram = 4 * GB
        notes.append("host memory unknown: assumed 4GB (pass --memory)")
    db_limit = None if memory_bytes else database_limit(facts, database, host_ram)
    tenants = () if dedicated else tuple(co_tenants(facts, host_ram, database))
    reserve = os_reserve(host_ram)
    left = host_ram - sum(t.bytes for t in tenants) - reserve
    budget = min(left, db_limit) if db_limit else left
    floor = 256 * MB
    if budget < floor:
        notes.append(f"co-located services and the OS reserve leave {format_bytes(left)}: "
                     f"assumed {format_bytes(floor)} for {database.name}; the host is over-committed")
        budget = floor
    total = min(host_ram, db_limit) if db_limit else host_ram
    return Budget(host_ram, db_limit, total, tenants, reserve, int(budget), tuple(notes))


def database_limit(facts: Facts, database: Database, host_ram: int) -> int | None:
    """The cgroup limit of the database's container (docker facts, else its compose mem_limit), or
    of the server process when the collector reports one."""
    candidates = [database.memory_limit_bytes, number(database.runs_in.get("memory_limit_bytes"))]
    container = database_container(facts, database)
    if container:
        candidates.append(number(container.get("memory_limit_bytes")))
    service = database_service(facts, database)
    if service:
        candidates.append(number(service.get("mem_limit_bytes")))
    limits = [int(c) for c in candidates if c and 0 < c < host_ram]
    return min(limits) if limits else None


def database_container(facts: Facts, database: Database) -> dict[str, Any] | None:
    runs_in = database.runs_in
    for container in rows(source(facts, "docker").get("containers")):
        if runs_in.get("container") and container.get("name") == runs_in.get("container"):
            return container
        if runs_in.get("service") and container.get("compose_service") == runs_in.get("service") and (
                not runs_in.get("project") or container.get("compose_project") == runs_in.get("project")):
            return container
    return None


def database_service(facts: Facts, database: Database) -> dict[str, Any] | None:
    """The compose service that runs the database: the collector's runs_in, else the one service of
    its product."""
    runs_in = database.runs_in
    services = [s for p in rows(source(facts, "compose").get("projects"))
                for s in (p.get("services") or {}).values() if isinstance(s, dict)]
    for service in services:
        if runs_in.get("service") and service.get("name") == runs_in.get("service"):
            return service
    if runs_in.get("kind") == "host":
        return None
    same_product = [s for s in services if service_product(s) == database.product]
    return same_product[0] if len(same_product) == 1 else None


def postgres_runs_in(facts: Facts) -> dict[str, Any]:
    return dict(postgres_database(facts).runs_in)


def postgres_container(facts: Facts) -> dict[str, Any] | None:
    return database_container(facts, postgres_database(facts))


def postgres_service(facts: Facts) -> dict[str, Any] | None:
    """The compose service that runs PostgreSQL: the collector's runs_in, else one with a postgres image."""
    return database_service(facts, postgres_database(facts))


def _words(item: Mapping[str, Any]) -> list[str]:
    keys = ("name", "image", "image_repository", "compose_service")
    return [str(item.get(k) or "").lower() for k in keys]


# The compose collector's classification (images.classify_project) -> the budget's kinds.
_BUDGET_KINDS = {"database": "database", "monitoring": "monitoring", "proxy": "proxy"}


def kind_of(item: Mapping[str, Any], facts: Facts) -> str:
    """A co-tenant's kind: the compose collector's stamp (all the service's evidence), else its words."""
    service = item if "kind" in item and "product" in item else _compose_service(facts, item)
    if service is not None:
        found = service_kind(service)
        if found.product == "redis":
            return "redis"
        if found.kind in _BUDGET_KINDS:
            return _BUDGET_KINDS[found.kind]
    return kind_of_words(_words(item))


def _compose_service(facts: Facts, container: Mapping[str, Any]) -> Mapping[str, Any] | None:
    for project in rows(source(facts, "compose").get("projects")):
        if project.get("name") == container.get("compose_project"):
            found = (project.get("services") or {}).get(container.get("compose_service"))
            return found if isinstance(found, dict) and "kind" in found else None
    return None


def kind_of_words(words: Iterable[str]) -> str:
    text = " ".join(words)
    if any(w in text for w in MONITORING_ESTIMATES):  # first: "postgres-exporter" is monitoring
        return "monitoring"
    if any(w in text for w in DATABASE_WORDS):
        return "database"
    if any(w in text for w in REDIS_WORDS):
        return "redis"
    if any(w in text for w in PROXY_WORDS):
        return "proxy"
    return "other"


def co_tenants(facts: Facts, host_ram: int, database: Database | None = None) -> list[CoTenant]:
    """Every running container but the database's (PostgreSQL's when not given; docker facts), else
    every other compose service: its memory limit, else its measured usage (+25%), else an estimate
    by kind."""
    database = database or postgres_database(facts)
    own_container = database_container(facts, database)
    containers = [c for c in rows(source(facts, "docker").get("containers"))
                  if c.get("state", "running") == "running" and c is not own_container]
    if containers:
        return [_tenant(c, c.get("compose_service"), facts, host_ram, "memory_limit_bytes")
                for c in containers]
    own_service = database_service(facts, database)
    services = [s for p in rows(source(facts, "compose").get("projects"))
                for s in (p.get("services") or {}).values() if isinstance(s, dict) and s is not own_service]
    return [_tenant(s, s.get("name"), facts, host_ram, "mem_limit_bytes") for s in services]


def _tenant(item: Mapping[str, Any], service: Any, facts: Facts, host_ram: int, limit_key: str) -> CoTenant:
    name = str(item.get("name") or service or "?")
    kind = kind_of(item, facts)
    limit = number(item.get(limit_key))
    replicas = int(number(item.get("replicas")) or 1) if limit_key == "mem_limit_bytes" else 1
    if limit and limit < host_ram:
        return CoTenant(name, kind, int(limit) * replicas, "limit", f"memory limit {format_bytes(limit)}")
    usage = number(item.get("memory_usage_bytes"))
    if usage:
        return CoTenant(name, kind, int(usage * MEASURED_HEADROOM), "measured",
                        f"measured {format_bytes(usage)} + 25% headroom")
    estimate, kind, detail = _estimate(item, service, kind, facts)
    return CoTenant(name, kind, estimate * replicas, "estimate", detail)


def _estimate(item: Mapping[str, Any], service: Any, kind: str, facts: Facts) -> tuple[int, str, str]:
    words = " ".join(_words(item))
    if kind == "monitoring":
        size = next((v for k, v in MONITORING_ESTIMATES.items() if k in words), ESTIMATE_BY_KIND["other"])
        return size, kind, f"typical size of a {kind} service"
    if kind == "redis":
        size = _redis_maxmemory(facts, service) or ESTIMATE_BY_KIND["redis"]
        return size, kind, "Redis maxmemory" if _redis_maxmemory(facts, service) else "typical Redis size"
    if kind in ("database", "proxy"):
        return ESTIMATE_BY_KIND[kind], kind, f"typical size of a {kind}"
    processes = [p for p in rows(source(facts, "app").get("processes")) if p.get("service") == service]
    if processes:
        return _app_estimate(processes)
    if any(w in words for w in WORKER_WORDS):
        return ESTIMATE_BY_KIND["worker-process"], "worker", "typical job worker process"
    if any(w in words for w in (*APP_KINDS_WEB, "web", "app", "rails", "django", "api")):
        return ESTIMATE_BY_KIND["app"], "app", "typical app server container"
    return ESTIMATE_BY_KIND["other"], kind, "unknown service, conservative guess"


def _app_estimate(processes: list[dict[str, Any]]) -> tuple[int, str, str]:
    total, details, kind = 0, [], "app"
    for process in processes:
        count = int(number(process.get("processes")) or 1) * int(number(process.get("replicas")) or 1)
        is_worker = process.get("role") == "worker"
        kind = "worker" if is_worker else "app"
        each = ESTIMATE_BY_KIND["worker-process" if is_worker else "app-process"]
        total += count * each
        details.append(f"{count} {process.get('kind') or kind} process(es) x {format_bytes(each)}")
    return total, kind, ", ".join(details)


def _redis_maxmemory(facts: Facts, service: Any) -> int | None:
    for instance in rows(source(facts, "redis").get("instances")):
        if instance.get("service") == service and number(instance.get("maxmemory_bytes")):
            return int(number(instance.get("maxmemory_bytes")) or 0)
    return None


def database_cores(facts: Facts, database: Database, cpus: int | None = None) -> int:
    """Cores the database can use: --cpus, else its container's CPU limit, else the host's (its
    cgroup quota when set)."""
    if cpus:
        return max(1, cpus)
    host = source(facts, "host")
    candidates = [number(host.get("cpu_count")), number(host.get("cpu_limit_cores"))]
    container = database_container(facts, database)
    if container:
        candidates.append(number(container.get("cpu_limit_cores")))
    known = [c for c in candidates if c and c > 0]
    return max(1, int(min(known))) if known else 2
