"""The live Redis wins over what its files say; without it, the files decide (issue 18.1).

A real redis-server on loopback, and a compose file written for the test whose redis service
publishes that server's port; the whole pipeline (compose -> redis -> rules) runs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from stackaudit.config import Settings
from stackaudit.facts import collect
from stackaudit.model import Finding
from stackaudit.rules import evaluate
from tests.services import RedisServer

pytestmark = pytest.mark.integration

COMPOSE = """\
services:
  redis:
    image: redis:7
    command: redis-server --maxmemory-policy allkeys-lru
    mem_limit: 512m
    ports: ["127.0.0.1:{port}:6379"]
  worker:
    build: .
    command: bundle exec sidekiq
    environment:
      REDIS_URL: redis://{auth}redis:6379/0
"""


def audit(tmp_path: Path, port: int, password: str | None = None) -> list[Finding]:
    directory = tmp_path / "stack"
    directory.mkdir(exist_ok=True)
    auth = f":{password}@" if password else ""
    (directory / "compose.yml").write_text(COMPOSE.format(port=port, auth=auth), encoding="utf-8")
    settings = Settings(project_dirs=(directory,), sources=("compose", "redis"), timeout_seconds=3.0)
    facts = collect(settings)
    findings, _skipped = evaluate(facts, Settings(select=("RDS00", "SEC005")))
    return findings


def by_code(findings: list[Finding]) -> dict[str, list[Finding]]:
    out: dict[str, list[Finding]] = {}
    for finding in findings:
        out.setdefault(finding.code, []).append(finding)
    return out


def test_the_live_server_wins(tmp_path: Path, redis_factory: Callable[..., RedisServer]) -> None:
    server = redis_factory({"maxmemory": "64mb", "maxmemory-policy": "noeviction"}, password="live-pass-42")
    found = by_code(audit(tmp_path, server.port, password="live-pass-42"))
    # the file says allkeys-lru, no maxmemory, no password; the server says otherwise
    assert "RDS001" not in found and "RDS002" not in found and "SEC005" not in found


def test_the_files_decide_when_no_server_answers(
        tmp_path: Path, redis_factory: Callable[..., RedisServer]) -> None:
    server = redis_factory()
    port = server.port
    server.stop()  # nothing listens there now
    found = by_code(audit(tmp_path, port))
    [rds001] = found["RDS001"]
    assert {e.key: e.source for e in rds001.evidence}["container_memory_limit_bytes"] == "compose.yml:5"
    [rds002] = found["RDS002"]
    assert {e.key: e.source for e in rds002.evidence}["maxmemory_policy"] == "compose.yml:4"
    [sec005] = found["SEC005"]
    assert "its files set none (compose.yml:4)" in sec005.message


def test_a_live_server_without_password_is_reported_as_live(
        tmp_path: Path, redis_factory: Callable[..., RedisServer]) -> None:
    server = redis_factory({"protected-mode": "no", "maxmemory": "64mb"})
    [sec005] = by_code(audit(tmp_path, server.port))["SEC005"]
    assert {e.key: e.source for e in sec005.evidence}["auth_required"] == "redis"
    assert "accepts commands without a password" in sec005.message
