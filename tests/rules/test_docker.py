"""DKR rules on hand-made facts snapshots (pure: no engine)."""

from __future__ import annotations

from typing import Any

from stackaudit.config import Settings
from stackaudit.facts import Facts
from stackaudit.model import Finding, Risk, Severity
from stackaudit.rules import evaluate

MIB = 2**20
GIB = 2**30


def image(short: str, tags: list[str], created: str, size: int, *, users: list[str] | None = None,
          layers: list[tuple[str, int]] | None = None, parent: str | None = None) -> dict[str, Any]:
    repos = sorted({t.rpartition(":")[0] for t in tags})
    layer_list = [{"id": f"sha256:{lid}", "size_bytes": s} for lid, s in (layers or [(short, size)])]
    return {"id": f"sha256:{short}", "repo_tags": tags, "repositories": repos,
            "repository": repos[0] if repos else None, "tags": [t.rpartition(":")[2] for t in tags],
            "repo_digests": [], "parent_id": parent, "has_children": False, "size_bytes": size,
            "shared_size_bytes": 0, "unique_size_bytes": size, "created": created, "labels": {},
            "volumes": [], "layers": layer_list,
            "containers": [{"id": u, "name": u, "state": "running"} for u in users or []],
            "dangling": not tags and not users}


def container(name: str, image_id: str, *, state: str = "running", memory: int | None = 512 * MIB,
              uptime: int | None = 7200, restart: str = "no", log_options: dict[str, str] | None = None,
              log_size: int | None = 1000, image_ref: str = "app:v3") -> dict[str, Any]:
    return {"id": name, "name": name, "image": image_ref, "image_id": image_id, "state": state,
            "labels": {}, "compose_project": "shop", "compose_service": name, "memory_limit_bytes": memory,
            "memory_usage_bytes": 300 * MIB, "cpu_limit_cores": None, "ports": [], "mounts": [],
            "log": {"driver": "json-file",
                    "options": log_options if log_options is not None else {"max-size": "10m"},
                    "path": "/x.log", "size_bytes": log_size, "size_error": None},
            "restart_policy": restart, "uptime_seconds": uptime, "started_at": None, "finished_at": None}


def volume(name: str, *, users: list[str] | None = None, database: str | None = None,
           size: int = 5 * GIB, project: str | None = "shop") -> dict[str, Any]:
    return {"name": name, "driver": "local", "labels": {}, "compose_project": project, "compose_volume": name,
            "anonymous": False, "mountpoint": None, "size_bytes": size,
            "containers": [{"name": u, "state": "exited"} for u in users or []],
            "last_container": None, "looks_like_database": database is not None, "database_kind": database,
            "database_evidence": ["contains PG_VERSION"] if database else []}


def releases_facts() -> dict[str, Any]:
    """app:v1..v5 (400 MiB each), web runs v5; one dangling 300 MiB image."""
    images = [image(f"v{n}", [f"app:v{n}"], f"2025-01-0{n}T00:00:00Z", 400 * MIB) for n in range(1, 6)]
    images[-1]["containers"] = [{"id": "web", "name": "web", "state": "running"}]
    images.append(image("dang", [], "2025-01-06T00:00:00Z", 300 * MIB))
    return {"engine": {"data_root": "/var/lib/docker"}, "images": images,
            "containers": [container("web", "sha256:v5")], "volumes": [], "build_cache": None}


def run(docker: dict[str, Any], code: str, settings: Settings | None = None) -> list[Finding]:
    settings = settings or Settings(select=(code,))
    findings, skipped = evaluate(Facts(data={"docker": docker}), settings)
    assert not skipped, skipped
    return [f for f in findings if f.code == code]


def test_dkr001_fires_for_dangling_images_and_releases_beyond_the_window() -> None:
    [finding] = run(releases_facts(), "DKR001")
    # keep 3: v5, v4, v3 stay; v2, v1 (800 MiB) and the dangling image (300 MiB) go
    assert "1 dangling image(s) (300.0 MiB)" in finding.message
    assert "2 release(s) older than the last 3 (800.0 MiB: app:v1, app:v2)" in finding.message
    evidence = {e.key: e.observed for e in finding.evidence}
    assert evidence["reclaimable_bytes"] == 1100 * MIB
    assert finding.recommendation.risk is Risk.CONFIRM


