"""Defensive reading of JSON-like facts: a snapshot may come from an older version or a hand-made
file, so any key may be missing or hold the wrong type. One reader for each shape, used everywhere."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def number(value: Any) -> float | None:
    """A number (or a numeric string) as a float; None for booleans, None and anything else."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(str(value))
    except ValueError:
        return None


def mapping(value: Any) -> dict[str, Any]:
    """The value when it is a dict, else an empty one."""
    return value if isinstance(value, dict) else {}


def rows(value: Any) -> list[dict[str, Any]]:
    """The dicts of a list (anything else is dropped), else an empty list."""
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def source(facts: Any, name: str) -> dict[str, Any]:
    """One source's data from Facts (or a plain mapping of sources), an empty dict when missing."""
    data = facts.get(name) if isinstance(facts, Mapping) or hasattr(facts, "get") else None
    return data if isinstance(data, dict) else {}
