"""The connection budget and the app recommendations on the reference numbers (ERRATA 14)."""

from __future__ import annotations

from stackaudit.tuning.appserver import (
    PostgresLimits,
    Resources,
    connection_budget,
    measured_process_bytes,
    pool_explanation,
    postgres_limits,
    process_connections,
    recommend,
)
from tests.tuning.app_facts import postgres, process, reference_processes

GIB = 1024**3


def test_reference_budget_is_47_of_97_and_fits() -> None:
    budget = connection_budget(reference_processes(), PostgresLimits(100, 3))
    assert budget.app_total == 47
    assert budget.available == 97
    assert budget.fits
    assert "47 of the 97" in budget.verdict()
    assert "fits" in budget.verdict()
    lines = budget.arithmetic()
    assert "web (puma): 4 processes x min(8 threads, pool 52) = 32" in lines
    assert "worker (sidekiq): 1 process x min(15 threads, pool 52) = 15" in lines
    assert "app processes: 32 + 15 = 47" in lines
    assert "max_connections 100 - superuser_reserved_connections 3 = 97" in lines[-1]


def test_db_pool_52_is_explained_as_per_process_not_a_total() -> None:
    note = pool_explanation(reference_processes())
    assert note is not None
    assert "(52) is per process, not a total" in note
    assert "4 puma processes of 8 threads" in note
    assert "one connection per thread" in note


def test_no_pool_explanation_when_pools_match_threads() -> None:
    assert pool_explanation([process("web", "puma", "web", 2, 5, 5)]) is None


def test_sidekiq_16_threads_with_pool_5_is_bounded_by_the_pool() -> None:
    conn = process_connections(process("jobs", "sidekiq", "worker", 1, 16, 5, replicas=2))
    assert (conn.per_process, conn.limited_by, conn.total) == (5, "pool", 10)


def test_unknown_threads_and_pool_count_one_connection() -> None:
    conn = process_connections({"service": "api", "kind": "uvicorn", "processes": 3})
    assert (conn.per_process, conn.limited_by, conn.total) == (1, "assumed", 3)


def test_processes_without_a_database_are_not_counted() -> None:
    budget = connection_budget([process("web", "puma", "web", 4, 8, 52, uses_database=False)],
                               PostgresLimits(100, 3))
    assert budget.app_total == 0


def test_budget_exceeded_and_reserved_connections_of_pg16() -> None:
    budget = connection_budget(reference_processes(), PostgresLimits(50, 3, 2))
    assert budget.available == 45
    assert not budget.fits
    assert "reserved_connections 2" in budget.available_arithmetic()


def test_postgres_limits_from_the_settings_facts() -> None:
    limits = postgres_limits(postgres(200, 5, 4))
    assert limits is not None
    assert (limits.max_connections, limits.superuser_reserved, limits.reserved, limits.available) == \
        (200, 5, 4, 191)
    assert postgres_limits({}) is None
    assert postgres_limits({"settings": {"max_connections": {"setting": "80"}}}) == PostgresLimits(80, 3, 0)


def test_recommend_reference_on_4_cores_lowers_threads_in_the_env_file() -> None:
    tuning = recommend(reference_processes(), Resources(4, 23 * GIB), PostgresLimits(100, 3))
    web = tuning.services[0]
    assert web.recommended["workers"] == 4
    assert web.recommended["threads"] == 5
    assert tuning.env == {"RAILS_MAX_THREADS": "5"}
    assert tuning.budget_after is not None and tuning.budget_after.app_total == 4 * 5 + 15
    assert tuning.to_json()["env_lines"] == ["RAILS_MAX_THREADS=5"]


def test_recommend_memory_bounds_the_workers() -> None:
    tuning = recommend(reference_processes(), Resources(8, 2 * GIB))
    web = tuning.services[0]
    assert web.recommended["workers"] == 2  # half of 2 GiB / 512 MiB per Rails worker
    assert any("memory" in r for r in web.reasons)
    assert tuning.env["WEB_CONCURRENCY"] == "2"


def test_measured_memory_per_process_replaces_the_assumption() -> None:
    """Two web replicas using 1.2 GiB each for 4 workers: 307 MiB a worker, so 3 fit in half of 2 GiB
    where the 512 MiB assumption allowed 2."""
    containers = [{"compose_project": "app", "compose_service": "web", "memory_usage_bytes": int(1.2 * GIB)},
                  {"compose_project": "app", "compose_service": "web", "memory_usage_bytes": int(1.2 * GIB)},
                  {"compose_project": "app", "compose_service": "web", "memory_usage_bytes": None},
                  {"compose_project": "other", "compose_service": "web", "memory_usage_bytes": 9 * GIB}]
    measured = measured_process_bytes(reference_processes(), containers)
    assert measured == {"web": int(1.2 * GIB) // 4}
    assumed = recommend(reference_processes(), Resources(8, 2 * GIB)).services[0]
    tuned = recommend(reference_processes(), Resources(8, 2 * GIB), None, measured).services[0]
    assert assumed.recommended["workers"] == 2 and tuned.recommended["workers"] == 3
    assert any("307 MiB (measured" in r for r in tuned.reasons)
    assert any("assumed for a puma" in r for r in assumed.reasons)


def test_recommend_raises_a_pool_below_the_sidekiq_concurrency() -> None:
    jobs = process("jobs", "sidekiq", "worker", 1, 16, 5)
    jobs["evidence"] = [{"field": "concurrency", "value": 16, "from": "command flag -c 16"},
                        {"field": "db_pool", "value": 5, "from": "env DB_POOL=5"}]
    tuning = recommend([jobs], Resources(4, 8 * GIB))
    assert tuning.services[0].recommended["db_pool"] == 16
    assert tuning.env == {"DB_POOL": "16"}


def test_shared_variable_wanted_at_different_values_stays_per_service() -> None:
    web = process("web", "puma", "web", 1, 5, 5)
    web["evidence"] = [{"field": "threads", "value": 5, "from": "env RAILS_MAX_THREADS=5"},
                       {"field": "db_pool", "value": 5, "from": "env RAILS_MAX_THREADS=5"}]
    jobs = process("jobs", "sidekiq", "worker", 1, 16, 5, pool_env_var=None)
    jobs["evidence"] = [{"field": "concurrency", "value": 16, "from": "command flag -c 16"},
                        {"field": "db_pool", "value": 5, "from": "env RAILS_MAX_THREADS=5"}]
    tuning = recommend([web, jobs], Resources(1, 8 * GIB))
    assert tuning.services[1].env == {"RAILS_MAX_THREADS": "16"}
    assert "RAILS_MAX_THREADS" not in tuning.env  # the web service reads it too and must stay at 5


def test_more_workers_are_not_recommended_when_they_would_break_the_connection_budget() -> None:
    """Reference processes on 8 cores want 8 web workers; with max_connections 50 that would be
    8 x 5 + 15 = 55 connections: the worker count stays, and the reason says why."""
    limits = PostgresLimits(50, 3)
    roomy = recommend(reference_processes(), Resources(8, None), PostgresLimits(200, 3))
    assert roomy.services[0].recommended["workers"] == 8
    tight = recommend(reference_processes(), Resources(8, None), limits)
    web = tight.services[0]
    assert web.recommended["workers"] == 4
    assert any("would exceed the PostgreSQL connection budget" in r for r in web.reasons)
    assert tight.budget_after is not None and tight.budget_after.fits
    assert "WEB_CONCURRENCY" not in tight.env
