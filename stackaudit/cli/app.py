"""The typer application every command module registers on.

Pretty exceptions are off: typer's pretty tracebacks print local variables, and locals hold secrets.

Command modules are imported only when their command runs (`COMMANDS` says which module defines
which command), so `stackaudit check` never pays for the docker SDK, psycopg or Jinja2 that other
commands need. `--help` without a command loads them all to list them.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Annotated, Any

import typer
import typer.core

from stackaudit import __version__

# Top-level command or group -> the stackaudit.cli modules that register it (and its subcommands);
# a module named <command>_<anything> is loaded with it too (tune_app adds to tune).
# tests/test_cli_startup.py checks this against what importing every module registers.
COMMANDS: dict[str, tuple[str, ...]] = {
    "audit": ("audit",),
    "collect": ("audit",),
    "rules": ("audit",),
    "explain": ("audit",),
    "backup": ("backup",),
    "restore-drill": ("backup",),
    "plan": ("change",),
    "apply": ("change",),
    "rollback": ("change",),
    "verify": ("change",),
    "clean": ("clean",),
    "demo": ("demo",),
    "fleet": ("fleet",),
    "serve": ("serve",),
    "tune": ("tune", "tune_app"),
    "check": ("watch",),
    "watch": ("watch",),
    "metrics": ("watch",),
    "monitoring": ("watch",),
    "schedule": ("watch",),
}
NOT_COMMANDS = ("app", "common")  # helper modules of this package


def load_commands(modules: tuple[str, ...] | None = None) -> None:
    """Import the named command modules (all of them by default) so they register on `app`."""
    if modules is None:
        package = importlib.import_module("stackaudit.cli")
        modules = tuple(m.name for m in pkgutil.iter_modules(package.__path__) if m.name not in NOT_COMMANDS)
    for name in modules:
        importlib.import_module(f"stackaudit.cli.{name}")


def modules_for(name: str) -> tuple[str, ...] | None:
    """The modules of a command: the table's, plus any named after it (tune_mysql adds to tune);
    None (every module) for a name the table does not know."""
    if name not in COMMANDS:
        return None
    package = importlib.import_module("stackaudit.cli")
    stem = name.replace("-", "_")
    named = [m.name for m in pkgutil.iter_modules(package.__path__) if m.name.startswith(f"{stem}_")]
    return tuple(dict.fromkeys([*COMMANDS[name], *named]))


class LazyGroup(typer.core.TyperGroup):
    """The root group: a command's module is imported the first time the command is looked up.

    Contexts and commands are typed Any: typer 0.29 vendors its own click, older ones use click's.
    """

    def list_commands(self, ctx: Any) -> list[str]:
        load_commands()  # listing (help, completion) shows everything, whatever the table says
        self._refresh()
        return list(dict.fromkeys([*COMMANDS, *self.commands]))

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name not in self.commands:
            load_commands(modules_for(cmd_name))
            self._refresh()
        return self.commands.get(cmd_name)

    def _refresh(self) -> None:
        self.commands.update(typer.main.get_group(app).commands)


app = typer.Typer(
    name="stackaudit",
    cls=LazyGroup,
    help="The production audit of a self-hosted Docker Compose server, from the live system.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"stackaudit {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.",
                                          callback=_print_version, is_eager=True)] = False,
) -> None:
    """The production audit of a self-hosted Docker Compose server, from the live system."""
