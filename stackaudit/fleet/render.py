"""The fleet report as terminal text, Markdown, HTML (the single-host report's styles and macros,
plus a host x code heatmap) and JSON. Only formatting: every number comes from the FleetReport,
every sentence about a host from its Findings."""

from __future__ import annotations

import io
import json
from functools import cache

from jinja2 import Environment, PackageLoader
from rich.console import Group
from rich.table import Table
from rich.text import Text

from stackaudit.fleet.report import FleetReport, HostReport
from stackaudit.model import Finding, Severity
from stackaudit.redact import scrub
from stackaudit.report.html import make_environment
from stackaudit.report.markdown import table_cell as md_cell
from stackaudit.report.terminal import STYLES, plain_console, terminal_width

STATUS_STYLES = {"ok": "green", "failed": "bold red", "stale": "yellow"}
LOOK_AT_TITLE = "Hosts not current or with a problem"  # failed, stale, or a metrics role that failed
_ABBREVIATIONS = {"critical": "crit", "high": "high", "medium": "med", "low": "low", "info": "info"}


def render_json(report: FleetReport) -> str:
    """Compact JSON (a thousand hosts make tens of MB; `jq` indents it), scrubbed as one text as
    the HTML is: walking every string through `scrub_data`, and json's pure-Python indenting
    encoder, each took as long as auditing the hosts."""
    return scrub(json.dumps(report.to_json(), separators=(",", ":"), default=str)) + "\n"


# --- terminal ------------------------------------------------------------------------------------

def render_terminal(report: FleetReport, width: int | None = None) -> str:
    console = plain_console(width=width or terminal_width(), record=True, file=io.StringIO(),
                            force_terminal=False)
    console.print(Group(*_terminal_parts(report)))  # type: ignore[arg-type]
    return console.export_text()


def headline(report: FleetReport) -> str:
    statuses = ", ".join(f"{n} {status}" for status, n in report.status_counts().items() if n)
    return f"{len(report.hosts)} host(s): {statuses}; {report.audited} audited"


def _terminal_parts(report: FleetReport) -> list[object]:
    parts: list[object] = [
        Text(f"stackaudit fleet report {report.tool_version} · {report.directory} · {report.generated_at}",
             style="bold"),
        Text(headline(report)),
        Text("findings: " + "  ".join(f"{label}: {n}" for label, n in report.severity_counts().items())),
        _hosts_table(report),
    ]
    if report.by_code:
        parts.append(_codes_table(report))
    parts.append(_drift_table(report) if report.drift else Text("No drift inside any group."))
    if report.secret_reuse:
        parts.append(_reuse_table(report))
    if report.to_look_at():
        parts.append(_not_current_table(report))
    parts.append(Text("Explain a code: stackaudit explain CODE · one host in full: "
                      "stackaudit audit --facts DIR/HOST/SNAPSHOT.json", style="dim"))
    return parts


def _hosts_table(report: FleetReport) -> Table:
    table = Table(title="Hosts by severity", expand=True)
    table.add_column("host", overflow="fold", ratio=1)
    table.add_column("status", no_wrap=True)
    table.add_column("collected", no_wrap=True)
    for severity in sorted(Severity, reverse=True):
        table.add_column(_ABBREVIATIONS[severity.label()], justify="right", no_wrap=True)
    for host in report.hosts:
        counts = host.counts()
        cells = [Text(str(n), style=STYLES[s] if n else "dim")
                 for s, n in zip(sorted(Severity, reverse=True), counts.values(), strict=True)]
        table.add_row(host.name, Text(host.status, style=STATUS_STYLES[host.status]),
                      (host.collected_at or "never")[:16].replace("T", " "),
                      *(cells if host.audited else [Text("-", style="dim")] * len(cells)))
    return table


def _codes_table(report: FleetReport) -> Table:
    table = Table(title="Findings by code", expand=True)
    table.add_column("code", no_wrap=True)
    table.add_column("severity", no_wrap=True)
    table.add_column("hosts", no_wrap=True)
    table.add_column("on", overflow="fold", ratio=1)
    for spread in report.by_code:
        table.add_row(spread.code, Text(spread.severity.label(), style=STYLES[spread.severity]),
                      f"{len(spread.hosts)} of {spread.of}", ", ".join(spread.hosts))
    return table


def _drift_table(report: FleetReport) -> Table:
    table = Table(title="Drift inside a group", expand=True)
    table.add_column("group", overflow="fold")
    table.add_column("what", overflow="fold", ratio=1)
    table.add_column("values: hosts", overflow="fold", ratio=2)
    for d in report.drift:
        table.add_row(d.group, f"{d.what} {d.subject}",
                      "; ".join(f"{value}: {', '.join(hosts)}" for value, hosts in d.values))
    return table


