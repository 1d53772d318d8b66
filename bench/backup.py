"""Backup overhead: `stackaudit backup` against a bare `pg_dump -Fc` of the same database.

    .venv/bin/python -m bench.backup            # pgbench scale 40 (~600MB), 3 rounds each, in turns
    QUICK=1 .venv/bin/python -m bench.backup    # scale 8 (~120MB), 2 rounds

PostgreSQL 15 (tests.services.running_cluster(15)) so Debian's pg_dump 15 is the matching client for
both. stackaudit adds a snapshot transaction for row counts, hashing while it streams, fsync, a
verification (pg_restore --list and the checksum) and a manifest; the bare dump does none of that.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
from pathlib import Path
from typing import Any

from bench.common import QUICK, STACKAUDIT, cpu_window, log, machine, run, save, table
from stackaudit.localpg import debian_bin_dir
from tests.services import running_cluster

SCALE = 8 if QUICK else 40
ROUNDS = 2 if QUICK else 3


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
    work = Path(tempfile.mkdtemp(prefix="sa-bench-backup-"))
    rows_out: dict[str, list[dict[str, float]]] = {"pg_dump -Fc": [], "stackaudit backup": []}
    sizes: dict[str, int] = {}
    try:
        with running_cluster(15) as cluster:
            c = cluster
            run(["runuser", "-u", c.os_user, "--", str(bin_dir / "createdb"), "-h", str(c.socket_dir), "-p",
                 str(c.port), "-U", "postgres", "app"])
            load = run(["runuser", "-u", c.os_user, "--", str(bin_dir / "pgbench"), "-h", str(c.socket_dir),
                        "-p", str(c.port), "-U", "postgres", "-i", "-I", "dtGvp", "-s", str(SCALE), "-q",
                        "app"])
            if load.returncode != 0:
                raise RuntimeError(load.stderr)
            dsn = cluster.dsn("app")
            for round_no in range(ROUNDS):
                for name in (list(rows_out) if round_no % 2 == 0 else list(reversed(rows_out))):
                    dest = work / f"{name.split()[0]}-{round_no}"
                    dest.mkdir()
                    if name == "pg_dump -Fc":
                        args = [str(bin_dir / "pg_dump"), "-Fc", "-f", str(dest / "app.dump"), dsn]
                    else:
                        args = [STACKAUDIT, "backup", "--pg", dsn, "--dest", str(dest), "--databases", "app",
                                "--no-prune", "--state-dir", str(work / "state")]
                    with cpu_window(None) as cpu:
                        result = timed(args)
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
    base = statistics.median(r["wall_s"] for r in rows_out["pg_dump -Fc"])
    rows = []
    for name, results in rows_out.items():
        wall = statistics.median(r["wall_s"] for r in results)
        rows.append([name, f"{wall:.2f}", f"{min(r['wall_s'] for r in results):.2f}-"
                     f"{max(r['wall_s'] for r in results):.2f}",
                     f"{statistics.median(r['cpu_s'] for r in results):.2f}",
                     f"{statistics.median(r['peak_rss_mib'] for r in results):.0f}",
                     f"{sizes.get(name, 0) / 2**20:.0f}", f"{wall / base:.2f}x",
                     f"{statistics.median(r['others_cores'] for r in results):.2f}"])
    print(table(["command", "wall s (median)", "range", "CPU s", "peak RSS MiB", "output MiB",
                 "vs pg_dump", "busy cores besides it"], rows))
    payload: dict[str, Any] = {"machine": info, "quick": QUICK, "scale": SCALE, "runs": rows_out,
                               "sizes": sizes}
    log(f"raw results: {save('backup', payload)}")


if __name__ == "__main__":
    main()
