"""The plan is a pure function of findings, tuner proposals and facts (no service here)."""

from __future__ import annotations

import json
from pathlib import Path

from stackaudit.config import Settings
from stackaudit.derive.postgres import postgres_tuning as tune
from stackaudit.facts import Facts
from stackaudit.model import Evidence, Finding, Phase, Recommendation, Risk, Severity
from stackaudit.pipeline import audit
from stackaudit.remediation import actions
from stackaudit.remediation.plan import (
    ALTER_SYSTEM,
    COMPOSE_OVERRIDE,
    ENV,
    MANUAL,
    PG_SETTING,
    Plan,
    build_plan,
    describe,
    override_path,
    plan_for,
)
from tests.tuning.pg_facts import REPORT_SETTINGS, dedicated_host, pg_settings, reference_facts


def _finding(code: str, subject: str, risk: Risk = Risk.MANUAL) -> Finding:
    return Finding(
        code,
        "x",
        Severity.HIGH,
        subject,
        f"{code} fired on {subject}",
        (Evidence("postgres", "k", 1),),
        Recommendation(f"fix {subject}", "some", risk, 5, Phase.NOW, action=f"do {code}"),
    )


def _host_facts() -> Facts:
    facts = dedicated_host(16, 4)
    facts.data["postgres"]["data_directory"] = {"path": "/var/lib/postgresql/18/main"}
    return facts


def test_host_server_settings_become_alter_system_steps_with_risk_by_restart() -> None:
    facts = _host_facts()
    plan = build_plan([_finding("PG001", "shared_buffers")], facts, tune(facts))
    steps = {s.params["name"]: s for s in plan.steps if s.kind == PG_SETTING}
    shared = steps["shared_buffers"]
    assert shared.restart and shared.risk == Risk.CONFIRM and shared.params["method"] == ALTER_SYSTEM
    assert shared.current == "128MB" and shared.desired != "128MB"
    assert "PG001" in shared.codes  # the finding it answers is named, not repeated as a manual step
    assert not any(s.kind == MANUAL and "PG001" in s.codes for s in plan.steps)
    reloadable = [s for s in steps.values() if not s.restart]
    assert reloadable and all(s.risk == Risk.SAFE for s in reloadable)
    assert "auto.conf restored byte for byte" in shared.undo
    assert plan.target["budget"]["postgres_bytes"] > 0


def test_settings_that_already_comply_are_noops_with_a_reason() -> None:
    facts = _host_facts()
    plan = build_plan([], facts, tune(facts))
    noops = {n.subject: n.reason for n in plan.noops}
    assert "PostgreSQL checkpoint_completion_target" in noops
    assert noops["PostgreSQL checkpoint_completion_target"].startswith("already 0.9")
    assert not any(s.params.get("name") == "checkpoint_completion_target" for s in plan.steps)


def test_containerised_server_gets_compose_override_steps() -> None:
    facts = reference_facts(REPORT_SETTINGS)
    facts.data["compose"] = {
        "projects": [
            {
                "name": "permoney",
                "dir": "/srv/permoney",
                "files": ["/srv/permoney/compose.yml"],
                "services": {"db": {"command": ["postgres", "-c", "max_connections=200"]}},
            }
        ]
    }
    plan = build_plan([], facts, tune(facts))
    pg_steps = [s for s in plan.steps if s.kind == PG_SETTING]
    assert pg_steps and all(s.params["method"] == COMPOSE_OVERRIDE for s in pg_steps)
    assert all(s.risk == Risk.CONFIRM and s.restart for s in pg_steps)  # a recreate restarts it
    assert plan.target["compose"]["override_file"] == "/srv/permoney/compose.override.yml"
    assert plan.target["compose"]["command"] == ["postgres", "-c", "max_connections=200"]
    assert not any("INITDB" in s.change for s in plan.steps)  # ERRATA 3


def test_setting_from_the_command_line_is_manual_on_a_host_server() -> None:
    facts = _host_facts()
    facts.data["postgres"]["settings"].update(pg_settings({"work_mem": "256MB"}, source="command line"))
    plan = build_plan([], facts, tune(facts))
    work_mem = next(s for s in plan.steps if s.params.get("name") == "work_mem")
    assert work_mem.risk == Risk.MANUAL and "overrides ALTER SYSTEM" in work_mem.change


def test_unknown_location_makes_settings_manual() -> None:
    facts = _host_facts()
    facts.data["postgres"]["runs_in"] = {"kind": "unknown"}
    plan = build_plan([], facts, tune(facts))
    assert all(s.risk == Risk.MANUAL for s in plan.steps if s.kind == PG_SETTING)


