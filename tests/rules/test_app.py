"""APP001, APP002 and PG101 on facts snapshots (the reference stack and variants, ERRATA 14)."""

from __future__ import annotations

from typing import Any

from stackaudit.config import Settings
from stackaudit.facts import Facts
from stackaudit.model import Finding, Severity
from stackaudit.rules import evaluate
from tests.tuning.app_facts import postgres, process, reference_processes

HOST = {"cpu_count": 4, "cpu_limit_cores": None, "memory_total_bytes": 23 * 1024**3}


def run(data: dict[str, Any], code: str) -> list[Finding]:
    findings, skipped = evaluate(Facts(data=data), Settings(select=(code,)))
    assert not [s for s in skipped if s.code == code], skipped
    return [f for f in findings if f.code == code]


def app(*processes: dict[str, Any]) -> dict[str, Any]:
    return {"processes": list(processes)}


def test_app001_fires_for_sidekiq_16_threads_with_the_pool_left_at_5() -> None:
    jobs = process("worker", "sidekiq", "worker", 1, 16, 5)
    findings = run({"app": app(jobs)}, "APP001")
    assert len(findings) == 1
    finding = findings[0]
    assert finding.severity == Severity.HIGH
    assert "16 threads per process but its database pool has 5" in finding.message
    assert "up to 11 threads wait" in finding.message
    evidence = {e.key: e.observed for e in finding.evidence}
    assert evidence["threads_per_process"] == 16 and evidence["db_pool_per_process"] == 5
    assert "DB_POOL" in evidence["db_pool_from"]


def test_app001_silent_on_the_reference_stack() -> None:
    assert run({"app": app(*reference_processes())}, "APP001") == []


def test_app002_fires_for_too_many_web_workers_and_threads() -> None:
    web = process("web", "puma", "web", 12, 32, 32)
    findings = run({"app": app(web), "host": HOST}, "APP002")
    messages = [f.message for f in findings]
    assert any("12 worker processes on 4 cores" in m for m in messages)
    assert any("32 threads per process" in m for m in messages)


def test_app002_fires_for_job_concurrency_above_50() -> None:
    jobs = process("worker", "sidekiq", "worker", 1, 80, 80)
    findings = run({"app": app(jobs), "host": HOST}, "APP002")
    assert len(findings) == 1 and "80 job threads" in findings[0].message


def test_app002_uses_the_compose_cpu_limit_of_the_service() -> None:
    web = process("web", "puma", "web", 4, 5, 5)
    compose = {"projects": [{"name": "app", "services": {"web": {"name": "web", "cpus": 1.0}}}]}
    findings = run({"app": app(web), "host": HOST, "compose": compose}, "APP002")
    assert len(findings) == 1 and "on 1 cores" in findings[0].message


def test_app002_silent_on_the_reference_stack() -> None:
    assert run({"app": app(*reference_processes()), "host": HOST}, "APP002") == []


def test_pg101_silent_when_the_reference_budget_fits_47_of_97() -> None:
    assert run({"app": app(*reference_processes()), "postgres": postgres(100, 3)}, "PG101") == []


def test_pg101_fires_with_the_arithmetic_when_the_total_exceeds_the_slots() -> None:
    findings = run({"app": app(*reference_processes()), "postgres": postgres(50, 3)}, "PG101")
    assert len(findings) == 1
    finding = findings[0]
    assert finding.severity == Severity.HIGH  # the app alone (47) still fits 47; the allowance does not
    assert "can open 50 connections (47 from app processes + 3 others)" in finding.message
    assert "47 available" in finding.message
    evidence = {e.key: e for e in finding.evidence}
    assert evidence["connections_web"].observed == 32
    assert evidence["connections_web"].expected == "web (puma): 4 processes x min(8 threads, pool 52) = 32"
    assert evidence["available_connections"].expected == \
        "max_connections 50 - superuser_reserved_connections 3 = 47"
    assert "per process" in (finding.recommendation.action or "")


def test_pg101_critical_when_the_app_alone_exceeds_the_slots() -> None:
    findings = run({"app": app(*reference_processes()), "postgres": postgres(40, 3)}, "PG101")
    assert findings[0].severity == Severity.CRITICAL


def test_pg101_skipped_without_postgres_facts() -> None:
    _, skipped = evaluate(Facts(data={"app": app(*reference_processes())}), Settings(select=("PG101",)))
    assert [s.code for s in skipped] == ["PG101"]


