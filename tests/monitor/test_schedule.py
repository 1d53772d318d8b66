"""`schedule install|remove`: systemd units in a folder and a crontab block, idempotently."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from typer.testing import CliRunner

from stackaudit.cli import app
from stackaudit.monitor.schedule import (
    CRON_BEGIN,
    CRON_END,
    JOBS,
    MARK,
    ScheduleOptions,
    with_block,
    without_block,
)

runner = CliRunner()


def install(unit_dir: Path, state_dir: Path, *extra: str) -> dict:  # type: ignore[type-arg]
    done = runner.invoke(
        app,
        [
            "schedule",
            "install",
            "--systemd",
            "--unit-dir",
            str(unit_dir),
            "--no-enable",
            "--state-dir",
            str(state_dir),
            "--format",
            "json",
            *extra,
        ],
    )
    assert done.exit_code == 0, done.output
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def test_systemd_install_is_idempotent_and_remove_keeps_foreign_units(
    tmp_path: Path, state_dir: Path
) -> None:
    units = tmp_path / "units"
    units.mkdir()
    foreign = units / "stackaudit-mine.service"  # hand-made, without our mark: never touched
    foreign.write_text("[Service]\nExecStart=/bin/true\n")
    first = install(units, state_dir)
    created = {Path(c["path"]).name for c in first["changes"] if c["action"] == "create"}
    assert {
        "stackaudit-check.timer",
        "stackaudit-check.service",
        "stackaudit-audit-weekly.timer",
        "stackaudit-vacuum-monthly.timer",
        "stackaudit-index-review-quarterly.timer",
        "stackaudit-backup-daily.timer",
        "stackaudit-restore-drill-monthly.timer",
    } <= created
    service = (units / "stackaudit-check.service").read_text()
    assert "check --quiet" in service and f"STACKAUDIT_STATE_DIR={state_dir}" in service
    assert "OnCalendar=*:0/30" in (units / "stackaudit-check.timer").read_text()
    again = install(units, state_dir)
    assert {c["action"] for c in again["changes"]} == {"unchanged"}
    removed = runner.invoke(app, ["schedule", "remove", "--unit-dir", str(units), "--no-enable"])
    assert removed.exit_code == 0, removed.output
    assert sorted(p.name for p in units.iterdir()) == ["stackaudit-mine.service"]


def test_systemd_dry_run_writes_nothing_and_lists_systemctl(tmp_path: Path, state_dir: Path) -> None:
    units = tmp_path / "units"
    plan = install(units, state_dir, "--dry-run", "--enable")
    assert not units.exists()
    assert ["systemctl", "daemon-reload"] in plan["commands"]
    enable = next(c for c in plan["commands"] if c[:3] == ["systemctl", "enable", "--now"])
    assert "stackaudit-check.timer" in enable


def test_systemd_calendar_expressions_are_valid() -> None:
    done = subprocess.run(
        ["systemd-analyze", "calendar", *(j.on_calendar for j in JOBS)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


def test_reinstall_after_a_change_updates_only_what_differs(tmp_path: Path, state_dir: Path) -> None:
    units = tmp_path / "units"
    install(units, state_dir)
    other_state = tmp_path / "other-state"
    changes = install(units, other_state)["changes"]
    actions = {Path(c["path"]).name: c["action"] for c in changes}
    assert actions["stackaudit-check.service"] == "update"
    assert actions["stackaudit-check.timer"] == "unchanged"


def test_cron_block_is_added_once_and_removed_cleanly(tmp_path: Path, state_dir: Path) -> None:
    crontab = tmp_path / "crontab"
    original = "MAILTO=ops@example.org\n0 1 * * * /usr/local/bin/rotate-logs\n"
    crontab.write_text(original)
    args = ["schedule", "install", "--cron", "--crontab-file", str(crontab), "--state-dir", str(state_dir)]
    assert runner.invoke(app, args).exit_code == 0
    text = crontab.read_text()
    assert text.startswith(original)
    assert text.count(CRON_BEGIN) == 1 and text.count(CRON_END) == 1
    assert "*/30 * * * * STACKAUDIT_STATE_DIR=" in text and "check --quiet" in text
    assert "30 5 1 1,4,7,10 *" in text  # quarterly index review
    assert runner.invoke(app, args).exit_code == 0
    assert crontab.read_text() == text  # idempotent
    done = runner.invoke(app, ["schedule", "remove", "--cron", "--crontab-file", str(crontab)])
    assert done.exit_code == 0
    assert crontab.read_text() == original


def test_cron_dry_run_prints_the_block(tmp_path: Path, state_dir: Path) -> None:
    crontab = tmp_path / "crontab"
    done = runner.invoke(
        app,
        [
            "schedule",
            "install",
            "--cron",
            "--crontab-file",
            str(crontab),
            "--dry-run",
            "--state-dir",
            str(state_dir),
        ],
    )
    assert done.exit_code == 0
    assert CRON_BEGIN in done.stdout
    assert not crontab.exists()


def test_block_replaced_in_place_keeps_lines_after_it() -> None:
    options = ScheduleOptions(("stackaudit",), Path("/var/lib/stackaudit"))
    old = f"A\n{CRON_BEGIN}\nold line\n{CRON_END}\nB\n"
    from stackaudit.monitor.schedule import cron_block

    new = with_block(old, cron_block(options))
    assert new.startswith("A\n" + CRON_BEGIN) and new.endswith(CRON_END + "\nB\n")
    assert "old line" not in new
    assert without_block(new) == "A\nB\n"


def test_jobs_needing_missing_commands_are_left_out() -> None:
    options = ScheduleOptions(("stackaudit",), Path("/s"), available=frozenset({"check", "audit"}))
    assert [j.name for j in options.jobs()] == [
        "check",
        "audit-weekly",
        "vacuum-monthly",
        "index-review-quarterly",
    ]
    assert MARK.startswith("#")
