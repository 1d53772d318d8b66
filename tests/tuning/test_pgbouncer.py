"""tuning.pgbouncer: the server pools a live PgBouncer can open, and which compose pooler it is."""

from __future__ import annotations

import json
from pathlib import Path

from stackaudit.facts import Facts
from stackaudit.tuning.pgbouncer import database_pools, live_instance_for, server_capacity, with_live_pools
from tests.rules.test_pgbouncer import database, instance, pool


def test_pools_per_user_reserve_and_caps() -> None:
    live = instance([pool(user="a"), pool(user="b"), pool("jobs", "a")],
                    [database(pool_size=10, reserve_pool=2), database("jobs", pool_size=5, max_connections=3),
                     database("unused", pool_size=7), database("*", pool_size=99)])
    sizes = {d.name: d.capacity for d in database_pools(live)}
    assert sizes == {"app": 24, "jobs": 3, "unused": 7}  # the auto-database template is not a pool
    assert server_capacity(live) == 34
    capped = instance([pool(user="a"), pool(user="b")], [database(pool_size=10)], max_user_connections=4)
    assert server_capacity(capped) == 8


def test_live_instance_matches_by_service_or_as_the_only_one_given() -> None:
    compose = {"project": "app", "service": "pgbouncer"}
    by_service = instance([pool()], [database()])
    assert live_instance_for(compose, [by_service]) is by_service
    given = {**by_service, "service": None, "project": None, "origin": "--pgbouncer"}
    assert live_instance_for(compose, [given], only_pooler=True) is given
    assert live_instance_for(compose, [given], only_pooler=False) is None
    other = {**by_service, "service": "pgbouncer-2"}
    assert live_instance_for(compose, [other], only_pooler=True) is None


def test_with_live_pools_adds_the_capacity_and_keeps_the_rest() -> None:
    compose = {"project": "app", "service": "pgbouncer", "default_pool_size": 40, "max_client_conn": 100,
               "evidence": [{"field": "max_client_conn", "value": 100, "from": "PgBouncer's default"},
                            {"field": "listen_port", "value": 6432, "from": "PgBouncer's default"}]}
    (merged,) = with_live_pools([compose], [instance([pool()], [database(pool_size=10)], pool_mode="session",
                                                     max_client_conn=500)])
    assert (merged["live_capacity"], merged["pool_mode"], merged["max_client_conn"]) == (10, "session", 500)
    assert merged["default_pool_size"] == 40  # not in this SHOW CONFIG: the file's value stays
    assert merged["evidence"] == [{"field": "max_client_conn", "value": 500, "from": "live SHOW CONFIG"},
                                  {"field": "listen_port", "value": 6432, "from": "PgBouncer's default"}]
    assert with_live_pools([{"project": "app", "service": "x"}], []) == [{"project": "app", "service": "x"}]


def test_tune_app_budget_uses_the_live_pools_of_a_snapshot(tmp_path: Path) -> None:
    from tests.rules.test_app import pgbouncer as compose_pooler
    from tests.rules.test_app import pooled_app, routed
    from tests.test_cli import run
    from tests.tuning.app_facts import postgres, reference_processes

    app = pooled_app(compose_pooler(default_pool_size=40), *routed(*reference_processes()))
    host = {"cpu_count": 4, "memory_total_bytes": 8 * 2**30}
    data = {"app": app, "postgres": postgres(100, 3), "host": host,
            "pgbouncer": {"instances": [instance([pool()], [database(pool_size=10)])]}}
    snapshot = tmp_path / "facts.json"
    snapshot.write_text(json.dumps(Facts(data=data).to_json()))
    result = run("tune", "app", "--facts", str(snapshot), "--format", "json")
    assert result.returncode == 0, result.stderr
    (pooler,) = json.loads(result.stdout)["budget"]["poolers"]
    assert (pooler["capacity"], pooler["capacity_from"], pooler["server_connections"]) == (10, "live", 10)
