"""The PostgreSQL connection budget of the app servers, and worker/thread/pool recommendations. Pure.

A Rails/Django/SQLAlchemy pool belongs to one OS process, and a process uses at most one connection
per thread at a time (Active Record checks one out per thread; Django keeps one per thread). So a
process holds at most min(threads, pool) connections, and the stack at most

    sum over services of replicas x processes x min(threads, pool)  +  a small allowance for others

which must fit in max_connections - superuser_reserved_connections (- reserved_connections, 16+).
A pool larger than the thread count is a ceiling that is never reached, not a total (ERRATA 14).

Processes that connect through PgBouncer are its clients: PostgreSQL sees only the pooler's server
connections, at most (default_pool_size + reserve_pool_size) per database/user pair, capped by
max_db_connections, and never more than its clients (pgbouncer.org/config.html). Their own sum
must fit the pooler's max_client_conn instead. When the PgBouncer was read live (the pgbouncer
source), its pools as it applies them (tuning.pgbouncer) replace the estimate from its settings.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# Sessions that are not app processes: an admin psql, a migration or rake/manage.py task running
# beside the app, a pg_dump. Exporters and cron jobs found as services add one each.
OTHERS_ALLOWANCE = 3
PG_DEFAULT_MAX_CONNECTIONS = 100
PG_DEFAULT_SUPERUSER_RESERVED = 3  # postgresql.conf default; reserved_connections (16+) default 0

# Recommendation bounds (sources in the comments where they are used).
RAILS_THREADS_CEILING = 5  # Rails generated puma.rb: 5 until 7.1, 3 since 7.2 (latency under the GVL)
SIDEKIQ_MAX_CONCURRENCY = 50  # Sidekiq wiki "Advanced Options": keep concurrency at 50 or below
ASSUMED_WORKER_BYTES = {"puma": 512 * 2**20, "sidekiq": 512 * 2**20, "gunicorn": 200 * 2**20,
                        "uvicorn": 200 * 2**20, "celery": 200 * 2**20, "rq": 150 * 2**20}
APP_MEMORY_SHARE = 0.5  # the app may take half the memory; the database, Redis and the OS the rest


@dataclass(frozen=True)
class ProcessConnections:
    project: str
    service: str
    kind: str
    role: str
    replicas: int
    processes: int
    threads: int | None
    db_pool: int | None
    per_process: int
    limited_by: str  # "threads" | "pool" | "assumed"
    counted: bool
    via_pooler: str | None = None
    database: str | None = None
    extra_per_process: int = 0  # beside the threads': Solid Queue polling + heartbeat, GoodJob LISTEN
    extra_per_replica: int = 0  # Solid Queue's supervisor and dispatchers

    @property
    def instances(self) -> int:
        return self.replicas * self.processes

    @property
    def total(self) -> int:
        if not self.counted:
            return 0
        return self.replicas * (self.processes * self.per_process + self.extra_per_replica)

    @property
    def pool_needed(self) -> int | None:
        """The pool that lets every thread (and the helper connections) work without waiting."""
        return None if self.threads is None else self.threads + self.extra_per_process

    def arithmetic(self) -> str:
        threads = "?" if self.threads is None else str(self.threads)
        threads += f" threads + {self.extra_per_process}" if self.extra_per_process else " threads"
        pool = "none" if self.db_pool is None else str(self.db_pool)
        unit = "processes" if self.processes != 1 else "process"
        helpers = f" + {self.extra_per_replica} supervisor/dispatchers" if self.extra_per_replica else ""
        shape = f"{self.processes} {unit} x min({threads}, pool {pool}){helpers}"
        if self.replicas != 1:
            shape = f"{self.replicas} replicas x ({shape})"
        via = f" through {self.via_pooler}" if self.via_pooler else ""
        return f"{self.service} ({self.kind}): {shape} = {self.total}{via}"


def process_connections(proc: Mapping[str, Any]) -> ProcessConnections:
    threads = _int_or_none(proc.get("threads"))
    pool = _int_or_none(proc.get("db_pool"))
    extra = _int_or_none(proc.get("extra_per_process")) or 0
    if threads is None and pool is None:
        per, limited = 1, "assumed"
    elif threads is None or (pool is not None and pool < threads + extra):
        per, limited = int(pool or 0), "pool"
    else:
        per, limited = threads + extra, "threads"
    return ProcessConnections(
        project=str(proc.get("project") or ""), service=str(proc.get("service") or ""),
        kind=str(proc.get("kind") or "unknown"), role=str(proc.get("role") or "web"),
        replicas=max(1, _int_or_none(proc.get("replicas")) or 1),
        processes=max(1, _int_or_none(proc.get("processes")) or 1),
        threads=threads, db_pool=pool, per_process=per, limited_by=limited,
        counted=proc.get("uses_database", True) is not False,
        via_pooler=str(proc["via_pooler"]) if proc.get("via_pooler") else None,
        extra_per_process=extra, extra_per_replica=_int_or_none(proc.get("extra_per_replica")) or 0,
        database=(proc.get("database_target") or {}).get("database"),
    )


@dataclass(frozen=True)
class PoolerConnections:
    """A PgBouncer's two sides: the client connections the app can open to it, and the server
    connections it can open to PostgreSQL."""

    service: str
    pool_mode: str
    default_pool_size: int
    reserve_pool_size: int
    max_db_connections: int  # 0: no cap
    max_client_conn: int
    databases: int  # database/user pairs it pools for (one user per database assumed)
    clients: int
    live_capacity: int | None = None  # from its admin console (SHOW DATABASES/POOLS), when read
    live_arithmetic: str | None = None

    @property
    def per_database(self) -> int:
        size = self.default_pool_size + self.reserve_pool_size
        return min(size, self.max_db_connections) if self.max_db_connections else size

    @property
    def capacity(self) -> int:
        if self.live_capacity is not None:
            return self.live_capacity
        return self.per_database * self.databases

    @property
    def server_connections(self) -> int:
        return min(self.clients, self.capacity)

    @property
    def clients_fit(self) -> bool:
        return self.clients <= self.max_client_conn

    def arithmetic(self) -> str:
        if self.live_capacity is not None:
            return (f"{self.service} (PgBouncer, {self.pool_mode} pooling, live pools: "
                    f"{self.live_arithmetic or self.live_capacity}): min({self.clients} client "
                    f"connections, {self.capacity}) = {self.server_connections} server connections")
        pool = f"default_pool_size {self.default_pool_size} + reserve_pool_size {self.reserve_pool_size}"
        if self.max_db_connections:
            pool = f"min({pool}, max_db_connections {self.max_db_connections})"
        unit = "database" if self.databases == 1 else "databases"
        return (f"{self.service} (PgBouncer, {self.pool_mode} pooling): min({self.clients} client "
                f"connections, {self.databases} {unit} x {pool}) = {self.server_connections} "
                "server connections")

    def to_json(self) -> dict[str, Any]:
        return {"service": self.service, "pool_mode": self.pool_mode, "clients": self.clients,
                "max_client_conn": self.max_client_conn, "capacity": self.capacity,
                "server_connections": self.server_connections, "arithmetic": self.arithmetic(),
                "capacity_from": "live" if self.live_capacity is not None else "settings"}


def pooler_connections(pooler: Mapping[str, Any],
                       processes: Sequence[ProcessConnections]) -> PoolerConnections:
    name = str(pooler.get("service") or "")
    routed = [p for p in processes if p.counted and p.via_pooler == name]
    return PoolerConnections(
        service=name, pool_mode=str(pooler.get("pool_mode") or "session"),
        default_pool_size=_int_or_none(pooler.get("default_pool_size")) or 20,
        reserve_pool_size=_int_or_none(pooler.get("reserve_pool_size")) or 0,
        max_db_connections=_int_or_none(pooler.get("max_db_connections")) or 0,
        max_client_conn=_int_or_none(pooler.get("max_client_conn")) or 100,
        databases=max(1, len({p.database for p in routed})), clients=sum(p.total for p in routed),
        live_capacity=_int_or_none(pooler.get("live_capacity")),
        live_arithmetic=str(pooler["live_arithmetic"]) if pooler.get("live_arithmetic") else None,
    )


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


@dataclass(frozen=True)
class PostgresLimits:
    max_connections: int
    superuser_reserved: int
    reserved: int = 0
    source: str = "postgres facts"

    @property
    def available(self) -> int:
        return self.max_connections - self.superuser_reserved - self.reserved


DEFAULT_LIMITS = PostgresLimits(PG_DEFAULT_MAX_CONNECTIONS, PG_DEFAULT_SUPERUSER_RESERVED, 0,
                                "PostgreSQL defaults (server not reached)")


def postgres_limits(postgres: Mapping[str, Any]) -> PostgresLimits | None:
    """max_connections and the reserved slots from the postgres facts' settings, if present."""
    settings = postgres.get("settings") or {}

    def number(name: str) -> int | None:
        entry = settings.get(name)
        value = entry.get("setting", entry.get("value")) if isinstance(entry, Mapping) else entry
        return _int_or_none(value)

    max_connections = number("max_connections")
    if max_connections is None:
        return None
    superuser = number("superuser_reserved_connections")
    return PostgresLimits(max_connections,
                          PG_DEFAULT_SUPERUSER_RESERVED if superuser is None else superuser,
                          number("reserved_connections") or 0)


