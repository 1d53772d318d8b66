"""The audit's pace: it pauses only while other processes keep the CPUs busy, for a multiple of the
work it caused, within a budget, and one pause holds every thread."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from stackaudit import pacing
from stackaudit.pacing import MAX_PAUSE_SECONDS, MIN_WINDOW_SECONDS, PAUSE_PER_WORK, Pacer, cpu_ticks

HZ = 100
CPUS = 2


class FakeHost:
    """A host with 2 CPUs whose /proc/stat the test writes: `others` is the share of all CPUs other
    processes keep busy; the audit's own CPU is added to the busy ticks, as the kernel would."""

    def __init__(self, tmp_path: Path) -> None:
        self.stat = tmp_path / "stat"
        self.now = 0.0
        self.own = 0.0
        self.others = 0.0
        self.busy_ticks = 0.0
        self.total_ticks = 0.0
        self.slept: list[float] = []
        self.unreadable = False
        self._write()

    def _write(self) -> None:
        if self.unreadable:
            self.stat.write_text("garbage\n")
            return
        busy, total = int(self.busy_ticks), int(self.total_ticks)
        # user nice system idle iowait irq softirq steal guest guest_nice
        self.stat.write_text(f"cpu  {busy} 0 0 {total - busy} 0 0 0 0 0 0\ncpu0 1 2 3 4\n")

    def advance(self, seconds: float, own_cpu: float = 0.0) -> None:
        self.now += seconds
        self.own += own_cpu
        self.total_ticks += seconds * CPUS * HZ
        self.busy_ticks += seconds * CPUS * HZ * self.others + own_cpu * HZ
        self._write()

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.advance(seconds)

    def pacer(self) -> Pacer:
        return Pacer(stat=self.stat, clock=lambda: self.now, own_cpu=lambda: self.own, sleep=self.sleep,
                     ticks_per_second=HZ)


@pytest.fixture
def host(tmp_path: Path) -> FakeHost:
    return FakeHost(tmp_path)


def test_off_until_started_it_never_pauses_nor_reads_the_host(host: FakeHost) -> None:
    pacer = host.pacer()
    host.others = 1.0
    host.stat.unlink()  # nothing to read: it must not even try
    for _ in range(5):
        host.advance(0.5, own_cpu=0.4)
        pacer.waited(1.0)
        pacer.checkpoint()
    assert host.slept == [] and pacer.paused_seconds == 0


def test_on_a_host_with_spare_cpu_it_never_pauses(host: FakeHost) -> None:
    """An audit alone leaves its server and engine about a quarter of the CPUs: that is not busy."""
    host.others = 0.3
    pacer = host.pacer()
    pacer.start()
    for _ in range(6):
        host.advance(0.3, own_cpu=0.3)  # the audit itself uses half the CPUs: it is not "others"
        pacer.waited(0.1)
        pacer.checkpoint()
    assert host.slept == [] and not pacer.busy


def test_on_a_busy_host_it_pauses_for_a_multiple_of_its_own_cpu_and_its_waits(host: FakeHost) -> None:
    host.others = 0.9
    pacer = host.pacer()
    pacer.start()
    host.advance(MIN_WINDOW_SECONDS, own_cpu=0.1)
    pacer.checkpoint()
    assert pacer.busy
    assert host.slept == [pytest.approx(0.1 * PAUSE_PER_WORK)]
    host.advance(0.05, own_cpu=0.02)
    with pacer.waiting_on():
        host.advance(0.2)  # a statement the server runs for 0.2 s
    assert host.slept[-1] == pytest.approx((0.02 + 0.2) * PAUSE_PER_WORK)


def test_it_stops_pausing_once_the_host_has_spare_cpu_again(host: FakeHost) -> None:
    host.others = 0.95
    pacer = host.pacer()
    pacer.start()
    host.advance(0.3, own_cpu=0.1)
    pacer.checkpoint()
    paused = len(host.slept)
    host.others = 0.1
    host.advance(0.3, own_cpu=0.1)
    pacer.checkpoint()
    assert paused == 1 and len(host.slept) == 1 and not pacer.busy


def test_its_pauses_never_add_up_to_more_than_the_budget(host: FakeHost) -> None:
    host.others = 1.0
    pacer = host.pacer()
    pacer.start()
    for _ in range(40):
        host.advance(0.3, own_cpu=0.3)
        pacer.waited(0.5)
        pacer.checkpoint()
    assert sum(host.slept) == pytest.approx(MAX_PAUSE_SECONDS)
    assert pacer.paused_seconds == pytest.approx(MAX_PAUSE_SECONDS)


def test_a_short_window_is_not_measured_and_an_unreadable_host_never_pauses(host: FakeHost) -> None:
    host.others = 1.0
    pacer = host.pacer()
    pacer.start()
    host.advance(MIN_WINDOW_SECONDS / 2, own_cpu=0.05)
    pacer.checkpoint()
    assert host.slept == [] and not pacer.busy
    host.unreadable = True
    host.advance(1.0, own_cpu=0.2)
    pacer.checkpoint()
    host.advance(1.0, own_cpu=0.2)
    pacer.checkpoint()
    assert host.slept == [] and not pacer.busy


