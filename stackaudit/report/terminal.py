"""The terminal report: a summary, one table of findings, and what could not be read."""

from __future__ import annotations

import io
import shutil
import textwrap
from typing import Any

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from stackaudit.model import Severity
from stackaudit.report import Report

STYLES = {Severity.CRITICAL: "bold white on red", Severity.HIGH: "bold red", Severity.MEDIUM: "yellow",
          Severity.LOW: "cyan", Severity.INFO: "dim"}


def plain_console(**options: Any) -> Console:
    """A console that prints strings as they are. Rich markup is off, so a path such as [/etc/x] or an
    error's [Errno 13] in a finding or a message is shown, not parsed (a stray closing tag would
    raise MarkupError); styles are given as Text objects instead (`styled`)."""
    return Console(markup=False, highlight=False, **options)


def styled(label: str, style: str, rest: str = "") -> Text:
    """A coloured label followed by plain text."""
    return Text.assemble((label, style), rest)


def terminal_width() -> int:
    """The terminal's columns (COLUMNS when set, as in a pipe); 120 when there is no terminal."""
    return shutil.get_terminal_size((120, 24)).columns


def wrap_text(text: str, width: int | None = None, reflow: bool = False) -> str:
    """Lines longer than the terminal wrapped, indent kept (under a "- " bullet too); paths, URLs
    and settings are never broken, so a longer line holds one of them. Code and tables stay as they
    are. `reflow` (for Markdown, whose line breaks are soft) first joins the lines of a paragraph."""
    width = width or terminal_width()
    out: list[str] = []
    paragraph: list[str] = []

    def flush() -> None:
        if paragraph and max(map(len, paragraph)) > width:
            first = paragraph[0]
            indent = first[: len(first) - len(first.lstrip())]
            hanging = indent + ("  " if first.lstrip().startswith("- ") else "")
            out.append(textwrap.fill(" ".join(line.strip() for line in paragraph), width,
                                     initial_indent=indent, subsequent_indent=hanging,
                                     break_long_words=False, break_on_hyphens=False))
        else:
            out.extend(paragraph)
        paragraph.clear()

    fenced = False
    for line in text.splitlines():
        stripped = line.lstrip()
        if stripped.startswith("```"):
            fenced = not fenced
        if fenced or stripped.startswith(("```", "#", "|")) or not stripped:
            flush()
            out.append(line)
            continue
        if not reflow or stripped.startswith("- "):
            flush()
        paragraph.append(line)
    flush()
    return "\n".join(out) + ("\n" if text.endswith("\n") else "")


def render(report: Report, width: int | None = None) -> str:
    console = plain_console(width=width or terminal_width(), record=True, file=io.StringIO(),
                            force_terminal=False)
    console.print(_renderable(report))
    return console.export_text()


def _renderable(report: Report) -> Group:
    host = report.facts.get("host")
    heading = [f"stackaudit {report.tool_version}", host.get("hostname"), report.generated_at]
    title = Text(" · ".join(str(p) for p in heading if p), style="bold")  # no host source: no name
    counts = Text("  ".join(f"{label}: {n}" for label, n in report.counts().items()))
    findings = Table(title="Findings", show_lines=False, expand=True)
    for column in ("severity", "code", "subject", "finding", "fix (risk, phase)"):
        findings.add_column(column, overflow="fold")
    for f in report.findings:
        rec = f.recommendation
        findings.add_row(Text(f.severity.label(), style=STYLES[f.severity]), f.code, f.subject, f.message,
                         f"{rec.summary} ({rec.risk.value}, {rec.phase.value})")
    bad_input = any(e.invalid for e in report.collection_errors)
    empty = (Text("No findings in what could be read: the input is bad (see below).", style="bold red")
             if bad_input else Text("No findings."))
    parts: list[object] = [title, counts, findings if report.findings else empty]
    if report.collection_errors:
        errors = Table(title="Could not collect", expand=True)
        errors.add_column("source")
        errors.add_column("where", overflow="fold")
        errors.add_column("why", overflow="fold")
        for e in report.collection_errors:
            errors.add_row(e.source, e.where, e.why)
        parts.append(errors)
    if report.skipped:
        codes = ", ".join(s.code for s in report.skipped)
        parts.append(Text(f"{len(report.skipped)} rule(s) skipped for missing sources: {codes} "
                          "(reasons in --format json or md).", style="dim"))
    if bad_input:
        parts.append(Text("Bad input: the files under 'Could not collect' were not (fully) audited; "
                          "fix them (exit code 2).", style="bold red"))
    parts.append(Text("Explain a code: stackaudit explain CODE", style="dim"))
    return Group(*parts)  # type: ignore[arg-type]
