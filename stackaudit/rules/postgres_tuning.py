"""PostgreSQL settings against the tuner (PG001-PG003, PG006-PG008).

Each rule compares a live setting with the tuning `stackaudit.derive` made for the audit
(`derived.postgres`), says what the setting really does (ERRATA 4: the planner never looks at
shared_buffers) and where its live value comes from (pg_settings.source: a -c on the command line
overrides ALTER SYSTEM). Estimated effects are modest on purpose (ERRATA 5): `stackaudit verify`
measures the real one.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from stackaudit.config import Settings
from stackaudit.derive import Derived
from stackaudit.derive.postgres import setting_row
from stackaudit.facts import Facts
from stackaudit.model import Evidence, Hit, Phase, Recommendation, Risk, Severity
from stackaudit.rules import rule
from stackaudit.tuning.postgres import Tuning, describe_source, setting_value
from stackaudit.tuning.units import MB, format_memory, parse_memory
from stackaudit.units import format_bytes

MEASURE = "Measure with `stackaudit verify` before and after."


def _current(facts: Facts, name: str) -> tuple[float | None, dict[str, Any]]:
    row = setting_row(facts, name)
    return (setting_value(row, name) if row else None), row


def _shown(row: dict[str, Any], fallback: float, name: str) -> str:
    value = row.get("value")
    if value is not None:
        return str(value)
    is_memory = any(word in name for word in ("mem", "buffers", "size"))
    return format_memory(fallback) if is_memory else f"{fallback:g}"


def how_to_set(facts: Facts, changes: dict[str, str]) -> str:
    """The command that changes these settings where they really come from: the compose command
    when a -c sets them (it overrides ALTER SYSTEM), else ALTER SYSTEM."""
    from_command_line = [n for n in changes if setting_row(facts, n).get("source") == "command line"]
    if from_command_line:
        flags = " ".join(f"-c {n}={v}" for n, v in changes.items())
        return (f"edit the PostgreSQL service's `command:` ({flags}); "
                "`stackaudit tune postgres --format compose` writes the override")
    statements = " ".join(f"ALTER SYSTEM SET {n} = '{v}';" for n, v in changes.items())
    return statements + " SELECT pg_reload_conf();"


def _restart(tuning: Tuning, names: list[str]) -> bool:
    return any(tuning.settings[n].restart for n in names if n in tuning.settings)


def _recommendation(facts: Facts, tuning: Tuning, summary: str, effect: str, changes: dict[str, str],
                    phase: Phase = Phase.WEEK) -> Recommendation:
    restart = _restart(tuning, list(changes))
    return Recommendation(
        summary=summary + (" Needs a restart." if restart else " A reload is enough."),
        estimated_effect=effect, risk=Risk.CONFIRM if restart else Risk.SAFE,
        effort_minutes=15 if restart else 5, phase=phase, action=how_to_set(facts, changes))


def _unless_default(row: dict[str, Any], severity: Severity) -> Severity:
    """PostgreSQL's own default is a weaker signal than a value someone chose."""
    return Severity.LOW if row.get("source") == "default" else severity


def _source_words(row: dict[str, Any]) -> str:
    return describe_source(row) if row else "unknown"


