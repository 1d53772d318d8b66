"""The parts of `fleet collect` that need no SSH: the folder and its files, events to results, the
callback's stages and reasons, the environment Ansible runs with, and what the playbook never does."""

from __future__ import annotations

import importlib.util
import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

import pytest

from stackaudit.fleet import runner
from stackaudit.fleet.collect import (
    HostResult,
    Tally,
    exit_code,
    fleet_key,
    prepare,
    result_of,
    snapshot_name,
    write_error,
)
from stackaudit.fleet.inventory import InventoryHost
from stackaudit.fleet.wheelhouse import constraints, source_hash

ANSIBLE_DIR = runner.ansible_dir()


def callback() -> ModuleType:
    return callback_like("callback_plugins", "stackaudit_progress.py")


def callback_like(folder: str, name: str) -> ModuleType:
    """A plugin file of the shipped ansible folder, loaded as Ansible loads it (not a package)."""
    spec = importlib.util.spec_from_file_location(name.removesuffix(".py"), ANSIBLE_DIR / folder / name)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_exit_code_all_some_none() -> None:
    ok, failed = HostResult("a", "collected"), HostResult("b", "failed", stage="collect", reason="x")
    assert exit_code([ok, ok]) == 0 and exit_code([ok, failed]) == 1 and exit_code([failed]) == 2


def test_snapshot_names_are_sortable_utc_without_colons() -> None:
    assert snapshot_name("2026-12-03T15:24:00+01:00") == "20261203T142400Z.json"
    assert snapshot_name("2026-12-03T14:24:00") == "20261203T142400Z.json"
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert snapshot_name("not a time", now) == "20260102T030405Z.json"


def test_the_folder_is_private_and_the_key_made_once(tmp_path: Path) -> None:
    out = prepare(tmp_path / "fleet", [InventoryHost("web1", ("web", "prod")), InventoryHost("db1", ())])
    assert out.stat().st_mode & 0o777 == 0o700 and (out / "web1").stat().st_mode & 0o777 == 0o700
    key = (out / ".fleet-key").read_text()
    assert len(bytes.fromhex(key.strip())) == 32 and (out / ".fleet-key").stat().st_mode & 0o777 == 0o600
    fleet_key(out)
    assert (out / ".fleet-key").read_text() == key
    groups = json.loads((out / "web1" / "groups.json").read_text())
    assert groups == {"host": "web1", "groups": ["prod", "web"]}
    assert json.loads((out / "db1" / "groups.json").read_text())["groups"] == []


def test_a_fetched_snapshot_is_moved_into_place_by_its_time(tmp_path: Path) -> None:
    out = prepare(tmp_path, [InventoryHost("web1", ())])
    (out / "web1" / ".incoming" / "snapshot.json").write_text(json.dumps(
        {"schema_version": 1, "collected_at": "2026-12-03T14:24:00+00:00", "data": {}}))
    result = result_of({"event": "collected", "host": "web1"}, out)
    assert result is not None and result.status == "collected"
    assert result.snapshot == out / "web1" / "20261203T142400Z.json"
    assert result.snapshot.stat().st_mode & 0o777 == 0o600
    assert not (out / "web1" / ".incoming" / "snapshot.json").exists()


def test_a_fetched_file_that_is_not_a_snapshot_is_a_fetch_failure(tmp_path: Path) -> None:
    out = prepare(tmp_path, [InventoryHost("web1", ())])
    (out / "web1" / ".incoming" / "snapshot.json").write_text("[1, 2]")
    result = result_of({"event": "collected", "host": "web1"}, out)
    assert result is not None and (result.status, result.stage) == ("failed", "fetch")


