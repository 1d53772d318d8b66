"""`stackaudit watch` as a real process: alerts, SIGTERM and SIGKILL, restart without losing history.

Driven by what the watcher does (checks recorded, alerts received), never by wall time: a wait lasts
as long as the watcher runs, on a fast machine or a loaded one (pytest's timeout guards a hang)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil

from stackaudit.monitor.history import database_path
from tests.monitor.conftest import Receiver, SmallDisk


def start_watch(config: Path, state_dir: Path, interval: str = "300ms") -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "stackaudit",
            "watch",
            "--interval",
            interval,
            "--config",
            str(config),
            "--state-dir",
            str(state_dir),
            "--select",
            "SYS001",
            "--sources",
            "host",
            "--recover-checks",
            "2",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def checks(state_dir: Path) -> int:
    """Checks recorded so far; 0 while the watcher is still creating the database."""
    try:
        with sqlite3.connect(str(database_path(state_dir)), timeout=30) as db:
            return int(db.execute("SELECT count(*) FROM checks").fetchone()[0])
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return 0
        raise


def wait_checks(state_dir: Path, at_least: int, process: subprocess.Popen[bytes]) -> int:
    """Until the watcher has recorded `at_least` checks; fails if it stops first."""
    while True:
        assert process.poll() is None, process.communicate()[1].decode()
        if database_path(state_dir).exists() and (count := checks(state_dir)) >= at_least:
            return count
        time.sleep(0.1)


def write_config(tmp_path: Path, disk: SmallDisk, receiver: Receiver) -> Path:
    config = tmp_path / "stackaudit.toml"
    config.write_text(f'[disk]\npaths = ["{disk.path}"]\n\n[alerts]\nurls = ["{receiver.url}"]\n')
    return config


def test_watch_survives_sigterm_and_sigkill_without_losing_history(
    tmp_path: Path, state_dir: Path, small_disk: SmallDisk, receiver: Receiver
) -> None:
    config = write_config(tmp_path, small_disk, receiver)
    small_disk.fill(80)
    process = start_watch(config, state_dir)
    receiver.wait_for(1, sender=process)
    before_term = wait_checks(state_dir, 3, process)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err.decode()
    assert b"SIGTERM: stopping" in err and b"Traceback" not in err
    after_term = checks(state_dir)
    assert after_term >= before_term

    process = start_watch(config, state_dir)  # restart: the history and the alert state are kept
    before_kill = wait_checks(state_dir, after_term + 3, process)
    process.kill()
    process.wait(timeout=30)
    with sqlite3.connect(str(database_path(state_dir))) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert checks(state_dir) >= before_kill
    assert len(receiver.received) == 1  # same condition across restarts: still one alert

    small_disk.fill(20)
    process = start_watch(config, state_dir)
    receiver.wait_for(2, sender=process)
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=30)
    assert process.returncode == 0
    assert [t.split(" ")[0] for t in receiver.titles()] == ["[WARNING]", "[RESOLVED]"]


def test_watch_memory_stays_flat(
    tmp_path: Path, state_dir: Path, small_disk: SmallDisk, receiver: Receiver
) -> None:
    config = write_config(tmp_path, small_disk, receiver)
    small_disk.fill(10)
    process = start_watch(config, state_dir, interval="50ms")
    try:
        first = wait_checks(state_dir, 3, process)  # each check is a child process of its own
        rss_early = psutil.Process(process.pid).memory_info().rss
        wait_checks(state_dir, first + 10, process)
        rss_late = psutil.Process(process.pid).memory_info().rss
    finally:
        process.terminate()
        process.communicate(timeout=30)
    assert rss_late - rss_early < 8 * 1024 * 1024, (rss_early, rss_late)
    assert rss_late < 150 * 1024 * 1024


def test_watch_loop_holds_no_check_machinery_between_checks(
    tmp_path: Path, state_dir: Path, small_disk: SmallDisk, receiver: Receiver
) -> None:
    """Each check runs in a child: the long-lived process (same PID as `stackaudit watch`) never
    loads what a check needs (psutil's C extension here), and stays small."""
    config = write_config(tmp_path, small_disk, receiver)
    small_disk.fill(10)
    process = start_watch(config, state_dir, interval="200ms")
    try:
        wait_checks(state_dir, 5, process)
        loop = psutil.Process(process.pid)
        maps = Path(f"/proc/{process.pid}/maps").read_text()
        assert "stackaudit.monitor.loop" in " ".join(loop.cmdline())
        assert "_psutil_linux" not in maps and "_yaml" not in maps
        assert loop.memory_info().rss < 30 * 1024 * 1024
    finally:
        process.terminate()
        _, err = process.communicate(timeout=30)
    assert process.returncode == 0 and b"Traceback" not in err
    assert b"check: 0 finding(s)" in err  # the children's log lines reach the same stderr
