"""Host rules: disk, memory, OOM exposure and load (SYS)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from stackaudit.config import Settings
from stackaudit.facts import Facts
from stackaudit.facts.host import effective_cores, effective_memory_bytes, mount_for
from stackaudit.model import Evidence, Hit, Phase, Recommendation, Risk, Severity
from stackaudit.rules import rule
from stackaudit.units import format_bytes

WATCHED_ROLES = ("root", "docker", "postgres", "backups", "extra")


def watched_mounts(facts: Facts) -> Iterator[dict[str, Any]]:
    """Mounts that hold /, Docker's data root, PostgreSQL data, backups or a configured path."""
    mounts = facts.get("host").get("mounts", [])
    docker_root = facts.get("docker").get("engine", {}).get("data_root")
    docker_mount = mount_for(docker_root, [m["mountpoint"] for m in mounts]) if docker_root else None
    for mount in mounts:
        roles = set(mount.get("holds", []))
        if mount["mountpoint"] == docker_mount:
            roles.add("docker")
        if roles & set(WATCHED_ROLES):
            yield {**mount, "holds": sorted(roles)}


@rule("SYS001", "disk-space-low", Severity.HIGH, needs=("host",))
def disk_space_low(facts: Facts, settings: Settings) -> Iterator[Hit]:
    """
    ## What it checks
    Every mount that holds Docker's data root, PostgreSQL data, backups or `/` (and the paths in
    `[disk] paths`): space used >= 75% (high) or >= 85% (critical), inodes used >= 80% / 90%, or a
    fill-rate forecast (from `stackaudit watch` history) that reaches 100% within 14 days.

    ## Why it matters
    A full disk stops PostgreSQL (it cannot write WAL), Docker (it cannot create layers or logs) and
    backups at once. Checking only `/` with `df -h` misses the volume that really fills, and inodes can
    run out while bytes are free.

    ## Recommendation
    Reclaim space safely with `stackaudit clean` (dry run by default), bound container logs, move
    backups off the data disk, or grow the volume. Set per-mount thresholds in `[thresholds.SYS001]`.

    ## Estimated effect
    Keeps the services that write to the mount running; the reclaimable bytes are listed by DKR001-DKR004.

    ## Fix safety
    Display only: what to delete is decided by `stackaudit clean`, which never removes what is in use.

    ## References
    - statvfs(3) (df's Use% = used / (used + available)): https://man7.org/linux/man-pages/man3/statvfs.3.html
    - PostgreSQL docs, "Disk Full Failure": https://www.postgresql.org/docs/current/disk-full.html
    """
    for mount in watched_mounts(facts):
        point = mount["mountpoint"]
        high = settings.threshold("SYS001", "high_percent", point)
        critical = settings.threshold("SYS001", "critical_percent", point)
        used = float(mount["used_percent"])
        holds = ", ".join(mount["holds"])
        evidence = [Evidence("host", "used_percent", used, f"< {high}"),
                    Evidence("host", "free_bytes", mount["free_bytes"]),
                    Evidence("host", "holds", holds)]
        if used >= high:
            severity = Severity.CRITICAL if used >= critical else Severity.HIGH
            yield Hit(point, f"{point} ({holds}) is {used:.0f}% full: {format_bytes(mount['free_bytes'])} "
                      f"free of {format_bytes(mount['total_bytes'])}.", _disk_recommendation(point),
                      evidence, severity)
            continue
        inode_hit = _inode_hit(mount, settings)
        if inode_hit:
            yield inode_hit
            continue
        days = mount.get("forecast_days_to_full")
        limit_days = settings.threshold("SYS001", "days_to_full", point)
        if days is not None and days < limit_days:
            yield Hit(point, f"{point} ({holds}) is {used:.0f}% full and, at the recent fill rate, "
                      f"will be full in {days:.1f} days.", _disk_recommendation(point),
                      [*evidence, Evidence("history", "forecast_days_to_full", round(days, 1),
                                           f">= {limit_days}")], Severity.HIGH)


