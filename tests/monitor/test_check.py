"""Checks driven for real: a 4 MiB tmpfs filled past SYS001's thresholds, alerts to a local receiver."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from stackaudit.config import Settings
from stackaudit.model import Severity
from stackaudit.monitor import DAY_SECONDS, MonitorOptions
from stackaudit.monitor.check import run_check, run_pass
from stackaudit.monitor.history import History
from tests.monitor.conftest import Receiver, SmallDisk, free_port

FAST = MonitorOptions(
    recover_checks=3, repeat_seconds=3600, send_attempts=2, send_backoff_seconds=0.01, retry_base_seconds=60
)


def settings_for(disk: SmallDisk, state_dir: Path, *urls: str) -> Settings:
    return Settings(
        disk_paths=(disk.path,), state_dir=state_dir, select=("SYS001",), sources=("host",), alert_urls=urls
    )


def passes(
    settings: Settings,
    percents: list[float],
    disk: SmallDisk,
    start: float,
    every: float = 600.0,
    options: MonitorOptions = FAST,
) -> list[list[str]]:
    """Fill to each percent and run one pass; the alert kinds of each pass."""
    kinds = []
    for i, percent in enumerate(percents):
        disk.fill(percent)
        result = run_pass(settings, options, now=start + i * every)
        kinds.append([a.kind for a in result.alerts if a.subject == str(disk.path)])
    return kinds


def test_sys001_fires_on_the_small_disk_with_the_real_numbers(small_disk: SmallDisk, state_dir: Path) -> None:
    small_disk.fill(80)
    result = run_check(settings_for(small_disk, state_dir))
    mine = [f for f in result.report.findings if f.subject == str(small_disk.path)]
    assert [(f.code, f.severity) for f in mine] == [("SYS001", Severity.HIGH)]
    assert "80% full" in mine[0].message
    small_disk.fill(90)
    result = run_check(settings_for(small_disk, state_dir))
    assert [f.severity for f in result.report.findings if f.subject == str(small_disk.path)] == [
        Severity.CRITICAL
    ]
    ratio = [
        m.value
        for m in result.measurements
        if m.metric == "disk_used_ratio" and m.subject == str(small_disk.path)
    ]
    assert ratio == [pytest.approx(0.9, abs=0.01)]


def test_sys001_silent_below_the_threshold(small_disk: SmallDisk, state_dir: Path) -> None:
    small_disk.fill(50)
    result = run_check(settings_for(small_disk, state_dir))
    assert "SYS001" in result.evaluated
    assert [f for f in result.report.findings if f.subject == str(small_disk.path)] == []


def test_alerts_on_change_with_recovery_and_no_duplicates(
    small_disk: SmallDisk, state_dir: Path, receiver: Receiver
) -> None:
    settings = settings_for(small_disk, state_dir, receiver.url)
    kinds = passes(settings, [50, 80, 80, 90, 90, 50, 50, 50, 50], small_disk, time.time())
    assert kinds == [[], ["firing"], [], ["escalated"], [], [], [], ["resolved"], []]
    point = str(small_disk.path)
    assert receiver.titles() == [
        f"[WARNING] SYS001 disk-space-low: {point} on {_hostname()}",
        f"[CRITICAL] SYS001 disk-space-low: {point} on {_hostname()}",
        f"[RESOLVED] SYS001 disk-space-low: {point} on {_hostname()}",
    ]
    warning, critical, resolved = receiver.received
    assert [warning["type"], critical["type"], resolved["type"]] == ["warning", "failure", "success"]
    for message in (warning, critical):  # what, where, measured value, threshold, how to explain it
        assert point in message["message"]
        assert "Measured: used_percent = " in message["message"]
        assert "(threshold: < 75.0)" in message["message"]
        assert "stackaudit explain SYS001" in message["message"]
    assert "Back to ok" in resolved["message"]


def test_hovering_at_the_threshold_alerts_once(
    small_disk: SmallDisk, state_dir: Path, receiver: Receiver
) -> None:
    settings = settings_for(small_disk, state_dir, receiver.url)
    passes(settings, [76, 73, 76, 73, 76, 73, 76], small_disk, time.time())
    assert len(receiver.received) == 1
    assert receiver.titles()[0].startswith("[WARNING] SYS001")


def test_still_critical_is_repeated_at_the_interval(
    small_disk: SmallDisk, state_dir: Path, receiver: Receiver
) -> None:
    settings = settings_for(small_disk, state_dir, receiver.url)
    kinds = passes(settings, [90] * 8, small_disk, time.time(), every=1800.0)  # repeat every hour
    assert kinds == [["firing"], [], ["repeat"], [], ["repeat"], [], ["repeat"], []]
    assert "Still critical since" in receiver.received[1]["message"]


def test_failing_destination_is_retried_and_never_crashes(
    small_disk: SmallDisk, state_dir: Path, receiver: Receiver
) -> None:
    closed = free_port()
    settings = settings_for(small_disk, state_dir, f"json://127.0.0.1:{closed}/", receiver.url)
    start = time.time()
    passes(settings, [80], small_disk, start)
    assert len(receiver.received) == 1  # the working destination is not held up by the broken one
    with History.open(state_dir) as history:
        [waiting] = history.pending()
        assert waiting.attempts == FAST.send_attempts
        assert waiting.next_attempt == pytest.approx(start + FAST.retry_base_seconds)
    passes(settings, [80], small_disk, start + 10)  # not due yet: no attempt
    with History.open(state_dir) as history:
        assert history.pending()[0].attempts == FAST.send_attempts
    late = Receiver(closed)  # the destination comes back
    try:
        passes(settings, [80], small_disk, start + 61)
        assert late.titles() == receiver.titles()  # delivered once, the same alert
        with History.open(state_dir) as history:
            assert history.pending() == []
            delivered = [(n["label"], n["attempts"]) for n in history.notifications()]
        assert delivered == [("json://127.0.0.1", 1), ("json://127.0.0.1", FAST.send_attempts + 1)]
        passes(settings, [80], small_disk, start + 200)
        assert len(late.received) == 1 and len(receiver.received) == 1
    finally:
        late.stop()


def test_sys001_fires_on_the_forecast_before_the_threshold(
    small_disk: SmallDisk, state_dir: Path, receiver: Receiver
) -> None:
    small_disk.fill(50)
    point = str(small_disk.path)
    settings = settings_for(small_disk, state_dir, receiver.url)
    now = time.time()
    used_now = run_check(settings).measurements
    used = next(m.value for m in used_now if m.metric == "disk_used_bytes" and m.subject == point)
    size = next(m.value for m in used_now if m.metric == "disk_size_bytes" and m.subject == point)
    rate = (size - used) / 5.0  # full in five days at this rate
    with History.open(state_dir) as history:
        history.add_samples(
            [(now - h * 3600, "disk_used_bytes", point, used - rate * h / 24) for h in range(72, 0, -1)]
        )
    result = run_pass(settings, FAST, now=now)
    [finding] = [f for f in result.report.findings if f.subject == point]
    assert finding.code == "SYS001" and finding.severity == Severity.HIGH
    assert "will be full in 5.0 days" in finding.message
    assert result.forecasts[point].days_to_full == pytest.approx(5.0, rel=0.05)
    seconds = [m.value for m in result.measurements if m.metric == "disk_forecast_seconds_to_full"]
    assert seconds == [pytest.approx(5 * DAY_SECONDS, rel=0.05)]
    assert "forecast_days_to_full" in receiver.received[0]["message"]


def test_skipped_source_does_not_count_as_recovery(
    small_disk: SmallDisk, state_dir: Path, receiver: Receiver
) -> None:
    settings = settings_for(small_disk, state_dir, receiver.url)
    passes(settings, [80], small_disk, time.time())
    no_host = Settings(
        state_dir=state_dir, select=("SYS001",), sources=("redis",), alert_urls=(receiver.url,)
    )
    for i in range(4):  # host not collected: SYS001 is skipped, its state must not change
        run_pass(no_host, FAST, now=time.time() + 600 * (i + 1))
    with History.open(state_dir) as history:
        states = history.alert_states()
    assert states[("SYS001", str(small_disk.path))].level == "warning"
    assert len(receiver.received) == 1


def test_history_keeps_every_check(small_disk: SmallDisk, state_dir: Path) -> None:
    settings = settings_for(small_disk, state_dir)
    passes(settings, [10, 20, 30], small_disk, time.time())
    with History.open(state_dir) as history:
        assert history.check_count() == 3
        values = [v for _, v in history.series("disk_used_ratio", str(small_disk.path))]
    assert values == [pytest.approx(p, abs=0.01) for p in (0.1, 0.2, 0.3)]


def _hostname() -> str:
    import socket

    return socket.gethostname()


def test_check_command_exit_codes_and_json(small_disk: SmallDisk, state_dir: Path) -> None:
    from typer.testing import CliRunner

    from stackaudit.cli import app

    runner = CliRunner()
    args = [
        "check",
        "--format",
        "json",
        "--select",
        "SYS001",
        "--sources",
        "host",
        "--disk-path",
        str(small_disk.path),
        "--state-dir",
        str(state_dir),
    ]
    small_disk.fill(50)
    done = runner.invoke(app, args)
    assert done.exit_code == 0, done.output
    small_disk.fill(80)
    done = runner.invoke(app, [*args, "--fail-on", "high"])
    assert done.exit_code == 1
    payload = json.loads(done.stdout)
    assert [f["code"] for f in payload["findings"] if f["subject"] == str(small_disk.path)] == ["SYS001"]
    assert payload["alerts"][0]["kind"] == "firing"
    done = runner.invoke(app, [*args, "--fail-on", "critical"])
    assert done.exit_code == 0
    assert json.loads(done.stdout)["alerts"] == []  # same condition, second check: no alert
    nothing = runner.invoke(app, ["check", "--sources", "redis", "--state-dir", str(state_dir), "--quiet"])
    assert nothing.exit_code == 2  # nothing could be collected
    assert nothing.stdout == ""


def test_check_command_reports_an_unusable_state_dir(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from stackaudit.cli import app

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    done = CliRunner().invoke(app, ["check", "--sources", "host", "--state-dir", str(blocker / "state")])
    assert done.exit_code == 2
    assert "cannot use the state directory" in done.output
