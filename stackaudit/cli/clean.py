"""`stackaudit clean`: the Docker disk cleanup that never deletes what you need (dry run by default)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from stackaudit.cli.app import app
from stackaudit.cli.common import (
    ConfigOpt,
    StateDirOpt,
    build_settings,
    console,
    dumps_json,
    fail,
    write_output,
)
from stackaudit.remediation.clean import CleanError, CleanOptions, describe_plan, run_clean
from stackaudit.report.terminal import plain_console, styled
from stackaudit.units import format_bytes


@app.command()
def clean(
    keep: Annotated[int, typer.Option("--keep", min=1, help="Releases to keep per service repository.")] = 3,
    apply: Annotated[bool, typer.Option("--apply", help="Remove (without it: only plan).")] = False,
    include_build_cache: Annotated[
        bool, typer.Option("--include-build-cache", help="Also remove build cache no build uses.")] = False,
    volume: Annotated[list[str] | None, typer.Option(
        "--volume", help="A volume that may be removed (repeatable); no other volume ever is.")] = None,
    i_have_a_backup: Annotated[bool, typer.Option(
        "--i-have-a-backup", help="Allow removing a named database volume without a verified backup.",
    )] = False,
    output_format: Annotated[str, typer.Option("--format", help="terminal or json.")] = "terminal",
    docker_host: Annotated[str | None, typer.Option(
        "--docker-host", help="Docker engine URL (else STACKAUDIT_DOCKER_HOST, DOCKER_HOST, the socket).",
    )] = None,
    config: ConfigOpt = None,
    state_dir: StateDirOpt = None,
) -> None:
    """Reclaim Docker disk space safely: dangling images, old releases, volumes you name.

    Images used by any container (running or stopped) and the last --keep releases of every
    service are never removed; volumes only when named with --volume.

    Example (dry run: what would go, what stays and why): stackaudit clean --keep 3

    Example (remove, journalled in the state directory): stackaudit clean --apply --volume old_cache
    """
    if output_format not in ("terminal", "json"):
        fail(f"--format must be terminal or json, not {output_format!r}")
    settings = build_settings(config=config, state_dir=state_dir, docker_host=docker_host)
    options = CleanOptions(keep_releases=keep, volumes=tuple(volume or ()),
                           include_build_cache=include_build_cache, have_backup=i_have_a_backup)
    try:
        output = run_clean(settings, options, apply)
    except CleanError as exc:
        fail(str(exc))
    if output_format == "json":
        write_output(dumps_json(output), None)
    else:
        render_terminal(output, plain_console())
    for refusal in output["refused"]:
        console.print(styled("refused:", "bold yellow", f" {refusal}"))
    failed = [s for s in output.get("apply", {}).get("steps", []) if s["result"] == "failed"]
    if output["refused"] or failed:
        raise typer.Exit(1)


def render_terminal(output: dict[str, Any], out: Console) -> None:
    for title, key in (("Remove", "remove"), ("Keep", "keep")):
        rows = output[key]
        if not rows:
            continue
        table = Table(title=f"{title} ({len(rows)})", show_lines=False, title_justify="left")
        for column in ("kind", "id", "tags", "bytes", "reason"):
            table.add_column(column, overflow="fold")
        for row in rows:
            table.add_row(row["kind"], _short_id(row["id"]), ", ".join(row["tags"]),
                          format_bytes(row["bytes"]), row["reason"])
        out.print(table)
    for step in output.get("apply", {}).get("steps", []):
        if step["result"] != "removed":
            line = f"{step['result']}: {step['kind']} {_short_id(step['id'])}: {step['why']}"
            out.print(line, highlight=False)
    for warning in output.get("warnings", []):
        out.print(f"warning: {warning}", highlight=False)
    out.print(describe_plan(output), highlight=False)


def _short_id(value: str) -> str:
    return value[7:19] if value.startswith("sha256:") else value
