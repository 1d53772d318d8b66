"""The PostgreSQL tuner, pure: tables of host sizes x cores x connections with expected bounds
(in the style of timescaledb-tune's memory_test.go), the reference host, and the edge cases."""

from __future__ import annotations

import io

import pytest
from ruamel.yaml import YAML

from stackaudit.derive.memory import memory_budget, postgres_service
from stackaudit.derive.postgres import compose_service_name, storage_evidence
from stackaudit.derive.postgres import postgres_tuning as tune
from stackaudit.facts import Facts
from stackaudit.report.tuning import as_compose, as_conf, as_sql
from stackaudit.tuning.postgres import shared_buffers_for, worst_case
from stackaudit.tuning.units import (
    GB,
    KB,
    MB,
    UnitError,
    format_memory,
    format_time_ms,
    parse_memory,
    parse_time_ms,
    round_memory,
)
from tests.tuning.pg_facts import dedicated_host, pg_settings, reference_facts


def mem(tuning_value: str) -> int:
    return parse_memory(tuning_value, "kB")


# --- units ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "default", "expected"), [
    ("23GiB", "B", 23 * GB), ("512MB", "B", 512 * MB), ("8kB", "B", 8 * KB), ("2g", "B", 2 * GB),
    ("1.5GB", "B", int(1.5 * GB)), ("16384", "8kB", 128 * MB), ("4096", "kB", 4 * MB),
    ("1TB", "B", 1024 * GB), (" 64 MB ", "B", 64 * MB),
])
def test_parse_memory(text: str, default: str, expected: int) -> None:
    assert parse_memory(text, default) == expected


@pytest.mark.parametrize("bad", ["", "lots", "12 parsecs", "GB"])
def test_parse_memory_rejects_nonsense(bad: str) -> None:
    with pytest.raises(UnitError):
        parse_memory(bad)


@pytest.mark.parametrize(("num", "expected"), [
    (4 * GB, "4GB"), (1536 * MB, "1536MB"), (8 * KB, "8kB"), (128 * MB, "128MB"), (0, "0"),
    (1000, "1kB"), (20388 * KB, "20388kB"),
])
def test_format_memory_like_postgres(num: int, expected: str) -> None:
    assert format_memory(num) == expected


@pytest.mark.parametrize(("num", "expected"), [
    (int(4.58 * GB), 4 * GB + 512 * MB), (int(2.96 * GB), 2 * GB + 512 * MB), (1126 * MB, GB),
    (224 * MB, 224 * MB), (int(14.05 * GB), 14 * GB), (int(58.8 * MB), 58 * MB),
    (int(100.5 * MB), 96 * MB), (int(5.3 * MB), 5 * MB),
])
def test_round_memory_to_sane_steps(num: int, expected: int) -> None:
    assert round_memory(num) == expected


@pytest.mark.parametrize(("num", "expected"), [
    (2860 * MB, 3 * GB), (2560 * MB, 2560 * MB), (1126 * MB, 1280 * MB), (int(5.3 * MB), 6 * MB),
    (1, 64 * KB),
])
def test_round_memory_up_for_a_floor(num: int, expected: int) -> None:
    assert round_memory(num, up=True) == expected


@pytest.mark.parametrize(("text", "default", "ms"), [
    ("5min", "ms", 300_000), ("30s", "ms", 30_000), ("200", "ms", 200), ("1h", "ms", 3_600_000),
    ("300", "s", 300_000),
])
def test_parse_time(text: str, default: str, ms: float) -> None:
    assert parse_time_ms(text, default) == ms


@pytest.mark.parametrize(("ms", "text"), [(300_000, "5min"), (30_000, "30s"), (1500, "1500ms"),
                                          (86_400_000, "1d")])
def test_format_time(ms: float, text: str) -> None:
    assert format_time_ms(ms) == text


# --- table: host sizes x cores x connections -----------------------------------------------

