"""bench/tuning_mysql.py's reading of MySQLTuner's "Variables to adjust" (docs/benchmarks.md, section
5): the mapping decides what the MySQLTuner configuration is, so it is tested like code."""

from __future__ import annotations

from bench.tuning_mysql import tuner_advice

KNOWN = {"innodb_buffer_pool_size": "134217728", "innodb_log_file_size": "100663296",
         "performance_schema": "OFF", "join_buffer_size": "262144", "max_connections": "151"}


def test_each_kind_of_line_becomes_an_option_as_documented() -> None:
    advice = ["performance_schema=ON",
              "innodb_buffer_pool_size (>= 3.6G) if possible.",
              "innodb_log_file_size should be (=32M) if possible, so InnoDB total log files size equals "
              "25% of buffer pool size.",
              "join_buffer_size (> 256.0K, or always use indexes with JOINs)",
              "max_connections (~ 200)"]
    options, notes = tuner_advice(advice, KNOWN)
    assert options == {"performance-schema": "ON",
                       "innodb-buffer-pool-size": "3687M",  # 3.6 x 1024 = 3686.4, up to a MiB
                       "innodb-log-file-size": "32M",
                       "join-buffer-size": "524288",  # "> X": twice X
                       "max-connections": "200"}
    assert notes == []


def test_lines_without_a_value_or_an_unknown_variable_are_noted_not_applied() -> None:
    advice = ["innodb_buffer_pool_size must always be equal to or a multiple of "
              "innodb_buffer_pool_chunk_size * innodb_buffer_pool_instances",
              "innodb_log_files_in_group (=1)"]
    options, notes = tuner_advice(advice, KNOWN)
    assert options == {}
    assert [n.split(":")[0] for n in notes] == ["not applied (no value)",
                                                "not applied (no such variable here)"]
