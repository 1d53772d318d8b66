"""tuning.pgbouncer: the server pools a live PgBouncer can open, and which compose pooler it is."""

from __future__ import annotations

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
