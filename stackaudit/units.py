"""Byte sizes as people read them ("1.5 GiB", the one formatter for a size in a sentence); parsing
sizes and durations people (and Docker) write ("512M", "23GiB", "1.5g"; "30m", "1m30s", "7d").
A value to paste into a config file is written in that server's syntax instead: PostgreSQL's by
`stackaudit.tuning.units.format_memory` ("4GB"), MariaDB's by `tuning.mysql.mysql_size`."""

from __future__ import annotations

import re

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b?)\s*$", re.IGNORECASE)
_POWERS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4, "p": 5}
# Go's time.ParseDuration units (compose healthchecks), plus days and weeks for our own options.
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h|d|w)", re.IGNORECASE)
_DURATION_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0,
                     "d": 86400.0, "w": 604800.0}


def format_bytes(value: float | int | None) -> str:
    """1536 -> '1.5 KiB'; binary units, one decimal above KiB."""
    if value is None:
        return "unknown"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def parse_size(text: str | int) -> int:
    """Docker/compose sizes: '512m', '1g', '23GiB', '1.5GB' -> bytes (binary, as Docker reads them)."""
    if isinstance(text, int):
        return text
    match = _SIZE.match(str(text))
    if not match:
        raise ValueError(f"not a size: {text!r}")
    number, prefix, _ = match.groups()
    return int(float(number) * 1024 ** _POWERS[prefix.lower()])


def parse_duration(text: str | int | float) -> float:
    """'30m', '1.5h', '1m30s', '500ms', '7d', or a bare number of seconds -> seconds."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text)
    value = str(text).strip()
    try:
        return float(value)
    except ValueError:
        pass
    parts = _DURATION_PART.findall(value)
    if not parts or "".join(n + u for n, u in parts).lower() != value.lower().replace(" ", ""):
        raise ValueError(f"not a duration: {text!r} (e.g. 30s, 30m, 6h, 7d)")
    return round(sum(float(n) * _DURATION_SECONDS[u.lower()] for n, u in parts), 6)
