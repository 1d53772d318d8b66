"""What each chart shows, from facts and what the audit derived from them (plus optional history and
verify results). Pure: no I/O, no calculations of its own: the budgets come from `Derived`.

Each function returns a chart spec, or None when the facts to draw it are missing, so a report of a
partial audit (`--sources compose,env`) simply has fewer charts; so has a report whose facts could not
give a budget (a `DerivationError`: the rules that needed it say why in the skipped list).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from stackaudit import shapes
from stackaudit.derive import DerivationError, Derived
from stackaudit.derive.forecast import Forecast, forecast_full
from stackaudit.facts import Facts
from stackaudit.report.charts import Segment, fmt
from stackaudit.tuning.postgres import Budget, setting_value

DAY_SECONDS = 86400.0

# Co-located services by the tuner's kind, as the memory chart names them.
TENANT_GROUPS = {"app": "app servers", "worker": "workers", "redis": "Redis", "monitoring": "monitoring",
                 "database": "other databases", "proxy": "proxies", "other": "other services"}


@dataclass(frozen=True)
class StackedChart:
    area: str  # the report section (AREAS key) it belongs to
    title: str
    segments: tuple[Segment, ...]
    capacity: float | None = None
    unit: str = "bytes"
    capacity_label: str = "total"
    note: str = ""  # where the numbers come from, shown under the chart


@dataclass(frozen=True)
class LineChart:
    area: str
    title: str
    points: tuple[tuple[float, float], ...]
    capacity: float
    forecast_full_at: float | None = None
    unit: str = "bytes"
    note: str = ""


@dataclass(frozen=True)
class PairedChart:
    area: str
    title: str
    rows: tuple[tuple[str, float, float], ...]
    unit: str = "ms"
    labels: tuple[str, str] = ("before", "after")
    note: str = ""


Chart = StackedChart | LineChart | PairedChart


def all_charts(facts: Facts, derived: Derived,
               history: Mapping[str, Sequence[tuple[float, float]]] | None = None,
               verify: Mapping[str, Any] | None = None) -> list[Chart]:
    charts: list[Chart] = [*disk_usage(facts)]
    for chart in (memory_budget(facts, derived), connection_budget(derived), reclaimable(facts)):
        if chart is not None:
            charts.append(chart)
    charts += mysql_budgets(facts, derived)
    charts += disk_history(facts, history or {})
    before_after = verify_bars(verify)
    if before_after is not None:
        charts.append(before_after)
    return charts






# --- disk use per mount ---------------------------------------------------------------------------

def _mount_of(path: str | None, mountpoints: Sequence[str]) -> str | None:
    """The longest mount point that contains `path`."""
    if not path:
        return None
    found = [m for m in mountpoints if path == m or path.startswith(m.rstrip("/") + "/") or m == "/"]
    return max(found, key=len, default=None)


def database_bytes(facts: Facts) -> float | None:
    postgres = facts.get("postgres")
    data_dir = postgres.get("data_directory")
    size = shapes.number(data_dir.get("size_bytes")) if isinstance(data_dir, dict) else None
    if size is None:
        size = shapes.number(postgres.get("summary", {}).get("data_directory_bytes"))
    if size is None:
        databases = shapes.rows(postgres.get("databases"))
        size = sum(shapes.number(d.get("size_bytes")) or 0 for d in databases) or None
    return size


def _database_mount(facts: Facts, mounts: list[dict[str, Any]], docker_mount: str | None) -> str | None:
    held = [m["mountpoint"] for m in mounts if "postgres" in (m.get("holds") or [])]
    if held:
        return str(max(held, key=len))
    runs_in = facts.get("postgres").get("runs_in")
    if isinstance(runs_in, dict) and runs_in.get("kind") == "container":
        return docker_mount
    return None


def _docker_parts(docker: Mapping[str, Any], database_in_volumes: float) -> list[Segment]:
    summary = docker.get("summary") or {}
    system_df = docker.get("system_df") or {}
    images = (shapes.number((system_df.get("images") or {}).get("size_bytes"))
              or shapes.number(summary.get("images_bytes")))
    volumes = shapes.number(summary.get("volumes_bytes"))
    if volumes is None:
        volumes = shapes.number((system_df.get("volumes") or {}).get("size_bytes"))
    logs = shapes.number(summary.get("container_logs_bytes"))
    cache = (shapes.number(summary.get("build_cache_bytes"))
             or shapes.number((docker.get("build_cache") or {}).get("size_bytes")))
    containers = shapes.number((system_df.get("containers") or {}).get("size_bytes"))
    parts = [("Docker images", images), ("Docker volumes (other than the database)",
                                         max(0.0, (volumes or 0) - database_in_volumes) if volumes else None),
             ("container logs", logs), ("build cache", cache), ("container layers", containers)]
    return [Segment(label, value) for label, value in parts if value]


def disk_usage(facts: Facts) -> Iterator[StackedChart]:
    """Per mount that holds Docker, PostgreSQL, backups or /: what fills it, what else, what is free."""
    mounts = shapes.rows(facts.get("host").get("mounts"))
    points = [str(m.get("mountpoint")) for m in mounts]
    docker = facts.get("docker")
    docker_mount = _mount_of((docker.get("engine") or {}).get("data_root"), points) if docker else None
    db_mount = _database_mount(facts, mounts, docker_mount)
    db_bytes = database_bytes(facts) if db_mount else None
    for mount in mounts:
        point = str(mount.get("mountpoint"))
        used, free = shapes.number(mount.get("used_bytes")), shapes.number(mount.get("free_bytes"))
        if used is None or free is None:
            continue
        holds = set(mount.get("holds") or [])
        if point == docker_mount:
            holds.add("docker")
        if not holds:
            continue
        parts: list[Segment] = []
        if point == db_mount and db_bytes:
            parts.append(Segment("PostgreSQL data", db_bytes))
        if point == docker_mount:
            in_volumes = (db_bytes or 0.0) if point == db_mount and _database_in_docker(facts) else 0.0
            parts += _docker_parts(docker, in_volumes)
        known = sum(s.value for s in parts)
        if known > used:  # estimates overlap (shared layers): scale them to what is really used
            parts = [Segment(s.label, s.value * used / known) for s in parts]
            known = used
        parts.append(Segment("everything else", used - known))
        parts.append(Segment("free", free, free=True))
        yield StackedChart(
            "host", f"Disk use of {point}", tuple(parts), used + free, "bytes", "size",
            note=f"{point} holds {', '.join(sorted(holds))}; {fmt(used, 'bytes')} used of "
                 f"{fmt(used + free, 'bytes')} ({shapes.number(mount.get('used_percent')) or 0:.0f}%).")


def _database_in_docker(facts: Facts) -> bool:
    runs_in = facts.get("postgres").get("runs_in")
    return isinstance(runs_in, dict) and runs_in.get("kind") == "container"


# --- memory budget ---------------------------------------------------------------------------------

def memory_budget(facts: Facts, derived: Derived) -> StackedChart | None:
    """OS reserve, co-located services by kind, shared_buffers and worst-case work_mem against RAM,
    as the audit's memory budget and PostgreSQL tuning work them out."""
    try:
        budget, tuning = derived.memory_budget, derived.postgres
    except DerivationError:
        return None
    if budget is None:
        return None
    segments = _budget_segments(facts, budget)
    note = budget.sentence()
    worst = tuning.worst_case_current if tuning is not None else None
    shared = _shared_buffers(facts)
    if worst is not None and shared is not None:
        segments += [Segment("PostgreSQL shared_buffers", shared),
                     Segment("PostgreSQL worst-case work_mem and maintenance", max(0, worst.bytes - shared))]
        note += f". Worst case with the current settings: {worst.arithmetic}."
    else:
        segments.append(Segment("left for PostgreSQL", budget.postgres_bytes))
    return StackedChart("host", "Memory budget against RAM", tuple(segments), budget.host_memory_bytes,
                        "bytes", "RAM", note)


