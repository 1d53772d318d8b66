"""`audit`, `collect`, `rules`, `explain`: the core commands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.table import Table

from stackaudit.cli.app import app
from stackaudit.cli.common import (
    ComposeFileOpt,
    ConfigOpt,
    DomainOpt,
    FailOnOpt,
    Format,
    IgnoreOpt,
    MysqlOpt,
    OutOpt,
    Output,
    OutputOpt,
    PgBouncerOpt,
    PgOpt,
    ProjectDirOpt,
    PrometheusOpt,
    RedisOpt,
    SelectOpt,
    SourcesOpt,
    StateDirOpt,
    below_the_services,
    build_settings,
    console,
    fail,
    write_output,
)
from stackaudit.config import Settings
from stackaudit.facts import Facts, collect
from stackaudit.model import CollectionError
from stackaudit.pipeline import audit as run_audit
from stackaudit.pipeline import nothing_collected, snapshot
from stackaudit.report import Report
from stackaudit.report.terminal import plain_console, styled, terminal_width, wrap_text
from stackaudit.rules import load_all


def collect_with_progress(settings: Settings) -> Facts:
    """Collect while a status line on stderr says which sources are being read (several at once);
    each source gets one line when it is done."""
    reading: list[str] = []
    with console.status("collecting…") as status:
        def progress(source: str, state: str) -> None:
            if state == "start":
                reading.append(source)
            else:
                reading.remove(source)
                failed = f" {source}: could not be (fully) read (see the report)"
                console.print(styled("✗", "yellow", failed) if state == "failed"
                              else styled("✓", "green", f" {source}"))
            status.update(f"collecting {', '.join(reading)}…" if reading else "collecting…")
        facts = collect(settings, progress)
    for error in bad_input(facts.errors):
        console.print(styled("✗", "red", f" {error.where}: {error.why}"))
    return facts


def bad_input(errors: list[CollectionError]) -> list[CollectionError]:
    """Files Compose itself would refuse: the run fails with exit 2 (README, "Exit codes")."""
    return [e for e in errors if e.invalid]


def render_report(report: Report, output_format: Format, settings: Settings | None = None,
                  verify_file: Path | None = None) -> str:
    if output_format == Format.json:
        from stackaudit.report import json as json_report  # lazy: start-up
        return json_report.render(report)
    if output_format == Format.md:
        from stackaudit.report import markdown  # lazy: start-up
        return markdown.render(report)
    if output_format == Format.html:
        try:
            from stackaudit.monitor.history import disk_history  # lazy: start-up
            from stackaudit.report import html  # lazy: start-up
        except ImportError:
            fail("the HTML report is not available in this version")
        history = disk_history(settings.state_dir) if settings is not None else {}
        try:
            verify = html.load_verify(verify_file) if verify_file is not None else None
        except ValueError as exc:
            fail(str(exc))
        return html.render(report, history=history, verify=verify)
    from stackaudit.report import terminal  # lazy: start-up
    return terminal.render(report)


@app.command()
def audit(
    output_format: Annotated[
        Format, typer.Option("--format", help="terminal, json, md or html.")
    ] = Format.terminal,
    out: OutOpt = None,
    facts_file: Annotated[Path | None, typer.Option("--facts", help="Audit a saved facts snapshot.")] = None,
    verify_file: Annotated[
        Path | None, typer.Option("--verify", help="A `stackaudit verify` result for the HTML report.")
    ] = None,
    project_dir: ProjectDirOpt = None,
    compose_file: ComposeFileOpt = None,
    pg: PgOpt = None,
    redis: RedisOpt = None,
    mysql: MysqlOpt = None,
    pgbouncer: PgBouncerOpt = None,
    sources: SourcesOpt = None,
    select: SelectOpt = None,
    ignore: IgnoreOpt = None,
    fail_on: FailOnOpt = None,
    domain: DomainOpt = None,
    prometheus_url: PrometheusOpt = None,
    config: ConfigOpt = None,
    state_dir: StateDirOpt = None,
) -> None:
    """Audit this host and its compose stack; exit 1 when a finding is at or above --fail-on.

    Example: stackaudit audit --project-dir /srv/app --format md --out report.md
    """
    below_the_services("audit")
    settings = build_settings(config, project_dir, compose_file, pg, redis, sources, select, ignore,
                              fail_on, state_dir, tls_domains=tuple(domain) if domain else None,
                              prometheus_url=prometheus_url, pgbouncer_dsn=pgbouncer, mysql_url=mysql)
    facts = None
    if facts_file is not None:
        try:
            facts = Facts.load(facts_file)
        except ValueError as exc:
            fail(str(exc))
    else:
        facts = collect_with_progress(settings)
    report = run_audit(settings, facts)
    write_output(render_report(report, output_format, settings, verify_file), out)
    if bad_input(report.collection_errors):
        skipped = ", ".join(s.code for s in report.skipped) or "none"
        listed = "" if output_format == Format.terminal and out is None else f"; rules skipped: {skipped}"
        console.print(f"bad input: fix the file(s) marked ✗ (exit code 2){listed}", style="red")
        raise typer.Exit(2)
    if nothing_collected(report):
        console.print("nothing could be collected", style="red")
        raise typer.Exit(2)
    raise typer.Exit(report.exit_code(settings.fail_on))


@app.command("collect")
def collect_command(
    out: OutOpt = None,
    project_dir: ProjectDirOpt = None,
    compose_file: ComposeFileOpt = None,
    pg: PgOpt = None,
    redis: RedisOpt = None,
    mysql: MysqlOpt = None,
    pgbouncer: PgBouncerOpt = None,
    sources: SourcesOpt = None,
    domain: DomainOpt = None,
    prometheus_url: PrometheusOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Write a redacted facts snapshot; `stackaudit audit --facts FILE` audits it anywhere.

    Example: stackaudit collect --project-dir /srv/app --out facts.json
    """
    below_the_services("collect")
    settings = build_settings(config, project_dir, compose_file, pg, redis, sources,
                              tls_domains=tuple(domain) if domain else None, prometheus_url=prometheus_url,
                              pgbouncer_dsn=pgbouncer, mysql_url=mysql)
    facts = collect_with_progress(settings)
    write_output(json.dumps(snapshot(facts), indent=2, default=str), out)
    if not facts.data or bad_input(facts.errors):
        raise typer.Exit(2)


