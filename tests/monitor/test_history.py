"""The history database: WAL mode, a concurrent reader while writing, retention."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from stackaudit.monitor.history import History, database_path


def _record(history: History, ts: float, value: float) -> None:
    history.record_check(
        ts,
        0.01,
        None,
        {"high": 0},
        {"host": True},
        0,
        [("disk_used_bytes", "/data", value), ("disk_used_ratio", "/data", value / 100)],
    )


def test_history_uses_wal_and_survives_reopening(state_dir: Path) -> None:
    with History.open(state_dir) as history:
        _record(history, 1000.0, 10.0)
    assert database_path(state_dir).exists()
    with History.open(state_dir) as history:
        assert history.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert history.series("disk_used_bytes", "/data") == [(1000.0, 10.0)]
        assert history.check_count() == 1


def test_concurrent_reader_never_fails_and_sees_only_whole_checks(state_dir: Path) -> None:
    writes = 300
    errors: list[BaseException] = []
    seen: dict[int, list[int]] = {0: [], 1: []}
    done = threading.Event()
    History.open(state_dir).close()

    def read(number: int) -> None:
        reader = sqlite3.connect(str(database_path(state_dir)), timeout=30)
        try:
            while not done.is_set():
                # one statement reads one snapshot
                checks, samples = reader.execute(
                    "SELECT (SELECT count(*) FROM checks), (SELECT count(*) FROM samples)"
                ).fetchone()
                assert samples == 2 * checks, "a check and its samples are written in one transaction"
                seen[number].append(checks)
        except BaseException as exc:  # noqa: BLE001 - reported to the test thread
            errors.append(exc)
        finally:
            reader.close()

    readers = [threading.Thread(target=read, args=(n,)) for n in range(2)]
    for thread in readers:
        thread.start()
    with History.open(state_dir) as history:
        for i in range(writes):
            _record(history, 1000.0 + i, float(i))
    done.set()
    for thread in readers:
        thread.join(timeout=30)
    assert not errors, errors
    for counts in seen.values():
        assert len(counts) > 10
        assert counts == sorted(counts)  # a reader only ever sees the count grow
    with History.open(state_dir) as history:
        assert history.check_count() == writes


def test_retention_deletes_old_rows_only(state_dir: Path) -> None:
    day = 86400.0
    with History.open(state_dir) as history:
        for age_days in (100, 91, 89, 1):
            _record(history, 200 * day - age_days * day, float(age_days))
        history.log_notification(
            200 * day - 95 * day, "SYS001", "/data", "firing", "json://127.0.0.1", True, 1
        )
        removed = history.prune(200 * day, retention_days=90)
        assert removed == 2 + 4 + 1  # two checks, their four samples, one notification
        assert [v for _, v in history.series("disk_used_bytes", "/data")] == [89.0, 1.0]
        assert history.notifications() == []