def mysql_budgets(facts: Facts, derived: Derived) -> Iterator[StackedChart]:
    """The same budget for each MariaDB/MySQL server: its buffer pool and the rest of its worst case
    (MySQLTuner's "maximum possible memory") with the current settings, against RAM."""
    try:
        tunings = derived.mysql
    except DerivationError:
        return
    for tuning in tunings:
        budget, worst = tuning.budget, tuning.worst_case_current
        pool = shapes.number(tuning.inputs.variables.get("innodb_buffer_pool_size")) or 0.0
        segments = [*_budget_segments(facts, budget),
                    Segment(f"{tuning.flavor_name} buffer pool", pool),
                    Segment(f"{tuning.flavor_name} other buffers at max_connections",
                            max(0.0, worst.bytes - pool))]
        yield StackedChart("mysql", f"{tuning.flavor_name} memory budget against RAM", tuple(segments),
                           budget.host_memory_bytes, "bytes", "RAM",
                           f"{tuning.sentence()}. Worst case with the current settings: {worst.arithmetic}.")


def _budget_segments(facts: Facts, budget: Budget) -> list[Segment]:
    """The OS reserve, then the co-located services grouped by kind."""
    roles = _app_roles(facts)
    groups: dict[str, float] = {}
    for tenant in budget.co_tenants:
        label = TENANT_GROUPS.get(roles.get(tenant.name, tenant.kind), "other services")
        groups[label] = groups.get(label, 0.0) + tenant.bytes
    segments = [Segment("OS reserve", budget.os_reserve_bytes)]
    return segments + [Segment(label, groups[label]) for label in TENANT_GROUPS.values() if label in groups]


def _app_roles(facts: Facts) -> dict[str, str]:
    """Container or service name -> "app" | "worker" for the services the app facts found, so
    a container the tuner could only measure is still shown as an app server or a worker."""
    by_service = {str(p.get("service")): "worker" if p.get("role") == "worker" else "app"
                  for p in shapes.rows(facts.get("app").get("processes"))}
    roles = dict(by_service)
    for container in shapes.rows(facts.get("docker").get("containers")):
        role = by_service.get(str(container.get("compose_service")))
        if role:
            roles[str(container.get("name"))] = role
    return roles


