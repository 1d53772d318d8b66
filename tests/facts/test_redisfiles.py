"""What the compose files say about a Redis (issue 18.1): command flags, a mounted redis.conf with its
includes, the images' documented variables; each value with its file and line."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from stackaudit.config import Settings
from stackaudit.facts import CollectContext, Facts
from stackaudit.facts import compose as compose_source
from stackaudit.facts.redisfiles import argv_pairs, parse_memory, server_argv


def redis_files(tmp_path: Path, compose: str, files: dict[str, str] | None = None,
                service: str = "redis") -> dict[str, Any]:
    directory = tmp_path / "stack"
    directory.mkdir()
    (directory / "compose.yml").write_text(textwrap.dedent(compose), encoding="utf-8")
    for name, text in (files or {}).items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_text(textwrap.dedent(text), encoding="utf-8")
    ctx = CollectContext(settings=Settings(project_dirs=(directory,)), facts=Facts(), source="compose")
    data = compose_source.collect(ctx)
    result: dict[str, Any] = data["projects"][0]["services"][service]["redis_files"]
    return result


@pytest.mark.parametrize(("text", "size"), [
    ("400mb", 400 * 2**20), ("1gb", 2**30), ("1g", 10**9), ("100k", 100_000), ("0", 0), ("512", 512),
    ("50%", None), ("lots", None),
])
def test_redis_memory_units(text: str, size: int | None) -> None:
    assert parse_memory(text) == size


def test_command_forms() -> None:
    assert server_argv(["redis-server", "--maxmemory", "1gb"], None) == ["--maxmemory", "1gb"]
    assert server_argv(["sh", "-c", "redis-server --requirepass \"$$P\" --save ''"], None) == [
        "--requirepass", "$$P", "--save", ""]
    assert server_argv(None, None) == []  # the image's own CMD
    assert server_argv(["/entrypoint.sh"], None) is None  # something else: unknown
    assert argv_pairs(["/etc/redis.conf", "--save", "60", "1", "--appendonly", "yes"]) == (
        "/etc/redis.conf", [("save", "60 1"), ("appendonly", "yes")])


def test_reference_stack_flags_with_defaults_for_the_rest(tmp_path: Path) -> None:
    found = redis_files(tmp_path, """\
        services:
          redis:
            image: redis:7
            command: redis-server --maxmemory-policy allkeys-lru
            mem_limit: 512m
        """)
    assert found["maxmemory_policy"] == "allkeys-lru" and found["policy_origin"] == "compose.yml:4"
    assert found["maxmemory_bytes"] == 0 and found["maxmemory_origin"] == "Redis default"
    assert (found["auth"], found["auth_origin"]) == ("none", "compose.yml:4")


def test_a_mounted_conf_its_include_and_flags_that_win(tmp_path: Path) -> None:
    found = redis_files(tmp_path, """\
        services:
          redis:
            image: redis:7
            command: ["redis-server", "/usr/local/etc/redis/redis.conf", "--maxmemory", "300mb"]
            volumes:
              - ./conf/redis.conf:/usr/local/etc/redis/redis.conf:ro
              - ./conf/extra:/etc/redis-extra:ro
        """, {"conf/redis.conf": """\
            # base
            maxmemory 100mb
            maxmemory-policy volatile-lru
            include /etc/redis-extra/auth.conf
            """, "conf/extra/auth.conf": """\
            requirepass "not-a-real-one"
            rename-command CONFIG ""
            maxmemory-policy noeviction
            """})
    stack = tmp_path / "stack"
    assert found["maxmemory_bytes"] == 300 * 2**20 and found["maxmemory_origin"] == "compose.yml:4"
    assert (found["maxmemory_policy"], found["policy_origin"]) == (
        "noeviction", f"{stack}/conf/extra/auth.conf:3")
    assert (found["auth"], found["auth_origin"]) == ("password", f"{stack}/conf/extra/auth.conf:1")
    assert found["renamed_commands"] == {"CONFIG": ""}
    assert found["config_files"] == [f"{stack}/conf/redis.conf", f"{stack}/conf/extra/auth.conf"]
    assert "not-a-real-one" not in repr(found)


def test_a_conf_baked_into_the_image_is_unknown(tmp_path: Path) -> None:
    found = redis_files(tmp_path, """\
        services:
          redis:
            build: ./redis
            command: redis-server /usr/local/etc/redis/redis.conf
        """)
    assert found["unknown"] == ["/usr/local/etc/redis/redis.conf is in the image, not mounted from the host"]
    assert (found["maxmemory_bytes"], found["maxmemory_policy"], found["auth"]) == (None, None, "unknown")


def test_acl_default_user_decides_auth(tmp_path: Path) -> None:
    found = redis_files(tmp_path, """\
        services:
          redis:
            image: valkey/valkey:8
            command: valkey-server /conf/valkey.conf
            volumes: ["./valkey.conf:/conf/valkey.conf"]
        """, {"valkey.conf": "user default on nopass ~* +@all\n"})
    assert found["auth"] == "none"


@pytest.mark.parametrize(("environment", "auth"), [
    ({"REDIS_PASSWORD": "${REDIS_PASSWORD:-x}"}, "password"),
    ({"REDIS_PASSWORD_FILE": "/run/secrets/redis"}, "password"),
    ({"ALLOW_EMPTY_PASSWORD": "yes"}, "none"),
    ({}, "unknown"),  # bitnami refuses to start without one of them
])
def test_bitnami_variables(tmp_path: Path, environment: dict[str, str], auth: str) -> None:
    env = "".join(f"\n      {k}: \"{v}\"" for k, v in environment.items()) or " {}"
    compose = f"services:\n  cache:\n    image: bitnami/redis:7.2\n    environment:{env}\n"
    found = redis_files(tmp_path, compose, service="cache")
    assert found["auth"] == auth


def test_bitnami_extra_flags(tmp_path: Path) -> None:
    found = redis_files(tmp_path, """\
        services:
          cache:
            image: bitnami/redis:7.2
            environment:
              ALLOW_EMPTY_PASSWORD: "yes"
              REDIS_EXTRA_FLAGS: --maxmemory 64mb --maxmemory-policy allkeys-lfu
        """, service="cache")
    assert (found["maxmemory_bytes"], found["maxmemory_policy"]) == (64 * 2**20, "allkeys-lfu")
    assert found["maxmemory_origin"] == "compose.yml:6"


def test_redis_stack_args(tmp_path: Path) -> None:
    found = redis_files(tmp_path, """\
        services:
          stack:
            image: redis/redis-stack:7.2.0-v10
            environment:
              REDIS_ARGS: "--requirepass x --maxmemory 1gb"
        """, service="stack")
    assert (found["auth"], found["maxmemory_bytes"]) == ("password", 2**30)
