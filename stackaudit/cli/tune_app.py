"""`stackaudit tune app` and `stackaudit tune redis`: parse, call, render (on the `tune` group)."""

from __future__ import annotations

import enum
import json
from pathlib import Path
from typing import Annotated

import typer

from stackaudit.cli.common import (
    ComposeFileOpt,
    ConfigOpt,
    OutOpt,
    PgBouncerOpt,
    PgOpt,
    ProjectDirOpt,
    RedisOpt,
    console,
    dumps_json,
    facts_for,
    fail,
    write_output,
)
from stackaudit.cli.tune import tune_app
from stackaudit.derive import app_tuning, derive
from stackaudit.derive.memory import host_resources
from stackaudit.derive.redis import redis_instances
from stackaudit.report.terminal import wrap_text
from stackaudit.tuning.appserver import (
    DEFAULT_LIMITS,
    AppTuning,
    PostgresLimits,
    postgres_limits,
)
from stackaudit.tuning.redis import RedisAdvice, advise
from stackaudit.units import format_bytes, parse_size

APP_SOURCES = "host,docker,compose,env,app,postgres,pgbouncer"
REDIS_SOURCES = "host,docker,compose,env,app,redis"


class Output(enum.StrEnum):
    text = "text"
    json = "json"


FormatOpt = Annotated[Output, typer.Option("--format", help="text or json.")]
FactsOpt = Annotated[Path | None, typer.Option("--facts", help="Use a saved facts snapshot.")]


