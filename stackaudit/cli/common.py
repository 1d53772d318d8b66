"""Options and helpers every command shares: settings from options, output, clean failure."""

from __future__ import annotations

import enum
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from stackaudit.config import ConfigError, Settings, load_settings, parse_code_list, parse_sources
from stackaudit.fsutil import atomic_write
from stackaudit.model import Severity, to_jsonable
from stackaudit.priority import below_the_services as below_the_services  # the commands call it too
from stackaudit.redact import scrub, scrub_data
from stackaudit.report.terminal import plain_console, styled

if TYPE_CHECKING:  # the collector is imported when a command collects, not at start-up
    from stackaudit.facts import Facts

console = plain_console(stderr=True, soft_wrap=True)  # progress and messages; results: stdout or --out


class Format(enum.StrEnum):
    terminal = "terminal"
    json = "json"
    md = "md"
    html = "html"


class Output(enum.StrEnum):
    """--format of the commands that print a result, not a report: what they offer is what they do."""

    terminal = "terminal"
    json = "json"


OutputOpt = Annotated[Output, typer.Option("--format", help="terminal or json.")]

ConfigOpt = Annotated[Path | None, typer.Option("--config", help="Config file (TOML).")]
ProjectDirOpt = Annotated[
    list[Path] | None,
    typer.Option("--project-dir", "-p", help="Compose project directory (repeatable)."),
]
ComposeFileOpt = Annotated[
    list[Path] | None, typer.Option("--file", "-f", help="Compose file, in order (repeatable).")
]
PgOpt = Annotated[str | None, typer.Option("--pg", help="PostgreSQL DSN (else libpq env or the stack).")]
RedisOpt = Annotated[str | None, typer.Option("--redis", help="Redis URL (else the stack).")]
MysqlOpt = Annotated[str | None, typer.Option(
    "--mysql", help="MariaDB/MySQL URL mysql://user:pass@host:port/db (else the stack, socket, ~/.my.cnf).")]
PgBouncerOpt = Annotated[str | None, typer.Option(
    "--pgbouncer", help="PgBouncer admin console DSN, user in admin_users/stats_users (else the stack).")]
DomainOpt = Annotated[
    list[str] | None, typer.Option("--domain", help="A domain whose TLS certificate to check (repeatable).")
]
PrometheusOpt = Annotated[
    str | None, typer.Option("--prometheus-url", help="Prometheus to ask for targets and rules.")
]
SourcesOpt = Annotated[
    str | None, typer.Option("--sources", help="Comma-separated sources to collect, e.g. compose,env.")
]
SelectOpt = Annotated[str | None, typer.Option("--select", help="Rule codes or prefixes to run: PG,SYS001.")]
IgnoreOpt = Annotated[str | None, typer.Option("--ignore", help="Rule codes or prefixes to skip: PG2.")]
FailOnOpt = Annotated[
    str | None, typer.Option("--fail-on", help="Exit 1 when a finding is at or above: info..critical.")
]
StateDirOpt = Annotated[
    Path | None, typer.Option("--state-dir", help="Where history and journals live.")
]
OutOpt = Annotated[Path | None, typer.Option("--out", "-o", help="Write to this file instead of stdout.")]


def fail(message: str, code: int = 2) -> NoReturn:
    """A clear error for the user, never a traceback."""
    console.print(styled("error:", "bold red", f" {scrub(message)}"))
    raise typer.Exit(code)


def build_settings(
    config: Path | None = None,
    project_dir: list[Path] | None = None,
    compose_file: list[Path] | None = None,
    pg: str | None = None,
    redis: str | None = None,
    sources: str | None = None,
    select: str | None = None,
    ignore: str | None = None,
    fail_on: str | None = None,
    state_dir: Path | None = None,
    **extra: Any,
) -> Settings:
    """Settings from the config file and environment, then the command-line options on top."""
    project_dirs = tuple(p.resolve() for p in project_dir or ())
    for directory in project_dirs:
        if not directory.is_dir():
            fail(f"--project-dir {directory} is not a directory")
    try:
        settings = load_settings(config, project_dirs)
        return settings.with_overrides(
            compose_files=tuple(f.resolve() for f in compose_file) if compose_file else None,
            pg_dsn=pg,
            redis_url=redis,
            sources=parse_sources(sources),
            select=parse_code_list(select) or None,
            ignore=(settings.ignore + parse_code_list(ignore)) if ignore else None,
            fail_on=Severity.parse(fail_on) if fail_on else None,
            state_dir=state_dir,
            **extra,
        )
    except (ConfigError, ValueError) as exc:
        fail(str(exc))


def write_output(text: str, out: Path | None) -> None:
    """To stdout, or atomically to a file (temp file, fsync, rename): a kill never leaves half a file."""
    text = scrub(text)
    if out is None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        return
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(out, text.encode("utf-8"))
    except OSError as exc:
        fail(f"cannot write {out}: {exc.strerror or exc}")
    console.print(f"wrote {out}", highlight=False)


def dumps_json(value: Any) -> str:
    return json.dumps(scrub_data(to_jsonable(value)), indent=2, sort_keys=False, default=str)


def facts_for(facts_file: Path | None, **settings_options: Any) -> Facts:
    """The facts a tuner reads: a saved snapshot (--facts), else collected now with these options
    (those of `build_settings`)."""
    from stackaudit.facts import Facts, collect  # lazy: start-up

    if facts_file is not None:
        try:
            return Facts.load(facts_file)
        except ValueError as exc:
            fail(str(exc))
    settings = build_settings(**settings_options)
    with console.status("collecting…"):
        return collect(settings)