@rule("PG001", "pg-shared-buffers-off-budget", Severity.MEDIUM, needs=("postgres", "host"))
def shared_buffers_off_budget(facts: Facts, settings: Settings, derived: Derived) -> Iterator[Hit]:
    """
    ## What it checks
    shared_buffers against what the memory budget allows: the tuner's value (128-256MB up to a 2GiB
    budget, a quarter of the budget from 3GiB). Fires when the live value is less than half
    (low_ratio) or more than twice (high_ratio) of it, by at least 256MB.

    ## Why it matters
    shared_buffers is PostgreSQL's own page cache, allocated at start. It does not steer the
    planner (effective_cache_size, the page costs and statistics do). Too large on a shared host, it
    takes memory from the app, Redis and the OS page cache, which then caches the same pages twice;
    too small, hot pages go through the kernel's cache with a copy each time.
    The reference audit got this wrong: docs/errata.md, rows 2 and 4.

    ## Recommendation
    Set shared_buffers to the tuner's value (`stackaudit tune postgres`), in the place the live value
    comes from (a `-c` in the compose command overrides ALTER SYSTEM).

    ## Estimated effect
    Modest. Measured here: with data that fits the page cache, 128MB vs 6GB changed read-only TPS by
    0-7%; on a 2GiB host with 4.5GB of data a larger value was slower (0.86x at 1GB). Measure with
    `stackaudit verify`.

    ## Fix safety
    Needs a restart (context postmaster): planned downtime of a few seconds.

    ## References
    - PostgreSQL docs, "Resource Consumption": shared_buffers:
      https://www.postgresql.org/docs/current/runtime-config-resource.html#GUC-SHARED-BUFFERS
    """
    current, row = _current(facts, "shared_buffers")
    if current is None:
        return
    tuning = derived.postgres
    if tuning is None:
        return
    recommended = tuning.settings["shared_buffers"]
    target = float(recommended_bytes(tuning, "shared_buffers"))
    budget = tuning.budget
    low, high = settings.threshold("PG001", "low_ratio"), settings.threshold("PG001", "high_ratio")
    data = tuning.inputs.data_bytes
    evidence = [Evidence("postgres", "shared_buffers_bytes", int(current), int(target)),
                Evidence("postgres", "shared_buffers_source", _source_words(row)),
                Evidence("tuning", "postgres_budget_bytes", budget.postgres_bytes),
                Evidence("tuning", "budget", budget.sentence())]
    if data is not None:
        evidence.append(Evidence("postgres", "data_bytes", data))
    shown = _shown(row, current, "shared_buffers")
    changes = {"shared_buffers": recommended.recommended}
    if current >= high * target and current - target >= 256 * MB:
        severity = Severity.HIGH if current > budget.postgres_bytes / 2 else Severity.MEDIUM
        yield Hit("shared_buffers", (
            f"shared_buffers is {shown} (from {_source_words(row)}), {current / target:.1f}x the "
            f"{recommended.recommended} the memory budget allows ({budget.sentence()}); it takes memory "
            f"from the OS page cache and the co-located services."),
            _recommendation(facts, tuning, f"Lower shared_buffers to {recommended.recommended}.",
                            "Frees memory for the page cache and co-located services; throughput change is "
                            "usually small either way. " + MEASURE, changes), evidence, severity)
    elif current <= low * target and target - current >= 256 * MB and not (data and data <= current):
        yield Hit("shared_buffers", (
            f"shared_buffers is {shown} (from {_source_words(row)}) while the budget "
            f"({format_bytes(budget.postgres_bytes)}) allows {recommended.recommended}. It is PostgreSQL's "
            f"own cache only: the planner does not use it, and data the OS already caches gains little."),
            _recommendation(facts, tuning, f"Raise shared_buffers to {recommended.recommended}.",
                            "Small: measured 0-7% on read-only loads whose data fits the page cache; more "
                            "when the hot set exceeds shared_buffers but fits the budget. " + MEASURE,
                            changes, Phase.MONTH),
            evidence, Severity.LOW)


def recommended_bytes(tuning: Tuning, name: str) -> int:
    return parse_memory(tuning.settings[name].recommended, "kB")