def _inode_hit(mount: dict[str, Any], settings: Settings) -> Hit | None:
    point = mount["mountpoint"]
    percent = mount.get("inodes_used_percent")
    high = settings.threshold("SYS001", "inodes_high_percent", point)
    if percent is None or percent < high:
        return None
    critical = settings.threshold("SYS001", "inodes_critical_percent", point)
    return Hit(point, f"{point} has used {percent:.0f}% of its inodes ({mount['inodes_used']} of "
               f"{mount['inodes_total']}): new files will fail although bytes are free.",
               _disk_recommendation(point),
               [Evidence("host", "inodes_used_percent", percent, f"< {high}")],
               Severity.CRITICAL if percent >= critical else Severity.HIGH)


def _disk_recommendation(mountpoint: str) -> Recommendation:
    return Recommendation(
        summary=f"Free space on {mountpoint}: run `stackaudit clean` to see what can be removed safely, "
                "bound container logs, and plan more disk if the data itself grows.",
        estimated_effect="Avoids an outage when the disk fills; see DKR001-DKR004 for reclaimable bytes.",
        risk=Risk.MANUAL, effort_minutes=15, phase=Phase.NOW, action="stackaudit clean")


@rule("SYS002", "memory-pressure", Severity.HIGH, needs=("host",))
def memory_pressure(facts: Facts, settings: Settings) -> Iterator[Hit]:
    """
    ## What it checks
    Available memory below 10% of the usable RAM (the host's, or the cgroup limit when tighter), or
    sustained memory pressure: PSI `some avg300` for memory above 10% (processes stalled waiting for
    memory 10% of the last five minutes).

    ## Why it matters
    Near the end of memory the kernel evicts the page cache PostgreSQL relies on, then the OOM killer
    ends a process, often the database.

    ## Recommendation
    Find what grew (`stackaudit tune postgres` shows the memory budget), set container memory limits,
    lower oversized settings, or add RAM.

    ## Estimated effect
    Stops stalls and OOM kills; query latency returns to its cached level.

    ## Fix safety
    Display only: which service to shrink is a decision.

    ## References
    - Linux PSI: https://docs.kernel.org/accounting/psi.html
    - /proc/meminfo MemAvailable (Linux 3.14+): https://docs.kernel.org/filesystems/proc.html#meminfo
    """
    host = facts["host"]
    usable = effective_memory_bytes(host)
    available = int(host["memory_available_bytes"])
    percent = 100.0 * available / usable if usable else 100.0
    limit = settings.threshold("SYS002", "available_percent")
    psi = (host.get("psi") or {}).get("memory", {})
    stall = psi.get("some_avg300")
    stall_limit = settings.threshold("SYS002", "psi_some_avg300")
    evidence = [Evidence("host", "memory_available_bytes", available),
                Evidence("host", "memory_usable_bytes", usable),
                Evidence("host", "available_percent", round(percent, 1), f">= {limit}")]
    if stall is not None:
        evidence.append(Evidence("host", "psi_memory_some_avg300", stall, f"< {stall_limit}"))
    if percent < limit or (stall is not None and stall >= stall_limit):
        reason = (f"only {format_bytes(available)} of {format_bytes(usable)} is available ({percent:.0f}%)"
                  if percent < limit else f"tasks stalled on memory {stall:.0f}% of the last 5 minutes")
        yield Hit("memory", f"Memory pressure: {reason}.", Recommendation(
            summary="Find the service that grew, cap it with a memory limit, or add RAM.",
            estimated_effect="Prevents OOM kills and page-cache eviction.",
            risk=Risk.MANUAL, effort_minutes=30, phase=Phase.NOW), evidence)


