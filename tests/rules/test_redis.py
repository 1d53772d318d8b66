"""RDS001-RDS003 on facts snapshots (ERRATA 15: a 512 MB container without maxmemory is not fine)."""

from __future__ import annotations

from typing import Any

from stackaudit.config import Settings
from stackaudit.facts import Facts
from stackaudit.model import Finding, Severity
from stackaudit.rules import evaluate
from tests.tuning.test_redis import instance

MIB = 2**20


def run(code: str, **overrides: Any) -> list[Finding]:
    findings, _ = evaluate(Facts(data={"redis": {"instances": [instance(**overrides)]}}),
                           Settings(select=(code,)))
    return [f for f in findings if f.code == code]


def test_rds001_fires_for_no_maxmemory_in_a_512m_container() -> None:
    findings = run("RDS001")
    assert len(findings) == 1
    assert "no maxmemory inside a 512.0 MiB container limit" in findings[0].message
    assert "maxmemory 307mb" in (findings[0].recommendation.action or "")


def test_rds001_fires_when_maxmemory_is_above_the_limit() -> None:
    findings = run("RDS001", maxmemory_bytes=1024 * MIB)
    assert len(findings) == 1 and "above the limit" in findings[0].message


def test_rds001_silent_with_maxmemory_below_the_limit_or_no_limit() -> None:
    assert run("RDS001", maxmemory_bytes=300 * MIB) == []
    assert run("RDS001", container_memory_limit_bytes=None) == []
    assert run("RDS001", maxmemory_bytes=None) == []  # unknown: not readable


def test_rds002_fires_for_a_sidekiq_queue_on_allkeys_lru() -> None:
    findings = run("RDS002", maxmemory_policy="allkeys-lru")
    assert len(findings) == 1
    assert "worker (sidekiq)" in findings[0].message and "allkeys-lru" in findings[0].message
    assert findings[0].severity == Severity.HIGH


def test_rds002_silent_for_noeviction_or_a_cache() -> None:
    assert run("RDS002") == []
    assert run("RDS002", maxmemory_policy="allkeys-lru", users=[{"service": "web", "kind": "cache"}]) == []


def test_rds003_fires_near_maxmemory_and_near_the_container_limit() -> None:
    near_max = run("RDS003", maxmemory_bytes=100 * MIB, used_memory_bytes=90 * MIB)
    assert len(near_max) == 1 and "90% of maxmemory" in near_max[0].message
    near_limit = run("RDS003", used_memory_rss_bytes=500 * MIB)
    assert len(near_limit) == 1 and "the container limit" in near_limit[0].message
    assert near_limit[0].severity == Severity.HIGH  # 98%


def test_rds003_silent_with_headroom() -> None:
    assert run("RDS003", maxmemory_bytes=300 * MIB, used_memory_rss_bytes=20 * MIB) == []