@rule("PG002", "pg-effective-cache-size-off", Severity.LOW, needs=("postgres", "host"))
def effective_cache_size_off(facts: Facts, settings: Settings, derived: Derived) -> Iterator[Hit]:
    """
    ## What it checks
    effective_cache_size against the memory PostgreSQL can really use for caching (shared_buffers
    plus 70% of the rest of its budget). Fires below half (low_ratio) or above 1.5x (high_ratio).

    ## Why it matters
    effective_cache_size allocates nothing: it is the planner's guess of how much of an index or
    table a query will find cached. Too low, index scans look expensive and the planner prefers
    sequential scans; too high (e.g. 65% of RAM on a host shared with the app), it chooses index
    scans that then read from disk.
    The reference audit got this wrong: docs/errata.md, row 4.

    ## Recommendation
    Set it to the tuner's value; a reload is enough.

    ## Estimated effect
    Changes plan choice only, for queries near the index/sequential-scan boundary; none for the
    others. Measure with `stackaudit verify`.

    ## Fix safety
    Safe: reload only, no memory is allocated.

    ## References
    - PostgreSQL docs, "Planner Cost Constants": effective_cache_size:
      https://www.postgresql.org/docs/current/runtime-config-query.html#GUC-EFFECTIVE-CACHE-SIZE
    """
    current, row = _current(facts, "effective_cache_size")
    if current is None:
        return
    tuning = derived.postgres
    if tuning is None:
        return
    target = float(recommended_bytes(tuning, "effective_cache_size"))
    low, high = settings.threshold("PG002", "low_ratio"), settings.threshold("PG002", "high_ratio")
    ratio = current / target
    if low < ratio < high:
        return
    proposal = tuning.settings["effective_cache_size"]
    direction = "low: index scans look more expensive than they are" if ratio <= low else (
        "high: the planner assumes cached data that is not, and picks index scans that read from disk")
    yield Hit("effective_cache_size", (
        f"effective_cache_size is {_shown(row, current, 'effective_cache_size')} (from "
        f"{_source_words(row)}), {ratio:.1f}x the {proposal.recommended} PostgreSQL can really cache "
        f"({tuning.budget.sentence()}); too {direction}. It allocates nothing."),
        _recommendation(facts, tuning, f"Set effective_cache_size to {proposal.recommended}.",
                        "Plan choice only, for queries near the index/sequential-scan boundary. " + MEASURE,
                        {"effective_cache_size": proposal.recommended}, Phase.WEEK),
        [Evidence("postgres", "effective_cache_size_bytes", int(current), int(target)),
         Evidence("postgres", "effective_cache_size_source", _source_words(row)),
         Evidence("tuning", "postgres_budget_bytes", tuning.budget.postgres_bytes)],
        Severity.MEDIUM if ratio >= high else Severity.LOW)


@rule("PG003", "pg-work-mem-overcommit", Severity.HIGH, needs=("postgres", "host"))
def work_mem_overcommit(facts: Facts, settings: Settings, derived: Derived) -> Iterator[Hit]:
    """
    ## What it checks
    The worst case of the live settings: (max_connections + max_parallel_workers) x work_mem x
    hash_mem_multiplier + shared_buffers + maintenance_work_mem + autovacuum workers x their memory,
    against the memory budget left to PostgreSQL.

    ## Why it matters
    work_mem is not per server or per session: every sort and hash node of every session, and of
    every parallel worker, may use it, and hash nodes get work_mem x hash_mem_multiplier (2 since
    PG15). When enough sessions run big queries together the host runs out of memory and the
    kernel (or the container limit) kills a backend, which restarts the whole server. Large values
    also make the planner drop parallel plans (measured here: 62-256MB made a parallel sort that ran
    2x faster with 4MB go serial).
    The reference audit got this wrong: docs/errata.md, row 1.

    ## Recommendation
    Lower work_mem to the tuner's value (the largest that fits the budget, kept modest) and raise it
    only for the roles or queries whose temp files show spills (`ALTER ROLE ... SET work_mem`, PG004).

    ## Estimated effect
    Removes the out-of-memory risk; most queries of a web app need far less than 4MB per node.
    Measure with `stackaudit verify`.

    ## Fix safety
    Safe: reload only; queries that spill more will show in temp-file statistics (PG004).

    ## References
    - PostgreSQL docs, "Resource Consumption": work_mem:
      https://www.postgresql.org/docs/current/runtime-config-resource.html#GUC-WORK-MEM
    - PostgreSQL docs, hash_mem_multiplier:
      https://www.postgresql.org/docs/current/runtime-config-resource.html#GUC-HASH-MEM-MULTIPLIER
    """
    tuning = derived.postgres
    if tuning is None:
        return
    current = tuning.worst_case_current
    budget = tuning.budget
    if current is None or current.bytes <= budget.postgres_bytes:
        return
    work_mem, row = _current(facts, "work_mem")
    proposal = tuning.settings["work_mem"]
    over_ram = current.bytes > budget.host_memory_bytes
    yield Hit("work_mem", (
        f"Worst-case memory of the live settings is {format_bytes(current.bytes)}, above the "
        f"{format_bytes(budget.postgres_bytes)} budget ({budget.sentence()}"
        f"{'; it exceeds the RAM itself' if over_ram else ''}): {current.arithmetic}. work_mem "
        f"{_shown(row, work_mem or 0, 'work_mem')} comes from {_source_words(row)}."),
        _recommendation(facts, tuning, f"Lower work_mem to {proposal.recommended}; raise it per role "
                        "where temp files show spills.",
                        "Removes the out-of-memory risk under concurrent load; queries that needed more "
                        "show up as temp files (PG004). " + MEASURE,
                        {"work_mem": proposal.recommended}, Phase.NOW),
        [Evidence("postgres", "worst_case_bytes", current.bytes, budget.postgres_bytes),
         Evidence("postgres", "worst_case_arithmetic", current.arithmetic),
         Evidence("postgres", "work_mem_bytes", work_mem, proposal.recommended),
         Evidence("postgres", "work_mem_source", _source_words(row)),
         Evidence("tuning", "budget", budget.sentence())],
        Severity.CRITICAL if over_ram else Severity.HIGH)


