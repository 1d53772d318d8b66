"""What `verify` runs, and how it times it. Read-only by construction.

The workload, in this order:
1. The top statements of pg_stat_statements in this database (by total execution time), replayed
   only when they are plain SELECTs: no FOR UPDATE/SHARE, no SELECT INTO, no function known to have
   side effects (advisory locks, pg_terminate_backend, nextval, dblink...). Each run is inside
   `BEGIN READ ONLY` with `SET LOCAL statement_timeout`, and is rolled back.
   pg_stat_statements normalises constants to $1, $2...: we have no sample values for them, so a
   parameterised statement is measured on PostgreSQL 16+ as `EXPLAIN (GENERIC_PLAN)` -- its planning
   time only (kind "generic-plan") -- and skipped, with the reason, before 16.
2. Always (the top statements are mostly parameterised, so they alone rarely show what an index
   or a memory setting changed; without the extension it is the whole workload), a built-in probe
   over the largest tables: index lookups by the first column of up to two btree
   indexes per table, with sample values drawn by `TABLESAMPLE BERNOULLI (p) REPEATABLE (seed)` (the
   same rows again as long as the table's pages are the same, so before and after look up the same
   keys; the values themselves are never stored, only a digest), and a bounded scan of 10,000 rows.

Timing: one warm-up round, then `rounds` interleaved rounds (every probe once per round, so drift
of the machine hits all probes alike). Per probe p50/p95/mean in ms per execution; the noise is the
spread of the medians of three consecutive blocks of rounds relative to the overall median.
"""

from __future__ import annotations

import hashlib
import re
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql as pgsql

TAG = "/* stackaudit verify */"
PROBE_TABLES = 3
PROBE_INDEXES_PER_TABLE = 2
PROBE_SAMPLES = 20
SCAN_ROWS = 10_000
SAMPLE_SEED = 7

_SIDE_EFFECTS = re.compile(
    r"\b(pg_(try_)?advisory\w*|pg_terminate_backend|pg_cancel_backend|pg_reload_conf|pg_rotate_logfile|"
    r"pg_switch_wal|pg_create_\w+|pg_drop_\w+|pg_sleep\w*|pg_notify|pg_stat_reset\w*|pg_file_\w+|"
    r"pg_read_\w*file|pg_logical_\w+|pg_replication_\w+|pg_promote|pg_backup_\w+|pg_import_system_\w+|"
    r"set_config|dblink\w*|lo_\w+|nextval|setval|txid_current|pg_current_xact_id|"
    r"pg_export_snapshot|pg_log_backend_memory_contexts|\w*_reset)\s*\(",
    re.IGNORECASE,
)
_LOCKING = re.compile(r"\bfor\s+(update|share|no\s+key\s+update|key\s+share)\b", re.IGNORECASE)
_INTO = re.compile(r"\binto\b", re.IGNORECASE)
_PARAM = re.compile(r"\$\d+")
_LEADING_COMMENTS = re.compile(r"^\s*(/\*.*?\*/\s*|--[^\n]*\n\s*)*", re.DOTALL)


class MeasureError(RuntimeError):
    pass


@dataclass
class Probe:
    label: str
    kind: str  # "statement" | "generic-plan" | "index-lookup" | "bounded-scan"
    sql: str
    sample_sql: str | None = None  # index lookups: the query that draws the keys
    queryid: str | None = None
    values: list[Any] = field(default_factory=list, repr=False)  # in memory only, never written
    sample_digest: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "kind": self.kind,
            "sql": self.sql,
            "sample_sql": self.sample_sql,
            "queryid": self.queryid,
            "sample_digest": self.sample_digest,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Probe:
        return cls(
            str(data["label"]),
            str(data["kind"]),
            str(data["sql"]),
            data.get("sample_sql"),
            data.get("queryid"),
            sample_digest=data.get("sample_digest"),
        )


def replay_verdict(query: str) -> str | None:
    """None when the statement is safe to replay read-only; else why it is skipped."""
    body = _LEADING_COMMENTS.sub("", query).strip()
    if "stackaudit" in query:
        return "our own measurement"
    if not re.match(r"select\b", body, re.IGNORECASE):
        return "not a plain SELECT (only reads are replayed)"
    if _LOCKING.search(body):
        return "SELECT ... FOR UPDATE/SHARE takes row locks"
    if _INTO.search(body):
        return "SELECT INTO creates a table"
    match = _SIDE_EFFECTS.search(body)
    if match:
        return f"calls {match.group(1)}(), which has side effects"
    if ";" in body.rstrip(";"):
        return "several statements"
    return None


