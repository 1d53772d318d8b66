"""The short table of contents of the tool: collect facts, derive once, evaluate rules, make a report."""

from __future__ import annotations

from stackaudit.config import Settings
from stackaudit.derive import derive
from stackaudit.facts import Facts, Progress, collect
from stackaudit.report import Report
from stackaudit.rules import evaluate


def audit(settings: Settings, facts: Facts | None = None, progress: Progress | None = None) -> Report:
    """Audit the live system, or a saved facts snapshot (`stackaudit audit --facts`)."""
    if facts is None:
        facts = collect(settings, progress)
    derived = derive(facts)
    findings, skipped = evaluate(facts, settings, derived)
    return Report(facts=facts, findings=findings, skipped=skipped, derived=derived)


def nothing_collected(report: Report) -> bool:
    """Exit code 2 territory: not a single source could be read."""
    return not report.facts.data
