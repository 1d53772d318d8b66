"""`check`, `watch`, `metrics`, `monitoring rules|dashboard`, `schedule install|remove`."""

from __future__ import annotations

import json
import logging
import sqlite3
import sys
import threading
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from stackaudit.cli.app import COMMANDS, app
from stackaudit.cli.common import (
    ConfigOpt,
    FailOnOpt,
    IgnoreOpt,
    OutOpt,
    Output,
    OutputOpt,
    PgOpt,
    ProjectDirOpt,
    RedisOpt,
    SelectOpt,
    SourcesOpt,
    StateDirOpt,
    below_the_services,
    build_settings,
    console,
    dumps_json,
    fail,
    write_output,
)
from stackaudit.config import Settings
from stackaudit.model import to_jsonable
from stackaudit.monitor import METRICS_PORT, MonitorOptions, parse_duration
from stackaudit.redact import remember
from stackaudit.report.terminal import plain_console, styled, terminal_width

DiskPathOpt = Annotated[
    list[Path] | None, typer.Option("--disk-path", help="Another path whose mount to watch (repeatable).")
]
AlertUrlOpt = Annotated[
    list[str] | None, typer.Option("--alert-url", help="An apprise URL to notify, besides [alerts] urls.")
]
TextfileOpt = Annotated[
    Path | None,
    typer.Option("--textfile", help="Also write the metrics here for node_exporter's textfile collector."),
]
RepeatOpt = Annotated[str, typer.Option("--repeat", help="Re-notify a still-critical condition this often.")]
RecoverOpt = Annotated[int, typer.Option("--recover-checks", help="Consecutive ok checks before 'resolved'.")]
RetentionOpt = Annotated[float, typer.Option("--retention-days", help="History kept, in days.")]
FormatOpt = OutputOpt


def _settings(
    config: Path | None,
    project_dir: list[Path] | None,
    pg: str | None,
    redis: str | None,
    sources: str | None,
    select: str | None,
    ignore: str | None,
    fail_on: str | None,
    state_dir: Path | None,
    disk_path: list[Path] | None,
    alert_url: list[str] | None,
) -> Settings:
    settings = build_settings(
        config, project_dir, None, pg, redis, sources, select, ignore, fail_on, state_dir
    )
    changes: dict[str, Any] = {}
    if disk_path:
        changes["disk_paths"] = settings.disk_paths + tuple(p.resolve() for p in disk_path)
    if alert_url:
        changes["alert_urls"] = settings.alert_urls + tuple(alert_url)
    settings = settings.with_overrides(**changes)
    for url in settings.alert_urls:
        remember(url)  # apprise URLs hold tokens: never in a log line or an output
    return settings


def _options(repeat: str, recover_checks: int, retention_days: float) -> MonitorOptions:
    try:
        seconds = parse_duration(repeat)
    except ValueError as exc:
        fail(str(exc))
    if recover_checks < 1 or retention_days <= 0:
        fail("--recover-checks must be at least 1 and --retention-days positive")
    return MonitorOptions(
        repeat_seconds=seconds, recover_checks=recover_checks, retention_days=retention_days
    )


def _logging(level: int) -> None:
    from stackaudit.monitor.loop import setup_logging  # lazy: start-up

    setup_logging(level)


def _result_json(result: Any) -> dict[str, Any]:
    report = result.report.to_json()
    report["measurements"] = to_jsonable(result.measurements)
    report["forecasts"] = to_jsonable(result.forecasts)
    report["alerts"] = [
        {
            "code": a.code,
            "subject": a.subject,
            "kind": a.kind,
            "level": a.level,
            "previous": a.previous,
            "title": a.title,
        }
        for a in result.alerts
    ]
    report["evaluated"] = list(result.evaluated)
    return report


def _render_terminal(result: Any) -> None:
    table = Table("severity", "code", "subject", "finding", expand=True)
    for finding in result.report.findings:
        table.add_row(finding.severity.label(), finding.code, finding.subject, finding.message)

    out = plain_console(width=terminal_width())
    if result.report.findings:
        out.print(table)
    else:
        out.print(f"ok: no finding from {', '.join(result.evaluated) or 'no rule'}")
    for point, forecast in result.forecasts.items():
        out.print(
            f"forecast: {point} full in {forecast.days_to_full:.1f} days "
            f"({forecast.rate_bytes_per_day / 1024**2:.1f} MiB/day)",
            highlight=False,
        )
    for alert in result.alerts:
        out.print(f"alert: {alert.title}", highlight=False)
    if result.report.skipped:
        codes = ", ".join(s.code for s in result.report.skipped)
        console.print(f"not checked (source not configured or failed): {codes}", style="dim")
    for error in result.report.collection_errors:
        console.print(styled(error.source, "yellow", f" {error.where}: {error.why}"))


