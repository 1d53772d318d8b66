"""Backup overhead: `stackaudit backup` against a bare `pg_dump` of the same database, both formats.

    .venv/bin/python -m bench.backup            # 20 tables, ~2 GB of data, 3 rounds each, in turns
    TABLE_MB=20 ROUNDS=3 .venv/bin/python -m bench.backup   # 20 tables of ~20 MB (~400 MB)
    ONLY="pg_dump -Fc,stackaudit backup" ...  # just those rows (each stackaudit row needs its pg_dump)
    QUICK=1 .venv/bin/python -m bench.backup    # 20 tables, ~200 MB, 2 rounds

PostgreSQL 15 (tests.services.running_cluster(15)) so Debian's pg_dump 15 is the matching client for
all. stackaudit adds a snapshot transaction with exact row counts (counted beside the dump), hashing
(while it streams for -Fc; per file for -Fd), fsync, a verification (pg_restore --list and the
checksums read back) and a manifest; the bare dump does none of that. Rows:
- `pg_dump -Fc` / `stackaudit backup` (custom format, one file);
- `pg_dump -Fd -j 2` / `stackaudit backup --jobs 2` (directory format, 2 workers);
- `backup_database()` in-process: the same backup without the CLI's start-up (imports), to tell
  the backup's own cost from the command's start-up.
"""

from __future__ import annotations

import os
import shutil
import signal
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.common import QUICK, STACKAUDIT, cpu_window, log, machine, run, save, table
from stackaudit.localpg import debian_bin_dir
from tests.services import running_cluster

TABLES = 20
TABLE_MB = int(os.environ.get("TABLE_MB", 10 if QUICK else 100))
ROUNDS = int(os.environ.get("ROUNDS", 2 if QUICK else 3))
JOBS = 2


def fill(dsn: str) -> None:
    """TABLES tables of ~TABLE_MB each: ids, a few numbers, and text that compresses like real rows."""
    import psycopg

    rows = TABLE_MB * 1024 * 1024 // 120  # ~120 bytes a row on disk
    with psycopg.connect(dsn, autocommit=True) as conn:
        for i in range(TABLES):
            conn.execute(f"CREATE TABLE t{i:02d} (id bigint PRIMARY KEY, account int, amount numeric(12, 2), "
                         f"created timestamptz, note text)")
            conn.execute(f"INSERT INTO t{i:02d} SELECT g, g % 9973, (g % 100000) / 100.0, "
                         f"now() - g * interval '1 second', md5(g::text) || ' order ' || g "
                         f"FROM generate_series(1, {rows}) g")
        conn.execute("VACUUM ANALYZE")


def commands(bin_dir: Path, dsn: str, dest: Path, work: Path) -> dict[str, list[str]]:
    backup = [STACKAUDIT, "backup", "--pg", dsn, "--dest", str(dest), "--databases", "app", "--no-prune",
              "--state-dir", str(work / "state")]
    in_process = ("import sys; from pathlib import Path; from stackaudit.backups.dump import Connection, "
                  "backup_database; m = backup_database(Connection.from_dsn(sys.argv[1]), 'app', "
                  "Path(sys.argv[2]), jobs=int(sys.argv[3])); sys.exit(0 if m.good else m.error)")
    python = str(Path(STACKAUDIT).parent / "python")
    return {
        "pg_dump -Fc": [str(bin_dir / "pg_dump"), "-Fc", "-f", str(dest / "app.dump"), dsn],
        "stackaudit backup": backup,
        "backup_database() -Fc": [python, "-c", in_process, dsn, str(dest), "1"],
        f"pg_dump -Fd -j {JOBS}": [str(bin_dir / "pg_dump"), "-Fd", f"-j{JOBS}", "-f", str(dest / "app.dir"),
                                   dsn],
        f"stackaudit backup --jobs {JOBS}": [*backup, "--jobs", str(JOBS)],
        f"backup_database() -Fd -j {JOBS}": [python, "-c", in_process, dsn, str(dest), str(JOBS)],
    }