# --- behind PgBouncer --------------------------------------------------------------------------

def pgbouncer(pool_mode: str = "transaction", default_pool_size: int = 20, max_client_conn: int = 100,
              max_db_connections: int = 0, reserve_pool_size: int = 0) -> dict[str, Any]:
    settings = {"pool_mode": pool_mode, "default_pool_size": default_pool_size,
                "reserve_pool_size": reserve_pool_size, "max_client_conn": max_client_conn,
                "max_db_connections": max_db_connections}
    return {"project": "app", "service": "pgbouncer", "kind": "pgbouncer", "aliases": ["pgbouncer"],
            **settings,
            "evidence": [{"field": k, "value": v, "from": "pgbouncer.ini"} for k, v in settings.items()]}


def routed(*processes: dict[str, Any], database: str = "app") -> list[dict[str, Any]]:
    return [{**p, "via_pooler": "pgbouncer", "database_target": {"host": "pgbouncer", "database": database}}
            for p in processes]


def pooled_app(pooler: dict[str, Any], *processes: dict[str, Any]) -> dict[str, Any]:
    return {"processes": list(processes), "poolers": [pooler]}


def test_pg101_silent_when_pgbouncer_caps_what_postgresql_sees() -> None:
    """4 x 8 Puma + 15 Sidekiq = 47 clients, but PostgreSQL sees the pooler's 20 (+ 3 others)."""
    data = {"app": pooled_app(pgbouncer(), *routed(*reference_processes())), "postgres": postgres(30, 3)}
    assert run(data, "PG101") == []
    # The same processes connecting directly do not fit 27 slots.
    assert run({"app": app(*reference_processes()), "postgres": postgres(30, 3)}, "PG101") != []


def test_pg101_fires_when_the_pooler_can_open_more_than_postgresql_has() -> None:
    data = {"app": pooled_app(pgbouncer(default_pool_size=40, reserve_pool_size=5),
                              *routed(*reference_processes())), "postgres": postgres(40, 3)}
    (finding,) = run(data, "PG101")
    evidence = {e.key: e for e in finding.evidence}
    assert evidence["server_connections_pgbouncer"].observed == 45
    assert "min(47 client connections, 1 database x default_pool_size 40 + reserve_pool_size 5) = 45" in \
        evidence["server_connections_pgbouncer"].expected
    assert "default_pool_size" in finding.recommendation.summary
    assert "add PgBouncer" not in finding.recommendation.summary
    # max_db_connections caps it again.
    capped = {"app": pooled_app(pgbouncer(default_pool_size=40, max_db_connections=25),
                                *routed(*reference_processes())), "postgres": postgres(40, 3)}
    assert run(capped, "PG101") == []


def test_app003_fires_when_clients_exceed_max_client_conn() -> None:
    data = {"app": pooled_app(pgbouncer(max_client_conn=40), *routed(*reference_processes()))}
    (finding,) = run(data, "APP003")
    assert finding.severity == Severity.HIGH
    assert "can open 47 client connections, but PgBouncer accepts 40" in finding.message
    evidence = {e.key: e.observed for e in finding.evidence}
    assert evidence["clients_total"] == 47 and evidence["pgbouncer.max_client_conn"] == "40 (pgbouncer.ini)"
    assert finding.recommendation.action == "max_client_conn = 50"


def test_app003_silent_when_the_clients_fit_or_nobody_goes_through_the_pooler() -> None:
    assert run({"app": pooled_app(pgbouncer(max_client_conn=100), *routed(*reference_processes()))},
               "APP003") == []
    assert run({"app": pooled_app(pgbouncer(max_client_conn=10), *reference_processes())}, "APP003") == []


def test_app004_fires_for_persistent_pools_behind_session_pooling() -> None:
    data = {"app": pooled_app(pgbouncer(pool_mode="session", default_pool_size=20),
                              *routed(*reference_processes()))}
    (finding,) = run(data, "APP004")
    assert "can hold 47 client connections" in finding.message
    assert "server pool has 20; the other 27 wait" in finding.message
    assert finding.recommendation.action == "pool_mode = transaction"


