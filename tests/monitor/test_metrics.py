"""The metrics endpoint scraped over HTTP, and the textfile for node_exporter."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from stackaudit.config import Settings
from stackaudit.monitor.check import run_check
from stackaudit.monitor.metrics import CheckCollector, serve, write_textfile
from tests.monitor.conftest import SmallDisk, free_port


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def scrape(port: int, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
                return str(response.read().decode())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def by_name(
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> list[float]:
    return [
        v
        for (n, lbl), v in found.items()
        if n == name and all(dict(lbl).get(k) == x for k, x in labels.items())
    ]


def test_metrics_endpoint_serves_the_disk_and_findings(small_disk: SmallDisk, state_dir: Path) -> None:
    settings = Settings(disk_paths=(small_disk.path,), state_dir=state_dir, sources=("host",))
    calls = []

    def produce():  # type: ignore[no-untyped-def]
        calls.append(1)
        return run_check(settings)

    small_disk.fill(88)
    stop = threading.Event()
    port = free_port()
    thread = threading.Thread(
        target=serve, args=(CheckCollector(produce, max_age_seconds=60), "127.0.0.1", port, stop)
    )
    thread.start()
    try:
        first = samples(scrape(port))
        point = str(small_disk.path)
        assert by_name(first, "stackaudit_disk_used_ratio", mountpoint=point) == [
            pytest.approx(0.88, abs=0.01)
        ]
        assert by_name(first, "stackaudit_disk_size_bytes", mountpoint=point) == [4 * 1024 * 1024]
        assert by_name(first, "stackaudit_disk_used_bytes", mountpoint=point)[0] > 3.5 * 1024 * 1024
        assert by_name(first, "stackaudit_findings", severity="critical")[0] >= 1
        assert by_name(first, "stackaudit_finding_active", code="SYS001", subject=point) == [1.0]
        assert by_name(first, "stackaudit_source_up", source="host") == [1.0]
        assert 0 < by_name(first, "stackaudit_memory_available_ratio")[0] <= 1
        small_disk.fill(10)
        samples(scrape(port))
        assert len(calls) == 1  # the second scrape within max_age reuses the check
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive()


def test_textfile_is_written_atomically_and_parses(
    small_disk: SmallDisk, state_dir: Path, tmp_path: Path
) -> None:
    small_disk.fill(60)
    result = run_check(Settings(disk_paths=(small_disk.path,), state_dir=state_dir, sources=("host",)))
    folder = tmp_path / "textfile"
    path = write_textfile(folder, result)
    assert path.name == "stackaudit.prom"
    assert oct(path.stat().st_mode & 0o777) == "0o644"
    assert [p.name for p in folder.iterdir()] == ["stackaudit.prom"]  # no temp file left behind
    found = samples(path.read_text())
    assert by_name(found, "stackaudit_disk_used_ratio", mountpoint=str(small_disk.path)) == [
        pytest.approx(0.6, abs=0.01)
    ]
    assert by_name(found, "stackaudit_check_timestamp_seconds")[0] == pytest.approx(time.time(), abs=60)


def test_metrics_command_listens_and_stops_on_sigterm(small_disk: SmallDisk, state_dir: Path) -> None:
    port = free_port()
    small_disk.fill(30)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "stackaudit",
            "metrics",
            "--listen",
            f"127.0.0.1:{port}",
            "--sources",
            "host",
            "--disk-path",
            str(small_disk.path),
            "--state-dir",
            str(state_dir),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        found = samples(scrape(port))
        assert by_name(found, "stackaudit_disk_used_ratio", mountpoint=str(small_disk.path)) == [
            pytest.approx(0.3, abs=0.01)
        ]
    finally:
        process.terminate()
        _, err = process.communicate(timeout=20)
    assert process.returncode == 0, err.decode()
    assert b"Traceback" not in err


def test_metrics_command_rejects_a_bad_address() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "stackaudit", "metrics", "--listen", "nonsense"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "HOST:PORT" in done.stderr and "Traceback" not in done.stderr


def test_a_scrape_never_waits_for_a_check_after_the_first(small_disk: SmallDisk, state_dir: Path) -> None:
    """A stale result is served at once while the new check runs on a thread; a failed refresh
    keeps the previous result."""
    settings = Settings(disk_paths=(small_disk.path,), state_dir=state_dir, sources=("host",))
    release, started = threading.Event(), threading.Event()
    calls: list[str] = []

    def produce():  # type: ignore[no-untyped-def]
        calls.append("check")
        if len(calls) == 2:
            started.set()
            release.wait()  # the second check hangs until the test lets it go
        if len(calls) == 3:
            raise RuntimeError("postgres went away")
        return run_check(settings)

    stop = threading.Event()
    port = free_port()
    thread = threading.Thread(
        target=serve, args=(CheckCollector(produce, max_age_seconds=0), "127.0.0.1", port, stop)
    )
    thread.start()
    try:
        small_disk.fill(88)
        point = str(small_disk.path)
        first = samples(scrape(port))  # the first scrape waits for the first check
        small_disk.fill(10)
        second = samples(scrape(port))  # starts check 2, which hangs: served from check 1
        assert started.wait(30) and not release.is_set()
        for result in (first, second):
            assert by_name(result, "stackaudit_disk_used_ratio", mountpoint=point) == [
                pytest.approx(0.88, abs=0.01)
            ]
        release.set()
        for _ in range(200):  # check 2 lands, check 3 fails: its result stays
            if len(calls) >= 3:
                break
            samples(scrape(port))
            time.sleep(0.05)
        latest = samples(scrape(port))
        assert by_name(latest, "stackaudit_disk_used_ratio", mountpoint=point) == [
            pytest.approx(0.10, abs=0.02)
        ]
    finally:
        release.set()
        stop.set()
        thread.join(timeout=10)


def test_a_produced_exposition_is_served_as_it_is_and_made_once() -> None:
    """What `metrics --listen` gets from its child (bytes) is what every scrape gets: no scrape
    renders anything, and within max_age no scrape runs another check."""
    calls: list[int] = []

    def produce() -> bytes:
        calls.append(1)
        return b"# TYPE stackaudit_x gauge\nstackaudit_x 1.0\n"

    collector = CheckCollector(produce, max_age_seconds=3600)
    assert collector.current() == collector.current() == produce()
    assert len(calls) == 2  # the collector's one check, and the call in the assertion


# The child `metrics --listen` starts for each check, with its priority read as it exits.
CHILD_PRIORITY_PROBE = """
import atexit, os, sys
atexit.register(lambda: sys.stderr.write(
    f"PRIORITY {os.getpriority(os.PRIO_PROCESS, 0)} {os.getsid(0) == os.getpid()} "
    f"{os.sched_getscheduler(0) == os.SCHED_IDLE}\\n"))
from stackaudit.monitor.loop import main
sys.exit(main(["--run", "exposition"]))
"""


def test_the_check_child_of_metrics_runs_below_the_server(tmp_path: Path) -> None:
    """The check behind `metrics --listen` observes like `stackaudit check`: nice 19 and (from a
    pipe, not a terminal) a session of its own, so the server's scrapes get the CPU first; it stays
    in the normal scheduling class, since its alerts must not wait on a saturated host."""
    settings = Settings(sources=("host",), state_dir=tmp_path)
    done = subprocess.run([sys.executable, "-c", CHILD_PRIORITY_PROBE],
                          input=pickle.dumps((settings, None, None)), capture_output=True,
                          env={**os.environ, "STACKAUDIT_NICE": "1"}, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "stackaudit_check_duration_seconds" in samples_names(done.stdout.decode())
    own_session = Path("/proc/self/autogroup").exists()
    assert done.stderr.decode().splitlines()[-1] == f"PRIORITY 19 {own_session} False"


def samples_names(text: str) -> set[str]:
    return {sample.name for family in text_string_to_metric_families(text) for sample in family.samples}
