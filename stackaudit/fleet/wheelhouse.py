"""The wheelhouse the install role ships to every host: the controller's own stackaudit with the
exact versions of its dependencies, as one tar of wheels, built once per build and cached.

A build is the installed version; an editable (development) install adds a short hash of its source
files, so a changed checkout is a new build that the hosts install again. The controller needs its
package index (or pip's cache) once per build; the hosts never do.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from stackaudit import __version__
from stackaudit.fleet.inventory import FleetError
from stackaudit.fsutil import fsync_dir
from stackaudit.redact import scrub

PIP_TIMEOUT_S = 1800
DISTRIBUTION = "stackaudit"


@dataclass(frozen=True)
class Wheelhouse:
    build: str  # the version, plus "+<hash>" for an editable install
    tar: Path  # the wheels, at the tar's top level


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "stackaudit" / "wheelhouse"


def wheelhouse(cache: Path | None = None) -> Wheelhouse:
    """The cached wheelhouse of this build, built now when it is missing."""
    cache = cache or cache_dir()
    source, editable = install_source()
    build = __version__ + (f"+{source_hash(source)}" if editable and source is not None else "")
    tar = cache / f"{build}.tar"
    if tar.exists():
        return Wheelhouse(build, tar)
    cache.mkdir(parents=True, exist_ok=True, mode=0o700)
    with _locked(cache / ".lock"):  # two collects at once build it once
        if not tar.exists():
            _build(tar, source)
            _prune(cache, keep=tar)
    return Wheelhouse(build, tar)


def install_source() -> tuple[Path | None, bool]:
    """Where this stackaudit was installed from (PEP 610 direct_url.json): a source folder (editable
    or not) or a wheel file; None when it came from an index, and whether it is editable."""
    # A source checkout on sys.path shows its egg-info first: the installed one has direct_url.json.
    found = (d.read_text("direct_url.json") for d in metadata.distributions(name=DISTRIBUTION))
    raw = next((text for text in found if text), None)
    if not raw:
        return None, False
    try:
        direct = json.loads(raw)
    except json.JSONDecodeError:
        return None, False
    url = str(direct.get("url") or "")
    if not url.startswith("file://"):
        return None, False
    return Path(url.removeprefix("file://")), bool((direct.get("dir_info") or {}).get("editable"))


def source_hash(root: Path) -> str:
    """A short hash of the source files' names, sizes and modification times."""
    digest = hashlib.sha256()
    for path in sorted(_source_files(root)):
        info = path.stat()
        digest.update(f"{path.relative_to(root)}\0{info.st_size}\0{info.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:12]


def _source_files(root: Path) -> Iterator[Path]:
    yield from (p for p in (root / "pyproject.toml", root / "setup.py") if p.exists())
    for path in (root / DISTRIBUTION).rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts:
            yield path


def constraints() -> str:
    """The controller's installed versions, so the hosts get exactly its dependencies."""
    pins = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name and name.lower() != DISTRIBUTION:
            pins[name.lower()] = f"{name}=={dist.version}"
    return "".join(f"{pin}\n" for _, pin in sorted(pins.items()))


def _build(tar: Path, source: Path | None) -> None:
    """stackaudit's own wheel, then its dependencies' wheels: offline from an earlier build of the
    same version when they are all there (a development edit rebuilds in seconds), else from the
    index (pip's cache helps)."""
    with tempfile.TemporaryDirectory(prefix=".wheels-", dir=tar.parent) as work:
        wheels, seed = Path(work) / "wheels", Path(work) / "seed"
        pins = Path(work) / "constraints.txt"
        pins.write_text(constraints())
        own_source = str(source) if source is not None else f"{DISTRIBUTION}=={__version__}"
        _pip_wheel(wheels, "--no-deps", own_source)
        own = str(next(wheels.glob(f"{DISTRIBUTION}-*.whl")))
        deps = [own, "--constraint", str(pins)]
        if _seed_from_earlier(tar, seed):
            try:
                _pip_wheel(wheels, "--no-index", "--find-links", str(seed), *deps)
            except FleetError:
                _pip_wheel(wheels, "--find-links", str(seed), *deps)
        else:
            _pip_wheel(wheels, *deps)
        partial = Path(work) / "wheelhouse.tar"
        with tarfile.open(partial, "w") as archive:
            for wheel in sorted(wheels.glob("*.whl")):
                archive.add(wheel, arcname=wheel.name)
        partial.chmod(0o600)
        os.replace(partial, tar)
        fsync_dir(tar.parent)


def _pip_wheel(wheels: Path, *args: str) -> None:
    command = [sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check",
               "--wheel-dir", str(wheels), *args]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=PIP_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise FleetError(f"could not build the wheelhouse: {error}") from None
    if done.returncode != 0:
        lines = done.stderr.splitlines()
        errors = [line for line in lines if line.startswith("ERROR")] or lines
        tail = " / ".join(errors[-3:]) or "no output"
        raise FleetError(f"pip could not build the wheelhouse of stackaudit {__version__}: {scrub(tail)}")


def _seed_from_earlier(tar: Path, seed: Path) -> bool:
    """The dependency wheels of the newest other build of this version, unpacked into `seed`."""
    earlier = sorted((p for p in tar.parent.glob(f"{__version__}*.tar") if p != tar),
                     key=lambda p: p.stat().st_mtime)
    if not earlier:
        return False
    seed.mkdir()
    with tarfile.open(earlier[-1]) as archive:
        members = [m for m in archive.getmembers()
                   if m.isfile() and m.name.endswith(".whl") and "/" not in m.name
                   and not m.name.startswith(f"{DISTRIBUTION}-")]
        archive.extractall(seed, members=members, filter="data")
    return bool(members)


def _prune(cache: Path, keep: Path) -> None:
    """Older development builds of any version go: each editable change makes a new one."""
    for old in cache.glob("*+*.tar"):
        if old != keep:
            old.unlink(missing_ok=True)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
