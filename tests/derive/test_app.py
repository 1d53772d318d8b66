"""The app's connection budget, its summary and the live cross-check: derived once from the facts
(derive/app.py), read by PG101, PGB002, the report, `tune app` and the snapshot `collect --out`
writes."""

from __future__ import annotations

import json
from typing import Any

from stackaudit.derive import derive
from stackaudit.facts import Facts
from stackaudit.pipeline import snapshot
from stackaudit.report import Report

# ERRATA 14: 4 Puma workers x 8 threads + Sidekiq 15 = 47, whatever DB_POOL (52) says.
PROCESSES = [
    {"project": "app", "service": "web", "kind": "puma", "role": "web", "replicas": 1, "processes": 4,
     "threads": 8, "db_pool": 52},
    {"project": "app", "service": "worker", "kind": "sidekiq", "role": "worker", "replicas": 1,
     "processes": 1, "threads": 15, "db_pool": 52},
]
POSTGRES = {"settings": {"max_connections": {"setting": "100"},
                         "superuser_reserved_connections": {"setting": "3"}},
            "connections": {"total": 6, "by_application": {"puma: cluster worker 0: 1 [app]": 4,
                                                           "psql": 2}}}


def facts(**data: dict[str, Any]) -> Facts:
    return Facts(data={"app": {"processes": PROCESSES, "poolers": [], "summary": {"services": 2}}, **data})


def test_the_summary_counts_what_the_reference_stack_can_open_of_what_is_available() -> None:
    assert derive(facts(postgres=POSTGRES)).connection_summary == {
        "db_connections_at_most": 47, "db_connections_available": 97}
    # without the server's limits the app's side is still known; the budget itself is not
    derived = derive(facts())
    assert derived.connection_summary == {"db_connections_at_most": 47}
    assert derived.connection_budget is None


def test_the_budget_is_the_one_pg101_and_the_report_read() -> None:
    budget = derive(facts(postgres=POSTGRES)).connection_budget
    assert budget is not None
    assert (budget.app_total, budget.available, budget.fits) == (47, 97, True)
    assert derive(Facts(data={"postgres": POSTGRES})).connection_budget is None  # no app processes


def test_live_sessions_are_matched_per_service_and_the_rest_is_unattributed() -> None:
    live = {r["service"] or r["kind"]: r for r in derive(facts(postgres=POSTGRES)).live_connections}
    assert (live["web"]["live"], live["web"]["estimated_max"], live["web"]["matched_by"]) == (
        4, 32, "application_name")
    assert live["worker"]["live"] == 0 and "no live session matched" in live["worker"]["note"]
    assert live["unattributed"]["live"] == 2 and live["unattributed"]["applications"] == ["psql"]
    assert derive(facts()).live_connections == ()  # PostgreSQL not collected: nothing to compare


def test_the_report_json_keeps_the_app_summary_keys() -> None:
    summary = Report(facts(postgres=POSTGRES), [], []).to_json()["facts"]["app"]
    assert summary == {"services": 2, "db_connections_at_most": 47, "db_connections_available": 97}


def test_a_snapshot_keeps_the_keys_scripts_read_and_an_audit_of_it_derives_them_again() -> None:
    written = json.loads(json.dumps(snapshot(facts(postgres=POSTGRES))))
    app = written["data"]["app"]
    assert app["summary"]["db_connections_at_most"] == 47
    assert app["summary"]["db_connections_available"] == 97
    assert [r["service"] for r in app["live_connections"]] == ["web", "worker", None]
    loaded = Facts.from_json(written)
    assert derive(loaded).connection_summary == derive(facts(postgres=POSTGRES)).connection_summary
    # without postgres there is no cross-check to write, and without app nothing is added
    assert "live_connections" not in snapshot(facts())["data"]["app"]
    bare = Facts(data={"host": {"cpu_count": 2}})
    assert snapshot(bare)["data"] == bare.to_json()["data"]


def test_the_summary_counts_pgbouncers_live_pools_as_pg101_does() -> None:
    """The compose file says default_pool_size 20; PgBouncer runs 5: PostgreSQL sees 5."""
    pooled = [{**p, "via_pooler": "bouncer"} for p in PROCESSES]
    pooler = {"project": "app", "service": "bouncer", "kind": "pgbouncer", "pool_mode": "transaction",
              "default_pool_size": 20, "reserve_pool_size": 0, "max_db_connections": 0,
              "databases": ["app"]}
    instance = {"project": "app", "service": "bouncer",
                "databases": [{"name": "app", "host": "db", "port": 5432, "database": "app",
                               "pool_size": 5, "reserve_pool": 0, "max_connections": 0}],
                "pools": [{"database": "app", "user": "app"}]}
    data = Facts(data={"app": {"processes": pooled, "poolers": [pooler], "summary": {}},
                       "postgres": POSTGRES})
    from_files = derive(data).connection_summary["db_connections_at_most"]
    data.data["pgbouncer"] = {"instances": [instance]}
    assert derive(data).connection_summary["db_connections_at_most"] == 5 < from_files
