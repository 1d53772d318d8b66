"""Command line: parse, call, render; no logic. Every module in this package adds its commands."""

from __future__ import annotations

import importlib
import pkgutil
import sys

from stackaudit.cli.app import app


def _load_commands() -> None:
    for module in pkgutil.iter_modules(__path__):
        if module.name not in ("app", "common"):
            importlib.import_module(f"{__name__}.{module.name}")


_load_commands()


def main() -> None:
    """Entry point: never a traceback; exit 2 on anything unexpected (the message has no secrets)."""
    from stackaudit.redact import scrub

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
