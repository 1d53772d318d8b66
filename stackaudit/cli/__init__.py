"""Command line: parse, call, render; no logic. Every module in this package adds its commands.

The modules are imported when their command runs (`app.COMMANDS`), not here: `stackaudit check`
loads the check's module only, never the docker SDK, psycopg or Jinja2 other commands need.
"""

from __future__ import annotations

import sys

from stackaudit.cli.app import app, load_commands


def _load_commands() -> None:
    """Register every command on `app` (for callers that walk all of them)."""
    load_commands()


def main() -> None:
    """Entry point: never a traceback; exit 2 on anything unexpected (the message has no secrets)."""
    from stackaudit.redact import scrub  # lazy: start-up

    try:
        app()
    except SystemExit:
        raise
    except KeyboardInterrupt:
        sys.stderr.write("stackaudit: interrupted\n")
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - the last line of defence for the user
        sys.stderr.write(scrub(f"stackaudit: internal error: {exc.__class__.__name__}: {exc}\n"))
        sys.exit(2)


__all__ = ["app", "main"]
