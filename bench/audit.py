"""Audit cost on a large host: a full `stackaudit audit` vs `docker system df -v` vs its own SQL.

    make bench-audit                           # 1x, 2x, 4x of 200 images / 20 repositories,
                                               # 50 containers, 30 volumes, 2,000 tables with indexes
    make bench-audit QUICK=1                   # a quarter of that size, at 1x and 2x

First the start-up: `stackaudit --version` (what every command pays) and `stackaudit check
--sources host` under /usr/bin/time -v. Then a private dockerd (tests.services.start_docker_engine:
its own data root and socket, vfs storage) and a PostgreSQL 18 cluster with pg_stat_statements are
filled up step by step; at each size the audit and `docker system df -v` run in turns (audit, df,
audit, df, ...), the audit under /usr/bin/time -v (wall, CPU, peak RSS), and the audit's own SQL
time is read from pg_stat_statements. Finally the cluster measures (CLUSTER_MEASURES: pgbench with
and without audits beside it, in turns; add more there) run against the largest host.
"""

from __future__ import annotations

import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

import psycopg

from bench.common import QUICK, STACKAUDIT, cpu_window, log, machine, run, save, table
from tests.services import DockerEngine, running_cluster, start_docker_engine

BASE = {"images": 200, "repositories": 20, "containers": 50, "running": 20, "volumes": 30, "tables": 2000}
FRACTION = 0.25 if QUICK else 1.0
STEPS = (1, 2) if QUICK else (1, 2, 4)
REPEATS = 2 if QUICK else 3
STARTUP_REPEATS = 5 if QUICK else 11
PGBENCH_SECONDS = 10 if QUICK else 20


def target(step: int) -> dict[str, int]:
    return {k: max(1, int(v * FRACTION * step)) for k, v in BASE.items()}


class Host:
    """The Docker objects and tables built so far; grow() adds what the next size needs."""

    def __init__(self, engine: DockerEngine, dsn: str) -> None:
        self.engine, self.dsn = engine, dsn
        self.have = {"images": 0, "containers": 0, "running": 0, "volumes": 0, "tables": 0}
        self.image_refs: list[str] = []

    def grow(self, want: dict[str, int]) -> None:
        repos = want["repositories"]
        while self.have["images"] < want["images"]:
            i = self.have["images"]
            repo, tag = f"bench/app{i % repos:02d}", f"v{i // repos}"
            self.engine.make_image(repo, tag, extra_files={f"/release-{i}": f"release {i}\n".encode()})
            self.image_refs.append(f"{repo}:{tag}")
            self.have["images"] += 1
        while self.have["volumes"] < want["volumes"]:
            self.engine.client.volumes.create(name=f"bench-vol{self.have['volumes']:03d}",
                                              labels={"com.docker.compose.project": "bench"})
            self.have["volumes"] += 1
        while self.have["containers"] < want["containers"]:
            i = self.have["containers"]
            running = self.have["running"] < want["running"]
            volume = f"bench-vol{i % max(1, self.have['volumes']):03d}"
            self.engine.run_container(
                self.image_refs[i % len(self.image_refs)], f"bench-c{i:03d}", detach_running=running,
                labels={"com.docker.compose.project": "bench", "com.docker.compose.service": f"svc{i % 10}"},
                volumes={volume: {"bind": "/data", "mode": "rw"}}, mem_limit="64m" if i % 2 else None)
            self.have["containers"] += 1
            self.have["running"] += int(running)
        if self.have["tables"] < want["tables"]:
            self._tables(self.have["tables"], want["tables"])
            self.have["tables"] = want["tables"]

    def _tables(self, start: int, end: int) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            for i in range(start, end):
                conn.execute(f"CREATE TABLE t{i:05d} (id bigint PRIMARY KEY, account int, "
                             f"created timestamptz DEFAULT now(), note text)")
                conn.execute(f"CREATE INDEX t{i:05d}_account ON t{i:05d} (account)")
                conn.execute(f"INSERT INTO t{i:05d} (id, account, note) "
                             f"SELECT g, g % 97, 'row ' || g FROM generate_series(1, 20) g")
            conn.execute("ANALYZE")


