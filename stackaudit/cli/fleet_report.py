"""`stackaudit fleet report DIR`: every host's newest snapshot audited, as one fleet."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stackaudit.cli.common import (
    ConfigOpt,
    FailOnOpt,
    Format,
    OutOpt,
    build_settings,
    console,
    fail,
    write_output,
)
from stackaudit.cli.fleet import fleet_app
from stackaudit.units import parse_duration


@fleet_app.command("report")
def report_command(
    directory: Annotated[Path, typer.Argument(help="The --out DIR of `stackaudit fleet collect`.")],
    output_format: Annotated[
        Format, typer.Option("--format", help="terminal, json, md or html.")
    ] = Format.terminal,
    stale: Annotated[str, typer.Option(
        "--stale", help="A host whose newest snapshot is older than this is stale (30m, 6h, 2d).")] = "2d",
    out: OutOpt = None,
    fail_on: FailOnOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Audit the newest snapshot of every host in DIR with the same rules as `audit --facts`, and
    show what only a fleet view shows: codes by host, drift inside a group, stale or failed hosts,
    one secret reused on several hosts. Exit 0 when every host is current and nothing is at or
    above --fail-on, 1 otherwise, 2 when no host could be audited.

    Example: stackaudit fleet report fleet/ --format html --out fleet.html
    """
    from stackaudit.fleet import render  # lazy: start-up
    from stackaudit.fleet.inventory import FleetError  # lazy: start-up
    from stackaudit.fleet.report import build  # lazy: start-up

    try:
        stale_seconds = parse_duration(stale)
    except ValueError as exc:
        fail(f"--stale: {exc}")
    if stale_seconds <= 0:
        fail("--stale must be longer than 0 seconds")
    settings = build_settings(config, fail_on=fail_on)
    try:
        fleet = build(directory, settings, stale_seconds)
    except FleetError as exc:
        fail(str(exc))
    renderers = {Format.json: render.render_json, Format.md: render.render_markdown,
                 Format.html: render.render_html, Format.terminal: render.render_terminal}
    write_output(renderers[output_format](fleet), out)
    if not fleet.audited:
        console.print(f"no host of {directory} could be audited (see the reasons above)", style="red")
    raise typer.Exit(fleet.exit_code(settings.fail_on))
