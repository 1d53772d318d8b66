"""The HTML report file in a real Chromium: opens offline, findings open by mouse and keyboard,
printing expands them and hides navigation, nothing overflows at phone width."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page

from stackaudit.report import html
from tests.browser.conftest import horizontal_overflow, new_page, shot
from tests.report.report_facts import sample_report

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def report_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("report") / "report.html"
    path.write_text(html.render(sample_report()), encoding="utf-8")
    return path.as_uri()


def open_count(page: Page) -> int:
    return int(page.evaluate("document.querySelectorAll('details.finding[open]').length"))


def test_findings_open_by_click_keyboard_and_buttons(browser: Browser, report_file: str) -> None:
    page, console = new_page(browser)
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(report_file)
    assert page.title() == "Production audit: prod-1"
    assert open_count(page) == 0
    first = page.locator("details.finding").first
    first.locator("summary").click()
    assert first.get_attribute("open") is not None
    assert first.get_by_text("Estimated effect").is_visible()
    second = page.locator("details.finding").nth(1)
    second.locator("summary").focus()
    page.keyboard.press("Enter")
    assert second.get_attribute("open") is not None
    page.get_by_role("button", name="Expand all findings").click()
    assert open_count(page) == page.locator("details.finding").count()
    page.get_by_role("button", name="Collapse all findings").click()
    assert open_count(page) == 0
    page.get_by_role("link", name="PG101 permoney").first.click()  # from the summary: opens the target
    assert open_count(page) == 1
    assert page.locator("details.finding[open] summary code", has_text="PG101").count() == 1
    assert [u for u in requests if not u.startswith("file:")] == []  # nothing fetched from anywhere
    assert console.errors == []
    shot(page, "report-desktop.png")


def test_skip_link_is_the_first_tab_stop(browser: Browser, report_file: str) -> None:
    page, _ = new_page(browser)
    page.goto(report_file)
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    assert page.locator("a.skip").is_visible()


def test_print_expands_findings_and_hides_navigation(browser: Browser, report_file: str) -> None:
    page, console = new_page(browser)
    page.goto(report_file)
    page.emulate_media(media="print")
    assert not page.locator("nav.toc").is_visible()
    assert not page.get_by_role("button", name="Expand all findings").is_visible()
    message = page.locator("details.finding .body").first
    assert message.is_visible()  # closed <details> still print their content
    breaks = page.evaluate("getComputedStyle(document.getElementById('area-host')).breakBefore")
    assert breaks == "page"
    pdf = page.pdf()
    assert pdf.startswith(b"%PDF") and len(pdf) > 10_000
    (shot(page, "report-print.png").parent / "report.pdf").write_bytes(pdf)
    assert console.errors == []


def test_phone_width_has_no_horizontal_overflow(browser: Browser, report_file: str) -> None:
    page, console = new_page(browser, 375, 800)
    page.goto(report_file)
    page.get_by_role("button", name="Expand all findings").click()
    assert horizontal_overflow(page) == 0
    wide = page.evaluate("""[...document.querySelectorAll('main *')]
        .filter(e => e.getBoundingClientRect().right > document.documentElement.clientWidth + 1
                     && !e.closest('.table-wrap')).map(e => e.tagName + '.' + e.className).slice(0, 5)""")
    assert wide == []
    assert console.errors == []
    shot(page, "report-phone.png")


def test_report_path_is_a_real_file(report_file: str) -> None:
    assert Path(report_file.removeprefix("file://")).is_file()
