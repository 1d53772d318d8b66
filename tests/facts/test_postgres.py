"""The PostgreSQL collector's pure parts: units, target discovery, error wording, duplicate indexes,
query masking. (The live collection is in tests/integration/test_postgres_live.py.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from stackaudit.config import Settings
from stackaudit.facts import CollectContext, Facts, SourceUnavailable
from stackaudit.facts import postgres as pgf


@pytest.mark.parametrize(("setting", "unit", "vartype", "expected"), [
    ("16384", "8kB", "integer", 128 * 1024**2),  # shared_buffers 128MB
    ("4096", "kB", "integer", 4 * 1024**2),  # work_mem 4MB
    ("1024", "MB", "integer", 1024**3),  # max_wal_size 1GB
    ("16777216", "B", "integer", 16 * 1024**2),  # wal_segment_size
    ("300", "s", "integer", 300_000.0),  # checkpoint_timeout 5min
    ("1", "min", "integer", 60_000.0),  # autovacuum_naptime
    ("200", "ms", "integer", 200.0),
    ("-1", "kB", "integer", -1.0),  # autovacuum_work_mem: "use maintenance_work_mem"
    ("4", None, "real", 4.0),  # random_page_cost
    ("on", None, "bool", None),
    ("pg_stat_statements", None, "string", None),
])
def test_base_value_in_bytes_and_milliseconds(setting: str, unit: str | None, vartype: str,
                                              expected: float | None) -> None:
    assert pgf.base_value(setting, unit, vartype) == expected


@pytest.mark.parametrize(("message", "reason"), [
    ('connection failed: FATAL:  password authentication failed for user "app"',
     "wrong user name or password"),
    ("connection to server at \"127.0.0.1\", port 1 failed: Connection refused", "connection refused"),
    ('FATAL:  database "nope" does not exist', "does not exist"),
    ("SSL error: certificate verify failed", "SSL"),
    ("connection timeout expired", "did not answer in time"),
    ("fe_sendauth: no password supplied", "password is required"),
])
def test_connection_errors_are_classified_by_message(message: str, reason: str) -> None:
    assert reason in pgf.classify_connection_error(message)


def idx(name: str, cols: list[int], *, unique: bool = False, primary: bool = False,
        constraint: str | None = None, method: str = "btree", predicate: str | None = None,
        opclasses: list[int] | None = None, key_columns: int | None = None,
        expressions: str | None = None, valid: bool = True) -> dict[str, Any]:
    return {"schema": "public", "table": "t", "index": name, "column_numbers": cols,
            "key_columns": key_columns or len(cols), "opclasses": opclasses or [1978] * len(cols),
            "collations": [0] * len(cols), "options": [0] * len(cols), "is_unique": unique,
            "is_primary": primary, "constraint_type": constraint, "method": method, "predicate": predicate,
            "expressions": expressions, "is_valid": valid, "size_bytes": 8192, "idx_scan": 0,
            "definition": f"CREATE INDEX {name}"}


def redundant(indexes: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {(d["index"], d["covered_by"], d["kind"]) for d in pgf.find_duplicate_indexes(indexes)}


def test_duplicate_indexes_identical_and_left_prefix() -> None:
    assert redundant([idx("a", [1]), idx("ab", [1, 2]), idx("ab2", [1, 2])]) == {
        ("a", "ab", "prefix"), ("ab2", "ab", "identical")}


def test_duplicate_indexes_never_drop_a_constraint_or_a_narrower_unique() -> None:
    # a unique (a) enforces something (a, b) does not; a pkey is never the redundant one
    assert redundant([idx("a_key", [1], unique=True), idx("ab", [1, 2])]) == set()
    assert redundant([idx("pkey", [1], unique=True, primary=True, constraint="p"), idx("a", [1])]) == {
        ("a", "pkey", "identical")}
    assert redundant([idx("pkey", [1], unique=True, primary=True, constraint="p"),
                      idx("a_uniq", [1], unique=True)]) == {("a_uniq", "pkey", "identical")}


def test_duplicate_indexes_respect_opclass_predicate_method_and_include() -> None:
    assert redundant([idx("a", [1], opclasses=[3128]), idx("ab", [1, 2])]) == set()  # e.g. text_pattern_ops
    assert redundant([idx("a", [1], predicate="(a > 0)"), idx("ab", [1, 2])]) == set()
    assert redundant([idx("a", [1], method="hash"), idx("ab", [1, 2], method="hash")]) == set()
    assert redundant([idx("a_inc", [1, 3], key_columns=1), idx("ab", [1, 2])]) == set()
    assert redundant([idx("lower", [0], expressions="lower(x)"), idx("ab", [1, 2])]) == set()
    assert redundant([idx("a", [1], valid=False), idx("ab", [1, 2])]) == set()


def compose_facts(ports: list[dict[str, Any]]) -> dict[str, Any]:
    return {"projects": [{"name": "shop", "services": {
        "db": {"name": "db", "image": "postgis/postgis:16-3.4", "image_repository": "postgis/postgis",
               "ports": ports},
        "web": {"name": "web", "image": "shop-web", "image_repository": "shop-web", "ports": []}}}]}


PRIVATE_ENV = {"shop": {
    "db": {"POSTGRES_USER": "admin", "POSTGRES_PASSWORD": "pw-from-env-1234"},
    "web": {"DATABASE_URL": "postgresql://rails:rails-pw-5678@db:5432/shop_production"}}}


def test_compose_target_uses_published_port_and_service_credentials() -> None:
    ports = [{"host_ip": "127.0.0.1", "published": "15432", "target": 5432, "protocol": "tcp"}]
    [target] = pgf.compose_targets(compose_facts(ports), {}, PRIVATE_ENV)
    assert (target.origin, target.project, target.service) == ("compose", "shop", "db")
    assert target.label == "admin@127.0.0.1:15432/shop_production"
    assert "pw-from-env-1234" in target.conninfo and "pw-from-env-1234" not in target.label


def test_compose_target_falls_back_to_container_ip_and_app_credentials() -> None:
    docker = {"containers": [{"name": "shop-db-1", "compose_project": "shop", "compose_service": "db",
                              "networks": {"shop_default": {"ip_address": "172.18.0.3"}}}]}
    env = {"shop": {"db": {}, "web": PRIVATE_ENV["shop"]["web"]}}
    [target] = pgf.compose_targets(compose_facts([]), docker, env)
    assert target.label == "rails@172.18.0.3:5432/shop_production"


def test_compose_target_skips_a_service_bound_elsewhere() -> None:
    ports = [{"host_ip": "10.0.0.5", "published": "5432", "target": 5432, "protocol": "tcp"}]
    assert list(pgf.compose_targets(compose_facts(ports), {}, PRIVATE_ENV)) == []


def test_find_target_order_and_the_nothing_found_message(tmp_path: Path) -> None:
    ctx = CollectContext(settings=Settings(pg_dsn="postgresql://u:topsecret@h:5433/db"), facts=Facts())
    target = pgf.find_target(ctx, environ={"PGHOST": "elsewhere"})
    assert (target.origin, target.label) == ("--pg", "u@h:5433/db")
    ctx = CollectContext(settings=Settings(proc_root=tmp_path), facts=Facts())  # no postmaster runs here
    target = pgf.find_target(ctx, environ={"PGHOST": "db.internal", "PGUSER": "me"})
    assert target.origin == "libpq environment"
    with pytest.raises(SourceUnavailable, match="no PostgreSQL target: give --pg DSN"):
        pgf.find_target(ctx, environ={"PGPORT": "5432"})  # PGPORT alone is not a target


def test_query_text_is_masked() -> None:
    assert pgf.mask_query("ALTER ROLE app PASSWORD 'hunter2-long'") == "ALTER ROLE app PASSWORD '***'"
    assert len(pgf.mask_query("SELECT " + "x" * 1000) or "") == 300


def test_activity_summary_counts_and_sorts_idle_transactions() -> None:
    rows = [{"pid": 1, "state": "active", "application": "puma", "client": "10.0.0.2", "database": "app",
             "user": "rails", "xact_age_seconds": 1.0},
            {"pid": 2, "state": "idle in transaction", "application": "sidekiq", "client": "10.0.0.3",
             "database": "app", "user": "rails", "state_age_seconds": 50.0, "xact_age_seconds": 60.0},
            {"pid": 3, "state": "idle in transaction (aborted)", "application": "puma", "client": None,
             "database": "app", "user": "rails", "state_age_seconds": 500.0, "xact_age_seconds": 501.0}]
    summary = pgf.summarise_activity(rows, {"max_connections": {"base_value": 100.0}})
    assert summary["by_state"]["active"] == 1 and summary["by_application"] == {"puma": 2, "sidekiq": 1}
    assert summary["max_connections"] == 100 and summary["longest_transaction_seconds"] == 501.0
    assert [s["pid"] for s in summary["idle_in_transaction"]] == [3, 2]


def test_local_data_directory_checks_the_port(tmp_path: Any) -> None:
    (tmp_path / "postmaster.pid").write_text("123\n/data\n1700000000\n5433\n/tmp\n")
    assert pgf.local_data_directory(tmp_path, 5433)
    assert not pgf.local_data_directory(tmp_path, 5432)


def test_runs_in_matches_the_container_publishing_the_port() -> None:
    docker = {"containers": [{"name": "shop-db-1", "compose_project": "shop", "compose_service": "db",
                              "memory_limit_bytes": 2 * 1024**3,
                              "ports": [{"host_ip": "127.0.0.1", "host_port": 15432,
                                         "container_port": 5432}]}]}
    target = pgf.Target("host=127.0.0.1 port=15432", "--pg", "x")
    assert pgf.runs_in(docker, target, {}) == {"kind": "container", "container": "shop-db-1", "service": "db",
                                               "project": "shop", "memory_limit_bytes": 2 * 1024**3}
    other = pgf.Target("host=127.0.0.1 port=5999", "--pg", "x")
    assert pgf.runs_in(docker, other, {"data_directory": {"local": False}})["kind"] == "unknown"


def _data_directory(root: Path) -> Path:
    """A data directory's layout: two databases under base/, WAL, and a file at the top."""
    for rel, size in (("PG_VERSION", 3), ("base/1/1259", 8192), ("base/1/PG_VERSION", 3),
                      ("base/16384/16385", 40960), ("pg_wal/000000010000000000000001", 1000),
                      ("global/pg_control", 8192)):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x" * size)
    (root / "pg_tblspc").mkdir()
    return root


def test_data_directory_size_counts_base_from_the_database_sizes(tmp_path: Path) -> None:
    data = _data_directory(tmp_path)
    walked = pgf.directory_size(data, deadline=float("inf"))
    assert walked == 3 + 8192 + 3 + 40960 + 1000 + 8192
    # the server's pg_database_size() stands for base/<oid> (here deliberately not the files' bytes,
    # to show base/16384 is not walked); a database without a size (no CONNECT) is walked
    sizes = {16384: 50_000, 1: None, None: 7}
    assert pgf.data_directory_size(data, sizes, float("inf")) == walked - 40960 + 50_000


def test_data_directory_size_walks_everything_when_a_tablespace_exists(tmp_path: Path) -> None:
    data = _data_directory(tmp_path)
    (tmp_path / "elsewhere").mkdir()
    (data / "pg_tblspc" / "16500").symlink_to(tmp_path / "elsewhere")
    assert pgf.data_directory_size(data, {16384: 50_000}, float("inf")) == pgf.directory_size(
        data, float("inf"))
