"""Shared pieces of the benchmarks: the machine, cgroups, CPU taken by others, PostgreSQL helpers.

Benchmarks are not tests: they are run by hand (`make bench-*`), print ratios measured side by side in
one run, and write their raw numbers to bench/results/<name>-<timestamp>.json.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
VENV_BIN = ROOT / ".venv" / "bin"
STACKAUDIT = str(VENV_BIN / "stackaudit")
GiB = 1024**3
MiB = 1024**2
QUICK = os.environ.get("QUICK", "") not in ("", "0")

# cgroup v1 (this machine: memory and cpuacct hierarchies under /sys/fs/cgroup). On cgroup v2 the same
# files are memory.max and cpu.stat in one hierarchy; we support both.
CGROUP_ROOT = Path("/sys/fs/cgroup")


def machine() -> dict[str, Any]:
    cpu_model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), platform.processor())
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "ram_bytes": psutil.virtual_memory().total,
        "kernel": platform.release(),
        "cpu_model": cpu_model,
        "cgroup": "v2" if (CGROUP_ROOT / "cgroup.controllers").exists() else "v1",
        "load_average_at_start": os.getloadavg(),
    }


def save(name: str, payload: dict[str, Any], stamped: bool = True) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = f"-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}" if stamped else ""
    path = RESULTS / f"{name}{stamp}.json"
    path.write_text(json.dumps(payload, indent=2, default=str))
    return path


def tree_rss(process: psutil.Process) -> int:
    """RSS of a process and all its children (a child may end while we count it)."""
    total = 0
    for p in [process, *process.children(recursive=True)]:
        with suppress(psutil.Error):
            total += p.memory_info().rss
    return total


def log(message: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {message}", flush=True)


def median_spread(values: Sequence[float]) -> tuple[float, float]:
    """Median and spread ((max - min) / median) of the rounds."""
    if not values:
        return float("nan"), float("nan")
    med = statistics.median(values)
    return med, ((max(values) - min(values)) / med if med else float("nan"))


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table (printed, and pasted into docs/benchmarks.md)."""
    text = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    text += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(text)


# ------------------------------------------------------------------------------------------------
# cgroups: a memory limit for the emulated host, and CPU accounting of everything we start
# ------------------------------------------------------------------------------------------------

@dataclass
class Cgroup:
    """One group in the memory and cpuacct hierarchies (v1), or one v2 group."""

    name: str
    memory_limit_bytes: int | None = None

    @property
    def v2(self) -> bool:
        return (CGROUP_ROOT / "cgroup.controllers").exists()

    def _dirs(self) -> list[Path]:
        if self.v2:
            return [CGROUP_ROOT / self.name]
        return [CGROUP_ROOT / "memory" / self.name, CGROUP_ROOT / "cpuacct" / self.name]

    def create(self) -> Cgroup:
        for path in self._dirs():
            path.mkdir(exist_ok=True)
        self.set_limit(self.memory_limit_bytes)
        return self

    def set_limit(self, limit: int | None) -> None:
        self.memory_limit_bytes = limit
        if self.v2:
            (CGROUP_ROOT / self.name / "memory.max").write_text(str(limit) if limit else "max")
        else:
            value = str(limit) if limit else "-1"
            (CGROUP_ROOT / "memory" / self.name / "memory.limit_in_bytes").write_text(value)

    def procs_files(self, memory: bool = True) -> list[Path]:
        dirs = self._dirs()
        if not memory and not self.v2:
            dirs = dirs[1:]
        return [d / "cgroup.procs" for d in dirs]

    def enter(self, memory: bool = True) -> Callable[[], None]:
        """A preexec_fn that moves the child into this group before it execs (its children follow)."""
        files = [str(p) for p in self.procs_files(memory)]

        def move() -> None:
            for path in files:
                with open(path, "w") as handle:
                    handle.write(str(os.getpid()))
        return move

    def cpu_seconds(self) -> float:
        if self.v2:
            for line in (CGROUP_ROOT / self.name / "cpu.stat").read_text().splitlines():
                if line.startswith("usage_usec"):
                    return int(line.split()[1]) / 1e6
            return 0.0
        return int((CGROUP_ROOT / "cpuacct" / self.name / "cpuacct.usage").read_text()) / 1e9

    def memory_peak_bytes(self) -> int | None:
        path = (CGROUP_ROOT / self.name / "memory.peak") if self.v2 else (
            CGROUP_ROOT / "memory" / self.name / "memory.max_usage_in_bytes")
        try:
            return int(path.read_text())
        except (OSError, ValueError):
            return None

    def reset_peak(self) -> None:
        if not self.v2:
            with suppress(OSError):
                (CGROUP_ROOT / "memory" / self.name / "memory.max_usage_in_bytes").write_text("0")

    def remove(self) -> None:
        for path in self._dirs():
            with suppress(OSError):
                path.rmdir()


@dataclass
class CpuWindow:
    """CPU used during a window: by our group, and by every other process on the machine."""

    wall_seconds: float
    ours_seconds: float
    busy_seconds: float

    @property
    def others_seconds(self) -> float:
        return max(0.0, self.busy_seconds - self.ours_seconds)

    @property
    def others_cores(self) -> float:
        """Average number of cores other processes kept busy (2 = this whole machine)."""
        return self.others_seconds / self.wall_seconds if self.wall_seconds else 0.0


def _busy_seconds() -> float:
    times = psutil.cpu_times()
    return float(times.user + times.nice + times.system + getattr(times, "irq", 0)
                 + getattr(times, "softirq", 0) + getattr(times, "steal", 0))


@contextmanager
def cpu_window(group: Cgroup | None,
               own_pids: Callable[[], list[int]] | None = None) -> Iterator[list[CpuWindow]]:
    """Measure a block; `ours` comes from the cgroup, else from the given pids (psutil)."""
    out: list[CpuWindow] = []

    def ours() -> float:
        if group is not None:
            return group.cpu_seconds()
        total = 0.0
        for pid in (own_pids() if own_pids else []):
            try:
                parent = psutil.Process(pid)
                t = parent.cpu_times()  # children_*: the exited children it has reaped
                total += t.user + t.system + t.children_user + t.children_system
                for child in parent.children(recursive=True):  # and the live ones
                    try:
                        c = child.cpu_times()
                        total += c.user + c.system
                    except psutil.Error:
                        pass
            except psutil.Error:
                pass
        return total

    start_wall, start_ours, start_busy = time.monotonic(), ours(), _busy_seconds()
    yield out
    out.append(CpuWindow(time.monotonic() - start_wall, ours() - start_ours, _busy_seconds() - start_busy))


def drop_caches() -> bool:
    """Empty the page cache (root only); returns whether it worked."""
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def run(args: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, check=False, **kwargs)
