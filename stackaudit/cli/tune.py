"""`stackaudit tune postgres`: proposed settings from the memory budget; parse, call, render.

`tune_app` is the `tune` command group: `tune app` and `tune redis` register on it
(`from stackaudit.cli.tune import tune_app`).
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated

import typer

from stackaudit.cli.app import app
from stackaudit.cli.common import (
    ComposeFileOpt,
    ConfigOpt,
    OutOpt,
    PgOpt,
    ProjectDirOpt,
    SourcesOpt,
    console,
    dumps_json,
    facts_for,
    fail,
    write_output,
)
from stackaudit.config import ALL_SOURCES
from stackaudit.derive.memory import postgres_service
from stackaudit.derive.postgres import compose_service_name, postgres_tuning
from stackaudit.facts import Facts
from stackaudit.report.tuning import as_compose, as_conf, as_sql, settings_table
from stackaudit.tuning.postgres import WORKLOADS, Tuning
from stackaudit.tuning.units import UnitError, parse_memory

tune_app = typer.Typer(
    help="Propose settings for a service from this host's budget.\n\n"
         "Example: stackaudit tune postgres --memory 23GiB --cpus 4 --format json",
    no_args_is_help=True,
)
app.add_typer(tune_app, name="tune")

# The sources the PostgreSQL tuner reads ("app" and "redis" refine the co-tenant estimates).
TUNE_SOURCES = tuple(s for s in ("host", "docker", "compose", "env", "app", "postgres") if s in ALL_SOURCES)


class TuneFormat(enum.StrEnum):
    table = "table"
    json = "json"
    conf = "conf"
    sql = "sql"
    compose = "compose"


@tune_app.command("postgres")
def tune_postgres(
    output_format: Annotated[TuneFormat, typer.Option(
        "--format", help="table, json, conf (postgresql.conf), sql (ALTER SYSTEM) or compose (override).",
    )] = TuneFormat.table,
    memory: Annotated[str | None, typer.Option(
        "--memory", help="What if the host had this RAM (e.g. 23GiB); ignores cgroup limits.")] = None,
    cpus: Annotated[int | None, typer.Option("--cpus", min=1, help="What if it had this many cores.")] = None,
    workload: Annotated[str | None, typer.Option(
        "--workload", help="web, oltp, analytics or mixed (default: guessed from statistics, else web).",
    )] = None,
    connections: Annotated[int | None, typer.Option(
        "--connections", min=1, help="max_connections to plan for (default: the server's, else 100).",
    )] = None,
    pg_major: Annotated[int | None, typer.Option(
        "--pg-major", min=13, max=18, help="PostgreSQL major version when the server is not reached.",
    )] = None,
    dedicated: Annotated[bool, typer.Option(
        "--dedicated", help="Ignore co-located services (a host for PostgreSQL alone).")] = False,
    all_settings: Annotated[bool, typer.Option(
        "--all", help="conf/sql/compose: write every setting, not only those that change.")] = False,
    facts_file: Annotated[Path | None, typer.Option("--facts", help="Use a saved facts snapshot.")] = None,
    pg: PgOpt = None,
    project_dir: ProjectDirOpt = None,
    compose_file: ComposeFileOpt = None,
    sources: SourcesOpt = None,
    config: ConfigOpt = None,
    out: OutOpt = None,
) -> None:
    """PostgreSQL settings sized from a memory budget (RAM or cgroup limit minus co-located services
    minus an OS reserve), the cores, the storage evidence and the server's statistics.

    Example: stackaudit tune postgres --pg postgresql://postgres@127.0.0.1/app

    Example (what if): stackaudit tune postgres --memory 23GiB --cpus 4 --format sql
    """
    if workload is not None and workload not in WORKLOADS:
        fail(f"--workload must be one of {', '.join(WORKLOADS)}, not {workload!r}")
    memory_bytes = _parse_memory_option(memory)
    facts = facts_for(facts_file, config=config, project_dir=project_dir, compose_file=compose_file,
                      pg=pg, sources=sources or ",".join(TUNE_SOURCES))
    if not facts.has("host") and memory_bytes is None:
        fail("cannot read this host's memory: pass --memory and --cpus")
    if not facts.has("postgres"):
        console.print(f"PostgreSQL not reached ({facts.why_missing('postgres')}): current values are "
                      "PostgreSQL's defaults", style="yellow")
    tuning = postgres_tuning(facts, memory_bytes, cpus, workload, connections, pg_major, dedicated)
    write_output(_render(tuning, facts, output_format, not all_settings), out)


def _parse_memory_option(memory: str | None) -> int | None:
    if memory is None:
        return None
    try:
        value = parse_memory(memory, "GB")
    except UnitError as exc:
        fail(f"--memory: {exc}")
    if value < 256 * 1024**2:
        fail(f"--memory {memory} is too small for a database server (at least 256MB)")
    return value


def _render(tuning: Tuning, facts: Facts, output_format: TuneFormat, only_changed: bool) -> str:
    if output_format == TuneFormat.json:
        return dumps_json(tuning.to_json())
    if output_format == TuneFormat.conf:
        return as_conf(tuning, only_changed)
    if output_format == TuneFormat.sql:
        return as_sql(tuning, only_changed)
    if output_format == TuneFormat.compose:
        command = (postgres_service(facts) or {}).get("command")
        return as_compose(tuning, compose_service_name(facts), command, only_changed)
    return _table(tuning)


def _table(tuning: Tuning) -> str:
    inputs = tuning.inputs
    extra = [f"Inputs: {inputs.cpus} cores, PostgreSQL {inputs.major}, max_connections "
             f"{inputs.max_connections}, workload {inputs.workload} ({inputs.workload_reason}), storage "
             f"{inputs.storage.kind} ({inputs.storage.confidence} confidence)",
             "Measure the effect with `stackaudit verify`."]
    return settings_table(tuning, "PostgreSQL settings", tuning.budget.sentence(), tuning.worst_case_current,
                          extra)
