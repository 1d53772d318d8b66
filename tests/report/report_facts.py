"""A facts snapshot shaped like the reference host, and a report with hand-made findings, for the
HTML report, chart and dashboard tests (shapes from the agreed facts contract)."""

from __future__ import annotations

import copy
from typing import Any

from stackaudit.facts import Facts
from stackaudit.model import (
    CollectionError,
    Evidence,
    Finding,
    Phase,
    Recommendation,
    Risk,
    Severity,
    Skipped,
)
from stackaudit.report import Report

GIB = 1024**3
MIB = 1024**2
CANARY = "canary-Secret-4f9d2b7e1c"  # must never reach any output


def _setting(value: str, base: float | None, context: str = "user") -> dict[str, Any]:
    return {"setting": value, "unit": None, "value": value, "base_value": base, "source": "default",
            "sourcefile": None, "sourceline": None, "pending_restart": False, "context": context,
            "vartype": "integer"}


def _container(name: str, image: str, service: str, limit: int | None, usage: int | None,
               log_bytes: int, rotated: bool = False) -> dict[str, Any]:
    return {"id": name, "name": name, "image": image, "image_id": f"sha256:{name}", "state": "running",
            "labels": {}, "compose_project": "permoney", "compose_service": service,
            "memory_limit_bytes": limit, "memory_usage_bytes": usage, "cpu_limit_cores": None, "ports": [],
            "mounts": [], "log": {"driver": "json-file", "options": {"max-size": "10m"} if rotated else {},
                                  "size_bytes": log_bytes},
            "restart_policy": "unless-stopped", "health": None, "privileged": False, "network_mode": "bridge",
            "created": "2025-01-01T00:00:00Z", "started_at": "2025-01-01T00:00:00Z", "pid": 1}


RAW: dict[str, Any] = {
    "host": {
        "hostname": "prod-1", "kernel": "6.1.0", "architecture": "x86_64", "cpu_count": 4,
        "cpu_limit_cores": None, "memory_total_bytes": 23 * GIB, "memory_available_bytes": 6 * GIB,
        "memory_limit_bytes": None, "swap_total_bytes": 0, "swap_free_bytes": 0,
        "load_average": [1.0, 1.2, 1.1], "psi": None,
        "cgroup": {"version": 2, "memory_limit_bytes": None, "cpu_quota_cores": None},
        "mounts": [
            {"mountpoint": "/", "device": "/dev/vda1", "fstype": "ext4", "total_bytes": 200 * GIB,
             "used_bytes": 170 * GIB, "free_bytes": 30 * GIB, "used_percent": 85.0, "inodes_total": 100,
             "inodes_used": 10, "inodes_used_percent": 10.0, "holds": ["root", "docker"],
             "rotational": False},
            {"mountpoint": "/boot/efi", "device": "/dev/vda15", "fstype": "vfat", "total_bytes": GIB,
             "used_bytes": 10 * MIB, "free_bytes": GIB - 10 * MIB, "used_percent": 1.0, "inodes_total": 0,
             "inodes_used": 0, "inodes_used_percent": None, "holds": [], "rotational": False},
        ],
        "summary": {"hostname": "prod-1", "cpu_count": 4, "memory_total_bytes": 23 * GIB},
    },
    "docker": {
        "engine": {"version": "20.10.24", "api_version": "1.41", "data_root": "/var/lib/docker",
                   "storage_driver": "overlay2"},
        "containers": [
            _container("permoney-web-1", "permoney:latest", "web", None, 3 * GIB, 2 * GIB),
            _container("permoney-worker-1", "permoney:latest", "worker", None, 2 * GIB, 500 * MIB),
            _container("permoney-redis-1", "redis:7", "redis", 512 * MIB, None, 10 * MIB, rotated=True),
            _container("permoney-prometheus-1", "prom/prometheus", "prometheus", None, None, 50 * MIB),
            _container("permoney-db-1", "postgres:18", "db", None, 4 * GIB, 100 * MIB),
        ],
        "images": [], "volumes": [],
        "build_cache": {"known": True, "records": 40, "size_bytes": 6 * GIB, "reclaimable_bytes": 5 * GIB},
        "system_df": {
            "images": {"count": 12, "active": 5, "size_bytes": 40 * GIB, "reclaimable_bytes": 28 * GIB},
            "containers": {"count": 5, "active": 5, "size_bytes": GIB, "reclaimable_bytes": 0},
            "volumes": {"count": 4, "active": 2, "size_bytes": 60 * GIB, "reclaimable_bytes": 3 * GIB},
            "build_cache": {"count": 40, "active": 0, "size_bytes": 6 * GIB, "reclaimable_bytes": 5 * GIB},
        },
        "summary": {"engine": "20.10.24", "containers": 5, "running": 5, "images": 12,
                    "images_bytes": 40 * GIB, "volumes": 4, "volumes_bytes": 60 * GIB,
                    "build_cache_bytes": 6 * GIB, "container_logs_bytes": 2 * GIB + 660 * MIB},
    },
    "postgres": {
        "server_version_num": 180000, "major": 18,
        "settings": {"max_connections": _setting("100", 100.0, "postmaster"),
                     "superuser_reserved_connections": _setting("3", 3.0, "postmaster"),
                     "shared_buffers": _setting("128MB", 128.0 * MIB, "postmaster"),
                     "work_mem": _setting("4MB", 4.0 * MIB)},
        "databases": [{"name": "permoney", "size_bytes": 45 * GIB, "is_template": False}],
        "data_directory": {"path": "/var/lib/postgresql/data", "size_bytes": 50 * GIB, "wal_bytes": GIB},
        "runs_in": {"kind": "container", "container": "permoney-db-1", "service": "db",
                    "project": "permoney"},
        "summary": {"version": "18.0", "max_connections": 100, "database_bytes": 45 * GIB,
                    "data_directory_bytes": 50 * GIB},
    },
    "app": {
        "processes": [
            {"project": "permoney", "service": "web", "kind": "puma", "role": "web", "replicas": 1,
             "processes": 4, "threads": 8, "db_pool": 10, "pool_source": "env"},
            {"project": "permoney", "service": "worker", "kind": "sidekiq", "role": "worker", "replicas": 1,
             "processes": 1, "threads": 15, "db_pool": 10, "pool_source": "env"},
        ],
        "summary": {"processes": 2},
    },
}


