"""The reference report's mistakes (../shared/reference/ERRATA.md), each checked across modules.

Rows covered in depth elsewhere name their tests in docs/errata.md; here each row gets one check
through the public functions, so a regression in any of them shows up under its row number.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from stackaudit.config import Settings
from stackaudit.derive.postgres import compose_service_name, storage_evidence
from stackaudit.derive.postgres import postgres_tuning as tune
from stackaudit.facts import Facts
from stackaudit.model import Severity
from stackaudit.report.tuning import as_compose
from stackaudit.rules import evaluate, load_all
from stackaudit.tuning.appserver import connection_budget, postgres_limits
from stackaudit.tuning.units import GB, MB, parse_memory
from tests.tuning.app_facts import postgres, process, reference_processes
from tests.tuning.pg_facts import REPORT_SETTINGS, reference_facts

PACKAGE = Path(__file__).parents[1] / "stackaudit"


def findings(facts: Facts, code: str) -> list:  # type: ignore[type-arg]
    return evaluate(facts, Settings(select=(code,)))[0]


def recommended_bytes(name: str, facts: Facts) -> int:
    return parse_memory(tune(facts).settings[name].recommended, "kB")


def test_row1_report_work_mem_is_flagged_and_ours_fits_the_budget() -> None:
    [finding] = findings(reference_facts(REPORT_SETTINGS, source="configuration file"), "PG003")
    assert finding.severity == Severity.CRITICAL
    assert "256MB" in finding.message and "hash_mem_multiplier" in finding.message
    tuning = tune(reference_facts())
    assert tuning.fits and recommended_bytes("work_mem", reference_facts()) <= 64 * MB


def test_row2_shared_buffers_come_from_a_budget_with_the_co_tenants_shown() -> None:
    tuning = tune(reference_facts())
    assert recommended_bytes("shared_buffers", reference_facts()) < 0.25 * 23 * GB
    assert tuning.budget.co_tenants and tuning.budget.postgres_bytes < 23 * GB
    budget_keys = {"total_bytes", "postgres_bytes", "co_tenants", "worst_case_bytes"}
    assert set(tuning.to_json()["budget"]) >= budget_keys


def test_row3_initdb_args_are_flagged_and_the_fix_is_a_command_override() -> None:
    facts = Facts(data={"compose": {"projects": [{"name": "permoney", "services": {"db": {
        "name": "db", "project": "permoney", "image": "postgres:18", "image_repository": "postgres",
        "environment": {"POSTGRES_INITDB_ARGS": "-c shared_buffers=5760MB -c work_mem=256MB"}}}}]}})
    assert len(findings(facts, "PG010")) == 1
    facts = reference_facts(REPORT_SETTINGS)
    override = as_compose(tune(facts), compose_service_name(facts))
    assert '"postgres"' in override and '"-c"' in override
    assert "POSTGRES_INITDB_ARGS" not in override


def test_row4_the_planner_is_not_said_to_use_shared_buffers() -> None:
    page = load_all()["PG001"].doc
    assert "effective_cache_size" in page
    assert not re.search(r"planner (uses|trusts) shared_buffers", page, re.IGNORECASE)


def test_row5_no_unmeasured_speedup_is_promised() -> None:
    every_doc = "\n".join(r.doc for r in load_all().values())
    assert not re.search(r"\b\d+\s*-\s*\d+\s*x\b", every_doc)
    for finding in findings(reference_facts(REPORT_SETTINGS), "PG"):
        effect = finding.recommendation.estimated_effect
        assert not re.search(r"\b\d+\s*-\s*\d+\s*x\b", effect), effect


def test_row6_parallelism_keeps_cores_for_others_and_eight_worker_processes() -> None:
    settings = tune(reference_facts()).settings
    assert settings["max_parallel_workers_per_gather"].recommended == "2"
    assert int(settings["max_worker_processes"].recommended) >= 8
    assert settings["max_parallel_workers"].recommended == "4"


def test_row7_random_page_cost_follows_evidence_and_says_how_sure() -> None:
    virtio = storage_evidence(reference_facts())
    assert virtio.confidence == "low"
    measured = reference_facts()
    measured.data["host"]["mounts"][0]["random_read_probe"] = {"latency_p50_ms": 0.2, "iops": 4000}
    assert (storage_evidence(measured).kind, storage_evidence(measured).confidence) == ("ssd", "high")


@pytest.mark.parametrize("call", ["images.prune(", "volumes.prune(", "prune_images(", "prune_volumes("])
def test_rows8_9_no_prune_endpoint_for_images_or_volumes_is_ever_called(call: str) -> None:
    sources = sorted(PACKAGE.rglob("*.py"))
    assert len(sources) > 50 and PACKAGE / "remediation" / "clean.py" in sources  # the loop reads the package
    for path in sources:
        assert call not in path.read_text(encoding="utf-8"), f"{path} calls {call}"


def test_row14_pools_are_per_process_and_the_reference_stack_fits() -> None:
    budget = connection_budget(reference_processes(), postgres_limits(postgres()))  # type: ignore[arg-type]
    assert (budget.app_total, budget.available, budget.fits) == (47, 97, True)
    starved = [process("worker", "sidekiq", "worker", 1, 16, 5)]
    facts = Facts(data={"app": {"processes": starved}, "postgres": postgres()})
    assert len(findings(facts, "APP001")) == 1


def test_row15_redis_without_maxmemory_in_a_limited_container_with_a_queue() -> None:
    instance = {"target": "redis://redis:6379/0", "project": "permoney", "service": "redis",
                "maxmemory_bytes": 0, "maxmemory_policy": "allkeys-lru", "used_memory_bytes": 4 * MB,
                "container_memory_limit_bytes": 512 * MB,
                "users": [{"service": "worker", "kind": "queue", "framework": "sidekiq"}]}
    facts = Facts(data={"redis": {"instances": [instance]}})
    assert len(findings(facts, "RDS001")) == 1
    assert len(findings(facts, "RDS002")) == 1
