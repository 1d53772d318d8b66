"""The MariaDB/MySQL part of derive: Facts -> the tuner's explicit inputs (and so the tuning).

The memory budget is PostgreSQL's one (`derive.memory.memory_budget`), asked about the MySQL
server: its container's limit caps it, and every other service (PostgreSQL too) is a co-tenant.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stackaudit.derive.memory import memory_budget, postgres_cores
from stackaudit.derive.postgres import storage_evidence
from stackaudit.facts import Facts
from stackaudit.tuning.mysql import MysqlInputs, MysqlTuning, recommend
from stackaudit.tuning.postgres import Budget


def instances(facts: Facts) -> list[dict[str, Any]]:
    return [i for i in facts.get("mysql").get("instances") or [] if isinstance(i, dict)]


def mysql_budget(facts: Facts, instance: Mapping[str, Any] | None, memory_bytes: int | None = None,
                 dedicated: bool = False) -> Budget:
    """memory_budget() with the MySQL server in PostgreSQL's place (the function finds "the
    database" through postgres.runs_in, so that is what changes)."""
    return memory_budget(_as_the_database(facts, instance), memory_bytes, dedicated)


def _as_the_database(facts: Facts, instance: Mapping[str, Any] | None) -> Facts:
    runs_in = dict((instance or {}).get("runs_in") or {"kind": "unknown"})
    return Facts(data={**facts.data, "postgres": {"runs_in": runs_in}})


def inputs_for(facts: Facts, instance: Mapping[str, Any] | None, memory_bytes: int | None = None,
               cpus: int | None = None, dedicated: bool = False, connections: int | None = None,
               flavor: str | None = None) -> MysqlInputs:
    inst = instance or {}
    derived = inst.get("derived") or {}
    version = tuple(inst.get("version_tuple") or (10, 11, 0))
    return MysqlInputs(
        budget=mysql_budget(facts, instance, memory_bytes, dedicated),
        cpus=postgres_cores(_as_the_database(facts, instance), cpus),
        flavor=str(inst.get("flavor") or flavor or "mariadb"),
        version=(int(version[0]), int(version[1]), int(version[2])), storage=storage_evidence(facts),
        variables=inst.get("variables") or {}, origins=inst.get("origins") or {},
        server_reached=bool(instance), max_connections=connections,
        max_used_connections=derived.get("max_used_connections"),
        redo_write_bytes_per_second=_redo_rate(derived),
        open_tables=derived.get("open_tables"),
        table_open_cache_miss_ratio=derived.get("table_open_cache_miss_ratio"),
        data_bytes=inst.get("data_bytes"),
    )


def _redo_rate(derived: Mapping[str, Any]) -> float | None:
    """The window's rate when writes were seen, else the average since start (a quiet moment says
    little about the busy hour)."""
    window = derived.get("redo_write_bytes_per_second")
    since_start = derived.get("redo_write_bytes_per_second_since_start")
    rates = [r for r in (window, since_start) if isinstance(r, (int, float))]
    return max(rates) if rates else None


def tuning_for(facts: Facts, instance: Mapping[str, Any] | None, **options: Any) -> MysqlTuning:
    return recommend(inputs_for(facts, instance, **options))
