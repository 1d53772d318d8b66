"""The SVG charts: well-formed, labelled for screen readers, numbers in words, unique ids."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from stackaudit.derive import derive
from stackaudit.facts import Facts
from stackaudit.report import chart_data
from stackaudit.report.charts import Segment, line_with_forecast, paired_bars, stacked_bar
from tests.report.report_facts import GIB, MIB, sample_facts

SVG = "{http://www.w3.org/2000/svg}"


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    assert root.get("role") == "img"
    return root


def words(root: ET.Element) -> tuple[str, str]:
    title, desc = root.find(f"{SVG}title"), root.find(f"{SVG}desc")
    assert title is not None and desc is not None
    assert root.get("aria-labelledby") == f"{title.get('id')} {desc.get('id')}"
    return title.text or "", desc.text or ""


def test_stacked_bar_says_every_segment_and_the_capacity_in_words() -> None:
    svg = stacked_bar("Memory budget", [Segment("OS", 2 * GIB), Segment("Redis", 512 * MIB)], 8 * GIB,
                      "bytes", "RAM")
    title, desc = words(parse(svg))
    assert title == "Memory budget"
    assert "OS 2.0 GiB" in desc and "Redis 512.0 MiB" in desc and "RAM 8.0 GiB" in desc
    assert "(25%)" in svg  # a share of RAM, not of the segments' sum


def test_stacked_bar_patterns_resolve_within_the_chart() -> None:
    root = parse(stacked_bar("t", [Segment(str(i), 1) for i in range(8)], None, "connections"))
    ids = {e.get("id") for e in root.iter() if e.get("id")}
    fills = {e.get("fill") for e in root.iter(f"{SVG}rect") if (e.get("fill") or "").startswith("url(")}
    assert len(fills) >= 5  # patterns, so segments differ without colour
    assert all(f[5:-1] in ids for f in fills if f)


def test_two_charts_have_no_id_in_common() -> None:
    first = parse(stacked_bar("Disk use of /", [Segment("a", 1)]))
    second = parse(stacked_bar("Disk use of /srv", [Segment("a", 1)]))
    ids = lambda root: {e.get("id") for e in root.iter() if e.get("id")}  # noqa: E731
    assert ids(first) and not ids(first) & ids(second)


def test_labels_are_escaped() -> None:
    root = parse(stacked_bar("<b>&", [Segment("x<y", 3)], unit="connections"))
    title, desc = words(root)
    assert title == "<b>&" and "x<y 3 connections" in desc


def test_paired_bars_give_before_and_after_numbers() -> None:
    root = parse(paired_bars("Before/after", [("SELECT 1", 120.0, 30.0), ("SELECT 2", 5.0, 6.5)]))
    _, desc = words(root)
    assert "SELECT 1: before 120 ms, after 30 ms" in desc and "after 6.5 ms" in desc


def test_line_with_forecast_marks_the_forecast() -> None:
    day = 86400.0
    points = [(1_700_000_000 + i * day, (50 + i) * GIB) for i in range(5)]
    svg = line_with_forecast("Disk use of / over time", points, 100 * GIB, points[-1][0] + 46 * day)
    _, desc = words(parse(svg))
    assert "5 samples" in desc and "last 54.0 GiB of 100.0 GiB" in desc and "forecast" in desc
    assert 'stroke-dasharray="7 4"' in svg
    assert line_with_forecast("empty", [], 1.0) == ""


def test_disk_chart_splits_the_mount_into_what_fills_it() -> None:
    (chart,) = list(chart_data.disk_usage(sample_facts()))  # /boot/efi holds nothing watched
    parts = {s.label: s.value for s in chart.segments}
    assert chart.title == "Disk use of /" and chart.capacity == 200 * GIB
    assert parts["PostgreSQL data"] == 50 * GIB and parts["Docker images"] == 40 * GIB
    assert parts["Docker volumes (other than the database)"] == 10 * GIB  # 60 GiB minus the database
    assert parts["free"] == 30 * GIB
    assert sum(v for k, v in parts.items() if k != "free") == 170 * GIB  # used, nothing counted twice


def test_memory_chart_groups_services_and_shows_postgres_worst_case() -> None:
    facts = sample_facts()
    chart = chart_data.memory_budget(facts, derive(facts))
    assert chart is not None and chart.capacity == 23 * GIB and chart.capacity_label == "RAM"
    labels = [s.label for s in chart.segments]
    assert labels[0] == "OS reserve"
    assert {"app servers", "workers", "Redis", "monitoring", "PostgreSQL shared_buffers"} <= set(labels)
    assert dict((s.label, s.value) for s in chart.segments)["PostgreSQL shared_buffers"] == 128 * MIB


def test_memory_chart_is_omitted_without_host_facts() -> None:
    facts = sample_facts()
    del facts.data["host"]
    assert chart_data.memory_budget(facts, derive(facts)) is None


def test_connection_chart_counts_processes_against_max_connections() -> None:
    chart = chart_data.connection_budget(derive(sample_facts()))
    assert chart is not None and chart.capacity == 100
    values = {s.label: s.value for s in chart.segments}
    assert values["web (puma, 4 x 8)"] == 32 and values["worker (sidekiq, 1 x 10)"] == 10
    assert values["not claimed"] == 97 - 45 and values["reserved for superusers"] == 3
    assert sum(values.values()) == 100 and chart.segments[-1].label == "reserved for superusers"


def test_reclaimable_chart_and_its_absence() -> None:
    chart = chart_data.reclaimable(sample_facts())
    assert chart is not None
    values = {s.label: s.value for s in chart.segments}
    assert values["unused image layers"] == 28 * GIB and values["build cache"] == 5 * GIB
    assert values["logs without rotation"] == 2 * GIB + 650 * MIB  # the rotated Redis log is not counted
    facts = sample_facts()
    del facts.data["docker"]
    assert chart_data.reclaimable(facts) is None


def test_disk_history_draws_a_forecast_when_the_disk_fills() -> None:
    hour = 3600.0
    series = {"/": [(1_700_000_000 + i * hour, 160 * GIB + i * GIB / 10) for i in range(48)],
              "/unknown": [(1.0, 1.0), (2.0, 2.0)]}
    (chart,) = list(chart_data.disk_history(sample_facts(), series))
    assert chart.forecast_full_at is not None and chart.forecast_full_at > series["/"][-1][0]
    assert "full in about" in chart.note


def test_verify_bars_accept_only_complete_rows() -> None:
    chart = chart_data.verify_bars({"statements": [{"label": "q1", "before_ms": 10, "after_ms": 2},
                                                   {"label": "q2", "before_ms": 3}]})
    assert chart is not None and chart.rows == (("q1", 10.0, 2.0),)
    assert chart_data.verify_bars(None) is None and chart_data.verify_bars({"statements": "x"}) is None


def test_connection_chart_draws_a_pooler_by_its_server_connections() -> None:
    facts = sample_facts()
    app = facts.data["app"]
    for proc in app["processes"]:
        proc["via_pooler"] = "pgbouncer"
    app["poolers"] = [{"project": proc["project"], "service": "pgbouncer", "pool_mode": "transaction",
                       "default_pool_size": 20, "reserve_pool_size": 0, "max_client_conn": 100,
                       "max_db_connections": 0}]
    chart = chart_data.connection_budget(derive(facts))
    assert chart is not None
    values = {s.label: s.value for s in chart.segments}
    assert values["pgbouncer (PgBouncer, 42 clients)"] == 20
    assert "web (puma, 4 x 8)" not in values  # its connections are the pooler's clients
    assert values["not claimed"] == 97 - 23


def test_mysql_budget_chart_shows_the_buffer_pool_and_the_worst_case_against_ram() -> None:
    from tests.rules.test_mysql import HOST, instance

    facts = Facts(data={"mysql": {"instances": [instance()]}, "host": HOST})
    [chart] = chart_data.mysql_budgets(facts, derive(facts))
    assert chart.area == "mysql" and chart.capacity == HOST["memory_total_bytes"]
    parts = {s.label: s.value for s in chart.segments}
    assert parts["MariaDB buffer pool"] == 2 * GIB
    assert parts["MariaDB other buffers at max_connections"] > 0
    assert "MariaDB" in chart.note and "151" in chart.note  # the arithmetic names max_connections
    assert chart in chart_data.all_charts(facts, derive(facts))


def test_no_mysql_budget_chart_without_a_server() -> None:
    facts = sample_facts()
    assert list(chart_data.mysql_budgets(facts, derive(facts))) == []