@app.command("rules")
def rules_command(
    output_format: OutputOpt = Output.terminal,
) -> None:
    """List every rule code with its name, severity and what it checks.

    Example: stackaudit rules --format json
    """
    registry = load_all()
    if output_format == Output.json:
        rows = [{"code": r.code, "name": r.name, "severity": r.severity.label(), "needs": list(r.needs),
                 "summary": r.summary} for r in registry.values()]
        write_output(json.dumps(rows, indent=2), None)
        return
    # Codes, names and severities are what users type and grep: never cut; the summary wraps.
    table = Table(box=box.SIMPLE_HEAD, expand=True, pad_edge=False)
    for heading in ("code", "name", "severity"):
        table.add_column(heading, no_wrap=True)
    table.add_column("checks", ratio=1)
    for r in registry.values():
        table.add_row(r.code, r.name, r.severity.label(), r.summary)
    plain_console(width=terminal_width()).print(table)  # once, after the rows; COLUMNS wide


@app.command()
def explain(code: Annotated[str, typer.Argument(help="A rule code, e.g. PG003.")]) -> None:
    """Print a rule's page: what it checks, why it matters, the fix and its safety.

    Example: stackaudit explain SYS001
    """
    registry = load_all()
    found = registry.get(code.strip().upper())
    if found is None:
        fail(f"no rule {code!r}; `stackaudit rules` lists them")
    header = f"# {found.code} {found.name} (default severity: {found.severity.label()})\n\n"
    write_output(wrap_text(header + found.doc, reflow=True), None)
