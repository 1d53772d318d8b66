"""The terminal report prints findings and errors as they are, whatever brackets they contain."""

from __future__ import annotations

import dataclasses

from stackaudit.model import CollectionError
from stackaudit.report import terminal
from tests.report.report_facts import sample_report


def test_brackets_in_findings_and_errors_are_shown_not_parsed() -> None:
    report = sample_report()
    message = "log in [/var/log/app] grew; [bold]not a style[/bold] [Errno 13]"
    report.findings[0] = dataclasses.replace(report.findings[0], message=message)
    report.collection_errors.append(CollectionError("host", "[/proc/pressure]", "[/] unreadable"))
    text = terminal.render(report, width=400)
    assert "[/var/log/app]" in text and "[bold]not a style[/bold]" in text and "[Errno 13]" in text
    assert "[/proc/pressure]" in text and "[/] unreadable" in text


def test_the_title_names_the_host_and_leaves_it_out_when_the_host_was_not_read() -> None:
    report = sample_report()
    hostname = report.facts.get("host").get("hostname")
    assert terminal.render(report, width=200).splitlines()[0].split(" · ")[1] == hostname
    del report.facts.data["host"]
    title = terminal.render(report, width=200).splitlines()[0]
    assert title == f"stackaudit {report.tool_version} · {report.generated_at}"  # no empty "·  ·"
