"""`stackaudit tune mysql`: MariaDB/MySQL settings from the memory budget; parse, call, render."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from stackaudit.cli.common import (
    ComposeFileOpt,
    ConfigOpt,
    MysqlOpt,
    OutOpt,
    ProjectDirOpt,
    SourcesOpt,
    StateDirOpt,
    build_settings,
    console,
    dumps_json,
    facts_for,
    fail,
    write_output,
)
from stackaudit.cli.tune import TuneFormat, _parse_memory_option, tune_app
from stackaudit.config import ALL_SOURCES
from stackaudit.derive.mysql import instances, tuning_for
from stackaudit.facts import Facts
from stackaudit.mysqlconn import MysqlUrlError, parse_url
from stackaudit.remediation.journal import ApplyError
from stackaudit.remediation.mysql_apply import MysqlApplyOptions, apply_tuning
from stackaudit.report.tuning import settings_table
from stackaudit.tuning.mysql import MysqlTuning, as_compose, as_conf, as_sql

# host and docker/compose for the budget (limits, co-tenants), mysql for the current values.
TUNE_MYSQL_SOURCES = tuple(s for s in ("host", "docker", "compose", "env", "app", "redis", "mysql")
                           if s in ALL_SOURCES)


@tune_app.command("mysql")
def tune_mysql(
    output_format: Annotated[TuneFormat, typer.Option(
        "--format", help="table, json, conf (my.cnf fragment), sql (SET PERSIST / SET GLOBAL) or compose "
                         "(command: flags).")] = TuneFormat.table,
    memory: Annotated[str | None, typer.Option(
        "--memory", help="What if the host had this RAM (e.g. 23GiB); ignores cgroup limits.")] = None,
    cpus: Annotated[int | None, typer.Option("--cpus", min=1, help="What if it had this many cores.")] = None,
    connections: Annotated[int | None, typer.Option(
        "--connections", min=1, help="max_connections to plan for (default: the server's, else 151).",
    )] = None,
    flavor: Annotated[str | None, typer.Option(
        "--flavor", help="mariadb or mysql when the server is not reached (default mariadb).")] = None,
    dedicated: Annotated[bool, typer.Option(
        "--dedicated", help="Ignore co-located services (a host for the database alone).")] = False,
    all_settings: Annotated[bool, typer.Option(
        "--all", help="conf/sql/compose: write every setting, not only those that change.")] = False,
    facts_file: Annotated[Path | None, typer.Option("--facts", help="Use a saved facts snapshot.")] = None,
    apply: Annotated[bool, typer.Option(
        "--apply", help="Apply the dynamic settings live (SET PERSIST / SET GLOBAL), journalled; "
                        "undo with `stackaudit rollback --mysql URL`.")] = False,
    conf_file: Annotated[Path | None, typer.Option(
        "--conf-file", help="--apply: also write the my.cnf fragment here (the file the server reads, "
                            "e.g. one mounted into /etc/mysql/conf.d) so the values survive a restart.",
    )] = None,
    state_dir: StateDirOpt = None,
    mysql: MysqlOpt = None,
    project_dir: ProjectDirOpt = None,
    compose_file: ComposeFileOpt = None,
    sources: SourcesOpt = None,
    config: ConfigOpt = None,
    out: OutOpt = None,
) -> None:
    """MariaDB/MySQL settings sized from the same memory budget as PostgreSQL (RAM or cgroup limit
    minus co-located services minus an OS reserve), with the worst case written out.

    Example: stackaudit tune mysql --mysql mysql://root:PASSWORD@127.0.0.1:3306/

    Example (what if): stackaudit tune mysql --memory 4GiB --cpus 2 --flavor mariadb --format conf
    """
    if flavor is not None and flavor not in ("mariadb", "mysql"):
        fail(f"--flavor must be mariadb or mysql, not {flavor!r}")
    memory_bytes = _parse_memory_option(memory)
    if mysql is not None:
        try:
            parse_url(mysql)
        except MysqlUrlError as exc:
            fail(str(exc))
    facts = facts_for(facts_file, config=config, project_dir=project_dir, compose_file=compose_file,
                      mysql_url=mysql, sources=sources or ",".join(TUNE_MYSQL_SOURCES))
    if not facts.has("host") and memory_bytes is None:
        fail("cannot read this host's memory: pass --memory and --cpus")
    found = instances(facts)
    if not found:
        console.print(f"MariaDB/MySQL not reached ({facts.why_missing('mysql')}): current values are the "
                      "server's defaults", style="yellow")
    if apply:
        _apply(facts, found, mysql, conf_file, state_dir, config, options_of(memory_bytes, cpus, dedicated,
                                                                             connections, flavor))
        return
    targets: list[dict[str, Any] | None] = list(found) or [None]
    options = options_of(memory_bytes, cpus, dedicated, connections, flavor)
    texts = [_render(tuning_for(facts, inst, **options), inst, output_format, not all_settings)
             for inst in targets]
    write_output("\n".join(texts), out)


def options_of(memory_bytes: int | None, cpus: int | None, dedicated: bool, connections: int | None,
               flavor: str | None) -> dict[str, Any]:
    return {"memory_bytes": memory_bytes, "cpus": cpus, "dedicated": dedicated, "connections": connections,
            "flavor": flavor}


def _apply(facts: Facts, found: list[dict[str, Any]], mysql: str | None, conf_file: Path | None,
           state_dir: Path | None, config: Path | None, options: dict[str, Any]) -> None:
    """One live server, from --mysql (the password is needed again to write)."""
    if mysql is None or len(found) != 1:
        fail("--apply needs --mysql URL of the one server to change (and it must be reachable)")
    settings = build_settings(config, state_dir=state_dir, mysql_url=mysql)
    try:
        result = apply_tuning(settings, parse_url(mysql), tuning_for(facts, found[0], **options),
                              MysqlApplyOptions(conf_file=conf_file))
    except (ApplyError, MysqlUrlError) as exc:
        fail(str(exc))
    write_output(dumps_json(result), None)
    if result["status"] not in ("done", "nothing-to-do"):
        raise typer.Exit(1)


def _render(tuning: MysqlTuning, instance: dict[str, Any] | None, output_format: TuneFormat,
            only_changed: bool) -> str:
    if output_format == TuneFormat.json:
        data = tuning.to_json()
        data["target"] = (instance or {}).get("target")
        return dumps_json(data)
    if output_format == TuneFormat.conf:
        return as_conf(tuning, only_changed)
    if output_format == TuneFormat.sql:
        return as_sql(tuning, only_changed)
    if output_format == TuneFormat.compose:
        return as_compose(tuning, str((instance or {}).get("service") or "db"), only_changed)
    return _table(tuning, instance)


def _table(tuning: MysqlTuning, instance: dict[str, Any] | None) -> str:
    where = (instance or {}).get("target") or "not reached"
    return settings_table(tuning, f"{tuning.flavor_name} settings ({where})", tuning.sentence(),
                          tuning.worst_case_current)
