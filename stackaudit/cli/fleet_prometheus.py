"""`stackaudit fleet prometheus`: file_sd targets, alert rules and example configs for an inventory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from stackaudit.cli.common import ConfigOpt, build_settings, fail
from stackaudit.cli.fleet import fleet_app
from stackaudit.report.terminal import plain_console, terminal_width

InventoryOpt = Annotated[
    str, typer.Option("--inventory", "-i", help="Ansible inventory (file, folder or host list).")
]
LimitOpt = Annotated[str | None, typer.Option("--limit", "-l", help="Only hosts matching this pattern.")]


@fleet_app.command("prometheus")
def fleet_prometheus(
    inventory: InventoryOpt,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the four files (created 0700).")],
    limit: LimitOpt = None,
    alertmanager: Annotated[
        str, typer.Option("--alertmanager", help="HOST:PORT of the Alertmanager in prometheus.yml.")
    ] = "localhost:9093",
    config: ConfigOpt = None,
) -> None:
    """Prometheus targets (file_sd) for every host's `stackaudit metrics`, the alert rules of
    `monitoring rules`, and example prometheus.yml and alertmanager.yml (a route per group).

    Example: stackaudit fleet prometheus -i inventory.ini --out /etc/prometheus/stackaudit
    """
    from stackaudit.fleet.inventory import FleetError, read_inventory  # lazy: start-up
    from stackaudit.fleet.prometheus import fleet_files, write_files  # lazy: start-up

    settings = build_settings(config)  # the thresholds of the rules
    try:
        hosts = read_inventory(Path(inventory), limit)
        made = fleet_files(hosts, settings, alertmanager)
        written = write_files(out, made.files)
    except FleetError as error:
        fail(str(error))
    screen = plain_console(width=terminal_width())
    screen.print(f"{len(made.targets)} of {len(hosts)} hosts scraped on their stackaudit metrics endpoint")
    table = Table()
    for column in ("host", "target", "groups"):
        table.add_column(column, overflow="fold")
    for target in made.targets:
        table.add_row(target.host, target.address, ", ".join(target.groups) or "-")
    screen.print(table)
    if made.textfile_hosts:
        screen.print(f"textfile mode, scraped through node_exporter: {', '.join(made.textfile_hosts)}")
    screen.print("files written:")
    for path in written:  # one path a line, never wrapped, so it can be copied
        screen.print(f"  {path}", soft_wrap=True)
    screen.print("`promtool check config prometheus.yml` checks the config and its rules there.")
