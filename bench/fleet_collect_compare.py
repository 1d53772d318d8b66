"""Two versions of `fleet collect` side by side: the same sshd, inventory and shared venv, the runs
alternating (before forks 10, before forks 1, after forks 10, after forks 1, per round), so a
shared machine's load falls on both alike.

    git worktree add --detach /tmp/before <commit>
    BEFORE=/tmp/before N=50 R=1 .venv/bin/python -m bench.fleet_collect_compare

BEFORE's stackaudit package is imported through PYTHONPATH (its playbook, roles and plugins run);
the hosts' venv is this checkout's build, whose `stackaudit collect` both versions call.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from bench.common import log, save, table
from bench.fleet_collect import ADDRESS, collect, inventory
from tests.sshd import start_sshd


def run(before: str, count: int, rounds: int) -> list[dict[str, Any]]:
    root = Path(tempfile.mkdtemp(prefix="sa-bench-fleet-compare-"))
    server = start_sshd([ADDRESS])
    base = {**os.environ, "XDG_CACHE_HOME": str(root / "cache"), "ANSIBLE_HOME": str(root / "ansible-home"),
            "ANSIBLE_REMOTE_TMP": str(root / "remote-tmp")}
    envs = {"before": {**base, "PYTHONPATH": before}, "after": base}
    rows = []
    try:
        hostvars = server.host_vars(ADDRESS)
        log("warm-up: the wheelhouse and the shared venv (one host)")
        collect(root, inventory(root, hostvars, 1), 1, base)
        hosts = inventory(root, hostvars, count)
        for number in range(rounds):
            for variant in ("before", "after"):
                for forks in (10, 1):
                    log(f"round {number + 1}: {variant}, {count} hosts, --forks {forks}")
                    rows.append({**collect(root, hosts, forks, envs[variant]), "variant": variant,
                                 "round": number, "load": round(os.getloadavg()[0], 1)})
    finally:
        server.stop()
    return rows


def main() -> None:
    rows = run(os.environ["BEFORE"], int(os.environ.get("N", "10")), int(os.environ.get("R", "2")))
    path = save("fleet_collect_compare", {"runs": rows})
    print(table(["version", "forks", "wall s", "controller CPU s", "peak RSS MiB", "load"],
                [[r["variant"], r["forks"], r["wall_s"], r["controller_cpu_s"], r["peak_rss_mib"], r["load"]]
                 for r in rows]))
    log(f"raw: {path}")


if __name__ == "__main__":
    main()
