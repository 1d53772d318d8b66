"""Offsite copies against a REAL S3-compatible server (`rclone serve s3` on 127.0.0.1), an rclone
remote and a folder; the copy is read back and verified; credentials never show."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from stackaudit.backups.manifest import Manifest, iso, read_manifest, write_manifest
from stackaudit.backups.offsite import (
    FolderRemote,
    OffsiteError,
    RcloneRemote,
    S3Remote,
    parse_remote,
    rclone_binary,
    send_backup,
    verify_copy,
)
from stackaudit.cli import app
from stackaudit.localpg import LocalCluster, free_port
from stackaudit.redact import scrub
from tests.backups.seed import flip_byte

ACCESS_KEY = "AKIASTACKAUDITTEST01"
SECRET_KEY = "s3cr3t-Key-For-The-Test-Server-0123"
BUCKET = "backups"


@dataclass
class S3Server:
    endpoint: str
    root: Path  # the served folder: <root>/<bucket>/<key>


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    root = tmp_path_factory.mktemp("s3")
    (root / BUCKET).mkdir()
    port = free_port()
    env = {**os.environ, "RCLONE_CONFIG": "/dev/null"}
    process = subprocess.Popen([rclone_binary(), "serve", "s3", "--addr", f"127.0.0.1:{port}",
                                "--auth-key", f"{ACCESS_KEY},{SECRET_KEY}", str(root)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError("rclone serve s3 did not start") from None
            time.sleep(0.1)
    yield S3Server(f"http://127.0.0.1:{port}", root)
    process.terminate()
    process.wait(10)


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)


def fake_backup(dest: Path, size: int = 3 * 1024 * 1024 + 17) -> Manifest:
    """A verified backup's files; offsite copying does not care what is inside."""
    data = os.urandom(size)  # over boto3's 8 MiB multipart threshold is not needed to prove reading back
    ident = "shop-20260101T020000Z"
    (dest / f"{ident}.dump").write_bytes(data)
    manifest = Manifest(id=ident, database="shop", status="ok", verified=True, started_at=iso(
        __import__("datetime").datetime(2026, 1, 1, 2, tzinfo=__import__("datetime").UTC)),
        file=f"{ident}.dump", bytes=size, sha256=hashlib.sha256(data).hexdigest())
    write_manifest(dest, manifest)
    return manifest


@pytest.mark.integration
def test_s3_copy_is_verified_and_recorded(s3_server: S3Server, aws_env: None, tmp_path: Path) -> None:
    manifest = fake_backup(tmp_path)
    remote = parse_remote(f"s3://{BUCKET}/nightly/host1", endpoint=s3_server.endpoint)
    assert isinstance(remote, S3Remote)

    result = send_backup(tmp_path, manifest, remote)

    assert result["verified"] is True, result
    assert result["size_ok"] and result["sha256_ok"] and result["sidecar_ok"]
    stored = s3_server.root / BUCKET / "nightly" / "host1"
    assert (stored / manifest.file).read_bytes() == (tmp_path / manifest.file).read_bytes()  # type: ignore[operator]
    assert (stored / f"{manifest.file}.sha256").read_text().split()[0] == manifest.sha256
    assert json.loads((stored / f"{manifest.id}.json").read_text())["sha256"] == manifest.sha256
    assert read_manifest(tmp_path / f"{manifest.id}.json").offsite[0]["verified"] is True
    assert SECRET_KEY not in json.dumps(result)


@pytest.mark.integration
def test_s3_damaged_remote_copy_is_detected(s3_server: S3Server, aws_env: None, tmp_path: Path) -> None:
    manifest = fake_backup(tmp_path)
    remote = parse_remote(f"s3://{BUCKET}/damaged", endpoint=s3_server.endpoint)
    assert send_backup(tmp_path, manifest, remote)["verified"] is True
    assert manifest.file and manifest.bytes and manifest.sha256

    flip_byte(s3_server.root / BUCKET / "damaged" / manifest.file, 1000)
    checks = verify_copy(remote, manifest.file, manifest.bytes, manifest.sha256)

    assert checks["size_ok"] is True and checks["sha256_ok"] is False and checks["verified"] is False


@pytest.mark.integration
def test_s3_wrong_credentials_reported_without_secret(s3_server: S3Server, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # rclone serve s3 checks the access key id (the secret is not what this test is about)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAWRONGWRONGWRONG1")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "Wrong-Secret-Value-987")
    manifest = fake_backup(tmp_path, size=1000)
    result = send_backup(tmp_path, manifest, parse_remote(f"s3://{BUCKET}/x", endpoint=s3_server.endpoint))
    assert result["verified"] is False and result["error"]
    assert "Wrong-Secret-Value-987" not in json.dumps(result)
    assert "Wrong-Secret-Value-987" not in scrub("key Wrong-Secret-Value-987")  # remembered for scrubbing


@pytest.mark.integration
def test_rclone_remote_copy_verified(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    manifest = fake_backup(tmp_path / "src", size=200_000)
    target = tmp_path / "offsite"
    remote = parse_remote(f"rclone::local:{target}")
    assert isinstance(remote, RcloneRemote)

    result = send_backup(tmp_path / "src", manifest, remote)

    assert result["verified"] is True, result
    assert (target / f"{manifest.file}.sha256").read_text().startswith(manifest.sha256 or "?")


def test_folder_remote_copy_verified(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    manifest = fake_backup(tmp_path / "src", size=50_000)
    remote = parse_remote(str(tmp_path / "nas"))
    assert isinstance(remote, FolderRemote)
    assert send_backup(tmp_path / "src", manifest, remote)["verified"] is True
    assert not list((tmp_path / "nas").glob(".*partial"))


def test_remote_urls_parse_and_hide_passwords() -> None:
    sftp = parse_remote("sftp://backup@nas.example:2222/srv/pg")
    assert isinstance(sftp, RcloneRemote)
    assert sftp.target == ":sftp,host=nas.example,user=backup,port=2222:/srv/pg"
    with pytest.raises(OffsiteError) as refused:
        parse_remote("sftp://backup:Hunter2-Password@nas.example/srv")
    assert "Hunter2-Password" not in str(refused.value)
    s3 = parse_remote("s3://AKIAX:Very-Secret-In-Url@bucket/prefix", endpoint="http://127.0.0.1:1")
    assert "Very-Secret-In-Url" not in s3.display and "bucket" in s3.display
    with pytest.raises(OffsiteError):
        parse_remote("ftp://host/path")
    with pytest.raises(OffsiteError):
        parse_remote("rclone:no-colon")


@pytest.mark.integration
def test_cli_backup_offsite_s3(pg15: LocalCluster, s3_server: S3Server, aws_env: None,
                               tmp_path: Path) -> None:
    result = CliRunner().invoke(app, [
        "backup", "--pg", pg15.dsn(), "--dest", str(tmp_path), "--databases", "postgres",
        "--offsite", f"s3://{BUCKET}/cli", "--s3-endpoint", s3_server.endpoint, "--format", "json"])
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.stdout)["backups"]
    assert row["verified"] is True and row["offsite"][0]["verified"] is True
    assert (s3_server.root / BUCKET / "cli" / Path(row["path"]).name).stat().st_size == row["bytes"]
    assert SECRET_KEY not in result.output
