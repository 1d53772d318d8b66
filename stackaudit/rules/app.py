"""App-server rules: pools against threads, concurrency against cores, and the PostgreSQL
connection budget (APP, PG101)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from stackaudit.config import Settings
from stackaudit.facts import Facts
from stackaudit.facts.app import live_connections
from stackaudit.model import Evidence, Hit, Phase, Recommendation, Risk, Severity
from stackaudit.rules import rule
from stackaudit.tuning.appserver import (
    connection_budget,
    pool_explanation,
    postgres_limits,
    process_connections,
)


def _processes(facts: Facts) -> list[Mapping[str, Any]]:
    return [p for p in facts.get("app").get("processes") or [] if isinstance(p, Mapping)]


def _origin(proc: Mapping[str, Any], field_name: str) -> str:
    return next((str(e.get("from")) for e in proc.get("evidence") or [] if e.get("field") == field_name),
                "unknown")


def _cores(facts: Facts, proc: Mapping[str, Any]) -> float | None:
    """The cores a service may use: its compose `cpus` limit, else the host's (cgroup) CPUs."""
    service: Mapping[str, Any] = next((s for p in facts.get("compose").get("projects") or []
                    for s in (p.get("services") or {}).values()
                    if s.get("name") == proc.get("service") and p.get("name") == proc.get("project")), {})
    host = facts.get("host")
    candidates = [service.get("cpus"), host.get("cpu_limit_cores"), host.get("cpu_count")]
    return next((float(c) for c in candidates if isinstance(c, (int, float)) and c > 0), None)


@rule("APP001", "app-pool-smaller-than-threads", Severity.HIGH, needs=("app",))
def pool_smaller_than_threads(facts: Facts, settings: Settings) -> Iterator[Hit]:
    """
    ## What it checks
    Each app process whose database pool has fewer connections than the process has threads (Puma
    threads, Sidekiq concurrency, Gunicorn threads, greenlets) using that pool.

    ## Why it matters
    A pool is per process and each thread checks out one connection while it works. With 16
    Sidekiq threads and a pool of 5, 11 threads wait; after Active Record's checkout_timeout
    (5 s) they raise ActiveRecord::ConnectionTimeoutError and the job fails and is retried.

    ## Recommendation
    Make the pool at least the thread count of every process that uses it (`pool:` in
    database.yml, usually `DB_POOL` or `RAILS_MAX_THREADS`), or lower the thread count. A larger
    pool does not open more connections than threads, so this does not grow the connection budget
    beyond what the threads could already use.

    ## Estimated effect
    No more connection checkout timeouts under load; the process does the work it was sized for.

    ## Fix safety
    Needs a restart of the service; check PG101 first so the new total still fits max_connections.

    ## References
    - Rails guides, "Configuring a Database" (pool) and the generated puma.rb comment: "configure
      [pools] to provide at least as many connections as the number of threads"
    - Sidekiq wiki, "Advanced Options": concurrency and the database pool
    """
    for proc in _processes(facts):
        conn = process_connections(proc)
        if conn.db_pool is None or conn.threads is None or conn.db_pool >= conn.threads:
            continue
        waiting = conn.threads - conn.db_pool
        yield Hit(
            f"{conn.project}/{conn.service}",
            f"{conn.service} ({conn.kind}) runs {conn.threads} threads per process but its database pool "
            f"has {conn.db_pool} connections: up to {waiting} threads wait for a connection and time out.",
            Recommendation(
                summary=f"Raise the pool of {conn.service} to at least {conn.threads} (or run "
                        f"{conn.db_pool} threads).",
                estimated_effect="no connection checkout timeouts; no new connections beyond the threads",
                risk=Risk.CONFIRM, effort_minutes=10, phase=Phase.NOW,
                action=f"pool >= {conn.threads} for {conn.service} (set at: {_origin(proc, 'db_pool')})"),
            (Evidence("app", "threads_per_process", conn.threads, f"<= pool {conn.db_pool}"),
             Evidence("app", "threads_from", _origin(proc, "concurrency" if conn.role == "worker" and
                                                     conn.kind in ("sidekiq", "celery") else "threads")),
             Evidence("app", "db_pool_per_process", conn.db_pool, f">= {conn.threads}"),
             Evidence("app", "db_pool_from", _origin(proc, "db_pool"))),
        )


