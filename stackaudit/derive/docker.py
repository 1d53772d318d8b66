"""What `docker system df` calls reclaimable, judged: which images, volumes and build cache can go and
which must stay, and why. Pure: `plan_clean(docker_facts, options)` reads the docker facts only.

Read by DKR001 (what is reclaimable beyond the rollback window) and by `stackaudit clean`
(remediation/clean.py), which re-plans from a fresh snapshot before every removal. What it protects,
always: every image a container uses, running or stopped (ERRATA 8); the last N releases of every
repository a container runs; tagged images of repositories no container uses; parents of any image
that stays; every volume not named with --volume, and a database volume only with a fresh verified
backup or --i-have-a-backup (ERRATA 9).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from stackaudit.facts.docker import repository_releases

IMAGE = "image"
VOLUME = "volume"
BUILD_CACHE = "build-cache"
BACKUP_MAX_AGE_HOURS = 24.0



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
