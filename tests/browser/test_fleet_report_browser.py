"""The fleet report's HTML in a real Chromium: the heatmap shows, a host's findings open from the
hosts table, nothing is fetched, no console error, no horizontal overflow at phone width."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Browser

from stackaudit.config import Settings
from stackaudit.fleet.render import render_html
from stackaudit.fleet.report import build
from tests.browser.conftest import horizontal_overflow, new_page, shot
from tests.fleet.report_dirs import reference_snapshot, variant, write_host

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def fleet_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("fleet-html")
    base = reference_snapshot(root)
    for i in range(6):
        write_host(root / "fleet", f"web-{i}.example.org", variant(base, pg_version=f"18.{i % 2}",
                                                                   load=float(i * 2)), ["web"])
    path = root / "fleet.html"
    path.write_text(render_html(build(root / "fleet", Settings(), 172800)), encoding="utf-8")
    return path.as_uri()


def test_heatmap_and_host_findings(browser: Browser, fleet_file: str) -> None:
    page, console = new_page(browser)
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(fleet_file)
    assert page.title() == "Fleet audit: 6 hosts"
    heatmap = page.locator("table.heatmap")
    assert heatmap.is_visible()
    assert heatmap.locator("tbody tr").count() == 6
    assert heatmap.locator("td.heat-medium").count() >= 1  # SYS004 on the loaded hosts
    page.get_by_role("link", name="web-3.example.org").click()
    page.wait_for_function("location.hash === '#host-3'")  # waits on a loaded machine, fails if never
    page.get_by_role("button", name="Expand all findings").click()
    assert page.locator("details.finding[open]").count() == page.locator("details.finding").count() > 0
    assert [u for u in requests if not u.startswith("file:")] == []
    assert console.errors == []
    shot(page, "fleet-report-desktop.png")


def test_phone_width_keeps_wide_tables_in_their_scroll_box(browser: Browser, fleet_file: str) -> None:
    page, console = new_page(browser, 375, 800)
    page.goto(fleet_file)
    assert horizontal_overflow(page) == 0
    assert console.errors == []
    shot(page, "fleet-report-phone.png")


def test_the_file_is_real(fleet_file: str) -> None:
    assert Path(fleet_file.removeprefix("file://")).stat().st_size > 10_000
