"""The frozen types every layer shares: what a finding is, how sure and how risky its fix is.

Everything here is plain data that serialises to JSON (see `to_jsonable`), so a report, a facts
snapshot and a plan can be written, read back and compared.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


class Severity(enum.IntEnum):
    """Ordered, so `--fail-on high` is a comparison."""

    INFO = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @classmethod
    def parse(cls, text: str) -> Severity:
        try:
            return cls[text.strip().upper()]
        except KeyError:
            names = ", ".join(s.name.lower() for s in cls)
            raise ValueError(f"unknown severity {text!r} (one of {names})") from None

    def label(self) -> str:
        return self.name.lower()


class Risk(enum.StrEnum):
    """What `apply` may do alone (ruff's Applicability, in our words)."""

    SAFE = "safe"  # reversible, no restart
    CONFIRM = "confirm"  # restart or behaviour change: only with a flag or a prompt
    MANUAL = "manual"  # display only: data migrations, buying disk, reviewing volumes


class Phase(enum.StrEnum):
    """When to do it, as in the reference report's phased plan."""

    NOW = "now"
    WEEK = "week"
    MONTH = "month"
    QUARTER = "quarter"


@dataclass(frozen=True)
class Evidence:
    """One observed value, where it came from and what it was compared with.

    Units live in the key (`memory_total_bytes`, `age_seconds`).
    """

    source: str
    key: str
    observed: Any
    expected: Any = None


@dataclass(frozen=True)
class Recommendation:
    summary: str
    estimated_effect: str
    risk: Risk
    effort_minutes: int
    phase: Phase
    action: str | None = None  # a command or config snippet a person can apply


@dataclass(frozen=True)
class Finding:
    code: str
    name: str
    severity: Severity
    subject: str  # what it is about: a mount, a table, a service
    message: str  # a specific sentence with the numbers in it
    evidence: tuple[Evidence, ...]
    recommendation: Recommendation

    @property
    def sort_key(self) -> tuple[int, str, str]:
        return (-int(self.severity), self.code, self.subject)


@dataclass(frozen=True)
class Skipped:
    """A rule that could not run, and why (never an exception)."""

    code: str
    reason: str


@dataclass(frozen=True)
class CollectionError:
    """A source, or part of one, that could not be read: what, where and why."""

    source: str
    where: str
    why: str
    invalid: bool = False  # bad input (a file Compose would refuse): shown as ✗, fails the run (exit 2)


@dataclass(frozen=True)
class Hit:
    """What a rule yields; the registry stamps the rule's code and name on it to make a Finding.

    `severity` overrides the rule's default (e.g. SYS001 is HIGH at 75% and CRITICAL at 85%).
    """

    subject: str
    message: str
    recommendation: Recommendation
    evidence: Sequence[Evidence] = field(default_factory=tuple)
    severity: Severity | None = None


def to_jsonable(value: Any) -> Any:
    """Dataclasses, enums, tuples and mappings as plain JSON values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Severity):
        return value.label()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in value]
    return value


def finding_from_json(data: Mapping[str, Any]) -> Finding:
    rec = data["recommendation"]
    return Finding(
        code=data["code"],
        name=data["name"],
        severity=Severity.parse(data["severity"]),
        subject=data["subject"],
        message=data["message"],
        evidence=tuple(Evidence(**e) for e in data["evidence"]),
        recommendation=Recommendation(
            summary=rec["summary"],
            estimated_effect=rec["estimated_effect"],
            risk=Risk(rec["risk"]),
            effort_minutes=rec["effort_minutes"],
            phase=Phase(rec["phase"]),
            action=rec.get("action"),
        ),
    )