@app.command()
def check(
    output_format: FormatOpt = Output.terminal,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Print nothing; the exit code and alerts say it.")
    ] = False,
    textfile: TextfileOpt = None,
    disk_path: DiskPathOpt = None,
    alert_url: AlertUrlOpt = None,
    repeat: RepeatOpt = "6h",
    recover_checks: RecoverOpt = 3,
    retention_days: RetentionOpt = 90.0,
    project_dir: ProjectDirOpt = None,
    pg: PgOpt = None,
    redis: RedisOpt = None,
    sources: SourcesOpt = None,
    select: SelectOpt = None,
    ignore: IgnoreOpt = None,
    fail_on: FailOnOpt = None,
    config: ConfigOpt = None,
    state_dir: StateDirOpt = None,
) -> None:
    """One quick pass of the cheap rules (disk, inodes, memory, connections, Redis memory, backup age,
    certificates); records history and sends change-based alerts. Exit 0/1/2 as `audit`.

    Example (cron): */30 * * * * stackaudit check --quiet
    """
    below_the_services("check")
    from stackaudit.monitor.check import run_pass  # lazy: start-up
    from stackaudit.monitor.metrics import write_textfile  # lazy: start-up

    settings = _settings(
        config, project_dir, pg, redis, sources, select, ignore, fail_on, state_dir, disk_path, alert_url
    )
    _logging(logging.WARNING)
    try:
        result = run_pass(settings, _options(repeat, recover_checks, retention_days))
        if textfile is not None:
            write_textfile(textfile, result)
    except (OSError, sqlite3.Error) as exc:
        fail(f"cannot use the state directory {settings.state_dir}: {getattr(exc, 'strerror', None) or exc}")
    if not quiet:
        if output_format == Output.json:
            write_output(dumps_json(_result_json(result)), None)
        else:
            _render_terminal(result)
    raise typer.Exit(result.exit_code(settings.fail_on))


def _stop_event() -> threading.Event:
    from stackaudit.monitor.loop import stop_event  # lazy: start-up

    return stop_event()


@app.command()
def watch(
    interval: Annotated[str, typer.Option("--interval", help="Time between checks: 30s, 30m, 1h.")] = "30m",
    textfile: TextfileOpt = None,
    disk_path: DiskPathOpt = None,
    alert_url: AlertUrlOpt = None,
    repeat: RepeatOpt = "6h",
    recover_checks: RecoverOpt = 3,
    retention_days: RetentionOpt = 90.0,
    project_dir: ProjectDirOpt = None,
    pg: PgOpt = None,
    redis: RedisOpt = None,
    sources: SourcesOpt = None,
    select: SelectOpt = None,
    ignore: IgnoreOpt = None,
    config: ConfigOpt = None,
    state_dir: StateDirOpt = None,
) -> None:
    """Run `check` in a loop in the foreground until SIGTERM or Ctrl-C (for systemd or a container).

    The loop stays small: each check runs in a short-lived child process (see monitor/loop.py).

    Example: stackaudit watch --interval 30m --config /etc/stackaudit/stackaudit.toml
    """
    from stackaudit.monitor.loop import become_loop  # lazy: start-up

    try:
        seconds = parse_duration(interval)
    except ValueError as exc:
        fail(str(exc))
    settings = _settings(
        config, project_dir, pg, redis, sources, select, ignore, None, state_dir, disk_path, alert_url
    )
    options = _options(repeat, recover_checks, retention_days)
    try:
        become_loop(settings, options, seconds, interval, textfile)
    except (OSError, ValueError) as exc:
        fail(f"cannot start the watch loop: {exc}")


def _listen_address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        fail(f"--listen {text!r}: expected HOST:PORT, e.g. 127.0.0.1:{METRICS_PORT}")
    return host.strip("[]"), int(port)


