"""Docker facts: memory stats called one at a time vs in parallel, side by side in one run.

    .venv/bin/python -m bench.docker_stats

The engine takes about a second to answer each one-shot stats call, so the audit of a host with
many running containers was mostly waiting (bench.audit). This starts a private engine, runs 16
containers, and collects the docker facts with 1 and with 8 calls in flight.
"""

from __future__ import annotations

import time

from bench.common import log
from stackaudit.config import Settings
from stackaudit.facts import CollectContext, Facts
from stackaudit.facts import docker as docker_facts
from tests.services import start_docker_engine

CONTAINERS = 16


def main() -> None:
    engine = start_docker_engine()
    try:
        engine.make_image("bench-stats/app", "v1")
        for i in range(CONTAINERS):
            engine.run_container("bench-stats/app:v1", f"bench-stats-{i}")
        timings = {}
        for parallel in (1, docker_facts.STATS_PARALLEL_CALLS):
            docker_facts.STATS_PARALLEL_CALLS = parallel
            start = time.perf_counter()
            ctx = CollectContext(settings=Settings(docker_host=engine.host), facts=Facts())
            data = docker_facts.collect(ctx)
            timings[parallel] = time.perf_counter() - start
            measured = sum(1 for c in data["containers"] if c["memory_usage_bytes"])
            log(f"{parallel} call(s) in flight: {timings[parallel]:.2f} s, {measured} containers measured")
        serial, parallel_time = timings[1], timings[max(timings)]
        log(f"ratio serial / parallel: {serial / parallel_time:.1f}x")
    finally:
        engine.stop()


if __name__ == "__main__":
    main()