@rule("PG006", "pg-parallelism-vs-cores", Severity.MEDIUM, needs=("postgres", "host"))
def parallelism_vs_cores(facts: Facts, settings: Settings, derived: Derived) -> Iterator[Hit]:
    """
    ## What it checks
    max_worker_processes below 8 (its default); max_parallel_workers_per_gather at or above the
    core count (one query takes every core); max_parallel_workers above twice the cores or above
    max_worker_processes.

    ## Why it matters
    max_worker_processes is the pool that parallel query, logical replication and extensions
    (TimescaleDB, pg_cron) draw from; below 8 they fail to start workers, and it changes only on
    restart. A gather that can use every core lets one report starve the web requests.
    The reference audit got this wrong: docs/errata.md, row 6.

    ## Recommendation
    per_gather about cores/2, max_parallel_workers = cores, max_worker_processes >= 8.

    ## Estimated effect
    Steadier latency for concurrent requests while a parallel query runs; the parallel query
    itself may take a little longer. Measure with `stackaudit verify`.

    ## Fix safety
    max_worker_processes needs a restart; the others a reload.

    ## References
    - PostgreSQL docs, "Resource Consumption" > "Asynchronous Behavior":
      https://www.postgresql.org/docs/current/runtime-config-resource.html#RUNTIME-CONFIG-RESOURCE-ASYNC-BEHAVIOR
    """
    tuning = derived.postgres
    if tuning is None:
        return
    cores = tuning.inputs.cpus
    workers, workers_row = _current(facts, "max_worker_processes")
    parallel, parallel_row = _current(facts, "max_parallel_workers")
    per_gather, gather_row = _current(facts, "max_parallel_workers_per_gather")
    rec = {n: tuning.settings[n].recommended for n in
           ("max_worker_processes", "max_parallel_workers", "max_parallel_workers_per_gather")}
    problems: list[tuple[str, str, Severity, dict[str, Any]]] = []
    if workers is not None and workers < 8:
        problems.append(("max_worker_processes", f"max_worker_processes is {workers:g} (from "
                         f"{_source_words(workers_row)}), below the default 8 that parallel query, logical "
                         "replication and extensions share", Severity.MEDIUM, workers_row))
    if per_gather is not None and cores > 1 and per_gather >= cores:
        problems.append(("max_parallel_workers_per_gather", f"max_parallel_workers_per_gather is "
                         f"{per_gather:g} (from {_source_words(gather_row)}) on {cores} cores: one query "
                         "can take every core", _unless_default(gather_row, Severity.MEDIUM), gather_row))
    beyond_pool = workers is not None and parallel is not None and parallel > workers
    if parallel is not None and (parallel > 2 * cores or beyond_pool):
        pool = f" and only {workers:g} worker processes" if beyond_pool and workers is not None else ""
        problems.append(("max_parallel_workers", f"max_parallel_workers is {parallel:g} (from "
                         f"{_source_words(parallel_row)}) for {cores} cores{pool}", Severity.LOW,
                         parallel_row))
    for name, text, severity, row in problems:
        yield Hit(name, f"{text}; the tuner suggests {rec[name]} ({tuning.settings[name].reason})",
                  _recommendation(facts, tuning, f"Set {name} to {rec[name]}.",
                                  "Steadier latency for concurrent requests; little change in throughput. "
                                  + MEASURE, {name: rec[name]}),
                  [Evidence("postgres", name, setting_value(row, name) if row else None, rec[name]),
                   Evidence("postgres", f"{name}_source", _source_words(row)),
                   Evidence("host", "cpu_cores", cores)],
                  severity)