def statement_probes(
    conn: psycopg.Connection[Any], top: int, major: int
) -> tuple[list[Probe], list[dict[str, str]]]:
    """The top statements of pg_stat_statements in this database that can be replayed."""
    schema = conn.execute(
        f"{TAG} SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
        "WHERE e.extname = 'pg_stat_statements'"
    ).fetchone()
    if schema is None:
        return [], [{"label": "pg_stat_statements", "why": "extension not installed in this database"}]
    columns = {
        r[0]
        for r in conn.execute(
            f"{TAG} SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0",
            (f'"{schema[0]}".pg_stat_statements',),
        ).fetchall()
    }
    total = "total_exec_time" if "total_exec_time" in columns else "total_time"
    toplevel = "AND toplevel" if "toplevel" in columns else ""
    try:
        rows = conn.execute(
            pgsql.SQL(
                TAG + " SELECT queryid::text, query FROM {}.pg_stat_statements WHERE dbid = "
                "(SELECT oid FROM pg_database WHERE datname = current_database()) "
                + toplevel
                + " AND query IS NOT NULL ORDER BY "
                + total
                + " DESC LIMIT %s"
            ).format(pgsql.Identifier(schema[0])),
            (top * 5,),
        ).fetchall()
    except psycopg.Error as exc:
        return [], [{"label": "pg_stat_statements", "why": str(exc).strip().splitlines()[0]}]
    probes: list[Probe] = []
    skipped = []
    for queryid, query in rows:
        label = _label(str(query))
        why = replay_verdict(str(query))
        if why is None and _PARAM.search(str(query)):
            if major < 16:
                why = (
                    "parameterised ($1...) and no sample values; EXPLAIN (GENERIC_PLAN) needs PostgreSQL 16+"
                )
            else:
                probes.append(
                    Probe(
                        f"plan: {label}",
                        "generic-plan",
                        f"{TAG} EXPLAIN (GENERIC_PLAN) {query}",
                        queryid=queryid,
                    )
                )
                continue
        if why is not None:
            if why != "our own measurement":
                skipped.append({"label": label, "why": why})
            continue
        probes.append(Probe(label, "statement", f"{TAG} {query}", queryid=queryid))
    return probes[:top], skipped


def _label(query: str) -> str:
    text = " ".join(_LEADING_COMMENTS.sub("", query).split())
    return text if len(text) <= 80 else text[:77] + "..."


PROBE_TABLES_SQL = (
    TAG
    + """
SELECT c.oid, n.nspname, c.relname, greatest(c.reltuples, 0)::bigint
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_%%' AND has_table_privilege(c.oid, 'SELECT')
ORDER BY pg_relation_size(c.oid) DESC, c.oid LIMIT %s
"""
)
PROBE_INDEXES_SQL = (
    TAG
    + """
SELECT a.attname FROM pg_index i
JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_am am ON am.oid = ic.relam
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
WHERE i.indrelid = %s AND am.amname = 'btree' AND i.indkey[0] <> 0 AND i.indpred IS NULL AND i.indisvalid
ORDER BY i.indisprimary DESC, ic.relname LIMIT %s
"""
)


def builtin_probes(conn: psycopg.Connection[Any]) -> list[Probe]:
    """Index lookups and a bounded scan over the largest tables."""
    probes = []
    for oid, schema, table, tuples in conn.execute(PROBE_TABLES_SQL, (PROBE_TABLES,)).fetchall():
        name = pgsql.Identifier(schema, table).as_string(conn)
        for (column,) in conn.execute(PROBE_INDEXES_SQL, (oid, PROBE_INDEXES_PER_TABLE)).fetchall():
            col = pgsql.Identifier(column).as_string(conn)
            percent = min(100.0, max(0.001, 100.0 * PROBE_SAMPLES * 10 / max(int(tuples), 1)))
            sample = (
                f"{TAG} SELECT {col} FROM ONLY {name} TABLESAMPLE BERNOULLI ({percent:.4f}) "
                f"REPEATABLE ({SAMPLE_SEED}) WHERE {col} IS NOT NULL LIMIT {PROBE_SAMPLES}"
            )
            probes.append(
                Probe(
                    f"index lookup {schema}.{table}({column})",
                    "index-lookup",
                    f"{TAG} SELECT * FROM ONLY {name} WHERE {col} = %s",
                    sample_sql=sample,
                )
            )
        probes.append(
            Probe(
                f"bounded scan {schema}.{table} ({SCAN_ROWS} rows)",
                "bounded-scan",
                f"{TAG} SELECT count(*) FROM (SELECT * FROM ONLY {name} LIMIT {SCAN_ROWS}) s",
            )
        )
    return probes