def test_other_findings_become_manual_steps_and_clean_codes_point_to_clean() -> None:
    plan = build_plan([_finding("PG301", "public.t_idx"), _finding("DKR001", "images")], Facts(), None)
    manual = {s.codes[0]: s for s in plan.steps if s.kind == MANUAL}
    assert set(manual) == {"PG301", "DKR001"}
    assert "do PG301" in manual["PG301"].change and "stackaudit clean" in manual["DKR001"].change
    assert all(s.risk == Risk.MANUAL for s in manual.values())


def test_env_changes_target_the_env_file_that_has_the_key() -> None:
    facts = Facts(
        data={
            "env": {
                "files": [
                    {"path": "/srv/a/.env.local", "keys": ["OTHER"], "exists": True},
                    {"path": "/srv/a/.env", "keys": ["WEB_CONCURRENCY"], "exists": True},
                ]
            }
        }
    )
    plan = build_plan([], facts, None, {"WEB_CONCURRENCY": "2", "RAILS_MAX_THREADS": "5"})
    env = {s.params["key"]: s for s in plan.steps if s.kind == ENV}
    assert env["WEB_CONCURRENCY"].params == {"path": "/srv/a/.env", "key": "WEB_CONCURRENCY", "present": True}
    assert env["RAILS_MAX_THREADS"].params["present"] is False  # appended to the first .env
    assert all(s.risk == Risk.CONFIRM for s in env.values())


def test_empty_audit_is_one_noop() -> None:
    plan = build_plan([], Facts(), None)
    assert not plan.steps and plan.noops[0].reason.startswith("no finding")
    assert "Nothing to change" in describe(plan)


def test_plan_json_round_trip_is_exact() -> None:
    facts = reference_facts(REPORT_SETTINGS)
    facts.data["compose"] = {
        "projects": [
            {"name": "permoney", "dir": "/srv/p", "files": ["/srv/p/compose.yaml"], "services": {"db": {}}}
        ]
    }
    plan = build_plan([_finding("PG301", "idx")], facts, tune(facts), {"X": "1"})
    text = json.dumps(plan.to_json())
    again = Plan.from_json(json.loads(text))
    assert again == plan
    assert json.dumps(again.to_json()) == text


def test_plan_for_an_audit_of_a_snapshot_has_the_rules_and_tuners_steps() -> None:
    report = audit(Settings(state_dir=Path("/nonexistent")), reference_facts(REPORT_SETTINGS))
    plan = plan_for(report.findings, report.derivations, report.facts)
    codes = {c for s in plan.steps for c in s.codes}
    assert "PG003" in codes  # 100 x 256MB work_mem: the overcommit finding, answered by a work_mem step
    assert any(s.params.get("name") == "work_mem" for s in plan.steps)


def test_override_path_follows_the_main_file_name() -> None:
    assert override_path(Path("/p"), ["/p/docker-compose.yml"]) == Path("/p/docker-compose.override.yml")
    assert override_path(Path("/p"), ["/p/compose.yaml", "/p/compose.override.yaml"]) == Path(
        "/p/compose.override.yaml"
    )
    assert override_path(Path("/p"), []) == Path("/p/compose.override.yaml")


def test_override_text_keeps_other_keys_and_existing_flags() -> None:
    existing = b"# ours\nservices:\n  web:\n    image: app\n  db:\n    shm_size: 256mb\n"
    text = actions.override_text(
        existing,
        "db",
        ["postgres", "-c", "max_connections=200", "-c", "work_mem=4MB"],
        {"work_mem": "16MB", "shared_buffers": "1GB"},
    ).decode()
    assert "# ours" in text and "image: app" in text and "shm_size: 256mb" in text
    assert "command: [postgres, -c, max_connections=200, -c, work_mem=16MB, -c, shared_buffers=1GB]\n" in text


def test_env_line_edit_keeps_everything_else() -> None:
    data = b"# comment\nexport WEB_CONCURRENCY='4'\r\nSECRET=abc\n"
    changed = actions.set_env_value(data, "WEB_CONCURRENCY", "2")
    assert changed == b"# comment\nexport WEB_CONCURRENCY='2'\r\nSECRET=abc\n"
    assert actions.set_env_value(b"A=1", "B", "2") == b"A=1\nB=2\n"
    assert actions.env_value(changed, "WEB_CONCURRENCY") == "2"


def test_values_compare_as_postgresql_reads_them() -> None:
    memory = {"unit": "kB", "vartype": "integer"}
    pages = {"unit": "8kB", "vartype": "integer"}
    assert actions.same_value("1GB", "1024MB", memory)
    assert actions.same_value("16384", "128MB", pages)
    assert not actions.same_value("4MB", "16MB", memory)
    assert actions.same_value("on", "true", {"vartype": "bool"})
    assert actions.same_value("5min", "300s", {"unit": "s", "vartype": "integer"})
