"""PGB001, PGB002 on facts snapshots (as the pgbouncer collector records SHOW POOLS/DATABASES), and
the connection budget (PG101) with PgBouncer's live pools instead of its files."""

from __future__ import annotations

from typing import Any

from stackaudit.config import Settings
from stackaudit.facts import Facts
from stackaudit.model import Finding, Severity
from stackaudit.rules import evaluate
from tests.rules.test_app import pgbouncer as compose_pooler
from tests.rules.test_app import pooled_app, routed
from tests.tuning.app_facts import postgres, reference_processes


def pool(database: str = "app", user: str = "app", waiting: int = 0, maxwait: float = 0.0,
         active: int = 1, mode: str = "transaction") -> dict[str, Any]:
    return {"database": database, "user": user, "cl_active": active, "cl_waiting": waiting,
            "sv_active": active, "sv_idle": 0, "sv_used": 0, "sv_tested": 0, "sv_login": 0,
            "maxwait_seconds": maxwait, "pool_mode": mode}


def database(name: str = "app", pool_size: int = 20, reserve_pool: int = 0, max_connections: int = 0,
             host: str = "db", port: int = 5432, force_user: str | None = None) -> dict[str, Any]:
    return {"name": name, "host": host, "port": port, "database": name, "force_user": force_user,
            "pool_size": pool_size, "min_pool_size": 0, "reserve_pool": reserve_pool, "pool_mode": None,
            "max_connections": max_connections, "current_connections": 1, "paused": 0, "disabled": 0}


def instance(pools: list[dict[str, Any]], databases: list[dict[str, Any]], **config: Any) -> dict[str, Any]:
    return {"target": "10.0.0.5:6432", "origin": "compose", "project": "app", "service": "pgbouncer",
            "version": "1.23.1", "config": {"pool_mode": "transaction", "max_user_connections": 0, **config},
            "databases": databases, "pools": pools, "stats": [],
            "server_connections": sum(p["sv_active"] for p in pools),
            "clients_waiting": sum(p["cl_waiting"] for p in pools)}


def run(code: str, data: dict[str, Any], settings: Settings | None = None) -> list[Finding]:
    findings, skipped = evaluate(Facts(data=data), settings or Settings(select=(code,)))
    assert not [s for s in skipped if s.code == code], skipped
    return [f for f in findings if f.code == code]


def bouncer(*instances: dict[str, Any]) -> dict[str, Any]:
    return {"instances": list(instances)}


# --- PGB001 --------------------------------------------------------------------------------------

def test_pgb001_fires_for_waiting_clients_with_the_pool_and_the_database() -> None:
    data = {"pgbouncer": bouncer(instance([pool(waiting=3, maxwait=0.4), pool("reports", "bi")],
                                          [database(pool_size=5), database("reports")]))}
    (finding,) = run("PGB001", data)
    assert finding.subject == "app/pgbouncer/app/app"
    assert "pool app/app (database app) has 3 clients waiting" in finding.message
    assert "the oldest for 0.4 s" in finding.message and "pool_size 5 + reserve_pool 0" in finding.message
    assert finding.severity == Severity.MEDIUM
    assert "pool_mode = transaction" not in (finding.recommendation.action or "")  # already transaction


def test_pgb001_fires_on_maxwait_alone_and_is_high_past_ten_seconds() -> None:
    slow = {"pgbouncer": bouncer(instance([pool(maxwait=12.0, mode="session")], [database()]))}
    (finding,) = run("PGB001", slow)
    assert finding.severity == Severity.HIGH and "0 clients waiting" in finding.message
    assert "pool_mode = transaction" in (finding.recommendation.action or "")


def test_pgb001_silent_without_waits_or_below_the_threshold() -> None:
    assert run("PGB001", {"pgbouncer": bouncer(instance([pool(maxwait=0.5)], [database()]))}) == []
    relaxed = Settings(select=("PGB001",), thresholds={"PGB001": {"maxwait_seconds": 20.0}})
    assert run("PGB001", {"pgbouncer": bouncer(instance([pool(maxwait=12.0)], [database()]))}, relaxed) == []


# --- PGB002 --------------------------------------------------------------------------------------

def test_pgb002_fires_when_pools_per_user_outgrow_what_postgresql_leaves() -> None:
    """Two users on app make two pools of 25 + 5: 60 against 100 - 3 - 40 used by others."""
    pools = [pool(user="web"), pool(user="worker")]
    data = {"pgbouncer": bouncer(instance(pools, [database(pool_size=25, reserve_pool=5)])),
            "postgres": postgres(100, 3) | {"connections": {"total": 42}}}
    (finding,) = run("PGB002", data)
    assert finding.severity == Severity.HIGH  # 60 fits 97 alone: it is the other clients' 40
    assert "can open 60 server connections" in finding.message
    assert "app: 2 user pools (web, worker) x (pool_size 25 + reserve_pool 5) = 60" in finding.message
    assert "PostgreSQL leaves it 57" in finding.message
    evidence = {e.key: e for e in finding.evidence}
    assert evidence["other_clients"].observed == 40  # 42 live - this PgBouncer's 2


def test_pgb002_fires_critical_when_the_pools_alone_exceed_the_slots() -> None:
    databases = [database(pool_size=60), database("jobs", pool_size=50)]
    data = {"pgbouncer": bouncer(instance([pool()], databases)), "postgres": postgres(100, 3)}
    (finding,) = run("PGB002", data)
    assert finding.severity == Severity.CRITICAL and "can open 110 server connections" in finding.message


def test_pgb002_silent_when_max_db_connections_caps_the_pools() -> None:
    pools = [pool(user=f"u{i}") for i in range(4)]
    data = {"pgbouncer": bouncer(instance(pools, [database(pool_size=40, max_connections=30)])),
            "postgres": postgres(100, 3)}
    assert run("PGB002", data) == []
    # force_user: one pool whatever the users.
    forced = {"pgbouncer": bouncer(instance(pools, [database(pool_size=60, force_user="app")])),
              "postgres": postgres(100, 3)}
    assert run("PGB002", forced) == []


def test_pgb002_silent_for_databases_on_another_server() -> None:
    databases = [database(pool_size=10, host="db"), database("legacy", pool_size=200, host="old-db")]
    pg = postgres(100, 3) | {"target": "postgres@db:5432/app"}
    assert run("PGB002", {"pgbouncer": bouncer(instance([pool()], databases)), "postgres": pg}) == []


# --- the connection budget with live pools -------------------------------------------------------

def test_pg101_uses_the_live_pool_sizes_when_pgbouncer_was_read() -> None:
    """The compose files say default_pool_size 40 (+5): PG101 would fire on 40 slots; PgBouncer
    really runs pool_size 10 for the one database: 10 server connections fit."""
    app = pooled_app(compose_pooler(default_pool_size=40, reserve_pool_size=5),
                     *routed(*reference_processes()))
    without_live = {"app": app, "postgres": postgres(40, 3)}
    assert run("PG101", without_live) != []
    live = {**without_live, "pgbouncer": bouncer(instance([pool()], [database(pool_size=10)]))}
    assert run("PG101", live) == []
    bigger = {**without_live, "pgbouncer": bouncer(instance([pool()], [database(pool_size=60)]))}
    (finding,) = run("PG101", bigger)
    evidence = {e.key: e for e in finding.evidence}
    assert evidence["server_connections_pgbouncer"].observed == 47  # min(47 clients, 60 live)
    assert "live pools: app: 1 user pool (app) x (pool_size 60 + reserve_pool 0) = 60" in \
        evidence["server_connections_pgbouncer"].expected