@dataclass(frozen=True)
class ConnectionBudget:
    processes: tuple[ProcessConnections, ...]
    others: int
    limits: PostgresLimits
    poolers: tuple[PoolerConnections, ...] = ()

    @property
    def direct(self) -> list[ProcessConnections]:
        """The processes that connect to PostgreSQL itself (not through a known pooler)."""
        pooled = {p.service for p in self.poolers}
        return [p for p in self.processes if p.counted and p.via_pooler not in pooled]

    @property
    def app_total(self) -> int:
        """Connections PostgreSQL sees from the app: its own processes' and the poolers'."""
        return sum(p.total for p in self.direct) + sum(p.server_connections for p in self.poolers)

    @property
    def total(self) -> int:
        return self.app_total + self.others

    @property
    def available(self) -> int:
        return self.limits.available

    @property
    def fits(self) -> bool:
        return self.total <= self.available

    def available_arithmetic(self) -> str:
        reserved = f" - reserved_connections {self.limits.reserved}" if self.limits.reserved else ""
        return (f"max_connections {self.limits.max_connections} - superuser_reserved_connections "
                f"{self.limits.superuser_reserved}{reserved} = {self.available}")

    def arithmetic(self) -> list[str]:
        lines = [p.arithmetic() for p in self.processes if p.counted]
        lines += [p.arithmetic() for p in self.poolers]
        terms = [str(p.total) for p in self.direct] + [str(p.server_connections) for p in self.poolers]
        lines.append(f"app processes: {' + '.join(terms) or '0'} = {self.app_total}")
        lines.append(f"others (admin, migrations, cron, exporters, pg_dump): {self.others}")
        lines.append(f"total {self.total} against available {self.available_arithmetic()}")
        return lines

    def verdict(self) -> str:
        state = "fits" if self.fits else "is exceeded"
        return (f"The connection budget {state}: app processes can open at most {self.app_total} of the "
                f"{self.available} available connections ({self.total} of {self.available} with "
                f"{self.others} kept for admin sessions, migrations, cron and exporters).")

    def to_json(self) -> dict[str, Any]:
        return {
            "processes": [{"service": p.service, "kind": p.kind, "replicas": p.replicas,
                           "processes": p.processes, "threads": p.threads, "db_pool": p.db_pool,
                           "per_process": p.per_process, "limited_by": p.limited_by,
                           "connections": p.total, "via_pooler": p.via_pooler, "arithmetic": p.arithmetic()}
                          for p in self.processes if p.counted],
            "poolers": [p.to_json() for p in self.poolers],
            "app_total": self.app_total, "others": self.others, "total": self.total,
            "max_connections": self.limits.max_connections,
            "superuser_reserved_connections": self.limits.superuser_reserved,
            "reserved_connections": self.limits.reserved, "available": self.available,
            "fits": self.fits, "arithmetic": self.arithmetic(), "verdict": self.verdict(),
        }


