"""Host facts: CPU, memory, swap, load, PSI, cgroup limits and every mount that matters.

Each fact is a read plus a pure parse (`parse_meminfo`, `parse_mounts`, ...) so the parsers are
tested on recorded files; the roots (/proc, /sys) come from the settings so tests can point them at
a fixture tree (the same idea as prometheus client_python's `proc=` argument).
"""

from __future__ import annotations

import json
import mmap
import os
import platform
import random
import socket
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from stackaudit.facts import CollectContext

# Filesystems that hold no user data; their "fullness" means nothing.
PSEUDO_FILESYSTEMS = frozenset({
    "proc", "sysfs", "devpts", "cgroup", "cgroup2", "mqueue", "debugfs", "tracefs", "securityfs",
    "pstore", "bpf", "configfs", "fusectl", "hugetlbfs", "autofs", "binfmt_misc", "rpc_pipefs",
    "nsfs", "devtmpfs", "efivarfs", "selinuxfs", "overlay", "squashfs", "ramfs", "nfsd", "tmpfs",
})
# Where the data stackaudit cares about usually lives; a mount holding one of them is watched.
DATA_PATHS = {
    "docker": ("/var/lib/docker", "/var/lib/containerd"),
    "postgres": ("/var/lib/postgresql",),
    "backups": ("/var/backups",),
}
CGROUP_UNLIMITED = 2**62  # v1 reports "no limit" as a huge page-aligned number


def collect(ctx: CollectContext) -> dict[str, Any]:
    proc, sys_root = ctx.settings.proc_root, ctx.settings.sys_root
    meminfo = parse_meminfo(_read(proc / "meminfo"))
    cgroup = read_cgroup_limits(proc, sys_root)
    data: dict[str, Any] = {
        "hostname": socket.gethostname(),
        "kernel": platform.release(),
        "architecture": platform.machine(),
        "cpu_count": os.cpu_count() or 1,
        "cpu_limit_cores": cgroup["cpu_quota_cores"],
        "memory_total_bytes": meminfo.get("MemTotal", 0),
        "memory_available_bytes": meminfo.get("MemAvailable", meminfo.get("MemFree", 0)),
        "memory_limit_bytes": cgroup["memory_limit_bytes"],
        "swap_total_bytes": meminfo.get("SwapTotal", 0),
        "swap_free_bytes": meminfo.get("SwapFree", 0),
        "load_average": parse_loadavg(_read(proc / "loadavg")),
        "psi": read_psi(proc, ctx),
        "cgroup": cgroup,
        "mounts": read_mounts(ctx),
    }
    data["summary"] = _summary(data)
    return data


def effective_memory_bytes(host: dict[str, Any]) -> int:
    """RAM this process can really use: the host's, or the cgroup limit when tighter."""
    total = int(host["memory_total_bytes"])
    limit = host.get("memory_limit_bytes")
    return min(total, int(limit)) if limit else total


def effective_cores(host: dict[str, Any]) -> float:
    """CPUs this process can really use: the count, or the cgroup quota when lower."""
    cores = float(host["cpu_count"])
    quota = host.get("cpu_limit_cores")
    return min(cores, float(quota)) if quota else cores


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")


def parse_meminfo(text: str) -> dict[str, int]:
    """`MemTotal:  24589412 kB` -> {"MemTotal": 25179557888} (bytes)."""
    values: dict[str, int] = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        if not parts or not parts[0].isdigit():
            continue
        factor = 1024 if len(parts) > 1 and parts[1] == "kB" else 1
        values[name.strip()] = int(parts[0]) * factor
    return values


def parse_loadavg(text: str) -> list[float]:
    return [float(x) for x in text.split()[:3]]


def parse_psi(text: str) -> dict[str, float]:
    """`some avg10=0.00 avg60=0.00 avg300=0.00 total=0` -> {"some_avg10": 0.0, ...}."""
    values: dict[str, float] = {}
    for line in text.splitlines():
        kind, *fields = line.split()
        for field in fields:
            key, _, value = field.partition("=")
            if key.startswith("avg"):
                values[f"{kind}_{key}"] = float(value)
    return values


def read_psi(proc: Path, ctx: CollectContext) -> dict[str, dict[str, float]] | None:
    """Pressure stall information (kernel 4.20+ with CONFIG_PSI); None where the kernel lacks it."""
    psi: dict[str, dict[str, float]] = {}
    for resource in ("memory", "cpu", "io"):
        try:
            psi[resource] = parse_psi(_read(proc / "pressure" / resource))
        except FileNotFoundError:
            return None
        except OSError as exc:  # PSI compiled in but disabled (psi=0) gives EOPNOTSUPP
            ctx.error(f"{proc}/pressure/{resource}", f"cannot read PSI: {exc.strerror}")
            return None
    return psi


