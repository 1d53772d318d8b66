"""maxmemory and policy advice for Redis (ERRATA 15)."""

from __future__ import annotations

from typing import Any

from stackaudit.tuning.redis import advise, policy_for

MIB = 2**20


def instance(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "target": "redis://127.0.0.1:6379/0", "project": "app", "service": "redis",
        "container_memory_limit_bytes": 512 * MIB, "maxmemory_bytes": 0, "maxmemory_policy": "noeviction",
        "used_memory_bytes": 4 * MIB,
        "users": [{"service": "worker", "kind": "queue", "framework": "sidekiq"}],
        "persistence": {"rdb_enabled": True, "aof_enabled": False},
    }
    return {**base, **overrides}


def test_reference_redis_512m_with_sidekiq_gets_60_percent_and_noeviction() -> None:
    advice = advise(instance())
    assert advice.maxmemory_bytes == 307 * MIB
    assert advice.conf_lines() == ["maxmemory 307mb", "maxmemory-policy noeviction"]
    assert advice.compose_command() == ["redis-server", "--maxmemory", "307mb",
                                        "--maxmemory-policy", "noeviction"]
    assert any("copy-on-write" in r for r in advice.reasons)


def test_without_persistence_less_headroom_is_needed() -> None:
    advice = advise(instance(persistence={"rdb_enabled": False, "aof_enabled": False}))
    assert advice.maxmemory == "384mb"


def test_memory_option_overrides_an_unknown_limit() -> None:
    assert advise(instance(container_memory_limit_bytes=None)).maxmemory is None
    assert advise(instance(container_memory_limit_bytes=None), 1024 * MIB).maxmemory == "614mb"


def test_policy_by_use() -> None:
    assert policy_for([{"kind": "cache"}])[0] == "allkeys-lru"
    policy, why = policy_for([{"kind": "cache"}, {"kind": "queue", "framework": "celery"}])
    assert policy == "noeviction" and "another Redis" in why
    assert policy_for([])[0] == "noeviction"


def test_used_memory_above_the_advice_is_said() -> None:
    advice = advise(instance(used_memory_bytes=400 * MIB))
    assert any("already above" in r for r in advice.reasons)
