"""The typer application every command module registers on.

Pretty exceptions are off: typer's pretty tracebacks print local variables, and locals hold secrets.
"""

from __future__ import annotations

import typer

app = typer.Typer(
    name="stackaudit",
    help="The production audit of a self-hosted Docker Compose server, from the live system.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)
