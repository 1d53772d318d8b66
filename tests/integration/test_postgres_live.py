"""The PostgreSQL collector and rules against real clusters (15 and 18, see tests/conftest.py).

A seeded database makes each live rule fire (unused and duplicate indexes, a big table read by
sequential scans with a low cache hit ratio, temp-file spills, dead tuples, a slow statement, a
session idle in transaction); a clean database makes none of them fire. Connection failures give a
clean SourceUnavailable without the password; a role without pg_monitor still collects the rest.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

import stackaudit.facts.postgres
from stackaudit import pacing
from stackaudit.config import Settings
from stackaudit.derive import derive
from stackaudit.facts import CollectContext, Facts, SourceUnavailable
from stackaudit.localpg import LocalCluster, free_port
from stackaudit.model import Finding, Severity
from stackaudit.pacing import PAUSE_PER_WORK, Pacer
from stackaudit.rules import REGISTRY, _stamp
from stackaudit.rules import postgres as _rules  # noqa: F401 - registers the rules
from tests.services import create_database, running_cluster

pytestmark = pytest.mark.integration

CODES = ("PG004", "PG009", "PG102", "PG201", "PG202", "PG301", "PG302", "PG303", "PG304", "PG401", "PG402")
# Small test data: lower the volume thresholds (they are configurable for exactly this).
TEST_THRESHOLDS = {
    "PG004": {"min_temp_bytes_per_day": 1024.0**2, "min_statement_temp_bytes": 1024.0**2},
    "PG102": {"idle_in_transaction_seconds": 0.5},
    "PG303": {"min_seq_scans": 10.0},
    "PG304": {"min_blocks_read": 50_000.0},
}
CLEAN_DB = "t_pglive_clean"


def collect(dsn: str | None, thresholds: dict[str, Any] | None = None,
            facts: Facts | None = None, private: dict[str, Any] | None = None
            ) -> tuple[dict[str, Any], CollectContext]:
    settings = Settings(pg_dsn=dsn, thresholds=thresholds or {}, timeout_seconds=10)
    ctx = CollectContext(settings=settings, facts=facts or Facts(), private=private or {}, source="postgres")
    return stackaudit.facts.postgres.collect(ctx), ctx


def audit(data: dict[str, Any], settings: Settings) -> list[Finding]:
    facts = Facts(data={"postgres": data})
    facts = Facts.from_json(json.loads(json.dumps(facts.to_json())))  # what `collect --out` saves
    derived = derive(facts)
    return [f for code in CODES for f in _stamp(REGISTRY[code], REGISTRY[code].run(facts, settings, derived))]


def seed(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET max_parallel_workers_per_gather = 0")
        # ~70 MB, written through CREATE TABLE AS's small bulk-write ring: it is not left in
        # shared_buffers, and being over shared_buffers/4 its sequential scans use a small ring too, so
        # each scan reads from the OS again (a low cache hit ratio).
        conn.execute("CREATE TABLE big AS SELECT g AS id, g % 50 AS kind, g % 1000 AS val, "
                     "repeat(md5(g::text), 6) AS note FROM generate_series(1, 300000) g")
        conn.execute("ALTER TABLE big ADD PRIMARY KEY (id)")
        conn.execute("CREATE INDEX big_val ON big (val)")  # never used: PG301
        conn.execute("CREATE INDEX big_kind ON big (kind)")  # left prefix of the next: PG302
        conn.execute("CREATE INDEX big_kind_val ON big (kind, val)")
        for _ in range(12):  # PG303, PG304
            conn.execute("SELECT count(*) FROM big WHERE note LIKE '%zz%'")
        conn.execute("SET work_mem = '64kB'")  # PG004: a sort spills to temp files
        conn.execute("SELECT count(*) FROM (SELECT md5(note) FROM big ORDER BY 1 OFFSET 0) s")
        conn.execute("RESET work_mem")
        conn.execute("CREATE TABLE dead (id int, pad text) WITH (autovacuum_enabled = false)")
        conn.execute("INSERT INTO dead SELECT g, 'x' FROM generate_series(1, 50000) g")
        conn.execute("DELETE FROM dead WHERE id <= 30000")  # PG201: 60% dead
        for _ in range(5):  # PG402
            conn.execute("SELECT pg_sleep(0.12)")
    # closing the session flushes its statistics


@pytest.fixture(scope="module")
def seeded(pg_dsn: str) -> Iterator[str]:
    seed(pg_dsn)
    with psycopg.connect(pg_dsn) as idle:  # PG102: a transaction left open
        idle.execute("SELECT 1 FROM big LIMIT 1")
        time.sleep(0.6)
        yield pg_dsn
        idle.rollback()


@pytest.fixture(scope="module")
def clean_dsn(pg_cluster: LocalCluster) -> str:
    dsn = create_database(pg_cluster, CLEAN_DB)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE items (id int PRIMARY KEY, name text UNIQUE)")
        conn.execute("INSERT INTO items SELECT g, 'n' || g FROM generate_series(1, 500) g")
        conn.execute("VACUUM ANALYZE items")
        conn.execute("SELECT name FROM items WHERE id = 7")
    return dsn


def test_seeded_database_makes_each_rule_fire(seeded: str, pg_cluster: LocalCluster) -> None:
    data, ctx = collect(seeded, TEST_THRESHOLDS)
    assert ctx.facts.errors == []
    db = data["current_database"]
    findings = audit(data, Settings(thresholds=TEST_THRESHOLDS))
    by_code: dict[str, list[Finding]] = {}
    for finding in findings:
        by_code.setdefault(finding.code, []).append(finding)
    subjects = {code: [f.subject for f in fs] for code, fs in by_code.items()}

    assert f"index {db}.public.big_val" in subjects["PG301"]
    unused = next(f for f in by_code["PG301"] if f.subject.endswith("big_val"))
    assert unused.severity is Severity.INFO and "statistics are only 0.0 days old" in unused.message
    assert not any("big_pkey" in s for s in subjects["PG301"])  # a primary key is never "unused"
    dup = next(f for f in by_code["PG302"] if f.subject == f"index {db}.public.big_kind")
    assert "left prefix of big_kind_val" in dup.message
    assert f"table {db}.public.big" in subjects["PG303"]
    assert f"database {db}" in subjects["PG304"]
    spill = next(f for f in by_code["PG004"] if f.subject == f"database {db}")
    assert "ORDER BY" in spill.message and 'ALTER ROLE "postgres" SET work_mem' in (
        spill.recommendation.action or "")
    assert f"table {db}.public.dead" in subjects["PG201"]
    assert any("pg_sleep" in f.message for f in by_code["PG402"])
    assert any(f"postgres@{db}" in s for s in subjects["PG102"])
    assert "PG401" not in by_code and "PG202" not in by_code and "PG009" not in by_code


def test_collected_facts_have_the_agreed_shape(seeded: str, pg_cluster: LocalCluster) -> None:
    data, _ = collect(seeded)
    major = pg_cluster.major_version()
    assert data["major"] == major and data["server_version_num"] // 10000 == major
    assert data["settings"]["shared_buffers"]["base_value"] == 128 * 1024**2
    assert data["settings"]["port"]["source"] == "configuration file"
    assert "pg_stat_statements" in data["shared_preload_libraries"]
    view = "pg_stat_checkpointer" if major >= 17 else "pg_stat_bgwriter"
    assert data["checkpoints"]["view"] == view and data["checkpoints"]["checkpoints_timed"] is not None
    assert data["data_directory"]["method"] == "filesystem" and data["data_directory"]["size_bytes"] > 0
    # base/<oid> is counted from pg_database_size(), not walked: the same bytes as a walk of it all
    assert "oid" not in data["databases"][0]
    assert abs(data["data_directory"]["size_bytes"] - stackaudit.facts.postgres.directory_size(
        pg_cluster.data_dir, float("inf"))) < 1024**2
    assert data["runs_in"]["kind"] == "host"
    own = data["per_database"][data["current_database"]]
    assert own["stats_since_basis"] == "database_created"
    big = next(t for t in own["tables"] if t["table"] == "big")
    assert big["seq_scan"] >= 12 and big["live_tuples"] > 250_000
    pkey = next(i for i in own["indexes"] if i["index"] == "big_pkey")
    assert pkey["backs_constraint"] and pkey["is_primary"]
    # definitions are read where a finding shows them: never-scanned indexes and both sides of a duplicate
    assert pkey["definition"] is None and "oid" not in pkey
    assert all(d["definition"] and d["covered_by_definition"] for d in own["duplicate_indexes"])
    unused = [i for i in own["indexes"]
              if i["idx_scan"] == 0 and not i["backs_constraint"] and not i["is_unique"]]
    assert unused and all(str(i["definition"]).startswith("CREATE INDEX") for i in unused)
    slow = next(s for s in data["statements"]["top"] if "pg_sleep" in s["query"])
    assert slow["calls"] == 5 and slow["mean_exec_ms"] >= 100 and slow["total_plan_ms"] is None
    assert data["summary"]["duplicate_indexes"] >= 1 and data["summary"]["pg_stat_statements"] is True
    # our own queries are tagged and left out (other tests on this shared cluster may name stackaudit)
    assert not any("/* stackaudit */" in s["query"] for s in data["statements"]["top"])


def test_definitions_outside_the_never_scanned_cap_are_read_for_duplicates_only(
        seeded: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """With no room for never-scanned indexes, the duplicate pair (big_kind, a left prefix of
    big_kind_val) still gets both definitions; big_val, never scanned but no duplicate, gets none."""
    monkeypatch.setattr(stackaudit.facts.postgres, "DEFINED_UNUSED", 0)
    data, ctx = collect(seeded)
    assert ctx.facts.errors == []
    own = data["per_database"][data["current_database"]]
    defined = {i["index"]: i["definition"] for i in own["indexes"] if i["table"] == "big"}
    assert defined["big_kind_val"] == "CREATE INDEX big_kind_val ON public.big USING btree (kind, val)"
    assert defined["big_kind"] == "CREATE INDEX big_kind ON public.big USING btree (kind)"
    assert defined["big_val"] is None and defined["big_pkey"] is None


def test_on_a_busy_host_the_source_pauses_after_its_statements_and_reads_the_same(
        clean_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Paced (stackaudit.pacing), the collector counts every statement and its connection as work
    and pauses after each; the pauses change none of what it reads."""
    unpaced, _ = collect(clean_dsn)
    waits: list[float] = []
    pauses: list[float] = []
    pacer = Pacer(stat=tmp_path / "no-stat", sleep=pauses.append)  # no window: `busy` stays as set
    pacer.start()
    pacer.busy = True
    counted = pacer.waited
    monkeypatch.setattr(pacer, "waited", lambda seconds: (waits.append(seconds), counted(seconds)))
    monkeypatch.setattr(pacing, "PACER", pacer)
    monkeypatch.setattr(pacing, "MAX_PAUSE_SECONDS", float("inf"))  # a slow machine never runs out
    paced, ctx = collect(clean_dsn)
    assert ctx.facts.errors == []
    assert set(paced) == set(unpaced) and paced["settings"] == unpaced["settings"]
    assert len(waits) >= 10 and len(pauses) >= len(waits)  # each statement's checkpoint paused
    assert sum(pauses) >= PAUSE_PER_WORK * sum(waits) * 0.99