@rule("PG007", "pg-planner-costs-vs-storage", Severity.LOW, needs=("postgres", "host"))
def planner_costs_vs_storage(facts: Facts, settings: Settings, derived: Derived) -> Iterator[Hit]:
    """
    ## What it checks
    random_page_cost and effective_io_concurrency against the evidence about the data disk: a
    measured random-read probe (strong), an NVMe device (medium), the rotational flag (weak: many
    VMs report 1 for SSDs). Also flags an SSD value (random_page_cost < 2) set without evidence.

    ## Why it matters
    random_page_cost tells the planner how much a random read costs relative to a sequential one
    (default 4, for spinning disks). On SSD the default makes index scans look too expensive; on a
    real HDD an SSD value (1.1) makes the planner pick index scans that seek all over the disk.
    effective_io_concurrency sets how many reads are issued ahead.
    The reference audit got this wrong: docs/errata.md, row 7.

    ## Recommendation
    SSD: random_page_cost 1.1, effective_io_concurrency 200; HDD: 4 and 2. Without evidence, keep
    the defaults and measure the disk.

    ## Estimated effect
    Plan choice only, for queries near the index/sequential-scan boundary. The finding states how
    sure the storage evidence is. Measure with `stackaudit verify`.

    ## Fix safety
    Safe: reload only.

    ## References
    - PostgreSQL docs, "Planner Cost Constants":
      https://www.postgresql.org/docs/current/runtime-config-query.html#RUNTIME-CONFIG-QUERY-CONSTANTS
    - PostgreSQL docs, "Asynchronous Behavior" (effective_io_concurrency):
      https://www.postgresql.org/docs/current/runtime-config-resource.html#RUNTIME-CONFIG-RESOURCE-ASYNC-BEHAVIOR
    """
    tuning = derived.postgres
    if tuning is None:
        return
    storage = tuning.inputs.storage
    rpc, rpc_row = _current(facts, "random_page_cost")
    eio, eio_row = _current(facts, "effective_io_concurrency")
    if rpc is None:
        return
    rpc_recommended = tuning.settings["random_page_cost"].recommended
    evidence = [Evidence("host", "storage_kind", storage.kind),
                Evidence("host", "storage_confidence", storage.confidence),
                Evidence("host", "storage_evidence", storage.evidence),
                Evidence("postgres", "random_page_cost", rpc, rpc_recommended),
                Evidence("postgres", "random_page_cost_source", _source_words(rpc_row))]
    if storage.kind == "unknown":
        if rpc < 2:
            yield Hit("random_page_cost", (
                f"random_page_cost is {rpc:g} (from {_source_words(rpc_row)}), a value for SSD, but nothing "
                f"shows the data disk is one ({storage.evidence}); on a real HDD it favours index scans "
                "that seek."),
                Recommendation("Confirm the storage (a random-read probe of the data disk) before keeping "
                               "an SSD value.", "None until the storage is known.", Risk.MANUAL, 10,
                               Phase.MONTH), evidence, Severity.LOW)
        return
    rec_rpc = float(tuning.settings["random_page_cost"].recommended)
    rec_eio = float(tuning.settings["effective_io_concurrency"].recommended)
    off_rpc = abs(rpc - rec_rpc) >= 1.0
    off_eio = eio is not None and (eio < rec_eio / 4 or eio > rec_eio * 4)
    if not (off_rpc or off_eio):
        return
    changes = {"random_page_cost": f"{rec_rpc:g}", "effective_io_concurrency": f"{rec_eio:g}"}
    yield Hit("random_page_cost", (
        f"random_page_cost {rpc:g} and effective_io_concurrency "
        f"{'unknown' if eio is None else format(eio, 'g')} (from {_source_words(rpc_row)}) do not fit the "
        f"storage: {storage.kind}, {storage.confidence} confidence ({storage.evidence}); suggested "
        f"{rec_rpc:g} and {rec_eio:g}. They change plan choice only, not I/O speed."),
        _recommendation(facts, tuning, f"Set random_page_cost = {rec_rpc:g} and effective_io_concurrency = "
                        f"{rec_eio:g} ({storage.confidence} confidence).",
                        "Plan choice only, for queries near the index/sequential-scan boundary. " + MEASURE,
                        changes, Phase.MONTH),
        [*evidence, Evidence("postgres", "effective_io_concurrency", eio, rec_eio),
         Evidence("postgres", "effective_io_concurrency_source", _source_words(eio_row))],
        Severity.LOW if storage.confidence == "low" else Severity.MEDIUM)


