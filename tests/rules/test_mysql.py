"""MY rules on facts snapshots: one MariaDB instance as the collector writes it, changed per test."""

from __future__ import annotations

import copy
from typing import Any

from stackaudit.config import Settings
from stackaudit.facts import Facts
from stackaudit.model import Finding, Severity
from stackaudit.rules import evaluate

MB, GB = 2**20, 2**30
DAY = 86400

BASE: dict[str, Any] = {
    "target": "root@127.0.0.1:3306/", "project": "cloud", "service": "db", "flavor": "mariadb",
    "version": "10.11.6-MariaDB", "version_tuple": [10, 11, 6],
    "variables": {"innodb_buffer_pool_size": str(2 * GB), "max_connections": "151",
                  "table_open_cache": "2000", "tmp_table_size": str(16 * MB),
                  "max_heap_table_size": str(16 * MB),
                  "innodb_log_file_size": str(96 * MB), "performance_schema": "ON", "log_bin": "ON"},
    "origins": {"innodb_buffer_pool_size": "config"},
    "uptime_seconds": 30 * DAY, "performance_schema": True,
    "digests": [{"schema_name": "shop", "digest": "abc123",
                 "query": "SELECT * FROM `orders` WHERE `note` = ?",
                 "calls": 10, "total_ms": 500.0, "mean_ms": 50.0, "rows_examined": 1000, "rows_sent": 10,
                 "tmp_disk_tables": 0, "tmp_tables": 0, "no_index_used": 10}],
    "unused_indexes": [], "redundant_indexes": [],
    "binlog": {"enabled": True, "files": 3, "bytes": 300 * MB, "expire_seconds": 7 * DAY},
    "accounts": [{"user": "root", "host": "localhost", "plugin": "mysql_native_password",
                  "no_password": False},
                 {"user": "app", "host": "%", "plugin": "mysql_native_password", "no_password": False}],
    "schemas": [{"name": "shop", "tables": 10, "bytes": 3 * GB}], "data_bytes": 3 * GB,
    "runs_in": {"kind": "host"},
    "derived": {"buffer_pool_hit_ratio": 0.999, "buffer_pool_read_requests": 10**7,
                "buffer_pool_pages_free": 100, "buffer_pool_pages_total": 131072,
                "redo_capacity_bytes": 96 * MB, "redo_write_bytes_per_second": 10_000.0,
                "redo_write_bytes_per_second_since_start": 5_000.0, "tmp_tables": 1000, "tmp_disk_tables": 10,
                "tmp_disk_ratio": 0.01, "table_open_cache_hits": 100000, "table_open_cache_misses": 100,
                "table_open_cache_miss_ratio": 0.001, "open_tables": 200, "opened_tables": 300,
                "max_used_connections": 40, "threads_connected": 5, "aborted_connects": 2,
                "aborted_clients": 0, "connections": 5000},
}
HOST = {"memory_total_bytes": 4 * GB, "cpu_count": 4}


def instance(**changes: Any) -> dict[str, Any]:
    """BASE with top-level keys replaced; `derived__x` / `variables__x` change one nested key."""
    data = copy.deepcopy(BASE)
    for key, value in changes.items():
        if "__" in key:
            outer, inner = key.split("__", 1)
            data[outer][inner] = value
        else:
            data[key] = value
    return data


def run(code: str, host: dict[str, Any] | None = None, **changes: Any) -> list[Finding]:
    facts = Facts(data={"mysql": {"instances": [instance(**changes)]}, "host": host or HOST})
    findings, skipped = evaluate(facts, Settings(select=(code,)))
    assert not [s for s in skipped if s.code == code], skipped
    return [f for f in findings if f.code == code]


def test_base_snapshot_is_quiet_for_every_my_rule() -> None:
    facts = Facts(data={"mysql": {"instances": [instance()]}, "host": HOST})
    findings, skipped = evaluate(facts, Settings(select=("MY",)))
    assert findings == [] and skipped == []


def test_my001_fires_for_the_default_128m_pool_on_a_4g_host() -> None:
    [finding] = run("MY001", variables__innodb_buffer_pool_size=str(128 * MB))
    assert "128.0 MiB, too small" in finding.message
    assert "innodb_buffer_pool_size = 2688M" in (finding.recommendation.action or "")  # 75% of 3.5G


