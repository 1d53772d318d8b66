"""The compose collector stamps one classification on every service, the same with both parsers
(issue 18.2), on a corpus case shaped like public projects: derived images, module builds, extension
fields and anchors, secrets files, admin UIs and exporters beside the datastores."""

from __future__ import annotations

import pytest

from tests.facts.test_compose import case_spec, load

EXPECTED = {
    "db": ("database", "postgres"), "gis": ("database", "postgres"), "tsdb": ("database", "postgres"),
    "mirror": ("database", "postgres"), "localdb": ("database", "postgres"),
    "cache": ("cache", "redis"), "queue": ("queue", "redis"), "sessions": ("cache", "redis"),
    "locks": ("cache", "redis"), "pgadmin": ("other", None), "exporter": ("monitoring", "postgres_exporter"),
    "web": ("app_server", None), "worker": ("worker", None),
}


@pytest.mark.parametrize("use_binary", [False, True])
def test_every_service_gets_its_kind_from_all_its_evidence(use_binary: bool) -> None:
    project, _env, errors = load(case_spec("derived_kinds"), use_binary=use_binary)
    assert errors == []
    services = project["services"]
    assert {n: (s["kind"], s["product"]) for n, s in services.items()} == EXPECTED
    assert services["localdb"]["kind_evidence"] == ["command runs postgres", "healthcheck uses pg_isready"]
    assert services["queue"]["kind_evidence"][-1] == "job queue of worker (REDIS_URL)"
    assert services["db"]["origins"]["ports"] == "compose.yml:14"


@pytest.mark.parametrize("use_binary", [False, True])
def test_redis_services_carry_what_their_files_say(use_binary: bool) -> None:
    services = load(case_spec("derived_kinds"), use_binary=use_binary)[0]["services"]
    queue = services["queue"]["redis_files"]
    assert (queue["maxmemory_bytes"], queue["maxmemory_policy"], queue["auth"]) == (512 * 2**20, "noeviction",
                                                                                    "password")
    assert queue["maxmemory_origin"].endswith("derived_kinds/redis/redis.conf:2")
    assert queue["policy_origin"] == "compose.yml:34"
    assert queue["renamed_commands"] == {"CONFIG": "", "FLUSHALL": "FLUSHALL_9f3a"}
    assert (services["cache"]["redis_files"]["maxmemory_bytes"], services["cache"]["mem_limit_bytes"]) == (
        200 * 2**20, 256 * 2**20)
    assert services["locks"]["redis_files"]["auth"] == "password"
    assert services["sessions"]["redis_files"]["auth"] == "none"
    assert "redis_files" not in services["db"]
