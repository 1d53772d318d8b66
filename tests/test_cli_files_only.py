"""The command line on files alone (issue 18.1) and on bad input (18.5): what runs, what the terminal
shows, the exit code."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.test_cli import EXAMPLE, run


def stack(tmp_path: Path, compose: str) -> Path:
    directory = tmp_path / "stack"
    directory.mkdir()
    (directory / "compose.yml").write_text(compose, encoding="utf-8")
    return directory


def test_files_only_audit_runs_the_app_and_redis_rules(tmp_path: Path) -> None:
    project = tmp_path / "ref"
    shutil.copytree(EXAMPLE, project)
    result = run("audit", "--sources", "compose,env", "-p", str(project), "--format", "json")
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    skipped = {s["code"] for s in report["skipped"]}
    assert not skipped & {"APP001", "APP003", "APP004", "APP005", "RDS001", "RDS002", "RDS003", "SEC005"}
    rds001 = next(f for f in report["findings"] if f["code"] == "RDS001")
    limit_source = {e["key"]: e["source"] for e in rds001["evidence"]}["container_memory_limit_bytes"]
    assert limit_source == "compose.yml:54"  # deploy.resources.limits.memory
    assert "app" in report["facts"]


def test_an_unparseable_compose_file_fails_loudly(tmp_path: Path) -> None:
    directory = stack(tmp_path, "services:\n  web:\n    image: nginx\n   ports: ['80:80']\n")
    result = run("audit", "--sources", "compose,env", "-p", str(directory))
    assert result.returncode == 2
    assert "✓ compose" not in result.stderr
    assert (f"✗ {directory}/compose.yml:4: malformed YAML: expected <block end>, but found "
            "'<block mapping start>'") in result.stderr
    assert "bad input: fix the file(s) marked ✗ (exit code 2)" in result.stderr
    assert "No findings in what could be read: the input is bad" in result.stdout
    listed = result.stdout.split("skipped for missing sources:", 1)[1]
    assert "APP001" in listed and "SEC004" in listed and "RDS001" in listed


def test_a_bad_port_keeps_the_audit_going_but_fails_the_run(tmp_path: Path) -> None:
    directory = stack(tmp_path, "services:\n  db:\n    image: postgres:16\n    ports: 5432\n")
    result = run("audit", "--sources", "compose", "-p", str(directory), "--format", "json")
    assert result.returncode == 2
    assert (f"✗ {directory}/compose.yml:4: service 'db': `ports` must be a list, not the number 5432: "
            "read as [5432]") in result.stderr
    report = json.loads(result.stdout)
    assert [e["invalid"] for e in report["collection_errors"] if "`ports`" in e["why"]] == [True]
    assert "SEC004" in {f["code"] for f in report["findings"]}  # the service was still audited
    assert "not iterable" not in result.stdout + result.stderr
    assert "bad input: fix the file(s) marked ✗ (exit code 2); rules skipped: " in result.stderr


def test_a_valid_file_still_exits_on_its_findings(tmp_path: Path) -> None:
    directory = stack(tmp_path, "services:\n  web:\n    image: nginx:1.27.2\n")
    result = run("audit", "--sources", "compose", "-p", str(directory))
    assert result.returncode == 0, result.stderr
    assert "✓ compose" in result.stderr and "✗" not in result.stderr


def test_tune_redis_advises_a_redis_known_from_its_files(tmp_path: Path) -> None:
    directory = stack(tmp_path, "services:\n  redis:\n    image: redis:7\n    mem_limit: 512m\n"
                                "  worker:\n    build: .\n    command: bundle exec sidekiq\n"
                                "    environment:\n      REDIS_URL: redis://redis:6379/0\n")
    result = run("tune", "redis", "-p", str(directory), "--format", "json")
    assert result.returncode == 0, result.stderr
    [advice] = json.loads(result.stdout)["instances"]
    assert advice["recommended"]["maxmemory"] == "307mb"
    assert advice["recommended"]["maxmemory_policy"] == "noeviction"
    assert advice["current"] == {"maxmemory_bytes": 0, "maxmemory_policy": "noeviction"}