def parse_cgroup_self(text: str) -> dict[str, str]:
    """/proc/self/cgroup -> {controller: path}; cgroup v2's single line is under key ""."""
    paths: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        for controller in controllers.split(",") if controllers else [""]:
            paths[controller] = path
    return paths


def read_cgroup_limits(proc: Path, sys_root: Path) -> dict[str, Any]:
    """The memory and CPU limits that apply to this process, for cgroup v1 and v2.

    Walks from this process's cgroup up to the root and keeps the tightest limit, since a parent's
    limit bounds its children (a container's limit is usually on the container's own group).
    """
    base = sys_root / "fs" / "cgroup"
    try:
        paths = parse_cgroup_self(_read(proc / "self" / "cgroup"))
    except OSError:
        paths = {}
    if (base / "cgroup.controllers").exists():
        return _cgroup_v2_limits(base, paths.get("", "/"))
    return _cgroup_v1_limits(base, paths)


def _ancestors(base: Path, relative: str) -> Iterable[Path]:
    current = base / relative.lstrip("/")
    while True:
        yield current
        if current == base or base not in current.parents:
            return
        current = current.parent


def _cgroup_v2_limits(base: Path, relative: str) -> dict[str, Any]:
    memory: int | None = None
    cpu: float | None = None
    for directory in _ancestors(base, relative):
        memory = _tightest(memory, _parse_limit(_read_optional(directory / "memory.max")))
        cpu = _tightest_float(cpu, parse_cpu_max(_read_optional(directory / "cpu.max")))
    return {"version": 2, "memory_limit_bytes": memory, "cpu_quota_cores": cpu}


def _cgroup_v1_limits(base: Path, paths: dict[str, str]) -> dict[str, Any]:
    memory: int | None = None
    cpu: float | None = None
    memory_base = base / "memory"
    for directory in _ancestors(memory_base, paths.get("memory", "/")):
        memory = _tightest(memory, _parse_limit(_read_optional(directory / "memory.limit_in_bytes")))
    cpu_base = base / "cpu,cpuacct" if (base / "cpu,cpuacct").exists() else base / "cpu"
    for directory in _ancestors(cpu_base, paths.get("cpu", "/")):
        quota = _read_optional(directory / "cpu.cfs_quota_us")
        period = _read_optional(directory / "cpu.cfs_period_us")
        if quota and period:
            cpu = _tightest_float(cpu, parse_cpu_max(f"{quota.strip()} {period.strip()}"))
    version = 1 if memory_base.exists() else None
    return {"version": version, "memory_limit_bytes": memory, "cpu_quota_cores": cpu}


def _read_optional(path: Path) -> str | None:
    try:
        return _read(path)
    except OSError:
        return None


def _parse_limit(text: str | None) -> int | None:
    if text is None or text.strip() in ("", "max"):
        return None
    value = int(text.strip())
    return None if value >= CGROUP_UNLIMITED else value


def parse_cpu_max(text: str | None) -> float | None:
    """cgroup v2 `cpu.max` ("max 100000" or "200000 100000") -> cores; v1 quota -1 is unlimited."""
    if not text:
        return None
    parts = text.split()
    if len(parts) != 2 or parts[0] in ("max", "-1"):
        return None
    return int(parts[0]) / int(parts[1])


def _tightest(current: int | None, new: int | None) -> int | None:
    if new is None:
        return current
    return new if current is None else min(current, new)


def _tightest_float(current: float | None, new: float | None) -> float | None:
    if new is None:
        return current
    return new if current is None else min(current, new)


def parse_mounts(text: str) -> list[dict[str, str]]:
    """/proc/self/mounts -> one entry per mount point (the last mount over a point wins)."""
    by_point: dict[str, dict[str, str]] = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        device, point, fstype = fields[0], _unescape(fields[1]), fields[2]
        by_point[point] = {"device": device, "mountpoint": point, "fstype": fstype}
    return list(by_point.values())


def _unescape(path: str) -> str:
    """The kernel writes spaces and tabs in mount points as octal escapes (\\040)."""
    return path.encode().decode("unicode_escape") if "\\" in path else path


def mount_for(path: str, mountpoints: Iterable[str]) -> str:
    """The mount point that holds `path`: the longest one that is a prefix of it."""
    best = "/"
    for point in mountpoints:
        if (path == point or path.startswith(point.rstrip("/") + "/")) and len(point) > len(best):
            best = point
    return best