def test_a_metrics_host_is_done_when_its_role_is_and_a_role_failure_keeps_the_snapshot(
        tmp_path: Path) -> None:
    out = prepare(tmp_path, [InventoryHost(h, ()) for h in ("plain", "metered", "broken")])
    for host in ("plain", "metered", "broken"):
        (out / host / ".incoming" / "snapshot.json").write_text(json.dumps(
            {"schema_version": 1, "collected_at": "2026-12-03T14:24:00+00:00", "data": {}}))
    seen: list[HostResult] = []
    tally = Tally(out, {"plain", "metered", "broken"}, {"metered", "broken"}, seen.append)
    for event in ({"event": "collected", "host": "plain"}, {"event": "collected", "host": "metered"},
                  {"event": "collected", "host": "broken"}):
        tally.take(event)
    assert [r.host for r in seen] == ["plain"]  # the metrics hosts wait for their role
    tally.take({"event": "metrics-done", "host": "metered"})
    tally.take({"event": "failed", "host": "broken", "stage": "metrics",
                "reason": "There was an issue creating /x/textfile: Not a directory"})
    tally.finish()
    assert [(r.host, r.status, r.stage) for r in seen] == [
        ("plain", "collected", None), ("metered", "collected", None), ("broken", "failed", "metrics")]
    broken = tally.results["broken"]
    assert broken.snapshot == out / "broken" / "20261203T142400Z.json" and broken.snapshot.exists()
    error = json.loads((out / "broken" / "last-error.json").read_text())
    assert (error["stage"], error["reason"]) == (
        "metrics", "There was an issue creating /x/textfile: Not a directory")
    assert not (out / "metered" / "last-error.json").exists()
    assert exit_code(list(tally.results.values())) == 1


def test_a_metrics_failure_the_inventory_did_not_announce_still_fails_the_host(tmp_path: Path) -> None:
    out = prepare(tmp_path, [InventoryHost("web1", ())])
    (out / "web1" / ".incoming" / "snapshot.json").write_text(json.dumps({"schema_version": 1, "data": {}}))
    seen: list[HostResult] = []
    tally = Tally(out, {"web1"}, set(), seen.append)
    tally.take({"event": "collected", "host": "web1"})
    tally.take({"event": "failed", "host": "web1", "stage": "metrics", "reason": "no systemd"})
    tally.take({"event": "failed", "host": "web1", "stage": "collect", "reason": "the cleanup"})
    tally.finish()
    assert [(r.status, r.stage) for r in seen] == [("collected", None), ("failed", "metrics")]
    assert tally.results["web1"].snapshot is not None


def test_a_failure_is_written_redacted_with_its_stage(tmp_path: Path) -> None:
    out = prepare(tmp_path, [InventoryHost("db1", ())])
    reason = "could not connect to postgresql://app:Hunter2-Secret-99@10.0.0.5/app"
    result = result_of({"event": "failed", "host": "db1", "stage": "collect", "reason": reason}, out)
    assert result is not None
    write_error(out, result, now=datetime(2026, 12, 3, 14, 24, tzinfo=UTC))
    error = json.loads((out / "db1" / "last-error.json").read_text())
    assert error == {"host": "db1", "failed_at": "2026-12-03T14:24:00+00:00", "stage": "collect",
                     "reason": "could not connect to postgresql://app:***@10.0.0.5/app"}
    assert result_of({"event": "failed", "host": "db1", "stage": "odd"}, out).stage == "collect"  # type: ignore[union-attr]
    assert result_of({"event": "done"}, out) is None


def test_the_callback_names_the_stage_and_hides_what_no_log_hides() -> None:
    plugin = callback()
    assert plugin.stage_of("stackaudit_install : install: ship the wheelhouse") == "install"
    assert plugin.stage_of("fetch: the snapshot") == "fetch"
    assert plugin.stage_of("stackaudit_metrics : metrics: the unit folder") == "metrics"
    assert plugin.stage_of("Gathering Facts") == "collect"
    assert plugin.reason_of({"censored": "hidden", "msg": "secret"}) == plugin.HIDDEN
    script = {"msg": "non-zero return code", "rc": 1, "stderr": "Shared connection to h closed.\r\n",
              "stdout": "\x1b[31mERROR: no wheel\x1b[0m\r\n"}
    assert plugin.reason_of(script) == "ERROR: no wheel"
    assert plugin.reason_of({"msg": "Failed to connect: Host key verification failed."}).endswith("failed.")


def test_events_are_the_callbacks_lines_only() -> None:
    assert runner.parse_event('{"event": "done"}\n') == {"event": "done"}
    assert runner.parse_event("PLAY [x] ****\n") is None and runner.parse_event("[1]") is None


