"""PostgreSQL settings from a memory budget, the cores, the storage evidence and the statistics.

Pure: `memory_budget(facts)`, `inputs_from_facts(facts, ...)`, `recommend(inputs)` and
`tune(facts, ...)` read only the facts they are given. Every proposal carries the current value (as
PostgreSQL writes it), the recommended one, whether it needs a restart and a reason with the numbers.

Where the numbers come from, and where we deliberately differ from the usual "25% of RAM":
- PostgreSQL docs, "Resource Consumption" (runtime-config-resource.html): 25% of RAM is a *starting
  point for a dedicated server*; more than 40% is unlikely to help; work_mem is per sort/hash node
  and per session (hash nodes get work_mem x hash_mem_multiplier, 2.0 since PG15).
- PGTune (le0pard/pgtune, read as a reference point, not copied): shared_buffers = RAM/4,
  effective_cache_size = 3/4 RAM, maintenance_work_mem = RAM/16 capped, work_mem = (RAM -
  shared_buffers) / (3 x max_connections) / workers per gather, max_wal_size 4GB for web.
- Measured on our 2-core test machine (issue 10; pgbench, PG15, 3 rounds): with data that fits the
  page cache, shared_buffers 128MB vs 6GB changed read-only TPS by 0-7%; on a read/write load the
  8-10% gain came from spacing checkpoints (max_wal_size), not from memory; on a 2 GiB cgroup with
  4.5 GB of data a larger shared_buffers was *worse* (512MB: 0.94x, 1GB: 0.86x of 128MB: double
  buffering with the page cache); work_mem 62-256MB made the planner drop a parallel sort that ran
  2x faster with 4MB. bench.tuning (docs/benchmarks.md) then measured a 4GiB host, where a quarter
  of the budget beat 224MB on data larger than RAM. Hence: small shared_buffers on budgets up to
  2GiB, a quarter of the budget from 3GiB; modest work_mem; max_wal_size only from the checkpoint
  statistics.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from stackaudit.shapes import number
from stackaudit.tuning.units import (
    GB,
    KB,
    MB,
    UnitError,
    format_memory,
    parse_memory,
    parse_time_ms,
    round_memory,
)
from stackaudit.units import format_bytes

WORKLOADS = ("web", "oltp", "analytics", "mixed")
DEFAULT_WORKLOAD = "web"

# Settings whose context is "postmaster" (change only on restart) -- used when the server's own
# pg_settings.context is not at hand (what-if mode). Docs: each parameter's "can only be set at
# server start".
RESTART_SETTINGS = frozenset({
    "shared_buffers", "huge_pages", "max_connections", "max_worker_processes", "wal_buffers",
    "io_method", "io_workers_max", "max_files_per_process", "shared_preload_libraries",
})

# PostgreSQL's defaults, used as "current" when the server cannot be reached (what-if mode).
# Docs of each version; hash_mem_multiplier went 1.0 -> 2.0 in PG15, effective_io_concurrency 1 ->
# 16 in PG18, checkpoint_completion_target 0.5 -> 0.9 in PG14.
def postgres_defaults(major: int) -> dict[str, str]:
    return {
        "max_connections": "100",
        "shared_buffers": "128MB",
        "effective_cache_size": "4GB",
        "work_mem": "4MB",
        "hash_mem_multiplier": "2" if major >= 15 else "1",
        "maintenance_work_mem": "64MB",
        "autovacuum_work_mem": "-1",
        "autovacuum_max_workers": "3",
        "wal_buffers": "4MB",  # -1 = shared_buffers/32 capped at 16MB: 4MB for 128MB
        "min_wal_size": "80MB",
        "max_wal_size": "1GB",
        "checkpoint_timeout": "5min",
        "checkpoint_completion_target": "0.9" if major >= 14 else "0.5",
        "max_worker_processes": "8",
        "max_parallel_workers": "8",
        "max_parallel_workers_per_gather": "2",
        "max_parallel_maintenance_workers": "2",
        "random_page_cost": "4",
        "effective_io_concurrency": "16" if major >= 18 else "1",
        "huge_pages": "try",
        **({"io_method": "worker"} if major >= 18 else {}),
    }


MEMORY_SETTINGS = frozenset({
    "shared_buffers", "effective_cache_size", "work_mem", "maintenance_work_mem", "autovacuum_work_mem",
    "wal_buffers", "min_wal_size", "max_wal_size",
})

Propose = Callable[..., None]


@dataclass(frozen=True)
class CoTenant:
    name: str
    kind: str
    bytes: int
    basis: str  # "limit" | "measured" | "estimate"
    detail: str


@dataclass(frozen=True)
class Budget:
    """The memory PostgreSQL may use, and how it was worked out."""

    host_memory_bytes: int
    postgres_limit_bytes: int | None  # the PostgreSQL container's or process's own cgroup limit
    total_bytes: int  # min(host RAM, that limit)
    co_tenants: tuple[CoTenant, ...]
    os_reserve_bytes: int
    postgres_bytes: int
    notes: tuple[str, ...] = ()

    @property
    def co_tenants_bytes(self) -> int:
        return sum(c.bytes for c in self.co_tenants)

    def sentence(self) -> str:
        """'23GB RAM - 4.6GB for 9 co-located services - 1.7GB OS reserve = 16.7GB'."""
        parts = [f"{format_bytes(self.host_memory_bytes)} RAM"]
        if self.co_tenants:
            parts.append(f"{format_bytes(self.co_tenants_bytes)} for {len(self.co_tenants)} co-located "
                         f"service(s)")
        parts.append(f"{format_bytes(self.os_reserve_bytes)} OS reserve")
        left = self.host_memory_bytes - self.co_tenants_bytes - self.os_reserve_bytes
        text = " - ".join(parts) + f" = {format_bytes(left)} for PostgreSQL"
        if self.postgres_limit_bytes is not None and self.postgres_limit_bytes < left:
            text += (f", capped by its own memory limit: {format_bytes(self.postgres_bytes)}")
        elif self.postgres_bytes != left:
            text += f" (at least {format_bytes(self.postgres_bytes)} assumed)"
        return text


@dataclass(frozen=True)
class Storage:
    kind: str  # "ssd" | "hdd" | "unknown"
    confidence: str  # "high" | "medium" | "low"
    evidence: str


@dataclass(frozen=True)
class TuneInputs:
    budget: Budget
    cpus: int
    major: int
    max_connections: int
    workload: str
    workload_reason: str
    storage: Storage
    current: Mapping[str, Mapping[str, Any]]  # pg_settings rows by name (may be empty)
    server_reached: bool
    checkpoints: Mapping[str, Any] = field(default_factory=dict)
    checkpoint_seconds: float | None = None  # seconds the checkpoint counters have run
    wal_bytes_per_second: float | None = None
    temp_bytes: int | None = None
    temp_files: int | None = None
    data_bytes: int | None = None  # all databases together
    scanned_table_bytes: int | None = None  # the largest table read in full again and again
    data_free_bytes: int | None = None  # free space on the mount that holds the data (and WAL)


@dataclass(frozen=True)
class Proposal:
    name: str
    current: str | None
    recommended: str
    restart: bool
    reason: str
    changed: bool
    source: str  # where the live value comes from, in words
    confidence: str | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"current": self.current, "recommended": self.recommended,
                                "restart": self.restart, "reason": self.reason, "changed": self.changed,
                                "source": self.source}
        if self.confidence:
            data["confidence"] = self.confidence
        return data


@dataclass(frozen=True)
class WorstCase:
    bytes: int
    arithmetic: str


class BudgetedTuning:
    """What every database tuner's result shares (PostgreSQL's Tuning, tuning.mysql's MysqlTuning):
    its memory budget, whether the recommended worst case fits it, and what would change."""

    inputs: Any  # has .budget
    settings: dict[str, Proposal]
    worst_case: WorstCase

    @property
    def budget(self) -> Budget:
        return self.inputs.budget  # type: ignore[no-any-return]

    @property
    def fits(self) -> bool:
        return self.worst_case.bytes <= self.budget.postgres_bytes

    def changed(self) -> list[Proposal]:
        return [p for p in self.settings.values() if p.changed]


@dataclass(frozen=True)
class Tuning(BudgetedTuning):
    inputs: TuneInputs
    settings: dict[str, Proposal]
    worst_case: WorstCase
    worst_case_current: WorstCase | None

    def to_json(self) -> dict[str, Any]:
        budget, current = self.budget, self.worst_case_current
        return {
            "budget": {
                "total_bytes": budget.total_bytes,
                "postgres_bytes": budget.postgres_bytes,
                "co_tenants": {c.name: c.bytes for c in budget.co_tenants},
                "co_tenant_basis": {c.name: f"{c.basis}: {c.detail}" for c in budget.co_tenants},
                "os_reserve_bytes": budget.os_reserve_bytes,
                "host_memory_bytes": budget.host_memory_bytes,
                "postgres_limit_bytes": budget.postgres_limit_bytes,
                "worst_case_bytes": self.worst_case.bytes,
                "worst_case_arithmetic": self.worst_case.arithmetic,
                "worst_case_current_bytes": current.bytes if current else None,
                "worst_case_current_arithmetic": current.arithmetic if current else None,
                "fits": self.fits,
                "explanation": budget.sentence(),
                "notes": list(budget.notes),
            },
            "inputs": {
                "cpus": self.inputs.cpus, "major": self.inputs.major,
                "max_connections": self.inputs.max_connections, "workload": self.inputs.workload,
                "workload_reason": self.inputs.workload_reason, "storage": self.inputs.storage.kind,
                "storage_confidence": self.inputs.storage.confidence,
                "storage_evidence": self.inputs.storage.evidence,
                "server_reached": self.inputs.server_reached,
            },
            "settings": {name: p.to_json() for name, p in self.settings.items()},
        }


# --------------------------------------------------------------------------------------------
# Reading the facts (defensively: any key may be missing)
# --------------------------------------------------------------------------------------------











def setting_value(row: Mapping[str, Any], name: str) -> float | None:
    """A setting in base units (bytes for memory, ms for time, else the number); None if unknown."""
    base = number(row.get("base_value"))
    if base is not None:
        return base
    value = row.get("value")
    if value is None:
        return None
    return _parse_any(name, str(value))


def _parse_any(name: str, text: str) -> float | None:
    try:
        if name in MEMORY_SETTINGS:
            return float(parse_memory(text, "kB"))
        if name.endswith("_timeout"):
            return parse_time_ms(text, "s")
        return float(text)
    except (UnitError, ValueError):
        return None


def describe_source(row: Mapping[str, Any]) -> str:
    """Where a live value comes from, in words (pg_settings.source / sourcefile / sourceline)."""
    source = str(row.get("source") or "")
    sourcefile = str(row.get("sourcefile") or "")
    line = row.get("sourceline")
    if not source:
        return "unknown (not read from the server)"
    if source == "configuration file":
        if sourcefile.endswith("postgresql.auto.conf"):
            return f"ALTER SYSTEM ({sourcefile})"
        where = f"{sourcefile} line {line}" if sourcefile and line else sourcefile or "a configuration file"
        return f"configuration file {where}"
    if source == "command line":
        return "command line (-c / postgres arguments), which overrides postgresql.conf and ALTER SYSTEM"
    if source == "default":
        return "PostgreSQL's built-in default"
    if source == "environment variable":
        return "an environment variable of the server"
    return source




def os_reserve(host_ram: int) -> int:
    """Kernel, page tables, sshd, dockerd, log shippers: max(512MB, 7.5% of RAM) (ours; PGTune
    keeps none, the docs' 25% start implies the rest stays with the OS)."""
    return max(512 * MB, int(host_ram * 0.075))








































# --------------------------------------------------------------------------------------------
# The recommendations
# --------------------------------------------------------------------------------------------

class _Current:
    """Current values in base units: the server's when reached, else PostgreSQL's defaults."""

    def __init__(self, inputs: TuneInputs) -> None:
        self.rows = inputs.current
        self.defaults = postgres_defaults(inputs.major)

    def text(self, name: str) -> str | None:
        row = self.rows.get(name)
        if row and row.get("value") is not None:
            return str(row["value"])
        if row and row.get("base_value") is not None and name in MEMORY_SETTINGS:
            return format_memory(float(row["base_value"]))
        return self.defaults.get(name)

    def number(self, name: str) -> float | None:
        row = self.rows.get(name)
        if row:
            value = setting_value(row, name)
            if value is not None:
                return value
        default = self.defaults.get(name)
        return _parse_any(name, default) if default is not None else None

    def source(self, name: str) -> str:
        if not self.rows:
            return "PostgreSQL's default (server not reached: assumed)"
        if name not in self.rows:
            return "not reported by the server: PostgreSQL's default assumed"
        return describe_source(self.rows[name])

    def restart(self, name: str) -> bool:
        row = self.rows.get(name) or {}
        if row.get("context"):
            return row.get("context") == "postmaster"
        return name in RESTART_SETTINGS






def shared_buffers_for(budget_bytes: int, data_bytes: int | None = None,
                       scanned_table_bytes: int | None = None) -> tuple[int, str]:
    """A quarter of the budget from a 3GiB budget up (docs: 25% is the *start* for a dedicated
    server; >40% is unlikely to help), budget/16 within 128-256MB up to 2GiB, a straight line between.
    Measured: on a 2GiB cgroup with 4.5GB of data more was worse (512MB 0.94x, 1GB 0.86x of 128MB:
    double buffering with the page cache); on a 4GiB host (3.5GB budget) with the same data, 1GB did
    1.18x and 224MB 1.07x of 128MB (bench.tuning run 2, rw-big). Never more than twice the data --
    unless a table read in full again and again needs more to stay cached (_hold_scanned_table); and
    when the whole data set fits in a quarter of the budget, enough to hold it (bench.tuning,
    select-only on a 4GiB host: 224MB of buffers found 76% of reads there, 1GB holding the 750MB of
    data 97%)."""
    if budget_bytes <= 2 * GB:
        size = min(256 * MB, max(128 * MB, budget_bytes // 16))
        why = f"budget {format_bytes(budget_bytes)} <= 2GB: kept small (budget/16, 128-256MB)"
    elif budget_bytes < 3 * GB:
        size = 128 * MB + (768 - 128) * MB * (budget_bytes - 2 * GB) // GB
        why = f"budget {format_bytes(budget_bytes)} between 2GB and 3GB: between 128MB and a quarter"
    else:
        size = budget_bytes // 4
        why = f"a quarter of the budget ({format_bytes(budget_bytes)})"
    ceiling = size
    if data_bytes is not None and size > max(128 * MB, 2 * data_bytes):
        size = max(128 * MB, 2 * data_bytes)
        why += f"; capped at twice the data ({format_bytes(data_bytes)}): more would stay empty"
    room = min(data_bytes * 5 // 4, budget_bytes // 4) if data_bytes is not None else 0
    if data_bytes is not None and data_bytes <= budget_bytes // 4 and size < room:
        size = room  # the data plus a quarter for growth, within a quarter of the budget
        why += (f"; raised to hold the whole data set ({format_bytes(data_bytes)}, within a quarter of "
                "the budget)")
    size, why = _hold_scanned_table(size, why, ceiling, scanned_table_bytes)
    return round_memory(size), why


def _hold_scanned_table(size: int, why: str, ceiling: int, scanned_bytes: int | None) -> tuple[int, str]:
    """A sequential scan of a table larger than a quarter of shared_buffers reads through a small
    ring of buffers (BAS_BULKREAD; heapam.c initscan: rs_nblocks > NBuffers / 4; buffer/README
    "Buffer Ring Replacement Strategy"), so such a table is never kept in shared_buffers however
    often it is scanned, and every scan copies it again from the page cache. When a table is read in
    full as a habit and 4.4x its size (4x plus a tenth for growth) is within what the budget allows,
    size shared_buffers for it (bench.tuning, analytic on a 23GiB host: 1536MB of buffers left a
    640MB table on the ring, 52% buffer hits; 2944MB held it, 100%, 14% less CPU per query)."""
    if not scanned_bytes or size >= 4 * scanned_bytes:
        return size, why
    needed = round_memory(scanned_bytes * 4.4, up=True)
    if needed > ceiling:
        return size, why + (f"; a table of {format_bytes(scanned_bytes)} is read in full repeatedly, "
                            f"but keeping it cached would need {format_bytes(needed)} (4x it), beyond "
                            "the budget's share")
    return needed, why + (f"; raised to 4.4x the largest table read in full repeatedly "
                          f"({format_bytes(scanned_bytes)}): scans of a table above a quarter of "
                          "shared_buffers bypass the cache")


def worst_case(max_connections: int, parallel_workers: int, work_mem: float, hash_mem_multiplier: float,
               shared_buffers: float, maintenance_work_mem: float, autovacuum_work_mem: float,
               autovacuum_max_workers: int, wal_buffers: float) -> WorstCase:
    """Every backend and parallel worker running one hash node at work_mem x hash_mem_multiplier at
    once, plus shared memory, one manual maintenance task and every autovacuum worker (docs:
    "Resource Consumption"). A query can run several such nodes, so this is a floor of the true
    worst case, not a ceiling."""
    sessions = max_connections + parallel_workers
    work = sessions * work_mem * hash_mem_multiplier
    autovacuum = autovacuum_max_workers * autovacuum_work_mem
    total = work + shared_buffers + maintenance_work_mem + autovacuum + wal_buffers
    arithmetic = (
        f"({max_connections} connections + {parallel_workers} parallel workers) x work_mem "
        f"{format_memory(work_mem)} x hash_mem_multiplier {hash_mem_multiplier:g} = {format_bytes(work)}"
        f" + shared_buffers {format_memory(shared_buffers)} + maintenance_work_mem "
        f"{format_memory(maintenance_work_mem)} + {autovacuum_max_workers} autovacuum workers x "
        f"{format_memory(autovacuum_work_mem)} + wal_buffers {format_memory(wal_buffers)} "
        f"= {format_bytes(total)}"
    )
    return WorstCase(int(total), arithmetic)


WORK_MEM_BASE = {"web": 16 * MB, "oltp": 8 * MB, "mixed": 16 * MB, "analytics": 32 * MB}
WORK_MEM_CAP = {"web": 32 * MB, "oltp": 16 * MB, "mixed": 32 * MB, "analytics": 64 * MB}
MAX_WAL_FLOOR = {"web": GB, "oltp": 2 * GB, "mixed": GB, "analytics": 2 * GB}


def _parallel(cpus: int, workload: str) -> dict[str, int]:
    """per_gather ~ cores/2 (one query never takes every core), max_parallel_workers = cores,
    max_worker_processes never below 8, its default, which extensions and logical replication also
    draw from (ERRATA 6; docs "Asynchronous Behavior"). Capped at 4 per gather for web/oltp."""
    per_gather_cap = 8 if workload == "analytics" else 4
    return {
        "max_worker_processes": max(8, cpus),
        "max_parallel_workers": cpus,
        "max_parallel_workers_per_gather": min(per_gather_cap, cpus // 2),
        "max_parallel_maintenance_workers": min(4, max(1, cpus // 2)),
    }


def recommend(inputs: TuneInputs) -> Tuning:
    """All proposals for one server, in a stable order, plus the worst-case arithmetic."""
    cur = _Current(inputs)
    budget = inputs.budget.postgres_bytes
    out: dict[str, Proposal] = {}

    def propose(name: str, value: str, reason: str, confidence: str | None = None) -> None:
        current = cur.text(name)
        changed = current is None or not _same(name, current, value)
        out[name] = Proposal(name, current, value, cur.restart(name), reason, changed, cur.source(name),
                             confidence)

    sb, sb_why = shared_buffers_for(budget, inputs.data_bytes, inputs.scanned_table_bytes)
    propose("shared_buffers", format_memory(sb),
            f"{sb_why}. PostgreSQL's own cache; the OS page cache holds the rest (measured here: "
            f"128MB vs 6GB changed read-only TPS by 0-7% when the data fit the page cache).")

    # effective_cache_size: what one query may find cached, shared_buffers plus the page cache. We
    # take shared_buffers plus 70% of the rest of the budget (30% for backends' own memory).
    ecs = round_memory(sb + (budget - sb) * 0.7)
    propose("effective_cache_size", format_memory(ecs),
            f"shared_buffers {format_memory(sb)} + 70% of the remaining budget "
            f"{format_bytes(budget - sb)}: a planner estimate only, nothing is allocated.")

    # Maintenance: docs suggest larger than work_mem; PGTune RAM/16. Capped at 1GB (autovacuum could
    # not use more than 1GB before PG17, and index builds gain little beyond).
    mwm = round_memory(min(GB, max(64 * MB, budget // 16)))
    avwm = round_memory(min(512 * MB, max(64 * MB, budget // 64)))
    av_workers = int(cur.number("autovacuum_max_workers") or 3)
    propose("maintenance_work_mem", format_memory(mwm),
            "budget/16 within 64MB-1GB: one manual VACUUM/CREATE INDEX at a time.")
    propose("autovacuum_work_mem", format_memory(avwm),
            f"budget/64 within 64MB-512MB, because {av_workers} autovacuum workers can each use it at once.")

    # wal_buffers: what -1 computes (shared_buffers/32, at most one 16MB WAL segment).
    wal_buffers = min(16 * MB, max(64 * KB, sb // 32))
    propose("wal_buffers", format_memory(wal_buffers),
            "shared_buffers/32, at most 16MB (what the default -1 computes; more rarely helps).")

    parallel = _parallel(inputs.cpus, inputs.workload)
    hash_mult = cur.number("hash_mem_multiplier") or (2.0 if inputs.major >= 15 else 1.0)
    wm, wm_why = _work_mem(inputs, budget, sb, mwm, avwm * av_workers + wal_buffers, hash_mult,
                           parallel["max_parallel_workers"])
    propose("work_mem", format_memory(wm), wm_why)

    _wal_proposals(inputs, cur, propose)
    propose("checkpoint_completion_target", "0.9",
            "spread checkpoint writes over 90% of the interval (the default since PG14).")

    cores = inputs.cpus
    propose("max_worker_processes", str(parallel["max_worker_processes"]),
            f"never below the default 8: extensions and logical replication share this pool ({cores} cores).")
    propose("max_parallel_workers", str(parallel["max_parallel_workers"]),
            f"one parallel worker per core ({cores}) across all queries.")
    propose("max_parallel_workers_per_gather", str(parallel["max_parallel_workers_per_gather"]),
            f"about half the {cores} cores, so one query cannot take every core.")
    propose("max_parallel_maintenance_workers", str(parallel["max_parallel_maintenance_workers"]),
            f"about half the {cores} cores for index builds, at most 4.")

    _storage_proposals(inputs, cur, propose)
    _huge_pages(sb, cur, propose)
    if inputs.major >= 18:
        propose("io_method", cur.text("io_method") or "worker",
                "PG18's asynchronous I/O: the default 'worker' works everywhere; io_uring needs a build "
                "and kernel with it, and no measurement here shows a gain.")

    recommended = worst_case(inputs.max_connections, parallel["max_parallel_workers"], wm, hash_mult, sb,
                             mwm, avwm, av_workers, wal_buffers)
    return Tuning(inputs, out, recommended, current_worst_case(inputs))


def current_worst_case(inputs: TuneInputs) -> WorstCase | None:
    """The worst case of the live settings (None when the server was not reached)."""
    if not inputs.server_reached:
        return None
    cur = _Current(inputs)

    def get(name: str, default: float) -> float:
        value = cur.number(name)
        return default if value is None else value

    mwm = get("maintenance_work_mem", 64 * MB)
    avwm = get("autovacuum_work_mem", -1)
    sb = get("shared_buffers", 128 * MB)
    wal = get("wal_buffers", -1)
    return worst_case(
        inputs.max_connections, int(get("max_parallel_workers", 8)), get("work_mem", 4 * MB),
        get("hash_mem_multiplier", 2.0 if inputs.major >= 15 else 1.0), sb, mwm,
        mwm if avwm < 0 else avwm, int(get("autovacuum_max_workers", 3)),
        min(16 * MB, sb / 32) if wal < 0 else wal,
    )


def _work_mem(inputs: TuneInputs, budget: int, sb: int, mwm: int, other: int, hash_mult: float,
              parallel_workers: int) -> tuple[int, str]:
    """The largest work_mem whose worst case fits the budget, within a modest range per workload
    (measured: 62-256MB made the planner drop a 2x faster parallel sort). Raised one step where temp
    files show spills -- but per-role settings are the better fix."""
    sessions = inputs.max_connections + parallel_workers
    left = budget - sb - mwm - other
    bound = max(0.0, left / (sessions * hash_mult))
    base = WORK_MEM_BASE.get(inputs.workload, WORK_MEM_BASE["web"])
    cap = WORK_MEM_CAP.get(inputs.workload, WORK_MEM_CAP["web"])
    spills = inputs.temp_bytes is not None and inputs.temp_bytes > GB
    target = cap if spills else base
    value = round_memory(min(bound, target)) if bound >= MB else MB
    why = (f"worst case ({inputs.max_connections} connections + {parallel_workers} parallel workers) x "
           f"work_mem x hash_mem_multiplier {hash_mult:g} must fit the {format_bytes(left)} left after "
           f"shared_buffers and maintenance: at most {format_bytes(bound)}; {inputs.workload} workload "
           f"keeps it at {format_memory(target)} or less so the planner keeps parallel plans")
    if bound < MB:
        why += "; even 1MB does not fit: lower max_connections (use a pooler such as PgBouncer)"
    if spills:
        why += (f"; temp files show {format_bytes(inputs.temp_bytes or 0)} spilled: prefer "
                f"ALTER ROLE <reporting role> SET work_mem for the queries that spill")
    elif inputs.temp_bytes is None:
        why += "; no temp-file statistics (not enough data to judge spills)"
    return value, why + "."


def _wal_proposals(inputs: TuneInputs, cur: _Current, propose: Propose) -> None:
    """max_wal_size from the checkpoint statistics. A checkpoint is requested when the WAL since the
    last one exceeds max_wal_size / (1 + checkpoint_completion_target) (xlog.c,
    CalculateCheckpointSegments; docs "WAL Configuration"); we want timed ones to dominate."""
    current_max = cur.number("max_wal_size") or GB
    current_min = cur.number("min_wal_size") or 80 * MB
    timeout_s = (cur.number("checkpoint_timeout") or 300_000) / 1000
    target, why = _max_wal_target(inputs, current_max, timeout_s)
    if inputs.data_free_bytes and target > current_max and target > inputs.data_free_bytes // 4:
        capped = int(max(current_max, round_memory(inputs.data_free_bytes // 4)))
        why += (f"; capped at a quarter of the {format_bytes(inputs.data_free_bytes)} free on the data "
                f"disk ({format_memory(capped)})")
        target = capped
    propose("max_wal_size", format_memory(target), why + ".")
    # Only follows a change of max_wal_size: without checkpoint evidence both stay.
    min_wal = max(current_min, round_memory(target // 4)) if target > current_max else current_min
    propose("min_wal_size", format_memory(min_wal),
            "a quarter of max_wal_size: recycled WAL segments instead of new files after quiet periods."
            if target > current_max else "kept: it follows max_wal_size, which stays.")


def _max_wal_target(inputs: TuneInputs, current_max: float, timeout_s: float) -> tuple[int, str]:
    cp = inputs.checkpoints
    timed = number(cp.get("checkpoints_timed", cp.get("num_timed")))
    requested = number(cp.get("checkpoints_requested", cp.get("checkpoints_req", cp.get("num_requested"))))
    keep = int(current_max)
    if timed is None or requested is None:
        return keep, "not enough data: no checkpoint statistics, so max_wal_size stays"
    total = timed + requested
    if total < 5:
        return keep, f"not enough data: only {total:.0f} checkpoints since the statistics reset"
    share = requested / total
    stats = f"{requested:.0f} of {total:.0f} checkpoints were requested ({share:.0%})"
    floor = MAX_WAL_FLOOR.get(inputs.workload, GB)
    if inputs.wal_bytes_per_second:
        # WAL of one checkpoint_timeout x (1 + completion target), with 50% headroom for peaks.
        needed = inputs.wal_bytes_per_second * timeout_s * 1.9 * 1.5
        target = max(floor, keep, math.ceil(needed / GB) * GB)
        return target, (f"{stats}; WAL rate {format_bytes(inputs.wal_bytes_per_second)}/s x "
                        f"{timeout_s:.0f}s checkpoint_timeout x 1.9 x 1.5 headroom = {format_bytes(needed)}")
    if share <= 0.1:
        return keep, f"{stats}: timed checkpoints dominate, max_wal_size is large enough"
    factor = 2 if share < 0.5 else 4
    target = max(floor, math.ceil(current_max * factor / GB) * GB)
    return target, (f"{stats}: {factor}x the current {format_memory(current_max)} to space them out "
                    f"(measured here: the read/write gain came from this, ~8-10%)")


def _storage_proposals(inputs: TuneInputs, cur: _Current, propose: Propose) -> None:
    """random_page_cost 1.1 and effective_io_concurrency 200 on SSD (PGTune's values; docs
    "Planner Cost Constants"), 4 and 2 on HDD; unchanged without evidence (ERRATA 7)."""
    storage = inputs.storage
    note = f"storage {storage.kind} ({storage.confidence} confidence: {storage.evidence})"
    if storage.kind == "unknown":
        for name in ("random_page_cost", "effective_io_concurrency"):
            propose(name, cur.text(name) or postgres_defaults(inputs.major)[name],
                    f"kept: {note}; a random-read probe of the data disk would decide.", storage.confidence)
        return
    ssd = storage.kind == "ssd"
    propose("random_page_cost", "1.1" if ssd else "4",
            f"{note}: random reads cost {'about the same as' if ssd else '4x'} sequential ones; changes "
            "only plan choice (index vs sequential scans).", storage.confidence)
    propose("effective_io_concurrency", "200" if ssd else "2",
            f"{note}: how many reads to issue ahead (bitmap heap scans, PG18 read streams).",
            storage.confidence)


def _huge_pages(sb: int, cur: _Current, propose: Propose) -> None:
    """Huge pages cut page-table memory and TLB misses for large shared memory (docs "Linux Huge
    Pages"). 'try' uses them when the kernel has them reserved; 'on' refuses to start without."""
    current = cur.text("huge_pages") or "try"
    if sb >= 8 * GB:
        pages = math.ceil(sb * 1.05 / (2 * MB))
        propose("huge_pages", current if current in ("try", "on") else "try",
                f"shared_buffers {format_memory(sb)} >= 8GB: reserve about {pages} 2MB pages "
                f"(sysctl vm.nr_hugepages; exact: postgres -C shared_memory_size_in_huge_pages, PG15+).")
    else:
        propose("huge_pages", current,
                f"shared_buffers {format_memory(sb)} < 8GB: not worth reserving pages.")


def _same(name: str, current: str, recommended: str) -> bool:
    a, b = _parse_any(name, current), _parse_any(name, recommended)
    if a is not None and b is not None:
        return abs(a - b) < 1e-9 or (a > 0 and abs(a - b) / a < 0.01)
    return current.strip().lower() == recommended.strip().lower()




def shm_size_bytes(tuning: Tuning) -> int:
    """/dev/shm for parallel query's dynamic shared memory (Docker's default 64MB makes parallel hash
    joins fail with 'could not resize shared memory segment'): parallel workers x work_mem x
    hash_mem_multiplier x 2, at least 256MB, in 64MB steps."""
    settings = tuning.settings
    work_mem = parse_memory(settings["work_mem"].recommended, "kB")
    workers = int(settings["max_parallel_workers"].recommended)
    needed = max(256 * MB, workers * work_mem * 2 * 2)
    return int(math.ceil(needed / (64 * MB)) * 64 * MB)