def test_dkr001_counts_only_layers_no_kept_image_holds() -> None:
    facts = releases_facts()
    facts["images"][-1]["layers"] = [{"id": "sha256:v5", "size_bytes": 400 * MIB},
                                     {"id": "sha256:own", "size_bytes": 150 * MIB}]  # dangling child of v5
    [finding] = run(facts, "DKR001")
    assert {e.key: e.observed for e in finding.evidence}["dangling_bytes"] == 150 * MIB


def test_dkr001_silent_when_every_image_is_in_use_or_in_the_window() -> None:
    facts = releases_facts()
    facts["images"] = [i for i in facts["images"] if i["id"] in ("sha256:v3", "sha256:v4", "sha256:v5")]
    assert run(facts, "DKR001") == []


def test_dkr001_silent_for_stopped_stack_images_and_old_release_in_use() -> None:
    facts = releases_facts()
    facts["images"] = [i for i in facts["images"] if i["id"] != "sha256:dang"]
    facts["images"][0]["containers"] = [{"id": "old", "name": "old", "state": "exited"}]  # v1 stopped
    facts["images"][1]["containers"] = [{"id": "job", "name": "job", "state": "exited"}]  # v2 stopped
    assert run(facts, "DKR001") == []


def test_dkr002_fires_for_an_unmounted_database_volume_as_a_review() -> None:
    facts = releases_facts()
    facts["volumes"] = [volume("shop_pgdata", database="postgres"), volume("shop_cache", users=["web"])]
    [finding] = run(facts, "DKR002")
    assert finding.subject == "volume shop_pgdata"
    assert "5.0 GiB, compose project shop" in finding.message
    assert "looks like a postgres database (contains PG_VERSION)" in finding.message
    assert finding.recommendation.risk is Risk.MANUAL
    assert finding.severity is Severity.MEDIUM


def test_dkr002_silent_when_every_volume_is_mounted_even_by_a_stopped_container() -> None:
    facts = releases_facts()
    facts["volumes"] = [volume("shop_pgdata", users=["db"], database="postgres")]
    assert run(facts, "DKR002") == []


def test_dkr003_fires_for_json_file_without_max_size_with_the_size_and_the_fix() -> None:
    facts = releases_facts()
    facts["containers"] = [container("worker", "sha256:v5", log_options={}, log_size=3 * GIB)]
    [finding] = run(facts, "DKR003")
    assert "its log is 3.0 GiB now" in finding.message
    assert finding.severity is Severity.MEDIUM
    action = finding.recommendation.action or ""
    assert "logging:" in action and 'max-size: "10m"' in action and "daemon.json" in action


def test_dkr003_silent_with_max_size_or_another_driver() -> None:
    facts = releases_facts()
    journald = container("b", "sha256:v5", log_options={})
    journald["log"]["driver"] = "journald"
    facts["containers"] = [container("a", "sha256:v5", log_options={"max-size": "10m"}), journald]
    assert run(facts, "DKR003") == []


def test_dkr004_fires_above_one_gib_of_unused_build_cache() -> None:
    facts = releases_facts()
    facts["build_cache"] = {"known": True, "records": 40, "size_bytes": 3 * GIB, "reclaimable_bytes": 2 * GIB}
    [finding] = run(facts, "DKR004")
    assert "2.0 GiB of it is used by no running build" in finding.message


def test_dkr004_silent_for_a_small_cache() -> None:
    facts = releases_facts()
    facts["build_cache"] = {"known": True, "records": 2, "size_bytes": 200 * MIB,
                            "reclaimable_bytes": 200 * MIB}
    assert run(facts, "DKR004") == []


def test_dkr005_fires_for_a_long_running_container_without_memory_limit() -> None:
    facts = releases_facts()
    facts["containers"] = [container("web", "sha256:v5", memory=None, uptime=3 * 86400,
                                     restart="unless-stopped")]
    [finding] = run(facts, "DKR005")
    assert finding.subject == "shop/web"
    assert "up 72 h, restart policy unless-stopped" in finding.message
    assert "mem_limit: 640m" in (finding.recommendation.action or "")  # 2 x 300 MiB, rounded up to 64 MiB


def test_dkr005_silent_with_a_limit_or_a_short_one_off_container() -> None:
    facts = releases_facts()
    facts["containers"] = [container("web", "sha256:v5"),
                           container("migrate", "sha256:v5", memory=None, uptime=60, restart="no"),
                           container("old", "sha256:v5", memory=None, state="exited")]
    assert run(facts, "DKR005") == []