def test_my001_fires_for_a_pool_larger_than_the_budget() -> None:
    [finding] = run("MY001", host={"memory_total_bytes": GB, "cpu_count": 2})
    assert "too large" in finding.message


def test_my001_silent_near_the_budget() -> None:
    assert run("MY001") == []


def test_my002_fires_when_connections_times_buffers_pass_the_budget() -> None:
    [finding] = run("MY002", variables__max_connections="2000", variables__sort_buffer_size=str(8 * MB))
    assert finding.severity == Severity.HIGH
    assert "2000 connections x" in finding.message


def test_my002_silent_when_the_worst_case_fits() -> None:
    assert run("MY002") == []


def test_my003_fires_when_the_redo_log_holds_minutes_of_writes() -> None:
    [finding] = run("MY003", derived__redo_write_bytes_per_second=1.0 * MB)
    assert "holds 1.6 minutes of writes" in finding.message
    assert "innodb_log_file_size = 2688M" in (finding.recommendation.action or "")  # capped: the pool


def test_my003_silent_with_room_for_the_writes_or_no_rate() -> None:
    assert run("MY003") == []
    assert run("MY003", derived__redo_write_bytes_per_second=None,
               derived__redo_write_bytes_per_second_since_start=None) == []


def test_my004_fires_for_temp_tables_on_disk_and_names_the_statement() -> None:
    digests = [dict(BASE["digests"][0], tmp_disk_tables=400)]
    [finding] = run("MY004", derived__tmp_disk_tables=500, derived__tmp_disk_ratio=0.5, digests=digests)
    assert "50% of temporary tables went to disk" in finding.message and "400x SELECT" in finding.message


def test_my004_silent_for_few_spills() -> None:
    assert run("MY004") == []
    assert run("MY004", derived__tmp_disk_tables=50, derived__tmp_disk_ratio=0.9) == []  # under the count


def test_my005_fires_for_table_cache_misses() -> None:
    [finding] = run("MY005", derived__table_open_cache_misses=50000,
                    derived__table_open_cache_miss_ratio=0.33, derived__open_tables=1990)
    assert "33% of table opens missed" in finding.message


def test_my005_silent_with_a_warm_cache() -> None:
    assert run("MY005") == []


def test_my101_fires_near_and_at_max_connections() -> None:
    [near] = run("MY101", derived__max_used_connections=140)
    assert near.severity == Severity.HIGH and "140 of its 151" in near.message
    [at] = run("MY101", derived__max_used_connections=152)
    assert at.severity == Severity.CRITICAL


def test_my101_silent_with_headroom() -> None:
    assert run("MY101") == []


def test_my102_fires_for_many_failed_logins() -> None:
    [finding] = run("MY102", derived__aborted_connects=900)
    assert "900 of 5000" in finding.message


def test_my102_silent_for_a_few() -> None:
    assert run("MY102") == []


FPM = {"project": "cloud", "service": "app", "replicas": 4,
       "pools": {"www": {"pm": "dynamic", "max_children": 50, "source": "/srv/www.conf:3 (www.conf)"}},
       "max_children_total": 200}


def test_my103_fires_when_php_fpm_children_outnumber_max_connections() -> None:
    [finding] = run("MY103", php_fpm_clients=[FPM])
    assert "PHP-FPM can open 200 connections" in finding.message and "allows 151" in finding.message
    assert "app: 4 x www 50" in finding.message
    assert any(e.expected == "/srv/www.conf:3 (www.conf)" for e in finding.evidence)


def test_my103_silent_when_the_children_fit() -> None:
    assert run("MY103", php_fpm_clients=[dict(FPM, replicas=1, max_children_total=50)]) == []
    assert run("MY103") == []


def test_my301_fires_for_an_unused_index_and_says_when_the_server_is_young() -> None:
    unused = [{"schema_name": "shop", "table_name": "orders", "index_name": "by_note", "bytes": 50 * MB,
               "unique": False},
              {"schema_name": "shop", "table_name": "orders", "index_name": "uniq_ref", "bytes": 50 * MB,
               "unique": True}]
    [old] = run("MY301", unused_indexes=unused)
    assert "shop.orders.by_note" in old.subject and old.severity == Severity.LOW
    assert "DROP INDEX `by_note`" in (old.recommendation.action or "")
    [young] = run("MY301", unused_indexes=unused, uptime_seconds=DAY)
    assert young.severity == Severity.INFO and "up only 1.0 days" in young.message


