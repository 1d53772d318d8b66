"""`stackaudit plan`, `apply`, `rollback`, `verify`: change production safely and measure it.

Parse, call, render; the logic lives in stackaudit.remediation and stackaudit.verify.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from stackaudit.cli.app import app
from stackaudit.cli.common import (
    ComposeFileOpt,
    ConfigOpt,
    MysqlOpt,
    OutOpt,
    Output,
    OutputOpt,
    PgOpt,
    ProjectDirOpt,
    SourcesOpt,
    StateDirOpt,
    build_settings,
    console,
    dumps_json,
    fail,
    write_output,
)
from stackaudit.config import Settings
from stackaudit.report.terminal import wrap_text

PLAN_SOURCES = "host,docker,compose,env,app,postgres,pgbouncer,redis"


FormatOpt = OutputOpt
DockerHostOpt = Annotated[str | None, typer.Option("--docker-host", help="Docker engine (else DOCKER_HOST).")]


def _dsn(settings: Settings) -> str | None:
    """--pg / STACKAUDIT_PG_DSN, else libpq's own environment ("" lets libpq read PGHOST...)."""
    if settings.pg_dsn:
        return settings.pg_dsn
    if any(os.environ.get(n) for n in ("PGHOST", "PGSERVICE", "PGDATABASE")):
        return ""
    return None


@app.command("plan")
def plan_command(
    output_format: FormatOpt = Output.terminal,
    pg: PgOpt = None,
    project_dir: ProjectDirOpt = None,
    compose_file: ComposeFileOpt = None,
    sources: SourcesOpt = None,
    facts_file: Annotated[
        Path | None, typer.Option("--facts", help="Plan from a saved facts snapshot.")
    ] = None,
    config: ConfigOpt = None,
    out: OutOpt = None,
) -> None:
    """The dry run: what `apply` would change (each step's risk, restart and undo), and what already
    complies. Pure: nothing is changed. Save it with --out and run it with `stackaudit apply`.

    Example: stackaudit plan --pg postgresql://postgres@127.0.0.1/app --out plan.json
    """
    from stackaudit.derive import DerivationError  # lazy: start-up
    from stackaudit.facts import Facts, collect  # lazy: start-up
    from stackaudit.pipeline import audit  # lazy: start-up
    from stackaudit.remediation.plan import describe, plan_for  # lazy: start-up

    settings = build_settings(config, project_dir, compose_file, pg, sources=sources or PLAN_SOURCES)
    if facts_file is not None:
        try:
            facts = Facts.load(facts_file)
        except (OSError, ValueError) as exc:
            fail(f"cannot read {facts_file}: {exc}")
    else:
        with console.status("collecting…"):
            facts = collect(settings)
    report = audit(settings, facts)
    try:
        plan = plan_for(report.findings, report.derivations, report.facts)
    except DerivationError as exc:
        fail(f"cannot plan: {exc}")
    if out is not None:
        write_output(dumps_json(plan.to_json()), out)
        if output_format == Output.terminal:
            console.print(describe(plan), highlight=False)
        return
    text = dumps_json(plan.to_json()) if output_format == Output.json else wrap_text(describe(plan))
    write_output(text, None)