def _reuse_table(report: FleetReport) -> Table:
    table = Table(title="One secret on several hosts", expand=True)
    table.add_column("hosts", overflow="fold", ratio=1)
    table.add_column("where", overflow="fold", ratio=3)
    for reuse in report.secret_reuse:
        table.add_row(", ".join(reuse.hosts), "\n".join(f"{host}: {where}" for host, where in reuse.places))
    return table


def _not_current_table(report: FleetReport) -> Table:
    table = Table(title=LOOK_AT_TITLE, expand=True)
    table.add_column("host", overflow="fold")
    table.add_column("status", no_wrap=True)
    table.add_column("why", overflow="fold", ratio=3)
    for host in report.to_look_at():
        table.add_row(host.name, Text(host.status, style=STATUS_STYLES[host.status]), host.reason or "")
    return table


# --- Markdown ------------------------------------------------------------------------------------

def render_markdown(report: FleetReport) -> str:
    lines = [f"# Fleet audit: {report.directory}", "",
             f"**Generated**: {report.generated_at} by stackaudit {report.tool_version}  ",
             f"**Hosts**: {headline(report)}", "", "## Hosts by severity", "",
             "| host | status | collected | " + " | ".join(report.severity_counts()) + " |",
             "|---|---|---|" + "---:|" * len(Severity)]
    for host in report.hosts:
        counts = " | ".join(str(n) for n in host.counts().values()) if host.audited else \
            " | ".join("-" for _ in Severity)
        lines.append(f"| {md_cell(host.name)} | {host.status} | {host.collected_at or 'never'} | {counts} |")
    lines += ["", "## Findings by code", ""]
    lines += [f"- **{c.code}** {c.name} ({c.severity.label()}) on {len(c.hosts)} of {c.of} hosts: "
              f"{', '.join(c.hosts)}" for c in report.by_code] or ["No findings."]
    lines += ["", "## Drift inside a group", ""]
    lines += ["| group | what | values: hosts |", "|---|---|---|"] if report.drift else ["No drift."]
    lines += [f"| {md_cell(d.group)} | {md_cell(f'{d.what} {d.subject}')} | "
              + md_cell("; ".join(f"{v}: {', '.join(h)}" for v, h in d.values)) + " |" for d in report.drift]
    if report.secret_reuse:
        lines += ["", "## One secret on several hosts", ""]
        lines += [f"- {', '.join(r.hosts)}: " + "; ".join(f"{h} `{w}`" for h, w in r.places)
                  for r in report.secret_reuse]
    if report.to_look_at():
        lines += ["", f"## {LOOK_AT_TITLE}", ""]
        lines += [f"- **{h.name}** ({h.status}): {h.reason}" for h in report.to_look_at()]
    lines += ["", "## Findings per host", ""]
    for host in (h for h in report.hosts if h.findings):
        lines += [f"### {host.name}", ""]
        lines += [f"- {f.severity.label()} **{f.code}** {f.subject}: {f.message}" for f in host.findings]
        lines.append("")
    return scrub("\n".join(lines).rstrip() + "\n")


# --- HTML ----------------------------------------------------------------------------------------

@cache
def environment() -> Environment:
    """The fleet template in front of the single-host report's (styles, macros, script)."""
    return make_environment(PackageLoader("stackaudit.fleet", "templates"),
                            PackageLoader("stackaudit.report", "templates"))


def render_html(report: FleetReport) -> str:
    codes = [c.code for c in report.by_code]
    page = environment().get_template("fleet.html.j2").render(
        fleet=report, look_at_title=LOOK_AT_TITLE, headline=headline(report), codes=codes,
        heatmap=[(h, heat_row(h, codes)) for h in report.hosts if h.audited],
        numbered=[(i, h, list(enumerate(h.findings))) for i, h in enumerate(report.hosts) if h.findings])
    return scrub(page)


def heat_row(host: HostReport, codes: list[str]) -> list[tuple[str, int, Finding | None]]:
    """Per code: (code, how many findings, the worst one) on this host."""
    by_code: dict[str, list[Finding]] = {}
    for finding in host.findings:
        by_code.setdefault(finding.code, []).append(finding)
    return [(code, len(by_code.get(code, [])),
             max(by_code[code], key=lambda f: f.severity) if code in by_code else None) for code in codes]
