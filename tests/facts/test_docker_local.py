"""A local engine's files: container memory and CPU from cgroups, images from the image store.

Cgroups: recorded v2 trees, then a real container's files on this machine (v1). The image store:
what it gives equals what inspect and history give, image by image, on the test engine.

The recorded trees (cgroup_fixtures/) hold what the kernel writes for one container under the
systemd driver (the default system.slice and a nested app-web.slice), the cgroupfs driver, and a
daemon started with its own --cgroup-parent (found through the container's /proc/<pid>/cgroup).
"""

from __future__ import annotations

import http.client
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from stackaudit.config import Settings
from stackaudit.facts import CollectContext, Facts
from stackaudit.facts import docker as docker_facts
from stackaudit.facts.docker import (
    Cgroups,
    ImageStore,
    add_runtime_details,
    cgroup_path,
    connect,
    describe,
    local_cgroups,
    read_containers,
    read_df,
    read_engine,
    read_images,
)
from stackaudit.facts.docker_api import EngineAPIError, LocalEngine
from tests.services import DockerEngine

FIXTURES = Path(__file__).parent / "cgroup_fixtures"
ID = "4f1c2a9e8b7d6c5a" * 4
RECORDED_USAGE = 54525952 - 16777216  # memory.current - inactive_file, as `docker stats` shows it


def recorded(tree: str) -> Cgroups:
    cgroups = local_cgroups(Settings(sys_root=FIXTURES / tree / "sys", proc_root=FIXTURES / tree / "proc"))
    assert cgroups is not None and cgroups.version == 2
    return cgroups


def container(**extra: Any) -> dict[str, Any]:
    return {"id": ID, "name": "web", "state": "running", "pid": None, "cgroup_parent": None,
            "memory_usage_bytes": None, "cpu_usage_seconds": None, "runtime_source": None, **extra}


def test_cgroup_paths_follow_the_engines_driver_and_parent() -> None:
    assert cgroup_path(ID, "cgroupfs", None) == f"/docker/{ID}"
    assert cgroup_path(ID, "cgroupfs", "/ci/jobs/") == f"/ci/jobs/{ID}"
    assert cgroup_path(ID, "systemd", None) == f"/system.slice/docker-{ID}.scope"
    assert cgroup_path(ID, "systemd", "app-web.slice") == f"/app.slice/app-web.slice/docker-{ID}.scope"
    assert cgroup_path(ID, "systemd", "-.slice") == f"/docker-{ID}.scope"


@pytest.mark.parametrize(("tree", "driver", "parent", "usage"), [
    ("v2-systemd", "systemd", None, RECORDED_USAGE),
    ("v2-systemd", "systemd", "app-web.slice", 20971520 - 16777216),
    ("v2-cgroupfs", "cgroupfs", None, RECORDED_USAGE),
])
def test_recorded_v2_files(tree: str, driver: str, parent: str | None, usage: int) -> None:
    found = container(cgroup_parent=parent)
    assert recorded(tree).fill(found, driver)
    assert found["memory_usage_bytes"] == usage
    assert found["cpu_usage_seconds"] == 12.346  # cpu.stat usage_usec 12345678
    assert found["runtime_source"].startswith("cgroup v2 ") and ID in found["runtime_source"]


def test_a_daemon_with_its_own_cgroup_parent_is_found_through_the_process() -> None:
    cgroups = recorded("v2-custom-parent")
    assert not cgroups.fill(container(), "cgroupfs")  # /docker/<id> is not there, and no pid to ask
    found = container(pid=4242)
    assert cgroups.fill(found, "cgroupfs")
    assert found["memory_usage_bytes"] == RECORDED_USAGE and "/custom/" in found["runtime_source"]


def test_another_hosts_cgroup_version_means_the_files_are_not_the_engines() -> None:
    cgroups = recorded("v2-cgroupfs")
    assert cgroups.serves({"cgroup_version": "2"}) and not cgroups.serves({"cgroup_version": "1"})


# ---------------------------------------------------------------- a real container on this machine

@pytest.fixture(scope="module")
def running(docker_engine: DockerEngine) -> dict[str, Any]:
    image = docker_engine.make_image("cgrp-app", "v1", extra_files={"c": b"1"})
    busy = docker_engine.run_container(image, "cgrp-busy", mem_limit="64m",
                                       command=["sh", "-c", "dd if=/dev/zero of=/dev/null bs=1M count=3000; "
                                                            "sleep 3600"])
    stopped = docker_engine.run_container(image, "cgrp-stopped", detach_running=False)
    deadline = time.monotonic() + 60
    while True:  # dd has used some CPU (the assertion below is not about speed, only > 0)
        stats = busy.stats(stream=False)
        if stats["cpu_stats"]["cpu_usage"]["total_usage"] > 0 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    busy.reload()
    return {"busy": busy, "stopped": stopped}


def collect_docker(engine: DockerEngine) -> tuple[dict[str, Any], Facts]:
    ctx = CollectContext(settings=Settings(docker_host=engine.host), facts=Facts())
    return docker_facts.collect(ctx), ctx.facts


def by_name(data: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in data["containers"] if c["name"] == name)