@rule("APP002", "app-concurrency-vs-cores", Severity.MEDIUM, needs=("app", "host"))
def concurrency_vs_cores(facts: Facts, settings: Settings) -> Iterator[Hit]:
    """
    ## What it checks
    Web server processes against the cores the service may use (more than 2 per core), threads
    per web process (more than 16), and job threads per worker process (more than 50), with the
    thresholds in `[thresholds.APP002]`.

    ## Why it matters
    Ruby's GVL and Python's GIL let one thread per process run code at a time, so throughput
    comes from processes, about one per core. More processes than cores only add memory and
    context switches; many threads per process add latency to every request that shares it.
    Very high job concurrency also multiplies database connections (see PG101).

    ## Recommendation
    About one Puma/Uvicorn worker per core (Gunicorn sync: 2 x cores + 1), 3-5 threads per
    Rails worker, and job concurrency you can back with database connections. `stackaudit tune
    app` prints the numbers and the .env lines.

    ## Estimated effect
    Lower latency under load and less memory; no change in capacity if the app is I/O bound.
    Measure before and after (`stackaudit verify`).

    ## Fix safety
    Needs a restart of the service; behaviour change under load.

    ## References
    - Rails 7.2 release notes, "Set a new default for the Puma thread count" (3)
    - Gunicorn docs, "How Many Workers?" ((2 x cores) + 1)
    - Sidekiq wiki, "Advanced Options" (concurrency 50 or less)
    """
    per_core = settings.threshold("APP002", "web_processes_per_core")
    max_web_threads = settings.threshold("APP002", "max_web_threads")
    max_job_threads = settings.threshold("APP002", "max_job_threads")
    for proc in _processes(facts):
        conn = process_connections(proc)
        cores = _cores(facts, proc)
        subject = f"{conn.project}/{conn.service}"
        if conn.role == "web" and cores and conn.processes > per_core * cores:
            yield _hit(subject, f"{conn.service} ({conn.kind}) runs {conn.processes} worker processes on "
                       f"{cores:g} cores ({conn.processes / cores:.1f} per core, more than {per_core:g}).",
                       f"Run about {max(1, int(cores))} workers.",
                       [Evidence("app", "web_processes", conn.processes, f"<= {per_core * cores:g}"),
                        Evidence("host", "cores", cores),
                        Evidence("app", "workers_from", _origin(proc, "workers"))])
        if conn.role == "web" and conn.kind != "gunicorn" and (conn.threads or 0) > max_web_threads:
            yield _hit(subject, f"{conn.service} ({conn.kind}) runs {conn.threads} threads per process "
                       f"(more than {max_web_threads:g}).", "Use 3-5 threads per worker and more workers.",
                       [Evidence("app", "threads_per_process", conn.threads, f"<= {max_web_threads:g}"),
                        Evidence("app", "threads_from", _origin(proc, "threads"))])
        if conn.role == "worker" and proc.get("pool_type") not in ("gevent", "eventlet") \
                and (conn.threads or 0) > max_job_threads:
            yield _hit(subject, f"{conn.service} ({conn.kind}) runs {conn.threads} job threads in one "
                       f"process (more than {max_job_threads:g}).",
                       "Run more worker processes with lower concurrency each.",
                       [Evidence("app", "job_threads_per_process", conn.threads, f"<= {max_job_threads:g}"),
                        Evidence("app", "concurrency_from", _origin(proc, "concurrency"))])
        if conn.role == "worker" and proc.get("pool_type") in ("prefork", "processes") and cores \
                and conn.processes > per_core * cores:
            yield _hit(subject, f"{conn.service} ({conn.kind}) forks {conn.processes} worker processes on "
                       f"{cores:g} cores.", f"Use about {max(1, int(cores))} processes (Celery's default).",
                       [Evidence("app", "job_processes", conn.processes, f"<= {per_core * cores:g}"),
                        Evidence("host", "cores", cores)])


def _hit(subject: str, message: str, summary: str, evidence: list[Evidence]) -> Hit:
    return Hit(subject, message,
               Recommendation(summary=summary, estimated_effect="lower latency and memory; measure it",
                              risk=Risk.CONFIRM, effort_minutes=15, phase=Phase.WEEK,
                              action="stackaudit tune app"),
               evidence)


@rule("PG101", "pg-connection-budget-exceeded", Severity.HIGH, needs=("app", "postgres"))
def connection_budget_exceeded(facts: Facts, settings: Settings) -> Iterator[Hit]:
    """
    ## What it checks
    The connections the app processes can open - per process min(threads, pool), times processes
    and replicas, plus a small allowance for admin sessions, migrations, cron and exporters -
    against max_connections minus superuser_reserved_connections (and reserved_connections on
    PostgreSQL 16+).

    ## Why it matters
    When the sum exceeds the slots, the next process to connect gets "sorry, too many clients
    already": requests and jobs fail under load or during a deploy, when old and new containers
    overlap. A pool size is per process: DB_POOL=52 does not mean 52 connections in total, and
    does not mean 52 per process either when the process has 8 threads.

    ## Recommendation
    Lower threads or processes, raise max_connections (it costs memory per slot and needs a
    restart), or put PgBouncer (transaction pooling) between the app and PostgreSQL.
    `stackaudit tune app` shows the arithmetic.

    ## Estimated effect
    No connection refusals at peak or during deploys.

    ## Fix safety
    Changing max_connections needs a PostgreSQL restart; app changes need a service restart.

    ## References
    - PostgreSQL docs, "Connections and Authentication": max_connections,
      superuser_reserved_connections, reserved_connections (16+)
    - Rails guides, "Configuring a Database" (the pool is per process)
    """
    limits = postgres_limits(facts.get("postgres"))
    processes = _processes(facts)
    if limits is None or not processes:
        return
    budget = connection_budget(processes, limits)
    if budget.fits:
        return
    evidence = [Evidence("app", f"connections_{p.service}", p.total, p.arithmetic())
                for p in budget.processes if p.counted]
    evidence += [Evidence("app", "app_connections_total", budget.app_total),
                 Evidence("app", "others_allowance", budget.others),
                 Evidence("postgres", "available_connections", budget.available,
                          budget.available_arithmetic())]
    live = sum(int(r.get("live") or 0) for r in live_connections(facts))
    if live:
        evidence.append(Evidence("postgres", "live_connections_now", live))
    note = pool_explanation(processes)
    severity = Severity.CRITICAL if budget.app_total > budget.available else Severity.HIGH
    yield Hit(
        "postgres/max_connections",
        f"The app can open {budget.total} connections ({budget.app_total} from app processes + "
        f"{budget.others} others) but PostgreSQL has {budget.available} available "
        f"({budget.available_arithmetic()}).",
        Recommendation(
            summary="Reduce threads/processes, raise max_connections, or add PgBouncer.",
            estimated_effect=f"{budget.total - budget.available} fewer refused connections at peak",
            risk=Risk.CONFIRM, effort_minutes=30, phase=Phase.NOW,
            action="stackaudit tune app" + (f"  # {note}" if note else "")),
        evidence, severity)
