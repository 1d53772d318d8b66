"""Which server a plan (or the journal of its apply) is for, and how to connect to it again.

The plan keeps the target's DSN without a password; `--pg` overrides it. For a plan made from the
compose stack the password is read again from the stack, as the audit found it; otherwise libpq adds
PGPASSWORD or ~/.pgpass itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from stackaudit.config import Settings


def effective_dsn(given: str | None, target: Mapping[str, Any]) -> str | None:
    """`--pg` (or STACKAUDIT_PG_DSN) when given; else the server the plan was made for (its DSN has no
    password: libpq adds PGPASSWORD or ~/.pgpass); else libpq's environment ("") or nothing (None)."""
    if given:
        return given
    planned = target.get("dsn")
    return str(planned) if planned else given


def resolve_dsn(given: str | None, target: Mapping[str, Any], settings: Settings) -> str | None:
    """effective_dsn; for a plan made from the compose stack, with the password the audit finds in
    the stack (its .env, the service's environment, an app's DATABASE_URL), never stored in the plan."""
    dsn = effective_dsn(given, target)
    if given or not dsn or target.get("origin") != "compose":
        return dsn
    return stack_dsn(dsn, target, settings) or dsn


def stack_dsn(dsn: str, target: Mapping[str, Any], settings: Settings) -> str | None:
    """`dsn` plus the password of the stack's postgres service at the same address, read again from
    the project's files as `stackaudit audit` reads them (facts.compose, facts.postgres)."""
    from psycopg import ProgrammingError  # lazy: start-up
    from psycopg.conninfo import conninfo_to_dict, make_conninfo  # lazy: start-up

    from stackaudit.facts import CollectContext, Facts, collect_source  # lazy: start-up
    from stackaudit.facts.postgres import compose_targets  # lazy: start-up

    compose = target.get("compose")
    if not isinstance(compose, Mapping) or not compose.get("dir"):
        return None
    files = tuple(Path(str(f)) for f in compose.get("files") or [])
    ctx = CollectContext(replace(settings, project_dirs=(Path(str(compose["dir"])),), compose_files=files),
                         Facts())
    for source in ("docker", "compose"):
        collect_source(ctx, source)  # a source that cannot be read only leaves fewer candidates
    try:
        want = conninfo_to_dict(dsn)
        for found in compose_targets(ctx.facts.get("compose"), ctx.facts.get("docker"),
                                     ctx.private.get("compose_env", {})):
            params = conninfo_to_dict(found.conninfo)
            same = (params.get("host"), str(params.get("port"))) == (want.get("host"), str(want.get("port")))
            if same and params.get("password"):
                return make_conninfo(dsn, password=params["password"])
    except ProgrammingError:
        return None
    return None


def describe_target(target: Mapping[str, Any]) -> str:
    """The plan's server in words: label, data directory, system identifier (what is known)."""
    parts = [str(target.get("label") or target.get("dsn") or "an unnamed server")]
    if target.get("data_directory"):
        parts.append(f"data directory {target['data_directory']}")
    if target.get("system_identifier"):
        parts.append(f"system identifier {target['system_identifier']}")
    return ", ".join(parts)
