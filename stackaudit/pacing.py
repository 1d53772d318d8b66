"""Pacing: an unattended audit spreads its work out while other processes keep the CPUs busy.

The idle scheduling class (stackaudit.priority) is not enough on its own. On a virtual machine it
is not free: on the project's 2-vCPU bench VM, an idle-class busy loop that got 0.43 of a core beside
pgbench cost pgbench 15% of its TPS (docs/benchmarks.md, run 8). And the statements an audit sends
run in the server's own processes, at the server's priority. So an audit paces itself, as
autovacuum does with its cost-based delay (vacuum_cost_delay,
https://www.postgresql.org/docs/current/runtime-config-resource.html#RUNTIME-CONFIG-RESOURCE-VACUUM-COST).
It counts the work it has caused: its own CPU time, plus the time it waited on a server or an engine,
which spent CPU for it. While others keep most of the CPUs busy, every checkpoint after that work
pauses for a multiple of it. On a host with spare CPU it never pauses.

Only `below_the_services` turns pacing on: for an unattended audit or collect at the default
priority. Checkpoints sit where the work happens: after each statement and each engine call (the
`waiting_on` block), and between collectors. One pause holds every thread that reaches a
checkpoint, so the whole audit slows down, not only the thread that noticed. The collectors' sessions
are autocommit (PostgreSQL, MariaDB), so a pause holds no transaction, snapshot or lock.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

# Other processes use at least this share of all CPUs: the audit then pauses. An audit alone on the
# bench host left 0.27 of its 2 CPUs to its own server backend and engine; pgbench alone used 0.97.
BUSY_SHARE = 0.75
# Seconds of pause per second of work: a busy host then gets the audit at a quarter of its pace.
PAUSE_PER_WORK = 3.0
# At most this much pause per run, so an audit from cron every minute still ends within its minute.
MAX_PAUSE_SECONDS = 20.0
# The busy share is measured over at least this long (shorter windows are mostly noise).
MIN_WINDOW_SECONDS = 0.25
# /proc/stat's cpu line: user nice system idle iowait irq softirq steal (guest is inside user).
_IDLE_FIELDS = (3, 4)
_COUNTED_FIELDS = 8


def cpu_ticks(stat: Path) -> tuple[int, int] | None:
    """(busy, total) clock ticks of all CPUs since boot, or None when /proc/stat cannot be read.
    Steal time counts as busy: the hypervisor gave that CPU to someone else."""
    try:
        with stat.open() as lines:
            fields = [int(value) for value in lines.readline().split()[1:_COUNTED_FIELDS + 1]]
    except (OSError, ValueError):
        return None
    if len(fields) <= max(_IDLE_FIELDS):
        return None
    total = sum(fields)
    return total - sum(fields[i] for i in _IDLE_FIELDS), total


class Pacer:
    """The audit's pace: off until `start()`; then `checkpoint()` pauses while the host is busy."""

    def __init__(self, stat: Path = Path("/proc/stat"), clock: Callable[[], float] = time.monotonic,
                 own_cpu: Callable[[], float] = time.process_time,
                 sleep: Callable[[float], None] = time.sleep, ticks_per_second: int | None = None) -> None:
        self._stat, self._clock, self._own_cpu, self._sleep = stat, clock, own_cpu, sleep
        self._hz = ticks_per_second or _clock_ticks()
        self._lock = threading.Lock()
        self.enabled = False
        self.busy = False  # others kept the CPUs busy in the last measured window
        self.paused_seconds = 0.0  # so far in this run
        self._resume_at = 0.0
        self._waited = 0.0  # on servers since the last checkpoint
        self._cpu_mark = 0.0
        self._window: tuple[float, float, tuple[int, int]] | None = None  # (wall, own CPU, ticks)

    def start(self) -> None:
        with self._lock:
            self.enabled = True
            self._cpu_mark = self._own_cpu()
            self._window = self._sample(self._clock(), self._cpu_mark)

    def waited(self, seconds: float) -> None:
        """The audit waited this long on a server or engine that worked for it."""
        if self.enabled:
            with self._lock:
                self._waited += max(seconds, 0.0)

    @contextmanager
    def waiting_on(self) -> Iterator[None]:
        """Around a call that makes a server or engine work for the audit: the wait counts as work,
        and a checkpoint follows."""
        if not self.enabled:
            yield
            return
        started = self._clock()
        try:
            yield
        finally:
            self.waited(self._clock() - started)
        self.checkpoint()

    def checkpoint(self) -> None:
        """Pause here while the host is busy: for PAUSE_PER_WORK times the work done since the last
        checkpoint, and until any pause another thread started has ended."""
        if not self.enabled:
            return
        with self._lock:
            now = self._clock()
            cpu = self._own_cpu()
            work, self._cpu_mark, self._waited = cpu - self._cpu_mark + self._waited, cpu, 0.0
            self._measure(now, cpu)
            if self.busy:
                pause = min(work * PAUSE_PER_WORK, MAX_PAUSE_SECONDS - self.paused_seconds)
                if pause > 0:
                    self._resume_at = max(self._resume_at, now) + pause
                    self.paused_seconds += pause
            wait = self._resume_at - now
        if wait > 0:
            self._sleep(wait)

    def _sample(self, now: float, cpu: float) -> tuple[float, float, tuple[int, int]] | None:
        ticks = cpu_ticks(self._stat)
        return None if ticks is None else (now, cpu, ticks)

    def _measure(self, now: float, cpu: float) -> None:
        """Others' share of all CPUs since the window began, once it is long enough: the ticks the
        CPUs were busy, less the audit's own CPU time."""
        if self._window is None or now - self._window[0] < MIN_WINDOW_SECONDS:
            return
        (_, cpu_then, (busy_then, total_then)), self._window = self._window, self._sample(now, cpu)
        if self._window is None:  # /proc/stat became unreadable: never judged busy again
            self.busy = False
            return
        busy_now, total_now = self._window[2]
        if total_now > total_then:
            others = busy_now - busy_then - (cpu - cpu_then) * self._hz
            self.busy = others / (total_now - total_then) >= BUSY_SHARE


def _clock_ticks() -> int:
    try:
        return os.sysconf("SC_CLK_TCK")
    except (ValueError, OSError, AttributeError):
        return 100  # USER_HZ on every Linux architecture


PACER = Pacer()  # the process's one pace, which every collector thread shares


def start() -> None:
    PACER.start()


def checkpoint() -> None:
    PACER.checkpoint()


def waiting_on() -> AbstractContextManager[None]:
    return PACER.waiting_on()