# RAM (GiB) -> bounds of shared_buffers on a dedicated host. Budgets up to 2GiB stay near 128MB
# (measured: bigger was worse on a 2GiB cgroup with data larger than RAM); from a 3GiB budget a
# quarter of it (measured on a 4GiB host: 1GB beat 224MB with data larger than RAM).
SHARED_BUFFERS_BOUNDS = {
    1: (128 * MB, 128 * MB), 2: (128 * MB, 256 * MB), 4: (768 * MB, GB), 8: (GB, 2 * GB),
    16: (2 * GB, 4 * GB), 23: (3 * GB, 6 * GB), 64: (8 * GB, 16 * GB),
}


@pytest.mark.parametrize("ram", sorted(SHARED_BUFFERS_BOUNDS))
@pytest.mark.parametrize("cores", [1, 2, 4, 8, 16])
@pytest.mark.parametrize("connections", [20, 100, 300])
def test_table_of_hosts(ram: int, cores: int, connections: int) -> None:
    tuning = tune(dedicated_host(ram, cores, connections))
    s = tuning.settings
    budget = tuning.budget.postgres_bytes
    low, high = SHARED_BUFFERS_BOUNDS[ram]
    sb = mem(s["shared_buffers"].recommended)
    assert low <= sb <= high
    assert sb <= 0.25 * budget or sb <= 256 * MB  # docs: 25% is the *start* for a dedicated server
    assert sb <= mem(s["effective_cache_size"].recommended) <= budget
    assert MB <= mem(s["work_mem"].recommended) <= 64 * MB  # modest: keeps parallel plans
    assert 64 * MB <= mem(s["maintenance_work_mem"].recommended) <= GB
    assert int(s["max_worker_processes"].recommended) >= 8
    assert int(s["max_parallel_workers"].recommended) == cores
    assert int(s["max_parallel_workers_per_gather"].recommended) == min(4, cores // 2)
    assert s["shared_buffers"].restart and not s["work_mem"].restart
    fits_expected = not (ram <= 1 and connections >= 100) and not (ram <= 2 and connections >= 300)
    if fits_expected:
        assert tuning.worst_case.bytes <= budget, tuning.worst_case.arithmetic
    if not tuning.fits:
        assert "pooler" in s["work_mem"].reason


def test_worst_case_arithmetic_is_shown() -> None:
    case = worst_case(100, 4, 256 * MB, 2.0, 5760 * MB, 512 * MB, 512 * MB, 3, 16 * MB)
    assert case.bytes == 104 * 256 * MB * 2 + 5760 * MB + 512 * MB + 3 * 512 * MB + 16 * MB
    assert "(100 connections + 4 parallel workers) x work_mem 256MB x hash_mem_multiplier 2 = 52.0 GiB" in \
        case.arithmetic


def test_measured_small_host_keeps_shared_buffers_small() -> None:
    """2 GiB cgroup with 4.5 GB of data: 512MB was 0.94x and 1GB 0.86x of 128MB."""
    facts = dedicated_host(64, 2)
    facts.data["postgres"]["memory_limit_bytes"] = 2 * GB
    facts.data["postgres"]["databases"] = [{"name": "bench", "size_bytes": int(4.5 * GB)}]
    tuning = tune(facts)
    assert tuning.budget.postgres_limit_bytes == 2 * GB
    assert tuning.budget.postgres_bytes == 2 * GB
    assert mem(tuning.settings["shared_buffers"].recommended) <= 256 * MB


def test_shared_buffers_never_more_than_twice_the_data() -> None:
    size, why = shared_buffers_for(30 * GB, data_bytes=512 * MB)
    assert size == GB
    assert "twice the data" in why


def test_shared_buffers_hold_a_data_set_that_fits_in_a_quarter_of_the_budget() -> None:
    """bench.tuning (select-only, 750MB of data, 4GiB host): buffers holding the data won."""
    size, _ = shared_buffers_for(int(3.6 * GB), data_bytes=750 * MB)
    assert 880 * MB <= size <= 960 * MB  # a quarter of the budget already holds it
    size, why = shared_buffers_for(int(2.5 * GB), data_bytes=500 * MB)  # below the quarter there
    assert size >= 500 * MB and "whole data set" in why
    # Data larger than a quarter of the budget: a 2GiB budget stays small (measured there: more
    # double-buffers, and lost); a 3.6GB budget takes its quarter (measured on a 4GiB host: won).
    small, _ = shared_buffers_for(2 * GB, data_bytes=int(4.5 * GB))
    assert small <= 256 * MB
    assert shared_buffers_for(int(3.6 * GB), data_bytes=int(4.5 * GB))[0] == round_memory(0.9 * GB)


def test_shared_buffers_rise_smoothly_between_2_and_3_gib_budgets() -> None:
    sizes = [shared_buffers_for(int(g * GB))[0] for g in (1.5, 2.0, 2.25, 2.5, 2.75, 3.0, 3.5)]
    assert sizes == sorted(sizes) and sizes[1] == 128 * MB and sizes[5] == 768 * MB


def test_shared_buffers_keep_a_table_read_in_full_out_of_the_scan_ring() -> None:
    """bench.tuning (analytic, 23GiB host): 1536MB of buffers (twice the 750MB of data) left the
    640MB table that every query scans on the bulk-read ring; buffers above 4x the table held it."""
    size, why = shared_buffers_for(21 * GB, data_bytes=750 * MB, scanned_table_bytes=650 * MB)
    assert size >= 4 * 650 * MB and "read in full repeatedly" in why
    assert size <= 256 * MB + (21 * GB - 4 * GB) // 4  # never beyond what the budget's curve allows
    # Without the scan habit the data cap stands.
    assert shared_buffers_for(21 * GB, data_bytes=750 * MB)[0] == round_memory(1500 * MB)
    # A host too small to hold 4x the table: unchanged, and the reason says why.
    small, small_why = shared_buffers_for(int(3.6 * GB), data_bytes=750 * MB, scanned_table_bytes=640 * MB)
    assert small == shared_buffers_for(int(3.6 * GB), data_bytes=750 * MB)[0]
    assert "beyond the budget" in small_why
    # A table already below a quarter of the buffers needs nothing.
    small_table = shared_buffers_for(21 * GB, data_bytes=750 * MB, scanned_table_bytes=100 * MB)
    assert small_table[0] == round_memory(1500 * MB)


def _with_tables(facts: Facts, tables: list[dict[str, object]]) -> Facts:
    facts.data["postgres"]["databases"] = [{"name": "app", "size_bytes": 750 * MB}]
    facts.data["postgres"]["per_database"] = {"app": {"tables": tables}}
    return facts


def test_tune_reads_the_scan_habit_from_table_statistics() -> None:
    accounts = {"schema": "public", "table": "accounts", "live_tuples": 5_000_000, "table_bytes": 640 * MB}
    scanned = _with_tables(dedicated_host(23, 2), [{**accounts, "seq_tup_read": 30_000_000}])
    tuning = tune(scanned, workload="analytics", dedicated=True)
    assert tuning.inputs.scanned_table_bytes == 640 * MB
    assert mem(tuning.settings["shared_buffers"].recommended) >= 4 * 640 * MB
    assert tuning.fits
    # One full read (an index build, a dump) is not a habit: the cap at twice the data stays.
    once = _with_tables(dedicated_host(23, 2), [{**accounts, "seq_tup_read": 5_000_000}])
    tuned_once = tune(once, workload="analytics", dedicated=True)
    assert tuned_once.inputs.scanned_table_bytes is None
    assert mem(tuned_once.settings["shared_buffers"].recommended) == round_memory(1500 * MB)


# --- the reference host ---------------------------------------------------------------------

def test_reference_host_recommendation_within_sane_bounds() -> None:
    tuning = tune(reference_facts())
    s, budget = tuning.settings, tuning.budget
    assert budget.total_bytes == 23 * GB
    assert budget.co_tenants_bytes > 3 * GB  # Puma, Sidekiq, Redis, the monitoring stack
    tenants = {c.name: c for c in budget.co_tenants}
    assert "permoney-db-1" not in tenants  # PostgreSQL itself is not a co-tenant
    assert tenants["permoney-redis-1"].bytes == 512 * MB and tenants["permoney-redis-1"].basis == "limit"
    assert tenants["permoney-web-1"].bytes == 4 * 384 * MB  # 4 Puma workers
    assert budget.postgres_bytes < 23 * GB - budget.co_tenants_bytes
    assert 2 * GB <= mem(s["shared_buffers"].recommended) <= 6 * GB
    assert mem(s["effective_cache_size"].recommended) < 15 * GB  # the report's 65% ignores co-tenants
    assert 4 * MB <= mem(s["work_mem"].recommended) <= 64 * MB
    assert tuning.worst_case.bytes <= budget.postgres_bytes
    assert s["max_parallel_workers_per_gather"].recommended == "2"
    assert int(s["max_worker_processes"].recommended) >= 8
    assert s["max_parallel_workers"].recommended == "4"
    assert s["shared_buffers"].current == "128MB" and s["shared_buffers"].changed


def test_reference_report_settings_overcommit_the_budget() -> None:
    tuning = tune(reference_facts(dict(shared_buffers="5760MB", work_mem="256MB",
                                       maintenance_work_mem="512MB", max_parallel_workers=4)))
    current = tuning.worst_case_current
    assert current is not None
    assert current.bytes > 100 * 256 * MB * 2 > tuning.budget.postgres_bytes
    expected = "(100 connections + 4 parallel workers) x work_mem 256MB x hash_mem_multiplier 2"
    assert expected in current.arithmetic
    assert tuning.settings["work_mem"].current == "256MB"
    assert mem(tuning.settings["work_mem"].recommended) <= 64 * MB


def test_json_shape() -> None:
    data = tune(reference_facts()).to_json()
    assert set(data["budget"]) >= {"total_bytes", "postgres_bytes", "co_tenants", "worst_case_bytes",
                                   "os_reserve_bytes"}
    proposal = data["settings"]["shared_buffers"]
    assert set(proposal) >= {"current", "recommended", "restart", "reason"}
    assert proposal["restart"] is True and proposal["current"] == "128MB"


# --- budget -------------------------------------------------------------------------------

def test_co_tenant_basis_limit_then_measured_then_estimate() -> None:
    facts = reference_facts()
    containers = facts.data["docker"]["containers"]
    containers[4]["memory_usage_bytes"] = 400 * MB  # prometheus measured
    tenants = {c.name: c for c in memory_budget(facts).co_tenants}
    assert tenants["prometheus"].basis == "measured" and tenants["prometheus"].bytes == 500 * MB
    assert tenants["grafana"].basis == "estimate"
    assert tenants["permoney-redis-1"].basis == "limit"


def test_compose_services_used_when_docker_is_missing() -> None:
    facts = Facts(data={
        "host": {"cpu_count": 4, "memory_total_bytes": 16 * GB},
        "compose": {"projects": [{"name": "p", "services": {
            "db": {"name": "db", "image": "postgres:16", "mem_limit_bytes": 8 * GB},
            "app": {"name": "app", "image": "myapp", "mem_limit_bytes": 2 * GB, "replicas": 2},
            "cache": {"name": "cache", "image": "redis:7", "mem_limit_bytes": None},
        }}]},
    })
    budget = memory_budget(facts)
    tenants = {c.name: c.bytes for c in budget.co_tenants}
    assert tenants == {"app": 4 * GB, "cache": 256 * MB}
    assert budget.postgres_limit_bytes == 8 * GB and budget.total_bytes == 8 * GB
    assert budget.postgres_bytes == 8 * GB  # 16 - 4.25 - 1.2 reserve > 8: its own limit caps it


def test_what_if_memory_and_dedicated() -> None:
    facts = reference_facts()
    assert memory_budget(facts, memory_bytes=64 * GB).host_memory_bytes == 64 * GB
    assert memory_budget(facts, dedicated=True).co_tenants == ()


def test_overcommitted_host_gets_a_floor_and_a_note() -> None:
    facts = reference_facts()
    for container in facts.data["docker"]["containers"]:
        container["memory_limit_bytes"] = 8 * GB
    facts.data["docker"]["containers"][2]["memory_limit_bytes"] = None  # the db
    budget = memory_budget(facts)
    assert budget.postgres_bytes == 256 * MB
    assert "over-committed" in budget.notes[0]


# --- missing data never crashes -------------------------------------------------------------

@pytest.mark.parametrize("data", [
    {}, {"host": {}}, {"postgres": {"settings": "garbage", "checkpoints": None, "databases": "x"}},
    {"host": {"memory_total_bytes": None, "mounts": None}, "docker": {"containers": [None, 3]}},
])
def test_missing_or_malformed_facts_give_not_enough_data(data: dict) -> None:
    tuning = tune(Facts(data=data))
    assert "not enough data" in tuning.settings["max_wal_size"].reason
    assert tuning.settings["shared_buffers"].recommended
    assert tuning.worst_case_current is None


def test_what_if_uses_defaults_as_current() -> None:
    tuning = tune(Facts(data={}), memory_bytes=23 * GB, cpus=4, major=17)
    assert tuning.settings["shared_buffers"].current == "128MB"
    assert "not reached" in tuning.settings["shared_buffers"].source
    assert "io_method" not in tuning.settings  # PG18 only
    assert tune(Facts(data={}), memory_bytes=8 * GB, cpus=2).settings["io_method"].recommended == "worker"


# --- WAL from checkpoint statistics ---------------------------------------------------------

@pytest.mark.parametrize(("timed", "requested", "expected", "words"), [
    (100, 60, 2 * GB, "38%"),  # requested share 38% -> 2x the current 1GB
    (20, 80, 4 * GB, "80%"),  # mostly requested -> 4x
    (200, 5, GB, "timed checkpoints dominate"),
    (2, 1, GB, "not enough data"),
])
def test_max_wal_size_from_checkpoint_statistics(timed: int, requested: int, expected: int,
                                                 words: str) -> None:
    facts = dedicated_host(16, 4)
    facts.data["postgres"]["checkpoints"] = {"checkpoints_timed": timed, "checkpoints_requested": requested}
    proposal = tune(facts).settings["max_wal_size"]
    assert mem(proposal.recommended) == expected
    assert words in proposal.reason


def test_max_wal_size_from_wal_rate_and_capped_by_free_disk() -> None:
    mounts = [{"mountpoint": "/", "device": "/dev/vda1", "holds": ["root", "postgres"], "rotational": True,
               "free_bytes": 8 * GB}]
    facts = dedicated_host(16, 4, mounts=mounts)
    facts.data["postgres"]["checkpoints"] = {"checkpoints_timed": 10, "checkpoints_requested": 90,
                                             "wal_bytes_per_second": 20 * MB}
    proposal = tune(facts).settings["max_wal_size"]
    # 20MB/s x 300s x 1.9 x 1.5 = 16.7GB, capped at a quarter of the 8GB free
    assert mem(proposal.recommended) == 2 * GB
    assert "WAL rate" in proposal.reason and "free on the data disk" in proposal.reason


def test_wal_rate_from_pg_stat_wal_and_collected_at() -> None:
    facts = dedicated_host(16, 4)
    facts.collected_at = "2025-11-08T12:00:00+00:00"
    facts.data["postgres"]["checkpoints"] = {"checkpoints_timed": 10, "checkpoints_requested": 90}
    facts.data["postgres"]["wal"] = {"wal_bytes": 3600 * 10 * MB, "stats_reset": "2025-11-08T11:00:00+00:00"}
    proposal = tune(facts).settings["max_wal_size"]
    assert "WAL rate 10.0 MiB/s" in proposal.reason
    assert mem(proposal.recommended) == 9 * GB  # 10MB/s x 300 x 2.85 = 8.3GB -> 9GB


# --- storage evidence -----------------------------------------------------------------------

@pytest.mark.parametrize(("mount", "kind", "confidence"), [
    ({"device": "/dev/vda1", "rotational": True, "random_read_probe": {"latency_p50_ms": 0.2, "iops": 9000}},
     "ssd", "high"),
    ({"device": "/dev/sdb1", "rotational": True, "random_read_probe": {"latency_p50_ms": 8.0, "iops": 120}},
     "hdd", "high"),
    ({"device": "/dev/nvme0n1p1", "rotational": False}, "ssd", "medium"),
    ({"device": "/dev/sda1", "rotational": False}, "ssd", "low"),
    ({"device": "/dev/sda1", "rotational": True}, "hdd", "low"),
    ({"device": "/dev/vda1", "rotational": True}, "unknown", "low"),  # virtio says 1 on SSDs
])
def test_storage_evidence(mount: dict, kind: str, confidence: str) -> None:
    facts = dedicated_host(8, 2, mounts=[{"mountpoint": "/", "holds": ["root"], **mount}])
    storage = storage_evidence(facts)
    assert (storage.kind, storage.confidence) == (kind, confidence)
    rpc = tune(facts).settings["random_page_cost"]
    assert rpc.recommended == {"ssd": "1.1", "hdd": "4", "unknown": "4"}[kind]
    assert rpc.confidence == confidence


# --- workload, spills ------------------------------------------------------------------------

def test_temp_file_spills_raise_work_mem_within_bounds_and_advise_per_role() -> None:
    facts = dedicated_host(16, 4)
    facts.data["postgres"]["databases"] = [{"name": "app", "temp_bytes": 50 * GB, "temp_files": 900}]
    without = tune(dedicated_host(16, 4)).settings["work_mem"]
    spilled = tune(facts).settings["work_mem"]
    assert mem(without.recommended) < mem(spilled.recommended) <= 32 * MB
    assert "ALTER ROLE" in spilled.reason


def test_workload_guess_from_statistics() -> None:
    facts = dedicated_host(16, 4)
    facts.data["postgres"]["databases"] = [{"name": "app", "xact_commit": 100000, "tup_fetched": 1000000,
                                            "tup_returned": 0, "tup_inserted": 800000, "tup_updated": 200000,
                                            "tup_deleted": 0, "temp_bytes": 0}]
    inputs = tune(facts).inputs
    assert inputs.workload == "oltp" and "guessed" in inputs.workload_reason
    assert tune(facts, workload="analytics").inputs.workload == "analytics"


def test_huge_pages_advice_for_large_shared_buffers() -> None:
    proposal = tune(dedicated_host(64, 16)).settings["huge_pages"]
    assert proposal.recommended == "try" and "vm.nr_hugepages" in proposal.reason
    assert "not worth" in tune(dedicated_host(8, 2)).settings["huge_pages"].reason


# --- renderings -----------------------------------------------------------------------------

def test_conf_and_sql_only_changed_settings() -> None:
    tuning = tune(reference_facts())
    conf = as_conf(tuning)
    assert "shared_buffers = '" in conf and "# restart" in conf
    assert "max_worker_processes" not in conf  # already 8
    sql = as_sql(tuning)
    assert "ALTER SYSTEM SET work_mem = '" in sql
    assert "ALTER SYSTEM SET max_worker_processes" not in sql
    assert "SELECT pg_reload_conf();" in sql


def test_sql_warns_when_command_line_overrides_alter_system() -> None:
    tuning = tune(reference_facts({"work_mem": "256MB"}, source="command line"))
    assert "overrides ALTER SYSTEM" in as_sql(tuning)


def test_compose_override_is_yaml_with_command_and_shm_size() -> None:
    facts = reference_facts()
    facts.data["compose"] = {"projects": [{"name": "permoney", "services": {
        "db": {"name": "db", "image": "postgres:18",
               "command": ["postgres", "-c", "log_min_duration_statement=500", "-c", "work_mem=256MB"],
               "environment": {"POSTGRES_INITDB_ARGS": "-c shared_buffers=5760MB"}}}}]}
    command = (postgres_service(facts) or {}).get("command")
    text = as_compose(tune(facts), compose_service_name(facts), command)
    assert "POSTGRES_INITDB_ARGS" not in text
    doc = YAML(typ="safe").load(io.StringIO(text))
    service = doc["services"]["db"]
    command = service["command"]
    assert command[0] == "postgres"
    assert "log_min_duration_statement=500" in command  # kept
    assert "work_mem=256MB" not in command and any(c.startswith("work_mem=") for c in command)
    assert parse_memory(service["shm_size"]) >= 256 * MB


def test_settings_from_alter_system_are_described() -> None:
    facts = dedicated_host(8, 2)
    facts.data["postgres"]["settings"].update(pg_settings({"work_mem": "64MB"}, "configuration file",
                                                          "/var/lib/postgresql/data/postgresql.auto.conf"))
    assert tune(facts).settings["work_mem"].source.startswith("ALTER SYSTEM")
