"""Footprint of `stackaudit watch` and latency of `stackaudit metrics` scrapes.

    .venv/bin/python -m bench.watch            # watch --interval 30s for 10 minutes
    QUICK=1 .venv/bin/python -m bench.watch    # watch --interval 5s for 2 minutes

Against a PostgreSQL 18 cluster (tests.services.running_cluster): `stackaudit watch` runs in the
foreground as a child; we sample its RSS every few seconds, alone (the long-lived loop) and with its
children (a check's child process while one runs), its CPU share over the whole run, and scrape
`stackaudit metrics --listen` (a second process sharing the state dir) every few seconds, timing
each HTTP request.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil

from bench.common import QUICK, STACKAUDIT, log, machine, save, table
from stackaudit.localpg import free_port
from tests.services import running_cluster

INTERVAL = "5s" if QUICK else "30s"
DURATION = 120 if QUICK else 600
SAMPLE_EVERY = 5.0


def tree_rss(process: psutil.Process) -> int:
    total = 0
    for p in [process, *process.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total


def tree_cpu(process: psutil.Process) -> float:
    t = process.cpu_times()
    return t.user + t.system + t.children_user + t.children_system


def scrape(url: str) -> tuple[float, int]:
    start = time.monotonic()
    with urllib.request.urlopen(url, timeout=30) as response:
        body = response.read()
    return time.monotonic() - start, len(body)


def main() -> None:
    info = machine()
    state = Path(tempfile.mkdtemp(prefix="sa-bench-watch-"))
    samples: list[dict[str, float]] = []
    scrapes: list[float] = []
    with running_cluster(18) as cluster:
        common = ["--pg", cluster.dsn(), "--sources", "host,postgres", "--state-dir", str(state)]
        watch = subprocess.Popen([STACKAUDIT, "watch", "--interval", INTERVAL, *common],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        port = free_port()
        metrics = subprocess.Popen([STACKAUDIT, "metrics", "--listen", f"127.0.0.1:{port}", *common],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        proc = psutil.Process(watch.pid)
        url = f"http://127.0.0.1:{port}/metrics"
        started = time.monotonic()
        body_bytes = 0
        try:
            while time.monotonic() - started < DURATION:
                if watch.poll() is not None:
                    raise RuntimeError(f"watch exited: {watch.stderr.read().decode()[-1500:]}")  # type: ignore[union-attr]
                samples.append({"t": time.monotonic() - started, "rss": tree_rss(proc),
                                "loop_rss": proc.memory_info().rss, "cpu": tree_cpu(proc)})
                try:
                    seconds, body_bytes = scrape(url)
                    scrapes.append(seconds)
                except OSError as exc:
                    log(f"scrape failed: {exc}")
                time.sleep(SAMPLE_EVERY)
            samples.append({"t": time.monotonic() - started, "rss": tree_rss(proc),
                            "loop_rss": proc.memory_info().rss, "cpu": tree_cpu(proc)})
        finally:
            for process in (watch, metrics):
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()
            shutil.rmtree(state, ignore_errors=True)
    rss = [s["rss"] / 2**20 for s in samples]
    loop_rss = [s["loop_rss"] / 2**20 for s in samples]
    settled = loop_rss[len(loop_rss) // 4:]  # after start-up and the first checks
    half = len(settled) // 2
    growth = statistics.median(settled[half:]) - statistics.median(settled[:half]) if half else 0.0
    cpu_share = (samples[-1]["cpu"] - samples[0]["cpu"]) / (samples[-1]["t"] - samples[0]["t"])
    timeline = [f"{s['t']:.0f}s {s['rss'] / 2**20:.0f}" for s in samples[:: max(1, len(samples) // 12)]]
    row = [f"{INTERVAL} for {DURATION}s",
           f"{min(loop_rss):.0f} / {statistics.median(loop_rss):.0f} / {max(loop_rss):.0f}",
           f"{min(rss):.0f} / {statistics.median(rss):.0f} / {max(rss):.0f}",
           f"{growth:+.1f}", f"{cpu_share:.2%}",
           (f"{statistics.median(scrapes) * 1000:.0f} / {max(scrapes) * 1000:.0f} ({len(scrapes)})"
            if scrapes else "no scrape answered"), str(body_bytes)]
    print(table(["watch", "loop RSS MiB min / median / max",
                 "with a check's child: RSS MiB min / median / max",
                 "RSS growth MiB (2nd half - 1st half)",
                 "CPU share of one core", "metrics scrape ms median / max (n)", "metrics bytes"], [row]))
    print("RSS timeline (MiB): " + ", ".join(timeline))
    result: dict[str, Any] = {"machine": info, "quick": QUICK, "interval": INTERVAL, "duration": DURATION,
                              "samples": samples, "scrapes_s": scrapes, "rss_growth_mib": growth,
                              "cpu_share": cpu_share}
    log(f"raw results: {save('watch', result)}")


if __name__ == "__main__":
    main()
