"""App-server rules: pools against threads, concurrency against cores, PgBouncer's limits, PHP-FPM's
children against the container's memory, and the PostgreSQL connection budget (APP, PG101)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from stackaudit.config import Settings
from stackaudit.derive import Derived
from stackaudit.derive.app import app_poolers
from stackaudit.facts import Facts
from stackaudit.facts.pooler import version_tuple
from stackaudit.model import Evidence, Hit, Phase, Recommendation, Risk, Severity
from stackaudit.rules import rule
from stackaudit.tuning.appserver import (
    OTHERS_ALLOWANCE,
    PoolerConnections,
    ProcessConnections,
    pool_explanation,
    pooler_connections,
    process_connections,
)
from stackaudit.units import format_bytes


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
    threads, Sidekiq, Solid Queue or GoodJob threads, Gunicorn threads, greenlets) using that pool,
    plus the connections a job runner holds for itself (Solid Queue: 2 per worker process for
    polling and the heartbeat; GoodJob: 1 for LISTEN/NOTIFY).

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
    - Rails guides, "Configuring a Database" (pool):
      https://guides.rubyonrails.org/configuring.html#configuring-a-database
    - Rails' generated puma.rb (pools of at least as many connections as threads):
      https://github.com/rails/rails/blob/main/railties/lib/rails/generators/rails/app/templates/config/puma.rb.tt
    - Sidekiq wiki, "Advanced Options" (concurrency and the database pool):
      https://github.com/sidekiq/sidekiq/wiki/Advanced-Options
    - Solid Queue README (threads): https://github.com/rails/solid_queue
    - GoodJob README, "Database connections": https://github.com/bensheldon/good_job#database-connections
    """
    for proc in _processes(facts):
        conn = process_connections(proc)
        needed = conn.pool_needed
        if conn.db_pool is None or conn.threads is None or needed is None or conn.db_pool >= needed:
            continue
        waiting = needed - conn.db_pool
        helpers = (f" plus {conn.extra_per_process} connection(s) of its own "
                   f"({HELPER_CONNECTIONS.get(conn.kind, 'helpers')})" if conn.extra_per_process else "")
        yield Hit(
            f"{conn.project}/{conn.service}",
            f"{conn.service} ({conn.kind}) runs {conn.threads} threads per process{helpers} but its "
            f"database pool has {conn.db_pool} connections: up to {waiting} threads wait for a connection "
            "and time out.",
            Recommendation(
                summary=f"Raise the pool of {conn.service} to at least {needed} (or run "
                        f"{max(1, conn.db_pool - conn.extra_per_process)} threads).",
                estimated_effect="no connection checkout timeouts; no new connections beyond the threads",
                risk=Risk.CONFIRM, effort_minutes=10, phase=Phase.NOW,
                action=f"pool >= {needed} for {conn.service} (set at: {_origin(proc, 'db_pool')})"),
            (Evidence("app", "threads_per_process", conn.threads, f"<= pool {conn.db_pool}"),
             Evidence("app", "threads_from", _origin(proc, "concurrency" if conn.kind in JOB_RUNNERS
                                                     else "threads")),
             Evidence("app", "db_pool_per_process", conn.db_pool, f">= {needed}"),
             Evidence("app", "db_pool_from", _origin(proc, "db_pool"))),
        )


