"""Generated Prometheus rules checked and unit-tested with promtool; the dashboard's queries."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from stackaudit.config import Settings
from stackaudit.monitor.metrics import GAUGES, PREFIX
from stackaudit.monitor.prom_rules import dashboard, rule_groups, rules_yaml

PROMTOOL = "/usr/bin/promtool"
OTHER_METRICS = {
    "findings",
    "finding_active",
    "check_timestamp_seconds",
    "check_duration_seconds",
    "source_up",
}
EXPORTED = {PREFIX + name for name in (*GAUGES, *OTHER_METRICS)}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=60)


@pytest.mark.integration
def test_rules_pass_promtool_check(tmp_path: Path) -> None:
    path = tmp_path / "stackaudit.yml"
    path.write_text(rules_yaml(Settings(thresholds={"SYS001": {"/var/lib/docker": {"high_percent": 80}}})))
    done = promtool("check", "rules", str(path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


@pytest.mark.integration
def test_rules_fire_at_the_rule_thresholds(tmp_path: Path) -> None:
    """promtool's rule unit tests: the alerts fire at SYS001's 75%/85% and a per-mount override."""
    settings = Settings(thresholds={"SYS001": {"/srv/data": {"high_percent": 90, "critical_percent": 95}}})
    (tmp_path / "rules.yml").write_text(rules_yaml(settings))
    cases = {
        "rule_files": ["rules.yml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {
                        "series": 'stackaudit_disk_used_ratio{mountpoint="/",holds="root",instance="h1"}',
                        "values": "0.8x30",
                    },
                    {
                        "series": 'stackaudit_disk_used_ratio{mountpoint="/srv/data",holds="extra"}',
                        "values": "0.8x30",
                    },
                    {
                        "series": 'stackaudit_disk_used_ratio{mountpoint="/var",holds="docker"}',
                        "values": "0.7x30",
                    },
                    {
                        "series": 'stackaudit_disk_forecast_seconds_to_full{mountpoint="/var",instance="h1"}',
                        "values": "432000x60",
                    },
                    {
                        "series": 'stackaudit_backup_age_seconds{database="app",instance="h1"}',
                        "values": "100000x10",
                    },
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "15m",
                        "alertname": "StackauditDiskSpaceHigh",
                        "exp_alerts": [
                            {
                                "exp_labels": {
                                    "severity": "warning",
                                    "code": "SYS001",
                                    "mountpoint": "/",
                                    "holds": "root",
                                    "instance": "h1",
                                },
                                "exp_annotations": {
                                    "summary": "Disk / (root) is 80% full on h1",
                                    "description": "Used share at or above 75% (critical at 85%).",
                                    "explain": "stackaudit explain SYS001",
                                },
                            }
                        ],
                    },
                    {"eval_time": "15m", "alertname": "StackauditDiskSpaceHighSrvData", "exp_alerts": []},
                    {"eval_time": "15m", "alertname": "StackauditDiskSpaceCritical", "exp_alerts": []},
                    {
                        "eval_time": "45m",
                        "alertname": "StackauditDiskFullSoon",
                        "exp_alerts": [
                            {
                                "exp_labels": {"severity": "warning", "code": "SYS001", "mountpoint": "/var",
                                               "instance": "h1"},
                                "exp_annotations": {
                                    "summary": "Disk /var full in 5d 0h 0m 0s at the recent rate on h1",
                                    "description": "The fill-rate forecast reaches 100% within 14 days.",
                                    "explain": "stackaudit explain SYS001",
                                },
                            }
                        ],
                    },
                    {
                        "eval_time": "1m",
                        "alertname": "StackauditBackupStale",
                        "exp_alerts": [
                            {
                                "exp_labels": {"severity": "critical", "code": "BAK001", "database": "app",
                                               "instance": "h1"},
                                "exp_annotations": {
                                    "summary": "Newest verified backup of app is 1d 3h 46m 40s old on h1",
                                    "description": "No verified backup in the last 26 hours.",
                                    "explain": "stackaudit explain BAK001",
                                },
                            }
                        ],
                    },
                ],
            }
        ],
    }
    (tmp_path / "tests.yml").write_text(json.dumps(cases))  # JSON is YAML
    done = promtool("test", "rules", str(tmp_path / "tests.yml"))
    assert done.returncode == 0, done.stdout + done.stderr


def test_rules_and_dashboard_use_only_exported_metrics() -> None:
    settings = Settings()
    exprs = [
        r["expr"] for g in rule_groups(settings)["groups"] if g["name"] == "stackaudit" for r in g["rules"]
    ]
    exprs += [t["expr"] for p in dashboard(settings)["panels"] for t in p["targets"]]
    used = {name for expr in exprs for name in re.findall(r"stackaudit_[a-z_]+", expr)}
    assert used and used <= EXPORTED, used - EXPORTED


def test_every_rule_names_a_code_and_its_explain_command() -> None:
    rules = [rule for group in rule_groups(Settings())["groups"] for rule in group["rules"]]
    assert rules and "SYS001" in {rule["labels"]["code"] for rule in rules}  # not an empty loop
    for rule in rules:
        assert re.fullmatch(r"[A-Z]{2,3}\d{3}", rule["labels"]["code"])
        assert rule["annotations"]["explain"] == f"stackaudit explain {rule['labels']['code']}"
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert "{{ $labels.instance }}" in rule["annotations"]["summary"], rule["alert"]  # which host


def test_dashboard_command_prints_grafana_json() -> None:
    from typer.testing import CliRunner

    from stackaudit.cli import app

    done = CliRunner().invoke(app, ["monitoring", "dashboard"])
    assert done.exit_code == 0
    board = json.loads(done.stdout)
    assert board["uid"] == "stackaudit"
    assert {p["title"] for p in board["panels"]} >= {"Disk used (SYS001)", "Disk full in (forecast)"}
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))


@pytest.mark.integration
def test_rules_command_output_passes_promtool(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from stackaudit.cli import app

    out = tmp_path / "rules.yml"
    done = CliRunner().invoke(app, ["monitoring", "rules", "--out", str(out)])
    assert done.exit_code == 0, done.output
    assert promtool("check", "rules", str(out)).returncode == 0
