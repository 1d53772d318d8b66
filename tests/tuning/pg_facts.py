"""Hand-built facts for the PostgreSQL tuner and its rules (shapes agreed in the facts contract)."""

from __future__ import annotations

from typing import Any

from stackaudit.facts import Facts
from stackaudit.tuning.units import GB, MB, parse_memory

MEMORY_SETTINGS = {"shared_buffers", "effective_cache_size", "work_mem", "maintenance_work_mem",
                   "autovacuum_work_mem", "wal_buffers", "min_wal_size", "max_wal_size"}
POSTMASTER = {"shared_buffers", "max_connections", "max_worker_processes", "wal_buffers", "huge_pages",
              "io_method"}


def pg_setting(name: str, value: str | int | float, source: str = "default",
               sourcefile: str | None = None) -> dict[str, Any]:
    """One pg_settings row as the collector writes it (value as SHOW prints it, base_value in bytes)."""
    if name in MEMORY_SETTINGS:
        base: float | None = float(parse_memory(str(value), "kB"))
        shown = str(value)
    else:
        base = float(value) if not isinstance(value, str) or _is_number(value) else None
        shown = str(value)
    return {"setting": shown, "unit": None, "value": shown, "base_value": base, "source": source,
            "sourcefile": sourcefile, "sourceline": 3 if sourcefile else None, "pending_restart": False,
            "context": "postmaster" if name in POSTMASTER else "user", "vartype": "integer"}


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def pg_settings(values: dict[str, str | int | float], source: str = "default",
                sourcefile: str | None = None) -> dict[str, dict[str, Any]]:
    return {name: pg_setting(name, value, source, sourcefile) for name, value in values.items()}


DEFAULTS_18: dict[str, str | int | float] = {
    "max_connections": 100, "shared_buffers": "128MB", "effective_cache_size": "4GB", "work_mem": "4MB",
    "hash_mem_multiplier": 2, "maintenance_work_mem": "64MB", "autovacuum_work_mem": "-1",
    "autovacuum_max_workers": 3, "wal_buffers": "4MB", "min_wal_size": "80MB", "max_wal_size": "1GB",
    "checkpoint_completion_target": 0.9, "max_worker_processes": 8, "max_parallel_workers": 8,
    "max_parallel_workers_per_gather": 2, "max_parallel_maintenance_workers": 2, "random_page_cost": 4,
    "effective_io_concurrency": 16, "huge_pages": "try", "io_method": "worker",
}

# What the reference report told the owner to set (its POSTGRES_INITDB_ARGS line).
REPORT_SETTINGS: dict[str, str | int | float] = {
    "shared_buffers": "5760MB", "effective_cache_size": "15GB", "work_mem": "256MB",
    "maintenance_work_mem": "512MB", "random_page_cost": 1.1, "max_worker_processes": 4,
    "max_parallel_workers_per_gather": 4, "max_parallel_workers": 4, "effective_io_concurrency": 200,
}


def dedicated_host(ram_gib: float, cores: int, connections: int = 100, major: int = 18,
                   mounts: list[dict[str, Any]] | None = None) -> Facts:
    """A host running only PostgreSQL, with default settings."""
    settings = pg_settings({**DEFAULTS_18, "max_connections": connections})
    return Facts(data={
        "host": {"cpu_count": cores, "memory_total_bytes": int(ram_gib * GB), "mounts": mounts or []},
        "postgres": {"major": major, "settings": settings, "runs_in": {"kind": "host"}},
    })


def _container(name: str, image: str, service: str | None, limit: int | None = None,
               usage: int | None = None) -> dict[str, Any]:
    return {"id": name, "name": name, "image": image, "state": "running", "compose_project": "permoney",
            "compose_service": service, "memory_limit_bytes": limit, "memory_usage_bytes": usage,
            "cpu_limit_cores": None}


def reference_facts(settings: dict[str, str | int | float] | None = None, source: str = "default",
                    checkpoints: dict[str, Any] | None = None) -> Facts:
    """The reference host: 23 GiB, 4 cores, PG18 in Docker, Puma 4x8, Sidekiq 15, Redis (512 MiB
    limit), Prometheus/Grafana/Loki/Alertmanager/cAdvisor, disk 85% used on a virtio disk."""
    values = {**DEFAULTS_18, **(settings or {})}
    return Facts(data={
        "host": {"cpu_count": 4, "cpu_limit_cores": None, "memory_total_bytes": 23 * GB,
                 "memory_limit_bytes": None,
                 "mounts": [{"mountpoint": "/", "device": "/dev/vda1", "fstype": "ext4",
                             "total_bytes": 49 * GB, "used_bytes": 41 * GB, "free_bytes": int(7.6 * GB),
                             "used_percent": 85.0, "holds": ["root", "docker"], "rotational": True}]},
        "docker": {"containers": [
            _container("permoney-web-1", "ghcr.io/permoney/permoney:sha-8d71c0b6", "web"),
            _container("permoney-worker-1", "ghcr.io/permoney/permoney:sha-8d71c0b6", "worker"),
            _container("permoney-db-1", "postgres:18", "db"),
            _container("permoney-redis-1", "redis:8", "redis", limit=512 * MB),
            _container("prometheus", "prom/prometheus:latest", None),
            _container("grafana", "grafana/grafana:latest", None),
            _container("loki", "grafana/loki:latest", None),
            _container("alertmanager", "prom/alertmanager:latest", None),
            _container("cadvisor", "gcr.io/cadvisor/cadvisor:latest", None),
        ]},
        "app": {"processes": [
            {"project": "permoney", "service": "web", "kind": "puma", "role": "web", "replicas": 1,
             "processes": 4, "threads": 8},
            {"project": "permoney", "service": "worker", "kind": "sidekiq", "role": "worker", "replicas": 1,
             "processes": 1, "concurrency": 15},
        ]},
        "postgres": {
            "major": 18, "server_version_num": 180000,
            "settings": pg_settings(values, source),
            "runs_in": {"kind": "container", "container": "permoney-db-1", "service": "db",
                        "project": "permoney"},
            "checkpoints": checkpoints or {},
            "databases": [{"name": "permoney", "size_bytes": 3 * GB, "temp_bytes": 0, "temp_files": 0}],
        },
    })