def sample_facts() -> Facts:
    return Facts(data=copy.deepcopy(RAW), errors=[CollectionError("redis", "connect", "connection refused")])


def _finding(code: str, name: str, severity: Severity, subject: str, message: str, phase: Phase,
             risk: Risk, evidence: tuple[Evidence, ...] = (), action: str | None = None) -> Finding:
    return Finding(code, name, severity, subject, message, evidence,
                   Recommendation(f"Fix {subject} with `stackaudit clean`", f"frees space on {subject}", risk,
                                  15, phase, action))


FINDINGS = [
    _finding("SYS001", "disk-space-low", Severity.CRITICAL, "/",
             "/ is 85% used (170.0 GiB of 200.0 GiB); it holds root, docker.", Phase.NOW, Risk.MANUAL,
             (Evidence("host", "used_percent", 85.0, "< 75.0"), Evidence("host", "free_bytes", 30 * GIB))),
    _finding("PG101", "pg-connection-budget-exceeded", Severity.HIGH, "permoney",
             "App processes can open 47 of 97 connections <script>alert(1)</script>.", Phase.WEEK,
             Risk.CONFIRM, (Evidence("postgres", "max_connections", 100),),
             action="ALTER SYSTEM SET max_connections = 200;"),
    _finding("DKR001", "docker-images-reclaimable", Severity.MEDIUM, "images",
             "28.0 GiB of image layers are not used by any container.", Phase.NOW, Risk.SAFE,
             (Evidence("docker", "reclaimable_bytes", 28 * GIB),)),
    _finding("SEC003", "secret-in-compose", Severity.HIGH, "compose.yml",
             "POSTGRES_PASSWORD is written literally in compose.yml line 12.", Phase.NOW, Risk.MANUAL),
    _finding("APP002", "app-concurrency-vs-cores", Severity.LOW, "web",
             "web runs 4 Puma workers x 8 threads on 4 cores.", Phase.MONTH, Risk.CONFIRM),
]


def sample_report() -> Report:
    findings = sorted(FINDINGS, key=lambda f: f.sort_key)
    return Report(facts=sample_facts(), findings=findings,
                  skipped=[Skipped("RDS001", "redis: connection refused")])
