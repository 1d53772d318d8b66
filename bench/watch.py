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

import os
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

from bench.common import QUICK, STACKAUDIT, log, machine, save, table, tree_rss
from stackaudit.localpg import free_port
from tests.services import running_cluster

INTERVAL = "5s" if QUICK else "30s"
DURATION = 120 if QUICK else 600
SAMPLE_EVERY = 5.0


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


# ------------------------------------------------------------------------------------------------
# Scrape latency against the floor (issue #17): `BENCH_ONLY=scrape .venv/bin/python -m bench.watch`
# runs this tree's `metrics --listen` (`--cache 5s` on a PostgreSQL cluster, so its checks refresh
# during the run) beside a bare server of fixed bytes (the floor: what the machine allows), and
# scrapes both SCRAPES times in turns (AB, BA, ...), each timed, with the load average beside.
# `BEFORE=DIR [BEFORE_PATH=...] [AFTER=DIR]` adds the earlier tree's server as a third (exports as
# in bench/audit.py's compare). SCRAPES=N changes the count.
# ------------------------------------------------------------------------------------------------

SCRAPES = int(os.environ.get("SCRAPES", "50" if QUICK else "200"))
# The floor: a bare standard-library server answering the same way with fixed bytes, scraped in the
# same turns: what this machine's scheduler allows at the moment, whatever the server does.
FLOOR_SERVER = """
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
BODY = b"# TYPE stackaudit_x gauge\\nstackaudit_x 1.0\\n" * 60
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", str(len(BODY))); self.end_headers()
        self.wfile.write(BODY)
    def log_message(self, *args):
        pass
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""
SCRAPE_GAP = 0.1  # seconds between two scrapes: 200 pairs span several cache refreshes


def tree_env(name: str) -> dict[str, str]:
    tree = os.environ.get("BEFORE") if name == "before" else os.environ.get("AFTER")
    extra = os.environ.get("BEFORE_PATH") if name == "before" else None
    path = ":".join(p for p in (extra, tree) if p)
    return {**os.environ, **({"PYTHONPATH": path} if path else {})}


def scrape_latency() -> None:
    info = machine()
    state = Path(tempfile.mkdtemp(prefix="sa-bench-scrape-"))
    trees = ("before", "after") if os.environ.get("BEFORE") else ("after",)
    times: dict[str, list[float]] = {**{name: [] for name in trees}, "floor": []}
    loads: list[float] = []
    servers: dict[str, subprocess.Popen[bytes]] = {}
    with running_cluster(18) as cluster:
        common = ["--pg", cluster.dsn(), "--sources", "host,postgres", "--cache", "5s",
                  "--state-dir", str(state)]
        urls = {}
        try:
            python = str(Path(STACKAUDIT).parent / "python")
            for name in times:
                port = free_port()
                args = ([python, "-c", FLOOR_SERVER, str(port)] if name == "floor" else
                        [python, "-m", "stackaudit", "metrics", "--listen", f"127.0.0.1:{port}", *common])
                servers[name] = subprocess.Popen(  # cwd "/": the tree on PYTHONPATH, not this checkout
                    args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=tree_env(name), cwd="/")
                urls[name] = f"http://127.0.0.1:{port}/metrics"
            for name, url in urls.items():  # the first scrape waits for the first check: not counted
                wait_for_first(url, servers[name])
            names = list(times)
            for turn in range(SCRAPES):
                for name in names[turn % len(names):] + names[:turn % len(names)]:  # each first in turn
                    times[name].append(scrape(urls[name])[0])
                    time.sleep(SCRAPE_GAP)
                loads.append(os.getloadavg()[0])
        finally:
            for process in servers.values():
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()
            shutil.rmtree(state, ignore_errors=True)
    rows = []
    for name, values in times.items():
        ms = sorted(v * 1000 for v in values)
        rows.append([name, f"{statistics.median(ms):.1f}", f"{ms[int(len(ms) * 0.95)]:.1f}", f"{ms[-1]:.0f}",
                     str(sum(v > 20 for v in ms)), str(len(ms))])
    print(table(["tree", "scrape ms p50", "p95", "max", "over 20 ms", "scrapes"], rows))
    print(f"load average (1 min) during the scrapes: {min(loads):.1f}-{max(loads):.1f}")
    log(f"raw results: {save('scrape', {'machine': info, 'times_s': times, 'load_1m': loads})}")


def wait_for_first(url: str, server: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            scrape(url)
            return
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


if __name__ == "__main__":
    scrape_latency() if os.environ.get("BENCH_ONLY") == "scrape" else main()