def _shared_buffers(facts: Facts) -> float | None:
    row = (facts.get("postgres").get("settings") or {}).get("shared_buffers")
    return setting_value(row, "shared_buffers") if isinstance(row, dict) else None


# --- connections -----------------------------------------------------------------------------------

def connection_budget(derived: Derived) -> StackedChart | None:
    """What the app processes can open, plus an allowance for others, against max_connections."""
    try:
        budget = derived.connection_budget
    except DerivationError:
        return None
    if budget is None:
        return None
    segments = [Segment(f"{p.service} ({p.kind}, {p.instances} x {p.per_process})", p.total)
                for p in budget.direct]
    segments += [Segment(f"{p.service} (PgBouncer, {p.clients} clients)", p.server_connections)
                 for p in budget.poolers]
    segments.append(Segment("others (admin, migrations, cron)", budget.others))
    spare = budget.available - budget.total
    if spare > 0:
        segments.append(Segment("not claimed", spare, free=True))
    reserved = budget.limits.max_connections - budget.available
    if reserved > 0:  # the last slots of max_connections, so drawn last, next to the line
        segments.append(Segment("reserved for superusers", reserved))
    return StackedChart("postgres", "Connection budget against max_connections", tuple(segments),
                        budget.limits.max_connections, "connections", "max_connections",
                        note="; ".join(budget.arithmetic()) + ".")


# --- reclaimable space -----------------------------------------------------------------------------

def reclaimable(facts: Facts) -> StackedChart | None:
    """What `docker system df` calls reclaimable, plus logs of containers without rotation."""
    docker = facts.get("docker")
    if not docker:
        return None
    system_df = docker.get("system_df") or {}
    parts = [("unused image layers", (system_df.get("images") or {}).get("reclaimable_bytes")),
             ("stopped containers", (system_df.get("containers") or {}).get("reclaimable_bytes")),
             ("unused volumes (review before removing)",
              (system_df.get("volumes") or {}).get("reclaimable_bytes")),
             ("build cache", shapes.number((system_df.get("build_cache") or {}).get("reclaimable_bytes"))
              or shapes.number((docker.get("build_cache") or {}).get("reclaimable_bytes"))),
             ("logs without rotation", _unrotated_logs(docker))]
    segments = tuple(Segment(label, value) for label, value in
                     ((label, shapes.number(value)) for label, value in parts) if value)
    if not segments:
        return None
    return StackedChart("docker", "Reclaimable space", segments, None, "bytes",
                        note="As `docker system df` counts it; `stackaudit clean` decides what is safe.")


def _unrotated_logs(docker: Mapping[str, Any]) -> float:
    total = 0.0
    for container in shapes.rows(docker.get("containers")):
        log_info = container.get("log") or {}
        options = log_info.get("options") or {}
        if log_info.get("driver") in ("json-file", None) and "max-size" not in options:
            total += shapes.number(log_info.get("size_bytes")) or 0.0
    return total


# --- history and verify ----------------------------------------------------------------------------

def disk_history(facts: Facts, history: Mapping[str, Sequence[tuple[float, float]]]) -> Iterator[LineChart]:
    """Used bytes per mount from the watch history, with the forecast to full when the disk fills."""
    capacities = {str(m.get("mountpoint")): (shapes.number(m.get("used_bytes")) or 0.0)
                  + (shapes.number(m.get("free_bytes")) or 0.0)
                  for m in shapes.rows(facts.get("host").get("mounts"))}
    for point, series in sorted(history.items()):
        points = tuple((float(t), float(v)) for t, v in series)
        capacity = capacities.get(point) or 0.0
        if len(points) < 2 or not capacity:
            continue
        full_at, note = _forecast(points, forecast_full(points, capacity))
        yield LineChart("host", f"Disk use of {point} over time", points, capacity, full_at, "bytes", note)


def _forecast(points: Sequence[tuple[float, float]], found: Forecast | None) -> tuple[float | None, str]:
    if found is None:
        return None, f"{len(points)} samples; no forecast (not filling, or too little history)."
    return (points[-1][0] + found.days_to_full * DAY_SECONDS,
            f"{len(points)} samples; growing {fmt(found.rate_bytes_per_day, 'bytes')} a day over the last "
            f"{found.span_days:.1f} days: full in about {found.days_to_full:.0f} days at that rate.")


def verify_bars(verify: Mapping[str, Any] | None) -> PairedChart | None:
    """`stackaudit verify` results: {"statements": [{"label", "before_ms", "after_ms"}]}."""
    if not isinstance(verify, Mapping):
        return None
    rows = []
    for item in shapes.rows(verify.get("statements")):
        before, after = shapes.number(item.get("before_ms")), shapes.number(item.get("after_ms"))
        if before is not None and after is not None:
            rows.append((str(item.get("label") or "?"), before, after))
    if not rows:
        return None
    return PairedChart("verify", "Measured before and after the changes", tuple(rows), "ms",
                       note="Mean execution time per statement, measured by `stackaudit verify`.")
