"""`stackaudit schedule install|remove`: the maintenance schedule of the reference report, idempotently.

Check every 30 minutes; a weekly audit; a monthly VACUUM/ANALYZE check and report; a quarterly index
review; a daily backup and a monthly restore drill (when this stackaudit has those commands). As
systemd timers (a .service and a .timer per job, marked as ours) or as one marked block in a
crontab. Installing twice changes nothing; installing again after a change rewrites only what
differs and removes our jobs that are no longer wanted; `remove` deletes only what carries our mark.
Planning is pure (`plan_systemd`, `plan_cron`); `apply_*` writes.
"""

from __future__ import annotations

import logging
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from stackaudit.fsutil import atomic_write

log = logging.getLogger(__name__)

DEFAULT_UNIT_DIR = Path("/etc/systemd/system")
UNIT_PREFIX = "stackaudit-"
MARK = "# Managed by stackaudit schedule; `stackaudit schedule remove` deletes it."
CRON_BEGIN = "# BEGIN stackaudit schedule (managed; `stackaudit schedule remove` takes it out)"
CRON_END = "# END stackaudit schedule"


@dataclass(frozen=True)
class Job:
    name: str
    description: str
    args: tuple[str, ...]  # stackaudit arguments; {reports} is the reports folder
    on_calendar: str  # systemd.time(7)
    cron: str  # crontab(5) time fields
    needs: str | None = None  # a command this stackaudit must have (backups land later)
    delay: str = "5min"  # RandomizedDelaySec: many hosts must not start at the same second


JOBS: tuple[Job, ...] = (
    Job(
        "check",
        "quick check of disk, memory, connections, backups and certificates, with alerts",
        ("check", "--quiet"),
        "*:0/30",
        "*/30 * * * *",
        delay="60s",
    ),
    Job(
        "audit-weekly",
        "weekly audit report",
        ("audit", "--format", "md", "--out", "{reports}/weekly-audit.md"),
        "Mon *-*-* 06:00:00",
        "0 6 * * 1",
    ),
    Job(
        "vacuum-monthly",
        "monthly VACUUM/ANALYZE check and report (PG2: dead tuples, stale statistics, XID age)",
        ("audit", "--select", "PG2", "--format", "md", "--out", "{reports}/monthly-vacuum.md"),
        "*-*-01 05:00:00",
        "0 5 1 * *",
    ),
    Job(
        "index-review-quarterly",
        "quarterly index review (PG3: unused, duplicate and missing indexes)",
        ("audit", "--select", "PG3", "--format", "md", "--out", "{reports}/quarterly-indexes.md"),
        "*-01,04,07,10-01 05:30:00",
        "30 5 1 1,4,7,10 *",
    ),
    Job(
        "backup-daily",
        "daily verified PostgreSQL backup",
        ("backup",),
        "*-*-* 02:30:00",
        "30 2 * * *",
        needs="backup",
    ),
    Job(
        "restore-drill-monthly",
        "monthly restore drill of the newest backup",
        ("restore-drill",),
        "*-*-15 04:00:00",
        "0 4 15 * *",
        needs="restore-drill",
    ),
)


@dataclass(frozen=True)
class ScheduleOptions:
    command: tuple[str, ...]  # how to run stackaudit, e.g. ("/usr/local/bin/stackaudit",)
    state_dir: Path
    config: Path | None = None
    reports_dir: Path | None = None  # default <state_dir>/reports
    available: frozenset[str] = frozenset()  # the commands this stackaudit has

    def jobs(self) -> list[Job]:
        return [j for j in JOBS if j.needs is None or j.needs in self.available]

    def argv(self, job: Job) -> list[str]:
        reports = str(self.reports_dir or self.state_dir / "reports")
        args = [a.replace("{reports}", reports) for a in job.args]
        config = ["--config", str(self.config)] if self.config is not None else []
        return [*self.command, *args[:1], *config, *args[1:]]


@dataclass(frozen=True)
class Change:
    path: Path
    action: str  # "create" | "update" | "unchanged" | "remove"
    content: str = ""


@dataclass
class Plan:
    changes: list[Change] = field(default_factory=list)
    commands: list[list[str]] = field(default_factory=list)  # systemctl calls, after the files

    @property
    def changed(self) -> bool:
        return any(c.action != "unchanged" for c in self.changes)


def default_command() -> tuple[str, ...]:
    found = shutil.which("stackaudit")
    return (found,) if found else (sys.executable, "-m", "stackaudit")


# --- systemd -------------------------------------------------------------------------------------


def service_unit(job: Job, options: ScheduleOptions) -> str:
    return "\n".join(
        [
            MARK,
            "[Unit]",
            f"Description=stackaudit: {job.description}",
            "Wants=network-online.target",
            "After=network-online.target docker.service",
            "",
            "[Service]",
            "Type=oneshot",
            f"Environment={shlex.quote('STACKAUDIT_STATE_DIR=' + str(options.state_dir))}",
            f"ExecStart={shlex.join(options.argv(job))}",
            "# exit 1 means findings at or above --fail-on: the report is the result, not a failure",
            "SuccessExitStatus=1",
            "Nice=19",  # as stackaudit.priority: the commands would raise it to 19 themselves
            "IOSchedulingClass=idle",
            "",
        ]
    )


def timer_unit(job: Job) -> str:
    return "\n".join(
        [
            MARK,
            "[Unit]",
            f"Description=stackaudit timer: {job.description}",
            "",
            "[Timer]",
            f"OnCalendar={job.on_calendar}",
            "Persistent=true",
            f"RandomizedDelaySec={job.delay}",
            "AccuracySec=1min",
            "",
            "[Install]",
            "WantedBy=timers.target",
            "",
        ]
    )


