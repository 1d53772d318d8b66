"""tuning/mysql.py: the pure calculator on explicit inputs (tables of expected values)."""

from __future__ import annotations

from typing import Any

import pytest

from stackaudit.tuning.mysql import (
    MysqlInputs,
    as_compose,
    as_conf,
    as_sql,
    mysql_size,
    recommend,
    worst_case,
)
from stackaudit.tuning.postgres import Budget, CoTenant, Storage
from stackaudit.tuning.units import parse_memory

MB, GB = 2**20, 2**30


def budget(mysql_bytes: int, host: int = 8 * GB) -> Budget:
    return Budget(host, None, host, (CoTenant("web", "app", GB, "limit", "memory limit 1GB"),), 512 * MB,
                  mysql_bytes)


def inputs(mysql_bytes: int = 4 * GB, **overrides: Any) -> MysqlInputs:
    values: dict[str, Any] = {"budget": budget(mysql_bytes), "cpus": 4, "flavor": "mariadb",
                              "version": (10, 11, 6), "storage": Storage("ssd", "high", "measured"),
                              "server_reached": True}
    return MysqlInputs(**{**values, **overrides})


@pytest.mark.parametrize(("mysql_bytes", "chunk", "instances", "expected"), [
    (4 * GB, 128 * MB, 1, "3G"),  # 75% of 4G = 3G, a multiple of 128M
    (3 * GB, 128 * MB, 1, "2304M"),  # 75% = 2304M: below what the other buffers and connections leave
    (4 * GB, 128 * MB, 8, "3G"),  # 8 x 128M = 1G steps
    (3 * GB, 128 * MB, 8, "2G"),  # rounded down to 1G steps, never up past the budget
    (256 * MB, 128 * MB, 1, "128M"),  # at least one chunk
])
def test_buffer_pool_is_rounded_down_to_chunk_times_instances(mysql_bytes: int, chunk: int, instances: int,
                                                              expected: str) -> None:
    variables = {"innodb_buffer_pool_chunk_size": str(chunk), "innodb_buffer_pool_instances": str(instances)}
    tuning = recommend(inputs(mysql_bytes, variables=variables))
    assert tuning.settings["innodb_buffer_pool_size"].recommended == expected


def test_the_buffer_pool_stays_near_the_data_when_the_data_is_small() -> None:
    tuning = recommend(inputs(8 * GB, data_bytes=200 * MB))
    assert tuning.settings["innodb_buffer_pool_size"].recommended == "384M"  # 2 x 200M, in 128M steps


def test_enlarged_per_thread_buffers_go_back_and_connections_come_down_so_the_worst_case_fits() -> None:
    variables = {"max_connections": "1000", "sort_buffer_size": str(64 * MB), "join_buffer_size": str(8 * MB),
                 "innodb_buffer_pool_size": str(3 * GB)}
    tuning = recommend(inputs(2 * GB, variables=variables, max_used_connections=40))
    settings = tuning.settings
    assert settings["sort_buffer_size"].recommended == "2M"
    assert settings["join_buffer_size"].recommended == "256K"
    assert int(settings["max_connections"].recommended) < 1000
    assert int(settings["max_connections"].recommended) >= 55  # what was used, plus a quarter, plus 5
    assert tuning.fits and tuning.worst_case.bytes <= 2 * GB
    assert not tuning.worst_case_current.bytes <= 2 * GB
    assert "1000 connections x" in tuning.worst_case_current.arithmetic


def test_worst_case_is_mysqltuners_maximum_possible_memory() -> None:
    values = {"innodb_buffer_pool_size": 1024 * MB, "key_buffer_size": 8 * MB,
              "innodb_log_buffer_size": 16 * MB, "tmp_table_size": 32 * MB, "max_heap_table_size": 16 * MB,
              "read_buffer_size": MB, "read_rnd_buffer_size": MB, "sort_buffer_size": 2 * MB,
              "thread_stack": MB, "join_buffer_size": MB, "binlog_cache_size": 0}
    result = worst_case(values, 100)
    assert result.bytes == (1024 + 8 + 16 + 16) * MB + 100 * 6 * MB  # tmp counted once: min(32M, 16M)
    assert "100 connections x 6.0 MiB per thread" in result.arithmetic


