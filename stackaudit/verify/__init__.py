"""`stackaudit verify`: measure the database before and after a change, so an "expected improvement"
becomes a measured ratio with its noise (ERRATA 5).

    before = verify(dsn)                      # saved with --save before.json
    ... apply the change ...
    after = verify(dsn, baseline=before)      # --against before.json: the SAME workload replayed

The result is JSON: {"statements": [{"label", "kind", "before_ms", "after_ms", "ratio", "verdict",
"p50_ms", "p95_ms", "noise", ...}], "throughput": {...}, "summary": {...}, "workload": [...]}.
`before_ms`/`after_ms` are p50s (the HTML report's before/after chart reads them); a baseline alone
has only `before_ms`. What is replayed and how it is timed: see measure.py.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import psycopg

from stackaudit.redact import scrub
from stackaudit.verify.measure import (
    Probe,
    builtin_probes,
    draw_samples,
    measure,
    statement_probes,
    summarise,
)

VERSION = 1
MIN_NOISE = 0.05  # below 5% we do not call a difference real, however quiet the runs were


class VerifyError(RuntimeError):
    """Verify could not run (connection, no workload); the message says why."""


def verify(
    dsn: str,
    baseline: Mapping[str, Any] | None = None,
    rounds: int = 15,
    top: int = 10,
    timeout_ms: int = 5000,
) -> dict[str, Any]:
    try:
        conn = psycopg.connect(dsn, autocommit=True, connect_timeout=10, application_name="stackaudit-verify")
    except psycopg.Error as exc:
        raise VerifyError(f"cannot connect to PostgreSQL: {scrub(str(exc)).strip()}") from None
    with conn:
        major = conn.info.server_version // 10000
        probes, skipped, source = _workload(conn, baseline, top, major)
        skipped += draw_samples(conn, probes, timeout_ms)
        samples, failed, seconds = measure(conn, probes, rounds, timeout_ms)
        database = conn.info.dbname
    if not samples:
        raise VerifyError(
            "nothing could be measured: "
            + "; ".join(f"{s['label']}: {s['why']}" for s in skipped + failed)[:800]
        )
    by_label = {p.label: p for p in probes}
    statements = [
        {"label": label, "kind": by_label[label].kind, **summarise(values)}
        for label, values in samples.items()
    ]
    executions = sum(len(v) * max(1, len(by_label[k].values)) for k, v in samples.items())
    result: dict[str, Any] = {
        "version": VERSION,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "database": database,
        "server_major": major,
        "source": source,
        "rounds": rounds,
        "statements": statements,
        "skipped": skipped + failed,
        "throughput": {
            "executions": executions,
            "seconds": round(seconds, 4),
            "per_second": round(executions / seconds, 2) if seconds else None,
        },
        "workload": [p.to_json() for p in probes if p.label in samples],
    }
    return compare(result, baseline) if baseline is not None else _as_baseline(result)


def _workload(
    conn: psycopg.Connection[Any], baseline: Mapping[str, Any] | None, top: int, major: int
) -> tuple[list[Probe], list[dict[str, str]], str]:
    if baseline is not None:
        if baseline.get("version") != VERSION or not baseline.get("workload"):
            raise VerifyError("the baseline has no workload to replay (not written by `verify --save`?)")
        return [Probe.from_json(p) for p in baseline["workload"]], [], "baseline"
    probes, skipped = statement_probes(conn, top, major)
    source = "pg_stat_statements + built-in probe" if probes else "built-in probe"
    probes += builtin_probes(conn)
    if not probes:
        raise VerifyError("no statement to replay and no table to probe in this database")
    return probes, skipped, source


def _as_baseline(result: dict[str, Any]) -> dict[str, Any]:
    for row in result["statements"]:
        row.update(before_ms=row["p50_ms"], after_ms=None, ratio=None, verdict=None)
    result["summary"] = {"statements": len(result["statements"]), "compared": 0}
    return result


def compare(result: dict[str, Any], baseline: Mapping[str, Any]) -> dict[str, Any]:
    """after/before per statement (p50), with the noise of both runs deciding what is real."""
    before = {row["label"]: row for row in baseline.get("statements") or []}
    ratios = []
    for row in result["statements"]:
        old = before.get(row["label"])
        if old is None or not old.get("p50_ms"):
            row.update(before_ms=None, after_ms=row["p50_ms"], ratio=None, verdict="new")
            continue
        ratio = row["p50_ms"] / old["p50_ms"]
        noise = max(MIN_NOISE, float(old.get("noise") or 0), float(row["noise"]))
        verdict = "slower" if ratio > 1 + noise else "faster" if ratio < 1 / (1 + noise) else "within noise"
        row.update(
            before_ms=old["p50_ms"],
            after_ms=row["p50_ms"],
            before_p95_ms=old.get("p95_ms"),
            ratio=round(ratio, 4),
            noise=round(noise, 4),
            verdict=verdict,
        )
        ratios.append(ratio)
    old_tp = (baseline.get("throughput") or {}).get("per_second")
    new_tp = result["throughput"].get("per_second")
    result["throughput"].update(
        before_per_second=old_tp,
        after_per_second=new_tp,
        ratio=round(new_tp / old_tp, 4) if old_tp and new_tp else None,
    )
    geo = math.exp(sum(math.log(r) for r in ratios) / len(ratios)) if ratios else None
    result["summary"] = {
        "statements": len(result["statements"]),
        "compared": len(ratios),
        "geometric_mean_ratio": round(geo, 4) if geo else None,
        "slower": sum(1 for r in result["statements"] if r.get("verdict") == "slower"),
        "faster": sum(1 for r in result["statements"] if r.get("verdict") == "faster"),
        "baseline_measured_at": baseline.get("measured_at"),
    }
    return result


def describe(result: Mapping[str, Any]) -> str:
    lines = [
        f"verify: {result['database']} (PostgreSQL {result['server_major']}), workload from "
        f"{result['source']}, {result['rounds']} interleaved rounds"
    ]
    for row in result["statements"]:
        line = (
            f"  {row['label']}: p50 {row['p50_ms']:.3f} ms, p95 {row['p95_ms']:.3f} ms, "
            f"noise {row['noise']:.0%}"
        )
        if row.get("ratio") is not None:
            line += (
                f"; before {row['before_ms']:.3f} ms -> after {row['after_ms']:.3f} ms = "
                f"x{row['ratio']:.2f} ({row['verdict']})"
            )
        lines.append(line)
    tp = result["throughput"]
    lines.append(
        f"throughput: {tp.get('per_second')} executions/s"
        + (f" (before {tp['before_per_second']}, ratio x{tp['ratio']})" if tp.get("ratio") else "")
    )
    summary = result.get("summary") or {}
    if summary.get("geometric_mean_ratio"):
        lines.append(
            f"overall: x{summary['geometric_mean_ratio']} (geometric mean of after/before; "
            f"{summary['slower']} slower, {summary['faster']} faster, the rest within noise)"
        )
    lines += [f"  skipped {s['label']}: {s['why']}" for s in result.get("skipped") or []]
    return "\n".join(lines)