def test_the_users_ansible_settings_pass_through() -> None:
    env = runner.environment({"ANSIBLE_CALLBACK_PLUGINS": "/mine", "ANSIBLE_PIPELINING": "False",
                              "ANSIBLE_VAULT_PASSWORD_FILE": "/v", "ANSIBLE_STDOUT_CALLBACK": "yaml"})
    assert env["ANSIBLE_CALLBACK_PLUGINS"].endswith(":/mine") and env["ANSIBLE_PIPELINING"] == "False"
    assert env["ANSIBLE_VAULT_PASSWORD_FILE"] == "/v" and env["ANSIBLE_STDOUT_CALLBACK"] == runner.CALLBACK
    assert runner.environment({})["ANSIBLE_PIPELINING"] == "True"


@pytest.mark.parametrize("weakening", ["host_key_checking", "StrictHostKeyChecking=no",
                                       "StrictHostKeyChecking no", "UserKnownHostsFile=/dev/null"])
def test_nothing_shipped_weakens_host_key_checking(weakening: str) -> None:
    shipped = [*ANSIBLE_DIR.rglob("*"), *Path(runner.__file__).parent.glob("*.py")]
    for path in shipped:
        if path.is_file() and path.suffix in (".py", ".yml", ".sh", ".cfg"):
            assert weakening.lower() not in path.read_text().lower(), path


def test_the_secrets_travel_on_stdin_under_no_log() -> None:
    tasks = (ANSIBLE_DIR / "roles" / "stackaudit_collect" / "tasks" / "main.yml").read_text()
    carrier = tasks[tasks.index("stackaudit_collect:"):tasks.index("register: stackaudit_run")]
    assert "stdin:" in carrier and "no_log: true" in carrier and "environment:" not in carrier
    argv = carrier[carrier.index("argv:"):carrier.index("stdin:")]
    assert "stackaudit_pg_dsn" not in argv and "fleet_key" not in argv
    action = callback_like("action_plugins", "stackaudit_collect.py")
    assert "$dsn" in action.SCRIPT and "STACKAUDIT_PG_DSN=" in action.SCRIPT  # read from stdin only


def test_the_collect_action_writes_the_snapshot_privately_by_a_rename(tmp_path: Path) -> None:
    action = callback_like("action_plugins", "stackaudit_collect.py")
    dest = tmp_path / "snapshot.json"
    assert action.write_private(str(dest), '{"schema_version": 1}') is None
    assert dest.read_text() == '{"schema_version": 1}' and dest.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["snapshot.json"]  # no temp file left
    assert "cannot write" in action.write_private(str(tmp_path / "missing" / "s.json"), "{}")


def test_the_collect_script_runs_the_command_and_always_removes_the_hosts_copy(tmp_path: Path) -> None:
    """The remote script as the host's /bin/sh runs it: secrets from stdin, the snapshot after the
    marker exactly as written, the file removed after a success and after a failure."""
    action = callback_like("action_plugins", "stackaudit_collect.py")
    snapshot = tmp_path / "host.snapshot.json"
    writer = ('printf "%s" "{\\"key\\": \\"${#STACKAUDIT_FLEET_KEY}\\", \\"dsn\\": '
              '\\"${STACKAUDIT_PG_DSN:-none}\\"}" > "$1"; echo wrote "$1"')
    ran = subprocess.run(["sh", "-c", action.SCRIPT, "stackaudit", str(snapshot), "sh", "-c", writer, "x",
                          str(snapshot)], input="ab12\npostgresql://u:Secret-9@h/db\n", capture_output=True,
                         text=True, check=True)
    assert ran.stdout == action.MARKER + "\n" + '{"key": "4", "dsn": "postgresql://u:Secret-9@h/db"}'
    assert "wrote" in ran.stderr and not snapshot.exists()
    failed = subprocess.run(["sh", "-c", action.SCRIPT, "stackaudit", str(snapshot), "sh", "-c",
                             'echo partial > "$1"; exit 3', "x", str(snapshot)], input="ab12\n\n",
                            capture_output=True, text=True)
    assert failed.returncode == 3 and action.MARKER not in failed.stdout and not snapshot.exists()


def test_a_development_build_changes_with_its_sources(tmp_path: Path) -> None:
    (tmp_path / "stackaudit").mkdir()
    (tmp_path / "stackaudit" / "a.py").write_text("x = 1\n")
    before = source_hash(tmp_path)
    (tmp_path / "stackaudit" / "a.py").write_text("x = 22\n")
    assert source_hash(tmp_path) != before
    assert "stackaudit==" not in constraints().lower() and "typer==" in constraints().lower()
