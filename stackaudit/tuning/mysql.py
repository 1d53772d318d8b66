"""MariaDB / MySQL settings from the memory budget: a pure calculator (explicit inputs, no Facts).

The budget is the one PostgreSQL gets (`tuning.postgres.memory_budget`: RAM or the server's cgroup
limit, minus co-located services, minus an OS reserve), worked out for the MySQL server by
`stackaudit.derive.mysql`. Within it:

- worst case = global buffers + max_connections x per-thread buffers, MySQLTuner's "maximum possible
  memory" (mysqltuner.pl, calculations(): server_buffers = key_buffer_size + min(tmp_table_size,
  max_heap_table_size) + innodb_buffer_pool_size + innodb_log_buffer_size + query_cache_size +
  aria_pagecache_buffer_size; per_thread_buffers = read_buffer_size + read_rnd_buffer_size +
  sort_buffer_size + thread_stack + join_buffer_size + binlog_cache_size);
- per-thread buffers keep their values while max_connections x them stays under a quarter of the
  budget, else the enlarged ones go back to the defaults, then max_connections comes down towards
  what was used;
- innodb_buffer_pool_size takes what is left (at most 75% of the budget, the MySQL manual's "up to
  80% of memory on a dedicated server", less with co-tenants), rounded down to a multiple of
  innodb_buffer_pool_chunk_size x innodb_buffer_pool_instances (the server rounds up otherwise:
  MySQL manual "Configuring InnoDB Buffer Pool Size");
- redo capacity holds an hour of the measured write rate (MySQL manual "Configuring Redo Log
  Capacity"; Percona, "How to calculate a good InnoDB log file size");
- innodb_io_capacity and innodb_flush_method from the storage evidence; table_open_cache from the
  tables open and the cache misses.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from stackaudit.tuning.postgres import Budget, BudgetedTuning, Proposal, Storage, WorstCase
from stackaudit.tuning.units import UnitError, parse_memory
from stackaudit.units import format_bytes

KB, MB, GB = 1024, 1024**2, 1024**3
PER_THREAD = ("read_buffer_size", "read_rnd_buffer_size", "sort_buffer_size", "thread_stack",
              "join_buffer_size", "binlog_cache_size")
GLOBAL_BUFFERS = ("key_buffer_size", "innodb_log_buffer_size", "query_cache_size",
                  "aria_pagecache_buffer_size")
# The servers' defaults (MariaDB 10.11 / MySQL 8.0 manuals), used when the server is not reached.
DEFAULTS: dict[str, dict[str, int]] = {
    "mariadb": {"read_buffer_size": 128 * KB, "read_rnd_buffer_size": 256 * KB, "sort_buffer_size": 2 * MB,
                "thread_stack": 292 * KB, "join_buffer_size": 256 * KB, "binlog_cache_size": 32 * KB,
                "key_buffer_size": 128 * MB, "innodb_log_buffer_size": 16 * MB, "query_cache_size": MB,
                "aria_pagecache_buffer_size": 128 * MB, "tmp_table_size": 16 * MB,
                "max_heap_table_size": 16 * MB, "innodb_buffer_pool_size": 128 * MB,
                "innodb_buffer_pool_chunk_size": 128 * MB, "innodb_buffer_pool_instances": 1,
                "innodb_log_file_size": 96 * MB, "max_connections": 151, "table_open_cache": 2000,
                "innodb_io_capacity": 200},
    "mysql": {"read_buffer_size": 128 * KB, "read_rnd_buffer_size": 256 * KB, "sort_buffer_size": 256 * KB,
              "thread_stack": MB, "join_buffer_size": 256 * KB, "binlog_cache_size": 32 * KB,
              "key_buffer_size": 8 * MB, "innodb_log_buffer_size": 16 * MB, "query_cache_size": 0,
              "aria_pagecache_buffer_size": 0, "tmp_table_size": 16 * MB, "max_heap_table_size": 16 * MB,
              "innodb_buffer_pool_size": 128 * MB, "innodb_buffer_pool_chunk_size": 128 * MB,
              "innodb_buffer_pool_instances": 1, "innodb_redo_log_capacity": 100 * MB,
              "innodb_log_file_size": 48 * MB, "max_connections": 151, "table_open_cache": 4000,
              "innodb_io_capacity": 200},
}
PER_THREAD_SHARE = 0.25  # of the budget, for max_connections x per-thread buffers
BUFFER_POOL_SHARE = 0.75
REDO_SECONDS = 3600.0
REDO_MIN, REDO_MAX = 96 * MB, 16 * GB


@dataclass(frozen=True)
class MysqlInputs:
    budget: Budget
    cpus: int
    flavor: str  # "mariadb" | "mysql"
    version: tuple[int, int, int]
    storage: Storage
    variables: Mapping[str, str] = field(default_factory=dict)  # SHOW GLOBAL VARIABLES (lower-case names)
    origins: Mapping[str, str] = field(default_factory=dict)
    server_reached: bool = False
    max_connections: int | None = None  # planned; None: the server's (or the default)
    max_used_connections: int | None = None
    redo_write_bytes_per_second: float | None = None
    open_tables: int | None = None
    table_open_cache_miss_ratio: float | None = None
    data_bytes: int | None = None


@dataclass(frozen=True)
class MysqlTuning(BudgetedTuning):
    inputs: MysqlInputs
    settings: dict[str, Proposal]
    worst_case: WorstCase
    worst_case_current: WorstCase

    def sentence(self) -> str:
        return self.budget.sentence().replace("for PostgreSQL", f"for {self.flavor_name}")

    @property
    def flavor_name(self) -> str:
        return "MariaDB" if self.inputs.flavor == "mariadb" else "MySQL"

    def to_json(self) -> dict[str, Any]:
        budget, inputs = self.budget, self.inputs
        return {
            "budget": {
                "total_bytes": budget.total_bytes, "mysql_bytes": budget.postgres_bytes,
                "co_tenants": {c.name: c.bytes for c in budget.co_tenants},
                "co_tenant_basis": {c.name: f"{c.basis}: {c.detail}" for c in budget.co_tenants},
                "os_reserve_bytes": budget.os_reserve_bytes, "host_memory_bytes": budget.host_memory_bytes,
                "mysql_limit_bytes": budget.postgres_limit_bytes,
                "worst_case_bytes": self.worst_case.bytes,
                "worst_case_arithmetic": self.worst_case.arithmetic,
                "worst_case_current_bytes": self.worst_case_current.bytes,
                "worst_case_current_arithmetic": self.worst_case_current.arithmetic,
                "fits": self.fits, "explanation": self.sentence(), "notes": list(budget.notes),
            },
            "inputs": {"cpus": inputs.cpus, "flavor": inputs.flavor,
                       "version": ".".join(str(v) for v in inputs.version),
                       "storage": inputs.storage.kind, "storage_confidence": inputs.storage.confidence,
                       "storage_evidence": inputs.storage.evidence, "server_reached": inputs.server_reached,
                       "redo_write_bytes_per_second": inputs.redo_write_bytes_per_second},
            "settings": {name: p.to_json() for name, p in self.settings.items()},
        }


class _Current:
    """Live values (SHOW GLOBAL VARIABLES), else the flavor's defaults."""

    def __init__(self, inputs: MysqlInputs) -> None:
        self.inputs = inputs
        self.defaults = DEFAULTS["mariadb" if inputs.flavor == "mariadb" else "mysql"]

    def number(self, name: str) -> int:
        text = self.inputs.variables.get(name)
        try:
            return int(float(text)) if text not in (None, "") else self.defaults.get(name, 0)
        except ValueError:
            return self.defaults.get(name, 0)

    def text(self, name: str) -> str | None:
        value = self.inputs.variables.get(name)
        if value is None and name in self.defaults:
            return str(self.defaults[name])
        return value

    def source(self, name: str) -> str:
        if not self.inputs.server_reached:
            return "the server's default (not reached)"
        return self.inputs.origins.get(name, "compiled-in default")


