"""Docker facts against the real (private) engine of the test session; objects are prefixed dkrfacts-."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

import docker
import pytest

from stackaudit.config import Settings
from stackaudit.facts import CollectContext, Facts, collect_source
from stackaudit.facts.docker import (
    memory_usage_bytes,
    parse_volume_history,
    published_ports,
    repository_of,
)
from stackaudit.rules import evaluate
from tests.services import DockerEngine

pytestmark = pytest.mark.integration

P = "dkrfacts"
COMPOSE = {"com.docker.compose.project": P, "com.docker.compose.service": "web",
           "com.docker.compose.project.working_dir": "/srv/dkrfacts",
           "com.docker.compose.project.config_files": "/srv/dkrfacts/compose.yml"}
LOG_LINE = "x" * 999  # 1000-byte lines: a 2 MB log in 2000 json-file records


def _wait_for(predicate: Any, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def scene(docker_engine: DockerEngine) -> dict[str, Any]:
    e = docker_engine
    ids: dict[str, Any] = {"v1": e.make_image(f"{P}-app", "v1", extra_files={"r": b"1"})}
    ids["dangling"] = e.make_image(f"{P}-app", "v2", extra_files={"r": b"2a"})
    ids["v2"] = e.make_image(f"{P}-app", "v2", extra_files={"r": b"2b"})  # v2 moves: the first is dangling
    ids["v3"] = e.make_image(f"{P}-app", "v3", extra_files={"r": b"3"})
    ids["pg"] = e.make_image(f"{P}-postgres", "15", extra_files={"pg": b"1"})
    web = e.run_container(ids["v3"], f"{P}-web", labels=COMPOSE, mem_limit="64m",
                          restart_policy={"Name": "always"},
                          command=["sh", "-c", f"yes {LOG_LINE} | head -c 2000000; sleep 3600"],
                          log_config={"type": "json-file", "config": {}})
    e.run_container(ids["v1"], f"{P}-old", detach_running=False, pid_mode="host", ipc_mode="host")
    pgdata = e.client.volumes.create(f"{P}-pgdata", labels={"com.docker.compose.project": P,
                                                            "com.docker.compose.volume": "pgdata"})
    Path(pgdata.attrs["Mountpoint"], "PG_VERSION").write_text("15\n")
    e.run_container(ids["pg"], f"{P}-db", mounts=[docker.types.Mount("/var/lib/postgresql/data", None)])
    gone = e.client.volumes.create(f"{P}-gone")
    user = e.run_container(ids["pg"], f"{P}-gone-user",
                           mounts=[docker.types.Mount("/var/lib/postgresql/data", gone.name)])
    user.remove(force=True)  # the volume stays, mounted by nobody; the engine's events remember who
    web.reload()
    _wait_for(lambda: Path(web.attrs["LogPath"]).stat().st_size > 2_000_000)
    return ids


@pytest.fixture(scope="module")
def facts(scene: dict[str, Any], docker_engine: DockerEngine) -> Facts:
    ctx = CollectContext(settings=Settings(docker_host=docker_engine.host), facts=Facts())
    assert collect_source(ctx, "docker"), ctx.facts.errors
    return ctx.facts


def _image(facts: Facts, image_id: str) -> dict[str, Any]:
    return next(i for i in facts["docker"]["images"] if i["id"] == image_id)


def _container(facts: Facts, name: str) -> dict[str, Any]:
    return next(c for c in facts["docker"]["containers"] if c["name"] == name)


def _volume(facts: Facts, name: str) -> dict[str, Any]:
    return next(v for v in facts["docker"]["volumes"] if v["name"] == name)


def test_engine_facts(facts: Facts, docker_engine: DockerEngine) -> None:
    engine = facts["docker"]["engine"]
    assert engine["version"].startswith("20.10") and engine["api_version"] == "1.41"
    assert engine["data_root"] == str(docker_engine.data_root)
    assert engine["storage_driver"] == "vfs"
    assert engine["mount"]["total_bytes"] > 0
    assert json.loads(json.dumps(facts["docker"])) == facts["docker"]  # saved snapshots audit the same
    assert Path(str(docker_engine.data_root)).resolve().as_posix().startswith(engine["mount"]["mountpoint"])


def test_images_know_their_users_and_danglers(facts: Facts, scene: dict[str, Any]) -> None:
    dangling = _image(facts, scene["dangling"])
    assert dangling["dangling"] and dangling["repo_tags"] == []
    v1 = _image(facts, scene["v1"])
    assert not v1["dangling"] and [u["name"] for u in v1["containers"]] == [f"{P}-old"]  # stopped user
    assert v1["shared_size_bytes"] == 0 and v1["unique_size_bytes"] == v1["size_bytes"] > 0
    assert v1["layers"] and sum(layer["size_bytes"] for layer in v1["layers"]) == v1["size_bytes"]


def test_releases_newest_first_with_the_current_ones_marked(facts: Facts, scene: dict[str, Any]) -> None:
    release = next(r for r in facts["docker"]["releases"] if r["repository"] == f"{P}-app")
    assert [i["id"] for i in release["images"]] == [scene["v3"], scene["v2"], scene["v1"]]
    assert [i["current"] for i in release["images"]] == [True, False, True]
    assert release["running"] and release["services"] == [f"{P}-old", "web"]


def test_container_facts(facts: Facts) -> None:
    web = _container(facts, f"{P}-web")
    assert web["state"] == "running" and web["compose_project"] == P and web["compose_service"] == "web"
    assert web["compose_config_files"] == ["/srv/dkrfacts/compose.yml"]
    assert web["memory_limit_bytes"] == 64 * 2**20
    assert 0 < web["memory_usage_bytes"] < 64 * 2**20
    assert web["restart_policy"] == "always" and web["network_mode"] == "none"
    assert web["log"]["driver"] == "json-file" and web["log"]["options"] == {}
    assert web["log"]["size_bytes"] > 2_000_000
    old = _container(facts, f"{P}-old")
    assert old["state"] == "created" and old["memory_limit_bytes"] is None
    assert old["memory_usage_bytes"] is None and old["uptime_seconds"] is None
    assert (old["pid_mode"], old["ipc_mode"]) == ("host", "host")  # SEC008 reads them
    assert web["pid_mode"] is None and web["ipc_mode"] in ("private", "shareable")  # the daemon's default


def test_volume_facts_and_database_look(facts: Facts) -> None:
    pgdata = _volume(facts, f"{P}-pgdata")
    assert not pgdata["anonymous"] and pgdata["compose_project"] == P and pgdata["containers"] == []
    assert pgdata["looks_like_database"] and "contains PG_VERSION" in pgdata["database_evidence"]
    assert pgdata["size_bytes"] == 3
    anonymous = next(v for v in facts["docker"]["volumes"]
                     if any(c["name"] == f"{P}-db" for c in v["containers"]))
    assert anonymous["anonymous"] and anonymous["database_kind"] == "postgres"
    assert anonymous["last_container"] == f"{P}-db"


def test_last_container_of_an_unmounted_volume_comes_from_engine_events(facts: Facts) -> None:
    gone = _volume(facts, f"{P}-gone")
    assert gone["containers"] == [] and gone["last_container"] == f"{P}-gone-user"
    assert gone["looks_like_database"]  # its last user ran a postgres image at the postgres data path


def test_build_cache_and_system_df(facts: Facts) -> None:
    docker_facts = facts["docker"]
    assert docker_facts["build_cache"]["known"] and docker_facts["build_cache"]["size_bytes"] == 0
    df = docker_facts["system_df"]
    assert df["images"]["count"] == len(docker_facts["images"])
    assert df["images"]["size_bytes"] >= sum(i["size_bytes"] for i in docker_facts["images"]
                                             if i["repository"] == f"{P}-app")
    assert docker_facts["summary"]["container_logs_bytes"] > 2_000_000


def test_rules_on_live_facts(facts: Facts) -> None:
    findings, _ = evaluate(facts, Settings(select=("DKR002", "DKR003")))
    subjects = {(f.code, f.subject) for f in findings}
    assert ("DKR003", f"{P}/web") in subjects
    assert ("DKR002", f"volume {P}-pgdata") in subjects
    assert not any(f.subject == f"volume {P}-gone" and "mounted by no container" not in f.message
                   for f in findings)


def test_stopped_daemon_is_a_collection_error_not_a_hang(tmp_path: Path) -> None:
    ctx = CollectContext(settings=Settings(docker_host=f"unix://{tmp_path}/missing.sock"), facts=Facts())
    assert not collect_source(ctx, "docker")
    [error] = ctx.facts.errors
    assert error.source == "docker" and "cannot reach the Docker engine" in error.why
    assert "no such file or directory" in error.why  # refused at once (ENOENT), not a timeout


def test_hung_daemon_times_out_into_a_collection_error(tmp_path: Path) -> None:
    path = tmp_path / "hung.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(path))
        server.listen(8)  # the kernel accepts connections; nobody ever answers
        ctx = CollectContext(settings=Settings(docker_host=f"unix://{path}", timeout_seconds=1.0),
                             facts=Facts())
        assert not collect_source(ctx, "docker")  # returns (pytest-timeout fails a hang)
    assert "no answer within the timeout" in ctx.facts.errors[0].why


def test_repository_of_references() -> None:
    assert repository_of("registry:5000/team/app:v3") == "registry:5000/team/app"
    assert repository_of("registry:5000/team/app") == "registry:5000/team/app"
    assert repository_of("postgres@sha256:" + "a" * 64) == "postgres"
    assert repository_of("sha256:" + "a" * 64) is None


def test_memory_usage_subtracts_inactive_file_like_docker_stats() -> None:
    assert memory_usage_bytes({"usage": 1000, "stats": {"total_inactive_file": 300}}) == 700  # cgroup v1
    assert memory_usage_bytes({"usage": 1000, "stats": {"inactive_file": 100}}) == 900  # cgroup v2
    assert memory_usage_bytes({}) is None


def test_published_ports_keep_the_host_ip() -> None:
    attrs = {"NetworkSettings": {"Ports": {"5432/tcp": [{"HostIp": "127.0.0.1", "HostPort": "5433"}],
                                           "6379/tcp": None}},
             "HostConfig": {"PortBindings": {}}}
    assert published_ports(attrs) == [{"host_ip": "127.0.0.1", "host_port": 5433, "container_port": 5432,
                                       "protocol": "tcp"}]
    stopped = {"NetworkSettings": {"Ports": {}},
               "HostConfig": {"PortBindings": {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}}}
    assert published_ports(stopped)[0]["host_ip"] == "0.0.0.0"


def test_volume_history_names_the_last_container() -> None:
    def created(cid: str, name: str) -> dict[str, Any]:
        return {"Type": "container", "Action": "create", "Actor": {"ID": cid, "Attributes": {"name": name}}}

    def mounted(cid: str) -> dict[str, Any]:
        return {"Type": "volume", "Action": "mount", "Actor": {"ID": "v", "Attributes": {"container": cid}}}

    events = [created("c1", "a"), mounted("c1"), created("c2", "b"), mounted("c2")]
    assert parse_volume_history(events)["v"]["container_name"] == "b"