def time_v(args: list[str], env: dict[str, str] | None = None,
           cwd: str | None = None) -> tuple[dict[str, float], int, str]:
    """One run under /usr/bin/time -v: wall, CPU (user + sys) and peak RSS; its exit code and stderr."""
    result = run(["/usr/bin/time", "-v", *args], env=env, cwd=cwd)
    text = result.stderr

    def field(label: str) -> float:
        match = re.search(rf"{re.escape(label)}: ([\d.:]+)", text)
        if not match:
            return float("nan")
        value = match.group(1)
        if ":" in value:  # h:mm:ss or m:ss.ss
            parts = [float(p) for p in value.split(":")]
            return sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
        return float(value)

    figures = {"wall_s": field("Elapsed (wall clock) time (h:mm:ss or m:ss)"),
               "cpu_s": field("User time (seconds)") + field("System time (seconds)"),
               "peak_rss_mib": field("Maximum resident set size (kbytes)") / 1024}
    return figures, result.returncode, text


def timed_audit(dsn: str, env: dict[str, str], out: str, prefix: tuple[str, ...] = ()) -> dict[str, float]:
    """/usr/bin/time -v around `stackaudit audit` (exit 1 = findings, fine); `prefix` e.g. nice."""
    figures, code, stderr = time_v([*prefix, STACKAUDIT, "audit", "--pg", dsn, "--format", "json",
                                    "--out", out, "--state-dir", "/var/tmp/sa-bench-audit-state"], env=env)
    if code not in (0, 1):
        raise RuntimeError(f"audit failed ({code}): {stderr[-1500:]}")
    return figures


def startup() -> dict[str, dict[str, float]]:
    """Medians of `stackaudit --version` and of a host-only `stackaudit check`, run in turns."""
    commands = {"stackaudit --version": [STACKAUDIT, "--version"],
                "stackaudit check --sources host": [STACKAUDIT, "check", "--sources", "host", "--state-dir",
                                                    "/var/tmp/sa-bench-audit-state"]}
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in commands}
    for _ in range(STARTUP_REPEATS):
        for name, args in commands.items():
            figures, code, stderr = time_v(args)
            if code not in (0, 1):
                raise RuntimeError(f"{name} failed ({code}): {stderr[-1500:]}")
            runs[name].append(figures)
    return {name: {key: statistics.median(r[key] for r in rows) for key in rows[0]}
            for name, rows in runs.items()}


def docker_df_seconds(engine: DockerEngine) -> float:
    start = time.monotonic()
    result = run(["docker", "-H", engine.host, "system", "df", "-v"])
    if result.returncode != 0:
        raise RuntimeError(result.stderr)
    return time.monotonic() - start