@app.command()
def metrics(
    listen: Annotated[str | None, typer.Option(
        "--listen", help=f"Serve /metrics on HOST:PORT (stackaudit's port is {METRICS_PORT}).")] = None,
    textfile: Annotated[
        Path | None, typer.Option("--textfile", help="Write stackaudit.prom into DIR and exit.")
    ] = None,
    cache: Annotated[
        str, typer.Option("--cache", help="Reuse a check for this long between scrapes.")
    ] = "30s",
    disk_path: DiskPathOpt = None,
    project_dir: ProjectDirOpt = None,
    pg: PgOpt = None,
    redis: RedisOpt = None,
    sources: SourcesOpt = None,
    config: ConfigOpt = None,
    state_dir: StateDirOpt = None,
) -> None:
    """Prometheus metrics: disk used ratio and bytes per mount, forecast seconds to full, PostgreSQL
    connections, Redis memory, backup age, findings by severity. Reads the history, never alerts.

    Example: stackaudit metrics --listen 127.0.0.1:9814
    Example: stackaudit metrics --textfile /var/lib/prometheus/node-exporter
    """
    from stackaudit.monitor.loop import exposition_in_child, read_only_check  # lazy: start-up
    from stackaudit.monitor.metrics import CheckCollector, serve, write_textfile  # lazy: start-up

    if (listen is None) == (textfile is None):
        fail("give exactly one of --listen HOST:PORT or --textfile DIR")
    settings = _settings(
        config, project_dir, pg, redis, sources, None, None, None, state_dir, disk_path, None
    )

    def produce() -> bytes:  # a child per check renders the exposition: scrapes only copy bytes
        return exposition_in_child(settings)

    if textfile is not None:
        try:
            path = write_textfile(textfile, read_only_check(settings))
        except OSError as exc:
            fail(f"cannot write the textfile in {textfile}: {exc.strerror or exc}")
        console.print(f"wrote {path}", highlight=False)
        return
    host, port = _listen_address(listen or "")
    _logging(logging.INFO)
    stop = _stop_event()
    try:
        collector = CheckCollector(produce, parse_duration(cache))
        logging.getLogger("stackaudit.metrics").info("serving http://%s:%d/metrics", host, port)
        serve(collector, host, port, stop)
    except (OSError, ValueError) as exc:
        fail(f"cannot serve metrics on {host}:{port}: {exc}")


monitoring_app = typer.Typer(
    help="Prometheus alerting rules and a Grafana dashboard.\n\n"
         "Example: stackaudit monitoring rules --out /etc/prometheus/rules/stackaudit.yml",
    no_args_is_help=True,
)
app.add_typer(monitoring_app, name="monitoring")


@monitoring_app.command("rules")
def monitoring_rules(
    out: OutOpt = None,
    node: Annotated[bool, typer.Option(help="Also the same thresholds on node_exporter's metrics.")] = True,
    config: ConfigOpt = None,
) -> None:
    """Prometheus alerting rules for the check's thresholds (valid for `promtool check rules`).

    Example: stackaudit monitoring rules --out /etc/prometheus/rules/stackaudit.yml
    """
    from stackaudit.monitor.prom_rules import rules_yaml  # lazy: start-up

    write_output(rules_yaml(build_settings(config), include_node=node), out)


@monitoring_app.command("dashboard")
def monitoring_dashboard(out: OutOpt = None, config: ConfigOpt = None) -> None:
    """A Grafana dashboard (JSON) for the stackaudit metrics.

    Example: stackaudit monitoring dashboard --out stackaudit-dashboard.json
    """
    from stackaudit.monitor.prom_rules import dashboard_json  # lazy: start-up

    write_output(dashboard_json(build_settings(config)), out)


schedule_app = typer.Typer(
    help="Install or remove the maintenance schedule (systemd timers or cron).\n\n"
         "Example: stackaudit schedule install --dry-run",
    no_args_is_help=True,
)
app.add_typer(schedule_app, name="schedule")

UnitDirOpt = Annotated[Path, typer.Option("--unit-dir", help="Where systemd unit files go.")]
CrontabFileOpt = Annotated[
    Path | None, typer.Option("--crontab-file", help="Edit this crontab file instead of `crontab -l/-`.")
]


def _available_commands() -> frozenset[str]:
    """The lazy table names every command, loaded or not; registered ones cover any it misses."""
    names = set(COMMANDS) | {
        c.name or (c.callback.__name__.replace("_", "-") if c.callback else "")
        for c in app.registered_commands
    }
    names |= {g.name or "" for g in app.registered_groups}
    return frozenset(names)


