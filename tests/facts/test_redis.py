"""The redis source against real redis-server processes configured per test (ERRATA 15)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from stackaudit.config import Settings
from stackaudit.facts import CollectContext, Facts, SourceUnavailable
from stackaudit.facts import redis as redis_source
from stackaudit.localpg import free_port
from stackaudit.rules import evaluate
from tests.services import RedisServer

pytestmark = pytest.mark.integration

MIB = 2**20
PASSWORD = "hunter2-redis-pass"


def stack_context(port: int, password: str | None = None, worker_kind: str = "sidekiq",
                  url_key: str = "REDIS_URL", **settings: Any) -> CollectContext:
    """A compose project whose worker reads REDIS_URL=redis://redis:6379/0 and whose redis service
    publishes the test server's port, with a 512 MB limit (as the reference compose.yml)."""
    auth = f":{password}@" if password else ""
    url = f"redis://{auth}redis:6379/0"
    services = {
        "redis": {"name": "redis", "image": "redis:8.2", "image_repository": "redis",
                  "mem_limit_bytes": 512 * MIB,
                  "ports": [{"host_ip": "127.0.0.1", "published": port, "target": 6379, "protocol": "tcp"}],
                  "environment": {}},
        "worker": {"name": "worker", "image": "app", "environment": {url_key: "***"}, "ports": []},
        "web": {"name": "web", "image": "app", "environment": {"CACHE_REDIS_URL": "***"}, "ports": []},
    }
    facts = Facts(data={
        "compose": {"projects": [{"name": "app", "dir": "/srv/app", "services": services}]},
        "app": {"processes": [{"project": "app", "service": "worker", "kind": worker_kind,
                               "role": "worker"}]},
    })
    ctx = CollectContext(settings=Settings(**settings), facts=facts, source="redis")
    ctx.private["compose_env"] = {"app": {"worker": {url_key: url},
                                          "web": {"CACHE_REDIS_URL": f"redis://{auth}redis:6379/2"}}}
    return ctx


def collect(ctx: CollectContext) -> dict[str, Any]:
    data = redis_source.collect(ctx)
    ctx.facts.data["redis"] = data
    return data


def test_no_maxmemory_in_a_512m_container_with_sidekiq(redis_factory: Callable[..., RedisServer]) -> None:
    server = redis_factory()
    ctx = stack_context(server.port)
    data = collect(ctx)
    (inst,) = data["instances"]
    assert inst["service"] == "redis" and inst["discovered_from"] == "compose environment"
    assert inst["version"] and inst["used_memory_bytes"] > 0 and inst["used_memory_rss_bytes"] > 0
    assert inst["maxmemory_bytes"] == 0
    assert inst["maxmemory_policy"] == "noeviction" and inst["policy_source"] == "config"
    assert inst["container_memory_limit_bytes"] == 512 * MIB and inst["limit_source"] == "compose"
    assert inst["config_readable"] is True and inst["auth_required"] is False
    assert inst["persistence"]["rdb_enabled"] is False and inst["persistence"]["aof_enabled"] is False
    users = {u["service"]: u for u in inst["users"]}
    assert users["worker"]["kind"] == "queue" and users["worker"]["framework"] == "sidekiq"
    assert users["web"]["kind"] == "cache" and users["web"]["db"] == "2"
    findings, _ = evaluate(ctx.facts, Settings(select=("RDS",)))
    assert [f.code for f in findings] == ["RDS001"]


def test_allkeys_lru_with_a_sidekiq_user_fires_rds002(redis_factory: Callable[..., RedisServer]) -> None:
    server = redis_factory({"maxmemory": "64mb", "maxmemory-policy": "allkeys-lru"})
    ctx = stack_context(server.port)
    (inst,) = collect(ctx)["instances"]
    assert inst["maxmemory_bytes"] == 64 * MIB and inst["maxmemory_policy"] == "allkeys-lru"
    findings, _ = evaluate(ctx.facts, Settings(select=("RDS",)))
    assert [f.code for f in findings] == ["RDS002"]


