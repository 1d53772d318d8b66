"""`stackaudit clean`: reclaim Docker disk space without ever removing what a container or a rollback needs.

`plan_clean(docker_facts, options)` is pure: it lists every image, volume and the build cache as
"remove" (with the bytes it frees) or "keep" (with the reason). What it protects, always:

- every image any container uses, running or stopped (a stopped stack is not "unused": ERRATA 8);
- the last N releases of every repository a container runs (N = --keep, default 3), counted from
  the newest and from each image a container runs, so a rolled-back service keeps its window too;
- tagged images of repositories no container uses (base images, tools: not ours to judge);
- parents of any image that stays;
- every volume not named with --volume; a named volume that looks like a database only with a
  verified backup from the last 24 hours or --i-have-a-backup (ERRATA 9).

`apply_clean` removes in a safe order (children before parents, images one by one by tag then by id,
never with force, volumes one by one by name, never a prune endpoint for volumes or images), re-plans
from a fresh snapshot right before every removal, journals each step and measures the bytes freed on
the data root's filesystem.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import docker
import docker.errors

from stackaudit.config import Settings
from stackaudit.derive.docker import (
    BACKUP_MAX_AGE_HOURS,
    BUILD_CACHE,
    IMAGE,
    VOLUME,
    CleanOptions,
    CleanPlan,
    Item,
    plan_clean,
)
from stackaudit.facts.docker import (
    DockerError,
    connect,
    describe,
    free_bytes,
    repository_of,
    snapshot,
)
from stackaudit.remediation.journal import Journal
from stackaudit.units import format_bytes


class CleanError(Exception):
    """The clean could not run (engine unreachable, listing failed); the message says why."""


def verified_backups(settings: Settings, volumes: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Volume name -> description of a verified backup from the last 24 hours, for database volumes.

    Uses `stackaudit.backups.recent_verified_backup(settings, volume=..., max_age_hours=...)` when that
    module provides it (it returns a description or None); otherwise nothing is found and only
    --i-have-a-backup lets a database volume go.
    """
    try:
        module = importlib.import_module("stackaudit.backups")
    except ImportError:
        return {}
    finder = getattr(module, "recent_verified_backup", None)
    if not callable(finder):
        return {}
    found: dict[str, str] = {}
    for volume in volumes:
        if not volume.get("looks_like_database"):
            continue
        try:
            description = finder(settings, volume=volume, max_age_hours=BACKUP_MAX_AGE_HOURS)
        except Exception:  # noqa: BLE001 - a broken backup lookup means "no verified backup"
            continue
        if description:
            found[volume["name"]] = str(description)
    return found


# ---------------------------------------------------------------- apply

Refresh = Callable[[], Mapping[str, Any]]


def apply_clean(client: docker.DockerClient, plan: CleanPlan, options: CleanOptions, state_dir: Path,
                data_root: str | None, refresh: Refresh) -> dict[str, Any]:
    """Remove what the plan says, re-planning from `refresh()` before each removal; journal each step."""
    journal = Journal.start(state_dir, "clean", meta={"keep_releases": options.keep_releases,
                                                      "volumes": list(options.volumes),
                                                      "planned_bytes": plan.reclaimable_bytes})
    before = free_bytes(data_root)
    steps = []
    for item in plan.remove:
        step = _apply_item(client, item, options, refresh)
        journal.record(step)
        steps.append(step)
    after = free_bytes(data_root)
    removed = [s for s in steps if s["result"] == "removed"]
    failed = [s for s in steps if s["result"] == "failed"]
    status = "failed" if failed else ("done" if len(removed) == len(steps) else "partial")
    freed = after - before if before is not None and after is not None else None
    removed_bytes = sum(s["bytes"] or 0 for s in removed)
    journal.finish(status, removed_bytes=removed_bytes, freed_bytes=freed)
    return {"status": status, "journal": str(journal.path), "steps": steps,
            "planned_bytes": plan.reclaimable_bytes, "removed_bytes": removed_bytes,
            "freed_bytes": freed, "data_root": data_root}


def _apply_item(client: docker.DockerClient, item: Item, options: CleanOptions, refresh: Refresh
                ) -> dict[str, Any]:
    step: dict[str, Any] = {**item.to_json(), "result": "skipped", "why": ""}
    if item.kind != BUILD_CACHE:
        try:
            fresh = plan_clean(refresh(), options)
        except DockerError as exc:
            step.update(result="failed", why=f"cannot re-check before removing: {exc}")
            return step
        verdict = _still_removable(item, fresh)
        if verdict:
            step["why"] = verdict
            return step
    try:
        outcome = _REMOVERS[item.kind](client, item)
    except docker.errors.NotFound:
        step["why"] = "already gone"
        return step
    except DockerError as exc:
        step["why"] = str(exc)
        return step
    except Exception as exc:  # noqa: BLE001 - one failed removal must not stop the others
        step.update(result="failed", why=describe(exc))
        return step
    step.update(result="removed", why="", **outcome)
    return step


