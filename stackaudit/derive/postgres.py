"""The PostgreSQL tuner's inputs from the facts: the budget, cores, storage evidence, workload and
statistics (`inputs_from_facts`), and the tuning itself (`postgres_tuning`), computed once per audit
by `stackaudit.derive.derive` and read by the rules, the plan and the report."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from stackaudit.derive.memory import (
    database_cores,
    memory_budget,
    postgres_database,
    postgres_runs_in,
    postgres_service,
)
from stackaudit.facts import Facts
from stackaudit.shapes import mapping, number, rows, source
from stackaudit.tuning.postgres import DEFAULT_WORKLOAD, Storage, TuneInputs, Tuning, recommend, setting_value
from stackaudit.tuning.units import MB
from stackaudit.units import format_bytes


def setting_row(facts: Facts, name: str) -> dict[str, Any]:
    settings = source(facts, "postgres").get("settings")
    row = settings.get(name) if isinstance(settings, dict) else None
    return row if isinstance(row, dict) else {}


def storage_evidence(facts: Facts) -> Storage:
    """How sure we are that the data lives on SSD. /sys/block/*/queue/rotational alone is weak
    (ERRATA 7: virtio disks report 1 on SSDs); an optional measured random-read probe on the mount
    (`random_read_probe`: {"iops", "latency_p50_ms"}, a field the host collector may add) is strong."""
    mount = _data_mount(facts)
    if mount is None:
        return Storage("unknown", "low", "no mount information for the data directory")
    where = f"{mount.get('mountpoint')} ({mount.get('device')})"
    probe = mapping(mount.get("random_read_probe"))
    latency, iops = number(probe.get("latency_p50_ms")), number(probe.get("iops"))
    if latency is not None or iops is not None:
        fast = (latency is not None and latency < 2.0) or (iops is not None and iops >= 1000)
        measured = f"measured random reads on {where}: p50 {latency} ms, {iops} IOPS"
        return Storage("ssd" if fast else "hdd", "high", measured)
    device = str(mount.get("device") or "").rsplit("/", 1)[-1]
    rotational = mount.get("rotational")
    if device.startswith("nvme"):
        return Storage("ssd", "medium", f"{where} is an NVMe device (flash, or cloud block storage)")
    if rotational is False:
        return Storage("ssd", "low", f"{where} reports rotational=0; in VMs this flag is not reliable")
    if rotational is True and not device.startswith(("vd", "xvd")):
        return Storage("hdd", "low", f"{where} reports rotational=1; in VMs this flag is not reliable")
    return Storage("unknown", "low", f"{where}: no reliable evidence (rotational={rotational})")


def _data_mount(facts: Facts) -> dict[str, Any] | None:
    mounts = rows(source(facts, "host").get("mounts"))
    for holder in ("postgres", "docker", "root"):
        for mount in mounts:
            if holder in (mount.get("holds") or []):
                return mount
    return None


def guess_workload(facts: Facts) -> tuple[str, str]:
    """web (the default), oltp when writes are a large share of row activity, analytics when the
    statistics show big temp files per transaction. A guess, stated as such."""
    databases = rows(source(facts, "postgres").get("databases"))

    def total(key: str) -> float:
        return sum(number(d.get(key)) or 0.0 for d in databases)

    commits, temp = total("xact_commit"), total("temp_bytes")
    reads = total("tup_fetched") + total("tup_returned")
    writes = total("tup_inserted") + total("tup_updated") + total("tup_deleted")
    if commits < 1000:
        return DEFAULT_WORKLOAD, "default (not enough statistics to guess)"
    if temp / commits > 1 * MB:
        return "analytics", f"guessed: {format_bytes(temp / commits)} of temp files per transaction"
    if reads and writes / (reads + writes) > 0.3:
        return "oltp", f"guessed: writes are {writes / (reads + writes):.0%} of row activity"
    return DEFAULT_WORKLOAD, "guessed from statistics: read-mostly"


def _seconds_between(start: Any, end: Any) -> float | None:
    try:
        begin = datetime.fromisoformat(str(start))
        finish = datetime.fromisoformat(str(end))
        return (finish - begin).total_seconds()
    except (TypeError, ValueError):
        return None


def _checkpoint_seconds(facts: Facts, checkpoints: Mapping[str, Any]) -> float | None:
    seconds = number(checkpoints.get("seconds_since_reset", checkpoints.get("stats_age_seconds")))
    if seconds is None and checkpoints.get("stats_reset"):
        collected = source(facts, "postgres").get("collected_at") or facts.collected_at
        seconds = _seconds_between(checkpoints.get("stats_reset"), collected)
    return seconds


def _wal_rate(facts: Facts, checkpoints: Mapping[str, Any]) -> float | None:
    """WAL bytes per second since pg_stat_wal's reset (PG14+): the collector's checkpoints.wal_bytes
    and wal_stats_age_seconds, or a "wal" dict with wal_bytes and stats_reset."""
    if number(checkpoints.get("wal_bytes_per_second")):
        return number(checkpoints.get("wal_bytes_per_second"))
    wal_bytes, age = number(checkpoints.get("wal_bytes")), number(checkpoints.get("wal_stats_age_seconds"))
    if wal_bytes is not None and age:
        return wal_bytes / age
    wal = source(facts, "postgres").get("wal")
    if not isinstance(wal, dict) or number(wal.get("wal_bytes")) is None:
        return None
    seconds = number(wal.get("seconds_since_reset")) or _seconds_between(wal.get("stats_reset"),
                                                                        facts.collected_at)
    return (number(wal.get("wal_bytes")) or 0.0) / seconds if seconds and seconds > 0 else None


# A table whose sequential scans have read it whole this many times since the statistics were
# reset is read in full as a habit (reports, analytics), not once by an index build or a dump.
FULL_SCANS_HABIT = 5


def repeatedly_scanned_bytes(postgres: Mapping[str, Any]) -> int | None:
    """The size of the largest table read in full again and again (seq_tup_read >= 5 x its live
    rows), from the per-table statistics of every database collected; None when there is none."""
    sizes = []
    for info in mapping(postgres.get("per_database")).values():
        for table in rows(mapping(info).get("tables")):
            live = number(table.get("live_tuples")) or 0.0
            read = number(table.get("seq_tup_read")) or 0.0
            if live >= 1 and read >= FULL_SCANS_HABIT * live:
                sizes.append(int(number(table.get("table_bytes")) or 0))
    return max(sizes) if sizes else None


def inputs_from_facts(facts: Facts, memory_bytes: int | None = None, cpus: int | None = None,
                      workload: str | None = None, max_connections: int | None = None,
                      major: int | None = None, dedicated: bool = False) -> TuneInputs:
    """Everything `recommend` needs, from the facts; explicit arguments win (what-if)."""
    postgres = source(facts, "postgres")
    settings = mapping(postgres.get("settings"))
    major = major or int(number(postgres.get("major")) or 0) or 18
    if workload:
        workload_reason = "given"
    else:
        workload, workload_reason = guess_workload(facts)
    connections = max_connections or int(setting_value(settings.get("max_connections") or {},
                                                       "max_connections") or 100)
    checkpoints = mapping(postgres.get("checkpoints"))
    databases = rows(postgres.get("databases"))
    sizes = [number(d.get("size_bytes")) for d in databases]
    temp_bytes = [number(d.get("temp_bytes")) for d in databases]
    temp_files = [number(d.get("temp_files")) for d in databases]
    mount = _data_mount(facts)
    return TuneInputs(
        budget=memory_budget(facts, memory_bytes, dedicated, database=postgres_database(facts)),
        cpus=database_cores(facts, postgres_database(facts), cpus),
        major=major,
        max_connections=connections,
        workload=workload,
        workload_reason=workload_reason,
        storage=storage_evidence(facts),
        current={k: v for k, v in settings.items() if isinstance(v, dict)},
        server_reached=bool(settings),
        checkpoints=checkpoints,
        checkpoint_seconds=_checkpoint_seconds(facts, checkpoints),
        wal_bytes_per_second=_wal_rate(facts, checkpoints),
        temp_bytes=int(sum(t for t in temp_bytes if t)) if any(t is not None for t in temp_bytes) else None,
        temp_files=int(sum(t for t in temp_files if t)) if any(t is not None for t in temp_files) else None,
        data_bytes=int(sum(s for s in sizes if s)) if any(s is not None for s in sizes) else None,
        scanned_table_bytes=repeatedly_scanned_bytes(postgres),
        data_free_bytes=int(number(mount.get("free_bytes")) or 0) or None if mount else None,
    )


def postgres_tuning(facts: Facts, memory_bytes: int | None = None, cpus: int | None = None,
                    workload: str | None = None, max_connections: int | None = None, major: int | None = None,
                    dedicated: bool = False) -> Tuning:
    """recommend(inputs_from_facts(...)): made once per audit by `derive`; the CLI calls it for what-if."""
    inputs = inputs_from_facts(facts, memory_bytes, cpus, workload, max_connections, major, dedicated)
    return recommend(inputs)


def compose_service_name(facts: Facts) -> str:
    runs_in = postgres_runs_in(facts)
    service = postgres_service(facts)
    return str(runs_in.get("service") or (service or {}).get("name") or "postgres")


def command_flags(command: Any) -> dict[str, str]:
    """`-c name=value` pairs (or `-cname=value`) of a list command, in order."""
    flags: dict[str, str] = {}
    if not isinstance(command, list):
        return flags
    parts = [str(p) for p in command]
    for i, part in enumerate(parts):
        text = (
            parts[i + 1] if part == "-c" and i + 1 < len(parts) else part[2:] if part.startswith("-c") else ""
        )
        if "=" in text:
            key, value = text.split("=", 1)
            flags[key.strip()] = value.strip()
    return flags
