"""`stackaudit backup`, `stackaudit backup list`, `stackaudit restore-drill`: parse, call, render."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from stackaudit.backups import Policy, apply_retention, resolve_dest
from stackaudit.backups.drill import run_drills
from stackaudit.backups.dump import BackupError, run_backups
from stackaudit.backups.manifest import Manifest, inventory
from stackaudit.backups.offsite import OffsiteError, parse_remote, send_backup
from stackaudit.backups.records import DrillRecord
from stackaudit.cli.app import app
from stackaudit.cli.common import (
    ConfigOpt,
    MysqlOpt,
    Output,
    OutputOpt,
    PgOpt,
    StateDirOpt,
    build_settings,
    console,
    dumps_json,
    fail,
    write_output,
)
from stackaudit.config import Settings
from stackaudit.mysqlconn import Target
from stackaudit.report.terminal import plain_console, styled
from stackaudit.units import format_bytes

if TYPE_CHECKING:
    from stackaudit.backups.mysql_dump import Tools

backup_app = typer.Typer(
    help="Dump PostgreSQL with a verified checksum, keep generations, copy offsite.\n\n"
         "Example: stackaudit backup --pg postgresql://postgres@127.0.0.1/postgres --dest /srv/backups",
    no_args_is_help=False,
)
app.add_typer(backup_app, name="backup")

DestOpt = Annotated[Path | None, typer.Option("--dest", help="Backup folder (else \\[backup] dest, else "
                                                             "<state-dir>/backups).")]
FormatOpt = OutputOpt


@backup_app.callback(invoke_without_command=True)
def backup(
    ctx: typer.Context,
    pg: PgOpt = None,
    mysql: MysqlOpt = None,
    dest: DestOpt = None,
    databases: Annotated[str | None, typer.Option("--databases", help="Comma-separated; default all.")
                         ] = None,
    offsite: Annotated[str | None, typer.Option(
        "--offsite", help="Copy to s3://bucket/prefix, rclone:remote:path, sftp://user@host/path or a "
                          "folder (else STACKAUDIT_BACKUP_OFFSITE).")] = None,
    s3_endpoint: Annotated[str | None, typer.Option(
        "--s3-endpoint", help="S3-compatible endpoint URL (else STACKAUDIT_S3_ENDPOINT).")] = None,
    container: Annotated[str | None, typer.Option(
        "--container", help="Run pg_dump (or mariadb-dump/mysqldump) inside this container (default: "
                            "only when the host has no client of the server's version).")] = None,
    jobs: Annotated[int, typer.Option(
        "--jobs", min=1, help="pg_dump workers for large databases: N > 1 writes the directory format "
                              "(pg_dump -Fd -j N, a sha256 per file; the drill restores with -j N).")] = 1,
    keep_daily: Annotated[int, typer.Option(help="Daily generations kept.")] = 7,
    keep_weekly: Annotated[int, typer.Option(help="Weekly generations kept.")] = 4,
    keep_monthly: Annotated[int, typer.Option(help="Monthly generations kept.")] = 6,
    prune: Annotated[bool, typer.Option(help="Apply retention after the backup.")] = True,
    fmt: FormatOpt = Output.terminal,
    config: ConfigOpt = None,
    state_dir: StateDirOpt = None,
) -> None:
    """Back up every database (or --databases a,b), verify each dump, apply retention.

    Example: stackaudit backup --databases shop --dest /srv/backups --offsite s3://backups/shop --format json
    """
    if ctx.invoked_subcommand is not None:
        return
    settings = build_settings(config=config, pg=pg, state_dir=state_dir, mysql_url=mysql)
    folder = resolve_dest(settings, dest)
    remote_url = offsite or os.environ.get("STACKAUDIT_BACKUP_OFFSITE")
    try:
        remote = parse_remote(remote_url, s3_endpoint) if remote_url else None
    except OffsiteError as exc:
        fail(str(exc))
    wanted = [d.strip() for d in databases.split(",") if d.strip()] if databases else None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        manifests = _run_backups(settings, folder, wanted, container, mysql is not None, jobs)
    except (BackupError, OSError) as exc:
        fail(str(exc))
    offsite_results = {m.id: send_backup(folder, m, remote) for m in manifests if remote and m.good}
    pruned: list[str] = []
    if prune:
        decisions = apply_retention(folder, Policy(keep_daily, keep_weekly, keep_monthly))
        pruned = [d.generation.id for d in decisions if not d.keep]
    rows = [_backup_row(folder, m) for m in manifests]
    if fmt is Output.json:
        write_output(dumps_json({"dest": str(folder), "backups": rows, "pruned": pruned}), None)
    else:
        _render_run(rows, offsite_results, pruned)
    if any(not m.good for m in manifests) or any(not r["verified"] for r in offsite_results.values()):
        raise typer.Exit(1)


def _run_backups(settings: Settings, folder: Path, wanted: list[str] | None, container: str | None,
                 mysql: bool, jobs: int) -> list[Manifest]:
    """--mysql: MariaDB/MySQL (backups/mysql_dump.py); else PostgreSQL."""
    if mysql:
        from stackaudit.backups.mysql_dump import run_backups as run_mysql_backups  # lazy: start-up

        target = mysql_target(settings)
        return run_mysql_backups(target, folder, wanted, progress=_backup_progress,
                                 tools=_mysql_tools(settings, target, container))
    return run_backups(settings, folder, wanted, container, progress=_backup_progress,
                       find_container=lambda: _find_container(settings), jobs=jobs)


def _backup_progress(database: str, manifest: Manifest | None) -> None:
    if manifest is None:
        console.print(f"backing up {database} ...", highlight=False)
    elif manifest.good:
        console.print(styled("  ok", "green", f" {manifest.id}: {format_bytes(manifest.bytes or 0)} in "
                             f"{manifest.duration_seconds:.1f}s, verified"))
    else:
        console.print(styled("  failed", "red", f" {database}: {manifest.error}"))


def _backup_row(folder: Path, m: Manifest) -> dict[str, Any]:
    return {"id": m.id, "database": m.database,
            "path": str(folder / m.file) if m.file else None, "format": m.format,
            "bytes": m.bytes if m.file else None, "sha256": m.sha256 if m.file else None,
            "verified": m.good, "status": m.status, "started_at": m.started_at,
            "duration_seconds": m.duration_seconds, "error": m.error, "offsite": m.offsite}


def _render_run(rows: list[dict[str, Any]], offsite: dict[str, dict[str, Any]], pruned: list[str]) -> None:
    for row in rows:
        state = "verified" if row["verified"] else f"FAILED: {row['error']}"
        typer.echo(f"{row['id']}  {row['database']}  {state}  {row['path'] or '-'}")
    for ident, result in offsite.items():
        state = "verified" if result["verified"] else f"FAILED: {result.get('error') or 'checksum mismatch'}"
        typer.echo(f"offsite {ident} -> {result['remote']}: {state}")
    if pruned:
        typer.echo(f"retention removed {len(pruned)} old backup(s): {', '.join(pruned)}")


@backup_app.command("list")
def list_backups(
    dest: DestOpt = None,
    fmt: FormatOpt = Output.terminal,
    config: ConfigOpt = None,
    state_dir: StateDirOpt = None,
) -> None:
    """List the backups in the destination with their verification status.

    Example: stackaudit backup list --dest /srv/backups --format json
    """
    settings = build_settings(config=config, state_dir=state_dir)
    folder = resolve_dest(settings, dest)
    inv = inventory(folder)
    rows = [_backup_row(folder, m) for m in reversed(inv.manifests)]
    incomplete = [{"id": ident, "modified_at": t.isoformat(timespec="seconds")} for ident, t in inv.partials]
    if fmt is Output.json:
        write_output(dumps_json({"dest": str(folder), "backups": rows, "incomplete": incomplete,
                                 "unreadable": inv.unreadable}), None)
        return
    table = Table(title=f"Backups in {folder}")
    table.add_column("id", no_wrap=True)
    for column in ("database", "started", "size", "status"):
        table.add_column(column)
    for row in rows:
        offsite = " + offsite" if any(o.get("verified") for o in row["offsite"]) else ""
        status = styled("verified", "green", offsite) if row["verified"] else \
            styled("failed", "red", f" {row['error'] or ''}{offsite}")
        table.add_row(row["id"], row["database"], row["started_at"],
                      format_bytes(row["bytes"]) if row["bytes"] else "-", status)
    for item in incomplete:
        table.add_row(item["id"], "?", item["modified_at"], "-",
                      styled("incomplete (never finished)", "yellow"))
    plain_console().print(table)  # results on stdout; `console` (stderr) is for progress


@app.command("restore-drill")
def restore_drill(
    pg: PgOpt = None,
    mysql: MysqlOpt = None,
    dest: DestOpt = None,
    backup_id: Annotated[str | None, typer.Option("--backup", help="Backup id (default: the newest "
                                                                   "verified of each database).")] = None,
    container: Annotated[str | None, typer.Option(
        "--container", help="Run pg_restore (or mariadb/mysql) inside this container.")] = None,
    fmt: FormatOpt = Output.terminal,
    config: ConfigOpt = None,
    state_dir: StateDirOpt = None,
) -> None:
    """Restore backups into a scratch database, compare row counts, time it, drop it, record it.

    Example: stackaudit restore-drill --pg postgresql://postgres@127.0.0.1/postgres --dest /srv/backups
    """
    settings = build_settings(config=config, pg=pg, state_dir=state_dir, mysql_url=mysql)
    folder = resolve_dest(settings, dest)
    try:
        if mysql is not None:
            from stackaudit.backups.mysql_dump import run_drills as run_mysql_drills  # lazy: start-up

            target = mysql_target(settings)
            records = run_mysql_drills(target, folder, backup_id, progress=_drill_progress,
                                       tools=_mysql_tools(settings, target, container))
        else:
            records = run_drills(settings, folder, backup_id, container, progress=_drill_progress)
    except (BackupError, OSError) as exc:
        fail(str(exc))
    if fmt is Output.json:
        write_output(dumps_json({"drills": [r.to_json() for r in records]}), None)
    else:
        for record in records:
            typer.echo(_drill_line(record))
    if any(not r.ok for r in records):
        raise typer.Exit(1)


def _drill_progress(manifest: Manifest, record: DrillRecord | None) -> None:
    if record is None:
        console.print(f"restoring {manifest.id} into a scratch database ...", highlight=False)


def _drill_line(record: DrillRecord) -> str:
    if record.ok:
        return (f"{record.backup_id}: restored in {record.restore_seconds:.1f}s, {record.tables_checked} "
                f"tables and {record.rows_restored} rows match ({record.counts_compared_with})")
    problems = [p for p in (
        None if record.checksum_ok is not False else "checksum mismatch",
        None if record.restore_ok is not False else "restore failed",
        f"{len(record.mismatches)} table(s) with wrong row counts" if record.mismatches else None,
        record.error,
    ) if p]
    return f"{record.backup_id}: DRILL FAILED: {'; '.join(problems)}"


def mysql_target(settings: Settings) -> Target:
    """--mysql URL (or STACKAUDIT_MYSQL_URL), else the server the stack runs (facts/mysql.py)."""
    from stackaudit.mysqlconn import MysqlUrlError, parse_url  # lazy: start-up

    if settings.mysql_url:
        try:
            return parse_url(settings.mysql_url)
        except MysqlUrlError as exc:
            fail(str(exc))
    from stackaudit.facts import CollectContext, Facts, collect_source  # lazy: start-up
    from stackaudit.facts.mysql import discover  # lazy: start-up

    ctx = CollectContext(settings=settings, facts=Facts())
    for source in ("docker", "compose"):
        collect_source(ctx, source)
    found = discover(ctx)
    if not found:
        fail("no MariaDB/MySQL server: give --mysql mysql://user:password@host:port/")
    return found[0]


def _mysql_tools(settings: Settings, target: Target, container: str | None) -> Callable[[str], Tools]:
    """Host tools, or `docker exec` into --container or the server's container (asked of the
    docker facts only when the host has no tools)."""
    from stackaudit.backups.mysql_dump import choose_tools  # lazy: start-up

    def find() -> tuple[str | None, str | None]:
        from stackaudit.facts import CollectContext, Facts, collect_source  # lazy: start-up
        from stackaudit.facts.mysql import runs_in  # lazy: start-up

        ctx = CollectContext(settings=settings, facts=Facts())
        try:
            collect_source(ctx, "docker")
        except Exception:  # noqa: BLE001 - discovery is a best effort
            return None, None
        found = runs_in(ctx.facts.get("docker"), target).get("container")
        return (str(found), settings.docker_host) if found else (None, None)

    return lambda version: choose_tools(version, container, settings.docker_host,
                                        prefer_container=container is not None, find_container=find)


def _find_container(settings: Settings) -> tuple[str | None, str | None]:
    """(container, docker_host) of the PostgreSQL server when the stack runs it in a container.

    Reads facts postgres.runs_in (collected with the docker and compose sources it builds on);
    any failure just means "not known".
    """
    from stackaudit.facts import CollectContext, Facts, collect_source  # lazy: start-up

    ctx = CollectContext(settings=settings, facts=Facts())
    for source in ("docker", "compose", "postgres"):
        try:
            collect_source(ctx, source)
        except Exception:  # noqa: BLE001 - discovery is a best effort
            return None, None
    runs_in = ctx.facts.get("postgres").get("runs_in") or {}
    if runs_in.get("kind") == "container" and runs_in.get("container"):
        return str(runs_in["container"]), settings.docker_host
    return None, None