def _still_removable(item: Item, fresh: CleanPlan) -> str | None:
    """None when the fresh plan still removes the item unchanged, else why it is skipped."""
    now = next((i for i in fresh.remove if i.kind == item.kind and i.id == item.id), None)
    if now is None:
        kept = next((i for i in fresh.keep if i.kind == item.kind and i.id == item.id), None)
        return f"kept after re-check: {kept.reason}" if kept else "no longer exists"
    if item.kind == IMAGE and set(now.tags) != set(item.tags):
        return f"tags changed since the plan ({', '.join(item.tags)} -> {', '.join(now.tags)})"
    return None


def _remove_image(client: docker.DockerClient, item: Item) -> dict[str, Any]:
    """Untag each tag (after checking it still names this image), then delete by id; never force,
    never prune parents (noprune): only what the plan listed goes."""
    untagged = []
    for tag in item.tags:
        if client.api.inspect_image(tag)["Id"] != item.id:
            raise DockerError(f"tag {tag} now names another image")
        client.api.remove_image(tag, force=False, noprune=True)
        untagged.append(tag)
    try:
        client.api.inspect_image(item.id)
    except docker.errors.NotFound:
        return {"untagged": untagged}  # the last untag deleted it
    client.api.remove_image(item.id, force=False, noprune=True)
    return {"untagged": untagged}


def _remove_volume(client: docker.DockerClient, item: Item) -> dict[str, Any]:
    # One by one, by name, never the prune endpoint: on API <= 1.41 volume prune removes named
    # volumes too (moby 23.0 release notes: "docker volume prune" now only removes anonymous
    # volumes unless --all, except for clients asking for API < 1.42).
    client.api.remove_volume(item.id, force=False)
    return {}


def _remove_build_cache(client: docker.DockerClient, item: Item) -> dict[str, Any]:
    # POST /build/prune without `all`: only cache records no build is using.
    result = client.api.prune_builds()
    return {"bytes": int(result.get("SpaceReclaimed") or 0)}


_REMOVERS: dict[str, Callable[[docker.DockerClient, Item], dict[str, Any]]] = {
    IMAGE: _remove_image, VOLUME: _remove_volume, BUILD_CACHE: _remove_build_cache,
}


# ---------------------------------------------------------------- the command's entry point

def run_clean(settings: Settings, options: CleanOptions, apply: bool) -> dict[str, Any]:
    """Plan (and with `apply`, remove) against the engine; CleanError when it cannot run."""
    try:
        client = connect(settings)
    except Exception as exc:  # noqa: BLE001 - SourceUnavailable carries the user-facing reason
        raise CleanError(str(exc)) from None
    try:
        errors: list[str] = []
        facts = snapshot(client, light=False, runtime=False, on_error=lambda w, y: errors.append(f"{w}: {y}"))
        options = replace(options, verified_backups={**verified_backups(settings, facts["volumes"]),
                                                     **options.verified_backups})
        plan = plan_clean(facts, options)
        output = plan.to_json()
        output["warnings"] = errors
        output["data_root"] = facts["engine"].get("data_root")
        if apply:
            output["apply"] = apply_clean(client, plan, options, settings.state_dir,
                                          facts["engine"].get("data_root"),
                                          lambda: snapshot(client, light=True))
        return output
    except DockerError as exc:
        raise CleanError(str(exc)) from None
    finally:
        client.close()


def describe_plan(output: Mapping[str, Any]) -> str:
    """One line for people: how much would go (or went)."""
    planned = format_bytes(output["reclaimable_bytes"])
    if "apply" not in output:
        return f"{len(output['remove'])} item(s) to remove, {planned} reclaimable (dry run; --apply removes)"
    result = output["apply"]
    freed = result["freed_bytes"]
    measured = f", {format_bytes(freed)} freed on the data root's filesystem" if freed is not None else ""
    return (f"{sum(1 for s in result['steps'] if s['result'] == 'removed')} of {len(result['steps'])} "
            f"removed ({format_bytes(result['removed_bytes'])} of {planned} planned){measured}; "
            f"journal {result['journal']}")


__all__ = ["CleanError", "CleanOptions", "CleanPlan", "Item", "apply_clean", "describe_plan", "plan_clean",
           "repository_of", "run_clean"]