def test_app004_silent_in_transaction_mode_or_for_django_closing_connections() -> None:
    assert run({"app": pooled_app(pgbouncer(pool_mode="transaction", default_pool_size=5),
                                  *routed(*reference_processes()))}, "APP004") == []
    django = process("web", "gunicorn", "web", 9, 1, None, framework="django", conn_max_age="0")
    assert run({"app": pooled_app(pgbouncer(pool_mode="session", default_pool_size=2), *routed(django))},
               "APP004") == []
    alchemy = process("api", "uvicorn", "web", 4, 1, 15, framework="sqlalchemy")
    assert len(run({"app": pooled_app(pgbouncer(pool_mode="session", default_pool_size=2), *routed(alchemy))},
                   "APP004")) == 1  # SQLAlchemy's pool keeps its connections too
    keeps = process("web", "gunicorn", "web", 9, 1, None, framework="django", conn_max_age="600")
    assert len(run({"app": pooled_app(pgbouncer(pool_mode="session", default_pool_size=2), *routed(keeps))},
                   "APP004")) == 1


def test_pooler_counts_one_pool_per_database() -> None:
    web = process("web", "puma", "web", 2, 8, 8)
    jobs = process("worker", "sidekiq", "worker", 1, 15, 15)
    pooler = pgbouncer(pool_mode="session", default_pool_size=20)
    apart = {"app": pooled_app(pooler, *routed(web, database="shop"), *routed(jobs, database="blog"))}
    assert run(apart, "APP004") == []  # 16 and 15 clients, each database with its own 20
    together = {"app": pooled_app(pooler, *routed(web, jobs, database="shop"))}
    (finding,) = run(together, "APP004")
    assert "31 client connections for database shop" in finding.message


def test_app001_fires_when_solid_queue_threads_and_helpers_outgrow_the_pool() -> None:
    """Rails 8 defaults with RAILS_MAX_THREADS=3: pool 3, but a worker needs 3 threads + 2."""
    jobs = process("jobs", "solid_queue", "worker", 2, 3, 3, extra_per_process=2, extra_per_replica=3)
    (finding,) = run({"app": app(jobs)}, "APP001")
    assert "3 threads per process plus 2 connection(s) of its own (polling and heartbeat)" in finding.message
    assert "up to 2 threads wait" in finding.message
    assert finding.recommendation.action is not None and finding.recommendation.action.startswith("pool >= 5")


def test_app001_silent_when_the_pool_covers_threads_and_helpers() -> None:
    jobs = process("jobs", "solid_queue", "worker", 2, 3, 5, extra_per_process=2, extra_per_replica=3)
    good = process("goodjob", "good_job", "worker", 1, 4, 5, extra_per_process=1)
    assert run({"app": app(jobs, good)}, "APP001") == []


def bouncer_with(version: str | None, max_prepared: int | None,
                 pool_mode: str = "transaction") -> dict[str, Any]:
    pooler = pgbouncer(pool_mode=pool_mode)
    pooler["version"], pooler["max_prepared_statements"] = version, max_prepared
    pooler["evidence"].append({"field": "max_prepared_statements", "value": max_prepared, "from": "test"})
    return pooler


def test_app005_fires_for_rails_preparing_through_transaction_pooling_without_support() -> None:
    web, jobs = reference_processes()
    data = {"app": pooled_app(bouncer_with("1.23.1", 0), *routed({**web, "prepared_statements": True}, jobs))}
    (finding,) = run(data, "APP005")
    assert "web, worker prepare statements through pgbouncer (PgBouncer 1.23.1, transaction pooling)" \
        in finding.message
    assert finding.recommendation.action == "max_prepared_statements = 200"
    old = {"app": pooled_app(bouncer_with("1.18.0", 0), *routed(web))}
    (too_old,) = run(old, "APP005")
    assert too_old.recommendation.action == "prepared_statements: false"


def test_app005_silent_when_the_pooler_carries_them_or_the_app_does_not_prepare() -> None:
    web, _ = reference_processes()
    assert run({"app": pooled_app(bouncer_with("1.24.1", 200), *routed(web))}, "APP005") == []
    off = {**web, "prepared_statements": False}
    assert run({"app": pooled_app(bouncer_with("1.23.1", 0), *routed(off))}, "APP005") == []
    assert run({"app": pooled_app(bouncer_with("1.23.1", 0, "session"), *routed(web))}, "APP005") == []
    assert run({"app": pooled_app(bouncer_with(None, None), *routed(web))}, "APP005") == []  # unknown
