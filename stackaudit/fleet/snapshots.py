"""Reading a fleet directory: `DIR/<host>/<UTC time>.json` snapshots, `last-error.json` and
`groups.json` per host (the layout `stackaudit fleet collect` writes).

Everything in DIR is input from many machines, so nothing here trusts it: a symlink that leads out
of DIR is not followed, a file larger than its cap is not read (memory stays bounded whatever a host
sends), and JSON that is malformed, nested too deeply or of another shape becomes a sentence for
the report, never an exception.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stackaudit.facts import not_a_regular_file
from stackaudit.units import format_bytes

SNAPSHOT_NAME = re.compile(r"^(\d{8}T\d{6}Z)\.json$")
TIME_FORMAT = "%Y%m%dT%H%M%SZ"
LAST_ERROR = "last-error.json"
GROUPS = "groups.json"
MAX_SNAPSHOT_BYTES = 32 * 1024**2  # a real snapshot is well under 1 MiB; this bounds a hostile one
MAX_SMALL_FILE_BYTES = 1024**2  # last-error.json, groups.json
NO_GROUP = "ungrouped"  # Ansible's name for hosts in no group


class BadFile(Exception):
    """A file of DIR that cannot be used; the message is the reason, in plain words."""


@dataclass(frozen=True)
class HostFolder:
    """What DIR holds for one host, before its snapshot is read."""

    name: str
    path: Path
    snapshot: Path | None  # the newest snapshot
    snapshot_time: datetime | None  # from its name
    groups: tuple[str, ...]
    last_error: dict[str, Any] | None  # {"failed_at": datetime, "stage", "reason"}
    problem: str | None = None  # why this host's folder cannot be used at all


def host_folders(directory: Path) -> Iterator[HostFolder]:
    """Every host folder of DIR, by name; names starting with a dot (.fleet-key) are not hosts."""
    root = directory.resolve()
    for entry in sorted(directory.iterdir(), key=lambda p: p.name):
        if entry.name.startswith("."):
            continue
        if entry.is_symlink() and not _inside(entry, root):
            yield HostFolder(entry.name, entry, None, None, (NO_GROUP,), None,
                             problem=f"{entry.name} is a symbolic link out of {directory}: not read")
        elif entry.is_dir():
            yield _folder(entry, root)


def _inside(path: Path, root: Path) -> bool:
    """Whether a link stays inside root (the resolved DIR). What is not a link is where its folder
    is, and every folder was checked on the way down (resolving each file cost a third of the
    reading)."""
    if not path.is_symlink():
        return True
    try:
        return path.resolve().is_relative_to(root)
    except (OSError, RuntimeError):  # a loop of links
        return False


def _folder(path: Path, root: Path) -> HostFolder:
    snapshots = sorted((p for p in path.iterdir() if SNAPSHOT_NAME.match(p.name)), key=lambda p: p.name)
    newest = snapshots[-1] if snapshots else None
    problems: list[str] = []
    groups = _groups(path / GROUPS, root, problems)
    last_error = _last_error(path / LAST_ERROR, root, problems)
    time = snapshot_time(newest.name) if newest is not None else None
    return HostFolder(path.name, path, newest, time, groups, last_error,
                      problem="; ".join(problems) or None)


def snapshot_time(name: str) -> datetime | None:
    match = SNAPSHOT_NAME.match(name)
    if match is None:
        return None
    try:
        return datetime.strptime(match.group(1), TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None


def read_json(path: Path, root: Path, cap: int) -> Any:
    """The file's JSON; BadFile with the reason when it is out of DIR, too large, or not JSON."""
    if not _inside(path, root):
        raise BadFile(f"{path.name} is a symbolic link out of the fleet directory: not read")
    odd = not_a_regular_file(path)  # a FIFO would block the report
    if odd is not None:
        raise BadFile(f"{path.name} is {odd}")
    try:
        with open(path, "rb") as handle:
            if os.fstat(handle.fileno()).st_size > cap:
                raise BadFile(f"{path.name} is {format_bytes(os.fstat(handle.fileno()).st_size)}, more "
                              f"than the {format_bytes(cap)} it may be: not read")
            raw = handle.read(cap + 1)  # a file that grows while read is cut here, not followed
    except OSError as exc:
        raise BadFile(f"{path.name} cannot be read: {exc.strerror or exc}") from None
    if len(raw) > cap:
        raise BadFile(f"{path.name} is more than the {format_bytes(cap)} it may be: not read")
    try:
        return json.loads(raw)
    except RecursionError:
        raise BadFile(f"{path.name} is nested too deeply to be a snapshot: not read") from None
    except UnicodeDecodeError:
        raise BadFile(f"{path.name} is not UTF-8 text: not read") from None
    except ValueError as exc:
        raise BadFile(f"{path.name} is not valid JSON ({exc}): not read") from None


def _groups(path: Path, root: Path, problems: list[str]) -> tuple[str, ...]:
    if not path.exists() and not path.is_symlink():
        return (NO_GROUP,)
    try:
        data = read_json(path, root, MAX_SMALL_FILE_BYTES)
    except BadFile as exc:
        problems.append(str(exc))
        return (NO_GROUP,)
    groups = data.get("groups") if isinstance(data, dict) else None
    if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
        problems.append(f"{GROUPS} has no list of group names: the host counts as {NO_GROUP}")
        return (NO_GROUP,)
    return tuple(sorted(set(groups))) or (NO_GROUP,)


def _last_error(path: Path, root: Path, problems: list[str]) -> dict[str, Any] | None:
    if not path.exists() and not path.is_symlink():
        return None
    try:
        data = read_json(path, root, MAX_SMALL_FILE_BYTES)
    except BadFile as exc:
        problems.append(str(exc))
        return None
    if not isinstance(data, dict):
        problems.append(f"{LAST_ERROR} is not a JSON object: not read")
        return None
    failed_at = parse_time(data.get("failed_at"))
    if failed_at is None:
        problems.append(f"{LAST_ERROR} has no ISO-8601 failed_at: not read")
        return None
    return {"failed_at": failed_at, "stage": str(data.get("stage") or "collect"),
            "reason": str(data.get("reason") or "no reason given")}


def parse_time(value: Any) -> datetime | None:
    """An ISO-8601 time (a naive one is UTC), else None."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