def connection_budget(processes: Sequence[Mapping[str, Any]], limits: PostgresLimits,
                      others: int = OTHERS_ALLOWANCE,
                      poolers: Sequence[Mapping[str, Any]] = ()) -> ConnectionBudget:
    counted = tuple(process_connections(p) for p in processes)
    return ConnectionBudget(counted, others, limits, tuple(pooler_connections(p, counted) for p in poolers))


def pool_explanation(processes: Sequence[Mapping[str, Any]]) -> str | None:
    """Why a pool far above the thread count is not a total (ERRATA 14), or None if none is."""
    oversized = [process_connections(p) for p in processes]
    oversized = [p for p in oversized if p.db_pool is not None and p.threads is not None
                 and p.db_pool > p.threads]
    if not oversized:
        return None
    pools = sorted({p.db_pool for p in oversized if p.db_pool is not None})
    holders = ", ".join(f"{p.instances} {p.kind} process{'es' if p.instances != 1 else ''} of "
                        f"{p.threads} threads" for p in oversized)
    return (f"The database pool ({'/'.join(map(str, pools))}) is per process, not a total: each of "
            f"{holders} has its own pool, and a process uses at most one connection per thread, so "
            "it never opens more connections than it has threads. Pools open connections lazily; "
            "a pool above the thread count costs nothing but says nothing about the total either.")