def test_clean_database_makes_no_rule_fire(clean_dsn: str) -> None:
    data, ctx = collect(clean_dsn)
    assert data["current_database"] == CLEAN_DB and ctx.facts.errors == []
    findings = audit(data, Settings())
    about_clean = [f for f in findings if CLEAN_DB in f.subject or f" in {CLEAN_DB} " in f.message]
    assert about_clean == []
    assert not [f for f in findings if f.code in ("PG401", "PG202", "PG009", "PG102")]


def test_libpq_environment_is_a_target(clean_dsn: str, pg_cluster: LocalCluster,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"PGHOST": "127.0.0.1", "PGPORT": str(pg_cluster.port), "PGUSER": "postgres",
                        "PGDATABASE": CLEAN_DB}.items():
        monkeypatch.setenv(name, value)
    data, _ = collect(None)
    assert data["target_origin"] == "libpq environment" and data["current_database"] == CLEAN_DB


def test_compose_stack_is_discovered(clean_dsn: str, pg_cluster: LocalCluster,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PGHOST", "PGSERVICE", "PGDATABASE"):
        monkeypatch.delenv(name, raising=False)
    compose = {"projects": [{"name": "shop", "services": {
        "db": {"name": "db", "image": "postgres:18", "image_repository": "postgres",
               "ports": [{"host_ip": "127.0.0.1", "published": str(pg_cluster.port), "target": 5432}]},
        "web": {"name": "web", "image": "shop", "image_repository": "shop", "ports": []}}}]}
    private = {"compose_env": {"shop": {"db": {"POSTGRES_USER": "postgres"},
                                        "web": {"DATABASE_URL": f"postgres://postgres@db:5432/{CLEAN_DB}"}}}}
    data, _ = collect(None, facts=Facts(data={"compose": compose}), private=private)
    assert data["target_origin"] == "compose" and data["current_database"] == CLEAN_DB
    assert data["runs_in"] == {"kind": "container", "container": None, "service": "db", "project": "shop"}


def test_unreachable_port_is_a_clean_source_unavailable() -> None:
    with pytest.raises(SourceUnavailable, match="connection refused") as info:
        collect(f"postgresql://postgres:not-this-one-pw@127.0.0.1:{free_port()}/postgres")
    assert "not-this-one-pw" not in str(info.value)


def test_role_without_pg_monitor_still_collects(seeded: str, pg_cluster: LocalCluster) -> None:
    with psycopg.connect(pg_cluster.dsn(), autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS sa_limited")
        conn.execute("CREATE ROLE sa_limited LOGIN")
    db = seeded.rsplit("/", 1)[-1]
    data, ctx = collect(pg_cluster.dsn(db, user="sa_limited"))
    assert data["has_pg_monitor"] is False and data["settings"]["work_mem"]["value"] == "4MB"
    assert any(t["table"] == "big" for t in data["per_database"][db]["tables"])
    errors = {e.where: e.why for e in ctx.facts.errors}
    assert "needs pg_monitor" in errors["pg_ls_waldir"]
    assert "needs pg_monitor" in errors["pg_stat_statements"]  # other roles' query text is hidden
    assert data["statements"]["installed"] is True


@pytest.fixture(scope="module")
def password_cluster() -> Iterator[LocalCluster]:
    with running_cluster(15, password="Cluster-Secret-4711") as cluster:
        yield cluster


def test_wrong_password_is_clean_and_the_right_one_never_shows(password_cluster: LocalCluster) -> None:
    with pytest.raises(SourceUnavailable, match="wrong user name or password") as info:
        collect(password_cluster.dsn(password="Wrong-Guess-0815"))
    assert "Wrong-Guess-0815" not in str(info.value) and "Cluster-Secret-4711" not in str(info.value)
    data, ctx = collect(password_cluster.dsn())
    saved = json.dumps(Facts(data={"postgres": data}, errors=ctx.facts.errors).to_json())
    assert data["target"] == f"postgres@127.0.0.1:{password_cluster.port}/postgres"
    assert "Cluster-Secret-4711" not in saved and "Cluster-Secret-4711" not in json.dumps(data)


def test_pending_restart_after_alter_system(password_cluster: LocalCluster) -> None:
    with psycopg.connect(password_cluster.dsn(), autocommit=True) as conn:
        conn.execute("ALTER SYSTEM SET shared_buffers = '64MB'")
        conn.execute("SELECT pg_reload_conf()")
        # the postmaster re-reads its files asynchronously: wait for it, not for a guessed 0.5 s
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not conn.execute(
                "SELECT pending_restart FROM pg_settings WHERE name = 'shared_buffers'").fetchone()[0]:
            time.sleep(0.1)
    data, _ = collect(password_cluster.dsn())
    assert data["settings"]["shared_buffers"]["pending_restart"] is True
    [finding] = [f for f in audit(data, Settings()) if f.code == "PG009"]
    assert finding.subject == "setting shared_buffers"
    assert "runs with 128MB" in finding.message and "'64MB' set in" in finding.message
    assert "postgresql.auto.conf" in finding.message
