"""PgBouncer rules from its admin console: clients waiting, server pools against PostgreSQL (PGB)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from stackaudit.config import Settings
from stackaudit.derive import Derived
from stackaudit.facts import Facts
from stackaudit.model import Evidence, Hit, Phase, Recommendation, Risk, Severity
from stackaudit.rules import rule
from stackaudit.tuning.appserver import OTHERS_ALLOWANCE, ConnectionBudget, PostgresLimits, postgres_limits
from stackaudit.tuning.pgbouncer import DatabasePools, database_pools

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def _instances(facts: Facts) -> Iterator[Mapping[str, Any]]:
    for instance in facts.get("pgbouncer").get("instances") or []:
        if isinstance(instance, Mapping):
            yield instance


def _name(instance: Mapping[str, Any]) -> str:
    if instance.get("service"):
        return f"{instance.get('project')}/{instance['service']}"
    return str(instance.get("target"))


@rule("PGB001", "pgbouncer-clients-waiting", Severity.MEDIUM, needs=("pgbouncer",))
def clients_waiting(facts: Facts, settings: Settings) -> Iterator[Hit]:
    """
    ## What it checks
    Each PgBouncer pool (database/user pair) in SHOW POOLS: clients waiting for a server
    connection now (cl_waiting > 0), or a wait of the oldest waiting client (maxwait) at or above
    `maxwait_seconds` (1 s; `high_maxwait_seconds`, 10 s, makes it high).

    ## Why it matters
    A waiting client is a request or a job that does nothing until another client gives its
    server connection back: the pool is too small for the load, or connections are held too long
    (session pooling holds one per connected client; a long transaction holds one in transaction
    pooling). Waits add straight to response times, and after query_wait_timeout (120 s) PgBouncer
    drops the client with an error.

    ## Recommendation
    With session pooling, switch to transaction pooling where the app allows it (no session
    state; prepared statements need PgBouncer 1.21+ with max_prepared_statements). Otherwise raise
    the pool's pool_size (or default_pool_size) within what PostgreSQL leaves (PGB002), and look
    for long transactions that hold server connections (PG102).

    ## Estimated effect
    Requests stop queueing in PgBouncer: the wait (maxwait) drops to zero.

    ## Fix safety
    pool_size and pool_mode change with a RELOAD on the admin console (or SIGHUP), no restart;
    transaction pooling changes what a session may rely on: test the app first.

    ## References
    - PgBouncer, "Usage": SHOW POOLS (cl_waiting, maxwait, maxwait_us), SHOW STATS:
      https://www.pgbouncer.org/usage.html
    - PgBouncer, "Configuration" (pool_mode, default_pool_size, reserve_pool_size, query_wait_timeout):
      https://www.pgbouncer.org/config.html
    """
    for instance in _instances(facts):
        sizes = {d.name: d for d in database_pools(instance)}
        mode = (instance.get("config") or {}).get("pool_mode")
        for pool in instance.get("pools") or []:
            yield from _waiting(settings, instance, pool, sizes.get(str(pool.get("database"))), mode)


def _waiting(settings: Settings, instance: Mapping[str, Any], pool: Mapping[str, Any],
             size: DatabasePools | None, mode: Any) -> Iterator[Hit]:
    database, user = pool.get("database"), pool.get("user")
    subject = f"{_name(instance)}/{database}/{user}"
    waiting = int(pool.get("cl_waiting") or 0)
    maxwait = float(pool.get("maxwait_seconds") or 0)
    if waiting == 0 and maxwait < settings.threshold("PGB001", "maxwait_seconds", subject):
        return
    high = maxwait >= settings.threshold("PGB001", "high_maxwait_seconds", subject)
    mode = pool.get("pool_mode") or mode or "session"
    sizing = (f"pool_size {size.pool_size} + reserve_pool {size.reserve_pool}" if size is not None
              else "pool size unknown")
    session = mode == "session"
    yield Hit(
        subject,
        f"PgBouncer {_name(instance)}: pool {database}/{user} (database {database}) has {waiting} "
        f"client{'s' if waiting != 1 else ''} waiting for a server connection, the oldest for "
        f"{maxwait:.1f} s; {pool.get('sv_active', 0)} server connection(s) active, {sizing}, "
        f"{mode} pooling.",
        Recommendation(
            summary=("Switch the pool to transaction pooling, or raise its pool_size within what "
                     "PostgreSQL leaves." if session else
                     "Raise the pool's pool_size within what PostgreSQL leaves, or shorten the "
                     "transactions that hold server connections."),
            estimated_effect="no client waits for a server connection",
            risk=Risk.CONFIRM, effort_minutes=20, phase=Phase.NOW,
            action=(f"pgbouncer.ini [databases] {database} = ... pool_size=N (or [pgbouncer] "
                    "default_pool_size = N" + (", pool_mode = transaction" if session else "")
                    + "), then RELOAD on the admin console")),
        (Evidence("pgbouncer", "cl_waiting", waiting, "0"),
         Evidence("pgbouncer", "maxwait_seconds", round(maxwait, 3),
                  f"< {settings.threshold('PGB001', 'maxwait_seconds', subject):g}"),
         Evidence("pgbouncer", "cl_active", pool.get("cl_active")),
         Evidence("pgbouncer", "sv_active", pool.get("sv_active")),
         Evidence("pgbouncer", "pool_size", size.pool_size if size else None),
         Evidence("pgbouncer", "pool_mode", mode)),
        Severity.HIGH if high else None)


@rule("PGB002", "pgbouncer-pools-over-max-connections", Severity.HIGH, needs=("pgbouncer", "postgres"))
def pools_over_max_connections(facts: Facts, settings: Settings, derived: Derived) -> Iterator[Hit]:
    """
    ## What it checks
    The server connections a PgBouncer's pools can open to the audited PostgreSQL, against the
    connections PostgreSQL leaves it.

    Per pooled database, (pool_size + reserve_pool) for each database/user pool, capped by the
    database's max_db_connections, as SHOW DATABASES and SHOW POOLS report them; against
    max_connections - superuser_reserved_connections (- reserved_connections) - what other
    clients use: the larger of the sessions not from this PgBouncer now and the app processes
    that connect directly plus a small allowance for admin sessions, migrations and cron.

    ## Why it matters
    Pools grow under load to their size. When together they can open more connections than
    PostgreSQL has, the server answers "sorry, too many clients already" at the peak: PgBouncer
    logs a pooler error and clients wait or fail, and the admin or a migration cannot connect
    either. A database without its own pool_size takes default_pool_size, and every new user that
    connects adds another pool of that size.

    ## Recommendation
    Lower pool_size / default_pool_size, set max_db_connections (per database) or
    max_user_connections so the pools fit, or raise max_connections on PostgreSQL (memory per
    slot, restart). Transaction pooling needs far fewer server connections than session pooling.

    ## Estimated effect
    PostgreSQL never refuses PgBouncer's connections; admin sessions keep their slots.

    ## Fix safety
    PgBouncer settings change with a RELOAD; smaller pools can make clients wait (PGB001):
    compare with the server connections in use (SHOW POOLS sv_active). max_connections needs a
    PostgreSQL restart.

    ## References
    - PgBouncer, "Configuration" (default_pool_size, reserve_pool_size, max_db_connections,
      max_user_connections): https://www.pgbouncer.org/config.html
    - PgBouncer, "Usage" (SHOW DATABASES, SHOW POOLS): https://www.pgbouncer.org/usage.html
    - PostgreSQL docs, "Connections and Authentication" (max_connections,
      superuser_reserved_connections): https://www.postgresql.org/docs/current/runtime-config-connection.html
    """
    postgres = facts.get("postgres")
    limits = postgres_limits(postgres)
    if limits is None:
        return
    for instance in _instances(facts):
        pools = _pools_to(instance, postgres)
        if not pools:
            continue
        capacity = sum(d.capacity for d in pools)
        others, others_why = _others(facts, instance, derived.connection_budget)
        left = limits.available - others
        if capacity <= left:
            continue
        yield _over_hit(instance, pools, capacity, limits, others, others_why)


def _over_hit(instance: Mapping[str, Any], pools: Sequence[DatabasePools], capacity: int,
              limits: PostgresLimits, others: int, others_why: str) -> Hit:
    left = limits.available - others
    reserved = f" - reserved_connections {limits.reserved}" if limits.reserved else ""
    available = (f"max_connections {limits.max_connections} - superuser_reserved_connections "
                 f"{limits.superuser_reserved}{reserved} = {limits.available}")
    evidence = [Evidence("pgbouncer", f"server_pools_{d.name}", d.capacity, d.arithmetic()) for d in pools]
    evidence += [Evidence("pgbouncer", "server_pools_total", capacity, f"<= {left}"),
                 Evidence("postgres", "available_connections", limits.available, available),
                 Evidence("postgres", "other_clients", others, others_why),
                 Evidence("pgbouncer", "server_connections_now", instance.get("server_connections"))]
    return Hit(
        _name(instance),
        f"PgBouncer {_name(instance)} can open {capacity} server connections "
        f"({'; '.join(d.arithmetic() for d in pools)}) but PostgreSQL leaves it {left} "
        f"({available}, less {others} for other clients).",
        Recommendation(
            summary="Lower pool_size/default_pool_size or set max_db_connections so the pools fit, or "
                    "raise max_connections.",
            estimated_effect=f"{capacity - left} fewer connections PostgreSQL could refuse at peak",
            risk=Risk.CONFIRM, effort_minutes=20, phase=Phase.NOW,
            action="pgbouncer.ini: [pgbouncer] max_db_connections = "
                   f"{max(1, left // max(1, len(pools)))} (per database), then RELOAD on the admin console"),
        evidence, Severity.CRITICAL if capacity > limits.available else None)


def _pools_to(instance: Mapping[str, Any], postgres: Mapping[str, Any]) -> list[DatabasePools]:
    """The pooled databases that point at the audited PostgreSQL. One server for all: all of them;
    else those whose host and port are its address (or its compose service's name)."""
    pools = database_pools(instance)
    servers = {(d.host, d.port) for d in pools}
    if len(servers) <= 1:
        return pools
    host, port = _address(str(postgres.get("target") or ""))
    names = {host, str((postgres.get("runs_in") or {}).get("service") or "")} - {"", None}
    if host in LOOPBACK:
        names |= LOOPBACK
    return [d for d in pools if d.host in names and (port is None or d.port in (port, None))]


def _address(label: str) -> tuple[str | None, int | None]:
    """host and port from the postgres target label user@host:port/db."""
    rest = label.split("@", 1)[-1].split("/", 1)[0]
    host, _, port = rest.rpartition(":")
    return (host or None), (int(port) if port.isdigit() else None)


def _others(facts: Facts, instance: Mapping[str, Any], budget: ConnectionBudget | None) -> tuple[int, str]:
    """The connections PostgreSQL gives to clients other than this PgBouncer, and how counted."""
    live_total = (facts.get("postgres").get("connections") or {}).get("total")
    live = max(0, int(live_total) - int(instance.get("server_connections") or 0)) if live_total else 0
    direct = sum(p.total for p in budget.direct) if budget is not None else 0
    planned = direct + OTHERS_ALLOWANCE
    why = (f"max(sessions not from this PgBouncer now {live}, app processes connecting directly "
           f"{direct} + {OTHERS_ALLOWANCE} for admin, migrations, cron)")
    return max(live, planned), why
