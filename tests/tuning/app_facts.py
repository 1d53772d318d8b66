"""App process facts for the pure tests: the reference stack and its variants (ERRATA 14)."""

from __future__ import annotations

from typing import Any


def process(service: str, kind: str, role: str, processes: int, threads: int | None, pool: int | None,
            **extra: Any) -> dict[str, Any]:
    evidence = [{"field": "workers", "value": processes, "from": "env WEB_CONCURRENCY=4"},
                {"field": "threads", "value": threads, "from": "env RAILS_MAX_THREADS=8"},
                {"field": "db_pool", "value": pool, "from": "config/database.yml:5 (env DB_POOL=52)"}]
    if role == "worker":
        evidence = [{"field": "concurrency", "value": threads, "from": "env SIDEKIQ_CONCURRENCY=15"},
                    {"field": "db_pool", "value": pool, "from": "config/database.yml:5 (env DB_POOL=52)"}]
    base = {"project": "app", "service": service, "kind": kind, "role": role, "replicas": 1,
            "processes": processes, "threads": threads, "db_pool": pool, "pool_source": "config/database.yml",
            "pool_env_var": "DB_POOL", "concurrency": threads if role == "worker" else None,
            "framework": "rails", "uses_database": True, "evidence": evidence, "notes": []}
    return {**base, **extra}


def reference_processes() -> list[dict[str, Any]]:
    """4 Puma workers x 8 threads, Sidekiq 15, DB_POOL 52 for both."""
    return [process("web", "puma", "web", 4, 8, 52), process("worker", "sidekiq", "worker", 1, 15, 52)]


def postgres(max_connections: int = 100, superuser_reserved: int = 3,
             reserved: int | None = None) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "max_connections": {"setting": str(max_connections), "base_value": float(max_connections)},
        "superuser_reserved_connections": {"setting": str(superuser_reserved)},
    }
    if reserved is not None:
        settings["reserved_connections"] = {"setting": str(reserved)}
    return {"major": 18, "settings": settings, "connections": {"total": 0}}
