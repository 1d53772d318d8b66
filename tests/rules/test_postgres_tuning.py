"""PG001, PG002, PG003, PG006, PG007, PG008 on hand-built facts: each fires and stays silent."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from stackaudit.config import Settings
from stackaudit.derive import Derived, derive
from stackaudit.facts import Facts
from stackaudit.model import Hit, Risk, Severity
from stackaudit.rules import REGISTRY, load_all
from stackaudit.rules.postgres_tuning import (
    checkpoints_too_frequent,
    effective_cache_size_off,
    parallelism_vs_cores,
    planner_costs_vs_storage,
    shared_buffers_off_budget,
    work_mem_overcommit,
)
from tests.tuning.pg_facts import REPORT_SETTINGS, dedicated_host, reference_facts

SETTINGS = Settings()
Check = Callable[[Facts, Settings, Derived], Iterable[Hit]]


def hits(check: Check, facts: Facts) -> list[Hit]:
    return list(check(facts, SETTINGS, derive(facts)))


def test_rules_are_registered_with_needs() -> None:
    load_all()
    for code in ("PG001", "PG002", "PG003", "PG006", "PG007", "PG008"):
        assert REGISTRY[code].needs == ("postgres", "host")


# PG001 -----------------------------------------------------------------------------------

def test_pg001_fires_low_when_shared_buffers_is_far_below_the_budget() -> None:
    [hit] = hits(shared_buffers_off_budget, reference_facts())
    assert hit.severity == Severity.LOW  # measured gains were small: no alarm
    assert "128MB" in hit.message and "planner does not use it" in hit.message
    assert "built-in default" in hit.message
    assert "3-5x" not in hit.recommendation.estimated_effect
    assert "stackaudit verify" in hit.recommendation.estimated_effect
    assert hit.recommendation.risk == Risk.CONFIRM  # restart


def test_pg001_fires_high_when_shared_buffers_eats_the_budget() -> None:
    [hit] = hits(shared_buffers_off_budget, reference_facts({"shared_buffers": "12GB"}))
    assert hit.severity == Severity.HIGH
    assert "12GB" in hit.message and "page cache" in hit.message


def test_pg001_silent_when_close_to_budget_or_all_data_fits() -> None:
    assert hits(shared_buffers_off_budget, reference_facts({"shared_buffers": "3GB"})) == []
    assert hits(shared_buffers_off_budget, reference_facts(REPORT_SETTINGS)) == []  # 5760MB: < 2x
    small_data = reference_facts()
    small_data.data["postgres"]["databases"] = [{"name": "app", "size_bytes": 100 * 1024**2}]
    assert hits(shared_buffers_off_budget, small_data) == []


# PG002 -----------------------------------------------------------------------------------

def test_pg002_fires_when_effective_cache_size_is_far_off() -> None:
    [low] = hits(effective_cache_size_off, reference_facts())  # default 4GB vs ~12GB
    assert low.severity == Severity.LOW and "allocates nothing" in low.message
    [high] = hits(effective_cache_size_off, reference_facts({"effective_cache_size": "40GB"}))
    assert high.severity == Severity.MEDIUM and "read from disk" in high.message


def test_pg002_silent_when_close() -> None:
    assert hits(effective_cache_size_off, reference_facts({"effective_cache_size": "12GB"})) == []


# PG003 -----------------------------------------------------------------------------------

def test_pg003_fires_on_the_reference_reports_work_mem_with_the_arithmetic() -> None:
    facts = reference_facts(REPORT_SETTINGS, source="command line")
    [hit] = hits(work_mem_overcommit, facts)
    # 100 x 256MB x 2 = 50GB alone is more than the 23GB of RAM
    arithmetic = "(100 connections + 4 parallel workers) x work_mem 256MB x hash_mem_multiplier 2 = 52.0 GiB"
    assert arithmetic in hit.message
    assert hit.severity == Severity.CRITICAL  # above the RAM itself
    assert "command line" in hit.message
    assert "compose" in (hit.recommendation.action or "")  # -c overrides ALTER SYSTEM
    evidence = {e.key: e for e in hit.evidence}
    assert evidence["worst_case_bytes"].observed > evidence["worst_case_bytes"].expected


def test_pg003_fires_high_when_over_budget_but_under_ram() -> None:
    # (100 + 4) x 96MB x 2 = 19.5GB: above the ~16.7GB budget, below the 23GB of RAM
    [hit] = hits(work_mem_overcommit, reference_facts({"work_mem": "96MB", "max_parallel_workers": 4}))
    assert hit.severity == Severity.HIGH
    assert "ALTER SYSTEM SET work_mem" in (hit.recommendation.action or "")


def test_pg003_silent_on_defaults_and_without_live_settings() -> None:
    assert hits(work_mem_overcommit, reference_facts()) == []
    what_if = reference_facts()
    what_if.data["postgres"]["settings"] = {}
    assert hits(work_mem_overcommit, what_if) == []


# PG006 -----------------------------------------------------------------------------------

def test_pg006_fires_on_the_reports_parallel_settings() -> None:
    found = {h.subject: h for h in hits(parallelism_vs_cores, reference_facts(REPORT_SETTINGS))}
    assert set(found) == {"max_worker_processes", "max_parallel_workers_per_gather"}
    assert "below the default 8" in found["max_worker_processes"].message
    assert found["max_worker_processes"].recommendation.risk == Risk.CONFIRM
    assert "every core" in found["max_parallel_workers_per_gather"].message
    assert "suggests 2" in found["max_parallel_workers_per_gather"].message


def test_pg006_defaults_on_two_cores_are_low_severity() -> None:
    found = {h.subject: h for h in hits(parallelism_vs_cores, dedicated_host(8, 2))}
    assert set(found) == {"max_parallel_workers", "max_parallel_workers_per_gather"}  # 8 and 2 on 2 cores
    assert {h.severity for h in found.values()} == {Severity.LOW}


def test_pg006_silent_on_defaults_with_four_cores() -> None:
    assert hits(parallelism_vs_cores, reference_facts()) == []


# PG007 -----------------------------------------------------------------------------------

def _with_disk(facts: Facts, device: str, rotational: bool | None, probe: dict | None = None) -> Facts:
    mount = facts.data["host"]["mounts"][0]
    mount.update(device=device, rotational=rotational)
    if probe:
        mount["random_read_probe"] = probe
    return facts


def test_pg007_flags_ssd_costs_without_evidence() -> None:
    [hit] = hits(planner_costs_vs_storage, reference_facts(REPORT_SETTINGS))  # 1.1 on a virtio disk
    assert hit.severity == Severity.LOW
    assert "nothing shows the data disk is one" in hit.message


def test_pg007_fires_with_confidence_when_storage_is_known() -> None:
    facts = _with_disk(reference_facts(), "/dev/vda1", True, {"latency_p50_ms": 0.3, "iops": 12000})
    [hit] = hits(planner_costs_vs_storage, facts)
    assert "ssd, high confidence" in hit.message and hit.severity == Severity.MEDIUM
    assert "random_page_cost = 1.1" in hit.recommendation.summary
    [weak] = hits(planner_costs_vs_storage, _with_disk(reference_facts(), "/dev/sda1", False))
    assert weak.severity == Severity.LOW and "low confidence" in weak.message


def test_pg007_silent_when_costs_fit_or_storage_unknown_with_defaults() -> None:
    assert hits(planner_costs_vs_storage, reference_facts()) == []  # default 4 on unknown storage
    ssd = _with_disk(reference_facts({"random_page_cost": 1.1, "effective_io_concurrency": 200}),
                     "/dev/nvme0n1p1", False)
    assert hits(planner_costs_vs_storage, ssd) == []


# PG008 -----------------------------------------------------------------------------------

def test_pg008_fires_when_requested_checkpoints_dominate() -> None:
    facts = reference_facts(checkpoints={"checkpoints_timed": 100, "checkpoints_requested": 60,
                                         "seconds_since_reset": 160 * 300})
    [hit] = hits(checkpoints_too_frequent, facts)
    assert "60 of 160 checkpoints (38%)" in hit.message and "5.0 min" in hit.message
    assert "8-10%" in hit.recommendation.estimated_effect
    assert "max_wal_size" in (hit.recommendation.action or "")


def test_pg008_accepts_pg17_column_names() -> None:
    facts = reference_facts(checkpoints={"num_timed": 10, "num_requested": 40})
    assert len(hits(checkpoints_too_frequent, facts)) == 1


def test_pg008_silent_when_timed_dominate_or_no_statistics() -> None:
    assert hits(checkpoints_too_frequent, reference_facts(
        checkpoints={"checkpoints_timed": 200, "checkpoints_requested": 5})) == []
    assert hits(checkpoints_too_frequent, reference_facts(
        checkpoints={"checkpoints_timed": 3, "checkpoints_requested": 3})) == []  # too few to judge
    assert hits(checkpoints_too_frequent, reference_facts()) == []