@pytest.mark.integration
def test_a_running_containers_files_give_what_the_stats_api_gives(
        docker_engine: DockerEngine, running: dict[str, Any]) -> None:
    data, facts = collect_docker(docker_engine)
    assert not [e for e in facts.errors if "cgrp" in e.where], facts.errors
    busy = by_name(data, "cgrp-busy")
    cgroups = local_cgroups(Settings())
    assert cgroups is not None
    driver = data["engine"]["cgroup_driver"]
    assert busy["runtime_source"] == (f"cgroup v{cgroups.version} " + str(
        cgroups.root / ("memory" if cgroups.version == 1 else "") / cgroup_path(busy["id"], driver, None)
        .lstrip("/")))
    assert 0 < busy["memory_usage_bytes"] < 64 * 2**20 and busy["cpu_usage_seconds"] > 0
    api = running["busy"].stats(stream=False)
    assert busy["cpu_usage_seconds"] <= api["cpu_stats"]["cpu_usage"]["total_usage"] / 1e9 + 0.001
    # the same cgroup, read twice: usage moves a little (page cache), never by an order of magnitude
    api_usage = docker_facts.memory_usage_bytes(api["memory_stats"])
    assert api_usage is not None and busy["memory_usage_bytes"] < 10 * api_usage + 2**20
    stopped = by_name(data, "cgrp-stopped")
    assert stopped["memory_usage_bytes"] is None and stopped["runtime_source"] is None


@pytest.mark.integration
def test_without_readable_files_the_stats_api_answers(docker_engine: DockerEngine, running: dict[str, Any],
                                                      tmp_path: Path) -> None:
    data, _ = collect_docker(docker_engine)
    busy = {**by_name(data, "cgrp-busy"), "memory_usage_bytes": None, "cpu_usage_seconds": None,
            "pid": None}
    errors: list[tuple[str, str]] = []
    empty = Cgroups(tmp_path, tmp_path, 1)  # a remote engine's containers: no files here
    add_runtime_details(docker_engine.client, [busy], lambda w, y: errors.append((w, y)), empty, "cgroupfs")
    assert errors == [] and busy["runtime_source"] == "stats API"
    assert 0 < busy["memory_usage_bytes"] < 64 * 2**20 and busy["cpu_usage_seconds"] > 0


@pytest.mark.integration
def test_the_image_store_says_what_inspect_and_history_say(docker_engine: DockerEngine,
                                                           running: dict[str, Any]) -> None:
    client = connect(Settings(docker_host=docker_engine.host))
    try:
        engine = read_engine(client, lambda w, y: None)
        store = ImageStore.of(engine)
        assert store is not None
        df = read_df(client, lambda w, y: None)
        containers = read_containers(client, datetime.now(UTC))
        for light in (False, True):
            through_api = read_images(client, df, containers, light, lambda w, y: None)
            from_files = read_images(client, df, containers, light, lambda w, y: None, store)
            assert from_files == through_api and len(from_files) >= 1
        assert all(store.image(entry, light=False) is not None for entry in client.api.images(all=True))
        full = read_images(client, df, containers, False, lambda w, y: None, store)
        assert all(i["layers"] and sum(x["size_bytes"] for x in i["layers"]) == i["size_bytes"] for i in full)
    finally:
        client.close()


def test_an_image_store_of_another_engine_is_not_believed(tmp_path: Path) -> None:
    """The config must hash to the image id: same-named files of another engine are refused."""
    content = tmp_path / "image" / "vfs" / "imagedb" / "content" / "sha256"
    content.mkdir(parents=True)
    (content / ("ab" * 32)).write_text('{"created": "2026-01-01T00:00:00Z", "rootfs": {"diff_ids": []}}')
    store = ImageStore.of({"data_root": str(tmp_path), "storage_driver": "vfs"})
    assert store is not None
    assert store.image({"Id": "sha256:" + "ab" * 32}, light=True) is None
    assert ImageStore.of({"data_root": str(tmp_path), "storage_driver": "overlay2"}) is None


@pytest.mark.integration
def test_the_standard_library_reader_sees_what_the_sdk_sees(docker_engine: DockerEngine,
                                                             running: dict[str, Any]) -> None:
    """A local engine is read through docker_api.LocalEngine: the snapshot it gives equals the SDK's,
    key for key (uptimes and the live memory/CPU figures aside: they move between the two reads)."""
    settings = Settings(docker_host=docker_engine.host)
    cgroups = local_cgroups(settings)

    def snapshot_of(client: Any) -> dict[str, Any]:
        try:
            data = docker_facts.snapshot(client, light=False, cgroups=cgroups)
        finally:
            client.close()
        for c in data["containers"]:
            for moving in ("uptime_seconds", "memory_usage_bytes", "cpu_usage_seconds"):
                c.pop(moving)
        return data

    reader = docker_facts.connect_reader(settings)
    assert isinstance(reader, LocalEngine)
    assert snapshot_of(reader) == snapshot_of(connect(settings))
    assert [v["name"] for v in snapshot_of(reader)["volumes"]] == sorted(
        v["name"] for v in snapshot_of(reader)["volumes"])  # the engine's own order is random
    with pytest.raises(EngineAPIError, match="No such container"):
        LocalEngine(docker_engine.host, 5).inspect_container("no-such-container")


@pytest.mark.parametrize("error", [
    http.client.RemoteDisconnected("Remote end closed connection without response"),
    http.client.IncompleteRead(b"{", 10),
    ConnectionResetError(104, "Connection reset by peer"),
    BrokenPipeError(32, "Broken pipe"),
])
def test_an_engine_that_hangs_up_mid_call_is_said_in_plain_words(error: Exception) -> None:
    """The standard-library client raises these when the daemon dies under a call (the SDK wraps
    them in text): both read as the engine closing the connection, not as a class name."""
    assert describe(error) == "the engine closed the connection (it stopped or crashed during the call)"
