"""The Markdown report, in the reference report's structure, with every number measured here."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from stackaudit.model import Finding, Risk, Severity
from stackaudit.report import (
    AREA_SOURCES,
    AREAS,
    MAINTENANCE,
    PHASE_TITLES,
    RISK_TITLES,
    Report,
    format_value,
)


def render(report: Report) -> str:
    parts = [_title(report), _executive_summary(report)]
    parts += [_area(report, key, title, prefixes) for key, title, prefixes in AREAS]
    parts += [_critical(report), _plan(report), _risks(report), _expected(report),
              _maintenance(), _not_checked(report)]
    return "\n".join(p for p in parts if p).rstrip() + "\n"


def _title(report: Report) -> str:
    host = report.facts.get("host")
    name = host.get("hostname", "this host")
    return (f"# Production audit: {name}\n\n**Generated**: {report.generated_at} by stackaudit "
            f"{report.tool_version}  \n**Facts collected**: {report.facts.collected_at}\n")


def _executive_summary(report: Report) -> str:
    counts = report.counts()
    lines = ["## Executive summary", ""]
    lines.append(" · ".join(f"**{n}** {label}" for label, n in counts.items()))
    lines.append("")
    top = [f for f in report.findings if f.severity >= Severity.HIGH]
    if top:
        lines.append("Most urgent:")
        lines.extend(f"- **{f.severity.label().upper()}** {f.code} {f.message}" for f in top[:8])
    elif report.findings:
        lines.append("Nothing high or critical; the findings below are improvements.")
    else:
        lines.append("No findings in what could be checked.")
    if report.collection_errors:
        lines.append(f"\n{len(report.collection_errors)} source(s) or part(s) could not be read; "
                     "see *What could not be checked* at the end.")
    return "\n".join(lines) + "\n"


def _area(report: Report, key: str, title: str, prefixes: tuple[str, ...]) -> str:
    findings = report.area_findings(prefixes)
    facts: dict[str, dict[str, Any]] = {}
    for source in AREA_SOURCES[key]:
        summary = report.facts.get(source).get("summary")
        if summary:
            facts[source] = summary
    if not findings and not facts:
        return ""
    lines = [f"## {title}", ""]
    for source, summary in facts.items():
        lines += [f"### Measured ({source})", "", "| fact | value |", "|---|---|"]
        lines += [f"| {table_cell(k)} | {table_cell(_value(v))} |" for k, v in summary.items()]
        lines.append("")
    if findings:
        lines += ["### Findings", ""]
        lines += [_finding(f) for f in findings]
    else:
        lines.append("No findings.\n")
    return "\n".join(lines)


def _finding(finding: Finding) -> str:
    rec = finding.recommendation
    lines = [f"#### {finding.severity.label().upper()} {finding.code} {finding.name}: {finding.subject}", "",
             finding.message, ""]
    if finding.evidence:
        lines += ["| evidence | observed | expected | source |", "|---|---|---|---|"]
        lines += [f"| {table_cell(e.key)} | {table_cell(_value(e.observed))} | "
                  f"{table_cell(_value(e.expected))} | {e.source} |" for e in finding.evidence]
        lines.append("")
    lines.append(f"- **Recommendation**: {rec.summary}")
    if rec.action:
        lines += ["", "```", rec.action.rstrip(), "```", ""]
    lines += [f"- **Estimated effect**: {rec.estimated_effect}",
              f"- **Risk**: {rec.risk.value} · **Effort**: {rec.effort_minutes} min · "
              f"**Phase**: {rec.phase.value}",
              f"- Explain: `stackaudit explain {finding.code}`", ""]
    return "\n".join(lines)


def _critical(report: Report) -> str:
    urgent = [f for f in report.findings if f.severity >= Severity.HIGH]
    if not urgent:
        return ""
    lines = ["## Critical issues (do these first)", ""]
    for n, f in enumerate(urgent, 1):
        lines.append(f"{n}. **{f.code} {f.subject}** ({f.severity.label()}): {f.message} "
                     f"Fix: {f.recommendation.summary} ({f.recommendation.effort_minutes} min)")
    return "\n".join(lines) + "\n"


def _plan(report: Report) -> str:
    lines = ["## Optimization plan by phase", ""]
    for phase, findings in report.by_phase().items():
        if not findings:
            continue
        minutes = sum(f.recommendation.effort_minutes for f in findings)
        lines += [f"### {PHASE_TITLES[phase]} (about {minutes} min)", ""]
        lines += _checklist(findings)
        lines.append("")
    return "\n".join(lines) if len(lines) > 2 else ""


def _checklist(findings: Iterable[Finding]) -> list[str]:
    return [f"- [ ] {f.code} {f.subject}: {f.recommendation.summary}" for f in findings]


def _risks(report: Report) -> str:
    lines = ["## Risk assessment", ""]
    for risk in Risk:
        findings = [f for f in report.findings if f.recommendation.risk == risk]
        if findings:
            lines += [f"### {RISK_TITLES[risk]}", "", *_checklist(findings), ""]
    return "\n".join(lines) if len(lines) > 2 else ""


def _expected(report: Report) -> str:
    if not report.findings:
        return ""
    lines = ["## Expected results", "",
             "Estimates, not measurements: `stackaudit verify --save` before a change and "
             "`stackaudit verify --against` after it measure the real effect.", ""]
    lines += [f"- {f.code} {f.subject}: {f.recommendation.estimated_effect}" for f in report.findings]
    return "\n".join(lines) + "\n"


def _maintenance() -> str:
    lines = ["## Maintenance schedule", "", "| when | what |", "|---|---|"]
    lines += [f"| {when} | {what} |" for when, what in MAINTENANCE]
    return "\n".join(lines) + "\n"


def _not_checked(report: Report) -> str:
    if not report.collection_errors and not report.skipped:
        return ""
    lines = ["## What could not be checked", ""]
    lines += [f"- **{e.source}** {e.where}: {e.why}" for e in report.collection_errors]
    lines += [f"- rule {s.code} skipped: {s.reason}" for s in report.skipped]
    return "\n".join(lines) + "\n"


def _value(value: Any) -> str:
    return format_value(value)


def table_cell(text: str) -> str:
    """Text for a Markdown table cell: pipes escaped, on one line."""
    return text.replace("|", "\\|").replace("\n", " ")
