"""The PostgreSQL collector never waits and never counts itself (issue #17), against real servers.

Each PostgreSQL version gets a cluster of its own here: pg_stat_statements is cluster-wide, and these
tests reset it and look at every entry.
- another session holding (or waiting for) ACCESS EXCLUSIVE on a table: the audit reads the rest,
  names what it could not size, never hits its statement_timeout, and leaves the lock as it was;
- the audit's own sessions are not counted, and its own statements never reach PG402;
- one connection per database, none where the role has no CONNECT privilege.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

import stackaudit.facts.postgres as pg_facts
from stackaudit.config import Settings
from stackaudit.derive import derive
from stackaudit.facts import CollectContext, Facts
from stackaudit.localpg import LocalCluster
from stackaudit.rules import REGISTRY, _stamp
from stackaudit.rules import postgres as _rules  # noqa: F401 - registers the rules
from tests.services import create_database, running_cluster

pytestmark = pytest.mark.integration

DB = "t_cost"
# PG402 fires on anything: if one of our statements got through, it would be a finding.
EVERYTHING_SLOW = {"PG402": {"mean_exec_ms": 0.0, "total_exec_share": 0.0, "min_calls": 1.0,
                             "min_total_exec_ms": 0.0}}


@pytest.fixture(scope="module", params=[15, 18], ids=["pg15", "pg18"])
def cluster(request: pytest.FixtureRequest) -> Iterator[LocalCluster]:
    with running_cluster(request.param) as running:
        yield running


@pytest.fixture(scope="module")
def dsn(cluster: LocalCluster) -> str:
    dsn = create_database(cluster, DB)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        conn.execute("CREATE TABLE locked_one (id int PRIMARY KEY, note text)")
        conn.execute("CREATE INDEX locked_one_expr ON locked_one (lower(note)) WHERE note <> ''")
        conn.execute("CREATE TABLE free_one (id int PRIMARY KEY, note text)")
        conn.execute("INSERT INTO free_one SELECT g, 'n' || g FROM generate_series(1, 1000) g")
    return dsn


def collect(dsn: str, thresholds: dict[str, Any] | None = None) -> tuple[dict[str, Any], CollectContext]:
    settings = Settings(pg_dsn=dsn, thresholds=thresholds or {}, timeout_seconds=10)
    ctx = CollectContext(settings=settings, facts=Facts(), private={}, source="postgres")
    return pg_facts.collect(ctx), ctx


def errors(ctx: CollectContext) -> dict[str, str]:
    return {e.where: e.why for e in ctx.facts.errors}


def holds_access_exclusive(dsn: str, pid: int, granted: bool) -> bool:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_locks WHERE pid = %s AND granted = %s AND "
                           "mode = 'AccessExclusiveLock' AND relation = 'locked_one'::regclass",
                           (pid, granted)).fetchone()
    return bool(row and row[0])


def assert_read_around_the_lock(data: dict[str, Any], ctx: CollectContext, pid: int) -> None:
    why = errors(ctx)
    assert not [w for w in why.values() if "statement_timeout" in w or "gave up after" in w], why
    sizes = why[f"{DB}: relation sizes"]
    assert "table public.locked_one" in sizes and "index public.locked_one_expr" in sizes
    assert f"session {pid} holds or waits for an ACCESS EXCLUSIVE lock" in sizes
    tables = {t["table"]: t for t in data["per_database"][DB]["tables"]}
    assert tables["locked_one"]["total_bytes"] is None and tables["locked_one"]["locked_by_pid"] == pid
    assert tables["free_one"]["total_bytes"] > 0 and tables["free_one"]["live_tuples"] == 1000
    indexes = {i["index"]: i for i in data["per_database"][DB]["indexes"]}
    assert indexes["locked_one_expr"]["definition"] is None and indexes["free_one_pkey"]["size_bytes"] > 0


def test_a_held_access_exclusive_lock_is_read_around_and_left_alone(dsn: str) -> None:
    holder = psycopg.connect(dsn)
    try:
        holder.execute("LOCK TABLE locked_one IN ACCESS EXCLUSIVE MODE")
        pid = holder.info.backend_pid
        data, ctx = collect(dsn)
        assert_read_around_the_lock(data, ctx, pid)
        assert holds_access_exclusive(dsn, pid, granted=True)
        assert holder.execute("SELECT count(*) FROM locked_one").fetchone() == (0,)  # its transaction lives
    finally:
        holder.rollback()
        holder.close()


def test_a_waiting_access_exclusive_request_is_not_jumped_or_blocked(dsn: str) -> None:
    """A DDL waiting for its lock: our ACCESS SHARE would queue behind it, so the audit skips it too,
    and the DDL is still waiting (for the reader, not for us) afterwards."""
    reader, ddl = psycopg.connect(dsn), psycopg.connect(dsn)
    waiter = threading.Thread(target=lambda: ddl.execute("LOCK TABLE locked_one IN ACCESS EXCLUSIVE MODE"))
    try:
        reader.execute("SELECT count(*) FROM locked_one")  # holds ACCESS SHARE until rollback
        pid = ddl.info.backend_pid
        waiter.start()
        for _ in range(200):
            if holds_access_exclusive(dsn, pid, granted=False):
                break
            time.sleep(0.05)
        data, ctx = collect(dsn)
        assert_read_around_the_lock(data, ctx, pid)
        assert holds_access_exclusive(dsn, pid, granted=False)
    finally:
        reader.rollback()
        waiter.join(timeout=30)
        ddl.rollback()
        reader.close()
        ddl.close()


def test_own_sessions_are_not_counted(dsn: str) -> None:
    ours = psycopg.connect(dsn, application_name="stackaudit")  # e.g. a second audit at the same time
    theirs = psycopg.connect(dsn, application_name="shop-web")
    try:
        for conn in (ours, theirs):
            conn.execute("SELECT 1")  # idle in transaction from here on
        time.sleep(0.2)
        data, _ = collect(dsn, {"PG102": {"idle_in_transaction_seconds": 0.1}})
        connections = data["connections"]
        assert connections["own_sessions_excluded"] >= 1
        assert "stackaudit" not in connections["by_application"]
        assert [s["pid"] for s in connections["idle_in_transaction"]] == [theirs.info.backend_pid]
    finally:
        ours.close()
        theirs.close()


def test_own_statements_never_reach_pg402(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_statements_reset()")
        conn.execute("SELECT pg_sleep(0.02)")  # someone else's statement: PG402 must still see it
    for _ in range(3):
        collect(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        recorded = [r[0] for r in conn.execute("SELECT query FROM pg_stat_statements").fetchall()]
    assert sum("/* stackaudit */" in q for q in recorded) >= 10  # they are there to be left out

    data, _ = collect(dsn, EVERYTHING_SLOW)
    top = data["statements"]["top"]
    assert any("pg_sleep" in s["query"] for s in top)
    ours = [s["query"] for s in top if "stackaudit" in s["query"] or "pg_stat_user_tables" in s["query"]]
    assert ours == []
    facts = Facts(data={"postgres": data})
    settings = Settings(thresholds=EVERYTHING_SLOW)
    findings = list(_stamp(REGISTRY["PG402"], REGISTRY["PG402"].run(facts, settings, derive(facts))))
    assert any("pg_sleep" in f.message for f in findings)
    assert not [f.message for f in findings if "stackaudit" in f.message or "pg_stat_user" in f.message]


def test_one_connection_per_database_and_none_without_connect(cluster: LocalCluster, dsn: str,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS sa_cost")
        conn.execute("CREATE ROLE sa_cost LOGIN IN ROLE pg_monitor")
    with psycopg.connect(create_database(cluster, "t_cost_plain"), autocommit=True) as conn:
        conn.execute("DROP EXTENSION pg_stat_statements")  # the target has none: read it in t_cost
    create_database(cluster, "t_cost_private")
    with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
        conn.execute("REVOKE CONNECT ON DATABASE t_cost_private FROM PUBLIC")
    opened: Counter[str] = Counter()
    real_connect = pg_facts.connect

    def counting(conninfo: str, timeout: float, label: str, dbname: str | None = None) -> Any:
        opened[dbname or "(target)"] += 1
        return real_connect(conninfo, timeout, label, dbname)

    monkeypatch.setattr(pg_facts, "connect", counting)
    data, ctx = collect(cluster.dsn("t_cost_plain", user="sa_cost"))
    assert data["current_database"] == "t_cost_plain"
    assert max(opened.values()) == 1 and opened[DB] == 1 and "t_cost_private" not in opened
    assert data["statements"]["read_from_database"] == DB and data["statements"]["installed"] is True
    assert "no CONNECT privilege" in errors(ctx)["database t_cost_private"]