def test_my301_silent_for_small_or_unique_indexes() -> None:
    small = [{"schema_name": "s", "table_name": "t", "index_name": "i", "bytes": 16384, "unique": False}]
    assert run("MY301", unused_indexes=small) == []
    assert run("MY301") == []


def test_my302_fires_for_a_left_prefix_index() -> None:
    redundant = [{"schema_name": "shop", "table_name": "orders", "index_name": "by_customer",
                  "columns": "customer", "covered_by": "by_customer_note",
                  "covered_by_columns": "customer,note",
                  "sql_drop_index": "ALTER TABLE `shop`.`orders` DROP INDEX `by_customer`"}]
    [finding] = run("MY302", redundant_indexes=redundant)
    assert "covered by by_customer_note" in finding.message


def test_my302_silent_without_redundant_indexes() -> None:
    assert run("MY302") == []


def test_my304_fires_for_a_low_hit_ratio() -> None:
    [finding] = run("MY304", derived__buffer_pool_hit_ratio=0.8, derived__buffer_pool_pages_free=0)
    assert "hit ratio 80.0%" in finding.message


def test_my304_silent_when_idle_or_hitting() -> None:
    assert run("MY304") == []
    assert run("MY304", derived__buffer_pool_hit_ratio=0.5, derived__buffer_pool_read_requests=100) == []


def test_my401_fires_without_performance_schema() -> None:
    [finding] = run("MY401", performance_schema=False)
    assert "performance_schema OFF" in finding.message


def test_my401_silent_with_performance_schema() -> None:
    assert run("MY401") == []


def test_my402_fires_for_a_slow_statement() -> None:
    digests = [dict(BASE["digests"][0], mean_ms=450.0, total_ms=4500.0)]
    [finding] = run("MY402", digests=digests)
    assert "450 ms on average" in finding.message and "1000 rows examined for 10 sent" in finding.message


def test_my402_silent_for_fast_statements() -> None:
    assert run("MY402") == []


def test_my501_fires_for_binary_logs_without_expiry() -> None:
    [finding] = run("MY501", binlog={"enabled": True, "files": 90, "bytes": 9 * GB, "expire_seconds": 0})
    assert finding.severity == Severity.HIGH and "forever" in finding.message
    [long] = run("MY501", binlog={"enabled": True, "files": 9, "bytes": GB, "expire_seconds": 30 * DAY})
    assert long.severity == Severity.MEDIUM and "30 days" in long.message


def test_my501_silent_with_expiry_or_no_binlog() -> None:
    assert run("MY501") == []
    assert run("MY501", binlog={"enabled": False, "files": 0, "bytes": 0, "expire_seconds": 0}) == []


def test_my601_fires_for_an_account_without_password() -> None:
    accounts = [*BASE["accounts"], {"user": "wp", "host": "%", "plugin": "mysql_native_password",
                                    "no_password": True}]
    [finding] = run("MY601", accounts=accounts)
    assert "'wp'@'%' has no password" in finding.message


def test_my601_silent_for_socket_or_password_accounts() -> None:
    assert run("MY601") == []


def test_my602_fires_for_an_anonymous_account() -> None:
    accounts = [*BASE["accounts"], {"user": "", "host": "localhost", "plugin": "", "no_password": True}]
    [finding] = run("MY602", accounts=accounts)
    assert "anonymous account ''@'localhost'" in finding.message


def test_my602_silent_without_one() -> None:
    assert run("MY602") == []


def test_my603_fires_for_root_from_any_host() -> None:
    accounts = [*BASE["accounts"], {"user": "root", "host": "%", "plugin": "mysql_native_password",
                                    "no_password": False}]
    [finding] = run("MY603", accounts=accounts)
    assert "'root'@'%' lets root log in from any host" in finding.message


def test_my603_silent_for_local_root() -> None:
    assert run("MY603") == []
