"""PostgreSQL memory and time units: parse what people and servers write, write what PostgreSQL writes.

PostgreSQL's memory units are powers of 1024 written B, kB, MB, GB, TB; time units are us, ms, s,
min, h, d (docs: "Parameter Names and Values", section 20.1.1). `SHOW` prints a value in the
largest unit that keeps it a whole number ("4GB", "1536MB", "8kB"); `format_memory` does the same,
so a recommendation can be pasted into postgresql.conf, `-c` or ALTER SYSTEM as is. For the command
line we also accept the spellings people use for sizes elsewhere ("23GiB", "512m", "2G").
"""

from __future__ import annotations

import math
import re

KB = 1024
MB = 1024 * KB
GB = 1024 * MB
TB = 1024 * GB

# Lower-cased unit -> bytes. PostgreSQL itself only accepts B/kB/MB/GB/TB (case-sensitive); the
# binary (KiB) and short (k, m, g) forms are for our own options.
_MEMORY_UNITS: dict[str, int] = {
    "b": 1, "": 1,
    "k": KB, "kb": KB, "kib": KB,
    "m": MB, "mb": MB, "mib": MB,
    "g": GB, "gb": GB, "gib": GB,
    "t": TB, "tb": TB, "tib": TB,
}
_PG_MEMORY_UNITS = (("TB", TB), ("GB", GB), ("MB", MB), ("kB", KB))

_TIME_UNITS_MS: dict[str, float] = {
    "us": 0.001, "ms": 1.0, "s": 1000.0, "min": 60_000.0, "h": 3_600_000.0, "d": 86_400_000.0,
}
_PG_TIME_UNITS = (("d", 86_400_000), ("h", 3_600_000), ("min", 60_000), ("s", 1000), ("ms", 1))

_NUMBER_UNIT = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


class UnitError(ValueError):
    """A size or duration that cannot be read; the message says what was expected."""


def parse_memory(text: str | int | float, default_unit: str = "B") -> int:
    """"23GiB" / "512MB" / "8kB" / "2g" -> bytes. A bare number is in `default_unit`.

    PostgreSQL's own bare numbers are in the setting's unit (8kB pages for shared_buffers, kB for
    work_mem): pass that unit as `default_unit`.
    """
    if isinstance(text, (int, float)):
        return int(text * _memory_unit(default_unit))
    match = _NUMBER_UNIT.match(text)
    if not match:
        raise UnitError(f"{text!r} is not a size (examples: 512MB, 4GB, 23GiB)")
    number, unit = float(match.group(1)), match.group(2)
    factor = _memory_unit(unit) if unit else _memory_unit(default_unit)
    return int(number * factor)


def _memory_unit(unit: str) -> int:
    if unit.lower() == "8kb":
        return 8 * KB
    try:
        return _MEMORY_UNITS[unit.lower()]
    except KeyError:
        raise UnitError(f"unknown memory unit {unit!r} (use B, kB, MB, GB or TB)") from None


def format_memory(num_bytes: int | float) -> str:
    """Bytes as PostgreSQL writes them: the largest unit that keeps a whole number ("4GB", "1536MB").

    Values that are not a whole number of kB are rounded up to the next kB (PostgreSQL's smallest
    memory unit in settings).
    """
    value = math.ceil(num_bytes / KB) * KB if num_bytes % KB else int(num_bytes)
    if value == 0:
        return "0"
    for name, size in _PG_MEMORY_UNITS:
        if value % size == 0:
            return f"{value // size}{name}"
    return f"{value}B"


def round_memory(num_bytes: float, up: bool = False) -> int:
    """Round down (or up, for a floor that must hold) to a 'sane' step so the value reads well: whole
    GB from 8GB, 512MB steps from 2GB, 256MB from 1GB, 64MB from 256MB, 16MB from 64MB, whole MB from
    1MB, else whole kB."""
    steps = ((8 * GB, GB), (2 * GB, 512 * MB), (GB, 256 * MB), (256 * MB, 64 * MB), (64 * MB, 16 * MB),
             (MB, MB), (0, KB))
    for threshold, step in steps:
        if num_bytes >= threshold:
            count = math.ceil(num_bytes / step) if up else num_bytes // step
            return max(64 * KB, int(count * step))
    return 64 * KB


def parse_time_ms(text: str | int | float, default_unit: str = "ms") -> float:
    """"5min" / "30s" / "200ms" -> milliseconds. A bare number is in `default_unit`."""
    if isinstance(text, (int, float)):
        return float(text) * _time_unit(default_unit)
    match = _NUMBER_UNIT.match(text)
    if not match:
        raise UnitError(f"{text!r} is not a duration (examples: 200ms, 30s, 5min)")
    number, unit = float(match.group(1)), match.group(2)
    return number * _time_unit(unit or default_unit)


def _time_unit(unit: str) -> float:
    try:
        return _TIME_UNITS_MS[unit]
    except KeyError:
        raise UnitError(f"unknown time unit {unit!r} (use us, ms, s, min, h or d)") from None


def format_time_ms(milliseconds: float) -> str:
    """Milliseconds as PostgreSQL writes them: "5min", "30s", "1500ms"."""
    value = round(milliseconds)
    if value == 0:
        return "0"
    for name, size in _PG_TIME_UNITS:
        if value % size == 0:
            return f"{value // size}{name}"
    return f"{value}ms"

