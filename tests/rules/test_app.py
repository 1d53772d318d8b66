"""APP001, APP002 and PG101 on facts snapshots (the reference stack and variants, ERRATA 14)."""

from __future__ import annotations

from typing import Any

from stackaudit.config import Settings
from stackaudit.facts import Facts
from stackaudit.model import Finding, Severity
from stackaudit.rules import evaluate
from tests.tuning.app_facts import postgres, process, reference_processes

HOST = {"cpu_count": 4, "cpu_limit_cores": None, "memory_total_bytes": 23 * 1024**3}


def run(data: dict[str, Any], code: str) -> list[Finding]:
    findings, skipped = evaluate(Facts(data=data), Settings(select=(code,)))
    assert not [s for s in skipped if s.code == code], skipped
    return [f for f in findings if f.code == code]


def app(*processes: dict[str, Any]) -> dict[str, Any]:
    return {"processes": list(processes)}


def test_app001_fires_for_sidekiq_16_threads_with_the_pool_left_at_5() -> None:
    jobs = process("worker", "sidekiq", "worker", 1, 16, 5)
    findings = run({"app": app(jobs)}, "APP001")
    assert len(findings) == 1
    finding = findings[0]
    assert finding.severity == Severity.HIGH
    assert "16 threads per process but its database pool has 5" in finding.message
    assert "up to 11 threads wait" in finding.message
    evidence = {e.key: e.observed for e in finding.evidence}
    assert evidence["threads_per_process"] == 16 and evidence["db_pool_per_process"] == 5
    assert "DB_POOL" in evidence["db_pool_from"]


def test_app001_silent_on_the_reference_stack() -> None:
    assert run({"app": app(*reference_processes())}, "APP001") == []


def test_app002_fires_for_too_many_web_workers_and_threads() -> None:
    web = process("web", "puma", "web", 12, 32, 32)
    findings = run({"app": app(web), "host": HOST}, "APP002")
    messages = [f.message for f in findings]
    assert any("12 worker processes on 4 cores" in m for m in messages)
    assert any("32 threads per process" in m for m in messages)


def test_app002_fires_for_job_concurrency_above_50() -> None:
    jobs = process("worker", "sidekiq", "worker", 1, 80, 80)
    findings = run({"app": app(jobs), "host": HOST}, "APP002")
    assert len(findings) == 1 and "80 job threads" in findings[0].message


def test_app002_uses_the_compose_cpu_limit_of_the_service() -> None:
    web = process("web", "puma", "web", 4, 5, 5)
    compose = {"projects": [{"name": "app", "services": {"web": {"name": "web", "cpus": 1.0}}}]}
    findings = run({"app": app(web), "host": HOST, "compose": compose}, "APP002")
    assert len(findings) == 1 and "on 1 cores" in findings[0].message


def test_app002_silent_on_the_reference_stack() -> None:
    assert run({"app": app(*reference_processes()), "host": HOST}, "APP002") == []


def test_pg101_silent_when_the_reference_budget_fits_47_of_97() -> None:
    assert run({"app": app(*reference_processes()), "postgres": postgres(100, 3)}, "PG101") == []


def test_pg101_fires_with_the_arithmetic_when_the_total_exceeds_the_slots() -> None:
    findings = run({"app": app(*reference_processes()), "postgres": postgres(50, 3)}, "PG101")
    assert len(findings) == 1
    finding = findings[0]
    assert finding.severity == Severity.HIGH  # the app alone (47) still fits 47; the allowance does not
    assert "can open 50 connections (47 from app processes + 3 others)" in finding.message
    assert "47 available" in finding.message
    evidence = {e.key: e for e in finding.evidence}
    assert evidence["connections_web"].observed == 32
    assert evidence["connections_web"].expected == "web (puma): 4 processes x min(8 threads, pool 52) = 32"
    assert evidence["available_connections"].expected == \
        "max_connections 50 - superuser_reserved_connections 3 = 47"
    assert "per process" in (finding.recommendation.action or "")


def test_pg101_critical_when_the_app_alone_exceeds_the_slots() -> None:
    findings = run({"app": app(*reference_processes()), "postgres": postgres(40, 3)}, "PG101")
    assert findings[0].severity == Severity.CRITICAL


def test_pg101_skipped_without_postgres_facts() -> None:
    _, skipped = evaluate(Facts(data={"app": app(*reference_processes())}), Settings(select=("PG101",)))
    assert [s.code for s in skipped] == ["PG101"]
