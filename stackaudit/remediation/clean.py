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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stackaudit.config import Settings
from stackaudit.facts.docker import (
    DockerError,
    connect,
    describe,
    free_bytes,
    repository_of,
    repository_releases,
    snapshot,
)

if TYPE_CHECKING:
    import docker
from stackaudit.remediation.journal import Journal
from stackaudit.units import format_bytes

IMAGE = "image"
VOLUME = "volume"
BUILD_CACHE = "build-cache"
BACKUP_MAX_AGE_HOURS = 24.0


class CleanError(Exception):
    """The clean could not run (engine unreachable, listing failed); the message says why."""


@dataclass(frozen=True)
class CleanOptions:
    keep_releases: int = 3
    volumes: tuple[str, ...] = ()  # volumes the user named with --volume: the only ones removable
    include_build_cache: bool = False
    have_backup: bool = False  # --i-have-a-backup
    verified_backups: Mapping[str, str] = field(default_factory=dict)  # volume -> backup description
    scope: frozenset[str] | None = None  # only these image ids / volume names (None: everything)


@dataclass(frozen=True)
class Item:
    kind: str
    id: str
    tags: tuple[str, ...]
    bytes: int | None
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "id": self.id, "tags": list(self.tags), "bytes": self.bytes,
                "reason": self.reason}


@dataclass(frozen=True)
class CleanPlan:
    remove: tuple[Item, ...]  # in the order apply removes them
    keep: tuple[Item, ...]
    refused: tuple[str, ...]  # what the user asked for and may not have, and why
    bytes_exact: bool  # False when layer sizes were unknown and size - shared size was used

    @property
    def reclaimable_bytes(self) -> int:
        return sum(item.bytes or 0 for item in self.remove)

    def to_json(self) -> dict[str, Any]:
        return {"remove": [i.to_json() for i in self.remove],
                "keep": [i.to_json() for i in self.keep],
                "reclaimable_bytes": self.reclaimable_bytes,
                "reclaimable_bytes_exact": self.bytes_exact,
                "refused": list(self.refused)}


# ---------------------------------------------------------------- the plan (pure)

def plan_clean(docker_facts: Mapping[str, Any], options: CleanOptions) -> CleanPlan:
    images = list(docker_facts.get("images", []))
    containers = list(docker_facts.get("containers", []))
    image_remove, image_keep = _plan_images(images, containers, options)
    ordered = removal_order(image_remove, images)
    sizes, exact = freed_bytes(ordered, images)
    remove = [_image_item(i, sizes[i["id"]], reason) for i, reason in
              ((i, image_remove[i["id"]]) for i in ordered)]
    keep = [_image_item(i, i.get("size_bytes"), image_keep[i["id"]]) for i in images if i["id"] in image_keep]
    volume_remove, volume_keep, refused = _plan_volumes(docker_facts.get("volumes", []), options)
    remove.extend(volume_remove)
    keep.extend(volume_keep)
    cache = _plan_build_cache(docker_facts.get("build_cache"), options)
    if cache is not None:
        (remove if options.include_build_cache else keep).append(cache)
    return CleanPlan(tuple(remove), tuple(keep), tuple(refused), exact)


def _image_item(image: Mapping[str, Any], size: int | None, reason: str) -> Item:
    return Item(IMAGE, image["id"], tuple(image.get("repo_tags", [])), size, reason)


def release_window(releases: Iterable[Mapping[str, Any]], keep: int) -> dict[str, str]:
    """Image id -> why it is within the rollback window of a repository a container runs."""
    protected: dict[str, str] = {}
    for release in releases:
        ids = [i["id"] for i in release["images"]]  # newest first
        window = set(ids[:keep])
        for position, image in enumerate(release["images"]):
            if image["current"]:  # a service rolled back to an old release keeps its own window
                window.update(ids[position:position + keep])
        services = ", ".join(release["services"])
        for position, image_id in enumerate(ids):
            if image_id in window:
                protected.setdefault(image_id, f"among the last {keep} releases of service {services} "
                                     f"({release['repository']}, #{position + 1} newest)")
    return protected


