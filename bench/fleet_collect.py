"""The collect half of the fleet benchmark: `stackaudit fleet collect` over 50 inventory hosts that
are aliases of one loopback sshd (tests/sshd.py), with `--forks 10` and, side by side in the same
run, one host after another (`--forks 1`).

    .venv/bin/python -m bench.fleet_collect            # 50 hosts
    QUICK=1 .venv/bin/python -m bench.fleet_collect    # 10 hosts

`run(quick)` returns the numbers (bench/fleet.py combines them with the report half). Before the
timed runs one warm-up run builds the wheelhouse and installs the venv that every alias shares, so
both timed runs measure what a routine collect costs: SSH, Ansible's tasks, `stackaudit collect`
(sources host,compose,env on a small compose project) and the fetch. The controller's peak memory
is the RSS of the CLI's process tree (ansible-playbook, its forks, the ssh clients), sampled every
0.2 s; its CPU is what the tree used (the targets' sshd sessions and collects are not in it).
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from bench.common import QUICK, STACKAUDIT, log, machine, save, table, tree_rss
from tests.sshd import start_sshd

ADDRESS = "127.0.0.2"
MiB = 1024**2


def inventory(root: Path, hostvars: dict[str, Any], count: int) -> Path:
    project = root / "stack"
    project.mkdir(exist_ok=True)
    (project / "compose.yaml").write_text("services:\n  web:\n    image: nginx:1.27\n")
    (project / ".env").write_text("APP_SECRET=bench-Secret-4dQ9xZ\n")
    common = {**hostvars, "ansible_python_interpreter": "/usr/bin/python3",
              "stackaudit_python": "/usr/bin/python3",
              "stackaudit_venv": str(root / "home" / "venv"), "stackaudit_sources": "host,compose,env",
              "stackaudit_project_dirs": [str(project)]}
    hosts = {f"host{i:04d}": common for i in range(count)}
    path = root / f"hosts-{count}.yml"
    path.write_text(json.dumps({"all": {"children": {"bench": {"hosts": hosts}}}}))
    return path


def collect(root: Path, hosts: Path, forks: int, env: dict[str, str]) -> dict[str, Any]:
    """One `fleet collect`: wall seconds, the tree's CPU seconds, its peak RSS, the exit code."""
    out = root / f"out-forks{forks}"
    command = [STACKAUDIT, "fleet", "collect", "-i", str(hosts), "--out", str(out), "--forks", str(forks),
               "--format", "json"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd=root)
    watched, peak = psutil.Process(process.pid), 0
    while process.poll() is None:
        with contextlib.suppress(psutil.Error):
            peak = max(peak, tree_rss(watched))
        time.sleep(0.2)
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    stdout = process.stdout.read() if process.stdout else ""
    summary = json.loads(stdout) if stdout.strip() else {}
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"forks": forks, "wall_s": round(wall, 1), "controller_cpu_s": round(cpu, 1),
            "peak_rss_mib": round(peak / MiB, 1), "exit": process.returncode,
            "collected": summary.get("collected"), "failed": summary.get("failed")}


def one_collect(root: Path) -> tuple[float, float]:
    """`stackaudit collect` alone, as each host runs it (no SSH, no Ansible): wall and CPU seconds."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    subprocess.run([str(root / "home" / "venv" / "bin" / "stackaudit"), "collect",
                    "--sources", "host,compose,env", "--project-dir", str(root / "stack"),
                    "--out", str(root / "alone.json")],
                   capture_output=True, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return time.monotonic() - start, cpu


def estimate_1000(count: int, parallel: dict[str, Any], serial: dict[str, Any],
                  alone: tuple[float, float]) -> dict[str, Any]:
    """1,000 hosts from the measured parts: the targets collect on their own CPUs, so what grows with
    the fleet is the controller's CPU per host (Ansible, ssh) and the per-host round trips, which
    forks overlap."""
    per_host_wall = serial["wall_s"] / count  # one host end to end, nothing overlapped
    controller_cpu_per_host = parallel["controller_cpu_s"] / count
    cores = os.cpu_count() or 1
    rows = {}
    for forks in (10, 25, 50):
        by_forks = 1000 * per_host_wall / forks
        by_cpu = 1000 * controller_cpu_per_host / cores  # the controller's cores saturated
        rows[f"forks_{forks}_minutes"] = round(max(by_forks, by_cpu) / 60, 1)
    # Here the "hosts" are this machine: each one's collect runs on the controller's cores too, so
    # forks cannot beat (controller CPU + collect CPU) x hosts / cores, whatever the fork count.
    cpu_floor = count * (controller_cpu_per_host + alone[1]) / cores
    return {"per_host_wall_s": round(per_host_wall, 2), "collect_alone_s": round(alone[0], 2),
            "collect_alone_cpu_s": round(alone[1], 2),
            "controller_cpu_per_host_s": round(controller_cpu_per_host, 2),
            "controller_cores": cores, "same_machine_cpu_floor_ratio": round(cpu_floor / serial["wall_s"], 3),
            **rows}


def run(quick: bool) -> dict[str, Any]:
    count = 10 if quick else 50
    info = machine()
    root = Path(tempfile.mkdtemp(prefix="sa-bench-fleet-"))
    server = start_sshd([ADDRESS])
    env = {**os.environ, "XDG_CACHE_HOME": str(root / "cache"),
           "PIP_CACHE_DIR": os.environ.get("PIP_CACHE_DIR", str(Path.home() / ".cache" / "pip")),
           "ANSIBLE_HOME": str(root / "ansible-home"), "ANSIBLE_REMOTE_TMP": str(root / "remote-tmp")}
    try:
        hostvars = server.host_vars(ADDRESS)
        log("warm-up: the wheelhouse and the shared venv (one host)")
        warm = collect(root, inventory(root, hostvars, 1), 1, env)
        if warm["exit"] != 0:
            raise RuntimeError(f"the warm-up collect failed: {warm}")
        hosts = inventory(root, hostvars, count)
        log(f"{count} hosts, --forks 10")
        parallel = collect(root, hosts, 10, env)
        log(f"{count} hosts, --forks 1")
        serial = collect(root, hosts, 1, env)
        alone = one_collect(root)
    finally:
        server.stop()
    result = {"machine": info, "hosts": count, "parallel": parallel, "serial": serial,
              "ratio_parallel_to_serial": round(parallel["wall_s"] / serial["wall_s"], 3),
              "estimate_1000_hosts": estimate_1000(count, parallel, serial, alone),
              "load_average_at_end": os.getloadavg()}
    return result


def main() -> None:
    result = run(QUICK)
    path = save("fleet_collect", result)
    rows = [[f"--forks {r['forks']}", r["wall_s"], r["controller_cpu_s"], r["peak_rss_mib"],
             f"{r['collected']}/{result['hosts']}"] for r in (result["parallel"], result["serial"])]
    print(table(["run", "wall s", "controller CPU s", "controller peak RSS MiB", "collected"], rows))
    print(f"forks 10 / forks 1: {result['ratio_parallel_to_serial']} (target <= 0.2; on this machine, whose "
          f"cores also run every host's collect, no fork count beats "
          f"{result['estimate_1000_hosts']['same_machine_cpu_floor_ratio']})")
    print(json.dumps(result["estimate_1000_hosts"], indent=2))
    log(f"raw: {path}")
    sys.exit(0 if result["ratio_parallel_to_serial"] <= 0.2 else 1)


if __name__ == "__main__":
    main()
