"""The audit's result and what every renderer shares. Renderers only format: every verdict,
threshold and sentence comes from a Finding."""

from __future__ import annotations

from collections import Counter
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from stackaudit import __version__
from stackaudit.derive import DerivationError, Derived, derive
from stackaudit.facts import Facts
from stackaudit.model import CollectionError, Finding, Phase, Risk, Severity, Skipped, to_jsonable

REPORT_SCHEMA_VERSION = 1

# Report sections in the reference report's order, and the rule prefixes each one shows.
AREAS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("host", "Infrastructure", ("SYS",)),
    ("postgres", "Database: PostgreSQL", ("PG",)),
    ("mysql", "Database: MariaDB/MySQL", ("MY",)),
    ("app", "Application servers", ("APP",)),
    ("docker", "Docker & storage", ("DKR",)),
    ("redis", "Redis", ("RDS",)),
    ("security", "Security", ("SEC", "ENV", "CMP")),
    ("monitoring", "Monitoring & observability", ("MON",)),
    ("backups", "Backups", ("BAK",)),
)
# Which fact sources a section summarises.
AREA_SOURCES = {"host": ("host",), "postgres": ("postgres",), "app": ("app",), "docker": ("docker",),
                "redis": ("redis",), "security": ("compose", "env", "tls"), "monitoring": ("monitoring",),
                "backups": ("backups",), "mysql": ("mysql",)}

# Shared by the Markdown and HTML reports and the dashboard.
PHASE_TITLES = {Phase.NOW: "Now (today)", Phase.WEEK: "This week", Phase.MONTH: "This month",
                Phase.QUARTER: "This quarter"}
RISK_TITLES = {Risk.SAFE: "Low risk: reversible, no restart",
               Risk.CONFIRM: "Medium risk: needs a restart or changes behaviour (apply with confirmation)",
               Risk.MANUAL: "Decisions for a person (display only)"}
# The schedule stackaudit itself runs (`stackaudit schedule install`), not advice about this host.
MAINTENANCE = (
    ("Every 30 minutes", "`stackaudit check`: disk, memory, connections, Redis memory, backup age"),
    ("Daily", "`stackaudit backup` with offsite copy"),
    ("Weekly", "`stackaudit audit`; review new findings"),
    ("Monthly", "`stackaudit restore-drill`; vacuum and bloat review (PG201)"),
    ("Quarterly", "index review (PG301-PG303); `stackaudit tune postgres` after growth"),
)
URGENT = Severity.HIGH  # findings at or above it are the executive summary's "most urgent"


def format_value(value: Any) -> str:
    """A fact or evidence value as text: lists and dicts flattened, None as empty."""
    if value is None:
        return ""
    if isinstance(value, dict):
        return ", ".join(f"{k}: {format_value(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(format_value(v) for v in value)
    return str(value)


@dataclass(frozen=True)
class Report:
    facts: Facts
    findings: list[Finding]
    skipped: list[Skipped]
    derived: Derived | None = None  # what the audit derived from the facts (see `derivations`)
    generated_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    tool_version: str = __version__

    @property
    def derivations(self) -> Derived:
        """The audit's Derived; derived here for a report built from findings alone (tests, check)."""
        return self.derived if self.derived is not None else derive(self.facts)

    @property
    def collection_errors(self) -> list[CollectionError]:
        return self.facts.errors

    def counts(self) -> dict[str, int]:
        counted = Counter(f.severity for f in self.findings)
        return {s.label(): counted.get(s, 0) for s in sorted(Severity, reverse=True)}

    def worst(self) -> Severity | None:
        return max((f.severity for f in self.findings), default=None)

    def area_findings(self, prefixes: tuple[str, ...]) -> list[Finding]:
        return [f for f in self.findings if f.code.startswith(prefixes)]

    def urgent(self) -> list[Finding]:
        return [f for f in self.findings if f.severity >= URGENT]

    def by_phase(self) -> dict[Phase, list[Finding]]:
        phases: dict[Phase, list[Finding]] = {p: [] for p in Phase}
        for finding in self.findings:
            phases[finding.recommendation.phase].append(finding)
        return phases

    def source_summary(self, source: str) -> dict[str, Any]:
        """One source's `summary`: the measured numbers a reader sees first. The app's also says what
        its processes add up to against PostgreSQL (`db_connections_at_most` of `_available`)."""
        summary = dict(self.facts.get(source).get("summary") or {})
        if source == "app" and summary:
            with suppress(DerivationError):  # the rules that need the budget say why they were skipped
                summary.update(self.derivations.connection_summary)
        return summary

    def facts_summary(self) -> dict[str, Any]:
        """Per source, its `summary` (or nothing)."""
        return {source: self.source_summary(source) for source in self.facts.data}

    def exit_code(self, fail_on: Severity) -> int:
        worst = self.worst()
        return 1 if worst is not None and worst >= fail_on else 0

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": REPORT_SCHEMA_VERSION,
            "generated_at": self.generated_at,
            "tool_version": self.tool_version,
            "counts": self.counts(),
            "facts": self.facts_summary(),
            "findings": to_jsonable(self.findings),
            "skipped": to_jsonable(self.skipped),
            "collection_errors": to_jsonable(self.collection_errors),
        }
