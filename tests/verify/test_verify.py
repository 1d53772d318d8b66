"""verify: what is replayed (read-only only), and a real change measured before/after."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from stackaudit.localpg import LocalCluster
from stackaudit.verify import compare, verify
from stackaudit.verify.measure import replay_verdict, summarise
from tests.remediation.test_apply_live import cli
from tests.services import create_database


@pytest.mark.parametrize(
    "query,why",
    [
        ("SELECT * FROM t WHERE id = $1", None),
        ("/* app */ select count(*) from orders", None),
        ("UPDATE t SET a = $1", "not a plain SELECT"),
        ("WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x", "not a plain SELECT"),
        ("SELECT * FROM jobs WHERE id = $1 FOR UPDATE SKIP LOCKED", "FOR UPDATE"),
        ("SELECT nextval($1)", "nextval"),
        ("SELECT pg_advisory_lock($1)", "pg_advisory_lock"),
        ("SELECT pg_terminate_backend(pid) FROM pg_stat_activity", "pg_terminate_backend"),
        ("SELECT * INTO copy FROM t", "SELECT INTO"),
    ],
)
def test_only_plain_reads_are_replayed(query: str, why: str | None) -> None:
    verdict = replay_verdict(query)
    assert (verdict is None) if why is None else (verdict is not None and why in verdict)


def test_summary_and_comparison_use_the_noise() -> None:
    quiet = [1.0] * 9
    row = summarise(quiet)
    assert row["p50_ms"] == 1.0 and row["noise"] == 0.0 and row["runs"] == 9
    base = {
        "statements": [
            {"label": "a", "p50_ms": 1.0, "noise": 0.0},
            {"label": "b", "p50_ms": 1.0, "noise": 0.5},
        ],
        "throughput": {"per_second": 100.0},
    }
    now = {
        "statements": [
            {"label": "a", "p50_ms": 2.0, "noise": 0.0},
            {"label": "b", "p50_ms": 1.3, "noise": 0.1},
        ],
        "throughput": {"per_second": 50.0},
    }
    result = compare(now, base)
    a, b = result["statements"]
    assert a["ratio"] == 2.0 and a["verdict"] == "slower" and a["before_ms"] == 1.0 and a["after_ms"] == 2.0
    assert b["verdict"] == "within noise"  # 1.3x but the baseline's runs spread by 50%
    assert result["throughput"]["ratio"] == 0.5


def _seed(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS t")
        conn.execute("CREATE TABLE t (id bigserial PRIMARY KEY, k int NOT NULL, pad text)")
        conn.execute(
            "INSERT INTO t (k, pad) SELECT (g * 7919) % 150000, md5(g::text) "
            "FROM generate_series(1, 150000) g"
        )
        conn.execute("CREATE INDEX t_k ON t (k)")
        conn.execute("ANALYZE t")
        conn.execute("SELECT pg_stat_statements_reset()")
        for _ in range(3):
            conn.execute("SELECT count(*) FROM t WHERE pad IS NOT NULL").fetchall()
            conn.execute("SELECT * FROM t WHERE k = 42").fetchall()
            conn.execute("SELECT nextval('t_id_seq')").fetchall()


@pytest.mark.integration
def test_dropping_an_index_is_measured(pg_cluster: LocalCluster, tmp_path: Path) -> None:
    dsn = create_database(pg_cluster, "verify_index")
    _seed(dsn)
    rows_before = _count(dsn)
    before = verify(dsn, rounds=5)
    labels = {s["label"]: s for s in before["statements"]}
    assert "SELECT count(*) FROM t WHERE pad IS NOT NULL" in labels
    assert "index lookup public.t(k)" in labels
    skipped = {s["label"]: s["why"] for s in before["skipped"]}
    assert any("nextval" in why for why in skipped.values())
    parameterised = "SELECT * FROM t WHERE k = $1"
    if pg_cluster.major_version() >= 16:
        assert (
            f"plan: {parameterised}" in labels and labels[f"plan: {parameterised}"]["kind"] == "generic-plan"
        )
    else:
        assert "GENERIC_PLAN" in skipped[parameterised]
    assert all(s["before_ms"] == s["p50_ms"] and s["after_ms"] is None for s in before["statements"])
    lookups = [w for w in before["workload"] if w["kind"] == "index-lookup"]
    assert lookups and all(w["sample_digest"] and "values" not in w for w in lookups)  # keys never written

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP INDEX t_k")
    after = verify(dsn, baseline=json.loads(json.dumps(before)), rounds=5)
    lookup = next(s for s in after["statements"] if s["label"] == "index lookup public.t(k)")
    # a sequential scan of 150,000 rows against a lookup of one key: slower beyond the noise both runs
    # measured (the bound verify computes), whatever the machine's speed
    assert lookup["verdict"] == "slower" and lookup["ratio"] > 1 + lookup["noise"]
    assert lookup["ratio"] == pytest.approx(lookup["after_ms"] / lookup["before_ms"], rel=1e-3)
    assert after["source"] == "baseline" and after["summary"]["compared"] == len(before["statements"])
    assert _count(dsn) == rows_before  # nothing written (nextval was never replayed)


@pytest.mark.integration
def test_cli_save_then_against(pg18: LocalCluster, tmp_path: Path) -> None:
    dsn = create_database(pg18, "verify_cli")
    _seed(dsn)
    baseline = tmp_path / "before.json"
    saved = cli("verify", "--pg", dsn, "--rounds", "3", "--save", str(baseline))
    assert saved.returncode == 0, saved.stderr
    assert json.loads(baseline.read_text())["statements"]
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("ALTER DATABASE verify_cli SET enable_indexscan = off")
        conn.execute("ALTER DATABASE verify_cli SET enable_bitmapscan = off")
    compared = cli("verify", "--pg", dsn, "--rounds", "3", "--against", str(baseline), "--format", "json")
    assert compared.returncode == 0, compared.stderr
    result = json.loads(compared.stdout)
    lookup = next(s for s in result["statements"] if s["label"] == "index lookup public.t(k)")
    assert lookup["verdict"] == "slower" and lookup["ratio"] > 1 + lookup["noise"]
    assert {"label", "before_ms", "after_ms"} <= set(lookup)
    text = cli("verify", "--pg", dsn, "--rounds", "3", "--against", str(baseline))
    assert "x" in text.stdout and "index lookup public.t(k)" in text.stdout
    both = cli("verify", "--pg", dsn, "--save", str(baseline), "--against", str(baseline))
    assert both.returncode == 2 and "Traceback" not in both.stderr


def _count(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*), (SELECT last_value FROM t_id_seq) FROM t").fetchone()
    assert row is not None
    return int(row[0]) * 1_000_000 + int(row[1])