def timed(args: list[str]) -> dict[str, float]:
    """Wall, CPU (of the command and its children, via /usr/bin/time) of one command."""
    result = run(["/usr/bin/time", "-f", "%e %U %S %M", *args])
    if result.returncode != 0:
        raise RuntimeError(f"{args[0]} failed: {result.stderr[-1500:]}")
    wall, user, system, rss_kb = result.stderr.strip().splitlines()[-1].split()
    return {"wall_s": float(wall), "cpu_s": float(user) + float(system), "peak_rss_mib": int(rss_kb) / 1024}


def main() -> None:
    info = machine()
    bin_dir = debian_bin_dir(15)
    work = Path(tempfile.mkdtemp(prefix="sa-bench-backup-", dir="/var/tmp"))
    # ONLY="pg_dump -Fc,stackaudit backup,..." runs those rows alone (the 2 GB run in less time)
    only = [n.strip() for n in os.environ.get("ONLY", "").split(",") if n.strip()]
    names = [n for n in commands(bin_dir, "", work, work) if not only or n in only]
    needed = {"pg_dump -Fc", *(base_of(n) for n in names)}  # every row is also compared with -Fc
    if missing := needed - set(names):
        raise SystemExit(f"ONLY must keep {sorted(missing)}: the rows are compared with them")
    rows_out: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    sizes: dict[str, int] = {}
    try:
        with running_cluster(15) as cluster:
            run(["runuser", "-u", cluster.os_user, "--", str(bin_dir / "createdb"), "-h",
                 str(cluster.socket_dir), "-p", str(cluster.port), "-U", "postgres", "app"])
            dsn = cluster.dsn("app")
            fill(dsn)
            log(f"filled {TABLES} tables of ~{TABLE_MB} MB")
            for round_no in range(ROUNDS):
                for name in (names if round_no % 2 == 0 else list(reversed(names))):
                    dest = work / f"round{round_no}"
                    dest.mkdir()
                    with cpu_window(None) as cpu:
                        result = timed(commands(bin_dir, dsn, dest, work)[name])
                    # Busy cores of the whole machine besides the command: our server's side of the
                    # dump and every other process (the server's share alone is not attributable here).
                    result["others_cores"] = max(0.0, (cpu[0].busy_seconds - result["cpu_s"])
                                                 / cpu[0].wall_seconds)
                    rows_out[name].append(result)
                    sizes[name] = sum(f.stat().st_size for f in dest.rglob("*") if f.is_file())
                    log(f"  {name}: {result}")
                    shutil.rmtree(dest, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print_rows(rows_out, sizes)
    payload: dict[str, Any] = {"machine": info, "quick": QUICK, "tables": TABLES, "table_mb": TABLE_MB,
                               "jobs": JOBS, "runs": rows_out, "sizes": sizes}
    log(f"raw results: {save('backup', payload)}")


def base_of(name: str) -> str:
    """The bare pg_dump a row is compared with (its format)."""
    return "pg_dump -Fc" if "-Fd" not in name and "--jobs" not in name else f"pg_dump -Fd -j {JOBS}"


def print_rows(rows_out: dict[str, list[dict[str, float]]], sizes: dict[str, int]) -> None:
    """Each stackaudit row against the bare pg_dump of the same format."""
    def median(name: str, key: str) -> float:
        return statistics.median(r[key] for r in rows_out[name])

    rows = []
    for name, results in rows_out.items():
        base = base_of(name)
        wall = median(name, "wall_s")
        rows.append([name, f"{wall:.2f}", f"{min(r['wall_s'] for r in results):.2f}-"
                     f"{max(r['wall_s'] for r in results):.2f}", f"{median(name, 'cpu_s'):.2f}",
                     f"{median(name, 'peak_rss_mib'):.0f}", f"{sizes.get(name, 0) / 2**20:.0f}",
                     f"{wall / median(base, 'wall_s'):.2f}x",
                     f"{wall / median('pg_dump -Fc', 'wall_s'):.2f}x",
                     f"{median(name, 'others_cores'):.2f}"])
    print(table(["command", "wall s (median)", "range", "CPU s", "peak RSS MiB", "output MiB",
                 "vs pg_dump, same format", "vs pg_dump -Fc", "busy cores besides it"], rows))


if __name__ == "__main__":
    # started in the background, SIGINT is ignored: SIGTERM then ends the run through its cleanup
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    main()
