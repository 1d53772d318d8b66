"""Writing files so that a kill at any instant leaves either the old file or the new one."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def atomic_write(path: Path, data: bytes, mode: int | None = None, keep_owner: bool = True) -> None:
    """Temp file in the same folder, fsync, rename, fsync the folder.

    An existing file keeps its mode and owner (a config rewritten as root and left root-owned stops
    the server that reads it), unless `mode` is given.
    """
    previous = path.stat() if path.exists() else None
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        elif previous is not None:
            os.chmod(tmp, previous.st_mode & 0o7777)
        if keep_owner and previous is not None and os.geteuid() == 0:
            os.chown(tmp, previous.st_uid, previous.st_gid)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
