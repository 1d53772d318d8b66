"""A tuning as text: a table for the terminal (PostgreSQL and MariaDB/MySQL alike), and for
PostgreSQL the snippets to paste (postgresql.conf, ALTER SYSTEM, a compose override). Pure formatting;
the numbers and reasons come from `stackaudit.tuning`."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from typing import Any

from rich.table import Table
from rich.text import Text

from stackaudit.derive.postgres import command_flags
from stackaudit.report.terminal import plain_console, terminal_width
from stackaudit.tuning.postgres import BudgetedTuning, Proposal, Tuning, WorstCase, shm_size_bytes
from stackaudit.tuning.units import format_memory
from stackaudit.units import format_bytes


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


def settings_table(tuning: BudgetedTuning, title: str, budget_sentence: str,
                   worst_case_current: WorstCase | None, extra: Sequence[str] = ()) -> str:
    """Every setting (changed ones bold) with its reason, then the budget with its co-tenants and
    notes, the worst case recommended and current, and `extra` lines."""
    buffer = io.StringIO()
    out = plain_console(file=buffer, width=terminal_width(), force_terminal=False)
    table = Table(title=title, show_lines=False)
    for column in ("Setting", "Current", "Recommended", "Restart?", "Why"):
        table.add_column(column, overflow="fold")
    for p in tuning.settings.values():
        mark = "bold" if p.changed else "dim"
        table.add_row(Text(p.name, style=mark), p.current or "-", Text(p.recommended, style=mark),
                      "yes" if p.restart else "no", p.reason)
    out.print(table)
    lines = [f"Budget: {budget_sentence}"]
    lines += [f"  - {t.name} ({t.kind}): {format_bytes(t.bytes)} [{t.basis}: {t.detail}]"
              for t in tuning.budget.co_tenants]
    lines += [f"  note: {note}" for note in tuning.budget.notes]
    verdict = "fits" if tuning.fits else "does NOT fit"
    lines.append(f"Worst case, recommended ({verdict} the budget): {tuning.worst_case.arithmetic}")
    if worst_case_current is not None:
        lines.append(f"Worst case, current: {worst_case_current.arithmetic}")
    for line in [*lines, *extra]:
        out.print(line, highlight=False)
    return buffer.getvalue()