def draw_samples(
    conn: psycopg.Connection[Any], probes: Sequence[Probe], timeout_ms: int
) -> list[dict[str, str]]:
    """Fill index lookups' values (in memory); drop those that found none. Returns the skipped."""
    skipped = []
    for probe in probes:
        if probe.sample_sql is None:
            continue
        try:
            rows = _read_only(conn, probe.sample_sql, None, timeout_ms * 10)
        except psycopg.Error as exc:
            skipped.append(
                {"label": probe.label, "why": f"sampling failed: {str(exc).strip().splitlines()[0]}"}
            )
            continue
        probe.values = [r[0] for r in rows]
        digest = hashlib.sha256(repr(probe.values).encode()).hexdigest()[:16]
        if probe.sample_digest is not None and digest != probe.sample_digest:
            skipped.append(
                {
                    "label": probe.label,
                    "why": "note: the sampled keys differ from the baseline's "
                    "(the table's pages changed); compared anyway",
                }
            )
        probe.sample_digest = digest
        if not probe.values:
            skipped.append({"label": probe.label, "why": "no sample keys (empty table?)"})
    return skipped


def _read_only(
    conn: psycopg.Connection[Any], query: str, params: Sequence[Any] | None, timeout_ms: int
) -> list[Any]:
    """One statement in a READ ONLY transaction with a statement_timeout, always rolled back."""
    conn.execute("BEGIN TRANSACTION READ ONLY")
    try:
        conn.execute(f"SET LOCAL statement_timeout = {int(timeout_ms)}")
        return conn.execute(query, params).fetchall()
    finally:
        conn.execute("ROLLBACK")


def _time_once(conn: psycopg.Connection[Any], probe: Probe, timeout_ms: int) -> float:
    """Milliseconds per execution (index lookups: per key)."""
    conn.execute("BEGIN TRANSACTION READ ONLY")
    try:
        conn.execute(f"SET LOCAL statement_timeout = {int(timeout_ms)}")
        if probe.kind == "index-lookup":
            started = time.perf_counter()
            for value in probe.values:
                conn.execute(probe.sql, (value,)).fetchall()
            return (time.perf_counter() - started) * 1000 / max(1, len(probe.values))
        # Client-side binding sends the text as is (simple protocol): "$1" in a generic plan is
        # then the server's parameter symbol, not a placeholder the driver must fill.
        cursor = psycopg.ClientCursor(conn)
        started = time.perf_counter()
        cursor.execute(probe.sql).fetchall()
        return (time.perf_counter() - started) * 1000
    finally:
        conn.execute("ROLLBACK")


def measure(
    conn: psycopg.Connection[Any], probes: Sequence[Probe], rounds: int, timeout_ms: int
) -> tuple[dict[str, list[float]], list[dict[str, str]], float]:
    """Samples (ms) per probe label, the probes that failed and why, and the measured seconds."""
    runnable = [p for p in probes if p.kind != "index-lookup" or p.values]
    failed: dict[str, str] = {}
    samples: dict[str, list[float]] = {p.label: [] for p in runnable}
    measured = 0.0
    for round_number in range(rounds + 1):  # round 0 warms the caches and is not kept
        for probe in runnable:
            if probe.label in failed:
                continue
            try:
                elapsed = _time_once(conn, probe, timeout_ms)
            except psycopg.Error as exc:
                failed[probe.label] = (
                    str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                )
                continue
            if round_number:
                samples[probe.label].append(elapsed)
                measured += elapsed / 1000 * (len(probe.values) if probe.kind == "index-lookup" else 1)
    for label in failed:
        samples.pop(label, None)
    return samples, [{"label": k, "why": f"failed: {v}"} for k, v in failed.items()], measured


def percentile(values: Sequence[float], share: float) -> float:
    """Nearest rank."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(share * len(ordered) + 0.5)))
    return ordered[rank - 1]


def summarise(values: Sequence[float]) -> dict[str, float | int]:
    p50 = statistics.median(values)
    third = max(1, len(values) // 3)
    blocks = [
        statistics.median(values[i : i + third]) for i in range(0, third * 3, third) if values[i : i + third]
    ]
    noise = (max(blocks) - min(blocks)) / p50 if p50 > 0 and len(blocks) > 1 else 0.0
    mean = statistics.fmean(values)
    return {
        "p50_ms": round(p50, 4),
        "p95_ms": round(percentile(values, 0.95), 4),
        "mean_ms": round(mean, 4),
        "runs": len(values),
        "noise": round(noise, 4),
        "per_second": round(1000 / mean, 2) if mean > 0 else 0.0,
    }
