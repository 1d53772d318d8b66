"""`stackaudit fleet collect`: every inventory host's snapshot into one folder, through Ansible."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.table import Table

from stackaudit.cli.common import Output, OutputOpt, console, fail, write_output
from stackaudit.cli.fleet import fleet_app
from stackaudit.fleet.collect import CollectOptions, HostResult, collect, exit_code
from stackaudit.fleet.inventory import FleetError
from stackaudit.report.terminal import plain_console, styled, terminal_width


@fleet_app.command("collect")
def fleet_collect(
    inventory: Annotated[Path, typer.Option("--inventory", "-i", help="The Ansible inventory (any format).")],
    out: Annotated[Path, typer.Option("--out", help="The fleet folder: DIR/<host>/<UTC time>.json.")],
    limit: Annotated[str | None, typer.Option("--limit", help="Only the hosts this Ansible pattern selects.")
                     ] = None,
    forks: Annotated[int | None, typer.Option("--forks", min=1, help="Hosts at once (Ansible's default: 5).")
                     ] = None,
    vault_password_file: Annotated[Path | None, typer.Option(
        "--vault-password-file", help="Passed to ansible-playbook, for a vaulted stackaudit_pg_dsn.")] = None,
    ask_vault_pass: Annotated[bool, typer.Option(
        "--ask-vault-pass", help="Ansible asks for the vault password.")] = False,
    output_format: OutputOpt = Output.terminal,
) -> None:
    """Collect a redacted snapshot of every inventory host over SSH; exit 0 all, 1 some failed, 2 none.

    Installs this stackaudit version in a venv of the connecting user on each host (from a wheelhouse
    the controller ships), runs `stackaudit collect` there with the host's stackaudit_* variables and
    fetches the snapshot. A failed host gets DIR/<host>/last-error.json and never stops the others.

    Example: stackaudit fleet collect -i inventory.ini --out fleet/ --limit web --forks 10
    """
    options: list[str] = []
    if vault_password_file is not None:
        options += ["--vault-password-file", str(vault_password_file)]
    if ask_vault_pass:
        options.append("--ask-vault-pass")
    done = [0]

    def progress(result: HostResult) -> None:
        done[0] += 1
        if result.status == "collected":
            console.print(styled("✓", "green", f" {result.host} collected ({done[0]} done)"), highlight=False)
        else:
            console.print(styled("✗", "red", f" {result.host} {result.stage}: {result.reason}"),
                          highlight=False)

    console.print(f"collecting with Ansible into {out} …", highlight=False)
    try:
        results = collect(CollectOptions(inventory, out, limit, forks, tuple(options)), progress)
    except FleetError as error:
        fail(str(error))
    if output_format == Output.json:
        write_output(json.dumps(as_json(out, results), indent=2), None)
    else:
        print_summary(results)
    raise typer.Exit(exit_code(results))


def as_json(out: Path, results: list[HostResult]) -> dict[str, object]:
    return {
        "out": str(out.resolve()),
        "collected": sum(r.status == "collected" for r in results),
        "failed": sum(r.status == "failed" for r in results),
        "hosts": [{"host": r.host, "status": r.status, "snapshot": str(r.snapshot) if r.snapshot else None,
                   "stage": r.stage, "reason": r.reason} for r in results],
    }


def print_summary(results: list[HostResult]) -> None:
    table = Table(box=box.SIMPLE_HEAD, expand=True, pad_edge=False)
    table.add_column("host", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("snapshot or reason", ratio=1, overflow="fold")
    for r in results:
        detail = f"{r.stage}: {r.reason}" if r.status == "failed" else r.snapshot.name if r.snapshot else ""
        table.add_row(r.host, r.status, detail)
    collected = sum(r.status == "collected" for r in results)
    output = plain_console(width=terminal_width())
    output.print(table)
    output.print(f"{collected} of {len(results)} hosts collected", highlight=False)