def _memory(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return parse_size(text)
    except ValueError as exc:
        fail(f"--memory: {exc}")


@tune_app.command("app")
def tune_app_servers(
    cpus: Annotated[float | None, typer.Option("--cpus", min=0.5, help="Plan for this many cores.")] = None,
    memory: Annotated[str | None, typer.Option("--memory", help="Plan for this RAM (e.g. 8GiB).")] = None,
    max_connections: Annotated[int | None, typer.Option(
        "--max-connections", min=1, help="max_connections when PostgreSQL is not reached.")] = None,
    output_format: FormatOpt = Output.text,
    facts_file: FactsOpt = None,
    project_dir: ProjectDirOpt = None,
    compose_file: ComposeFileOpt = None,
    pg: PgOpt = None,
    pgbouncer: PgBouncerOpt = None,
    config: ConfigOpt = None,
    out: OutOpt = None,
) -> None:
    """Workers, threads, pools and job concurrency for the cores and memory, the PostgreSQL
    connection budget with its arithmetic, and the .env lines to change.

    Example: stackaudit tune app -p /srv/app --pg postgresql://postgres@127.0.0.1/app

    Example (what if): stackaudit tune app -p /srv/app --cpus 8 --memory 16GiB --format json
    """
    facts = facts_for(facts_file, sources=APP_SOURCES, config=config, project_dir=project_dir,
                   compose_file=compose_file, pg=pg, pgbouncer_dsn=pgbouncer)
    processes = facts.get("app").get("processes") or []
    if not processes:
        fail(f"no app server found in the compose services ({facts.why_missing('app')})")
    resources = host_resources(facts)
    cores = cpus or resources.cores
    if not cores:
        fail("cannot read this host's CPUs: pass --cpus")
    memory_bytes = _memory(memory) or resources.memory_bytes
    limits = postgres_limits(facts.get("postgres"))
    if max_connections is not None:
        limits = PostgresLimits(max_connections, limits.superuser_reserved if limits else 3,
                                limits.reserved if limits else 0, "--max-connections")
    elif limits is None:
        limits = DEFAULT_LIMITS
        console.print("PostgreSQL not reached: budget against the defaults max_connections 100, "
                      "superuser_reserved_connections 3", style="yellow")
    tuning = app_tuning(facts, float(cores), memory_bytes, limits)
    if tuning is None:
        fail("no app server found in the compose services")
    live = [dict(row) for row in derive(facts).live_connections]
    if output_format == Output.json:
        write_output(dumps_json({**tuning.to_json(), "live_connections": live,
                                 "resources": {"cores": cores, "memory_bytes": memory_bytes}}), out)
        return
    write_output(wrap_text(_app_text(tuning, live)), out)


def _app_text(tuning: AppTuning, live: list[dict[str, object]]) -> str:
    lines: list[str] = []
    if tuning.budget_now is not None:
        lines += ["Connection budget (now):", *[f"  {x}" for x in tuning.budget_now.arithmetic()],
                  tuning.budget_now.verdict()]
    if tuning.pool_note:
        lines += ["", tuning.pool_note]
    for row in live:
        if row.get("note"):
            lines.append(f"  live: {row.get('service') or 'unattributed'}: {row.get('live')} sessions "
                         f"(estimate {row.get('estimated_max')}): {row['note']}")
    lines += ["", "Recommendations:"]
    for advice in tuning.services:
        changes = [f"{k} {advice.current.get(k)} -> {v}" for k, v in advice.recommended.items()
                   if v != advice.current.get(k)]
        lines.append(f"  {advice.service} ({advice.kind}): {', '.join(changes) or 'keep as is'}")
        lines += [f"    - {reason}" for reason in advice.reasons]
        lines += [f"    - change by hand: {item}" for item in advice.manual]
        shared = {k: v for k, v in advice.env.items() if k not in tuning.env}
        lines += [f"    - in this service's environment: {k}={v}" for k, v in shared.items()]
    if tuning.budget_after is not None:
        lines += ["", "Connection budget (after):", *[f"  {x}" for x in tuning.budget_after.arithmetic()],
                  tuning.budget_after.verdict()]
    lines += ["", ".env lines to change:" if tuning.env else "No .env change.", *tuning.env_lines()]
    lines.append("Restart the changed services, then measure with `stackaudit verify`.")
    return "\n".join(lines)


@tune_app.command("redis")
def tune_redis(
    memory: Annotated[str | None, typer.Option(
        "--memory", help="The Redis container's memory limit to plan for (e.g. 512m).")] = None,
    output_format: FormatOpt = Output.text,
    facts_file: FactsOpt = None,
    redis: RedisOpt = None,
    project_dir: ProjectDirOpt = None,
    compose_file: ComposeFileOpt = None,
    config: ConfigOpt = None,
    out: OutOpt = None,
) -> None:
    """maxmemory (below the container limit, with headroom for the save fork's copy-on-write) and
    maxmemory-policy (noeviction for a job queue), as redis.conf lines and a compose `command:`.

    Example: stackaudit tune redis -p /srv/app

    Example: stackaudit tune redis --redis redis://:PASSWORD@127.0.0.1:6379/0 --memory 512m
    """
    facts = facts_for(facts_file, sources=REDIS_SOURCES, config=config, project_dir=project_dir,
                   compose_file=compose_file, redis=redis)
    instances = redis_instances(facts)  # the live ones, else what the files say
    if not instances:
        fail(f"no Redis could be read: {facts.why_missing('redis')}")
    advice = [advise(instance, _memory(memory)) for instance in instances]
    if output_format == Output.json:
        write_output(dumps_json({"instances": [a.to_json() for a in advice]}), out)
        return
    write_output(wrap_text("\n\n".join(_redis_text(a) for a in advice)), out)


def _redis_text(advice: RedisAdvice) -> str:
    current = advice.current_maxmemory_bytes
    lines = [f"Redis {advice.service or advice.target}: container limit {format_bytes(advice.limit_bytes)}, "
             f"maxmemory {format_bytes(current) if current else 'unset'}, "
             f"policy {advice.current_policy or 'unknown'}"]
    lines += [f"  - {reason}" for reason in advice.reasons]
    lines += ["redis.conf:", *[f"  {line}" for line in advice.conf_lines()]]
    lines += ["compose:", f"  command: {json.dumps(advice.compose_command())}"]
    lines.append("Live, without restart: " + "; ".join(f"redis-cli CONFIG SET {line}"
                                                       for line in advice.conf_lines()))
    return "\n".join(lines)