# ---------------------------------------------------------------------------------------------
# recommendations for `stackaudit tune app`


@dataclass(frozen=True)
class Resources:
    cores: float
    memory_bytes: int | None


@dataclass
class ServiceAdvice:
    project: str
    service: str
    kind: str
    current: dict[str, int | None]
    recommended: dict[str, int | None]
    reasons: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)  # .env lines to change
    manual: list[str] = field(default_factory=list)  # numbers set in a command or a file

    def to_json(self) -> dict[str, Any]:
        return {"project": self.project, "service": self.service, "kind": self.kind,
                "current": self.current, "recommended": self.recommended, "reasons": self.reasons,
                "env": self.env, "manual": self.manual}


@dataclass(frozen=True)
class AppTuning:
    services: tuple[ServiceAdvice, ...]
    env: dict[str, str]
    budget_now: ConnectionBudget | None
    budget_after: ConnectionBudget | None
    pool_note: str | None

    def env_lines(self) -> list[str]:
        return [f"{k}={v}" for k, v in self.env.items()]

    def to_json(self) -> dict[str, Any]:
        return {"services": [s.to_json() for s in self.services], "env": self.env,
                "env_lines": self.env_lines(),
                "budget": self.budget_now.to_json() if self.budget_now else None,
                "budget_after": self.budget_after.to_json() if self.budget_after else None,
                "pool_explanation": self.pool_note}


def recommend(processes: Sequence[Mapping[str, Any]], resources: Resources,
              limits: PostgresLimits | None = None,
              measured_bytes_per_process: Mapping[str, int] | None = None,
              poolers: Sequence[Mapping[str, Any]] = ()) -> AppTuning:
    measured = measured_bytes_per_process or {}

    def plan(hold: set[str]) -> tuple[list[ServiceAdvice], dict[str, str], list[dict[str, Any]]]:
        advice = [_advise(p, resources, measured.get(str(p.get("service"))), str(p.get("service")) in hold)
                  for p in processes]
        env = _merge_env(advice, processes)
        after = [_apply(p, a) for p, a in zip(processes, advice, strict=True)]
        _pool_for_shared_var(after, env, advice)
        return advice, env, after

    advice, env, after = plan(set())
    budget_now = connection_budget(processes, limits, poolers=poolers) if limits else None
    budget_after = connection_budget(after, limits, poolers=poolers) if limits else None
    if budget_after is not None and not budget_after.fits:
        # More workers for the cores would break the connection budget: keep the worker count of
        # the services that connect to PostgreSQL directly (a pooler's clients cost no slot).
        advice, env, after = plan({p.service for p in budget_after.direct})
        budget_after = connection_budget(after, budget_after.limits, poolers=poolers)
    return AppTuning(tuple(advice), env, budget_now, budget_after, pool_explanation(processes))


