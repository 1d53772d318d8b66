"""`stackaudit fleet report` at fleet sizes: 50 snapshots, then 100, 250, 500 and 1,000.

    python -m bench.fleet_report             # 50, 100, 250, 500, 1000 hosts, 2 rounds each
    QUICK=1 python -m bench.fleet_report     # 50, 100, 250, one round

The snapshots are made from a real one: `stackaudit collect --sources host,compose,env,app` of the
reference stack with STACKAUDIT_FLEET_KEY set (its secret fingerprints too), plus the reference
host's PostgreSQL facts (tests/fleet/report_dirs.py). Each host varies it: PostgreSQL version, the
web image's tag, a chosen work_mem, the load (so codes differ), its own fingerprints for two hosts
in three (the others share the real ones: secret reuse); groups of ten hosts, one host in twenty
stale, one in twenty-five failed, in `fleet collect`'s layout.

At each size `stackaudit fleet report DIR --format json --out FILE` runs under /usr/bin/time -v
(wall, CPU, peak RSS of the controller), and `--format html` at the smallest and the largest size.
`run(quick)` returns the numbers (bench/fleet.py combines them with the collect half).
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import shutil
import statistics
import subprocess
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import QUICK, STACKAUDIT, log, machine, save, table
from tests.fleet.report_dirs import EXAMPLE, variant, write_host
from tests.report.report_facts import RAW

SIZES = (50, 100, 250, 500, 1000)
QUICK_SIZES = (50, 100, 250)
KEY = "5a" * 32
TARGETS = {50: 3.0, 1000: 30.0}  # seconds, issue 21
MEMORY_TARGET_BYTES = 1024**3


def real_snapshot(work: Path) -> dict[str, Any]:
    """One real `stackaudit collect` of the reference stack, with the fleet key set."""
    project = work / "stack"
    shutil.copytree(EXAMPLE, project)
    (project / ".env.example").rename(project / ".env")
    out = work / "real.json"
    subprocess.run([STACKAUDIT, "collect", "--sources", "host,compose,env,app", "-p", str(project),
                    "--out", str(out)], check=True, capture_output=True,
                   env={"STACKAUDIT_FLEET_KEY": KEY, "STACKAUDIT_NICE": "0",
                        "DOCKER_HOST": "unix:///nonexistent/docker.sock", "PATH": "/usr/bin:/bin"})
    payload: dict[str, Any] = json.loads(out.read_text())
    payload["data"]["postgres"] = copy.deepcopy(RAW["postgres"]) | {"server_version": "18.0"}
    return payload


def make_fleet(base: dict[str, Any], size: int, directory: Path, now: datetime) -> None:
    for i in range(size):
        payload = variant(base, pg_version=f"18.{i % 3}", web_tag=f"sha-{i % 4:07d}",
                          work_mem=f"{4 << (i % 3)}MB", load=float(i % 9))
        if i % 3:
            payload["secret_fingerprints"] = [  # this host's own secrets
                {"where": e["where"],
                 "fingerprint": hashlib.sha256(f"{i}{e['where']}".encode()).hexdigest()[:16]}
                for e in payload.get("secret_fingerprints", [])]
        when = now - (timedelta(days=3) if i % 20 == 7 else timedelta(minutes=i % 60))
        error = ({"failed_at": now.isoformat(), "stage": "unreachable", "reason": "ssh: connection timed out"}
                 if i % 25 == 11 else None)
        write_host(directory, f"host-{i:04d}.example.net", payload, [f"group-{i // 10:03d}", "all-web"],
                   when, error)


def timed(args: list[str]) -> dict[str, float]:
    """Wall and CPU seconds and peak RSS bytes of one run, from /usr/bin/time -v."""
    done = subprocess.run(["/usr/bin/time", "-v", STACKAUDIT, *args], capture_output=True, text=True,
                          check=False, env={"STACKAUDIT_NICE": "0", "PATH": "/usr/bin:/bin"})
    if done.returncode not in (0, 1):
        raise RuntimeError(done.stderr[-2000:])

    def field(name: str) -> str:
        match = re.search(rf"{re.escape(name)}: (.+)", done.stderr)
        if match is None:
            raise RuntimeError(f"no {name!r} in /usr/bin/time output")
        return match.group(1).strip()

    wall = 0.0
    for part in field("Elapsed (wall clock) time (h:mm:ss or m:ss)").split(":"):
        wall = wall * 60 + float(part)
    cpu = float(field("User time (seconds)")) + float(field("System time (seconds)"))
    return {"wall_s": wall, "cpu_s": cpu,
            "peak_rss_bytes": int(field("Maximum resident set size (kbytes)")) * 1024}


def measure(directory: Path, out: Path, fmt: str, rounds: int) -> dict[str, float]:
    args = ["fleet", "report", str(directory), "--format", fmt, "--out", str(out)]
    runs = [timed(args) for _ in range(rounds)]
    return {key: statistics.median(r[key] for r in runs) for key in runs[0]} | {"rounds": rounds}


def run(quick: bool) -> dict[str, Any]:
    sizes = QUICK_SIZES if quick else SIZES
    rounds = 1 if quick else 2
    results: dict[str, Any] = {"machine": machine(), "sizes": {}}
    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory(prefix="bench-fleet-report-") as tmp:
        work = Path(tmp)
        base = real_snapshot(work)
        results["snapshot_bytes"] = len(json.dumps(base))
        for size in sizes:
            directory = work / f"fleet-{size}"
            make_fleet(base, size, directory, now)
            log(f"fleet report over {size} hosts")
            row: dict[str, Any] = {"json": measure(directory, work / "out.json", "json", rounds)}
            if size in (sizes[0], sizes[-1]):
                row["html"] = measure(directory, work / "out.html", "html", rounds)
                row["html_bytes"] = (work / "out.html").stat().st_size
            row["json_bytes"] = (work / "out.json").stat().st_size
            results["sizes"][size] = row
            shutil.rmtree(directory)
    return results


def linear_fit(points: list[tuple[int, float]]) -> tuple[float, float, float]:
    """Least squares `seconds = start + per_host * hosts`, and the worst relative residual."""
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    slope = (sum((x - mean_x) * (y - mean_y) for x, y in points)
             / (sum((x - mean_x) ** 2 for x, _ in points) or 1.0))
    start = mean_y - slope * mean_x
    worst = max(abs(y - (start + slope * x)) / y for x, y in points)
    return start, slope, worst


def report(results: dict[str, Any]) -> str:
    sizes = {int(k): v for k, v in results["sizes"].items()}
    rows = []
    for size, row in sorted(sizes.items()):
        j = row["json"]
        target = TARGETS.get(size)
        html = row.get("html")
        rows.append([size, f"{j['wall_s']:.1f}", f"{j['cpu_s']:.1f}", f"{j['peak_rss_bytes'] / 1024**2:.0f}",
                     f"< {target:.0f} s: {'met' if j['wall_s'] < target else 'missed'}" if target else "",
                     f"{html['wall_s']:.1f} / {html['cpu_s']:.1f} / {html['peak_rss_bytes'] / 1024**2:.0f}"
                     if html else ""])
    start, per_host, worst = linear_fit([(n, r["json"]["cpu_s"]) for n, r in sizes.items()])
    rss = [(n, r["json"]["peak_rss_bytes"] / 1024**2) for n, r in sizes.items()]
    rss_start, rss_per_host, _ = linear_fit(rss)
    return (table(["hosts", "json wall s", "json CPU s", "peak RSS MiB", "target (wall)",
                   "html wall s / CPU s / RSS MiB"], rows)
            + f"\n\nCPU = {start:.2f} s + {1000 * per_host:.1f} ms x hosts (worst point {100 * worst:.0f}% "
              f"off the line); peak RSS = {rss_start:.0f} MiB + {1024 * rss_per_host:.0f} KiB x hosts")


def main() -> None:
    results = run(QUICK)
    path = save("fleet_report", results)
    print(report(results))
    print(f"load average at start {results['machine']['load_average_at_start']}; raw numbers: {path}")


if __name__ == "__main__":
    main()
