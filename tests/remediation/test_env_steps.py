""".env steps: which compose services a variable's change recreates (pure, on facts snapshots)."""

from __future__ import annotations

from typing import Any

from stackaudit.facts import Facts
from stackaudit.remediation.actions import changed_services
from stackaudit.remediation.plan import ENV, env_steps


def facts(services: dict[str, dict[str, Any]], env_path: str = "/srv/shop/.env") -> Facts:
    project = {"name": "shop", "dir": "/srv/shop", "files": ["/srv/shop/compose.yaml"],
               "services": {n: {"name": n, **s} for n, s in services.items()}}
    return Facts(data={"compose": {"projects": [project]},
                       "env": {"files": [{"path": env_path, "exists": True, "keys": ["WEB_CONCURRENCY"]}]}})


def test_readers_are_the_services_that_load_the_file_or_set_the_variable() -> None:
    snapshot = facts({"web": {"environment": {"WEB_CONCURRENCY": "2"}},
                      "worker": {"env_files": ["/srv/shop/.env"], "environment": {}},
                      "cache": {"environment": {"OTHER": "x"}}})
    (step,) = env_steps(snapshot, {"WEB_CONCURRENCY": "4"})
    assert step.kind == ENV and step.restart
    assert step.params["recreate"] == {"project": "shop", "dir": "/srv/shop",
                                       "files": ["/srv/shop/compose.yaml"], "services": ["web", "worker"]}
    assert "recreate web, worker (docker compose up -d --no-deps)" in step.change


def test_no_reader_found_means_no_recreate_and_no_restart() -> None:
    snapshot = facts({"cache": {"environment": {}}}, env_path="/elsewhere/.env")
    (step,) = env_steps(snapshot, {"WEB_CONCURRENCY": "4"})
    assert "recreate" not in step.params and not step.restart
    assert "no compose service found that reads it" in step.change


def test_changed_services_compares_the_resolved_configurations() -> None:
    before = {"web": "a", "worker": "b", "cache": "c"}
    assert changed_services(before, {"web": "a2", "worker": "b", "cache": "c", "new": "n"}) == ["new", "web"]
    assert changed_services(before, before) == []
