"""`stackaudit demo` end to end: a real PostgreSQL 18, the example stack, both reports written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def test_demo_writes_both_reports_with_measured_findings(tmp_path: Path) -> None:
    env = {**os.environ, "DOCKER_HOST": "unix:///nonexistent/docker.sock",
           "STACKAUDIT_STATE_DIR": str(tmp_path / "state")}
    result = subprocess.run([sys.executable, "-m", "stackaudit", "demo", "--out-dir", str(tmp_path)],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    codes = {f["code"] for f in report["findings"]}
    # From the seeded database: the duplicate index and the statement slow by construction (pg_sleep),
    # which PG402 must name on any machine, fast or slow.
    assert "PG302" in codes
    slow = [f for f in report["findings"] if f["code"] == "PG402"]
    assert any("month_end_statement" in f["message"] for f in slow), slow
    # From the example stack shaped like the reference report (ERRATA rows 3 and 16).
    assert {"PG010", "SEC001", "SEC004", "SEC007"} <= codes
    # ERRATA 14: 4 Puma workers x 8 threads + Sidekiq 15 fits in 97 connections: no budget finding.
    assert "PG101" not in codes
    assert report["facts"]["postgres"]["version"].startswith("18")
    markdown = (tmp_path / "report.md").read_text()
    assert "## Executive summary" in markdown and "PG302" in markdown
    # The demo's throwaway secrets stay out of both reports.
    for secret in ("demo-secret-key-base-not-for-production", "demo-tunnel-token-0000"):
        assert secret not in markdown and secret not in json.dumps(report)
    # The server it started is gone.
    assert "stackaudit-demo-" not in subprocess.run(["ps", "-eo", "args"], capture_output=True,
                                                    text=True).stdout


def test_mariadb_demo_writes_both_reports_with_measured_findings(tmp_path: Path) -> None:
    env = {**os.environ, "DOCKER_HOST": "unix:///nonexistent/docker.sock",
           "STACKAUDIT_STATE_DIR": str(tmp_path / "state")}
    command = [sys.executable, "-m", "stackaudit", "demo", "--mysql", "--out-dir", str(tmp_path)]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "audit done:" in result.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    by_code: dict[str, list[str]] = {}
    for finding in report["findings"]:
        by_code.setdefault(finding["code"], []).append(finding["message"])
    # Seeded: the redundant index, the passwordless and any-host accounts, a binary log without
    # expiry, and the statement slow by construction (SLEEP), which MY402 names on any machine.
    assert any("entries_account_idx" in m for m in by_code["MY302"])
    assert [m for m in by_code["MY601"] if "'reporting'@'localhost'" in m]
    assert not [m for m in by_code["MY601"] if "mariadb.sys" in m]  # locked: it cannot log in
    assert "MY603" in by_code and "MY501" in by_code
    assert any("month_end_statement" in m for m in by_code["MY402"])
    assert report["facts"]["mysql"]["servers"][0]["version"].startswith("10.11")
    markdown = (tmp_path / "report.md").read_text()
    assert "## Executive summary" in markdown and "MY302" in markdown
    for secret in ("demo-mariadb-root-not-for-production", "demo-root-anywhere-not-for-production"):
        assert secret not in markdown and secret not in json.dumps(report)
    assert "stackaudit-demo-" not in subprocess.run(["ps", "-eo", "args"], capture_output=True,
                                                    text=True).stdout
