"""The short table of contents of the tool: collect facts, derive once, evaluate rules, make a report."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from stackaudit import pacing
from stackaudit.config import Settings
from stackaudit.derive import DerivationError, derive
from stackaudit.facts import Facts, Progress, collect
from stackaudit.report import Report
from stackaudit.rules import evaluate


def audit(settings: Settings, facts: Facts | None = None, progress: Progress | None = None) -> Report:
    """Audit the live system, or a saved facts snapshot (`stackaudit audit --facts`)."""
    if facts is None:
        facts = collect(settings, progress)
    derived = derive(facts)
    findings, skipped = evaluate(facts, settings, derived)
    pacing.checkpoint()  # deriving and the rules are the audit's own CPU too
    return Report(facts=facts, findings=findings, skipped=skipped, derived=derived)


def nothing_collected(report: Report) -> bool:
    """Exit code 2 territory: not a single source could be read."""
    return not report.facts.data


def snapshot(facts: Facts) -> dict[str, Any]:
    """What `stackaudit collect --out` writes: the redacted facts. The app's connection numbers are
    derived (derive/app.py) but were once collected, and scripts read them from snapshots: they are
    written where they were (`app.summary.db_connections_*`, `app.live_connections`); `audit
    --facts` derives them again rather than trusting them."""
    if not facts.has("app"):
        return facts.to_json()
    derived = derive(facts)
    app = dict(facts.get("app"))
    try:
        app["summary"] = {**(app.get("summary") or {}), **derived.connection_summary}
        if facts.has("postgres"):
            app["live_connections"] = list(derived.live_connections)
    except DerivationError:
        pass  # a snapshot without them; the audit of it says why the budget could not be derived
    return replace(facts, data={**facts.data, "app": app}).to_json()
