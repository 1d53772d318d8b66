"""What the facts and the rules both ask of an index row (no client library: rules import it)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def never_scanned(index: Mapping[str, Any]) -> bool:
    """Not scanned since the statistics began, and nothing else needs it: it backs no constraint, is
    not unique, and is valid (a failed CREATE INDEX CONCURRENTLY is never scanned by design)."""
    return (index.get("idx_scan") == 0 and not index.get("is_unique") and not index.get("is_primary")
            and not index.get("constraint_type") and index.get("is_valid") is not False)