def read_mounts(ctx: CollectContext) -> list[dict[str, Any]]:
    try:
        mounts = parse_mounts(_read(ctx.settings.proc_root / "self" / "mounts"))
    except OSError as exc:
        ctx.error("/proc/self/mounts", f"cannot list mounts: {exc.strerror}")
        return []
    holders = _data_holders(ctx, [m["mountpoint"] for m in mounts])
    result = []
    for mount in mounts:
        holds = sorted(holders.get(mount["mountpoint"], set()))
        if mount["fstype"] in PSEUDO_FILESYSTEMS and not holds:
            continue  # a tmpfs or overlay only matters when it holds data we watch
        usage = statvfs_usage(mount["mountpoint"], ctx)
        if usage is None:
            continue
        entry = {**mount, **usage, "holds": holds,
                 "rotational": _rotational(ctx.settings.sys_root, mount["device"])}
        if ctx.settings.storage_probe and set(holds) & {"postgres", "docker", "root"}:
            entry["random_read_probe"] = random_read_probe(probe_target(mount["mountpoint"], holds))
        result.append(entry)
    return result


PROBE_READS = 64
PROBE_BLOCK = 4096


PROBE_MIN_FILE = 16 * 1024 * 1024
# 64 random 4 KiB reads spread over 16,384 blocks or more are as good a sample as over a larger file:
# the walk stops at the first file this large (on this machine ~3,000 files walked instead of 20,000)
PROBE_ENOUGH_FILE = 64 * 1024 * 1024
PROBE_WALK_LIMIT = 20000
PROBE_HINTS = {"postgres": DATA_PATHS["postgres"], "docker": DATA_PATHS["docker"],
               "root": ("/var/lib", "/usr/sbin", "/usr/lib")}


def probe_target(mountpoint: str, holds: list[str]) -> str | None:
    """The block device itself when it can be opened, else a large file found on the mount.

    A bounded walk of where the data usually lives; only files on this same filesystem count.
    """
    device = _mount_device(mountpoint)
    if device and _can_open(device):
        return device
    try:
        dev = os.stat(mountpoint).st_dev
    except OSError:
        return None
    tops = [top for role in holds for top in PROBE_HINTS.get(role, ())]
    return _large_file(tops, dev, PROBE_WALK_LIMIT)


def _large_file(tops: list[str], dev: int, limit: int, smallest: int = PROBE_MIN_FILE,
                enough: int = PROBE_ENOUGH_FILE) -> str | None:
    """The first regular file on device `dev` with `enough` bytes on disk, else the largest one over
    `smallest` among the first `limit` files of a top-down walk of `tops` (os.walk's order and its idea
    of a file: anything that is not a directory; links not followed). scandir's file types spare a
    stat per non-regular entry and the path joins: the walk is most of the host source's time."""
    best, best_size, seen = None, smallest, 0
    for top in tops:
        stack = [top]
        while stack:
            try:
                with os.scandir(stack.pop()) as found:
                    entries = list(found)
            except OSError:
                continue
            subdirs = []
            for entry in entries:
                if _is_dir(entry):
                    if not entry.is_symlink():
                        subdirs.append(entry.path)
                    continue
                seen += 1
                if seen > limit:
                    return best
                size = _bytes_on_disk(entry, dev)
                if size > best_size:
                    best, best_size = entry.path, size
                    if size >= enough:
                        return best
            stack.extend(reversed(subdirs))  # depth first, in listing order, as os.walk goes
    return best


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def _bytes_on_disk(entry: os.DirEntry[str], dev: int) -> int:
    """The bytes a regular file on `dev` has on disk, else 0: a sparse file's holes are read from no
    disk (O_DIRECT or not, the kernel returns zeros), so they would make the probe look fast."""
    try:
        if not entry.is_file(follow_symlinks=False):
            return 0
        st = entry.stat(follow_symlinks=False)
    except OSError:
        return 0
    return min(st.st_size, st.st_blocks * 512) if st.st_dev == dev else 0


def _mount_device(mountpoint: str) -> str | None:
    try:
        for mount in parse_mounts(_read(Path("/proc/self/mounts"))):
            if mount["mountpoint"] == mountpoint and mount["device"].startswith("/dev/"):
                return mount["device"]
    except OSError:
        return None
    return None


def _can_open(path: str) -> bool:
    try:
        os.close(os.open(path, os.O_RDONLY | os.O_DIRECT))
        return True
    except OSError:
        return False


