"""Benchmark: MariaDB with its defaults, with MySQLTuner's recommendations applied, and with
`stackaudit tune mysql`, on emulated hosts (a memory cgroup around the server, as bench/tuning.py).

Per host size: one data set is loaded with `sysbench oltp_read_write prepare` into a golden datadir;
each configuration starts from a copy of it inside the cgroup, is warmed up, then runs
oltp_read_only and oltp_read_write. The rounds interleave the configurations (defaults, mysqltuner,
stackaudit, defaults, ...) so drift and the neighbours' load hit all alike; the result is the
median TPS per configuration, its spread (max-min)/median, and the ratios side by side.

- MySQLTuner (Debian `mysqltuner` 1.9.9) runs against the warmed default server with `--forcemem` =
  the host size. 1.9.9 divides by innodb_buffer_pool_chunk_size, which MariaDB 10.11.19 reports as
  0 (autosized): it is given a client (`--mysqlcmd`, a wrapper around `mariadb`) that leaves a zero
  chunk size (and a zero Innodb_log_writes, its other divisor) out of the rows, so it takes the path
  it takes on servers without the variable ("not used or defined in your version"). Every other row
  is the server's. Its "Variables to adjust" become options mechanically (see `tuner_advice`).
- stackaudit: `tune mysql --memory <host> --dedicated --format json` against the same warmed server,
  every changed setting applied.
- The worst case (global buffers + max_connections x per-thread buffers) of every configuration is
  computed with tuning.mysql.worst_case from the running server's variables, against the host size.

Run as root: `python -m bench.tuning_mysql` (QUICK=1: one host, short runs). Needs Debian
mariadb-server, sysbench and mysqltuner. Raw numbers go to bench/results/tuning_mysql-<time>.json.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import QUICK, STACKAUDIT, Cgroup, GiB, log, machine, median_spread, run, save, table
from stackaudit.localpg import free_port
from stackaudit.tuning.mysql import worst_case
from stackaudit.tuning.units import parse_memory


def _env(name: str, default: str) -> str:
    return os.environ.get(f"SA_BENCH_{name}", default)


# Every size can be overridden (SA_BENCH_HOSTS=4,23 in GiB; SA_BENCH_TABLES and SA_BENCH_ROWS, one
# value for all hosts or one per host in the same order; SA_BENCH_SECONDS, SA_BENCH_ROUNDS,
# SA_BENCH_WORKLOADS=oltp_read_only for a rerun of one workload).
# The full run: 4 tables x 1M rows (~0.9 GB, 7x the default pool) on the 4 GiB host, 8 x 2M (~3.6 GB,
# 28x the default pool, more than a 4 GiB host could cache) on the 23 GiB host.
HOSTS = tuple(int(g) * GiB for g in _env("HOSTS", "4" if QUICK else "4,23").split(","))


def _per_host(name: str, default: str) -> list[int]:
    values = [int(v) for v in _env(name, default).split(",")]
    return values * len(HOSTS) if len(values) == 1 else values


TABLES = _per_host("TABLES", "4" if QUICK else "4,8")
TABLE_SIZE = _per_host("ROWS", "100000" if QUICK else "1000000,2000000")
SECONDS = int(_env("SECONDS", "20" if QUICK else "60"))
ROUNDS = int(_env("ROUNDS", "2" if QUICK else "3"))
THREADS = 8
WORKLOADS = tuple(_env("WORKLOADS", "oltp_read_only,oltp_read_write").split(","))
CONFIGS = ("defaults", "mysqltuner", "stackaudit")
PASSWORD = "bench-pw-5e1"
SECURE = (f"ALTER USER 'root'@'localhost' IDENTIFIED BY '{PASSWORD}'; CREATE USER IF NOT EXISTS "
          f"'root'@'127.0.0.1'; ALTER USER 'root'@'127.0.0.1' IDENTIFIED BY '{PASSWORD}'; "
          "GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION; CREATE DATABASE sbtest;")
ADJUST = re.compile(r"^([a-z_]+)\s*(?:should be\s*)?\((>=|>|=|~|<=)\s*([\d.]+)\s*([KMG]?)[),]")
ASSIGN = re.compile(r"^([a-z_]+)\s*=\s*([A-Za-z0-9_]+)$")
UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30}
# Client rows MySQLTuner 1.9.9 divides by, when MariaDB 10.11.19 says 0 (see the module's doc).
NO_ZERO_DIVISORS = """#!/bin/bash
set -o pipefail
/usr/bin/mariadb "$@" | grep -v -P '^(innodb_buffer_pool_chunk_size|Innodb_log_writes)\\t0$'
"""


class Server:
    """mariadbd --no-defaults on 127.0.0.1 from a datadir, inside the cgroup."""

    def __init__(self, datadir: Path, group: Cgroup, options: dict[str, str], size: tuple[int, int]) -> None:
        self.datadir, self.group, self.options = datadir, group, options
        self.tables, self.table_size = size
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, first: bool = False) -> None:
        """`first`: a fresh datadir whose root has no password yet: give it one, make sbtest."""
        args = ["mariadbd", "--no-defaults", "--user=mysql", f"--datadir={self.datadir}",
                f"--port={self.port}", "--bind-address=127.0.0.1", f"--socket={self.datadir}/mysqld.sock",
                "--skip-name-resolve", f"--log-error={self.datadir}/error.log",
                *(f"--{k}={v}" for k, v in self.options.items())]
        self.process = subprocess.Popen(args, preexec_fn=self.group.enter(), stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        sock = f"--socket={self.datadir}/mysqld.sock"
        auth = [] if first else [f"-p{PASSWORD}"]
        for _ in range(600):
            if run(["mariadb-admin", "--no-defaults", sock, "-uroot", *auth, "ping"]).returncode == 0:
                if first:
                    run(["mariadb", "--no-defaults", sock, "-uroot", "-e", SECURE])
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.5)
        tail = (self.datadir / "error.log").read_text(errors="replace")[-1500:]
        raise RuntimeError(f"mariadbd did not start with {self.options}:\n{tail}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(300)

    @property
    def url(self) -> str:
        return f"mysql://root:{PASSWORD}@127.0.0.1:{self.port}/"

    def variables(self) -> dict[str, str]:
        out = run(["mariadb", "--no-defaults", f"--socket={self.datadir}/mysqld.sock", "-uroot",
                   f"-p{PASSWORD}", "-N", "-B", "-e", "SHOW GLOBAL VARIABLES"]).stdout
        return dict(line.split("\t", 1) for line in out.splitlines() if "\t" in line)

    def sysbench(self, workload: str, command: str, seconds: int = SECONDS) -> float:
        args = ["sysbench", workload, "--db-driver=mysql", "--mysql-host=127.0.0.1",
                f"--mysql-port={self.port}", "--mysql-user=root", f"--mysql-password={PASSWORD}",
                "--mysql-db=sbtest", f"--tables={self.tables}", f"--table-size={self.table_size}",
                f"--threads={THREADS}", f"--time={seconds}", "--report-interval=0", command]
        result = subprocess.run(args, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            output = (result.stderr + result.stdout)[-800:]
            raise RuntimeError(f"sysbench {workload} {command} failed: {output}")
        match = re.search(r"transactions:\s+\d+\s+\(([\d.]+) per sec", result.stdout)
        return float(match.group(1)) if match else 0.0


def golden(root: Path, group: Cgroup, size: tuple[int, int]) -> Path:
    """A datadir with the sysbench tables, loaded once per host."""
    data = root / "golden"
    subprocess.run(["mariadb-install-db", "--no-defaults", "--user=mysql", f"--datadir={data}",
                    "--auth-root-authentication-method=normal", "--skip-test-db"], capture_output=True,
                   check=True)
    server = Server(data, group, {}, size)
    server.start(first=True)
    try:
        server.sysbench("oltp_read_write", "prepare", seconds=0)
    finally:
        server.stop()
    return data


def copy_of(data: Path, root: Path, name: str) -> Path:
    target = root / name
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(data, target, symlinks=True)
    entry = pwd.getpwnam("mysql")
    for path in [target, *target.rglob("*")]:
        shutil.chown(path, entry.pw_uid, entry.pw_gid)
    return target


def mysqltuner_options(server: Server, memory: int, root: Path) -> tuple[dict[str, str] | None, list[str]]:
    """Its "Variables to adjust" as options, and its advice as it printed it; None and why when it
    printed none."""
    client = root / "mariadb-no-zero-divisors"
    client.write_text(NO_ZERO_DIVISORS)
    client.chmod(0o755)
    result = run(["mysqltuner", "--host", "127.0.0.1", "--port", str(server.port), "--user", "root",
                  "--pass", PASSWORD, "--forcemem", str(memory // 2**20), "--nocolor", "--noinfo",
                  "--nogood", "--skippassword", "--mysqlcmd", str(client)])
    out = result.stdout
    if "Variables to adjust:" not in out:
        why = next((line.strip() for line in result.stderr.splitlines() if " at /usr/bin/" in line),
                   result.stderr.strip()[-300:] or "no 'Variables to adjust' in its output")
        return None, [f"mysqltuner exited {result.returncode}: {why}"]
    advice = [line.strip() for line in out.split("Variables to adjust:", 1)[1].splitlines() if line.strip()]
    options, notes = tuner_advice(advice, server.variables())
    return options, advice + notes


def tuner_advice(advice: list[str], known: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """MySQLTuner's lines as mariadbd options, mechanically:
    - `name (>= X)`, `(= X)`, `(~ X)`, `(<= X)`, also after "should be": set X (a size exactly, in
      MiB rounded up: "2.7G" is 2765M, not 3G);
    - `name (> X)`: 2 x X (it names no number: twice the threshold is our reading);
    - `name=VALUE` (e.g. performance_schema=ON): set as written;
    - a line that names no value (e.g. "... must always be equal to or a multiple of ..."), or a
      variable this server does not have: not applied, and noted."""
    options: dict[str, str] = {}
    notes: list[str] = []
    for line in advice:
        if match := ADJUST.match(line):
            name, op, number, unit = match.groups()
            value = float(number) * UNITS[unit] * (2 if op == ">" else 1)
            text = f"{-(-int(value) // 2**20)}M" if unit in ("M", "G") else str(int(value))
        elif match := ASSIGN.match(line):
            name, text = match.groups()
        else:
            notes.append(f"not applied (no value): {line}")
            continue
        if name not in known:
            notes.append(f"not applied (no such variable here): {line}")
            continue
        options[name.replace("_", "-")] = text
    return options, notes


def stackaudit_options(server: Server, memory: int) -> tuple[dict[str, str], dict[str, Any]]:
    result = run([STACKAUDIT, "tune", "mysql", "--mysql", server.url, "--sources", "mysql", "--memory",
                  f"{memory // 2**20}MiB", "--cpus", "2", "--dedicated", "--format", "json"])
    data = json.loads(result.stdout)
    options = {name.replace("_", "-"): s["recommended"] for name, s in data["settings"].items()
               if s["changed"]}
    return options, data


def worst(variables: dict[str, str]) -> int:
    values = {}
    for key, text in variables.items():
        try:
            values[key] = parse_memory(text)
        except ValueError:
            continue
    return worst_case(values, int(variables.get("max_connections", "151"))).bytes


def measure(root: Path, data: Path, group: Cgroup, name: str, options: dict[str, str],
            size: tuple[int, int]) -> dict[str, Any]:
    server = Server(copy_of(data, root, name), group, options, size)
    load_before = os.getloadavg()
    server.start()
    try:
        server.sysbench("oltp_read_only", "run", seconds=max(10, SECONDS // 2))  # warm the buffer pool
        tps = {w: server.sysbench(w, "run") for w in WORKLOADS}
        return {"tps": tps, "worst_case_bytes": worst(server.variables()),
                "load_average": {"before": load_before, "after": os.getloadavg()}}
    finally:
        server.stop()
        shutil.rmtree(root / name, ignore_errors=True)


def host_run(memory: int, size: tuple[int, int]) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="sa-bench-my-", dir="/var/tmp"))
    shutil.chown(root, "mysql", "mysql")
    group = Cgroup(f"sa-bench-mysql-{memory // GiB}g", memory).create()
    try:
        log(f"{memory // GiB} GiB: loading {size[0]} x {size[1]} rows")
        data = golden(root, group, size)
        probe = Server(copy_of(data, root, "probe"), group, {}, size)
        probe.start()
        try:
            probe.sysbench("oltp_read_write", "run", seconds=max(10, SECONDS // 2))
            tuner, advice = mysqltuner_options(probe, memory, root)
            ours, tuning = stackaudit_options(probe, memory)
        finally:
            probe.stop()
        configs = {"defaults": {}, "stackaudit": ours, **({"mysqltuner": tuner} if tuner is not None else {})}
        log(f"mysqltuner: {tuner if tuner is not None else advice}\nstackaudit: {ours}")
        rounds: list[dict[str, Any]] = []
        names = [c for c in CONFIGS if c in configs]
        for number in range(ROUNDS):
            # ABAB, and each round starts one configuration later, so no configuration always runs
            # first (after the copy of a cold datadir) or last.
            for name in names[number % len(names):] + names[:number % len(names)]:
                log(f"round {number + 1} {name} (load {os.getloadavg()[0]:.1f})")
                rounds.append({"config": name, **measure(root, data, group, name, configs[name], size)})
        return {"memory_bytes": memory, "tables": size[0], "table_size": size[1], "configs": configs,
                "mysqltuner_advice": advice, "stackaudit_budget": tuning["budget"], "rounds": rounds}
    finally:
        group.remove()
        shutil.rmtree(root, ignore_errors=True)


def summary(result: dict[str, Any]) -> str:
    lines = []
    for host in result["hosts"]:
        rows = []
        for name in CONFIGS:
            runs = [r for r in host["rounds"] if r["config"] == name]
            if not runs:
                why = "; ".join(host["mysqltuner_advice"])[:60]
                rows.append([name, *(["not run"] * len(WORKLOADS)), why, "", ""])
                continue
            cells = [name]
            for workload in WORKLOADS:
                med, spread = median_spread([r["tps"][workload] for r in runs])
                cells.append(f"{med:.0f} (±{spread:.0%})")
            worst_bytes = max(r["worst_case_bytes"] for r in runs)
            verdict = "fits" if worst_bytes <= host["memory_bytes"] else "OVER"
            cells.append(f"{worst_bytes / GiB:.2f} GiB {verdict}")
            loads = [r["load_average"][k][0] for r in runs for k in ("before", "after")]
            cells.append(f"{min(loads):.1f}-{max(loads):.1f}")
            cells.append(" / ".join("-".join(f"{r['tps'][w]:.0f}" for w in WORKLOADS) for r in runs))
            rows.append(cells)
        medians = {name: {w: _median(host, name, w) for w in WORKLOADS} for name in CONFIGS}
        lines.append(f"Host {host['memory_bytes'] // GiB} GiB, {host['tables']} x {host['table_size']} rows "
                     "(TPS median, spread; worst case vs host; 1-min load average; each round ro-rw)")
        lines.append(table(["config", *WORKLOADS, "worst case", "load", "rounds"], rows))
        for w in WORKLOADS:
            ours, base, tuner = (medians[c][w] for c in ("stackaudit", "defaults", "mysqltuner"))
            versus = f", stackaudit / mysqltuner {ours / tuner:.2f}x" if ours and tuner else ""
            lines.append(f"  {w}: stackaudit / defaults {ours / base:.2f}x{versus}" if ours and base else "")
    return "\n".join(lines)


def _median(host: dict[str, Any], config: str, workload: str) -> float | None:
    values = [r["tps"][workload] for r in host["rounds"] if r["config"] == config]
    return median_spread(values)[0] if values else None


def main() -> None:
    for tool in ("mariadbd", "sysbench", "mysqltuner"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} missing: apt-get install mariadb-server sysbench mysqltuner")
    result = {"machine": machine(), "quick": QUICK, "seconds": SECONDS, "rounds": ROUNDS, "threads": THREADS,
              "hosts": [host_run(m, (t, n)) for m, t, n in zip(HOSTS, TABLES, TABLE_SIZE, strict=True)]}
    path = save("tuning_mysql", result)
    print(summary(result))
    log(f"raw numbers: {path}")


if __name__ == "__main__":
    main()
