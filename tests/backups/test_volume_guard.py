"""The question `clean --volume` asks before removing a database volume: is everything backed up?"""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from stackaudit.backups import recent_verified_backup
from stackaudit.backups.dump import Connection, backup_database
from stackaudit.config import Settings
from tests.backups.seed import database_of

pytestmark = pytest.mark.integration

VOLUME = {"name": "shop_db-data", "looks_like_database": True}


def test_a_fresh_verified_backup_of_every_database_lets_the_volume_go(pg_dsn: str, tmp_path: Path) -> None:
    settings = Settings(backup_dest=tmp_path, state_dir=tmp_path / "state")
    assert recent_verified_backup(settings, VOLUME) is None  # nothing backed up yet
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS guard (id int)")
    manifest = backup_database(Connection.from_dsn(pg_dsn), database_of(pg_dsn), tmp_path)
    description = recent_verified_backup(settings, VOLUME)
    assert description is not None and manifest.id in description


def test_a_damaged_backup_does_not_count(pg_dsn: str, tmp_path: Path) -> None:
    settings = Settings(backup_dest=tmp_path, state_dir=tmp_path / "state")
    manifest = backup_database(Connection.from_dsn(pg_dsn), database_of(pg_dsn), tmp_path)
    dump = tmp_path / f"{manifest.id}.dump"
    data = bytearray(dump.read_bytes())
    data[len(data) // 2] ^= 0xFF
    dump.write_bytes(bytes(data))
    assert recent_verified_backup(settings, VOLUME) is None


def test_an_old_backup_does_not_count(pg_dsn: str, tmp_path: Path) -> None:
    settings = Settings(backup_dest=tmp_path, state_dir=tmp_path / "state")
    backup_database(Connection.from_dsn(pg_dsn), database_of(pg_dsn), tmp_path)
    assert recent_verified_backup(settings, VOLUME, max_age_hours=0) is None
