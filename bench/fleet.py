"""Fleet scale: `stackaudit fleet collect` over 50 inventory aliases of one loopback sshd (forks 10
against one after another, side by side) and `stackaudit fleet report` over 50 to 1,000 snapshots.

    .venv/bin/python -m bench.fleet            # both halves, full size
    QUICK=1 .venv/bin/python -m bench.fleet    # a smoke run

Each half lives in its own module (bench/fleet_collect.py, bench/fleet_report.py) and returns its
numbers; this file runs both and writes one results file.
"""

from __future__ import annotations

from bench import fleet_collect, fleet_report
from bench.common import QUICK, log, machine, save


def main() -> None:
    results = {"machine": machine(), "quick": QUICK}
    log("fleet collect: 50 hosts, --forks 10 against --forks 1")
    results["collect"] = fleet_collect.run(QUICK)
    log("fleet report: 50 to 1,000 snapshots")
    results["report"] = fleet_report.run(QUICK)
    log(f"raw numbers: {save('fleet', results)}")


if __name__ == "__main__":
    main()
