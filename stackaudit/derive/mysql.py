"""The MariaDB/MySQL part of derive: Facts -> the tuner's explicit inputs (and so the tuning).

The memory budget is the one PostgreSQL's is (`derive.memory.memory_budget`), asked about the
MySQL server (`mysql_database`): its container's limit caps it, and every other service
(PostgreSQL too) is a co-tenant.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stackaudit.derive.memory import Database, database_cores, memory_budget
from stackaudit.derive.postgres import storage_evidence
from stackaudit.facts import Facts
from stackaudit.tuning.mysql import MysqlInputs, MysqlTuning, recommend
from stackaudit.tuning.postgres import Budget


def instances(facts: Facts) -> list[dict[str, Any]]:
    return [i for i in facts.get("mysql").get("instances") or [] if isinstance(i, dict)]


def mysql_database(instance: Mapping[str, Any] | None) -> Database:
    """A MariaDB/MySQL server as the database a budget is for: where its collector says it runs."""
    runs_in = (instance or {}).get("runs_in")
    return Database("mysql", "MariaDB/MySQL",
                    runs_in if isinstance(runs_in, Mapping) and runs_in else {"kind": "unknown"})


def mysql_budget(facts: Facts, instance: Mapping[str, Any] | None, memory_bytes: int | None = None,
                 dedicated: bool = False) -> Budget:
    return memory_budget(facts, memory_bytes, dedicated, database=mysql_database(instance))


def inputs_for(facts: Facts, instance: Mapping[str, Any] | None, memory_bytes: int | None = None,
               cpus: int | None = None, dedicated: bool = False, connections: int | None = None,
               flavor: str | None = None) -> MysqlInputs:
    inst = instance or {}
    derived = inst.get("derived") or {}
    version = tuple(inst.get("version_tuple") or (10, 11, 0))
    return MysqlInputs(
        budget=mysql_budget(facts, instance, memory_bytes, dedicated),
        cpus=database_cores(facts, mysql_database(instance), cpus),
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