@rule("PG008", "pg-checkpoints-too-frequent", Severity.MEDIUM, needs=("postgres", "host"))
def checkpoints_too_frequent(facts: Facts, settings: Settings, derived: Derived) -> Iterator[Hit]:
    """
    ## What it checks
    The share of requested checkpoints (WAL reached max_wal_size before checkpoint_timeout) among
    all checkpoints since the statistics reset (pg_stat_bgwriter, pg_stat_checkpointer from PG17):
    fires at 20% or more (requested_share) once there are at least 10 (min_checkpoints).

    ## Why it matters
    Each checkpoint writes every dirty page, and the first change of each page after it writes the
    whole page to WAL (full_page_writes): frequent checkpoints multiply write I/O and WAL volume.

    ## Recommendation
    Raise max_wal_size (the tuner sizes it from the checkpoint statistics or the WAL rate, within
    the free disk space) so timed checkpoints dominate; keep checkpoint_completion_target 0.9.

    ## Estimated effect
    Measured here on a read/write pgbench load: about 8-10% more throughput from spacing
    checkpoints, more than from any memory setting. Crash recovery can take longer. Measure with
    `stackaudit verify`.

    ## Fix safety
    Safe: reload only; WAL can use up to max_wal_size on the data disk.

    ## References
    - PostgreSQL docs, "WAL Configuration": https://www.postgresql.org/docs/current/wal-configuration.html
    - PostgreSQL docs, pg_stat_checkpointer (PostgreSQL 17+):
      https://www.postgresql.org/docs/current/monitoring-stats.html#MONITORING-PG-STAT-CHECKPOINTER-VIEW
    """
    checkpoints = facts.get("postgres").get("checkpoints")
    if not isinstance(checkpoints, dict):
        return
    timed = checkpoints.get("checkpoints_timed", checkpoints.get("num_timed"))
    requested = checkpoints.get("checkpoints_requested", checkpoints.get("checkpoints_req",
                                                                         checkpoints.get("num_requested")))
    if not isinstance(timed, (int, float)) or not isinstance(requested, (int, float)):
        return
    total = timed + requested
    share = requested / total if total else 0.0
    if total < settings.threshold("PG008", "min_checkpoints") or share < settings.threshold(
            "PG008", "requested_share"):
        return
    tuning = derived.postgres
    if tuning is None:
        return
    proposal = tuning.settings["max_wal_size"]
    current, row = _current(facts, "max_wal_size")
    seconds = tuning.inputs.checkpoint_seconds
    every = f", one every {seconds / total / 60:.1f} min on average" if seconds else ""
    yield Hit("max_wal_size", (
        f"{requested:g} of {total:g} checkpoints ({share:.0%}) were requested because WAL reached "
        f"max_wal_size {_shown(row, current or 0, 'max_wal_size')} (from {_source_words(row)}){every}; "
        f"suggested max_wal_size {proposal.recommended} ({proposal.reason})"),
        _recommendation(facts, tuning, f"Raise max_wal_size to {proposal.recommended}.",
                        "Measured here on read/write pgbench: ~8-10% more throughput from spacing "
                        "checkpoints. " + MEASURE, {"max_wal_size": proposal.recommended}),
        [Evidence("postgres", "checkpoints_timed", timed), Evidence("postgres", "checkpoints_requested",
                                                                   requested),
         Evidence("postgres", "requested_share", round(share, 3),
                  f"< {settings.threshold('PG008', 'requested_share')}"),
         Evidence("postgres", "max_wal_size_bytes", current, proposal.recommended),
         Evidence("postgres", "max_wal_size_source", _source_words(row))])
