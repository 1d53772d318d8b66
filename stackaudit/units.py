"""Byte sizes as people read them; parsing sizes people write ("512M", "23GiB", "1.5g")."""

from __future__ import annotations

import re

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b?)\s*$", re.IGNORECASE)
_POWERS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4, "p": 5}


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