def test_celery_broker_variable_marks_a_queue(redis_factory: Callable[..., RedisServer]) -> None:
    server = redis_factory({"maxmemory-policy": "volatile-lru"})
    ctx = stack_context(server.port, worker_kind="unknown", url_key="CELERY_BROKER_URL")
    (inst,) = collect(ctx)["instances"]
    worker = next(u for u in inst["users"] if u["service"] == "worker")
    assert (worker["kind"], worker["framework"]) == ("queue", "celery")


def test_renamed_config_falls_back_to_info(redis_factory: Callable[..., RedisServer]) -> None:
    server = redis_factory({"rename-command": 'CONFIG ""', "maxmemory": "32mb",
                            "maxmemory-policy": "allkeys-lru"})
    ctx = stack_context(server.port)
    (inst,) = collect(ctx)["instances"]
    assert inst["config_readable"] is False and inst["config"] is None
    assert inst["maxmemory_policy"] == "allkeys-lru" and inst["policy_source"] == "info"
    assert inst["maxmemory_bytes"] == 32 * MIB
    assert inst["persistence"]["rdb_enabled"] is None  # `save` is only in CONFIG


def test_password_required_and_given(redis_factory: Callable[..., RedisServer]) -> None:
    server = redis_factory(password=PASSWORD)
    ctx = stack_context(server.port, password=PASSWORD)
    data = collect(ctx)
    (inst,) = data["instances"]
    assert inst["auth_required"] is True and inst["readable"] is True
    assert inst["maxmemory_policy"] == "noeviction"
    assert PASSWORD not in json.dumps(ctx.facts.to_json())
    assert inst["target"].startswith("redis://:***@127.0.0.1:")


def test_wrong_password_is_an_error_without_the_password(redis_factory: Callable[..., RedisServer]) -> None:
    server = redis_factory(password=PASSWORD)
    wrong = "not-the-password-42"
    ctx = CollectContext(settings=Settings(redis_url=f"redis://:{wrong}@127.0.0.1:{server.port}/0"),
                         facts=Facts(), source="redis")
    data = collect(ctx)
    (inst,) = data["instances"]
    assert inst["auth_required"] is True and inst["readable"] is False
    assert inst["discovered_from"] == "--redis"
    assert [e.why for e in ctx.facts.errors] == [
        "authentication failed: the server refused the password or user"]
    assert wrong not in json.dumps(ctx.facts.to_json()) and wrong not in str(ctx.facts.errors)


def test_missing_password_says_how_to_give_it(redis_factory: Callable[..., RedisServer]) -> None:
    server = redis_factory(password=PASSWORD)
    ctx = CollectContext(settings=Settings(redis_url=f"redis://127.0.0.1:{server.port}"), facts=Facts())
    collect(ctx)
    assert "needs a password" in ctx.facts.errors[0].why


def test_redis_option_finds_its_users_in_the_stack(redis_factory: Callable[..., RedisServer]) -> None:
    server = redis_factory()
    ctx = stack_context(server.port, redis_url=f"redis://127.0.0.1:{server.port}/0")
    (inst,) = collect(ctx)["instances"]
    assert inst["service"] == "redis"  # the only redis service of the project, on loopback
    assert {u["service"] for u in inst["users"]} == {"worker", "web"}


def test_unreachable_redis_is_unavailable_not_a_traceback() -> None:
    ctx = CollectContext(settings=Settings(redis_url=f"redis://:pw-secret-1@127.0.0.1:{free_port()}/0",
                                           timeout_seconds=2), facts=Facts(), source="redis")
    with pytest.raises(SourceUnavailable):
        redis_source.collect(ctx)
    assert "cannot connect" in ctx.facts.errors[0].why
    assert "pw-secret-1" not in str(ctx.facts.errors)


def test_nothing_to_discover() -> None:
    ctx = CollectContext(settings=Settings(), facts=Facts())
    with pytest.raises(SourceUnavailable, match="no Redis found"):
        redis_source.collect(ctx)
