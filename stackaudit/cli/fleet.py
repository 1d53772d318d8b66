"""`stackaudit fleet ...`: the group that fleet_collect, fleet_report and fleet_prometheus add to."""

from __future__ import annotations

import typer

from stackaudit.cli.app import app

fleet_app = typer.Typer(
    help="Many hosts: collect snapshots with Ansible, audit them as one fleet, watch them with "
         "Prometheus.\n\nExample: stackaudit fleet collect -i inventory.ini --out fleet/",
    no_args_is_help=True,
)
app.add_typer(fleet_app, name="fleet")