def worst_case(values: Mapping[str, int], max_connections: int) -> WorstCase:
    """MySQLTuner's maximum possible memory, with its arithmetic written out."""
    tmp = min(values.get("tmp_table_size", 0), values.get("max_heap_table_size", 0))
    globals_ = {"innodb_buffer_pool_size": values.get("innodb_buffer_pool_size", 0),
                **{n: values.get(n, 0) for n in GLOBAL_BUFFERS}, "tmp_table": tmp}
    per_thread = sum(values.get(n, 0) for n in PER_THREAD)
    total = sum(globals_.values()) + max_connections * per_thread
    shown = " + ".join(f"{format_bytes(v)} {k}" for k, v in globals_.items() if v)
    arithmetic = (f"{shown} + {max_connections} connections x {format_bytes(per_thread)} per thread "
                  f"({' + '.join(n.removesuffix('_size') for n in PER_THREAD)}) = {format_bytes(total)}")
    return WorstCase(int(total), arithmetic)


def mysql_size(num_bytes: int) -> str:
    """As my.cnf writes sizes: the largest exact K/M/G suffix, else bytes."""
    for unit, size in (("G", GB), ("M", MB), ("K", KB)):
        if num_bytes >= size and num_bytes % size == 0:
            return f"{num_bytes // size}{unit}"
    return str(num_bytes)


