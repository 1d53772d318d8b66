"""The self-contained HTML report: its sections, charts, accessibility basics, no external URL, no secret."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

from stackaudit.monitor.history import disk_history
from stackaudit.redact import remember
from stackaudit.report import html
from stackaudit.rules import load_all
from tests.report.report_facts import CANARY, GIB, sample_facts, sample_report

EXTERNAL = re.compile(r"""(?:\b(?:src|href|action|srcset|poster|data)\s*=\s*["']?\s*(?:https?:)?//)"""
                      r"""|url\(\s*["']?\s*(?:https?:)?//|@import""", re.IGNORECASE)


class Page(HTMLParser):
    """Collects what the tests look at: ids, headings in order, th scopes, svg blocks, scripts."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.headings: list[int] = []
        self.th_without_scope = 0
        self.external_tags: list[str] = []
        self.details = 0
        self.skip_link = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if found.get("id"):
            self.ids.append(str(found["id"]))
        if re.fullmatch(r"h[1-6]", tag):
            self.headings.append(int(tag[1]))
        if tag == "th" and "scope" not in found:
            self.th_without_scope += 1
        if tag in ("link", "img", "iframe") or (tag == "script" and "src" in found):
            self.external_tags.append(tag)
        if tag == "details":
            self.details += 1
        if tag == "a" and found.get("class") == "skip" and found.get("href") == "#main":
            self.skip_link = True


def parse(page: str) -> Page:
    parser = Page()
    parser.feed(page)
    return parser


def svgs(page: str) -> list[ET.Element]:
    return [ET.fromstring(s) for s in re.findall(r"<svg\b.*?</svg>", page, re.DOTALL)]


def test_report_has_every_section_and_finding() -> None:
    report = sample_report()
    page = parse(html.render(report))
    for section in ("summary", "area-host", "area-postgres", "area-app", "area-docker", "area-security",
                    "critical", "plan", "risks", "expected", "maintenance", "not-checked"):
        assert section in page.ids, section
    assert page.details == len(report.findings)
    shown = sorted(i for i in page.ids if i.startswith("finding-"))
    assert shown == sorted(f"finding-{i}" for i in range(len(report.findings)))


def test_summary_counts_and_finding_details() -> None:
    text = html.render(sample_report())
    assert re.search(r'<span class="n">1</span> <span class="sev sev-critical">critical</span>', text)
    assert re.search(r'<span class="n">2</span> <span class="sev sev-high">high</span>', text)
    assert "<dt>Risk</dt><dd>confirm</dd>" in text and "<dt>Phase</dt><dd>week</dd>" in text
    assert "<pre><code>ALTER SYSTEM SET max_connections = 200;</code></pre>" in text
    assert "<th scope=\"row\">used_percent</th><td>85.0</td><td>&lt; 75.0</td>" in text
    assert "rule <code>RDS001</code> skipped: redis: connection refused" in text
    assert "<strong>redis</strong> connect: connection refused" in text


def test_accessible_structure() -> None:
    page = parse(html.render(sample_report()))
    assert page.headings[0] == 1 and page.headings.count(1) == 1
    assert all(b - a <= 1 for a, b in zip(page.headings, page.headings[1:], strict=False))  # no skipped level
    assert page.th_without_scope == 0
    assert page.skip_link and "main" in page.ids
    assert len(page.ids) == len(set(page.ids))  # unique ids, charts included


def test_charts_are_inline_svg_with_title_and_numbers() -> None:
    page = html.render(sample_report())
    charts = svgs(page)
    titles = [c.find("{http://www.w3.org/2000/svg}title").text for c in charts]  # type: ignore[union-attr]
    assert titles == ["Disk use of /", "Memory budget against RAM",
                      "Connection budget against max_connections", "Reclaimable space"]
    descs = [c.find("{http://www.w3.org/2000/svg}desc").text or "" for c in charts]  # type: ignore[union-attr]
    assert "PostgreSQL data 50.0 GiB" in descs[0] and "RAM 23.0 GiB" in descs[1]
    assert "max_connections 100 connections" in descs[2]


def test_no_external_resource() -> None:
    page = html.render(sample_report(), history={"/": [(1.7e9, 150 * GIB), (1.7e9 + 86400, 160 * GIB)]},
                       verify={"statements": [{"label": "q", "before_ms": 9, "after_ms": 3}]})
    assert EXTERNAL.findall(page) == []
    assert parse(page).external_tags == []
    assert "default-src 'none'" in page  # the file itself forbids fetching anything


def test_external_url_check_catches_each_form() -> None:
    for bad in ('<img src="https://x/y.png">', "<a href='//cdn.example/x'>",
                "a { background: url(http://x) }", '<link href="HTTPS://fonts.example/css">',
                "@import 'x.css';"):
        assert EXTERNAL.search(bad), bad
    assert not EXTERNAL.search('<svg xmlns="http://www.w3.org/2000/svg"><a href="#finding-1">')


def test_canary_secret_never_appears() -> None:
    remember(CANARY)
    report = sample_report()
    facts = report.facts
    facts.data["host"]["summary"]["note"] = f"postgres://app:{CANARY}@db/app"
    finding = replace(report.findings[0], message=f"password {CANARY} seen", subject=CANARY)
    page = html.render(replace(report, findings=[finding, *report.findings[1:]]))
    assert CANARY not in page
    assert "***" in page


def test_messages_are_escaped() -> None:
    page = html.render(sample_report())
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_history_and_verify_charts_when_given() -> None:
    hour = 3600.0
    history = {"/": [(1.7e9 + i * hour, 160 * GIB + i * GIB / 10) for i in range(48)]}
    page = html.render(sample_report(), history=history,
                       verify={"statements": [{"label": "slow report", "before_ms": 820.5, "after_ms": 40}]})
    assert "Disk use of / over time" in page and "full in about" in page
    assert 'id="verify"' in page and "slow report: before 820 ms, after 40 ms" in page


def test_partial_facts_give_a_report_without_charts() -> None:
    report = sample_report()
    empty = replace(report, facts=type(report.facts)(data={}), findings=[], skipped=[])
    page = html.render(empty)
    assert "<svg" not in page and "No findings in what could be checked." in page


def test_rule_doc_as_html() -> None:
    doc = load_all()["SYS001"].doc
    rendered = str(html.doc_to_html(doc))
    assert rendered.count("<h3>") == 6 and "<h3>Why it matters</h3>" in rendered
    assert "<li>" in rendered and "<code>stackaudit clean</code>" in rendered
    assert str(html.doc_to_html("## A\n<b>x</b> `y<z`\n```\n<pre>\n```")) == (
        "<h3>A</h3>\n<p>&lt;b&gt;x&lt;/b&gt; <code>y&lt;z</code></p>\n<pre><code>&lt;pre&gt;</code></pre>")


def test_load_history_reads_the_watch_database(tmp_path: Path) -> None:
    from stackaudit.monitor.history import History

    assert disk_history(tmp_path) == {}
    assert not list(tmp_path.iterdir())  # looking did not create a database
    with History.open(tmp_path) as db:
        db.add_samples([(1.0, "disk_used_bytes", "/", 10.0), (2.0, "disk_used_bytes", "/", 20.0)])
    assert disk_history(tmp_path) == {"/": [(1.0, 10.0), (2.0, 20.0)]}


def test_cli_writes_the_html_report(tmp_path: Path) -> None:
    snapshot = tmp_path / "facts.json"
    snapshot.write_text(json.dumps(sample_facts().to_json()))
    out = tmp_path / "report.html"
    done = subprocess.run([sys.executable, "-m", "stackaudit", "audit", "--facts", str(snapshot), "--format",
                           "html", "--out", str(out), "--state-dir", str(tmp_path / "state")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode in (0, 1), done.stderr
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and "Production audit: prod-1" in page
    assert "Traceback" not in done.stderr and not EXTERNAL.findall(page)