def reset_statements(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_statements_reset()")


def top_statements(dsn: str, limit: int = 3) -> list[tuple[float, str]]:
    """The audit's slowest statements (ms, first 90 characters)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute("""
            SELECT round((total_exec_time + total_plan_time)::numeric, 1),
                   left(regexp_replace(query, '\\s+', ' ', 'g'), 90)
            FROM pg_stat_statements WHERE query NOT ILIKE '%%pg_stat_statements%%'
            ORDER BY 1 DESC LIMIT %s""", (limit,)).fetchall()
    return [(float(ms), text) for ms, text in rows]


def statements_ms(dsn: str) -> tuple[float, int]:
    """Execution + planning time and calls of everything since the reset, except this query itself."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("""
            SELECT coalesce(sum(total_exec_time + total_plan_time), 0), coalesce(sum(calls), 0)
            FROM pg_stat_statements WHERE query NOT ILIKE '%pg_stat_statements%'""").fetchone()
    assert row is not None
    return float(row[0]), int(row[1])


def source_seconds(dsn: str, docker_host: str) -> dict[str, float]:
    """Where the audit's time goes: stackaudit's own collect(), in-process, timed per source."""
    from stackaudit.cli.common import build_settings
    from stackaudit.facts import collect

    started: dict[str, float] = {}
    spent: dict[str, float] = {}

    def progress(source: str, state: str) -> None:
        if state == "start":
            started[source] = time.monotonic()
        else:
            spent[source] = round(time.monotonic() - started[source], 2)

    previous = os.environ.get("DOCKER_HOST")
    os.environ["DOCKER_HOST"] = docker_host
    try:
        collect(build_settings(pg=dsn, state_dir=Path("/var/tmp/sa-bench-audit-state")), progress)
    finally:
        if previous is None:
            os.environ.pop("DOCKER_HOST", None)
        else:
            os.environ["DOCKER_HOST"] = previous
    return spent


def measure_size(host: Host, dsn: str, env: dict[str, str], step: int) -> dict[str, Any]:
    """The audit and `docker system df -v` in turns, REPEATS times; medians and their ratio."""
    audits, sql_ms, calls, dfs = [], [], [], []
    for _ in range(REPEATS):
        reset_statements(dsn)
        audits.append(timed_audit(dsn, env, f"/var/tmp/sa-bench-audit-{step}.json"))
        ms, n = statements_ms(dsn)
        sql_ms.append(ms)
        calls.append(n)
        dfs.append(docker_df_seconds(host.engine))

    def med(key: str) -> float:
        return statistics.median(a[key] for a in audits)

    top = top_statements(dsn)
    by_source = source_seconds(dsn, host.engine.host)
    return {"step": step, "size": dict(host.have), "seconds_by_source": by_source, "top_statements": top,
            "audit_wall_s": med("wall_s"), "audit_cpu_s": med("cpu_s"),
            "audit_peak_rss_mib": med("peak_rss_mib"), "docker_df_s": statistics.median(dfs),
            "sql_s": statistics.median(sql_ms) / 1000, "sql_calls": int(statistics.median(calls)),
            "audit_over_df": statistics.median(a["wall_s"] / d for a, d in zip(audits, dfs, strict=True)),
            "raw": audits, "raw_df_s": dfs}


def pgbench_beside_audits(cluster: Any, dsn: str, env: dict[str, str],
                          prefix: tuple[str, ...] = ()) -> dict[str, Any]:
    """pgbench TPC-B (4 clients) alone and with audits looping beside it, in turns."""
    from stackaudit.localpg import embedded_bin_dir

    pgbench = str(embedded_bin_dir() / "pgbench")
    base = ["runuser", "-u", cluster.os_user, "--", pgbench, "-h", str(cluster.socket_dir), "-p",
            str(cluster.port), "-U", "postgres"]
    subprocess.run([*base, "-i", "-s", "5", "-q", "bench"], capture_output=True, check=True)
    results: dict[str, list[float]] = {"alone": [], "with audit": []}
    others: dict[str, list[float]] = {"alone": [], "with audit": []}
    audits_done = []
    for _round in range(int(os.environ.get("PGBENCH_ROUNDS", "2"))):
        for mode in ("alone", "with audit"):
            stop = threading.Event()

            def loop(stop: threading.Event = stop) -> None:
                while not stop.is_set():
                    timed_audit(dsn, env, "/var/tmp/sa-bench-audit-loop.json", prefix)
                    audits_done.append(1)

            thread = threading.Thread(target=loop) if mode == "with audit" else None
            if thread:
                thread.start()
            with cpu_window(None) as cpu:
                out = subprocess.run([*base, "-n", "-c", "4", "-j", "2", "-T", str(PGBENCH_SECONDS), "bench"],
                                     capture_output=True, text=True, check=True).stdout
            stop.set()
            if thread:
                thread.join()
            results[mode].append(float(re.search(r"tps = ([\d.]+) \(without", out).group(1)))  # type: ignore[union-attr]
            others[mode].append(cpu[0].busy_seconds / cpu[0].wall_seconds)
            log(f"  pgbench {mode}: {results[mode][-1]:.0f} TPS")
    alone, with_audit = statistics.median(results["alone"]), statistics.median(results["with audit"])
    return {"tps": results, "machine_busy_cores": others, "ratio": with_audit / alone,
            "audits_run": len(audits_done)}


def render_pgbench(result: dict[str, Any]) -> str:
    return (f"pgbench TPS with audits looping beside it: {result['ratio']:.2f}x of alone "
            f"({result['tps']}, {result['audits_run']} audits ran)")


# Measures run once against the cluster of the largest host: name -> (measure, one-line summary).
# measure(cluster, dsn, env) returns JSON-able results; they are saved under their name.
ClusterMeasure = tuple[Callable[[Any, str, dict[str, str]], dict[str, Any]], Callable[[dict[str, Any]], str]]
CLUSTER_MEASURES: dict[str, ClusterMeasure] = {
    "pgbench_beside_audits": (pgbench_beside_audits, render_pgbench),
    "lock_case": (lambda _cluster, dsn, _env: lock_case(dsn), lambda r: render_lock_case(r)),
}


def startup_table(figures: dict[str, dict[str, float]]) -> str:
    rows = [[f"`{name}`", f"{f['wall_s']:.3f}", f"{f['cpu_s']:.3f}", f"{f['peak_rss_mib']:.1f}"]
            for name, f in figures.items()]
    return table(["command", "wall s", "CPU s", "peak RSS MiB"], rows)


def sizes_table(sizes: list[dict[str, Any]]) -> str:
    base = sizes[0]
    rows = []
    for s in sizes:
        have = s["size"]
        rows.append([f"{s['step']}x", f"{have['images']} / {have['containers']} / {have['volumes']} / "
                     f"{have['tables']}", f"{s['audit_wall_s']:.2f}", f"{s['audit_cpu_s']:.2f}",
                     f"{s['audit_peak_rss_mib']:.0f}", f"{s['docker_df_s']:.2f}",
                     f"{s['audit_over_df']:.1f}x",
                     f"{s['sql_s']:.2f} ({s['sql_calls']} calls)",
                     f"{s['audit_wall_s'] / base['audit_wall_s']:.2f}x"])
    return table(["size", "images / containers / volumes / tables", "audit wall s", "audit CPU s",
                  "peak RSS MiB", "docker system df -v s", "audit / df", "its SQL s", "wall vs 1x"], rows)


def main() -> None:
    info = machine()
    log(f"machine {info}")
    started = startup()
    log(f"start-up {started}")
    engine = start_docker_engine()
    sizes: list[dict[str, Any]] = []
    cluster_results: dict[str, dict[str, Any]] = {}
    try:
        with running_cluster(18) as cluster:
            with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
                conn.execute("CREATE DATABASE app")
                conn.execute("CREATE DATABASE bench")
            dsn = cluster.dsn("app")
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            env = {**os.environ, "DOCKER_HOST": engine.host}
            host = Host(engine, dsn)
            for step in STEPS:
                began = time.monotonic()
                host.grow(target(step))
                log(f"built {host.have} in {time.monotonic() - began:.0f}s; measuring")
                size = measure_size(host, dsn, env, step)
                sizes.append(size)
                log(f"  {size}")
            for name, (measure, _render) in CLUSTER_MEASURES.items():
                cluster_results[name] = measure(cluster, dsn, env)
    finally:
        engine.stop()
    print(startup_table(started))
    print()
    print(sizes_table(sizes))
    print("\nseconds by source (collect only, in-process; sources overlap, so they add up to more "
          "than the collection): " + "; ".join(f"{s['step']}x: {s['seconds_by_source']}" for s in sizes))
    for name, (_measure, render) in CLUSTER_MEASURES.items():
        print(f"\n{render(cluster_results[name])}")
    path = save("audit", {"machine": info, "quick": QUICK, "fraction": FRACTION, "startup": started,
                          "sizes": sizes, **cluster_results, "load_average_at_end": os.getloadavg()})
    log(f"raw results: {path}")


# ------------------------------------------------------------------------------------------------
# PostgreSQL only (issue #17): SQL time against table count, and an audit beside a held lock.
# `BENCH_ONLY=postgres .venv/bin/python -m bench.audit` runs just these (no Docker host needed).
# ------------------------------------------------------------------------------------------------

PG_TABLE_STEPS = (500, 2000) if QUICK else (2000, 8000)


def create_tables(dsn: str, start: int, end: int) -> None:
    """The same tables as Host._tables (PK, one index, 20 rows, a text column with TOAST), in one
    server-side loop per thousand so building 8,000 takes seconds."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for low in range(start, end, 1000):
            high = min(end, low + 1000)
            conn.execute(f"""DO $$ BEGIN FOR i IN {low}..{high - 1} LOOP
                EXECUTE format('CREATE TABLE t%s (id bigint PRIMARY KEY, account int, '
                               'created timestamptz DEFAULT now(), note text)', lpad(i::text, 5, '0'));
                EXECUTE format('CREATE INDEX t%s_account ON t%s (account)', lpad(i::text, 5, '0'),
                               lpad(i::text, 5, '0'));
                EXECUTE format('INSERT INTO t%s (id, account, note) SELECT g, g %% 97, ''row '' || g '
                               'FROM generate_series(1, 20) g', lpad(i::text, 5, '0'));
            END LOOP; END $$""")
        conn.execute("ANALYZE")


def postgres_collect(dsn: str) -> dict[str, Any]:
    """The postgres source alone, in-process: wall seconds, its SQL (pg_stat_statements), errors."""
    from stackaudit.cli.common import build_settings
    from stackaudit.facts import collect

    reset_statements(dsn)
    started = time.monotonic()
    settings = build_settings(pg=dsn, sources="postgres", state_dir=Path("/var/tmp/sa-bench-audit-state"))
    facts = collect(settings)
    wall = time.monotonic() - started
    ms, calls = statements_ms(dsn)
    return {"wall_s": wall, "sql_s": ms / 1000, "sql_calls": calls,
            "errors": [f"{e.where}: {e.why}" for e in facts.errors if e.source == "postgres"]}


def sql_scaling(dsn: str) -> list[dict[str, Any]]:
    """SQL time of the postgres source at each table count (median of REPEATS)."""
    rows, have = [], 0
    for tables in PG_TABLE_STEPS:
        create_tables(dsn, have, tables)
        have = tables
        runs = [postgres_collect(dsn) for _ in range(REPEATS)]
        rows.append({"tables": tables, "sql_s": statistics.median(r["sql_s"] for r in runs),
                     "wall_s": statistics.median(r["wall_s"] for r in runs),
                     "sql_calls": runs[-1]["sql_calls"], "errors": runs[-1]["errors"]})
        log(f"  {tables} tables: {rows[-1]}")
    return rows


def lock_case(dsn: str) -> dict[str, Any]:
    """An audit while another session holds ACCESS EXCLUSIVE on one table: how long, what it says,
    and whether the lock is still held afterwards."""
    holder = psycopg.connect(dsn)
    try:
        holder.execute("LOCK TABLE t00001 IN ACCESS EXCLUSIVE MODE")
        pid = holder.info.backend_pid
        result = postgres_collect(dsn)
        with psycopg.connect(dsn, autocommit=True) as conn:
            still = conn.execute("SELECT count(*) FROM pg_locks WHERE pid = %s AND granted AND "
                                 "mode = 'AccessExclusiveLock' AND relation = 't00001'::regclass",
                                 (pid,)).fetchone()
        result["lock_still_held"] = bool(still and still[0])
    finally:
        holder.rollback()
        holder.close()
    log(f"  lock case: {result}")
    return result


def render_lock_case(result: dict[str, Any]) -> str:
    return (f"audit (postgres source) beside an ACCESS EXCLUSIVE lock: {result['wall_s']:.2f} s, "
            f"lock still held after: {result['lock_still_held']}")


def postgres_only() -> None:
    info = machine()
    log(f"machine {info}")
    with running_cluster(18) as cluster:
        with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE app")
        dsn = cluster.dsn("app")
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        scaling = sql_scaling(dsn)
        locked = lock_case(dsn)
        with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE bench")
        # full audits (every source; no Docker engine here) beside pgbench, in turns
        env = {**os.environ, "DOCKER_HOST": "unix:///nonexistent"}
        concurrent = pgbench_beside_audits(cluster, dsn, env)
        # as `stackaudit schedule` runs them: systemd Nice=10, IOSchedulingClass=idle
        niced = pgbench_beside_audits(cluster, dsn, env, ("nice", "-n", "10", "ionice", "-c", "3"))
    print_postgres_rows(scaling, locked)
    for label, row in (("", concurrent), (" under nice 10 / ionice idle", niced)):
        print(f"\npgbench TPS with audits looping beside it{label}: {row['ratio']:.2f}x of alone "
              f"({row['tps']}, {row['audits_run']} audits ran)")
    path = save("audit-postgres", {"machine": info, "quick": QUICK, "scaling": scaling, "lock_case": locked,
                                   "concurrent": concurrent, "concurrent_niced": niced})
    log(f"raw results: {path}")


def print_postgres_rows(scaling: list[dict[str, Any]], locked: dict[str, Any]) -> None:
    base = scaling[0]
    rows = [[r["tables"], f"{r['sql_s']:.2f}", r["sql_calls"], f"{r['wall_s']:.2f}",
             f"{(r['sql_s'] / base['sql_s']) / (r['tables'] / base['tables']):.2f}"] for r in scaling]
    print(table(["tables", "its SQL s", "SQL calls", "postgres source wall s",
                 "SQL growth / table growth (<= 1: linear or better)"], rows))
    print(f"\naudit (postgres source) while another session holds ACCESS EXCLUSIVE on one table: "
          f"{locked['wall_s']:.2f} s, lock still held after: {locked['lock_still_held']}, "
          f"reported: {locked['errors']}")


# ------------------------------------------------------------------------------------------------
# Before / after (issue #17, leftovers): `BEFORE=DIR BENCH_ONLY=compare .venv/bin/python -m bench.audit`
# DIR is an export of the earlier tree (`git archive <commit> | tar -x -C DIR`); BEFORE_PATH is put in
# front of it on PYTHONPATH (the earlier dependency pins, e.g. `pip install --target` typer 0.29).
# At each size the earlier and the current audit and `docker system df -v` run in turns (ABAB),
# each audit under /usr/bin/time -v, with the load average recorded beside every run.
# ------------------------------------------------------------------------------------------------

COMPARE_ROUNDS = 3 if QUICK else 7


def compare_env(base: dict[str, str], name: str) -> dict[str, str]:
    """The environment that runs the `before` tree's stackaudit, or the `after` one: AFTER=DIR, an
    export too, so editing the checkout during the run changes nothing (default: this checkout)."""
    tree = os.environ.get("BEFORE") if name == "before" else os.environ.get("AFTER")
    if not tree:
        return base
    extra = os.environ.get("BEFORE_PATH") if name == "before" else None
    return {**base, "PYTHONPATH": ":".join(p for p in (extra, tree) if p)}


def server_sessions(conn: psycopg.Connection[Any]) -> float:
    """Sessions the cluster has had (pg_stat_database.sessions, PostgreSQL 14+)."""
    row = conn.execute("SELECT coalesce(sum(sessions), 0) FROM pg_stat_database").fetchone()
    return float(row[0]) if row else float("nan")


def server_cpu_seconds(data_dir: Path) -> float:
    """CPU used so far by the cluster's postmaster and its live backends (the audit's sessions end
    with their audit, so they are counted through the postmaster's reaped children too)."""
    import psutil

    pid = int((data_dir / "postmaster.pid").read_text().split()[0])
    total = 0.0
    parent = psutil.Process(pid)
    for process in (parent, *parent.children(recursive=True)):
        with suppress(psutil.Error):
            t = process.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
    return total


def compare_size(host: Host, dsn: str, env: dict[str, str], step: int,
                 data_dir: Path | None = None) -> dict[str, Any]:
    command = [str(Path(STACKAUDIT).parent / "python"), "-m", "stackaudit", "audit", "--pg", dsn,
               "--format", "json", "--state-dir", "/var/tmp/sa-bench-audit-state"]
    runs: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
    dfs: list[float] = []
    counters = psycopg.connect(dsn, autocommit=True)  # one session for the counters, opened before
    for turn in range(COMPARE_ROUNDS):
        order = ("before", "after") if turn % 2 == 0 else ("after", "before")
        for name in order:
            out = f"/var/tmp/sa-bench-audit-{name}.json"
            # cwd "/": python -m puts the working directory first on sys.path, before PYTHONPATH
            counters.execute("SELECT pg_stat_statements_reset()")
            sessions_before = server_sessions(counters)
            server_before = server_cpu_seconds(data_dir) if data_dir else float("nan")
            figures, code, stderr = time_v([*command, "--out", out], cwd="/",
                                           env=compare_env(env, name))
            server_after = server_cpu_seconds(data_dir) if data_dir else float("nan")
            figures["server_cpu_s"] = server_after - server_before
            time.sleep(0.5)  # a session's end reaches pg_stat_database when its backend exits
            figures["sessions"] = server_sessions(counters) - sessions_before
            figures["statements"] = float(counters.execute(
                "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements "
                "WHERE query NOT ILIKE '%pg_stat_statements%' AND query NOT ILIKE '%pg_stat_database%'"
            ).fetchone()[0])  # type: ignore[index]
            if code not in (0, 1):
                raise RuntimeError(f"{name} audit failed ({code}): {stderr[-1500:]}")
            figures["load_1m"] = os.getloadavg()[0]
            runs[name].append(figures)
            dfs.append(docker_df_seconds(host.engine))

    counters.close()

    def med(name: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[name])

    result: dict[str, Any] = {"step": step, "size": dict(host.have), "docker_df_s": statistics.median(dfs),
                              "raw": runs, "raw_df_s": dfs,
                              "after_seconds_by_source": source_seconds(dsn, host.engine.host)}
    for name in runs:
        result[name] = {key: med(name, key)
                        for key in ("wall_s", "cpu_s", "peak_rss_mib", "load_1m", "server_cpu_s", "sessions",
                                    "statements")}
        result[name]["over_df"] = result[name]["wall_s"] / result["docker_df_s"]
    result["after_over_before"] = {k: result["after"][k] / result["before"][k]
                                   for k in ("wall_s", "cpu_s", "peak_rss_mib")}
    return result


def compare() -> None:
    before = os.environ.get("BEFORE")
    if not before:
        raise SystemExit("BEFORE=DIR (an export of the earlier tree) is needed")
    info = machine()
    log(f"machine {info}")
    steps = tuple(int(s) for s in os.environ.get("STEPS", "1,4").split(","))
    engine = start_docker_engine()
    sizes: list[dict[str, Any]] = []
    try:
        with running_cluster(18) as cluster:
            with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
                conn.execute("CREATE DATABASE app")
                conn.execute("CREATE DATABASE bench")
            dsn = cluster.dsn("app")
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            env = {**os.environ, "DOCKER_HOST": engine.host}
            host = Host(engine, dsn)
            for step in steps:
                host.grow(target(step))
                log(f"built {host.have}; comparing")
                sizes.append(compare_size(host, dsn, env, step, cluster.data_dir))
                log(f"  {({k: v for k, v in sizes[-1].items() if k != 'raw'})}")
            wanted = os.environ.get("PGBENCH", "1") == "1"
            beside = pgbench_beside_audits(cluster, dsn, env) if wanted else None
    finally:
        engine.stop()
    print(compare_table(sizes))
    print("\nseconds by source, this tree (one in-process collect; sources overlap): "
          + "; ".join(f"{s['step']}x: {s['after_seconds_by_source']}" for s in sizes))
    if beside:
        print(f"\n{render_pgbench(beside)} (the audit's default priority: nice 10, idle I/O class)")
    path = save("audit-compare", {"machine": info, "quick": QUICK, "before": before, "sizes": sizes,
                                  "pgbench_beside_audits": beside, "load_average_at_end": os.getloadavg()})
    log(f"raw results: {path}")


def compare_held() -> None:
    """`BENCH_ONLY=compare-held DSN=... DOCKER_HOST=... PGDATA=... STEP=4 BEFORE=... AFTER=...`: the
    same turns against the host `BENCH_ONLY=hold` keeps up (no build; STEP says its size)."""
    import types

    engine = types.SimpleNamespace(host=os.environ["DOCKER_HOST"])
    step = int(os.environ.get("STEP", "1"))
    host = types.SimpleNamespace(engine=engine, have=target(step))
    env = dict(os.environ)
    size = compare_size(host, os.environ["DSN"], env, step, Path(os.environ["PGDATA"]))  # type: ignore[arg-type]
    print(compare_table([size]))
    print(f"\nseconds by source, this tree: {size['after_seconds_by_source']}")
    log(f"raw results: {save('audit-compare-held', {'machine': machine(), 'sizes': [size]})}")


def compare_table(sizes: list[dict[str, Any]]) -> str:
    rows = []
    for s in sizes:
        have = s["size"]
        for name in ("before", "after"):
            r = s[name]
            rows.append([f"{s['step']}x", f"{have['images']} / {have['containers']} / {have['tables']}", name,
                         f"{r['wall_s']:.2f}", f"{r['cpu_s']:.2f}", f"{r['peak_rss_mib']:.0f}",
                         f"{s['docker_df_s']:.2f}", f"{r['over_df']:.1f}x", f"{r.get('server_cpu_s', 0):.2f}",
                         f"{r.get('statements', 0):.0f} / {r.get('sessions', 0):.0f}", f"{r['load_1m']:.1f}"])
        ratio = s["after_over_before"]
        rows.append([f"{s['step']}x", "", "after / before", f"{ratio['wall_s']:.2f}x",
                     f"{ratio['cpu_s']:.2f}x", f"{ratio['peak_rss_mib']:.2f}x", "", "", "", "", ""])
    if len(sizes) > 1:
        for name in ("before", "after"):
            rows.append([f"{sizes[-1]['step']}x / {sizes[0]['step']}x", "", name,
                         f"{sizes[-1][name]['wall_s'] / sizes[0][name]['wall_s']:.2f}x",
                         f"{sizes[-1][name]['cpu_s'] / sizes[0][name]['cpu_s']:.2f}x", *[""] * 6])
    return table(["size", "images / containers / tables", "tree", "audit wall s", "CPU s", "peak RSS MiB",
                  "`docker system df -v` s", "audit / df", "server CPU s", "statements / sessions",
                  "load (1 min)"], rows)


def priority_beside() -> None:
    """`BENCH_ONLY=priority DSN=... DOCKER_HOST=... PGDATA=...` against the host `BENCH_ONLY=hold`
    keeps up: pgbench alone, beside back-to-back audits at normal priority (STACKAUDIT_NICE=0), at
    nice 19 alone, at the default of the BEFORE tree (when given) and at this one's default, in
    turns (the order rotated each round)."""
    import types

    dsn, data = os.environ["DSN"], Path(os.environ["PGDATA"])
    pid_lines = (data / "postmaster.pid").read_text().splitlines()
    cluster = types.SimpleNamespace(os_user=data.owner(), socket_dir=Path(pid_lines[4]),
                                    port=int(pid_lines[3]))
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS bench")
        conn.execute("CREATE DATABASE bench")
    from stackaudit.localpg import embedded_bin_dir

    base = ["runuser", "-u", cluster.os_user, "--", str(embedded_bin_dir() / "pgbench"), "-h",
            str(cluster.socket_dir), "-p", str(cluster.port), "-U", "postgres"]
    subprocess.run([*base, "-i", "-s", "5", "-q", "bench"], capture_output=True, check=True)
    normal = {**os.environ, "STACKAUDIT_NICE": "0"}
    modes: dict[str, tuple[dict[str, str], tuple[str, ...]] | None] = {
        "alone": None,
        "audits, normal priority (STACKAUDIT_NICE=0)": (normal, ()),
        "audits, own session at autogroup nice 19 (STACKAUDIT_NICE=19)":
            ({**os.environ, "STACKAUDIT_NICE": "19"}, ()),
    }
    if os.environ.get("BEFORE"):  # the previous tree's default, beside this one's
        modes["audits, the BEFORE tree's default"] = (compare_env({**os.environ, "STACKAUDIT_NICE": "1"},
                                                                  "before"), ())
    modes["audits, default (own session at autogroup nice 19, SCHED_IDLE, paced)"] = (
        compare_env({**os.environ, "STACKAUDIT_NICE": "1"}, "after"), ())
    tps: dict[str, list[float]] = {m: [] for m in modes}
    loads: list[float] = []
    audits: dict[str, int] = {m: 0 for m in modes}
    seconds: dict[str, list[float]] = {m: [] for m in modes}  # each audit's wall time beside pgbench
    names = list(modes)
    for turn in range(int(os.environ.get("PGBENCH_ROUNDS", "3"))):
        for mode in names[turn % len(names):] + names[:turn % len(names)]:
            stop = threading.Event()
            how = modes[mode]

            def loop(how: tuple[dict[str, str], tuple[str, ...]] | None = how, mode: str = mode,
                     stop: threading.Event = stop) -> None:
                while how is not None and not stop.is_set():
                    env, prefix = how
                    started = time.perf_counter()
                    subprocess.run([*prefix, STACKAUDIT, "audit", "--pg", dsn, "--format", "json", "--out",
                                    "/var/tmp/sa-bench-audit-loop.json", "--state-dir",
                                    "/var/tmp/sa-bench-audit-state"], env=env, capture_output=True,
                                   stdin=subprocess.DEVNULL)
                    audits[mode] += 1
                    seconds[mode].append(time.perf_counter() - started)

            thread = threading.Thread(target=loop)
            thread.start()
            out = subprocess.run([*base, "-n", "-c", "4", "-j", "2", "-T", str(PGBENCH_SECONDS), "bench"],
                                 capture_output=True, text=True, check=True).stdout
            stop.set()
            thread.join()
            tps[mode].append(float(re.search(r"tps = ([\d.]+) \(without", out).group(1)))  # type: ignore[union-attr]
            loads.append(os.getloadavg()[0])
            log(f"  {mode}: {tps[mode][-1]:.0f} TPS (load {loads[-1]:.1f})")
    alone = statistics.median(tps["alone"])
    rows = [[m, " / ".join(f"{t:.0f}" for t in tps[m]), f"{statistics.median(tps[m]):.0f}",
             f"{statistics.median(tps[m]) / alone:.2f}x", str(audits[m]),
             f"{statistics.median(seconds[m]):.1f}" if seconds[m] else "-"] for m in modes]
    print(table(["pgbench (TPC-B, 4 clients)", "TPS per round", "median", "vs alone", "audits run",
                 "seconds per audit (median)"], rows))
    print(f"load average (1 min) after each run: {min(loads):.1f}-{max(loads):.1f}")
    raw = {"tps": tps, "audits": audits, "seconds": seconds, "load_1m": loads}
    log(f"raw results: {save('audit-priority', raw)}")


def hold() -> None:
    """`BENCH_ONLY=hold`: build the 1x host, print DOCKER_HOST and the DSN, and keep both running
    until interrupted, so the audit can be profiled by hand (py-spy, -X importtime, time -v)."""
    engine = start_docker_engine()
    try:
        with running_cluster(18) as cluster:
            with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
                conn.execute("CREATE DATABASE app")
            dsn = cluster.dsn("app")
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            Host(engine, dsn).grow(target(int(os.environ.get("STEP", "1"))))
            print(f"DOCKER_HOST={engine.host} DSN={dsn}", flush=True)
            with suppress(KeyboardInterrupt):
                threading.Event().wait()
    finally:
        engine.stop()


if __name__ == "__main__":
    # started in the background, SIGINT is ignored: SIGTERM then ends the run through its cleanup
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    MODES = {"postgres": postgres_only, "hold": hold, "compare": compare, "priority": priority_beside,
             "compare-held": compare_held}
    MODES.get(os.environ.get("BENCH_ONLY", ""), main)()