def test_one_pause_holds_every_thread_that_reaches_a_checkpoint(tmp_path: Path) -> None:
    """Thread A's checkpoint starts a pause; thread B, arriving during it, waits for its end too,
    though B itself did no work since the last checkpoint."""
    host = FakeHost(tmp_path)
    host.others = 1.0
    waits: dict[str, float] = {}
    pacer = Pacer(stat=host.stat, clock=lambda: host.now, own_cpu=lambda: host.own,
                  sleep=lambda s: waits.__setitem__(threading.current_thread().name, s), ticks_per_second=HZ)
    pacer.start()
    host.advance(0.5, own_cpu=0.2)
    first = threading.Thread(target=pacer.checkpoint, name="A")
    first.start()
    first.join()
    host.now += 0.1  # B arrives 0.1 s into A's pause
    second = threading.Thread(target=pacer.checkpoint, name="B")
    second.start()
    second.join()
    assert waits["A"] == pytest.approx(0.2 * PAUSE_PER_WORK)
    assert waits["B"] == pytest.approx(0.2 * PAUSE_PER_WORK - 0.1)


def test_cpu_ticks_counts_steal_as_busy_and_leaves_guest_time_inside_user(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    # user nice system idle iowait irq softirq steal guest guest_nice
    stat.write_text("cpu  100 10 50 700 40 5 5 90 30 0\n")
    assert cpu_ticks(stat) == (100 + 10 + 50 + 5 + 5 + 90, 1000)
    assert cpu_ticks(tmp_path / "missing") is None


def test_the_real_host_busy_with_other_processes_makes_it_pause(tmp_path: Path) -> None:
    """Against this machine's /proc/stat: one busy loop per CPU in other processes is a busy host."""
    if not Path("/proc/stat").exists():
        pytest.fail("no /proc/stat: this suite runs on Linux")
    slept: list[float] = []
    pacer = Pacer(sleep=slept.append)
    loops = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 1)]
    try:
        pacer.start()
        threading.Event().wait(3 * MIN_WINDOW_SECONDS)  # the window others fill; the audit sleeps
        pacer.waited(0.1)
        pacer.checkpoint()
    finally:
        for loop in loops:
            loop.kill()
            loop.wait()
    assert pacer.busy and slept and slept[0] >= 0.1 * PAUSE_PER_WORK


PACING_PROBE = ("import sys\n"
                "from stackaudit import pacing\n"
                "from stackaudit.priority import below_the_services\n"
                "below_the_services(sys.argv[1])\n"
                "print(pacing.PACER.enabled)")


@pytest.mark.parametrize(("command", "nice", "paced"), [("audit", "1", True), ("collect", "1", True),
                                                        ("check", "1", False), ("audit", "12", False),
                                                        ("audit", "0", False)])
def test_only_an_unattended_audit_or_collect_at_the_default_priority_is_paced(
        command: str, nice: str, paced: bool) -> None:
    """`check` carries the alerts and a user's chosen priority is that and nothing more."""
    done = subprocess.run([sys.executable, "-c", PACING_PROBE, command], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, env={**os.environ, "STACKAUDIT_NICE": nice}, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(paced)]


def test_the_test_process_itself_is_not_paced() -> None:
    assert not pacing.PACER.enabled


def busy_pacer(host: FakeHost, monkeypatch: pytest.MonkeyPatch) -> Pacer:
    """The process's pacer, already judging the host busy (with no /proc/stat it keeps that)."""
    pacer = Pacer(stat=host.stat.parent / "no-stat", clock=lambda: host.now, own_cpu=lambda: host.own,
                  sleep=host.sleep, ticks_per_second=HZ)
    pacer.start()
    pacer.busy = True
    monkeypatch.setattr(pacing, "PACER", pacer)
    return pacer


def test_an_engine_call_is_work_even_when_it_fails(host: FakeHost, monkeypatch: pytest.MonkeyPatch) -> None:
    from stackaudit.facts.docker import DockerError, call

    busy_pacer(host, monkeypatch)
    assert call("list containers", lambda: host.advance(0.2) or "answer") == "answer"
    assert host.slept == [pytest.approx(0.2 * PAUSE_PER_WORK)]

    def refused() -> None:
        host.advance(0.1)
        raise ConnectionRefusedError("no engine")

    with pytest.raises(DockerError):
        call("list images", refused)
    pacing.checkpoint()  # the next checkpoint pays for the failed call's wait
    assert host.slept[-1] == pytest.approx(0.1 * PAUSE_PER_WORK)


def test_each_collector_and_each_import_ends_at_a_checkpoint(host: FakeHost, monkeypatch: pytest.MonkeyPatch,
                                                              tmp_path: Path) -> None:
    """The audit's own CPU between statements (parsing files, imports) is paced too."""
    from stackaudit.config import Settings
    from stackaudit.facts import collect

    busy_pacer(host, monkeypatch)
    checkpoints: list[str] = []
    original = pacing.PACER.checkpoint
    monkeypatch.setattr(pacing.PACER, "checkpoint",
                        lambda: (checkpoints.append(threading.current_thread().name), original()))
    facts = collect(Settings(sources=("env", "backups"), project_dirs=(tmp_path,), state_dir=tmp_path))
    assert set(facts.data) <= {"env", "backups"}
    workers = [name for name in checkpoints if name.startswith("collect")]
    assert len(workers) == 2  # one after each collector, in its thread
    assert len(checkpoints) > len(workers)  # and the collecting thread's after each module import
