"""A PostgreSQL tuning as text to paste: a postgresql.conf snippet, ALTER SYSTEM statements, a compose
override. Pure formatting of a `Tuning`; the numbers and reasons come from `stackaudit.tuning`."""

from __future__ import annotations

import json
from typing import Any

from stackaudit.derive.postgres import command_flags
from stackaudit.tuning.postgres import Proposal, Tuning, shm_size_bytes
from stackaudit.tuning.units import format_memory


def _quoted(value: str) -> str:
    return value if _is_number(value) else "'" + value.replace("'", "''") + "'"


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def _chosen(tuning: Tuning, only_changed: bool) -> list[Proposal]:
    return [p for p in tuning.settings.values() if p.changed or not only_changed]


def as_conf(tuning: Tuning, only_changed: bool = True) -> str:
    """A postgresql.conf snippet (include it, or mount it into conf.d)."""
    lines = [f"# stackaudit tune postgres: {tuning.budget.sentence()}",
             f"# worst case: {tuning.worst_case.arithmetic}"]
    for p in _chosen(tuning, only_changed):
        restart = "  # restart" if p.restart else ""
        lines.append(f"{p.name} = {_quoted(p.recommended)}{restart}")
    return "\n".join(lines) + "\n"


def as_sql(tuning: Tuning, only_changed: bool = True) -> str:
    """ALTER SYSTEM statements (written to postgresql.auto.conf; a -c on the command line still wins)."""
    chosen = _chosen(tuning, only_changed)
    lines = [f"-- stackaudit tune postgres: {tuning.budget.sentence()}"]
    overridden = [p.name for p in chosen if p.source.startswith("command line")]
    if overridden:
        lines.append(f"-- WARNING: {', '.join(overridden)} come from the command line (-c), which "
                     "overrides ALTER SYSTEM: change the compose command instead (--format compose).")
    lines += [f"ALTER SYSTEM SET {p.name} = {_quoted(p.recommended)};" for p in chosen]
    lines.append("SELECT pg_reload_conf();")
    restart = [p.name for p in chosen if p.restart]
    if restart:
        lines.append(f"-- restart the server for: {', '.join(restart)}")
    return "\n".join(lines) + "\n"


def as_compose(tuning: Tuning, service_name: str, command: Any = None, only_changed: bool = True) -> str:
    """A compose override setting `command: ["postgres", "-c", ...]` and `shm_size` for the service
    (`command` is its current one: its -c arguments are kept unless we set the same name). Never
    POSTGRES_INITDB_ARGS (the entrypoint runs initdb only on an empty data directory; ERRATA 3)."""
    flags = command_flags(command)
    for p in _chosen(tuning, only_changed):
        flags[p.name] = p.recommended
    argv = ["postgres"] + [part for name, value in flags.items() for part in ("-c", f"{name}={value}")]
    shm = shm_size_bytes(tuning)
    lines = [
        "# stackaudit tune postgres: docker compose -f compose.yaml -f this-file.yaml up -d " + service_name,
        f"# {tuning.budget.sentence()}",
        "services:",
        f"  {json.dumps(service_name)}:",
        f"    command: {json.dumps(argv)}",
        f"    shm_size: {json.dumps(format_memory(shm).replace('GB', 'gb').replace('MB', 'mb'))}",
    ]
    return "\n".join(lines) + "\n"
