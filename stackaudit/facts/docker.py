"""Docker engine facts: what uses the disk (images, volumes, logs, build cache) and how containers run.

Everything is read from the engine at `settings.docker_host`, DOCKER_HOST or the local socket: a
unix socket through `facts.docker_api.LocalEngine` (the standard library), any other engine through
the Docker SDK. Every call carries `settings.timeout_seconds`: a hung or stopped daemon becomes
`SourceUnavailable` or a `ctx.error`, never a hang.

`snapshot(client, ...)` is the read; the shaping helpers below it are pure so that `remediation.clean`
can plan from saved facts and re-plan from a fresh light snapshot right before each removal.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from stackaudit import pacing
from stackaudit.config import Settings
from stackaudit.facts import CollectContext, SourceUnavailable
from stackaudit.facts.docker_api import EngineClient, LocalEngine
from stackaudit.facts.host import parse_cgroup_self, parse_mounts

if TYPE_CHECKING:
    import docker

DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
MAX_STATS_CONTAINERS = 100  # a one-shot stats call each; beyond this the audit would get slow
# The engine answers a one-shot stats call in about a second (it samples), whatever the load: calls
# in parallel keep 50 containers at seconds instead of most of a minute (docs/benchmarks.md). On a
# local engine the cgroup files answer instead, in microseconds; the stats API is the fallback.
STATS_PARALLEL_CALLS = 8
# Inspect and history calls in flight at once: the engine answers each in a few ms from memory, so
# a few in parallel hide the round trips without loading a 2-core host.
INSPECT_PARALLEL_CALLS = 4
DF_TIMEOUT_FACTOR = 6  # `system df` walks every volume's files (like du), so it may take longer
COMPOSE_PROJECT = "com.docker.compose.project"
COMPOSE_SERVICE = "com.docker.compose.service"
COMPOSE_VOLUME = "com.docker.compose.volume"
COMPOSE_WORKING_DIR = "com.docker.compose.project.working_dir"
COMPOSE_CONFIG_FILES = "com.docker.compose.project.config_files"
_ANONYMOUS_NAME = re.compile(r"^[0-9a-f]{64}$")
LONG_RUNNING_POLICIES = ("always", "unless-stopped", "on-failure")

# Databases whose data must never be removed on a guess: image names, data paths (the official
# images' VOLUME / documented data directories) and files their data directories always contain.
DATABASE_IMAGES: dict[str, tuple[str, ...]] = {
    "postgres": ("postgres", "postgis", "timescaledb", "pgvector", "supabase/postgres"),
    "mysql": ("mysql", "mariadb", "percona"),
    "redis": ("redis", "valkey", "keydb"),
    "prometheus": ("prometheus",),
    "mongo": ("mongo",),
}
DATABASE_PATHS: dict[str, str] = {
    "/var/lib/postgresql": "postgres",
    "/bitnami/postgresql": "postgres",
    "/var/lib/mysql": "mysql",
    "/bitnami/mysql": "mysql",
    "/bitnami/mariadb": "mysql",
    "/var/lib/redis": "redis",
    "/bitnami/redis": "redis",
    "/prometheus": "prometheus",
    "/data/db": "mongo",
    "/data/configdb": "mongo",
}
DATABASE_MARKERS: dict[str, str] = {
    "PG_VERSION": "postgres",
    "ibdata1": "mysql",
    "mysql.ibd": "mysql",
    "dump.rdb": "redis",
    "appendonly.aof": "redis",
    "appendonlydir": "redis",
    "chunks_head": "prometheus",
    "queries.active": "prometheus",
    "WiredTiger": "mongo",
}

T = TypeVar("T")


class DockerError(Exception):
    """A Docker call failed or timed out; the message says which and why (no traceback)."""


# ---------------------------------------------------------------- connection and guarded calls

def docker_host(settings: Settings) -> str:
    return settings.docker_host or os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST


def connect(settings: Settings) -> docker.DockerClient:
    """A client with a timeout on every call, or SourceUnavailable with the reason."""
    import docker  # lazy: start-up (the SDK and requests cost 80 ms; rules only need the pure helpers)

    base_url = docker_host(settings)
    try:
        client = docker.DockerClient(base_url=base_url, timeout=settings.timeout_seconds)
        client.ping()
    except Exception as exc:  # noqa: BLE001 - SDK, requests and socket errors all mean "unreachable"
        raise SourceUnavailable(f"cannot reach the Docker engine at {base_url}: {describe(exc)}") from None
    return client


def connect_reader(settings: Settings) -> docker.DockerClient | LocalEngine:
    """What the collector reads through: the standard-library client on a unix socket (the SDK's
    import alone is a tenth of a second), the SDK for any other engine; SourceUnavailable if down."""
    base_url = docker_host(settings)
    if not base_url.startswith("unix://"):
        return connect(settings)
    client = LocalEngine(base_url, settings.timeout_seconds)
    try:
        client.ping()
    except Exception as exc:  # noqa: BLE001 - socket and HTTP errors all mean "unreachable"
        client.close()
        raise SourceUnavailable(f"cannot reach the Docker engine at {base_url}: {describe(exc)}") from None
    return client


def describe(exc: BaseException) -> str:
    """A short reason: timeouts and refused sockets said plainly, API errors by their explanation
    (the SDK's APIError and LocalEngine's EngineAPIError both carry one)."""
    timeout_names = ("Timeout", "ReadTimeout", "ConnectTimeout", "ReadTimeoutError")  # requests, urllib3
    if (isinstance(exc, TimeoutError) or type(exc).__name__ in timeout_names
            or "timed out" in str(exc).lower()):
        return "no answer within the timeout (is the daemon hung?)"
    explanation = getattr(exc, "explanation", None)
    if explanation:
        return str(explanation)
    text = str(exc)
    for hint in ("No such file or directory", "Connection refused", "Permission denied"):
        if hint in text:
            return hint.lower()
    # LocalEngine's own: RemoteDisconnected is a ConnectionResetError; a cut body is an IncompleteRead
    closed = (ConnectionResetError, BrokenPipeError, http.client.IncompleteRead, http.client.BadStatusLine)
    if isinstance(exc, closed) or "RemoteDisconnected" in text or "Connection reset" in text:
        return "the engine closed the connection (it stopped or crashed during the call)"
    return f"{exc.__class__.__name__}: {text}"[:300]


def call(what: str, func: Callable[[], T]) -> T:
    """Run one Docker call; any failure becomes DockerError(what: why)."""
    try:
        with pacing.waiting_on():
            return func()
    except Exception as exc:  # noqa: BLE001 - SDK, requests and socket errors alike
        raise DockerError(f"{what}: {describe(exc)}") from None


@contextmanager
def longer_timeout(client: EngineClient, factor: int) -> Iterator[None]:
    previous = client.api.timeout
    client.api.timeout = previous * factor
    try:
        yield
    finally:
        client.api.timeout = previous


# ---------------------------------------------------------------- collection

def collect(ctx: CollectContext) -> dict[str, Any]:
    client = connect_reader(ctx.settings)
    cgroups = local_cgroups(ctx.settings) if docker_host(ctx.settings).startswith("unix://") else None
    try:
        data = snapshot(client, light=False, on_error=ctx.error, cgroups=cgroups)
    except DockerError as exc:
        raise SourceUnavailable(str(exc)) from None
    finally:
        client.close()
    data["engine"]["mount"] = data_root_mount(data["engine"].get("data_root"), ctx.settings.proc_root)
    data["summary"] = summarize(data)
    return data


ErrorSink = Callable[[str, str], None]


def _ignore(where: str, why: str) -> None:
    """Light snapshots (re-checks before a removal) do without the optional parts."""


def snapshot(client: EngineClient, light: bool = True, runtime: bool | None = None,
             on_error: ErrorSink = _ignore, cgroups: Cgroups | None = None) -> dict[str, Any]:
    """Engine, containers, images and volumes.

    `light` skips the sizes (`system df`, layer sizes) and `runtime` (default: not light) the
    per-container memory/CPU and log sizes; a light snapshot keeps everything the clean planner
    decides on, so it is what `clean --apply` re-reads before each removal. Listing containers,
    images or volumes failing raises DockerError: a plan without them could remove something in use.
    `cgroups` (a local engine) reads memory and CPU from the cgroup files instead of the stats API.
    """
    now = datetime.now(UTC)
    pending_df = None if light else df_beside(client, on_error)
    engine = read_engine(client, on_error)
    containers = read_containers(client, now)
    if runtime if runtime is not None else not light:
        if cgroups is not None and not cgroups.serves(engine):
            cgroups = None  # the engine's cgroup version is not ours: another host behind the socket
        add_runtime_details(client, containers, on_error, cgroups, engine.get("cgroup_driver"))
    df = {} if pending_df is None else pending_df()
    store = ImageStore.of(engine) if cgroups is not None else None  # a local engine's files
    images = read_images(client, df, containers, light, on_error, store)
    history = {} if light else volume_history(client, on_error)
    volumes = read_volumes(client, df, containers, images, history)
    data: dict[str, Any] = {"engine": engine, "containers": containers, "images": images,
                            "volumes": volumes, "releases": repository_releases(images, containers)}
    if not light:
        data["build_cache"] = build_cache(df)
        data["system_df"] = system_df(df, containers)
    return data


def read_engine(client: EngineClient, on_error: ErrorSink) -> dict[str, Any]:
    version = call("engine version", client.api.version)
    info = call("engine info", client.api.info)
    return {
        "version": version.get("Version"),
        "api_version": version.get("ApiVersion"),
        "min_api_version": version.get("MinAPIVersion"),
        "data_root": info.get("DockerRootDir"),
        "storage_driver": info.get("Driver"),
        "logging_driver": info.get("LoggingDriver"),
        "cgroup_version": info.get("CgroupVersion"),
        "cgroup_driver": info.get("CgroupDriver"),
        "memory_total_bytes": info.get("MemTotal"),
        "cpu_count": info.get("NCPU"),
    }


def df_beside(client: EngineClient, on_error: ErrorSink) -> Callable[[], dict[str, Any]]:
    """`system df` (the engine walks every volume and layer: the slowest call at 800 images) on a
    connection of its own while the containers are read, where the client allows one; what it
    returns gives the result, and its error (if any) at that point, so the order stays fixed."""
    if not isinstance(client, LocalEngine):
        return partial(read_df, client, on_error)  # the SDK's client: after the rest, as it was
    errors: list[tuple[str, str]] = []
    own = LocalEngine(f"unix://{client.path}", client.timeout)
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="docker-df")
    future = pool.submit(read_df, own, lambda where, why: errors.append((where, why)))
    pool.shutdown(wait=False)

    def result() -> dict[str, Any]:
        try:
            return future.result()
        finally:
            own.close()
            for where, why in errors:
                on_error(where, why)
    return result


def read_df(client: EngineClient, on_error: ErrorSink) -> dict[str, Any]:
    try:
        with longer_timeout(client, DF_TIMEOUT_FACTOR):
            result: dict[str, Any] = call("system df", client.api.df)
            return result
    except DockerError as exc:
        on_error("system df", f"{exc}; image shared sizes, volume sizes and build cache are unknown")
        return {}


# ---------------------------------------------------------------- containers

def read_containers(client: EngineClient, now: datetime) -> list[dict[str, Any]]:
    listed = call("list containers", lambda: client.api.containers(all=True))

    def inspect(entry: Mapping[str, Any]) -> dict[str, Any] | None:
        try:
            attrs = call(f"inspect container {entry['Id'][:12]}",
                         partial(client.api.inspect_container, entry["Id"]))
        except DockerError as exc:
            if "No such container" in str(exc):
                return None  # removed between the list and the inspect
            raise
        return container_record(attrs, now)

    return [r for r in in_parallel(inspect, listed, INSPECT_PARALLEL_CALLS) if r is not None]


def in_parallel(func: Callable[[Any], T], items: Sequence[Any], workers: int) -> list[T]:
    """func over items, a few calls in flight, results in the items' order (the first error raises)."""
    if len(items) < 2:
        return [func(item) for item in items]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(func, items))


