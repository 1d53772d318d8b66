"""The dashboard in a real Chromium: the token form, findings and explain pages, a re-run with
progress, no console errors, and no horizontal overflow at phone width."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from tests.browser.conftest import horizontal_overflow, new_page, shot
from tests.web.server import Served, serve, wait_for_report, write_snapshot

pytestmark = pytest.mark.integration

TOKEN = "browser-token-51c3aa"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("dashboard")
    with serve(tmp, "--sources", "host", token=TOKEN) as running:
        wait_for_report(running.url, AUTH)
        yield running


def test_token_form_then_findings_explain_and_rerun(browser: Browser, served: Served) -> None:
    page, console = new_page(browser)
    page.goto(served.url + "/")
    expect(page.get_by_label("Access token")).to_be_visible()
    assert page.locator("nav.toc").count() == 0  # nothing of the dashboard before the token
    shot(page, "dashboard-login.png")
    page.get_by_label("Access token").fill("wrong")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("That token is not right.")
    page.get_by_label("Access token").fill(TOKEN)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    # The 401 of the login page itself is expected; anything after it is not.
    console.errors = [e for e in console.errors if "401" not in e]

    findings = page.locator("ul.findings a")
    for index in range(min(findings.count(), 3)):  # a host-only audit may find little: click what is there
        page.locator("ul.findings a").nth(index).click()
        expect(page.get_by_role("heading", name="What it checks")).to_be_visible()
        expect(page.get_by_text("Recommendation").first).to_be_visible()
        page.get_by_role("link", name="All findings").click()
    shot(page, "dashboard-overview.png")

    before = page.locator("#job p").first.inner_text()
    # The click starts a job (202), the script polls it and reloads the page when it is done.
    with page.expect_response(lambda r: r.url.endswith("/api/audit")) as started, \
            page.expect_navigation(timeout=60_000):
        page.get_by_role("button", name="Re-run the audit").click()
    assert started.value.status == 202
    expect(page.locator("#job-status")).to_have_text("Last run finished.", timeout=60_000)
    expect(page.get_by_role("button", name="Re-run the audit")).to_be_enabled()
    expect(page.locator("#job p").first).not_to_have_text(before, timeout=10_000)
    for path in ("/history", "/plan", "/report"):
        page.goto(served.url + path)
        assert page.locator("h1").count() == 1
    assert TOKEN not in page.content()
    assert console.errors == []


def test_phone_width(browser: Browser, served: Served) -> None:
    context = browser.new_context(viewport={"width": 375, "height": 800}, extra_http_headers=AUTH)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(served.url + "/")
    findings = page.locator("ul.findings a").evaluate_all("links => links.map(a => a.pathname)")
    for path in ("/", *findings[:2], "/rules/SYS001", "/plan", "/history", "/report"):
        page.goto(served.url + path)
        assert horizontal_overflow(page) == 0, path
    page.goto(served.url + "/")
    shot(page, "dashboard-phone.png")
    context.close()
    assert errors == []


def test_snapshot_dashboard_shows_all_charts(browser: Browser, tmp_path: Path) -> None:
    with serve(tmp_path, "--facts", str(write_snapshot(tmp_path))) as running:
        wait_for_report(running.url)
        page, console = new_page(browser, 1100)
        page.goto(running.url + "/")
        charts = page.locator("figure.chart svg[role=img]")
        assert charts.count() == 4
        assert "Memory budget against RAM" in (charts.nth(1).locator("title").text_content() or "")
        page.locator("ul.findings a", has_text="SYS001").click()
        expect(page.get_by_role("heading", name="Why it matters")).to_be_visible()
        page.go_back()
        page.get_by_role("button", name="Re-run the audit").click()
        expect(page.locator("#job-status")).to_have_text("Last run finished.", timeout=60_000)
        shot(page, "dashboard-snapshot.png")
        assert console.errors == []
