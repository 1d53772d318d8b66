"""`stackaudit fleet report` on fleet directories made of real snapshots: statuses, codes by host,
drift inside a group only, secret reuse through keyed fingerprints, identity with `audit --facts`,
bad input per host, and the command's terminal and JSON output."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from stackaudit.config import Settings
from stackaudit.fleet.inventory import FleetError
from stackaudit.fleet.render import render_html, render_json, render_markdown, render_terminal
from stackaudit.fleet.report import FleetReport, build
from stackaudit.fleet.snapshots import MAX_SNAPSHOT_BYTES
from stackaudit.units import parse_duration
from tests.fleet.report_dirs import reference_snapshot, variant, with_mysql, with_secrets, write_host
from tests.test_cli import run

NOW = datetime.now(UTC).replace(microsecond=0)
TWO_DAYS = parse_duration("2d")
KEY, OTHER_KEY = bytes.fromhex("11" * 32), bytes.fromhex("22" * 32)
CANARY = "Zr8mQ2vLx7pW4kTn9bYc"


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return reference_snapshot(tmp_path_factory.mktemp("base"))


def report_of(directory: Path) -> FleetReport:
    return build(directory, Settings(), TWO_DAYS, now=NOW)


def hosts_by_name(report: FleetReport) -> dict[str, dict[str, Any]]:
    return {h["name"]: h for h in report.to_json()["hosts"]}


def test_statuses_ok_stale_failed_and_recovered(tmp_path: Path, base: dict[str, Any]) -> None:
    write_host(tmp_path, "fresh", base, ["web"], NOW - timedelta(hours=1))
    write_host(tmp_path, "old", base, ["web"], NOW - timedelta(days=3))
    write_host(tmp_path, "broke", base, ["web"], NOW - timedelta(hours=5),
               error={"failed_at": (NOW - timedelta(hours=1)).isoformat(), "stage": "unreachable",
                      "reason": "ssh: connect to host 127.0.0.9 port 22: Connection refused"})
    write_host(tmp_path, "recovered", base, ["web"], NOW - timedelta(hours=1),
               error={"failed_at": (NOW - timedelta(hours=5)).isoformat(), "stage": "collect",
                      "reason": "stackaudit collect exited 2"})
    write_host(tmp_path, "never", None, ["db"],
               error={"failed_at": NOW.isoformat(), "stage": "install", "reason": "no python3 on the host"})
    hosts = hosts_by_name(report_of(tmp_path))
    assert {n: h["status"] for n, h in hosts.items()} == {
        "broke": "failed", "fresh": "ok", "never": "failed", "old": "stale", "recovered": "ok"}
    assert hosts["old"]["reason"] == "newest snapshot is 3 days old"
    assert hosts["broke"]["reason"].startswith("unreachable (")
    assert hosts["broke"]["reason"].endswith("): ssh: connect to host 127.0.0.9 port 22: Connection refused")
    assert hosts["broke"]["findings"]  # the older snapshot is still audited
    assert hosts["broke"]["stage"] == "unreachable"
    assert hosts["broke"]["failed_at"] == (NOW - timedelta(hours=1)).isoformat()
    assert hosts["recovered"]["stage"] is None and hosts["old"]["failed_at"] is None
    assert hosts["never"]["reason"].endswith("no python3 on the host")
    assert hosts["never"]["audited"] is False and hosts["never"]["collected_at"] is None
    assert hosts["fresh"]["reason"] is None and hosts["recovered"]["reason"] is None
    assert report_of(tmp_path).exit_code(Settings().fail_on) == 1


def test_by_code_counts_the_hosts_a_code_fires_on(tmp_path: Path, base: dict[str, Any]) -> None:
    write_host(tmp_path, "a", variant(base, load=9.0), ["web"])
    write_host(tmp_path, "b", base, ["web"])
    write_host(tmp_path, "c", base, ["web"])
    document = report_of(tmp_path).to_json()
    assert document["by_code"]["SYS004"] == {"name": "load-above-cores", "severity": "medium", "count": 1,
                                             "of": 3, "hosts": ["a"]}
    everywhere = [code for code, spread in document["by_code"].items() if spread["count"] == 3]
    assert "SEC003" in everywhere
    assert document["summary"] == {"hosts": 3, "audited": 3, "ok": 3, "failed": 0, "stale": 0}
    per_host = sum(sum(h["severity_counts"].values()) for h in document["hosts"])
    assert sum(document["severity_counts"].values()) == per_host
    assert "SYS004 " in render_terminal(report_of(tmp_path), width=80).split("Findings by code")[1]


def test_drift_inside_a_group_not_across_groups(tmp_path: Path, base: dict[str, Any]) -> None:
    write_host(tmp_path, "web1", base, ["web", "prod"])
    write_host(tmp_path, "web2", variant(base, pg_version="17.2", web_tag="sha-0000001", work_mem="64MB"),
               ["web", "prod"])
    write_host(tmp_path, "db1", variant(base, pg_version="16.6", web_tag="sha-9999999"), ["db"])
    write_host(tmp_path, "db2", variant(base, pg_version="16.6", web_tag="sha-9999999"), ["db"])
    drifts = report_of(tmp_path).to_json()["drift"]
    found = {(d["group"], d["what"], d["subject"]) for d in drifts}
    assert found == {(g, what, subject) for g in ("prod", "web") for what, subject in
                     (("PostgreSQL version", "server"), ("PostgreSQL setting", "work_mem"),
                      ("image", "stack/web"))}
    version = next(d for d in drifts if d["group"] == "web" and d["what"] == "PostgreSQL version")
    assert sorted((v["value"], v["hosts"]) for v in version["values"]) == [("17.2", ["web2"]),
                                                                           ("18.0", ["web1"])]
    # db1 and db2 agree with each other; 16.6 against web's versions is across groups: no drift


def test_a_metrics_failure_after_a_good_snapshot_keeps_the_host_ok_with_the_reason(
        tmp_path: Path, base: dict[str, Any]) -> None:
    metrics_error = {"failed_at": (NOW - timedelta(minutes=59)).isoformat(), "stage": "metrics",
                     "reason": "There was an issue creating /srv/x/textfile: Not a directory"}
    write_host(tmp_path, "metered", base, ["web"], NOW - timedelta(hours=1), error=metrics_error)
    write_host(tmp_path, "old", base, ["web"], NOW - timedelta(days=3),
               error={**metrics_error,
                      "failed_at": (NOW - timedelta(days=3) + timedelta(minutes=1)).isoformat()})
    write_host(tmp_path, "never", None, ["web"], error=metrics_error)  # no snapshot: failed as before
    report = report_of(tmp_path)
    hosts = hosts_by_name(report)
    metered = hosts["metered"]
    assert (metered["status"], metered["stage"], metered["audited"]) == ("ok", "metrics", True)
    assert metered["reason"].startswith("metrics (")
    assert metered["reason"].endswith("textfile: Not a directory")
    assert metered["failed_at"] == metrics_error["failed_at"]
    assert metered["findings"] == hosts_by_name(report_of_one(tmp_path, base))["clean"]["findings"]
    assert hosts["old"]["status"] == "stale" and "metrics (" in hosts["old"]["reason"]
    assert hosts["never"]["status"] == "failed"
    for text in (render_terminal(report, 80), render_markdown(report), render_html(report)):
        assert "Hosts not current or with a problem" in text and "textfile: Not a directory" in text


def report_of_one(tmp_path: Path, payload: dict[str, Any]) -> FleetReport:
    alone = tmp_path / "alone"
    write_host(alone, "clean", payload, ["web"], NOW - timedelta(hours=1))
    return report_of(alone)


def test_mariadb_and_mysql_drift_in_versions_and_set_variables(tmp_path: Path, base: dict[str, Any]) -> None:
    write_host(tmp_path, "m1", with_mysql(base, origins={"innodb_buffer_pool_size": "config"},
                                          long_query_time="2.000000", hostname="m1", port="3306"), ["db"])
    write_host(tmp_path, "m2", with_mysql(base, version="11.4.2-MariaDB",
                                          innodb_buffer_pool_size=str(4 * 2**30),
                                          origins={"long_query_time": "config"}, long_query_time="10.000000",
                                          hostname="m2", port="3307"), ["db"])
    write_host(tmp_path, "m3", with_mysql(base, version="8.4.3", flavor="mysql", hostname="m3",
                                          sort_buffer_size="262144"), ["other"])
    write_host(tmp_path, "m4", with_mysql(base, version="8.4.3", flavor="mysql", sort_buffer_size="1048576",
                                          origins={"sort_buffer_size": "auto"}), ["other"])
    report = report_of(tmp_path)
    drifts = {(d["group"], d["what"], d["subject"]): d["values"] for d in report.to_json()["drift"]}
    mysql = {key: values for key, values in drifts.items() if key[1].startswith("MariaDB/MySQL")}
    assert set(mysql) == {("db", "MariaDB/MySQL version", "db"),
                          ("db", "MariaDB/MySQL setting", "db innodb_buffer_pool_size"),
                          ("db", "MariaDB/MySQL setting", "db long_query_time")}
    # hostname and port name the server; m3/m4's sort_buffer_size differs but nobody set it (auto)
    assert sorted((v["value"], v["hosts"]) for v in mysql[("db", "MariaDB/MySQL version", "db")]) == [
        ("MariaDB 10.11.6-MariaDB", ["m1"]), ("MariaDB 11.4.2-MariaDB", ["m2"])]
    assert mysql[("db", "MariaDB/MySQL setting", "db innodb_buffer_pool_size")] == [
        {"value": str(2 * 2**30), "hosts": ["m1"]}, {"value": str(4 * 2**30), "hosts": ["m2"]}]
    terminal, markdown, html = render_terminal(report, 80), render_markdown(report), render_html(report)
    assert "MariaDB/MySQL setting db long_query_time" in markdown and "MariaDB 11.4.2-MariaDB" in markdown
    assert "MariaDB/MySQL setting <code>db long_query_time</code>" in html
    assert "MariaDB 11.4.2-MariaDB" in html
    assert all(word in terminal for word in ("MariaDB/MySQL", "long_query_time", "11.4.2-MariaDB"))


def test_secret_reuse_through_fingerprints_and_another_key_shares_nothing(
        tmp_path: Path, base: dict[str, Any]) -> None:
    where = "env:/srv/app/.env:POSTGRES_PASSWORD"
    token = "env:/srv/app/.env:API_TOKEN"
    write_host(tmp_path, "a", with_secrets(base, KEY, {where: CANARY, token: "t1" * 9}))
    write_host(tmp_path, "b", with_secrets(base, KEY, {"compose:shop/db:POSTGRES_PASSWORD": CANARY}))
    write_host(tmp_path, "c", with_secrets(base, OTHER_KEY, {where: CANARY}))
    write_host(tmp_path, "d", base)  # an old snapshot without fingerprints
    report = report_of(tmp_path)
    assert report.to_json()["secret_reuse"] == [{
        "hosts": ["a", "b"],
        "places": [{"host": "a", "where": where},
                   {"host": "b", "where": "compose:shop/db:POSTGRES_PASSWORD"}]}]
    fingerprints = {e["fingerprint"] for h in report.hosts for e in h.fingerprints}
    renders = (render_json(report), render_terminal(report, 80), render_markdown(report), render_html(report))
    for text in renders:
        assert CANARY not in text
        assert not any(f in text for f in fingerprints)
    assert "One secret on several hosts" in render_terminal(report, 80)


def test_a_hosts_findings_are_those_of_audit_facts(tmp_path: Path, base: dict[str, Any]) -> None:
    path = write_host(tmp_path, "web1", variant(base, load=9.0, work_mem="1GB"), ["web"])
    alone = run("audit", "--facts", str(path), "--format", "json")
    assert alone.returncode == 1, alone.stderr
    fleet = run("fleet", "report", str(tmp_path), "--format", "json")
    assert fleet.returncode == 1, fleet.stderr
    host = json.loads(fleet.stdout)["hosts"][0]
    assert host["findings"] == json.loads(alone.stdout)["findings"]
    assert len(host["findings"]) > 5


def test_bad_input_is_reported_per_host_in_plain_words(tmp_path: Path, base: dict[str, Any]) -> None:
    fleet = tmp_path / "fleet"
    write_host(fleet, "good", base)
    write_host(fleet, "malformed", None).write_text('{"schema_version": 1, "data": {', encoding="utf-8")
    write_host(fleet, "future", {**base, "schema_version": 2})
    write_host(fleet, "nested", None).write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    write_host(fleet, "list", None).write_text("[1, 2]", encoding="utf-8")
    with open(write_host(fleet, "huge", None), "wb") as handle:
        handle.truncate(MAX_SNAPSHOT_BYTES + 1)
    outside = write_host(tmp_path / "elsewhere", "x", base)
    (fleet / "linked").symlink_to(outside.parent, target_is_directory=True)
    os.symlink(outside, write_host(fleet, "snaplink", None))
    os.mkfifo(write_host(fleet, "fifo", None))
    write_host(fleet, "badgroups", base).with_name("groups.json").write_text("{oops")
    (fleet / ".fleet-key").write_text("00" * 32)
    hosts = hosts_by_name(report_of(fleet))
    reasons = {n: h["reason"] for n, h in hosts.items()}
    assert hosts["good"]["status"] == "ok" and reasons["good"] is None
    assert ".fleet-key" not in hosts
    assert "is not valid JSON (Expecting property name enclosed in double quotes" in reasons["malformed"]
    assert "facts schema_version 2 is not 1; collect them again with this version" in reasons["future"]
    assert "is nested too deeply to be a snapshot: not read" in reasons["nested"]
    assert "a facts snapshot is a JSON object, not a list" in reasons["list"]
    assert "is 32.0 MiB, more than the 32.0 MiB it may be: not read" in reasons["huge"]
    assert reasons["linked"] == f"linked is a symbolic link out of {fleet}: not read"
    assert "is a symbolic link out of the fleet directory: not read" in reasons["snaplink"]
    assert "a FIFO (named pipe), not a regular file: not read" in reasons["fifo"]
    assert hosts["badgroups"]["status"] == "ok" and "groups.json is not valid JSON" in reasons["badgroups"]
    bad = set(hosts) - {"good", "badgroups"}
    assert all(hosts[n]["status"] == "failed" and not hosts[n]["audited"] for n in bad)
    assert all("Traceback" not in r for r in reasons.values() if r)


def test_the_command_prints_80_columns_and_json(tmp_path: Path, base: dict[str, Any]) -> None:
    write_host(tmp_path, "web-1.example.org", base, ["web"])
    write_host(tmp_path, "web-2.example.org", variant(base, pg_version="17.2"), ["web"],
               NOW - timedelta(days=5))
    terminal = run("fleet", "report", str(tmp_path), env={"COLUMNS": "80"})
    assert terminal.returncode == 1, terminal.stderr
    lines = terminal.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    for expected in ("Hosts by severity", "Findings by code", "Drift inside a group", "Hosts not current",
                     "web-1.example.org", "newest snapshot is 5 days old"):
        assert expected in terminal.stdout
    out = tmp_path.parent / "fleet.json"
    as_json = run("fleet", "report", str(tmp_path), "--format", "json", "--out", str(out), "--stale", "7d")
    document = json.loads(out.read_text())
    assert as_json.returncode == 1  # findings at or above high
    assert {"schema_version", "hosts", "by_code", "drift", "secret_reuse", "severity_counts"} <= set(document)
    assert [(h["name"], h["status"]) for h in document["hosts"]] == [("web-1.example.org", "ok"),
                                                                      ("web-2.example.org", "ok")]
    assert set(document["hosts"][0]) >= {"name", "status", "collected_at", "reason", "findings"}
    md = run("fleet", "report", str(tmp_path), "--format", "md")
    assert md.stdout.startswith("# Fleet audit: ") and "| web-1.example.org | ok |" in md.stdout


def test_exit_2_on_an_empty_or_missing_dir_and_a_bad_stale(tmp_path: Path) -> None:
    empty = run("fleet", "report", str(tmp_path))
    assert empty.returncode == 2
    assert f"no hosts in {tmp_path}: collect them first with `stackaudit fleet collect`" in empty.stderr
    missing = run("fleet", "report", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "is not a directory" in missing.stderr
    stale = run("fleet", "report", str(tmp_path), "--stale", "soon")
    assert stale.returncode == 2 and "--stale: not a duration: 'soon'" in stale.stderr
    (tmp_path / "h").mkdir()
    (tmp_path / "h" / "20261203T142400Z.json").write_text("nope")
    unreadable = run("fleet", "report", str(tmp_path), "--format", "json")
    assert unreadable.returncode == 2 and json.loads(unreadable.stdout)["summary"]["audited"] == 0
    assert "Traceback" not in empty.stderr + missing.stderr + stale.stderr + unreadable.stderr
    with pytest.raises(FleetError):
        build(tmp_path / "nope", Settings(), TWO_DAYS)


def test_html_has_the_heatmap_in_the_single_host_style(tmp_path: Path, base: dict[str, Any]) -> None:
    write_host(tmp_path, "a", variant(base, load=9.0), ["web"])
    write_host(tmp_path, "b", base, ["web"])
    page = render_html(report_of(tmp_path))
    assert '<table class="heatmap">' in page
    assert 'title="a SYS004: medium">1</td>' in page and 'title="b SYS004: none">' in page
    assert "sev sev-high" in page and "details class=\"finding\"" in page
    assert 'id="finding-0-0"' in page and 'id="finding-1-0"' in page
    assert "<script>" in page and 'src="http' not in page and 'href="http' not in page  # self-contained
