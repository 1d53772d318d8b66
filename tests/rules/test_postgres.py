"""PostgreSQL rules (PG004, PG009, PG010, PG102, PG201, PG202, PG301-PG304, PG401, PG402) on
hand-built facts snapshots: each code fires in one test and stays silent in another."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from stackaudit.config import Settings
from stackaudit.facts import Facts
from stackaudit.facts.postgres import DEFINED_UNUSED
from stackaudit.model import Hit, Risk, Severity
from stackaudit.rules import postgres as rules

DAY = 86400.0
MB = 1024**2


def setting(value: str, setting_: str, unit: str | None = None, base: float | None = None,
            source: str = "default", sourcefile: str | None = None, pending: bool = False) -> dict[str, Any]:
    return {"value": value, "setting": setting_, "unit": unit, "base_value": base, "source": source,
            "sourcefile": sourcefile, "sourceline": 3 if sourcefile else None, "pending_restart": pending,
            "context": "user", "vartype": "integer" if base is not None else "string"}


def clean_postgres() -> dict[str, Any]:
    """A healthy server: every rule stays silent on it."""
    return {
        "server_version_num": 180000, "major": 18, "current_database": "app",
        "settings": {
            "work_mem": setting("4MB", "4096", "kB", 4 * MB),
            "shared_buffers": setting("128MB", "16384", "8kB", 128 * MB, "configuration file",
                                      "/var/lib/postgresql/data/postgresql.conf"),
            "shared_preload_libraries": setting("pg_stat_statements", "pg_stat_statements"),
            "autovacuum_freeze_max_age": setting("200000000", "200000000", None, 2e8),
            "idle_in_transaction_session_timeout": setting("0", "0", "ms", 0.0),
        },
        "file_settings": [],
        "databases": [{"name": "app", "size_bytes": 5 * 1024**3, "xid_age": 150_000_000, "mxid_age": 1,
                       "blks_read": 2_000_000, "blks_hit": 400_000_000, "cache_hit_ratio": 0.995,
                       "temp_files": 3, "temp_bytes": 10 * MB, "is_template": False}],
        "connections": {"total": 12, "max_connections": 100, "idle_in_transaction": [
            {"pid": 4242, "database": "app", "user": "rails", "application": "puma", "client": "172.18.0.5",
             "state": "idle in transaction", "state_age_seconds": 12.0, "xact_age_seconds": 13.0,
             "holds_xid": False, "query": "SELECT 1"}]},
        "per_database": {"app": {
            "stats_since": "2026-01-01T00:00:00+00:00", "stats_since_basis": "stats_reset",
            "stats_age_seconds": 60 * DAY,
            "tables": [{"schema": "public", "table": "orders", "live_tuples": 2_000_000,
                        "dead_tuples": 20_000,
                        "last_autovacuum": "2026-03-01T00:00:00+00:00", "last_autoanalyze": "2026-03-01",
                        "last_vacuum": None, "last_analyze": None, "seq_scan": 40, "seq_tup_read": 8_000_000,
                        "idx_scan": 9_000_000, "total_bytes": 900 * MB, "options": None}],
            "indexes": [
                {"schema": "public", "table": "orders", "index": "orders_pkey", "idx_scan": 0,
                 "size_bytes": 40 * MB, "is_primary": True, "is_unique": True, "is_valid": True,
                 "constraint_type": "p", "backs_constraint": True, "definition": "CREATE UNIQUE INDEX ..."},
                {"schema": "public", "table": "orders", "index": "orders_email_key", "idx_scan": 0,
                 "size_bytes": 30 * MB, "is_primary": False, "is_unique": True, "is_valid": True,
                 "constraint_type": None, "backs_constraint": False, "definition": "CREATE UNIQUE INDEX ..."},
                {"schema": "public", "table": "orders", "index": "orders_excl", "idx_scan": 0,
                 "size_bytes": 30 * MB, "is_primary": False, "is_unique": False, "is_valid": True,
                 "constraint_type": "x", "backs_constraint": True, "definition": "CREATE INDEX ... gist"},
                {"schema": "public", "table": "orders", "index": "orders_broken", "idx_scan": 0,
                 "size_bytes": 30 * MB, "is_primary": False, "is_unique": False, "is_valid": False,
                 "constraint_type": None, "backs_constraint": False, "definition": "CREATE INDEX ..."},
                {"schema": "public", "table": "orders", "index": "orders_user_id", "idx_scan": 5000,
                 "size_bytes": 30 * MB, "is_primary": False, "is_unique": False, "is_valid": True,
                 "constraint_type": None, "backs_constraint": False, "definition": "CREATE INDEX ..."},
            ],
            "duplicate_indexes": [], "invalid_indexes": []}},
        "statements": {"available": True, "preloaded": True, "installed": True, "installed_in": ["app"],
                       "track_planning": False, "stats_reset": "2026-01-01T00:00:00+00:00",
                       "totals": {"total_exec_ms": 1_000_000.0},
                       "top": [{"queryid": "11", "database": "app", "user": "rails", "query": "SELECT $1",
                                "calls": 100_000, "rows": 100_000, "total_exec_ms": 50_000.0,
                                "mean_exec_ms": 0.5, "mean_plan_ms": None, "temp_blks_written": 0,
                                "share_of_total_exec": 0.05},
                               {"queryid": "12", "database": "app", "user": "admin",
                                "query": "CREATE DATABASE x", "calls": 1, "rows": 0, "total_exec_ms": 900.0,
                                "mean_exec_ms": 900.0, "mean_plan_ms": None, "temp_blks_written": 0,
                                "share_of_total_exec": 0.0009}]},
    }


def make_facts(pg: dict[str, Any] | None = None, compose: dict[str, Any] | None = None) -> Facts:
    data: dict[str, Any] = {}
    if pg is not None:
        data["postgres"] = pg
    if compose is not None:
        data["compose"] = compose
    return Facts(data=data)


def hits(check: Any, facts: Facts, settings: Settings | None = None) -> list[Hit]:
    return list(check(facts, settings or Settings()))


@pytest.fixture
def pg() -> dict[str, Any]:
    return copy.deepcopy(clean_postgres())


@pytest.mark.parametrize("check", [
    rules.work_mem_too_small, rules.pending_restart, rules.idle_in_transaction, rules.vacuum_stale,
    rules.xid_wraparound_age, rules.unused_index, rules.duplicate_index, rules.missing_index_candidate,
    rules.low_cache_hit_ratio, rules.stat_statements_missing, rules.slow_queries,
])
def test_healthy_server_is_silent_for_pg004_to_pg402(check: Any, pg: dict[str, Any]) -> None:
    assert hits(check, make_facts(pg)) == []


def test_pg004_fires_on_temp_spills_with_per_role_work_mem(pg: dict[str, Any]) -> None:
    pg["databases"][0].update(temp_bytes=60 * 1024**3, temp_files=9000)
    pg["statements"]["top"].append({
        "queryid": "77", "database": "app", "user": "reporting", "query": "SELECT * FROM orders ORDER BY $1",
        "calls": 100, "rows": 10, "total_exec_ms": 9000.0, "mean_exec_ms": 90.0, "mean_plan_ms": None,
        "temp_blks_written": 100 * 3200, "share_of_total_exec": 0.009})  # 25 MB per call
    pg["statements"]["top"].append({  # an index build spills against maintenance_work_mem: not listed
        "queryid": "78", "database": "app", "user": "admin", "query": "CREATE INDEX i ON orders (x)",
        "calls": 1, "rows": 0, "total_exec_ms": 900.0, "mean_exec_ms": 900.0, "mean_plan_ms": None,
        "temp_blks_written": 900_000, "share_of_total_exec": 0.0009})
    [hit] = hits(rules.work_mem_too_small, make_facts(pg))
    assert "CREATE INDEX" not in hit.message and "admin" not in (hit.recommendation.action or "")
    assert "60.0 GiB" in hit.message and "1.0 GiB per day" in hit.message
    assert "reporting" in hit.message
    assert hit.recommendation.action == "ALTER ROLE \"reporting\" SET work_mem = '64MB';"
    assert "not globally" in hit.recommendation.summary
    assert any(e.key == "work_mem_source" and e.observed == "default" for e in hit.evidence)


def test_pg004_silent_when_spills_are_rare_per_day(pg: dict[str, Any]) -> None:
    pg["databases"][0]["temp_bytes"] = 20 * 1024**3  # 20 GB over 60 days = 341 MB/day < 512 MB
    assert hits(rules.work_mem_too_small, make_facts(pg)) == []


def test_pg009_fires_naming_the_waiting_value(pg: dict[str, Any]) -> None:
    pg["settings"]["shared_buffers"]["pending_restart"] = True
    pg["file_settings"] = [{"name": "shared_buffers", "setting": "2GB", "applied": False,
                            "sourcefile": "/data/postgresql.auto.conf", "sourceline": 3}]
    [hit] = hits(rules.pending_restart, make_facts(pg))
    assert hit.subject == "setting shared_buffers"
    assert "128MB" in hit.message and "'2GB'" in hit.message and "postgresql.auto.conf" in hit.message
    assert hit.recommendation.risk is Risk.CONFIRM


def reference_compose(initdb_args: str) -> dict[str, Any]:
    return {"projects": [{"name": "permoney", "services": {
        "db": {"name": "db", "project": "permoney", "image": "postgres:18", "image_repository": "postgres",
               "environment": {"POSTGRES_INITDB_ARGS": initdb_args, "POSTGRES_PASSWORD": "***"}},
        "web": {"name": "web", "project": "permoney", "image": "app", "image_repository": "app",
                "environment": {"POSTGRES_INITDB_ARGS": "-c work_mem=1GB"}}}}]}


def test_pg010_fires_on_the_reference_reports_initdb_args(pg: dict[str, Any]) -> None:
    args = ("-c shared_buffers=5760MB -c effective_cache_size=15GB -c work_mem=256MB "
            "--set=max_worker_processes=4")
    [hit] = hits(rules.settings_only_at_initdb, make_facts(pg, reference_compose(args)))
    assert hit.subject == "service permoney/db"  # the app service's variable is not a postgres one
    assert "4 server settings" in hit.message and "empty data directory" in hit.message
    assert "live shared_buffers = 128MB from configuration file" in hit.message
    assert '"-c", "work_mem=256MB"' in (hit.recommendation.action or "")
    assert "command:" in (hit.recommendation.action or "")


def test_pg010_silent_on_real_initdb_options() -> None:
    assert hits(rules.settings_only_at_initdb,
                make_facts(compose=reference_compose("--data-checksums --locale=C.UTF-8"))) == []


def test_pg010_fires_with_compose_alone() -> None:
    [hit] = hits(rules.settings_only_at_initdb, make_facts(compose=reference_compose("-c work_mem=64MB")))
    assert "live" not in hit.message


def test_initdb_settings_parses_every_spelling() -> None:
    assert rules.initdb_settings("-c a=1 -cb=2 --set c=3 --set=d=4 -c 'e=5 6' --data-checksums") == [
        ("a", "1"), ("b", "2"), ("c", "3"), ("d", "4"), ("e", "5 6")]


def test_pg102_fires_and_escalates(pg: dict[str, Any]) -> None:
    session = pg["connections"]["idle_in_transaction"][0]
    session.update(state_age_seconds=900.0, xact_age_seconds=905.0)
    [hit] = hits(rules.idle_in_transaction, make_facts(pg))
    assert hit.severity is None and "15.0 minutes" in hit.message and "pid 4242" in hit.message
    assert "idle_in_transaction_session_timeout" in (hit.recommendation.action or "")
    session["state_age_seconds"] = 7200.0
    [hit] = hits(rules.idle_in_transaction, make_facts(pg))
    assert hit.severity is Severity.HIGH


def test_pg201_fires_on_dead_tuples_and_never_vacuumed_tables(pg: dict[str, Any]) -> None:
    tables = pg["per_database"]["app"]["tables"]
    tables[0].update(dead_tuples=1_000_000)  # 33% dead
    tables.append({"schema": "public", "table": "events", "live_tuples": 50_000, "dead_tuples": 0,
                   "last_vacuum": None, "last_autovacuum": None, "last_analyze": None,
                   "last_autoanalyze": None, "options": ["autovacuum_enabled=false"]})
    found = hits(rules.vacuum_stale, make_facts(pg))
    assert [h.subject for h in found] == ["table app.public.orders", "table app.public.events"]
    assert "1,000,000 dead tuples (33%" in found[0].message
    assert "never vacuumed nor analyzed" in found[1].message and "disabled" in found[1].message


def test_pg201_silent_for_small_never_vacuumed_table(pg: dict[str, Any]) -> None:
    pg["per_database"]["app"]["tables"].append({"schema": "public", "table": "tiny", "live_tuples": 50,
                                                "dead_tuples": 40})
    assert hits(rules.vacuum_stale, make_facts(pg)) == []


def test_pg202_fires_high_then_critical(pg: dict[str, Any]) -> None:
    pg["databases"][0]["xid_age"] = 1_200_000_000
    [hit] = hits(rules.xid_wraparound_age, make_facts(pg))
    assert hit.severity is None and "1,200,000,000" in hit.message and "56%" in hit.message
    pg["databases"][0]["xid_age"] = 1_600_000_000
    assert hits(rules.xid_wraparound_age, make_facts(pg))[0].severity is Severity.CRITICAL


def unused(name: str, size: int) -> dict[str, Any]:
    return {"schema": "public", "table": "orders", "index": name, "idx_scan": 0, "size_bytes": size,
            "is_primary": False, "is_unique": False, "is_valid": True, "constraint_type": None,
            "backs_constraint": False, "definition": f"CREATE INDEX {name} ON public.orders USING btree (x)"}


def test_pg301_fires_with_size_and_statistics_age(pg: dict[str, Any]) -> None:
    pg["per_database"]["app"]["indexes"] += [unused("orders_note", 250 * MB), unused("orders_tiny", 8192)]
    [hit] = hits(rules.unused_index, make_facts(pg))  # the pkey, unique, exclusion, invalid ones are not
    assert hit.subject == "index app.public.orders_note"
    assert "250.0 MiB" in hit.message and "statistics cover 60 days" in hit.message
    assert hit.severity is None and hit.recommendation.risk is Risk.MANUAL
    assert "DROP INDEX CONCURRENTLY" in (hit.recommendation.action or "")
    assert "to restore: CREATE INDEX orders_note" in (hit.recommendation.action or "")


def test_pg301_shows_no_more_indexes_than_the_collector_reads_definitions_for(pg: dict[str, Any]) -> None:
    """The collector reads the definitions of the DEFINED_UNUSED largest never-scanned indexes
    only: PG301 must never show one more (its action's "to restore" line needs it)."""
    many = DEFINED_UNUSED + 5
    pg["per_database"]["app"]["indexes"] += [unused(f"orders_n{i:03d}", (i + 1) * MB) for i in range(many)]
    shown = hits(rules.unused_index, make_facts(pg))
    assert 0 < len(shown) <= DEFINED_UNUSED
    largest = {f"index app.public.orders_n{i:03d}" for i in range(many - DEFINED_UNUSED, many)}
    assert {h.subject for h in shown} <= largest


def test_pg301_fires_at_info_when_statistics_are_young(pg: dict[str, Any]) -> None:
    pg["per_database"]["app"].update(stats_age_seconds=2 * DAY, stats_since_basis="database_created")
    pg["per_database"]["app"]["indexes"].append(unused("orders_note", 250 * MB))
    [hit] = hits(rules.unused_index, make_facts(pg))
    assert hit.severity is Severity.INFO
    assert "statistics are only 2.0 days old (since the database was created)" in hit.message


def test_pg302_silent_without_duplicates(pg: dict[str, Any]) -> None:
    assert hits(rules.duplicate_index, make_facts(pg)) == []


def test_pg302_fires_on_a_left_prefix(pg: dict[str, Any]) -> None:
    pg["per_database"]["app"]["duplicate_indexes"] = [{
        "schema": "public", "table": "orders", "index": "orders_a", "covered_by": "orders_a_b",
        "kind": "prefix", "size_bytes": 12 * MB, "idx_scan": 3, "definition": "CREATE INDEX orders_a ...",
        "covered_by_definition": "CREATE INDEX orders_a_b ..."}]
    [hit] = hits(rules.duplicate_index, make_facts(pg))
    assert "is a left prefix of orders_a_b" in hit.message and "12.0 MiB" in hit.message


def test_pg303_fires_on_a_large_table_read_by_seq_scans(pg: dict[str, Any]) -> None:
    pg["per_database"]["app"]["tables"][0].update(seq_scan=5000, seq_tup_read=10_000_000_000, idx_scan=100)
    [hit] = hits(rules.missing_index_candidate, make_facts(pg))
    assert "5,000 sequential scans (98% of its scans, 2,000,000 rows read per scan)" in hit.message


def test_pg303_silent_on_small_tables(pg: dict[str, Any]) -> None:
    pg["per_database"]["app"]["tables"][0].update(live_tuples=5000, seq_scan=5000, idx_scan=0)
    assert hits(rules.missing_index_candidate, make_facts(pg)) == []


def test_pg304_fires_on_a_busy_database(pg: dict[str, Any]) -> None:
    pg["databases"][0].update(blks_read=5_000_000, blks_hit=20_000_000, cache_hit_ratio=0.8)
    [hit] = hits(rules.low_cache_hit_ratio, make_facts(pg))
    assert "80.0%" in hit.message and "5,000,000 blocks read" in hit.message


def test_pg304_silent_on_a_quiet_database(pg: dict[str, Any]) -> None:
    pg["databases"][0].update(blks_read=5_000, blks_hit=20_000, cache_hit_ratio=0.8)
    assert hits(rules.low_cache_hit_ratio, make_facts(pg)) == []


def test_pg401_fires_when_not_preloaded_or_not_created(pg: dict[str, Any]) -> None:
    pg["statements"] = {"available": True, "preloaded": False, "installed": False, "installed_in": [],
                        "top": []}
    [hit] = hits(rules.stat_statements_missing, make_facts(pg))
    assert "not in shared_preload_libraries" in hit.message and hit.recommendation.risk is Risk.CONFIRM
    pg["statements"]["preloaded"] = True
    [hit] = hits(rules.stat_statements_missing, make_facts(pg))
    assert "CREATE EXTENSION was not run" in hit.message and hit.recommendation.risk is Risk.SAFE
    pg["statements"]["preloaded"] = None  # shared_preload_libraries hidden from a non-superuser
    [hit] = hits(rules.stat_statements_missing, make_facts(pg))
    assert "hidden from this role" in hit.message and "not in shared_preload" not in hit.message


def test_pg402_fires_by_mean_and_by_share(pg: dict[str, Any]) -> None:
    top = pg["statements"]["top"]
    top.append({"queryid": "21", "database": "app", "user": "rails", "query": "SELECT pg_sleep($1)",
                "calls": 40, "rows": 40, "total_exec_ms": 20_000.0, "mean_exec_ms": 500.0,
                "mean_plan_ms": 0.2,
                "temp_blks_written": 0, "share_of_total_exec": 0.02})
    top[0]["share_of_total_exec"] = 0.45
    found = hits(rules.slow_queries, make_facts(pg))
    assert [h.subject for h in found] == ["statement 11", "statement 21"]
    assert "45% of all execution time" in found[0].message
    assert "500.0 ms mean" in found[1].message and "planning 0.2 ms mean" in found[1].message


def test_pg402_silent_for_share_on_a_quiet_server(pg: dict[str, Any]) -> None:
    pg["statements"]["totals"]["total_exec_ms"] = 2000.0  # below min_total_exec_ms
    pg["statements"]["top"][0]["share_of_total_exec"] = 0.9
    assert hits(rules.slow_queries, make_facts(pg)) == []


def test_setting_origin_says_command_line_beats_alter_system() -> None:
    assert "overrides ALTER SYSTEM" in rules.setting_origin({"source": "command line"})
    auto = {"source": "configuration file", "sourcefile": "/d/postgresql.auto.conf", "sourceline": 3}
    assert rules.setting_origin(auto) == "ALTER SYSTEM (/d/postgresql.auto.conf line 3)"


def test_pg009_silent_without_pending_restart(pg: dict[str, Any]) -> None:
    pg["file_settings"] = [{"name": "work_mem", "setting": "8MB", "applied": True}]
    assert hits(rules.pending_restart, make_facts(pg)) == []


def test_pg102_silent_for_a_short_idle_transaction(pg: dict[str, Any]) -> None:
    pg["connections"]["idle_in_transaction"][0]["state_age_seconds"] = 299.0
    assert hits(rules.idle_in_transaction, make_facts(pg)) == []


def test_pg202_silent_below_the_danger_zone(pg: dict[str, Any]) -> None:
    pg["databases"][0]["xid_age"] = 999_999_999
    assert hits(rules.xid_wraparound_age, make_facts(pg)) == []


def test_pg301_silent_for_constraint_unique_invalid_and_used_indexes(pg: dict[str, Any]) -> None:
    assert all(i["idx_scan"] == 0 or i["index"] == "orders_user_id"
               for i in pg["per_database"]["app"]["indexes"])  # large enough, mostly never scanned
    assert hits(rules.unused_index, make_facts(pg)) == []


def test_pg401_silent_when_installed(pg: dict[str, Any]) -> None:
    assert hits(rules.stat_statements_missing, make_facts(pg)) == []


def test_pg402_silent_for_a_slow_one_off_statement(pg: dict[str, Any]) -> None:
    assert pg["statements"]["top"][1]["mean_exec_ms"] >= 100  # CREATE DATABASE, called once
    assert hits(rules.slow_queries, make_facts(pg)) == []


def test_pg004_silent_without_database_temp_bytes(pg: dict[str, Any]) -> None:
    pg["databases"][0]["temp_bytes"] = 0
    pg["statements"]["top"][0]["temp_blks_written"] = 900_000
    assert hits(rules.work_mem_too_small, make_facts(pg)) == []