def container_record(attrs: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """One `docker inspect` result in our shape (pure)."""
    config = attrs.get("Config") or {}
    host = attrs.get("HostConfig") or {}
    state = attrs.get("State") or {}
    labels = config.get("Labels") or {}
    log_config = host.get("LogConfig") or {}
    started_at = _real_time(state.get("StartedAt"))
    running = state.get("Status") == "running"
    restart = host.get("RestartPolicy") or {}
    return {
        "id": attrs["Id"],
        "name": str(attrs.get("Name", "")).lstrip("/"),
        "image": config.get("Image"),
        "image_id": attrs.get("Image"),
        "state": state.get("Status"),
        "labels": dict(labels),
        "compose_project": labels.get(COMPOSE_PROJECT),
        "compose_service": labels.get(COMPOSE_SERVICE),
        "compose_working_dir": labels.get(COMPOSE_WORKING_DIR),
        "compose_config_files": _split_files(labels.get(COMPOSE_CONFIG_FILES)),
        "memory_limit_bytes": host.get("Memory") or None,  # 0 means no limit
        "memory_reservation_bytes": host.get("MemoryReservation") or None,
        "memory_usage_bytes": None,
        "cpu_usage_seconds": None,  # CPU time used since the container started
        "runtime_source": None,  # where memory/CPU were read: "cgroup v1|v2 <dir>" or "stats API"
        "cgroup_parent": host.get("CgroupParent") or None,
        "cpu_limit_cores": cpu_limit_cores(host),
        "ports": published_ports(attrs),
        "mounts": [{"type": m.get("Type"), "name": m.get("Name"), "source": m.get("Source"),
                    "destination": m.get("Destination"), "rw": m.get("RW")}
                   for m in attrs.get("Mounts") or []],
        "log": {"driver": log_config.get("Type"), "options": dict(log_config.get("Config") or {}),
                "path": attrs.get("LogPath") or None, "size_bytes": None, "size_error": None},
        "restart_policy": restart.get("Name") or "no",
        "restart_max_retries": restart.get("MaximumRetryCount") or 0,
        "restart_count": attrs.get("RestartCount", 0),
        "health": (state.get("Health") or {}).get("Status"),
        "privileged": bool(host.get("Privileged")),
        "cap_add": sorted({str(c).upper().removeprefix("CAP_") for c in host.get("CapAdd") or []}),
        "network_mode": host.get("NetworkMode"),
        "pid_mode": host.get("PidMode") or None,
        "ipc_mode": host.get("IpcMode") or None,
        "created": attrs.get("Created"),
        "started_at": started_at,
        "finished_at": _real_time(state.get("FinishedAt")),
        "uptime_seconds": _seconds_since(started_at, now) if running else None,
        "oom_killed": bool(state.get("OOMKilled")),
        "pid": state.get("Pid") or None,
    }


def _split_files(text: str | None) -> list[str]:
    return [part for part in (text or "").split(",") if part]


def _real_time(text: str | None) -> str | None:
    """Docker writes 0001-01-01T00:00:00Z for 'never'."""
    return None if not text or text.startswith("0001-") else text


def parse_time(text: str) -> datetime:
    """RFC 3339 with nanoseconds (Docker) -> an aware datetime (microseconds kept)."""
    match = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)?$", text)
    if not match:
        raise ValueError(f"not a Docker timestamp: {text!r}")
    base, fraction, zone = match.groups()
    micro = (fraction or ".0")[1:7].ljust(6, "0")
    zone = "+00:00" if zone in (None, "Z") else zone
    return datetime.fromisoformat(f"{base}.{micro}{zone}")