@pytest.mark.parametrize(("flavor", "version", "name", "restart"), [
    ("mariadb", (10, 11, 6), "innodb_log_file_size", False),  # resizable online since 10.9
    ("mariadb", (10, 6, 16), "innodb_log_file_size", True),
    ("mysql", (8, 0, 36), "innodb_redo_log_capacity", False),
    ("mysql", (8, 0, 20), "innodb_log_file_size", True),
])
def test_redo_holds_an_hour_of_the_measured_writes(flavor: str, version: tuple[int, int, int], name: str,
                                                   restart: bool) -> None:
    tuning = recommend(inputs(flavor=flavor, version=version, redo_write_bytes_per_second=MB / 2))
    proposal = tuning.settings[name]
    assert proposal.recommended == "1800M" and proposal.restart is restart


def test_no_redo_proposal_without_a_measured_rate() -> None:
    tuning = recommend(inputs())
    assert "innodb_log_file_size" not in tuning.settings


def test_storage_and_table_cache() -> None:
    tuning = recommend(inputs(open_tables=1950, table_open_cache_miss_ratio=0.3,
                              variables={"table_open_cache": "2000"}))
    assert tuning.settings["innodb_io_capacity"].recommended == "1000"
    assert tuning.settings["table_open_cache"].recommended == "3000"
    hdd = recommend(inputs(storage=Storage("hdd", "high", "measured"), open_tables=10,
                           variables={"table_open_cache": "2000"}))
    assert hdd.settings["innodb_io_capacity"].recommended == "200"
    assert "table_open_cache" not in hdd.settings


def test_outputs_per_flavor() -> None:
    mysql = recommend(inputs(flavor="mysql", version=(8, 0, 36)))
    sql = as_sql(mysql)
    assert f"SET PERSIST innodb_buffer_pool_size = {3 * GB};" in sql
    assert "SET PERSIST_ONLY innodb_flush_method = 'O_DIRECT';" in sql
    mariadb = recommend(inputs(variables={"innodb_flush_method": "fsync"}))
    maria_sql = as_sql(mariadb)
    assert "\nSET PERSIST" not in maria_sql and f"SET GLOBAL innodb_buffer_pool_size = {3 * GB};" in maria_sql
    assert "needs a restart (config file or command line): innodb_flush_method" in maria_sql
    conf = as_conf(mariadb)
    assert "[mysqld]" in conf and "innodb_buffer_pool_size = 3G" in conf
    assert '"--innodb-buffer-pool-size=3G"' in as_compose(mariadb, "db")


def test_json_has_the_tune_postgres_shape() -> None:
    data = recommend(inputs()).to_json()
    assert {"total_bytes", "mysql_bytes", "co_tenants", "worst_case_bytes"} <= data["budget"].keys()
    assert data["budget"]["co_tenants"] == {"web": GB}
    setting = data["settings"]["innodb_buffer_pool_size"]
    assert {"current", "recommended", "restart", "reason"} <= setting.keys()
    assert setting["current"] == str(128 * MB)  # MariaDB's default when the variable is not given


def test_mysql_size() -> None:
    assert [mysql_size(v) for v in (3 * GB, 1536 * MB, 256 * 1024, 1000)] == ["3G", "1536M", "256K", "1000"]


def test_a_server_without_chunk_size_is_rounded_to_readable_steps_only() -> None:
    tuning = recommend(inputs(3 * GB - 100 * MB, variables={"innodb_buffer_pool_size": str(128 * MB)}))
    proposal = tuning.settings["innodb_buffer_pool_size"]
    assert "whole MiB (this server has no chunk size)" in proposal.reason
    assert parse_memory(proposal.recommended) % (128 * MB) == 0  # 128M steps above 1G


def test_small_data_never_lifts_the_pool_above_what_the_budget_leaves() -> None:
    # 512MiB budget, 43 connections' buffers and the other globals leave ~98MB: 2 x 48KB of data
    # must not lift the pool to the 128MB floor (seen live: a worst case of 543.5MB in 512MB)
    tuning = recommend(inputs(512 * MB, data_bytes=48 * 1024, max_used_connections=1))
    assert tuning.fits, tuning.worst_case.arithmetic
    assert parse_memory(tuning.settings["innodb_buffer_pool_size"].recommended) < 128 * MB
