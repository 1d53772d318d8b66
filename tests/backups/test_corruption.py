"""A damaged dump is caught twice: by the checksum and by the real restore of the drill.

`pg_restore --list` alone is not enough: it accepts a dump cut in half, and an uncompressed dump
with a changed byte restores (wrong data) without an error.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

from stackaudit.backups import find_verified_backup
from stackaudit.backups.drill import run_drill
from stackaudit.backups.dump import Client, Connection, backup_database, find_client_dir, verify_archive
from stackaudit.backups.manifest import Manifest
from stackaudit.config import Settings
from tests.backups.seed import database_of, flip_byte, seed

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def seeded(pg_dsn: str) -> str:
    seed(pg_dsn)
    return pg_dsn


def _backup(dsn: str, dest: Path, *options: str) -> Manifest:
    manifest = backup_database(Connection.from_dsn(dsn), database_of(dsn), dest, dump_options=options)
    assert manifest.good, manifest.error
    return manifest


def test_flipped_byte_caught_by_checksum_and_by_drill(seeded: str, tmp_path: Path) -> None:
    manifest = _backup(seeded, tmp_path)
    dump = tmp_path / f"{manifest.id}.dump"
    flip_byte(dump, dump.stat().st_size // 2)  # inside the compressed data of the big table

    assert find_verified_backup(Settings(backup_dest=tmp_path), manifest.database) is None
    record = run_drill(Connection.from_dsn(seeded), tmp_path, manifest)

    assert record.ok is False
    assert record.checksum_ok is False
    assert record.restore_ok is False or record.mismatches  # the restore itself noticed
    assert record.scratch_dropped is True


def test_truncated_dump_passes_list_but_not_checksum_or_drill(seeded: str, tmp_path: Path) -> None:
    manifest = _backup(seeded, tmp_path)
    dump = tmp_path / f"{manifest.id}.dump"
    with dump.open("r+b") as handle:
        handle.truncate(dump.stat().st_size // 2)
    assert manifest.server_major is not None
    bin_dir = find_client_dir(manifest.server_major)
    assert bin_dir is not None
    listing = subprocess.run([str(bin_dir / "pg_restore"), "--list", str(dump)], capture_output=True)
    assert listing.returncode == 0  # why --list alone proves nothing

    checks = verify_archive(Client(Connection.from_dsn(seeded), bin_dir=bin_dir), dump, manifest)
    assert checks["pg_restore_list_ok"] is True and checks["sha256_reread_ok"] is False
    record = run_drill(Connection.from_dsn(seeded), tmp_path, manifest)
    assert record.ok is False and record.checksum_ok is False and record.restore_ok is False


def test_uncompressed_dump_with_changed_byte_restores_wrong_data_but_checksum_fails(
        seeded: str, tmp_path: Path) -> None:
    manifest = _backup(seeded, tmp_path, "--compress=0")
    dump = tmp_path / f"{manifest.id}.dump"
    data = bytearray(dump.read_bytes())
    offset = data.index(hashlib.md5(b"4242").hexdigest().encode())  # a note in sales.orders
    data[offset] = ord("0") if data[offset] != ord("0") else ord("1")
    dump.write_bytes(bytes(data))

    record = run_drill(Connection.from_dsn(seeded), tmp_path, manifest)

    assert record.restore_ok is True and record.mismatches == []  # the restore cannot tell
    assert record.checksum_ok is False and record.ok is False  # the checksum can


def test_flip_byte_helper_changes_exactly_one_byte(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"abcd")
    flip_byte(path, 2)
    assert path.read_bytes() == b"ab" + bytes([ord("c") ^ 0xFF]) + b"d"