def recommend(inputs: MysqlInputs) -> MysqlTuning:
    cur = _Current(inputs)
    budget = inputs.budget.postgres_bytes
    current = {n: cur.number(n) for n in (*PER_THREAD, *GLOBAL_BUFFERS, "tmp_table_size",
                                          "max_heap_table_size", "innodb_buffer_pool_size")}
    connections = inputs.max_connections or cur.number("max_connections")
    proposals: dict[str, Proposal] = {}

    def propose(name: str, value: str, reason: str, restart: bool = False) -> None:
        now = cur.text(name)
        proposals[name] = Proposal(name, now, value, restart, reason, not _same(now, value), cur.source(name))

    per_thread, connections = _per_thread(inputs, cur, current, connections, budget, propose)
    values = {**current, **per_thread}
    _buffer_pool(inputs, cur, values, connections, budget, propose)
    _redo(inputs, cur, values["innodb_buffer_pool_size"], propose)
    _storage(inputs, cur, propose)
    _table_cache(inputs, cur, propose)
    return MysqlTuning(inputs, proposals, worst_case(values, connections),
                       worst_case(current, cur.number("max_connections")))


def _same(current: str | None, recommended: str) -> bool:
    if current is None:
        return False
    try:
        return parse_memory(current) == parse_memory(recommended)
    except UnitError:
        return current.strip().lower() == recommended.strip().lower()