@app.command("apply")
def apply_command(
    plan_file: Annotated[Path, typer.Argument(help="A plan written by `stackaudit plan --out`.")],
    yes: Annotated[bool, typer.Option("--yes", help="Run CONFIRM steps too.")] = False,
    allow_restart: Annotated[
        bool, typer.Option("--allow-restart", help="Run steps that restart PostgreSQL or recreate a service.")
    ] = False,
    no_backup: Annotated[
        bool, typer.Option("--no-backup", help="Do not look for or take a backup first (not recommended).")
    ] = False,
    output_format: FormatOpt = Output.terminal,
    pg: PgOpt = None,
    docker_host: DockerHostOpt = None,
    state_dir: StateDirOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Run a plan: re-check, back up, snapshot into the journal, change, validate (`postgres -C`, the
    memory budget), reload or restart, check health; on any failure roll back automatically.
    SAFE steps run alone; CONFIRM steps need --yes; restarts need --allow-restart; MANUAL never.
    An interrupted earlier run is finished first. Connects to the server the plan was made for
    (the password from PGPASSWORD or ~/.pgpass); --pg overrides it.

    Example: stackaudit apply plan.json --yes --allow-restart
    """
    from stackaudit.remediation.apply import ApplyOptions, apply_plan  # lazy: start-up
    from stackaudit.remediation.journal import ApplyError  # lazy: start-up
    from stackaudit.remediation.plan import Plan  # lazy: start-up

    settings = build_settings(config, pg=pg, state_dir=state_dir, docker_host=docker_host)
    try:
        plan = Plan.from_json(json.loads(plan_file.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        fail(f"cannot read the plan {plan_file}: {exc}")
    options = ApplyOptions(
        yes=yes,
        allow_restart=allow_restart,
        dsn=_dsn(settings),
        docker_host=settings.docker_host,
        take_backup=not no_backup,
    )
    try:
        result = apply_plan(plan, settings, options)
    except ApplyError as exc:
        fail(str(exc))
    data = result.to_json()
    write_output(dumps_json(data) if output_format == Output.json else wrap_text(_apply_text(data)), None)
    if result.status not in ("done", "nothing"):
        raise typer.Exit(1)


def _checks_text(checks: list[dict[str, Any]]) -> list[str]:
    return [f"  [{'ok' if c['ok'] else 'FAILED'}] {c['name']}: {c['detail']}" for c in checks]


def _recovered_text(recovered: list[dict[str, Any]]) -> list[str]:
    return [f"interrupted run {r['journal']}: {r['action']}" for r in recovered]


def _apply_text(data: dict[str, Any]) -> str:
    lines = _recovered_text(data["recovered"])
    lines.append(f"{data['status'].upper()}: {data['message']}")
    if data.get("journal"):
        lines.append(f"journal: {data['journal']} (undo with `stackaudit rollback {data['journal']} --yes`)")
    if data.get("backup"):
        backup = data["backup"]
        how = "taken now" if backup["taken"] else "found"
        lines.append(f"backup of {backup['database']}: {backup['file']} ({how})")
    lines += [f"applied: {step}" for step in data["applied"]]
    lines += [f"skipped: {s['subject']}: {s['why']}" for s in data["skipped"]]
    if data["checks"]:
        lines += ["checks:", *_checks_text(data["checks"])]
    return "\n".join(lines)


@app.command("rollback")
def rollback_command(
    journal: Annotated[
        str | None, typer.Argument(help="Journal id or path (default: the last apply).")
    ] = None,
    yes: Annotated[
        bool, typer.Option("--yes", help="Restore (without it: show what would be restored).")
    ] = False,
    set_aside: Annotated[
        str | None,
        typer.Option(
            "--set-aside",
            metavar="JOURNAL_ID",
            help="Stop trying to finish or undo this journal (its server is gone): recorded in it, "
            "never deleted.",
        ),
    ] = None,
    reason: Annotated[str | None, typer.Option("--reason", help="Why, kept in the journal.")] = None,
    output_format: FormatOpt = Output.terminal,
    pg: PgOpt = None,
    mysql: MysqlOpt = None,
    docker_host: DockerHostOpt = None,
    state_dir: StateDirOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Restore the state before an apply exactly: files byte-identical, settings as they were, a
    restart if the change needed one. Also finishes a run that was interrupted. Connects to the
    server the apply's plan was made for; --pg overrides it.

    Example: stackaudit rollback --yes

    Example: stackaudit rollback --set-aside 20260101T120000123Z-apply-a1b2c3 --reason "server rebuilt"
    """
    from stackaudit.remediation.journal import ApplyError  # lazy: start-up
    from stackaudit.remediation.rollback import rollback  # lazy: start-up
    from stackaudit.remediation.rollback import set_aside as set_journal_aside  # lazy: start-up

    if set_aside is not None and journal is not None:
        fail("give either a journal to roll back or --set-aside JOURNAL_ID, not both")
    settings = build_settings(config, pg=pg, state_dir=state_dir, docker_host=docker_host)
    if mysql is not None:
        _rollback_mysql(settings, mysql, journal, yes)
        return
    try:
        if set_aside is not None:
            result = set_journal_aside(settings, set_aside, reason)
        else:
            result = rollback(settings, journal, yes, _dsn(settings), settings.docker_host)
    except ApplyError as exc:
        fail(str(exc))
    data = result.to_json()
    if output_format == Output.json:
        write_output(dumps_json(data), None)
    else:
        lines = [*_recovered_text(data["recovered"]), f"{data['status'].upper()}: {data['message']}"]
        if data["would_restore"]:
            lines.append(f"restore: {json.dumps(data['would_restore'])}")
        lines += _checks_text(data["checks"])
        write_output(wrap_text("\n".join(lines)), None)
    if result.status == "failed":
        raise typer.Exit(1)


def _rollback_mysql(settings: Settings, url: str, journal: str | None, yes: bool) -> None:
    """`--mysql`: undo a `tune mysql --apply` (remediation/mysql_apply.py)."""
    from stackaudit.mysqlconn import MysqlUrlError, parse_url  # lazy: start-up
    from stackaudit.remediation.journal import ApplyError  # lazy: start-up
    from stackaudit.remediation.mysql_apply import rollback as rollback_mysql  # lazy: start-up

    if not yes:
        fail("rollback --mysql restores at once: add --yes")
    try:
        write_output(dumps_json(rollback_mysql(settings, parse_url(url), journal)), None)
    except (ApplyError, MysqlUrlError) as exc:
        fail(str(exc))


@app.command("verify")
def verify_command(
    save: Annotated[Path | None, typer.Option("--save", help="Write the measurement as a baseline.")] = None,
    against: Annotated[
        Path | None, typer.Option("--against", help="Compare with a baseline (replays the same statements).")
    ] = None,
    rounds: Annotated[int, typer.Option("--rounds", min=3, max=200, help="Interleaved repeats.")] = 15,
    top: Annotated[
        int, typer.Option("--top", min=1, max=50, help="Statements from pg_stat_statements.")
    ] = 10,
    timeout_ms: Annotated[
        int, typer.Option("--timeout-ms", min=100, help="statement_timeout per run.")
    ] = 5000,
    output_format: FormatOpt = Output.terminal,
    pg: PgOpt = None,
    config: ConfigOpt = None,
    out: OutOpt = None,
) -> None:
    """Measure the database: replay the top read-only statements of pg_stat_statements (each in a
    READ ONLY transaction that is rolled back) or a built-in probe of index lookups and bounded scans;
    p50/p95 per statement, throughput and the noise of interleaved repeats. With --against, the
    ratio after/before per statement.

    Example: stackaudit verify --pg postgresql://postgres@127.0.0.1/app --save before.json

    Example: stackaudit verify --pg postgresql://postgres@127.0.0.1/app --against before.json
    """
    from stackaudit.verify import VerifyError, describe, verify  # lazy: start-up

    if save is not None and against is not None:
        fail("--save and --against exclude each other: save a baseline, change, then compare")
    settings = build_settings(config, pg=pg)
    dsn = _dsn(settings)
    if dsn is None:
        fail("give --pg DSN (or STACKAUDIT_PG_DSN, or libpq's PGHOST/PGSERVICE)")
    try:
        baseline = json.loads(against.read_text(encoding="utf-8")) if against else None
        result = verify(dsn, baseline=baseline, rounds=rounds, top=top, timeout_ms=timeout_ms)
    except (OSError, ValueError) as exc:
        fail(f"cannot read the baseline {against}: {exc}")
    except VerifyError as exc:
        fail(str(exc))
    if save is not None:
        write_output(dumps_json(result), save)
    write_output(dumps_json(result) if output_format == Output.json else wrap_text(describe(result)), out)