JOB_RUNNERS = ("sidekiq", "celery", "solid_queue", "good_job")  # cite their thread count as "concurrency"
# Connections a job runner holds besides its threads, and why (their READMEs).
HELPER_CONNECTIONS = {"solid_queue": "polling and heartbeat", "good_job": "LISTEN/NOTIFY"}


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
    - Rails 7.2 release notes (a default of 3 Puma threads):
      https://guides.rubyonrails.org/7_2_release_notes.html
    - Gunicorn, "How Many Workers?" ((2 x cores) + 1):
      https://docs.gunicorn.org/en/stable/design.html#how-many-workers
    - Sidekiq wiki, "Advanced Options" (concurrency 50 or less):
      https://github.com/sidekiq/sidekiq/wiki/Advanced-Options
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
def connection_budget_exceeded(facts: Facts, settings: Settings, derived: Derived) -> Iterator[Hit]:
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

    Processes whose database host is a PgBouncer service count as its clients: PostgreSQL sees the
    pooler's server connections instead, min(its clients, databases x (default_pool_size +
    reserve_pool_size), capped by max_db_connections). When PgBouncer was read live (the
    pgbouncer source), the pools it really runs replace that estimate: per database the
    pool_size + reserve_pool of each database/user pool (SHOW DATABASES, SHOW POOLS).

    ## Recommendation
    Lower threads or processes, raise max_connections (it costs memory per slot and needs a
    restart), or put PgBouncer (transaction pooling) between the app and PostgreSQL; behind a
    PgBouncer already, lower its default_pool_size or set max_db_connections.
    `stackaudit tune app` shows the arithmetic.

    ## Estimated effect
    No connection refusals at peak or during deploys.

    ## Fix safety
    Changing max_connections needs a PostgreSQL restart; app changes need a service restart.

    ## References
    - PostgreSQL docs, "Connections and Authentication" (max_connections, superuser_reserved_connections,
      reserved_connections 16+): https://www.postgresql.org/docs/current/runtime-config-connection.html
    - Rails guides, "Configuring a Database" (the pool is per process):
      https://guides.rubyonrails.org/configuring.html#configuring-a-database
    - PgBouncer, "Configuration" (default_pool_size, reserve_pool_size, max_db_connections):
      https://www.pgbouncer.org/config.html
    """
    budget = derived.connection_budget
    if budget is None or budget.fits:
        return
    evidence = [Evidence("app", f"connections_{p.service}", p.total, p.arithmetic())
                for p in budget.direct]
    evidence += [Evidence("app", f"server_connections_{p.service}", p.server_connections, p.arithmetic())
                 for p in budget.poolers]
    evidence += [Evidence("app", "app_connections_total", budget.app_total),
                 Evidence("app", "others_allowance", budget.others),
                 Evidence("postgres", "available_connections", budget.available,
                          budget.available_arithmetic())]
    live = sum(int(r.get("live") or 0) for r in derived.live_connections)
    if live:
        evidence.append(Evidence("postgres", "live_connections_now", live))
    note = pool_explanation(_processes(facts))
    severity = Severity.CRITICAL if budget.app_total > budget.available else Severity.HIGH
    yield Hit(
        "postgres/max_connections",
        f"The app can open {budget.total} connections ({budget.app_total} from app processes + "
        f"{budget.others} others) but PostgreSQL has {budget.available} available "
        f"({budget.available_arithmetic()}).",
        Recommendation(
            summary=(f"Lower default_pool_size or set max_db_connections on "
                     f"{', '.join(p.service for p in budget.poolers)}, or raise max_connections."
                     if budget.poolers else
                     "Reduce threads/processes, raise max_connections, or add PgBouncer."),
            estimated_effect=f"{budget.total - budget.available} fewer refused connections at peak",
            risk=Risk.CONFIRM, effort_minutes=30, phase=Phase.NOW,
            action="stackaudit tune app" + (f"  # {note}" if note else "")),
        evidence, severity)


def _pooler_sides(facts: Facts) -> Iterator[tuple[Mapping[str, Any], PoolerConnections]]:
    counted = [process_connections(p) for p in _processes(facts)]
    for pooler in app_poolers(facts):
        yield pooler, pooler_connections(pooler, counted)


def _pooler_evidence(pooler: Mapping[str, Any], *fields: str) -> list[Evidence]:
    """The pooler's settings with where each was read (file, environment or PgBouncer's default)."""
    name = pooler.get("service")
    return [Evidence("app", f"{name}.{e.get('field')}", f"{e.get('value')} ({e.get('from')})")
            for e in pooler.get("evidence") or [] if e.get("field") in fields]


@rule("APP003", "pgbouncer-client-limit", Severity.HIGH, needs=("app",))
def pooler_client_limit(facts: Facts, settings: Settings) -> Iterator[Hit]:
    """
    ## What it checks
    For each PgBouncer service, the client connections the app processes that connect through it
    can open (per process min(threads, pool), times processes and replicas) against its
    max_client_conn (from its pgbouncer.ini, its environment, or PgBouncer's default of 100).

    ## Why it matters
    PgBouncer refuses clients above max_client_conn ("no more connections allowed
    (max_client_conn)"), however few server connections are busy: requests and jobs fail at
    peak or during a deploy, when old and new containers overlap.

    ## Recommendation
    Raise max_client_conn above what the app can open (a client connection costs PgBouncer a few
    kB, not a PostgreSQL backend), or lower threads/processes.

    ## Estimated effect
    No refused client connections at peak.

    ## Fix safety
    Raising max_client_conn needs a PgBouncer reload or restart; check the open-files limit of its
    container (each client is a socket).

    ## References
    - PgBouncer, "Configuration" (max_client_conn, default_pool_size): https://www.pgbouncer.org/config.html
    - Rails guides, "Configuring a Database" (the pool is per process):
      https://guides.rubyonrails.org/configuring.html#configuring-a-database
    """
    for pooler, sides in _pooler_sides(facts):
        if sides.clients_fit:
            continue
        routed = [process_connections(p) for p in _processes(facts) if p.get("via_pooler") == sides.service]
        evidence = [Evidence("app", f"clients_from_{p.service}", p.total, p.arithmetic())
                    for p in routed if p.counted]
        evidence += [Evidence("app", "clients_total", sides.clients, f"<= {sides.max_client_conn}")]
        evidence += _pooler_evidence(pooler, "max_client_conn")
        yield Hit(
            f"{pooler.get('project')}/{sides.service}",
            f"The app processes behind {sides.service} can open {sides.clients} client connections, "
            f"but PgBouncer accepts {sides.max_client_conn} (max_client_conn).",
            Recommendation(summary=f"Raise max_client_conn on {sides.service} to at least "
                                   f"{sides.clients + OTHERS_ALLOWANCE}.",
                           estimated_effect=f"{sides.clients - sides.max_client_conn} fewer refused "
                                            "clients at peak",
                           risk=Risk.CONFIRM, effort_minutes=15, phase=Phase.NOW,
                           action=f"max_client_conn = {sides.clients + OTHERS_ALLOWANCE}"),
            evidence)


@rule("APP004", "pgbouncer-session-pool-too-small", Severity.HIGH, needs=("app",))
def pooler_session_queue(facts: Facts, settings: Settings) -> Iterator[Hit]:
    """
    ## What it checks
    A PgBouncer in session pooling (its default) whose clients keep their connections open - Rails
    (Active Record's pool keeps connections), Django with CONN_MAX_AGE above 0 - can hold more
    client connections than its server pool (databases x (default_pool_size + reserve_pool_size),
    capped by max_db_connections).

    ## Why it matters
    In session pooling a client owns a server connection until it disconnects. An app pool never
    disconnects, so the clients beyond the pool size wait for one that is never freed, and fail
    after query_wait_timeout (120 s by default). The pooler looks like it saves connections; it
    only queues the overflow.

    ## Recommendation
    Use transaction pooling (pool_mode = transaction; with Rails, PgBouncer 1.21+ and
    max_prepared_statements above 0, or prepared_statements: false in database.yml), or raise
    default_pool_size to the client count (which makes the pooler pointless for this app).

    ## Estimated effect
    No request or job waiting two minutes for a connection, then failing.

    ## Fix safety
    Changing pool_mode changes what a session may rely on (session-level SET, advisory locks,
    LISTEN, WITH HOLD cursors): review the app before switching; a reload applies it.

    ## References
    - PgBouncer, "Features" (session vs transaction pooling, what transaction pooling breaks):
      https://www.pgbouncer.org/features.html
    - PgBouncer, "Configuration" (pool_mode, default_pool_size, query_wait_timeout):
      https://www.pgbouncer.org/config.html
    """
    for pooler, sides in _pooler_sides(facts):
        if sides.pool_mode != "session":
            continue
        holding = [process_connections(p) for p in _processes(facts)
                   if p.get("via_pooler") == sides.service and _keeps_connections(p)]
        by_database: dict[str | None, list[ProcessConnections]] = {}
        for proc in holding:
            by_database.setdefault(proc.database, []).append(proc)
        for database, procs in sorted(by_database.items(), key=lambda item: str(item[0])):
            held = sum(p.total for p in procs)
            if held > sides.per_database:
                yield _session_queue_hit(pooler, sides, database, procs, held)


def _session_queue_hit(pooler: Mapping[str, Any], sides: PoolerConnections, database: str | None,
                       procs: list[ProcessConnections], held: int) -> Hit:
    pool = sides.per_database
    evidence = [Evidence("app", f"held_by_{p.service}", p.total, p.arithmetic()) for p in procs]
    evidence += [Evidence("app", "server_pool_per_database", pool, f">= {held}")]
    evidence += _pooler_evidence(pooler, "pool_mode", "default_pool_size", "reserve_pool_size",
                                 "max_db_connections")
    where = f" for database {database}" if database else ""
    return Hit(
        f"{pooler.get('project')}/{sides.service}" + (f"/{database}" if database else ""),
        f"{sides.service} pools in session mode: the app's persistent pools can hold {held} client "
        f"connections{where}, each owning a server connection, but the server pool has {pool}; "
        f"the other {held - pool} wait until query_wait_timeout and fail.",
        Recommendation(summary=f"Switch {sides.service} to pool_mode = transaction (check prepared "
                               "statements and session features first).",
                       estimated_effect="no connection waits or timeouts at peak",
                       risk=Risk.MANUAL, effort_minutes=60, phase=Phase.WEEK,
                       action="pool_mode = transaction"),
        evidence)


def _keeps_connections(proc: Mapping[str, Any]) -> bool:
    """Active Record and SQLAlchemy pools keep their connections; Django only with CONN_MAX_AGE > 0."""
    if proc.get("framework") in ("rails", "sqlalchemy") or proc.get("kind") in ("puma", "sidekiq"):
        return True
    return str(proc.get("conn_max_age") or "0") not in ("0", "")


@rule("APP005", "pgbouncer-prepared-statements", Severity.HIGH, needs=("app",))
def pooler_prepared_statements(facts: Facts, settings: Settings) -> Iterator[Hit]:
    """
    ## What it checks
    Rails processes that connect through a PgBouncer in transaction (or statement) pooling while
    Active Record prepares statements (its PostgreSQL default; `prepared_statements: false` in
    database.yml or the DATABASE_URL turns it off), and the PgBouncer cannot carry prepared
    statements: a release before 1.21 (from the image tag), or max_prepared_statements 0 (set, or
    the default of 1.21-1.23). Silent when neither the setting nor the version is known.

    ## Why it matters
    In transaction pooling each transaction may run on another server connection. A statement
    prepared on one is missing on the next: requests fail with `prepared statement "a1" does not
    exist` (or "already exists"), at random and mostly under load.

    ## Recommendation
    Set max_prepared_statements (e.g. 200, the default since PgBouncer 1.24) on a PgBouncer 1.21
    or newer, or turn prepared statements off for the app (`prepared_statements: false` in
    config/database.yml).

    ## Estimated effect
    No more random prepared-statement errors; with max_prepared_statements the app keeps the
    planning savings of prepared statements.

    ## Fix safety
    A PgBouncer reload applies max_prepared_statements; the app setting needs a restart of the
    service. Both are safe.

    ## References
    - PgBouncer, max_prepared_statements: https://www.pgbouncer.org/config.html#max_prepared_statements
    - PgBouncer changelog (1.21.0 and 1.24.0): https://www.pgbouncer.org/changelog.html
    - Rails guides, "Configuring a Database" (prepared_statements):
      https://guides.rubyonrails.org/configuring.html#configuring-a-database
    """
    for pooler in app_poolers(facts):
        if pooler.get("pool_mode") not in ("transaction", "statement"):
            continue
        if pooler.get("max_prepared_statements") is None or (pooler.get("max_prepared_statements") or 0) > 0:
            continue
        preparing = [p for p in _processes(facts) if p.get("via_pooler") == pooler.get("service")
                     and p.get("framework") == "rails" and p.get("prepared_statements") is not False]
        if preparing:
            yield _prepared_statements_hit(pooler, preparing)


def _prepared_statements_hit(pooler: Mapping[str, Any], preparing: list[Mapping[str, Any]]) -> Hit:
    name = pooler.get("service")
    services = ", ".join(str(p.get("service")) for p in preparing)
    version = pooler.get("version")
    release = version_tuple(version)
    supported = release is None or release >= (1, 21)
    fix = f"max_prepared_statements = 200 on {name}" if supported else \
        f"upgrade {name} to PgBouncer 1.24+ (or set prepared_statements: false for {services})"
    evidence = [Evidence("app", f"prepared_statements_{p.get('service')}", p.get("prepared_statements"),
                         _origin(p, "prepared_statements")) for p in preparing]
    evidence += _pooler_evidence(pooler, "pool_mode", "max_prepared_statements")
    evidence.append(Evidence("app", f"{name}.version", version or "unknown"))
    return Hit(
        f"{pooler.get('project')}/{name}",
        f"{services} prepare statements through {name} (PgBouncer {version or '(version unknown)'}, "
        f"{pooler.get('pool_mode')} pooling) with max_prepared_statements "
        f"{pooler.get('max_prepared_statements')}: requests will fail with 'prepared statement does not "
        "exist' when a transaction lands on another server connection.",
        Recommendation(summary=f"Enable prepared statements in the pooler ({fix}), or set "
                               "prepared_statements: false in config/database.yml.",
                       estimated_effect="no random prepared-statement errors",
                       risk=Risk.CONFIRM, effort_minutes=15, phase=Phase.NOW,
                       action="max_prepared_statements = 200" if supported else "prepared_statements: false"),
        evidence)


# PHP stops a request at memory_limit; a quarter of it is a common working size for a CMS request
# (WordPress asks for 40M-64M: wp-includes/default-constants.php WP_MEMORY_LIMIT), so a worst case
# four times the container limit overruns it even when no child comes near its limit.
FPM_HIGH_FACTOR = 4


@rule("APP006", "php-fpm-children-exceed-memory", Severity.MEDIUM, needs=("compose",))
def fpm_children_exceed_memory(facts: Facts, settings: Settings) -> Iterator[Hit]:
    """
    ## What it checks
    PHP-FPM services with a container memory limit (compose `mem_limit` or
    `deploy.resources.limits.memory`): the sum over their pools of pm.max_children x the
    memory_limit each child may reach, against the limit of one container. The pools come from
    the pool files the service mounts (else the php image's www.conf: 5 children), memory_limit
    from a pool's `php_admin_value[memory_limit]`, the mounted php.ini / conf.d files, the image
    (nextcloud: PHP_MEMORY_LIMIT, 512M) or PHP's default (128M). HIGH when the worst case is four
    times the limit or more, so that even children at a quarter of memory_limit overrun it.

    ## Why it matters
    Under a burst of traffic every child runs a request at once. When their memory can outgrow
    the container, the kernel's OOM killer ends a child or the master mid-request: 502 errors for
    every request in flight, and with `restart:` a crash loop at each peak, which looks like a
    slow site rather than a memory problem. Fewer children queue requests instead.

    ## Recommendation
    Set pm.max_children to what fits, (container limit) / (memory per child), using the children's
    real size (`ps -o rss` of the php-fpm children under load) or memory_limit to be safe; or give
    the container the memory its children can use; or lower memory_limit.

    ## Estimated effect
    Peaks queue in FPM's backlog instead of killing the pool.

    ## Fix safety
    A pool change needs an FPM reload (`docker compose kill -s USR2` or a restart): safe. Fewer
    children lower the peak throughput of CPU-bound pages.

    ## References
    - PHP manual, "FPM configuration" (pm.max_children):
      https://www.php.net/manual/en/install.fpm.configuration.php
    - PHP manual, "Description of core php.ini directives" (memory_limit, default 128M):
      https://www.php.net/manual/en/ini.core.php#ini.memory-limit
    - Docker docs, "Resource constraints" (memory limits and the OOM killer):
      https://docs.docker.com/engine/containers/resource_constraints/
    """
    for project in facts.get("compose").get("projects") or []:
        for name, service in sorted((project.get("services") or {}).items()):
            fpm, limit = service.get("php_fpm"), service.get("mem_limit_bytes")
            if not isinstance(fpm, Mapping) or not limit:
                continue
            pools = {n: p for n, p in (fpm.get("pools") or {}).items()
                     if p.get("max_children") and p.get("memory_limit_bytes")}
            worst = sum(p["max_children"] * p["memory_limit_bytes"] for p in pools.values())
            if worst > limit:
                yield _fpm_memory_hit(f"{project.get('name')}/{name}", service, pools, worst)


def _fpm_memory_hit(subject: str, service: Mapping[str, Any], pools: Mapping[str, Mapping[str, Any]],
                    worst: int) -> Hit:
    limit = int(service["mem_limit_bytes"])
    largest = max(p["memory_limit_bytes"] for p in pools.values())
    fits = max(1, limit // largest)
    children = sum(p["max_children"] for p in pools.values())
    shown = ", ".join(f"{n} {p['max_children']} x {format_bytes(p['memory_limit_bytes'])}"
                      for n, p in sorted(pools.items()))
    origins = service.get("origins") or {}
    limit_origin = origins.get("mem_limit") or origins.get("deploy.resources.limits.memory") or "compose"
    evidence = [Evidence(limit_origin, "mem_limit_bytes", limit),  # the source says which file and line
                Evidence("compose", "php_fpm_worst_case_bytes", worst, f"<= {limit}")]
    for pool_name, pool in sorted(pools.items()):
        evidence += [Evidence(str(pool.get("source")), f"{pool_name}.max_children", pool["max_children"]),
                     Evidence(str(pool.get("memory_limit_source")), f"{pool_name}.memory_limit_bytes",
                              pool["memory_limit_bytes"])]
    return Hit(
        subject,
        f"{subject} runs up to {children} PHP-FPM children ({shown}, memory_limit): "
        f"{format_bytes(worst)} at worst in a {format_bytes(limit)} container limit, "
        f"{worst / limit:.1f}x what it may use.",
        Recommendation(f"Lower pm.max_children to about {fits} ({format_bytes(limit)} / "
                       f"{format_bytes(largest)}), or measure the children's real size and size it from "
                       f"that, or raise the container limit to {format_bytes(worst)}.",
                       "Peaks queue in FPM's backlog instead of OOM-killing the pool.",
                       Risk.CONFIRM, 20, Phase.WEEK, f"pm.max_children = {fits}"),
        evidence,
        severity=Severity.HIGH if worst >= FPM_HIGH_FACTOR * limit else None)