def _per_thread(inputs: MysqlInputs, cur: _Current, current: Mapping[str, int], connections: int,
                budget: int, propose: Any) -> tuple[dict[str, int], int]:
    """Keep per-thread buffers unless max_connections x them passes a quarter of the budget; then
    the enlarged ones go back to the default, then max_connections comes down (not below what was
    used plus a quarter)."""
    values = {n: current[n] for n in PER_THREAD}
    allowed = budget * PER_THREAD_SHARE
    if connections * sum(values.values()) > allowed:
        for name in ("sort_buffer_size", "join_buffer_size", "read_rnd_buffer_size", "read_buffer_size"):
            default = cur.defaults[name]
            if values[name] > default:
                values[name] = default
                propose(name, mysql_size(default),
                        f"{connections} connections x per-thread buffers exceed a quarter of the "
                        f"{format_bytes(budget)} budget: back to the default")
    each = sum(values.values())
    if connections * each > allowed:
        floor = int((inputs.max_used_connections or 0) * 1.25) + 5
        fitted = max(floor, int(allowed // each))
        if fitted < connections:
            propose("max_connections", str(fitted),
                    f"{connections} x {format_bytes(each)} per thread passes {format_bytes(allowed)} "
                    f"(a quarter of the budget); {inputs.max_used_connections or 'no'} connections "
                    "were used at most")
            connections = fitted
    return values, connections


def _buffer_pool(inputs: MysqlInputs, cur: _Current, values: dict[str, int], connections: int, budget: int,
                 propose: Any) -> None:
    """What the budget leaves after the other globals and the connections, at most 75% of it, at
    most twice the data when the data size is known, rounded down to chunk x instances."""
    others = sum(values.get(n, 0) for n in GLOBAL_BUFFERS)
    others += min(values.get("tmp_table_size", 0), values.get("max_heap_table_size", 0))
    left = budget - others - connections * sum(values.get(n, 0) for n in PER_THREAD)
    target = min(left, int(budget * BUFFER_POOL_SHARE))
    why = (f"{format_bytes(budget)} budget - {format_bytes(others)} other global buffers - {connections} "
           f"connections' buffers = {format_bytes(left)}, at most {int(BUFFER_POOL_SHARE * 100)}% "
           "of the budget")
    if inputs.data_bytes and max(2 * inputs.data_bytes, 128 * MB) < target:
        target = max(2 * inputs.data_bytes, 128 * MB)  # only ever lowers it: the budget comes first
        why += f"; the data is {format_bytes(inputs.data_bytes)}, twice that leaves room to grow"
    unit, basis = _allocation_unit(inputs, cur)
    step = max(unit, (_readable_step(target) // unit) * unit)  # still a multiple of the unit
    # down, never up past what the budget left: whole steps, else whole units; one unit at least
    # (the server's minimum; a budget that cannot carry it makes `fits` false)
    rounded = max(unit, (target // step) * step or (target // unit) * unit)
    values["innodb_buffer_pool_size"] = rounded
    propose("innodb_buffer_pool_size", mysql_size(rounded),
            f"{why}; rounded down to {format_bytes(step)} steps, "
            f"a multiple of {basis} ({format_bytes(unit)})")


def _allocation_unit(inputs: MysqlInputs, cur: _Current) -> tuple[int, str]:
    """chunk x instances; a reached server without innodb_buffer_pool_chunk_size (MariaDB 10.11.12+,
    11.8: the pool is one mapping resized in place) only needs whole MiB."""
    if inputs.server_reached and "innodb_buffer_pool_chunk_size" not in inputs.variables:
        return MB, "whole MiB (this server has no chunk size)"
    chunk, instances = cur.number("innodb_buffer_pool_chunk_size"), cur.number("innodb_buffer_pool_instances")
    return max(1, chunk) * max(1, instances), "chunk x instances"


def _readable_step(num_bytes: int) -> int:
    """128M steps from 1G, 32M below: values people can read, that stay multiples of any power-of-two
    chunk up to the step."""
    return 128 * MB if num_bytes >= GB else 32 * MB


def _redo(inputs: MysqlInputs, cur: _Current, buffer_pool: int, propose: Any) -> None:
    """An hour of writes, at most the buffer pool's size: the redo only has to cover the dirty
    pages the pool can hold, a larger log adds recovery time and disk, not speed. MySQL 8.0.30+
    sizes it with innodb_redo_log_capacity (dynamic), MariaDB 10.9+ resizes innodb_log_file_size
    online, older servers need a restart."""
    rate = inputs.redo_write_bytes_per_second
    if rate is None:
        return
    ceiling = max(REDO_MIN, min(REDO_MAX, buffer_pool))
    wanted = int(min(ceiling, max(REDO_MIN, rate * REDO_SECONDS)))
    wanted = -(-wanted // MB) * MB
    mysql_capacity = inputs.flavor == "mysql" and inputs.version >= (8, 0, 30)
    name = "innodb_redo_log_capacity" if mysql_capacity else "innodb_log_file_size"
    restart = not (mysql_capacity or (inputs.flavor == "mariadb" and inputs.version >= (10, 9, 0)))
    current = cur.number(name) * (1 if mysql_capacity else max(1, cur.number("innodb_log_files_in_group")))
    if wanted <= current <= 4 * wanted:
        wanted = current  # within a factor of the target: leave it
    propose(name, mysql_size(wanted),
            f"measured {format_bytes(rate)}/s of redo: an hour of writes is "
            f"{format_bytes(rate * REDO_SECONDS)} (kept between {format_bytes(REDO_MIN)} and the "
            f"{format_bytes(ceiling)} buffer pool)", restart)


def _storage(inputs: MysqlInputs, cur: _Current, propose: Any) -> None:
    kind = inputs.storage.kind
    if kind == "ssd":
        propose("innodb_io_capacity", "1000", f"flash storage ({inputs.storage.evidence}): the default "
                "200 suits one spinning disk")
        propose("innodb_io_capacity_max", "2000", "twice innodb_io_capacity")
    elif kind == "hdd":
        propose("innodb_io_capacity", "200", f"spinning disk ({inputs.storage.evidence})")
    known = cur.text("innodb_flush_method")
    if known is None and inputs.flavor == "mariadb" and inputs.version >= (10, 6, 0):
        return  # MariaDB 10.6+ defaults to O_DIRECT
    propose("innodb_flush_method", "O_DIRECT", "the buffer pool is the cache: O_DIRECT avoids keeping every "
            "page twice (again in the OS page cache); MariaDB 10.6+ defaults to it", restart=True)


def _table_cache(inputs: MysqlInputs, cur: _Current, propose: Any) -> None:
    size = cur.number("table_open_cache")
    opened, misses = inputs.open_tables, inputs.table_open_cache_miss_ratio
    if opened is None:
        return
    if opened >= 0.9 * size or (misses or 0) > 0.1:
        wanted = max(size, int(opened * 1.5), 400)
        propose("table_open_cache", str(-(-wanted // 100) * 100),
                f"{opened} tables open of a {size}-entry cache, {round((misses or 0) * 100, 1)}% misses")


# ---------------------------------------------------------------------------------------------
# outputs


def _chosen(tuning: MysqlTuning, only_changed: bool) -> list[Proposal]:
    return [p for p in tuning.settings.values() if p.changed or not only_changed]


def as_conf(tuning: MysqlTuning, only_changed: bool = True) -> str:
    """A my.cnf fragment for conf.d (/etc/mysql/conf.d/ in the images)."""
    lines = [f"# stackaudit tune mysql: {tuning.sentence()}", f"# worst case: {tuning.worst_case.arithmetic}",
             "[mysqld]"]
    lines += [f"{p.name} = {p.recommended}{'  # restart' if p.restart else ''}"
              for p in _chosen(tuning, only_changed)]
    return "\n".join(lines) + "\n"


def as_compose_flags(tuning: MysqlTuning, only_changed: bool = True) -> list[str]:
    """The images' documented way: options as arguments of the container command."""
    return [f"--{p.name.replace('_', '-')}={p.recommended}" for p in _chosen(tuning, only_changed)]


def as_compose(tuning: MysqlTuning, service: str, only_changed: bool = True) -> str:
    command = ", ".join(json.dumps(f) for f in as_compose_flags(tuning, only_changed))
    return (f"# stackaudit tune mysql: {tuning.sentence()}\n"
            f"services:\n  {service}:\n    command: [{command}]\n")


def as_sql(tuning: MysqlTuning, only_changed: bool = True) -> str:
    """MySQL 8: SET PERSIST (PERSIST_ONLY for what needs a restart). MariaDB has no SET PERSIST:
    SET GLOBAL for now, and the conf fragment to keep it."""
    chosen = _chosen(tuning, only_changed)
    lines = [f"-- stackaudit tune mysql: {tuning.sentence()}"]
    if tuning.inputs.flavor == "mysql" and tuning.inputs.version >= (8, 0, 0):
        lines += [f"SET {'PERSIST_ONLY' if p.restart else 'PERSIST'} {p.name} = {sql_value(p.recommended)};"
                  for p in chosen]
    else:
        lines.append("-- MariaDB has no SET PERSIST: these last until a restart; keep them with "
                     "--format conf")
        lines += [f"SET GLOBAL {p.name} = {sql_value(p.recommended)};" for p in chosen if not p.restart]
    restart = [p.name for p in chosen if p.restart]
    if restart:
        lines.append(f"-- needs a restart (config file or command line): {', '.join(restart)}")
    return "\n".join(lines) + "\n"


def sql_value(value: str) -> str:
    """A value as SET GLOBAL takes it: sizes in bytes, numbers as they are, words quoted."""
    if value.isdigit():
        return value
    try:
        return str(parse_memory(value))
    except UnitError:
        return f"'{value}'"