def managed_units(unit_dir: Path) -> list[Path]:
    """Our unit files: named stackaudit-* and carrying the mark (a hand-made one is never touched)."""
    found = []
    for path in sorted(unit_dir.glob(f"{UNIT_PREFIX}*")) if unit_dir.is_dir() else []:
        if path.suffix in (".service", ".timer") and _has_mark(path):
            found.append(path)
    return found


def _has_mark(path: Path) -> bool:
    try:
        return MARK in path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False


def plan_systemd(unit_dir: Path, options: ScheduleOptions | None, systemctl: bool = True) -> Plan:
    """Install (options given) or remove (options None) the timers."""
    wanted: dict[Path, str] = {}
    if options is not None:
        for job in options.jobs():
            wanted[unit_dir / f"{UNIT_PREFIX}{job.name}.service"] = service_unit(job, options)
            wanted[unit_dir / f"{UNIT_PREFIX}{job.name}.timer"] = timer_unit(job)
    plan = Plan()
    for path, content in wanted.items():
        current = path.read_text(encoding="utf-8") if path.exists() else None
        action = "create" if current is None else "unchanged" if current == content else "update"
        plan.changes.append(Change(path, action, content))
    stale = [p for p in managed_units(unit_dir) if p not in wanted]
    plan.changes += [Change(p, "remove") for p in stale]
    if systemctl:
        stale_timers = [p.name for p in stale if p.suffix == ".timer"]
        if stale_timers:
            plan.commands.append(["systemctl", "disable", "--now", *stale_timers])
        if plan.changed:
            plan.commands.append(["systemctl", "daemon-reload"])
        timers = [p.name for p in wanted if p.suffix == ".timer"]
        if timers:
            plan.commands.append(["systemctl", "enable", "--now", *timers])
    return plan


def systemd_running() -> bool:
    """sd_booted(3): systemd is PID 1 when /run/systemd/system exists."""
    return Path("/run/systemd/system").is_dir() and shutil.which("systemctl") is not None


# --- cron ----------------------------------------------------------------------------------------


def cron_block(options: ScheduleOptions) -> str:
    env = f"STACKAUDIT_STATE_DIR={shlex.quote(str(options.state_dir))}"
    lines = [CRON_BEGIN]
    for job in options.jobs():
        lines.append(f"# {job.description}")
        lines.append(f"{job.cron} {env} {shlex.join(options.argv(job))}")
    lines.append(CRON_END)
    return "\n".join(lines) + "\n"


def without_block(text: str) -> str:
    """The crontab without our block (every copy of it, should one have been pasted twice)."""
    kept: list[str] = []
    inside = False
    for line in text.splitlines(keepends=True):
        stripped = line.strip()
        if stripped == CRON_BEGIN:
            inside = True
        elif inside and stripped == CRON_END:
            inside = False
        elif not inside:
            kept.append(line)
    return "".join(kept)


def with_block(text: str, block: str) -> str:
    """Our block replaces the previous one in place, or is appended; other lines stay as they are."""
    lines = text.splitlines(keepends=True)
    begin = next((i for i, line in enumerate(lines) if line.strip() == CRON_BEGIN), None)
    rest = without_block(text)
    if begin is None:
        return rest + ("" if not rest or rest.endswith("\n") else "\n") + block
    before = without_block("".join(lines[:begin]))
    after = rest[len(before) :]
    return before + block + after


def plan_cron(current: str, options: ScheduleOptions | None, target: Path) -> Plan:
    new = with_block(current, cron_block(options)) if options else without_block(current)
    action = "unchanged" if new == current else ("remove" if options is None else "update")
    return Plan([Change(target, action, new)])


def read_crontab(path: Path | None) -> str:
    """The crontab text: a file (when given) or the user's crontab via `crontab -l`."""
    if path is not None:
        return path.read_text(encoding="utf-8") if path.exists() else ""
    if shutil.which("crontab") is None:
        raise OSError("no `crontab` command here; use --systemd or --crontab-file")
    done = subprocess.run(["crontab", "-l"], capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        if "no crontab" in done.stderr.lower():
            return ""
        raise OSError(f"crontab -l failed: {done.stderr.strip()}")
    return done.stdout


def write_crontab(path: Path | None, text: str) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, text.encode("utf-8"))
        return
    done = subprocess.run(
        ["crontab", "-"], input=text, capture_output=True, text=True, timeout=30, check=False
    )
    if done.returncode != 0:
        raise OSError(f"crontab - failed: {done.stderr.strip()}")


# --- applying ------------------------------------------------------------------------------------


def apply_files(changes: Iterable[Change]) -> None:
    for change in changes:
        if change.action in ("create", "update"):
            change.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(change.path, change.content.encode("utf-8"), mode=0o644)
        elif change.action == "remove":
            change.path.unlink(missing_ok=True)


def run_commands(commands: Sequence[list[str]]) -> list[str]:
    """Run systemctl; returns the problems (a failed command is reported, not raised)."""
    problems = []
    for command in commands:
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        except OSError as exc:
            problems.append(f"{shlex.join(command)}: {exc.strerror}")
            continue
        if done.returncode != 0:
            problems.append(f"{shlex.join(command)}: {done.stderr.strip() or done.returncode}")
    return problems


def apply_systemd(plan: Plan) -> list[str]:
    disable = [c for c in plan.commands if c[:2] == ["systemctl", "disable"]]
    problems = run_commands(disable)  # stop the timers before their files go
    apply_files(plan.changes)
    return problems + run_commands([c for c in plan.commands if c not in disable])
