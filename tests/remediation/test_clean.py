"""`clean` against the real (private) engine. The engine is shared by the whole session, so every
assertion is about objects prefixed dkrclean-, and apply runs are limited with `scope`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest
from typer.testing import CliRunner

from stackaudit.cli import app
from stackaudit.facts.docker import snapshot
from stackaudit.remediation.clean import CleanOptions, CleanPlan, Item, apply_clean, plan_clean
from stackaudit.remediation.journal import Journal, list_journals
from tests.services import DockerEngine

pytestmark = pytest.mark.integration

P = "dkrclean"


@pytest.fixture(scope="module")
def scene(docker_engine: DockerEngine) -> dict[str, Any]:
    """app v1..v5 (web runs v5, a stopped container holds v1), a dangling image, a committed child
    of a kept base image, and volumes: unused named, database-looking named, used by a stopped
    container, and an anonymous postgres volume whose container is gone."""
    e = docker_engine
    ids: dict[str, Any] = {f"v{n}": e.make_image(f"{P}-app", f"v{n}", extra_files={"r": str(n).encode()})
                           for n in range(1, 6)}
    e.run_container(ids["v5"], f"{P}-web", labels={"com.docker.compose.project": P,
                                                   "com.docker.compose.service": "web"})
    e.run_container(ids["v1"], f"{P}-old", detach_running=False,
                    volumes={f"{P}-used": {"bind": "/data", "mode": "rw"}})
    ids["dangling"] = e.make_image(f"{P}-tmp", "x", extra_files={"t": b"1"})
    ids["tmp"] = e.make_image(f"{P}-tmp", "x", extra_files={"t": b"2"})
    ids["base"] = e.make_image(f"{P}-base", "1")
    builder = e.run_container(ids["base"], f"{P}-builder",
                              command=["sh", "-c", "dd if=/dev/zero of=/blob bs=1k count=300"])
    builder.wait(timeout=30)
    ids["child"] = builder.commit().id  # untagged, shares the base image's layer
    builder.remove()
    e.client.volumes.create(f"{P}-cache")
    pgdata = e.client.volumes.create(f"{P}-pgdata", labels={"com.docker.compose.project": P,
                                                            "com.docker.compose.volume": "pgdata"})
    Path(pgdata.attrs["Mountpoint"], "PG_VERSION").write_text("15\n")
    pg_image = e.make_image(f"{P}-postgres", "15")
    pg = e.run_container(pg_image, f"{P}-pg", detach_running=False,
                         mounts=[docker.types.Mount("/var/lib/postgresql/data", None)])
    pg.reload()
    anonymous = pg.attrs["Mounts"][0]["Name"]
    Path(pg.attrs["Mounts"][0]["Source"], "PG_VERSION").write_text("15\n")
    pg.remove()  # without v=True: the anonymous volume stays behind
    ids["anonymous"] = anonymous
    return ids


@pytest.fixture
def facts(scene: dict[str, Any], docker_engine: DockerEngine) -> dict[str, Any]:
    return snapshot(docker_engine.client, light=False, runtime=False)


def by_id(plan: CleanPlan) -> dict[str, tuple[str, Item]]:
    found = {i.id: ("remove", i) for i in plan.remove}
    found.update({i.id: ("keep", i) for i in plan.keep})
    return found


def test_images_used_by_any_container_running_or_stopped_are_kept(facts: dict[str, Any],
                                                                  scene: dict[str, Any]) -> None:
    items = by_id(plan_clean(facts, CleanOptions(keep_releases=1)))  # v1 is outside any window
    assert items[scene["v5"]][0] == "keep" and f"{P}-web (running)" in items[scene["v5"]][1].reason
    verdict, item = items[scene["v1"]]
    assert verdict == "keep" and item.reason == f"in use by container {P}-old (created)"


def test_the_last_n_releases_of_a_service_are_kept(facts: dict[str, Any], scene: dict[str, Any]) -> None:
    items = by_id(plan_clean(facts, CleanOptions(keep_releases=3)))
    for name in ("v4", "v3"):
        assert items[scene[name]][0] == "keep"
        assert "among the last 3 releases of service" in items[scene[name]][1].reason
    assert items[scene["v2"]][0] == "remove"
    assert "older than the last 3 releases of service" in items[scene["v2"]][1].reason
    wider = by_id(plan_clean(facts, CleanOptions(keep_releases=4)))
    assert wider[scene["v2"]][0] == "keep"


def test_dangling_images_go_and_images_of_repositories_nobody_runs_stay(facts: dict[str, Any],
                                                                        scene: dict[str, Any]) -> None:
    items = by_id(plan_clean(facts, CleanOptions()))
    assert items[scene["dangling"]][0] == "remove"
    assert items[scene["dangling"]][1].reason.startswith("dangling")
    for name in ("tmp", "base"):
        verdict, item = items[scene[name]]
        assert verdict == "keep" and "a repository no container uses" in item.reason


def test_bytes_count_only_layers_that_no_kept_image_holds(facts: dict[str, Any],
                                                         scene: dict[str, Any]) -> None:
    plan = plan_clean(facts, CleanOptions())
    child = next(i for i in facts["images"] if i["id"] == scene["child"])
    item = by_id(plan)[scene["child"]][1]
    assert item.bytes == child["unique_size_bytes"] == child["size_bytes"] - child["shared_size_bytes"]
    assert 300 * 1024 <= item.bytes < child["size_bytes"]  # the base image's layer stays
    assert plan.bytes_exact


def test_a_parent_of_a_kept_image_is_kept() -> None:
    parent = {"id": "p", "repo_tags": [], "repositories": [], "containers": [], "parent_id": None,
              "layers": None, "size_bytes": 10, "unique_size_bytes": 10}
    child = {"id": "c", "repo_tags": ["tool:1"], "repositories": ["tool"], "containers": [], "parent_id": "p",
             "layers": None, "size_bytes": 20, "unique_size_bytes": 10}
    items = by_id(plan_clean({"images": [parent, child], "containers": [], "volumes": []}, CleanOptions()))
    assert items["p"] == ("keep", items["p"][1]) and items["p"][1].reason == "parent of kept image tool:1"


def test_volumes_stay_unless_named_and_database_volumes_need_a_backup(facts: dict[str, Any],
                                                                       scene: dict[str, Any]) -> None:
    plain = by_id(plan_clean(facts, CleanOptions()))
    assert all(plain[f"{P}-{n}"][0] == "keep" for n in ("cache", "pgdata", "used"))
    assert "not named on the command line" in plain[f"{P}-cache"][1].reason
    anonymous = plain[scene["anonymous"]]
    assert anonymous[0] == "keep"
    assert "anonymous volume of a database image (a postgres database" in anonymous[1].reason

    named = plan_clean(facts, CleanOptions(volumes=(f"{P}-cache", f"{P}-used", f"{P}-pgdata", "nope")))
    items = by_id(named)
    assert items[f"{P}-cache"][0] == "remove"
    assert items[f"{P}-used"][0] == "keep" and f"in use by container {P}-old" in items[f"{P}-used"][1].reason
    assert items[f"{P}-pgdata"][0] == "keep"
    assert any(r.startswith(f"--volume {P}-pgdata: looks like a postgres database") for r in named.refused)
    assert "--volume nope: no volume with that name" in named.refused

    with_flag = by_id(plan_clean(facts, CleanOptions(volumes=(f"{P}-pgdata",), have_backup=True)))
    assert with_flag[f"{P}-pgdata"][0] == "remove"
    verified = by_id(plan_clean(facts, CleanOptions(volumes=(f"{P}-pgdata",),
                                                    verified_backups={f"{P}-pgdata": "dump of 03:00"})))
    assert verified[f"{P}-pgdata"][0] == "remove" and "dump of 03:00" in verified[f"{P}-pgdata"][1].reason


def _layers_size(client: docker.DockerClient) -> int:
    return int(client.api.df()["LayersSize"])


def _exists(client: docker.DockerClient, image_id: str) -> bool:
    try:
        client.api.inspect_image(image_id)
    except docker.errors.ImageNotFound:
        return False
    return True


def test_apply_removes_the_plan_frees_the_planned_bytes_and_journals(docker_engine: DockerEngine,
                                                                     tmp_path: Path) -> None:
    e, client = docker_engine, docker_engine.client
    ids = {f"r{n}": e.make_image(f"{P}-svc", f"r{n}", extra_files={"r": bytes([n]) * 50_000})
           for n in range(1, 4)}
    e.run_container(ids["r3"], f"{P}-svc-web")
    ids["dangling"] = e.make_image(f"{P}-svc-tmp", "x", extra_files={"d": b"1" * 70_000})
    e.make_image(f"{P}-svc-tmp", "x", extra_files={"d": b"2"})
    builder = e.run_container(ids["r1"], f"{P}-svc-builder",
                              command=["sh", "-c", "dd if=/dev/zero of=/b bs=1k count=200"])
    builder.wait(timeout=30)
    ids["child"] = builder.commit().id  # child of r1: r1 must be removed after it
    builder.remove()
    client.volumes.create(f"{P}-svc-junk")
    client.volumes.create(f"{P}-svc-bystander")
    options = CleanOptions(keep_releases=2, volumes=(f"{P}-svc-junk",),
                           scope=frozenset({*ids.values(), f"{P}-svc-junk", f"{P}-svc-bystander"}))
    plan = plan_clean(snapshot(client, light=False, runtime=False), options)
    assert [i.id for i in plan.remove] == [ids["child"], ids["r1"], ids["dangling"], f"{P}-svc-junk"]
    image_bytes = sum(i.bytes or 0 for i in plan.remove if i.kind == "image")
    before = _layers_size(client)

    result = apply_clean(client, plan, options, tmp_path, str(e.data_root), lambda: snapshot(client))

    assert [s["result"] for s in result["steps"]] == ["removed"] * 4
    assert before - _layers_size(client) == image_bytes  # what the plan promised is what went
    assert not any(_exists(client, ids[k]) for k in ("child", "r1", "dangling"))
    assert _exists(client, ids["r2"]) and _exists(client, ids["r3"])
    names = {v.name for v in client.volumes.list()}
    assert f"{P}-svc-junk" not in names and f"{P}-svc-bystander" in names
    assert isinstance(result["freed_bytes"], int)
    [journal] = list_journals(tmp_path, "clean")
    assert journal.document["status"] == "done"
    assert [s["id"] for s in journal.steps] == [i.id for i in plan.remove]
    assert journal.steps[1]["untagged"] == [f"{P}-svc:r1"]


def test_an_image_that_gets_a_container_between_plan_and_apply_survives(docker_engine: DockerEngine,
                                                                        tmp_path: Path) -> None:
    e, client = docker_engine, docker_engine.client
    victim = e.make_image(f"{P}-race", "x", extra_files={"r": b"1"})
    e.make_image(f"{P}-race", "x", extra_files={"r": b"2"})  # victim is now dangling
    options = CleanOptions(scope=frozenset({victim}))
    plan = plan_clean(snapshot(client, light=False, runtime=False), options)
    assert [i.id for i in plan.remove] == [victim]

    e.run_container(victim, f"{P}-race-late", detach_running=False)  # started after the plan
    result = apply_clean(client, plan, options, tmp_path, None, lambda: snapshot(client))

    [step] = result["steps"]
    assert step["result"] == "skipped"
    assert step["why"] == f"kept after re-check: in use by container {P}-race-late (created)"
    assert _exists(client, victim)
    assert Journal.load(Path(result["journal"])).document["status"] == "partial"


def test_cli_dry_run_prints_the_plan_as_json_and_refuses_database_volumes(
        docker_engine: DockerEngine, scene: dict[str, Any], tmp_path: Path) -> None:
    runner = CliRunner()
    args = ["clean", "--format", "json", "--docker-host", docker_engine.host, "--state-dir", str(tmp_path)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    output = json.loads(result.stdout)
    assert set(output) >= {"remove", "keep", "reclaimable_bytes"}
    assert output["reclaimable_bytes"] == sum(i["bytes"] for i in output["remove"])
    removed = {i["id"] for i in output["remove"]}
    assert scene["dangling"] in removed and scene["v5"] not in removed
    assert all(i["kind"] != "volume" for i in output["remove"])
    assert _exists(docker_engine.client, scene["dangling"])  # a dry run removes nothing
    assert not (tmp_path / "journal").exists()

    terminal = runner.invoke(app, args[:1] + args[3:])
    assert terminal.exit_code == 0 and "Remove (" in terminal.stdout and "Keep (" in terminal.stdout
    assert "reclaimable (dry run; --apply removes)" in terminal.stdout

    refused = runner.invoke(app, [*args, "--volume", f"{P}-pgdata"])
    assert refused.exit_code == 1
    assert "looks like a postgres database" in refused.stderr


def test_cli_unreachable_engine_is_a_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["clean", "--docker-host", f"unix://{tmp_path}/none.sock"])
    assert result.exit_code == 2 and "cannot reach the Docker engine" in result.stderr
    assert "no such file or directory" in result.stderr  # refused at once, no timeout waited for