@rule("SYS003", "oom-risk-no-swap-no-limits", Severity.MEDIUM, needs=("host", "docker"))
def oom_risk(facts: Facts, settings: Settings) -> Iterator[Hit]:
    """
    ## What it checks
    A host without swap whose running containers can together use more than the RAM: containers
    without a memory limit count as "all of it", limited ones by their limit.

    ## Why it matters
    Without swap and without limits, one leaking worker makes the kernel's OOM killer choose a victim,
    and the largest process, usually PostgreSQL, is the likely one. Limits make the leaking container
    fail alone.

    ## Recommendation
    Give every long-running container a memory limit (`mem_limit:` or `deploy.resources.limits.memory`)
    sized from its measured use, and consider a small swap file as a buffer.

    ## Estimated effect
    A leak kills only the leaking container instead of the database.

    ## Fix safety
    Needs confirmation: a limit that is too low makes the container restart.

    ## References
    - Docker docs, "Resource constraints" (memory):
      https://docs.docker.com/engine/containers/resource_constraints/#memory
    - Linux kernel, oom_score and oom_score_adj: https://docs.kernel.org/filesystems/proc.html
    """
    host = facts["host"]
    if host.get("swap_total_bytes", 0) > 0:
        return
    ram = effective_memory_bytes(host)
    running = [c for c in facts["docker"].get("containers", []) if c.get("state") == "running"]
    unlimited = [c["name"] for c in running if not c.get("memory_limit_bytes")]
    committed = sum(int(c.get("memory_limit_bytes") or ram) for c in running)
    if not unlimited or committed <= ram:
        return
    names = ", ".join(sorted(unlimited)[:8])
    yield Hit("host", f"No swap, and {len(unlimited)} running container(s) have no memory limit ({names}): "
              f"together they may use {format_bytes(committed)} of {format_bytes(ram)} RAM.",
              Recommendation(
                  summary="Set memory limits on every long-running container; consider a small swap file.",
                  estimated_effect="A runaway process is contained instead of triggering the OOM killer.",
                  risk=Risk.CONFIRM, effort_minutes=20, phase=Phase.WEEK),
              [Evidence("host", "swap_total_bytes", 0, "> 0"),
               Evidence("docker", "containers_without_memory_limit", len(unlimited), 0),
               Evidence("docker", "worst_case_committed_bytes", committed, f"<= {ram}")])


@rule("SYS004", "load-above-cores", Severity.MEDIUM, needs=("host",))
def load_above_cores(facts: Facts, settings: Settings) -> Iterator[Hit]:
    """
    ## What it checks
    The 15-minute load average against the CPU count (or the cgroup CPU quota when it is lower).

    ## Why it matters
    A load above the core count sustained for 15 minutes means runnable tasks wait for a CPU (or for
    I/O, which Linux counts in the load too): requests queue and latency grows.

    ## Recommendation
    Find the busy service (app workers, Sidekiq concurrency, parallel queries) and lower its
    concurrency, fix the slow queries (PG402), or add cores.

    ## Estimated effect
    Shorter queues and more predictable latency.

    ## Fix safety
    Display only.

    ## References
    - proc(5), /proc/loadavg: https://man7.org/linux/man-pages/man5/proc.5.html
    """
    host = facts["host"]
    cores = effective_cores(host)
    load15 = float(host["load_average"][2])
    limit = cores * settings.threshold("SYS004", "load15_per_core")
    if load15 <= limit:
        return
    yield Hit("cpu", f"15-minute load average {load15:.2f} is above the {cores:g} available core(s).",
              Recommendation(
                  summary="Lower concurrency of the busiest service or fix slow queries; add cores if "
                          "the work is legitimate.",
                  estimated_effect="Less queueing for CPU and I/O.",
                  risk=Risk.MANUAL, effort_minutes=30, phase=Phase.WEEK),
              [Evidence("host", "load_average_15m", load15, f"<= {limit:g}"),
               Evidence("host", "cores", cores)])