def _schedule(
    install: bool,
    cron: bool,
    dry_run: bool,
    unit_dir: Path,
    crontab_file: Path | None,
    enable: bool | None,
    config: Path | None,
    state_dir: Path | None,
    output_format: Output,
) -> None:
    from stackaudit.monitor import schedule as sched  # lazy: start-up

    settings = build_settings(config, state_dir=state_dir)
    options = sched.ScheduleOptions(
        sched.default_command(),
        settings.state_dir.resolve(),
        config.resolve() if config else None,
        available=_available_commands(),
    )
    try:
        if cron:
            current = sched.read_crontab(crontab_file)
            plan = sched.plan_cron(current, options if install else None, crontab_file or Path("crontab"))
        else:
            run_systemctl = sched.systemd_running() if enable is None else enable
            plan = sched.plan_systemd(unit_dir, options if install else None, run_systemctl)
        problems: list[str] = []
        if not dry_run:
            if cron:
                if plan.changed:
                    sched.write_crontab(crontab_file, plan.changes[0].content)
            else:
                problems = sched.apply_systemd(plan)
    except OSError as exc:
        fail(str(exc))
    _show_plan(plan, dry_run, problems, output_format, cron)
    if problems:
        raise typer.Exit(1)


def _show_plan(plan: Any, dry_run: bool, problems: list[str], output_format: Output, cron: bool) -> None:
    if output_format == Output.json:
        write_output(
            json.dumps(
                {
                    "dry_run": dry_run,
                    "changes": [
                        {"path": str(c.path), "action": c.action, "content": c.content} for c in plan.changes
                    ],
                    "commands": plan.commands,
                    "problems": problems,
                },
                indent=2,
            ),
            None,
        )
        return
    for change in plan.changes:
        console.print(f"{'would ' if dry_run else ''}{change.action}: {change.path}", highlight=False)
        if dry_run and change.action in ("create", "update"):
            sys.stdout.write(change.content if cron else f"--- {change.path}\n{change.content}")
    for command in plan.commands:
        console.print(f"{'would run' if dry_run else 'ran'}: {' '.join(command)}", highlight=False)
    if not plan.commands and not cron and not dry_run and plan.changed:
        console.print(
            "systemd is not running here: run `systemctl daemon-reload` and enable the "
            "stackaudit-*.timer units where it is.",
            highlight=False,
        )
    if not plan.changes and not plan.commands and not problems:
        console.print("nothing to change: the schedule is already as asked", highlight=False)
    for problem in problems:
        console.print(styled("failed:", "red", f" {problem}"))


CronOpt = Annotated[
    bool, typer.Option("--cron/--systemd", help="A crontab block, or systemd timers (default).")
]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Show what would change; change nothing.")]
EnableOpt = Annotated[
    bool | None, typer.Option("--enable/--no-enable", help="Run systemctl (default: when systemd runs).")
]


@schedule_app.command("install")
def schedule_install(
    cron: CronOpt = False,
    dry_run: DryRunOpt = False,
    unit_dir: UnitDirOpt = Path("/etc/systemd/system"),
    crontab_file: CrontabFileOpt = None,
    enable: EnableOpt = None,
    output_format: FormatOpt = Output.terminal,
    config: ConfigOpt = None,
    state_dir: StateDirOpt = None,
) -> None:
    """Install the maintenance schedule: check every 30 min, weekly audit, monthly vacuum report,
    quarterly index review, daily backup and monthly restore drill. Idempotent.

    Example: stackaudit schedule install --systemd --dry-run
    """
    _schedule(True, cron, dry_run, unit_dir, crontab_file, enable, config, state_dir, output_format)


@schedule_app.command("remove")
def schedule_remove(
    cron: CronOpt = False,
    dry_run: DryRunOpt = False,
    unit_dir: UnitDirOpt = Path("/etc/systemd/system"),
    crontab_file: CrontabFileOpt = None,
    enable: EnableOpt = None,
    output_format: FormatOpt = Output.terminal,
) -> None:
    """Remove the schedule `schedule install` made (only files and lines carrying its mark).

    Example: stackaudit schedule remove --cron
    """
    _schedule(False, cron, dry_run, unit_dir, crontab_file, enable, None, None, output_format)