def _plan_images(images: list[dict[str, Any]], containers: list[dict[str, Any]], options: CleanOptions
                 ) -> tuple[dict[str, str], dict[str, str]]:
    """(image id -> reason to remove, image id -> reason to keep)."""
    releases = repository_releases(images, containers)
    service_repos = {r["repository"]: r for r in releases}
    window = release_window(releases, options.keep_releases)
    remove: dict[str, str] = {}
    keep: dict[str, str] = {}
    for image in images:
        reason, removable = _image_verdict(image, window, service_repos, options)
        (remove if removable else keep)[image["id"]] = reason
    _keep_parents_of_kept(images, remove, keep)
    return remove, keep


def _image_verdict(image: Mapping[str, Any], window: Mapping[str, str],
                   service_repos: Mapping[str, Mapping[str, Any]], options: CleanOptions) -> tuple[str, bool]:
    if options.scope is not None and image["id"] not in options.scope:
        return "outside the requested scope", False
    users = image.get("containers") or []
    if users:
        names = ", ".join(f"{u['name']} ({u['state']})" for u in users)
        return f"in use by container {names}", False
    if image["id"] in window:
        return window[image["id"]], False
    repositories = image.get("repositories") or []
    foreign = [r for r in repositories if r not in service_repos]
    if foreign:
        return (f"tagged {', '.join(image['repo_tags'])}, a repository no container uses: not a release "
                "stackaudit can judge (remove it by hand if it is not needed)"), False
    if repositories:
        services = sorted({s for r in repositories for s in service_repos[r]["services"]})
        return (f"release {', '.join(image['repo_tags'])} is older than the last {options.keep_releases} "
                f"releases of service {', '.join(services)}"), True
    if image.get("repo_digests"):
        return f"untagged image {image['repo_digests'][0]} used by no container", True
    return "dangling: no tag and no container, running or stopped", True


def _keep_parents_of_kept(images: list[dict[str, Any]], remove: dict[str, str], keep: dict[str, str]) -> None:
    """An image whose child stays cannot go (Docker refuses, and the child needs its layers)."""
    by_id = {i["id"]: i for i in images}
    changed = True
    while changed:
        changed = False
        for image in images:
            parent = image.get("parent_id")
            if image["id"] in keep and parent in remove:
                del remove[parent]
                child = by_id[image["id"]]
                keep[parent] = f"parent of kept image {', '.join(child['repo_tags']) or child['id'][7:19]}"
                changed = True


