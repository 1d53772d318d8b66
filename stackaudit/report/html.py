"""The HTML report: one self-contained file (inline CSS and SVG, no external resource), in the
Markdown report's structure, with charts. It only formats: every sentence about the system comes
from a Finding, every number from the facts.

    html.render(report)                               # what `audit --format html` writes
    html.render(report, history=disk_history(dir), verify=load_verify(path))
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import ChoiceLoader, Environment, PackageLoader, select_autoescape
from markupsafe import Markup, escape

from stackaudit.model import Finding, Phase, Risk, Severity
from stackaudit.redact import scrub
from stackaudit.report import (
    AREA_SOURCES,
    AREAS,
    MAINTENANCE,
    PHASE_TITLES,
    RISK_TITLES,
    Report,
    chart_data,
    charts,
    format_value,
)
from stackaudit.units import format_bytes

History = Mapping[str, Sequence[tuple[float, float]]]
_CODE_SPAN = re.compile(r"`([^`]+)`")


@dataclass(frozen=True)
class RenderedChart:
    area: str
    title: str
    svg: Markup
    note: str


@dataclass(frozen=True)
class Area:
    key: str
    title: str
    facts: dict[str, dict[str, Any]]  # source -> summary
    findings: list[tuple[int, Finding]]  # (index in report.findings, finding)
    charts: list[RenderedChart]


def render(report: Report, history: History | None = None, verify: Mapping[str, Any] | None = None) -> str:
    """The whole report as one HTML document, with any remembered secret scrubbed out."""
    page = environment().get_template("report.html.j2").render(**context(report, history, verify))
    return scrub(page)


def context(report: Report, history: History | None = None,
            verify: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What the report template (and the dashboard, which shows the same parts) needs."""
    rendered = [draw(c) for c in chart_data.all_charts(report.facts, report.derivations, history, verify)]
    numbered = list(enumerate(report.findings))
    areas = [_area(report, key, title, prefixes, numbered, rendered) for key, title, prefixes in AREAS]
    phases = [(PHASE_TITLES[phase], [(i, f) for i, f in numbered if f.recommendation.phase == phase])
              for phase in Phase]
    risks = [(RISK_TITLES[risk], [(i, f) for i, f in numbered if f.recommendation.risk == risk])
             for risk in Risk]
    return {
        "report": report,
        "hostname": report.facts.get("host").get("hostname") or "this host",
        "counts": report.counts(),
        "numbered": numbered,
        "urgent": [(i, f) for i, f in numbered if f in report.urgent()],
        "areas": [a for a in areas if a.facts or a.findings or a.charts],
        "phases": [(title, pairs, sum(f.recommendation.effort_minutes for _, f in pairs))
                   for title, pairs in phases if pairs],
        "risks": [(title, pairs) for title, pairs in risks if pairs],
        "maintenance": MAINTENANCE,
        "verify_charts": [c for c in rendered if c.area == "verify"],
    }


def _area(report: Report, key: str, title: str, prefixes: tuple[str, ...],
          numbered: list[tuple[int, Finding]], rendered: list[RenderedChart]) -> Area:
    facts = {s: report.source_summary(s) for s in AREA_SOURCES[key]}
    return Area(key, title, {s: v for s, v in facts.items() if v},
                [(i, f) for i, f in numbered if f.code.startswith(prefixes)],
                [c for c in rendered if c.area == key])


def draw(chart: chart_data.Chart) -> RenderedChart:
    if isinstance(chart, chart_data.StackedChart):
        svg = charts.stacked_bar(chart.title, chart.segments, chart.capacity, chart.unit,
                                 chart.capacity_label)
    elif isinstance(chart, chart_data.LineChart):
        svg = charts.line_with_forecast(chart.title, chart.points, chart.capacity, chart.forecast_full_at,
                                        chart.unit)
    else:
        svg = charts.paired_bars(chart.title, chart.rows, chart.unit, chart.labels)
    return RenderedChart(chart.area, chart.title, Markup(svg), chart.note)  # built escaped


# --- template helpers --------------------------------------------------------------------------

@cache
def environment() -> Environment:
    """Autoescaping Jinja2 over the report templates; the dashboard adds its own loader in front."""
    return make_environment(PackageLoader("stackaudit.report", "templates"))


def make_environment(*loaders: Any) -> Environment:
    env = Environment(loader=ChoiceLoader(list(loaders)), autoescape=select_autoescape(default=True),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters.update(value=fact_value, code=code_spans, doc=doc_to_html, minutes=minutes,
                       timestamp=timestamp)
    env.globals.update(Severity=Severity, Phase=Phase, severity_class=severity_class)
    return env


def fact_value(value: Any, key: str = "") -> str:
    """Bytes as people read them (keeping the exact number), everything else as text."""
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if (key == "bytes" or key.endswith("_bytes")) and is_number:
        return f"{format_bytes(value)} ({value:,} bytes)" if value >= 1024 else f"{value} bytes"
    return format_value(value)


def code_spans(text: str) -> Markup:
    """`text` in backticks as <code>; everything escaped first."""
    return Markup(_CODE_SPAN.sub(r"<code>\1</code>", str(escape(text))))


def minutes(value: int) -> str:
    return f"{value} min" if value < 120 else f"{value / 60:.1f} h"


def timestamp(value: float) -> str:
    return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M")


def severity_class(severity: Severity | str) -> str:
    label = severity.label() if isinstance(severity, Severity) else str(severity)
    return f"sev sev-{label}"


def doc_to_html(doc: str, heading_level: int = 3) -> Markup:
    """A rule docstring (## headings, paragraphs, '-' lists, fenced code, `code`) as simple HTML."""
    out: list[str] = []
    paragraph: list[str] = []
    items: list[str] = []
    fence: list[str] | None = None

    def flush() -> None:
        if paragraph:
            out.append(f"<p>{code_spans(' '.join(paragraph))}</p>")
            paragraph.clear()
        if items:
            out.append("<ul>" + "".join(f"<li>{code_spans(i)}</li>" for i in items) + "</ul>")
            items.clear()

    for line in doc.splitlines():
        stripped = line.strip()
        if fence is not None:
            if stripped.startswith("```"):
                out.append(f"<pre><code>{escape(chr(10).join(fence))}</code></pre>")
                fence = None
            else:
                fence.append(line)
        elif stripped.startswith("```"):
            flush()
            fence = []
        elif stripped.startswith("## "):
            flush()
            out.append(f"<h{heading_level}>{escape(stripped[3:])}</h{heading_level}>")
        elif stripped.startswith(("- ", "* ")):
            if paragraph:
                flush()
            items.append(stripped[2:])
        elif not stripped:
            flush()
        elif items and line.startswith((" ", "\t")):
            items[-1] += " " + stripped  # a wrapped list item
        else:
            if items:
                flush()
            paragraph.append(stripped)
    if fence is not None:
        out.append(f"<pre><code>{escape(chr(10).join(fence))}</code></pre>")
    flush()
    return Markup("\n".join(out))


# --- an optional input (the only I/O here, for the CLI and the dashboard) ---------------------------

def load_verify(path: Path) -> dict[str, Any]:
    """A `verify` result file; ValueError with the reason when it cannot be read."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read verify results {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"verify results {path}: expected a JSON object with 'statements'")
    return data