def measured_process_bytes(processes: Sequence[Mapping[str, Any]],
                           containers: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """Per app service, the memory one of its processes uses now: its running containers' usage
    (docker stats, page cache excluded) divided by the processes they run. A Puma or Gunicorn
    master is counted with its workers, so this errs a little high, on the safe side."""
    measured: dict[str, int] = {}
    for proc in processes:
        mine = [c for c in containers if c.get("compose_project") == proc.get("project")
                and c.get("compose_service") == proc.get("service") and c.get("memory_usage_bytes")]
        per_container = max(1, _int_or_none(proc.get("processes")) or 1)
        if mine:
            usage = sum(int(c["memory_usage_bytes"]) for c in mine)
            measured[str(proc.get("service"))] = usage // (len(mine) * per_container)
    return measured


def _advise(proc: Mapping[str, Any], resources: Resources, measured: int | None,
            hold_workers: bool = False) -> ServiceAdvice:
    kind = str(proc.get("kind"))
    conn = process_connections(proc)
    current: dict[str, int | None] = {"workers": conn.processes, "threads": conn.threads,
                                      "db_pool": conn.db_pool}
    advice = ServiceAdvice(conn.project, conn.service, kind, current, dict(current))
    cores = max(1, math.floor(resources.cores))
    if kind in ("puma", "gunicorn", "uvicorn"):
        _advise_web(advice, proc, cores, resources, measured, hold_workers)
    elif kind == "celery" and proc.get("pool_type") in (None, "prefork", "processes"):
        advice.recommended["workers"] = cores
        advice.reasons.append(f"prefork: one process per core ({cores}), Celery's own default")
    elif kind == "sidekiq" and (conn.threads or 0) > SIDEKIQ_MAX_CONCURRENCY:
        advice.recommended["threads"] = SIDEKIQ_MAX_CONCURRENCY
        advice.reasons.append("Sidekiq advises concurrency of 50 or less per process; run more "
                              "processes for more throughput")
    threads = advice.recommended["threads"]
    if conn.db_pool is not None and threads is not None and conn.db_pool < threads:
        advice.recommended["db_pool"] = threads
        advice.reasons.append(f"pool {conn.db_pool} < {threads} threads: threads would wait for a "
                              "connection (Active Record raises ConnectionTimeoutError after 5 s)")
    _env_for(advice, proc)
    return advice


def _advise_web(advice: ServiceAdvice, proc: Mapping[str, Any], cores: int, resources: Resources,
                measured: int | None, hold_workers: bool = False) -> None:
    kind = advice.kind
    conn = process_connections(proc)
    # Puma and Uvicorn: a process per core (the GVL/GIL lets one thread run Ruby/Python at a time).
    # Gunicorn sync workers: its docs' starting point (2 x cores) + 1.
    wanted = 2 * cores + 1 if kind == "gunicorn" and (conn.threads or 1) == 1 else cores
    per_worker = measured or ASSUMED_WORKER_BYTES.get(kind, 256 * 2**20)
    basis = "measured: the containers' memory / processes" if measured else "assumed for a " + kind
    if resources.memory_bytes:
        fits = max(1, int(resources.memory_bytes * APP_MEMORY_SHARE // per_worker))
        if fits < wanted:
            advice.reasons.append(f"memory: {fits} workers of {per_worker // 2**20} MiB ({basis}) fit in "
                                  f"half of {resources.memory_bytes // 2**20} MiB")
            wanted = fits
    if hold_workers and wanted > conn.processes:
        advice.reasons.append(f"workers kept at {conn.processes}: {wanted} would exceed the PostgreSQL "
                              "connection budget (PG101); a pooler (PgBouncer) or a larger max_connections "
                              "would allow more")
        wanted = conn.processes
    advice.recommended["workers"] = wanted
    if wanted != conn.processes:
        advice.reasons.append(f"workers {conn.processes} -> {wanted} for {cores} cores")
    if kind == "puma" and conn.threads is not None and conn.threads > RAILS_THREADS_CEILING:
        advice.recommended["threads"] = RAILS_THREADS_CEILING
        advice.reasons.append(
            f"threads {conn.threads} -> {RAILS_THREADS_CEILING}: under Ruby's GVL more threads per "
            "worker mostly add latency unless requests wait on I/O (Rails 7.2+ generates 3); "
            "measure request latency before and after")


def _env_for(advice: ServiceAdvice, proc: Mapping[str, Any]) -> None:
    """Map each changed number back to where it is set: an env var becomes a .env line."""
    field_names = {"workers": "workers", "threads": "threads", "db_pool": "db_pool"}
    if proc.get("kind") in ("sidekiq", "celery"):
        field_names["threads"] = "concurrency"
    if proc.get("kind") == "celery":
        field_names["workers"] = "concurrency"
    origins = {e.get("field"): str(e.get("from", "")) for e in proc.get("evidence") or []}
    for key, evidence_field in field_names.items():
        new, old = advice.recommended.get(key), advice.current.get(key)
        if new is None or new == old:
            continue
        origin = origins.get(evidence_field, "")
        var = _env_var(origin, advice.kind, key)
        if var:
            advice.env[var] = str(new)
        else:
            advice.manual.append(f"{evidence_field} {old} -> {new} (set at: {origin or 'default'})")


# Where a default comes from when nothing sets it: the variable to set to change it.
_DEFAULT_VARS = {("puma", "workers"): "WEB_CONCURRENCY", ("puma", "threads"): "RAILS_MAX_THREADS",
                 ("gunicorn", "workers"): "WEB_CONCURRENCY", ("uvicorn", "workers"): "WEB_CONCURRENCY",
                 ("puma", "db_pool"): "RAILS_MAX_THREADS", ("sidekiq", "db_pool"): "RAILS_MAX_THREADS"}
_ENV_NAME = re.compile(r"\b(?:env |ENV\.fetch\(\"|ENV\[\")([A-Z][A-Z0-9_]+)")


def _env_var(origin: str, kind: str = "", field_name: str = "") -> str | None:
    if "command flag" in origin or "literal" in origin:
        return None
    found = _ENV_NAME.findall(origin)
    if found:  # the first variable consulted wins when set (ENV.fetch("DB_POOL") { ENV.fetch(...) })
        return str(found[0])
    return _DEFAULT_VARS.get((kind, field_name))


def _readers(processes: Sequence[Mapping[str, Any]], var: str) -> list[str]:
    return [str(p.get("service")) for p in processes
            if any(var in str(e.get("from", "")) for e in p.get("evidence") or [])]


def _merge_env(advice: Sequence[ServiceAdvice], processes: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """One .env for the stack, for variables every service that reads them wants at the same value.
    A variable services want at different values stays in their own `env` (a compose
    `environment:` override per service) and is left out here."""
    wanted: dict[str, dict[str, str]] = {}
    for item in advice:
        for key, value in item.env.items():
            wanted.setdefault(key, {})[item.service] = value
    merged: dict[str, str] = {}
    for key, per_service in wanted.items():
        readers = set(_readers(processes, key)) | set(per_service)
        unchanged = readers - set(per_service)
        if len(set(per_service.values())) == 1 and not unchanged:
            merged[key] = next(iter(per_service.values()))
    return merged


def _apply(proc: Mapping[str, Any], advice: ServiceAdvice) -> dict[str, Any]:
    after = dict(proc)
    after["processes"] = advice.recommended.get("workers") or proc.get("processes")
    after["threads"] = advice.recommended.get("threads")
    after["db_pool"] = advice.recommended.get("db_pool")
    if proc.get("kind") == "celery" and proc.get("pool_type") in (None, "prefork", "processes"):
        after["threads"] = 1
    return after


def _pool_for_shared_var(after: list[dict[str, Any]], env: dict[str, str],
                         advice: Sequence[ServiceAdvice]) -> None:
    """A pool variable shared by web and job processes must cover the largest thread count."""
    by_var: dict[str, list[int]] = {}
    for proc in after:
        var = proc.get("pool_env_var")
        if var and proc.get("threads") is not None and proc.get("db_pool") is not None:
            by_var.setdefault(var, []).append(index_of(after, proc))
    for var, indexes in by_var.items():
        need = max(int(after[i]["threads"]) for i in indexes)
        have = min(int(after[i]["db_pool"]) for i in indexes)
        if need > have or (var in env and int(env[var]) < need):
            env[var] = str(need)
            for i in indexes:
                after[i]["db_pool"] = need
                advice[i].recommended["db_pool"] = need


def index_of(items: Sequence[Any], item: Any) -> int:
    return next(i for i, x in enumerate(items) if x is item)
