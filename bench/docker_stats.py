"""Docker facts: container memory and CPU from the stats API against the cgroup files, side by side.

    .venv/bin/python -m bench.docker_stats

The engine takes about a second to answer each one-shot stats call (it samples), so reading 16
running containers through the API is mostly waiting even with 8 calls in flight; on a local engine
the cgroup files give the same numbers at once. This starts a private engine, runs 16 containers and
reads them both ways, in turns.
"""

from __future__ import annotations

import statistics
import time
from datetime import UTC, datetime

from bench.common import log
from stackaudit.config import Settings
from stackaudit.facts import docker as docker_facts
from tests.services import start_docker_engine

CONTAINERS = 16
ROUNDS = 3


def main() -> None:
    engine = start_docker_engine()
    try:
        engine.make_image("bench-stats/app", "v1")
        for i in range(CONTAINERS):
            engine.run_container("bench-stats/app:v1", f"bench-stats-{i}")
        client = docker_facts.connect(Settings(docker_host=engine.host))
        driver = docker_facts.read_engine(client, lambda w, y: None).get("cgroup_driver")
        ways = {"stats API (8 in flight)": None, "cgroup files": docker_facts.local_cgroups(Settings())}
        timings: dict[str, list[float]] = {name: [] for name in ways}
        for _ in range(ROUNDS):
            for name, cgroups in ways.items():
                containers = docker_facts.read_containers(client, datetime.now(UTC))
                start = time.perf_counter()
                docker_facts.add_runtime_details(client, containers, lambda w, y: None, cgroups, driver)
                timings[name].append(time.perf_counter() - start)
                measured = sum(1 for c in containers if c["memory_usage_bytes"])
                log(f"{name}: {timings[name][-1]:.3f} s, {measured} containers measured")
        api, files = (statistics.median(t) for t in timings.values())
        log(f"median stats API / cgroup files: {api:.3f} s / {files:.4f} s = {api / files:.0f}x")
        client.close()
    finally:
        engine.stop()


if __name__ == "__main__":
    main()