def _seconds_since(text: str | None, now: datetime) -> int | None:
    if not text:
        return None
    try:
        return max(0, int((now - parse_time(text)).total_seconds()))
    except ValueError:
        return None


def cpu_limit_cores(host: Mapping[str, Any]) -> float | None:
    """--cpus is NanoCpus; compose's cpu_quota/cpu_period is CpuQuota/CpuPeriod (default 100 ms)."""
    if host.get("NanoCpus"):
        return round(host["NanoCpus"] / 1e9, 3)
    if host.get("CpuQuota") and host["CpuQuota"] > 0:
        return round(host["CpuQuota"] / (host.get("CpuPeriod") or 100_000), 3)
    return None


def published_ports(attrs: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Live bindings for a running container, the configured ones for a stopped container."""
    live = (attrs.get("NetworkSettings") or {}).get("Ports") or {}
    configured = (attrs.get("HostConfig") or {}).get("PortBindings") or {}
    bindings = live if any(live.values()) else configured
    ports = []
    for key, hosts in sorted(bindings.items()):
        container_port, _, protocol = key.partition("/")
        for binding in hosts or []:
            host_port = binding.get("HostPort")
            ports.append({"host_ip": binding.get("HostIp") or "0.0.0.0",
                          "host_port": int(host_port) if host_port and host_port.isdigit() else None,
                          "container_port": int(container_port), "protocol": protocol or "tcp"})
    return ports


def add_runtime_details(client: EngineClient, containers: list[dict[str, Any]],
                        on_error: ErrorSink, cgroups: Cgroups | None = None,
                        driver: str | None = None) -> None:
    """Memory in use and CPU time (running containers only) and the json-file log's size on disk.

    From the cgroup files when the engine is local (microseconds each); the rest through one-shot
    stats calls, in parallel under one deadline (each takes the engine about a second).
    """
    running = [c for c in containers if c["state"] == "running"]
    unread = [c for c in running if cgroups is None or not cgroups.fill(c, driver)]
    stats_usage(client, unread, on_error)
    for container in containers:
        container["log"]["size_bytes"], container["log"]["size_error"] = log_size(container["log"])


def stats_usage(client: EngineClient, containers: list[dict[str, Any]], on_error: ErrorSink) -> None:
    """One-shot stats for each container, all in flight together; one deadline for all of them."""
    if not containers:
        return
    wanted = containers[:MAX_STATS_CONTAINERS]
    pool = ThreadPoolExecutor(max_workers=STATS_PARALLEL_CALLS)
    futures: list[Future[Any]] = [
        pool.submit(call, f"stats of {c['name']}",
                    partial(client.api.stats, c["id"], stream=False, one_shot=True)) for c in wanted]
    deadline = float(client.api.timeout or 10)
    wait(futures, timeout=deadline)
    pool.shutdown(wait=False, cancel_futures=True)
    for container, future in zip(wanted, futures, strict=True):
        if not future.done():
            on_error(f"container {container['name']}", f"stats: no answer within {deadline:g} s")
        elif isinstance(future.exception(), DockerError):
            on_error(f"container {container['name']}", str(future.exception()))
        else:
            stats = future.result()
            container["memory_usage_bytes"] = memory_usage_bytes(stats.get("memory_stats") or {})
            total = ((stats.get("cpu_stats") or {}).get("cpu_usage") or {}).get("total_usage")
            container["cpu_usage_seconds"] = round(total / 1e9, 3) if total is not None else None
            container["runtime_source"] = "stats API"
    if len(containers) > MAX_STATS_CONTAINERS:
        on_error("container stats", f"memory usage measured for the first {MAX_STATS_CONTAINERS} of "
                 f"{len(containers)} running containers only (one stats call each)")


# ---------------------------------------------------------------- cgroup files of a local engine

@dataclass(frozen=True)
class Cgroups:
    """This host's cgroup filesystem (`root`, e.g. /sys/fs/cgroup) and /proc, for a local engine."""

    root: Path
    proc: Path
    version: int  # 1 or 2

    def serves(self, engine: Mapping[str, Any]) -> bool:
        """The engine's containers live here: its cgroup version is this host's."""
        return str(engine.get("cgroup_version") or self.version) == str(self.version)

    def fill(self, container: dict[str, Any], driver: str | None) -> bool:
        """Set the container's memory and CPU from its cgroup; False when no readable cgroup."""
        for paths in self.candidates(container, driver):
            usage = read_cgroup_usage(self.root, self.version, paths)
            if usage is not None:
                container.update(usage)
                return True
        return False

    def candidates(self, container: Mapping[str, Any], driver: str | None) -> Iterator[dict[str, str]]:
        """The path the engine's driver gives it, then the one its main process is in (a daemon
        started with its own --cgroup-parent, or rootless)."""
        path = cgroup_path(container["id"], driver, container.get("cgroup_parent"))
        yield {"memory": path, "cpuacct": path, "": path}
        if container.get("pid"):
            try:
                text = (self.proc / str(container["pid"]) / "cgroup").read_text()
            except OSError:
                return
            yield parse_cgroup_self(text)


def local_cgroups(settings: Settings) -> Cgroups | None:
    """The cgroup filesystem of this host, when there is one to read."""
    root = settings.sys_root / "fs" / "cgroup"
    if (root / "cgroup.controllers").exists():
        return Cgroups(root, settings.proc_root, 2)
    if (root / "memory").is_dir():
        return Cgroups(root, settings.proc_root, 1)
    return None


def cgroup_path(container_id: str, driver: str | None, parent: str | None) -> str:
    """Where the engine puts a container's cgroup, below the hierarchy's root.

    As moby's daemon/oci_linux.go (WithCgroups) builds it: cgroupfs joins the parent ("/docker"
    unless HostConfig.CgroupParent) and the id; systemd makes the scope docker-<id>.scope in the
    parent slice ("system.slice" by default), which systemd nests by its dashes (systemd.slice(5):
    "a-b.slice" lives in /a.slice/a-b.slice).
    """
    if driver == "systemd":
        return f"{slice_path(parent or 'system.slice')}/docker-{container_id}.scope"
    return "/" + "/".join(p for p in [*(parent or "/docker").split("/"), container_id] if p)


def slice_path(name: str) -> str:
    stem = name.removesuffix(".slice")
    if stem in ("", "-"):
        return ""  # -.slice is the root
    parts = stem.split("-")
    return "".join("/" + "-".join(parts[:i + 1]) + ".slice" for i in range(len(parts)))


def read_cgroup_usage(root: Path, version: int, paths: Mapping[str, str]) -> dict[str, Any] | None:
    """Memory in use (as `docker stats` counts it) and CPU seconds from one container's cgroup files.

    v1: memory.usage_in_bytes minus memory.stat total_inactive_file, cpuacct.usage (ns);
    v2: memory.current minus memory.stat inactive_file, cpu.stat usage_usec (kernel
    Documentation/admin-guide/cgroup-v1/memory.rst, cgroup-v2.rst). None when the files are not there.
    """
    if version == 2:
        directory = root / paths.get("", "/").lstrip("/")
        usage, stat = _int_file(directory / "memory.current"), _flat_keyed(directory / "memory.stat")
        cpu = _flat_keyed(directory / "cpu.stat").get("usage_usec")
        cpu_seconds = cpu / 1e6 if cpu is not None else None
    else:
        directory = root / "memory" / paths.get("memory", "/").lstrip("/")
        usage, stat = _int_file(directory / "memory.usage_in_bytes"), _flat_keyed(directory / "memory.stat")
        cpu_dir = next((root / name / paths.get("cpuacct", "/").lstrip("/")
                        for name in ("cpuacct", "cpu,cpuacct") if (root / name).is_dir()), None)
        nanoseconds = _int_file(cpu_dir / "cpuacct.usage") if cpu_dir else None
        cpu_seconds = nanoseconds / 1e9 if nanoseconds is not None else None
    if usage is None:
        return None
    return {"memory_usage_bytes": memory_usage_bytes({"usage": usage, "stats": stat}),
            "cpu_usage_seconds": round(cpu_seconds, 3) if cpu_seconds is not None else None,
            "runtime_source": f"cgroup v{version} {directory}"}


def _int_file(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _flat_keyed(path: Path) -> dict[str, int]:
    """A cgroup "key value" file (memory.stat, cpu.stat); {} when unreadable."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return {}
    values = {}
    for line in lines:
        key, _, value = line.partition(" ")
        if value.strip().isdigit():
            values[key] = int(value)
    return values


def memory_usage_bytes(memory_stats: Mapping[str, Any]) -> int | None:
    """What `docker stats` shows: usage minus inactive page cache (docker/cli stats_helpers.go:
    cgroup v1 subtracts total_inactive_file, v2 inactive_file)."""
    usage = memory_stats.get("usage")
    if usage is None:
        return None
    detail = memory_stats.get("stats") or {}
    for key in ("total_inactive_file", "inactive_file"):
        if key in detail and detail[key] < usage:
            return int(usage - detail[key])
    return int(usage)


def log_size(log: Mapping[str, Any]) -> tuple[int | None, str | None]:
    """Size of the json-file/local log on disk; (None, why) when it cannot be read (needs root)."""
    if log.get("driver") not in ("json-file", "local"):
        return None, f"log driver {log.get('driver')} does not write a local file"
    path = log.get("path")
    if not path:
        return None, "the engine reports no log path"
    try:
        return os.stat(path).st_size, None
    except FileNotFoundError:
        return 0, None  # nothing logged yet, or the daemon runs on another host
    except OSError as exc:
        return None, f"cannot stat {path}: {exc.strerror} (reading Docker's logs needs root)"


# ---------------------------------------------------------------- images

def repository_of(reference: str | None) -> str | None:
    """'registry:5000/team/app:v3' -> 'registry:5000/team/app'; an image id -> None."""
    if not reference or reference.startswith("sha256:") or _ANONYMOUS_NAME.match(reference):
        return None
    reference = reference.split("@", 1)[0]
    name, sep, tag = reference.rpartition(":")
    if sep and "/" not in tag:
        return name
    return reference


def read_images(client: EngineClient, df: Mapping[str, Any], containers: list[dict[str, Any]],
                light: bool, on_error: ErrorSink, store: ImageStore | None = None) -> list[dict[str, Any]]:
    """Every image, from the list plus what only its config has (creation time to the nanosecond,
    VOLUMEs, layers): read from a local engine's image store, else one inspect (and one history,
    for layer sizes) per image."""
    listed = call("list images", lambda: client.api.images(all=True))
    sizes = {i["Id"]: i for i in df.get("Images") or []}
    users: dict[str, list[dict[str, Any]]] = {}
    for container in containers:
        users.setdefault(container["image_id"], []).append(
            {"id": container["id"], "name": container["name"], "state": container["state"]})
    parents = {i.get("ParentId") for i in listed if i.get("ParentId")}

    def read(entry: Mapping[str, Any]) -> dict[str, Any] | None:
        stored = store.image(entry, light) if store is not None else None
        if stored is not None:
            attrs, layers = stored
            return image_record(attrs, sizes.get(entry["Id"]), users.get(entry["Id"], []),
                                entry["Id"] in parents, layers)
        try:
            attrs = call(f"inspect image {entry['Id'][7:19]}", partial(client.api.inspect_image, entry["Id"]))
        except DockerError as exc:
            if "No such image" in str(exc):
                return None  # removed between the list and the inspect
            raise
        layers = None if light else image_layers(client, attrs, on_error)
        return image_record(attrs, sizes.get(entry["Id"]), users.get(entry["Id"], []),
                            entry["Id"] in parents, layers)

    images = [i for i in in_parallel(read, listed, INSPECT_PARALLEL_CALLS) if i is not None]
    images.sort(key=lambda i: (i["created"] or "", i["id"]))
    return images


@dataclass(frozen=True)
class ImageStore:
    """A local engine's image store under its data root: each image's config and each layer's size.

    The engine keeps the image config under its id (the sha256 of the config's bytes, which is
    checked, so a data root of another engine is never taken for this one's) and each layer's size
    under its chain id (OCI image spec, config.md "ChainID"); `docker inspect` and `docker history`
    read the same two. An engine with the containerd image store has no such folder: None.
    """

    root: Path  # <data root>/image/<storage driver>

    @classmethod
    def of(cls, engine: Mapping[str, Any]) -> ImageStore | None:
        if not engine.get("data_root") or not engine.get("storage_driver"):
            return None
        root = Path(engine["data_root"]) / "image" / str(engine["storage_driver"])
        return cls(root) if (root / "imagedb" / "content" / "sha256").is_dir() else None

    def image(self, entry: Mapping[str, Any], light: bool
              ) -> tuple[dict[str, Any], list[dict[str, Any]] | None] | None:
        """What inspect would say of the listed image (and its layers unless light), or None."""
        algorithm, _, digest = str(entry["Id"]).partition(":")
        try:  # plain strings, not Path: this runs per image and per layer (800 + 1,600 at 4x)
            with open(os.path.join(self.root, "imagedb", "content", algorithm, digest), "rb") as file:
                raw = file.read()
        except OSError:
            return None
        if algorithm != "sha256" or _sha256(raw) != digest:
            return None
        config = json.loads(raw)
        diff_ids = list((config.get("rootfs") or {}).get("diff_ids") or [])
        layers = None if light else self.layers(diff_ids)
        if not light and layers is None:
            return None
        attrs = {"Id": entry["Id"], "RepoTags": entry.get("RepoTags"),
                 "RepoDigests": [d for d in entry.get("RepoDigests") or [] if d != "<none>@<none>"],
                 "Parent": entry.get("ParentId") or "", "Size": entry.get("Size"),
                 "Created": config.get("created"),
                 "Config": {"Labels": entry.get("Labels") or (config.get("config") or {}).get("Labels"),
                            "Volumes": (config.get("config") or {}).get("Volumes")},
                 "RootFS": {"Layers": diff_ids}}
        return attrs, layers

    def layers(self, diff_ids: list[str]) -> list[dict[str, Any]] | None:
        """Each layer's size from layerdb/sha256/<chain id>/size; None when one is missing."""
        found, chain = [], ""
        for diff_id in diff_ids:
            chain = diff_id if not chain else "sha256:" + _sha256(f"{chain} {diff_id}".encode())
            try:
                with open(os.path.join(self.root, "layerdb", "sha256", chain.partition(":")[2], "size"),
                          encoding="utf-8") as file:
                    size = int(file.read())
            except (OSError, ValueError):
                return None
            found.append({"id": diff_id, "size_bytes": size})
        return found


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def image_record(attrs: Mapping[str, Any], df_entry: Mapping[str, Any] | None,
                 users: list[dict[str, Any]], has_children: bool,
                 layers: list[dict[str, Any]] | None) -> dict[str, Any]:
    """One image (pure): tags, sizes (shared size only `system df` knows), users, dangling."""
    repo_tags = [t for t in attrs.get("RepoTags") or [] if t != "<none>:<none>"]
    repositories = sorted({r for r in (repository_of(t) for t in repo_tags) if r})
    size = attrs.get("Size")
    shared = df_entry.get("SharedSize") if df_entry else None
    shared = None if shared is None or shared < 0 else shared
    config = attrs.get("Config") or {}
    return {
        "id": attrs["Id"],
        "repo_tags": repo_tags,
        "repository": repositories[0] if repositories else None,
        "repositories": repositories,
        "tags": [t.rpartition(":")[2] for t in repo_tags],
        "repo_digests": list(attrs.get("RepoDigests") or []),
        "parent_id": attrs.get("Parent") or None,
        "has_children": has_children,
        "size_bytes": size,
        "shared_size_bytes": shared,
        "unique_size_bytes": (size - shared) if size is not None and shared is not None else None,
        "created": attrs.get("Created"),
        "labels": dict(config.get("Labels") or {}),
        "volumes": sorted((config.get("Volumes") or {}).keys()),
        "layers": layers,
        "containers": users,
        "dangling": not repo_tags and not users and not has_children,
    }


def image_layers(client: EngineClient, attrs: Mapping[str, Any],
                 on_error: ErrorSink) -> list[dict[str, Any]] | None:
    """Each layer's diff id and size, so bytes freed can be counted layer by layer.

    The history API lists the image config's history newest first; entries that made a layer carry
    its size, empty ones (ENV, CMD) say 0. When the non-zero entries do not line up one to one with
    RootFS.Layers (a genuinely empty layer), we give up and the planner uses size - shared size.
    """
    diff_ids = list((attrs.get("RootFS") or {}).get("Layers") or [])
    try:
        history = call("image history", lambda: client.api.history(attrs["Id"]))
    except DockerError as exc:
        on_error(f"image {attrs['Id'][7:19]}", str(exc))
        return None
    sizes = [int(h.get("Size") or 0) for h in reversed(history)]
    non_empty = [s for s in sizes if s > 0]
    if len(non_empty) != len(diff_ids):
        return None
    return [{"id": d, "size_bytes": s} for d, s in zip(diff_ids, non_empty, strict=True)]


def repository_releases(images: list[dict[str, Any]], containers: list[dict[str, Any]]
                        ) -> list[dict[str, Any]]:
    """For every repository a container (running or stopped) uses: its images newest first.

    A container's repository is the one it was configured with (`app:v3`) and the repositories of
    the image it runs. `current` marks images a container runs; `running` says a running one does.
    """
    by_id = {i["id"]: i for i in images}
    wanted: dict[str, dict[str, Any]] = {}
    for container in containers:
        image = by_id.get(container["image_id"], {})
        repos = set(image.get("repositories", []))
        configured = repository_of(container["image"])
        if configured:
            repos.add(configured)
        for repo in repos:
            entry = wanted.setdefault(repo, {"services": set(), "current": set(), "running": False})
            entry["services"].add(container["compose_service"] or container["name"])
            entry["current"].add(container["image_id"])
            entry["running"] = entry["running"] or container["state"] == "running"
    releases = []
    for repo, entry in sorted(wanted.items()):
        members = [i for i in images if repo in i["repositories"]]
        members.sort(key=lambda i: (i["created"] or "", i["id"]), reverse=True)
        releases.append({
            "repository": repo,
            "services": sorted(entry["services"]),
            "running": entry["running"],
            "images": [{"id": i["id"], "tags": [t for t in i["repo_tags"] if repository_of(t) == repo],
                        "created": i["created"], "size_bytes": i["size_bytes"],
                        "current": i["id"] in entry["current"]} for i in members],
        })
    return releases


# ---------------------------------------------------------------- volumes

def read_volumes(client: EngineClient, df: Mapping[str, Any], containers: list[dict[str, Any]],
                 images: list[dict[str, Any]], history: Mapping[str, dict[str, Any]]
                 ) -> list[dict[str, Any]]:
    listed = call("list volumes", lambda: client.api.volumes()).get("Volumes") or []
    listed.sort(key=lambda v: str(v.get("Name")))  # the engine lists them in Go map order: random
    usage = {v["Name"]: (v.get("UsageData") or {}) for v in df.get("Volumes") or []}
    return [volume_record(v, usage.get(v["Name"]), containers, images, history.get(v["Name"]))
            for v in listed]


def volume_history(client: EngineClient, on_error: ErrorSink) -> dict[str, dict[str, Any]]:
    """Volume -> the last container the engine saw mount it, from the engine's event buffer.

    The daemon keeps only its most recent events in memory (lost on restart), so this is a hint for
    volumes no container mounts any more, not a history. `until` makes the call end instead of
    streaming.
    """
    # To the microsecond: a whole second would leave out what happened in the current one.
    now = f"{datetime.now(UTC).timestamp():.6f}"
    try:
        events = call("engine events", lambda: list(client.api.events(
            since=1, until=now, decode=True,
            filters={"type": ["volume", "container"], "event": ["mount", "create", "destroy"]})))
    except DockerError as exc:
        on_error("engine events", f"{exc}; last users of unmounted volumes are unknown")
        return {}
    return parse_volume_history(events)


def parse_volume_history(events: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Pure: container events name containers; each volume keeps its latest mount."""
    names: dict[str, dict[str, str]] = {}
    mounts: dict[str, dict[str, Any]] = {}
    for event in events:
        actor = event.get("Actor") or {}
        attributes = actor.get("Attributes") or {}
        if event.get("Type") == "container" and attributes.get("name"):
            names[actor.get("ID", "")] = {"name": attributes["name"], "image": attributes.get("image", "")}
        elif event.get("Type") == "volume" and event.get("Action") == "mount":
            mounts[actor.get("ID", "")] = {"container_id": attributes.get("container"),
                                           "destination": attributes.get("destination"),
                                           "time": event.get("time")}
    for mount in mounts.values():
        known = names.get(mount["container_id"] or "", {})
        mount["container_name"] = known.get("name")
        mount["image"] = known.get("image")
    return mounts


def volume_record(attrs: Mapping[str, Any], usage: Mapping[str, Any] | None,
                  containers: list[dict[str, Any]], images: list[dict[str, Any]],
                  history: Mapping[str, Any] | None = None) -> dict[str, Any]:
    name = attrs["Name"]
    labels = dict(attrs.get("Labels") or {})
    size = (usage or {}).get("Size")
    users = [{"id": c["id"], "name": c["name"], "state": c["state"], "image": c["image"],
              "image_id": c["image_id"], "destination": m["destination"], "finished_at": c["finished_at"],
              "started_at": c["started_at"]}
             for c in containers for m in c["mounts"] if m["type"] == "volume" and m["name"] == name]
    kind, evidence = database_look(attrs.get("Mountpoint"), users, images, history)
    return {
        "name": name,
        "driver": attrs.get("Driver"),
        "labels": labels,
        "compose_project": labels.get(COMPOSE_PROJECT),
        "compose_volume": labels.get(COMPOSE_VOLUME),
        "anonymous": is_anonymous(name, labels),
        "mountpoint": attrs.get("Mountpoint"),
        "created": attrs.get("CreatedAt"),
        "size_bytes": size if isinstance(size, int) and size >= 0 else None,
        "containers": users,
        "last_container": last_container(users) or _history_name(history),
        "last_mounted_by": dict(history) if history else None,
        "looks_like_database": kind is not None,
        "database_kind": kind,
        "database_evidence": evidence,
    }


def is_anonymous(name: str, labels: Mapping[str, str]) -> bool:
    """Docker names anonymous volumes with 64 hex digits; compose labels the ones it declares."""
    return bool(_ANONYMOUS_NAME.match(name)) and COMPOSE_VOLUME not in labels


def last_container(users: list[dict[str, Any]]) -> str | None:
    """The container that used the volume most recently (running ones first)."""
    if not users:
        return None
    running = [u for u in users if u["state"] == "running"]
    if running:
        return str(running[0]["name"])
    latest = max(users, key=lambda u: u["finished_at"] or u["started_at"] or "")
    return str(latest["name"])


def _history_name(history: Mapping[str, Any] | None) -> str | None:
    if not history:
        return None
    return history.get("container_name") or (history.get("container_id") or "")[:12] or None


def image_database_kind(reference: str | None) -> str | None:
    repo = repository_of(reference) or ""
    last = repo.rsplit("/", 1)[-1]
    for kind, names in DATABASE_IMAGES.items():
        if any(last.startswith(n.rsplit("/", 1)[-1]) for n in names) or repo in names:
            return kind
    return None


def path_database_kind(destination: str | None) -> str | None:
    for path, kind in DATABASE_PATHS.items():
        if destination and (destination == path or destination.startswith(path + "/")):
            return kind
    return None


def database_look(mountpoint: str | None, users: list[dict[str, Any]], images: list[dict[str, Any]],
                  history: Mapping[str, Any] | None = None) -> tuple[str | None, list[str]]:
    """Which database the volume seems to hold, with the reasons (empty when none)."""
    evidence: list[tuple[str, str]] = []
    if history:  # the container that last mounted it may be gone; the event still names its image
        kind = image_database_kind(history.get("image")) or path_database_kind(history.get("destination"))
        if kind:
            evidence.append((kind, f"last mounted by {_history_name(history)} ({history.get('image')}) "
                                   f"at {history.get('destination')}"))
    for user in users:
        kind = image_database_kind(user["image"])
        if kind:
            evidence.append((kind, f"mounted by {user['name']} running image {user['image']}"))
        kind = path_database_kind(user["destination"])
        if kind:
            evidence.append((kind, f"mounted at {user['destination']}, a {kind} data path"))
    by_id = {i["id"]: i for i in images}
    for user in users:  # an anonymous volume made by a database image's VOLUME
        image = by_id.get(user["image_id"])
        kind = next(filter(None, map(image_database_kind, image["repo_tags"])), None) if image else None
        if image and kind and user["destination"] in image["volumes"]:
            evidence.append((kind, f"created by the VOLUME {user['destination']} of {image['repo_tags'][0]}"))
    evidence.extend(content_markers(mountpoint))
    if not evidence:
        return None, []
    return evidence[0][0], sorted({why for _, why in evidence})


def content_markers(mountpoint: str | None, depth: int = 2) -> list[tuple[str, str]]:
    """Files only a database writes (PG_VERSION, ibdata1, dump.rdb, ...), up to two levels down
    (postgres 18 images keep data in 18/docker; many stacks set PGDATA to a subdirectory)."""
    if not mountpoint:
        return []
    found: list[tuple[str, str]] = []
    for directory in _walk(Path(mountpoint), depth):
        for marker, kind in DATABASE_MARKERS.items():
            if (directory / marker).exists():
                where = directory.relative_to(mountpoint)
                found.append((kind, f"contains {'' if str(where) == '.' else f'{where}/'}{marker}"))
    return found


def _walk(root: Path, depth: int, limit: int = 64) -> Iterator[Path]:
    try:
        if not root.is_dir():
            return
        yield root
        if depth == 0:
            return
        children = sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink())[:limit]
    except OSError:
        return  # unreadable (not root, or the daemon is remote): no content evidence
    for child in children:
        yield from _walk(child, depth - 1, limit)


# ---------------------------------------------------------------- build cache, df, mount, summary

def build_cache(df: Mapping[str, Any]) -> dict[str, Any]:
    """As `docker system df` counts it: shared records once, in-use records are not reclaimable."""
    if not df:
        return {"known": False, "records": 0, "size_bytes": None, "reclaimable_bytes": None}
    records = df.get("BuildCache") or []
    size = sum(r.get("Size", 0) for r in records if not r.get("Shared"))
    reclaimable = sum(r.get("Size", 0) for r in records if not r.get("Shared") and not r.get("InUse"))
    return {"known": True, "records": len(records), "size_bytes": size, "reclaimable_bytes": reclaimable,
            "in_use_records": sum(1 for r in records if r.get("InUse"))}


def system_df(df: Mapping[str, Any], containers: list[dict[str, Any]]) -> dict[str, Any] | None:
    """`docker system df` by type (docker/cli formatter/disk_usage.go semantics)."""
    if not df:
        return None
    images = df.get("Images") or []
    active_images = [i for i in images if i.get("Containers", 0) > 0]
    used = sum(i["Size"] - i["SharedSize"] for i in active_images if i.get("SharedSize", -1) >= 0)
    layers = int(df.get("LayersSize") or 0)
    rows = df.get("Containers") or []
    rw = sum(int(c.get("SizeRw") or 0) for c in rows)
    volumes = df.get("Volumes") or []
    vol_sizes = [(v.get("UsageData") or {}) for v in volumes]
    vol_total = sum(u.get("Size", 0) for u in vol_sizes if u.get("Size", -1) >= 0)
    vol_free = sum(u.get("Size", 0) for u in vol_sizes if u.get("Size", -1) >= 0 and u.get("RefCount") == 0)
    cache = build_cache(df)
    return {
        "images": {"count": len(images), "active": len(active_images), "size_bytes": layers,
                   "reclaimable_bytes": max(0, layers - used)},
        "containers": {"count": len(rows), "active": sum(1 for c in containers if c["state"] == "running"),
                       "size_bytes": rw,
                       "reclaimable_bytes": sum(int(c.get("SizeRw") or 0) for c in rows
                                                if c.get("State") != "running")},
        "volumes": {"count": len(volumes), "active": sum(1 for u in vol_sizes if u.get("RefCount", 0) > 0),
                    "size_bytes": vol_total, "reclaimable_bytes": vol_free},
        "build_cache": {"count": cache["records"], "active": cache.get("in_use_records", 0),
                        "size_bytes": cache["size_bytes"], "reclaimable_bytes": cache["reclaimable_bytes"]},
    }


def data_root_mount(data_root: str | None, proc: Path) -> dict[str, Any] | None:
    """The mount holding Docker's data root: sizes from statvfs, the device from the mount table.

    Read here rather than taken from the host source, so the docker source need not wait for it.
    """
    if not data_root:
        return None
    found = statvfs_mount(data_root)
    if found is not None:
        try:
            mounts = parse_mounts((proc / "self" / "mounts").read_text())
        except OSError:
            mounts = []
        found["device"] = next((m["device"] for m in mounts if m["mountpoint"] == found["mountpoint"]), None)
    return found


def statvfs_mount(path: str) -> dict[str, Any] | None:
    """The mount point above `path` and its size; None when the path is not visible here."""
    try:
        real = os.path.realpath(path)
        st = os.statvfs(real)
    except OSError:
        return None
    point = real
    while not os.path.ismount(point) and point != "/":
        point = os.path.dirname(point)
    used = (st.f_blocks - st.f_bfree) * st.f_frsize
    available = st.f_bavail * st.f_frsize
    return {"mountpoint": point, "device": None, "total_bytes": st.f_blocks * st.f_frsize,
            "free_bytes": available,
            "used_percent": round(100.0 * used / (used + available), 1) if used + available else 0.0}


def free_bytes(path: str | None) -> int | None:
    """Free bytes (for unprivileged users, as df shows) on the filesystem holding `path`."""
    if not path:
        return None
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def summarize(data: Mapping[str, Any]) -> dict[str, Any]:
    images = data["images"]
    volumes = data["volumes"]
    logs = [c["log"]["size_bytes"] for c in data["containers"] if c["log"]["size_bytes"] is not None]
    return {
        "engine": data["engine"].get("version"),
        "containers": len(data["containers"]),
        "running": sum(1 for c in data["containers"] if c["state"] == "running"),
        "images": len(images),
        "images_bytes": (data.get("system_df") or {}).get("images", {}).get("size_bytes"),
        "dangling_images": sum(1 for i in images if i["dangling"]),
        "volumes": len(volumes),
        "volumes_bytes": sum(v["size_bytes"] or 0 for v in volumes),
        "volumes_unused": sum(1 for v in volumes if not v["containers"]),
        "build_cache_bytes": (data.get("build_cache") or {}).get("size_bytes"),
        "container_logs_bytes": sum(logs),
    }