def removal_order(remove: Mapping[str, str], images: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Children before parents (deepest first), then oldest first."""
    by_id = {i["id"]: i for i in images}

    def depth(image: Mapping[str, Any]) -> int:
        levels, parent = 0, image.get("parent_id")
        while parent in by_id and levels < 1000:
            levels, parent = levels + 1, by_id[parent].get("parent_id")
        return levels

    chosen = [i for i in images if i["id"] in remove]
    return sorted(chosen, key=lambda i: (-depth(i), i.get("created") or "", i["id"]))


def freed_bytes(ordered: list[dict[str, Any]], images: list[dict[str, Any]]) -> tuple[dict[str, int], bool]:
    """Bytes each removal frees: layers no remaining image holds, counted once, on the last image
    removed that holds them. Without layer sizes: size - shared size (exact=False)."""
    removed = {i["id"] for i in ordered}
    kept = [i for i in images if i["id"] not in removed]
    if any(i.get("layers") is None for i in [*ordered, *kept]):
        return {i["id"]: _unique_bytes(i) for i in ordered}, False
    kept_layers = {layer["id"] for i in kept for layer in i["layers"]}
    holder: dict[str, tuple[str, int]] = {}
    for image in ordered:
        for layer in image["layers"]:
            if layer["id"] not in kept_layers:
                holder[layer["id"]] = (image["id"], layer["size_bytes"])
    sizes = {i["id"]: 0 for i in ordered}
    for image_id, size in holder.values():
        sizes[image_id] += size
    return sizes, True


def _unique_bytes(image: Mapping[str, Any]) -> int:
    if image.get("unique_size_bytes") is not None:
        return int(image["unique_size_bytes"])
    return int(image.get("size_bytes") or 0)


def _plan_volumes(volumes: Iterable[Mapping[str, Any]], options: CleanOptions
                  ) -> tuple[list[Item], list[Item], list[str]]:
    remove: list[Item] = []
    keep: list[Item] = []
    refused: list[str] = []
    names = {v["name"] for v in volumes}
    for volume in sorted(volumes, key=lambda v: v["name"]):
        reason, removable, refusal = _volume_verdict(volume, options)
        tags = (volume["compose_project"],) if volume.get("compose_project") else ()
        (remove if removable else keep).append(Item(VOLUME, volume["name"], tags, volume.get("size_bytes"),
                                                    reason))
        if refusal:
            refused.append(refusal)
    refused.extend(f"--volume {name}: no volume with that name" for name in options.volumes
                   if name not in names)
    return remove, keep, refused


def _volume_verdict(volume: Mapping[str, Any], options: CleanOptions) -> tuple[str, bool, str | None]:
    """(reason, removable, refusal message when the user asked for it and may not have it)."""
    name = volume["name"]
    asked = name in options.volumes
    if options.scope is not None and name not in options.scope:
        return "outside the requested scope", False, None
    users = volume.get("containers") or []
    if users:
        names = ", ".join(f"{u['name']} ({u['state']})" for u in users)
        why = f"in use by container {names}"
        return why, False, (f"--volume {name}: {why}" if asked else None)
    database = _database_words(volume)
    if not asked:
        if volume.get("anonymous") and database:
            why = f"anonymous volume of a database image ({database}); name it with --volume to remove"
            return why, False, None
        kind = "anonymous volume" if volume.get("anonymous") else "named volume"
        return f"{kind} not named on the command line (--volume {name} removes it)", False, None
    if not database:
        return f"named with --volume; no container mounts it{_last_used(volume)}", True, None
    backup = options.verified_backups.get(name)
    if backup:
        return f"named with --volume; looks like {database}; verified backup: {backup}", True, None
    if options.have_backup:
        return f"named with --volume; looks like {database}; --i-have-a-backup given", True, None
    refusal = (f"--volume {name}: looks like {database} and no verified backup from the last "
               f"{BACKUP_MAX_AGE_HOURS:.0f} hours was found; run `stackaudit backup` first, or pass "
               "--i-have-a-backup if you have one elsewhere")
    return f"looks like {database}; no verified backup from the last 24 hours", False, refusal


def _database_words(volume: Mapping[str, Any]) -> str:
    if not volume.get("looks_like_database"):
        return ""
    evidence = "; ".join(volume.get("database_evidence") or [])
    return f"a {volume.get('database_kind')} database" + (f" ({evidence})" if evidence else "")


def _last_used(volume: Mapping[str, Any]) -> str:
    last = volume.get("last_container")
    return f" (last used by {last})" if last else ""


def _plan_build_cache(cache: Mapping[str, Any] | None, options: CleanOptions) -> Item | None:
    if not cache or not cache.get("known") or not cache.get("reclaimable_bytes"):
        return None
    if options.scope is not None and BUILD_CACHE not in options.scope:
        return None
    if options.include_build_cache:
        return Item(BUILD_CACHE, BUILD_CACHE, (), cache["reclaimable_bytes"],
                    f"build cache no running build uses ({cache['records']} records); rebuilds get slower")
    return Item(BUILD_CACHE, BUILD_CACHE, (), cache["reclaimable_bytes"],
                "build cache kept (--include-build-cache removes the unused part)")


# ---------------------------------------------------------------- backups (owned by stackaudit.backups)

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
    import docker.errors  # lazy: start-up (rules import the planner; the SDK is for removals)

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
    import docker.errors  # lazy: start-up (rules import the planner; the SDK is for removals)

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