def random_read_probe(target: str | None, reads: int = PROBE_READS) -> dict[str, float] | None:
    """Latency of random 4 KiB reads from the device or a large file on it (O_DIRECT: no page cache).

    /sys/block/*/queue/rotational says 1 for SSDs in many VMs (ERRATA 7), so the tuner trusts a
    measurement more: at queue depth 1 an SSD answers in well under a millisecond, a spinning disk in
    several. Read-only, 64 reads; None where O_DIRECT is refused (tmpfs, overlay) or nothing fits.
    """
    if target is None or not hasattr(os, "O_DIRECT"):
        return None
    try:
        fd = os.open(target, os.O_RDONLY | os.O_DIRECT)
    except OSError:
        return None
    try:
        size = os.lseek(fd, 0, os.SEEK_END)
        if size < PROBE_BLOCK * 256:
            return None
        buffer = mmap.mmap(-1, PROBE_BLOCK)  # page-aligned, as O_DIRECT requires
        generator = random.Random(size)
        latencies = []
        for _ in range(reads):
            offset = generator.randrange(size // PROBE_BLOCK) * PROBE_BLOCK
            start = time.perf_counter()
            os.preadv(fd, [buffer], offset)
            latencies.append((time.perf_counter() - start) * 1000)
    except OSError:
        return None
    finally:
        os.close(fd)
    latencies.sort()
    mean = sum(latencies) / len(latencies)
    return {"reads": reads, "latency_p50_ms": round(latencies[len(latencies) // 2], 3),
            "latency_p95_ms": round(latencies[int(len(latencies) * 0.95)], 3),
            "iops": round(1000 / mean) if mean else 0.0}


def _data_holders(ctx: CollectContext, mountpoints: list[str]) -> dict[str, set[str]]:
    """Which mount holds /, Docker's data, PostgreSQL's data, backups and the configured extra paths."""
    wanted: dict[str, list[str]] = {"root": ["/"], **{k: list(v) for k, v in DATA_PATHS.items()}}
    wanted["extra"] = [str(p) for p in ctx.settings.disk_paths]
    if ctx.settings.backup_dest is not None:
        wanted["backups"].append(str(ctx.settings.backup_dest))
    docker_root = configured_docker_root()
    if docker_root:
        wanted["docker"] = [docker_root, *wanted["docker"][1:]]
    holders: dict[str, set[str]] = {}
    for role, paths in wanted.items():
        for path in paths:
            if role != "root" and role != "extra" and not os.path.exists(path):
                continue
            holders.setdefault(mount_for(os.path.realpath(path), mountpoints), set()).add(role)
    return holders


def configured_docker_root(daemon_json: Path = Path("/etc/docker/daemon.json")) -> str | None:
    """The `data-root` the daemon's own config file sets ("graph" before Docker 17.05), read here
    rather than waiting for the docker source: the host's facts must not depend on which source
    finished first (dockerd docs, "Daemon configuration file")."""
    try:
        if not daemon_json.is_file() or daemon_json.stat().st_size > 1 << 20:
            return None
        config = json.loads(daemon_json.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    root = config.get("data-root") or config.get("graph") if isinstance(config, dict) else None
    return root if isinstance(root, str) and root.startswith("/") else None


def statvfs_usage(mountpoint: str, ctx: CollectContext) -> dict[str, Any] | None:
    """Sizes as df computes them: used = total - free; percent over what a normal user can use."""
    try:
        st = os.statvfs(mountpoint)
    except OSError as exc:
        ctx.error(mountpoint, f"statvfs failed: {exc.strerror}")
        return None
    if st.f_blocks == 0:
        return None
    total = st.f_blocks * st.f_frsize
    free = st.f_bfree * st.f_frsize
    available = st.f_bavail * st.f_frsize
    used = total - free
    # df's Use%: used / (used + available), so blocks reserved for root count as full.
    used_percent = round(100.0 * used / (used + available), 1) if used + available else 0.0
    inodes_used = st.f_files - st.f_ffree
    inode_percent = round(100.0 * inodes_used / st.f_files, 1) if st.f_files else None
    return {"total_bytes": total, "used_bytes": used, "free_bytes": available,
            "used_percent": used_percent, "inodes_total": st.f_files, "inodes_used": inodes_used,
            "inodes_used_percent": inode_percent}


def _rotational(sys_root: Path, device: str) -> bool | None:
    """/sys/block/<dev>/queue/rotational; many VMs report 1 for SSDs, so rules treat it as weak."""
    if not device.startswith("/dev/"):
        return None
    name = Path(os.path.realpath(device)).name
    candidates = [sys_root / "class" / "block" / name / "queue" / "rotational"]
    parent = (sys_root / "class" / "block" / name).resolve().parent
    candidates.append(parent / "queue" / "rotational")
    for candidate in candidates:
        text = _read_optional(candidate)
        if text is not None and text.strip() in ("0", "1"):
            return text.strip() == "1"
    return None


def _summary(data: dict[str, Any]) -> dict[str, Any]:
    gib = 1024**3
    return {
        "cpus": data["cpu_count"],
        "architecture": data["architecture"],
        "memory_total_gib": round(data["memory_total_bytes"] / gib, 1),
        "memory_available_gib": round(data["memory_available_bytes"] / gib, 1),
        "swap_total_gib": round(data["swap_total_bytes"] / gib, 1),
        "load_average": data["load_average"],
        "mounts": {m["mountpoint"]: f"{m['used_percent']}% used" for m in data["mounts"] if m["holds"]},
    }
