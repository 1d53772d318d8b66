"""Docker storage and limits rules (DKR): reclaimable images, orphaned volumes, unbounded logs,
build cache, containers without a memory limit."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

from stackaudit.config import Settings
from stackaudit.derive.docker import IMAGE, CleanOptions, plan_clean
from stackaudit.facts import Facts
from stackaudit.model import Evidence, Hit, Phase, Recommendation, Risk, Severity
from stackaudit.rules import rule
from stackaudit.units import format_bytes

LOG_ROTATION = {"max-size": "10m", "max-file": "3"}
MIN_SUGGESTED_LIMIT_BYTES = 256 * 2**20
LIMIT_STEP_BYTES = 64 * 2**20


def subject_of(container: Mapping[str, Any]) -> str:
    """compose project/service when the container has one, else its name."""
    if container.get("compose_service"):
        return f"{container.get('compose_project')}/{container['compose_service']}"
    return str(container["name"])


@rule("DKR001", "docker-images-reclaimable", Severity.LOW, needs=("docker",))
def images_reclaimable(facts: Facts, settings: Settings) -> Iterator[Hit]:
    """
    ## What it checks
    Dangling images (no tag, no container, running or stopped) and releases of a service's
    repository older than the last 3 (`[thresholds.DKR001] keep_releases`), counted in the bytes
    removing them really frees (layers shared with kept images are not counted). It fires above
    100 MiB.

    ## Why it matters
    Every deploy leaves the previous image behind; on a small server they fill the disk Docker,
    PostgreSQL and the logs share. But `docker image prune -a` also deletes the images of stopped
    stacks and the releases you would roll back to: what to remove must be chosen, not swept.

    ## Recommendation
    Run `stackaudit clean` to see what would go and what stays (and why), then `stackaudit clean
    --apply`. It never removes an image a container uses, nor the last N releases of a service.

    ## Estimated effect
    The bytes in the finding are freed on the data root's filesystem.

    ## Fix safety
    Needs confirmation (`--apply`): an image removed from a registry-less host cannot be pulled back;
    the rollback window is kept.

    ## References
    - Docker docs, "Prune unused Docker objects" (`image prune -a` removes every image without a container):
      https://docs.docker.com/engine/manage-resources/pruning/
    - Docker Engine API, GET /system/df (Size, SharedSize):
      https://docs.docker.com/reference/api/engine/version/v1.41/#tag/System/operation/SystemDataUsage
    """
    docker = facts.get("docker")
    keep = int(settings.threshold("DKR001", "keep_releases"))
    plan = plan_clean(docker, CleanOptions(keep_releases=keep))
    images = {i["id"]: i for i in docker.get("images", [])}
    removals = [item for item in plan.remove if item.kind == IMAGE]
    dangling = [i for i in removals if not images[i.id]["repo_tags"]]
    releases = [i for i in removals if images[i.id]["repo_tags"]]
    total = sum(i.bytes or 0 for i in removals)
    if total < settings.threshold("DKR001", "min_reclaimable_bytes"):
        return
    dangling_bytes = sum(i.bytes or 0 for i in dangling)
    release_bytes = total - dangling_bytes
    names = ", ".join(t for i in releases for t in i.tags[:1])[:300]
    severity = Severity.MEDIUM if total >= settings.threshold("DKR001", "medium_bytes") else None
    yield Hit(
        "docker images",
        f"{len(dangling)} dangling image(s) ({format_bytes(dangling_bytes)}) and {len(releases)} release(s) "
        f"older than the last {keep} ({format_bytes(release_bytes)}{': ' + names if names else ''}) "
        f"can be removed, freeing {format_bytes(total)}.",
        Recommendation(
            summary=f"Review `stackaudit clean --keep {keep}` and apply it; images in use and the last "
                    f"{keep} releases of every service stay.",
            estimated_effect=f"{format_bytes(total)} freed on Docker's data root.",
            risk=Risk.CONFIRM, effort_minutes=10, phase=Phase.NOW,
            action=f"stackaudit clean --keep {keep}   # then add --apply"),
        [Evidence("docker", "dangling_images", len(dangling)),
         Evidence("docker", "dangling_bytes", dangling_bytes),
         Evidence("docker", "old_releases", len(releases)),
         Evidence("docker", "old_release_bytes", release_bytes),
         Evidence("docker", "reclaimable_bytes", total,
                  f"< {format_bytes(settings.threshold('DKR001', 'min_reclaimable_bytes'))}"),
         Evidence("docker", "keep_releases", keep)],
        severity,
    )


@rule("DKR002", "docker-volumes-orphaned", Severity.LOW, needs=("docker",))
def volumes_orphaned(facts: Facts, settings: Settings) -> Iterator[Hit]:
    """
    ## What it checks
    Volumes no container mounts, running or stopped: their size, the compose project that owns
    them, the last container the engine saw use them, and whether they look like a database
    (a PostgreSQL / MySQL / Redis / Prometheus / MongoDB image or data path, or files such as
    PG_VERSION inside).

    ## Why it matters
    An unmounted volume may be forgotten garbage or the only copy of a database whose stack was
    renamed or is down. `docker volume prune` cannot tell: on older engines (and for clients using
    API < 1.42) it deletes named volumes too, and anonymous volumes of database images hold real data.

    ## Recommendation
    Review each one. If it is not needed, take a backup when it looks like a database, then remove it
    by name: `stackaudit clean --volume NAME --apply`. Never `docker volume prune`.

    ## Estimated effect
    The volume's size, once removed.

    ## Fix safety
    Display only (review): deleting a volume destroys its data for good.

    ## References
    - Docker Engine 23.0 release notes (`volume prune` removes only anonymous volumes unless `--all`):
      https://docs.docker.com/engine/release-notes/23.0/
    - Docker docs, "Volumes": https://docs.docker.com/engine/storage/volumes/
    """
    for volume in facts.get("docker").get("volumes", []):
        if volume.get("containers"):
            continue
        yield _orphan_hit(volume)


def _orphan_hit(volume: Mapping[str, Any]) -> Hit:
    name = volume["name"]
    size = volume.get("size_bytes")
    project = volume.get("compose_project")
    owner = f"compose project {project}" if project else "no compose project"
    kind = "anonymous" if volume.get("anonymous") else "named"
    last = volume.get("last_container")
    database = ""
    if volume.get("looks_like_database"):
        database = (f"; it looks like a {volume['database_kind']} database "
                    f"({'; '.join(volume.get('database_evidence') or [])})")
    message = (f"{kind.capitalize()} volume {name} ({format_bytes(size)}, {owner}) is mounted by no container"
               f"{f'; last used by {last}' if last else ''}{database}.")
    action = f"stackaudit clean --volume {name}" + (" --i-have-a-backup" if database else "") + " --apply"
    return Hit(
        f"volume {name}", message,
        Recommendation(
            summary="Review it: keep it if a stack that is down needs it; otherwise "
                    + ("back the database up, then " if database else "") + "remove it by name.",
            estimated_effect=f"{format_bytes(size)} freed if removed.",
            risk=Risk.MANUAL, effort_minutes=15, phase=Phase.WEEK, action=action),
        [Evidence("docker", "volume", name), Evidence("docker", "size_bytes", size),
         Evidence("docker", "anonymous", bool(volume.get("anonymous"))),
         Evidence("docker", "compose_project", volume.get("compose_project")),
         Evidence("docker", "last_container", last),
         Evidence("docker", "looks_like_database", bool(volume.get("looks_like_database"))),
         Evidence("docker", "database_kind", volume.get("database_kind"))],
        Severity.MEDIUM if volume.get("looks_like_database") else None,
    )


@rule("DKR003", "docker-logs-unbounded", Severity.LOW, needs=("docker",))
def logs_unbounded(facts: Facts, settings: Settings) -> Iterator[Hit]:
    """
    ## What it checks
    Containers logging with the `json-file` driver without a `max-size` option, with the current
    size of their log file.

    ## Why it matters
    `json-file` keeps everything a container writes, forever, under Docker's data root: a chatty
    service fills the disk PostgreSQL writes to. (The `local` driver rotates by default.)

    ## Recommendation
    Bound the log per service with compose `logging:` options (max-size, max-file), or set them for
    every new container in /etc/docker/daemon.json (`log-opts`). Both apply only to containers created
    afterwards: recreate them (`docker compose up -d --force-recreate SERVICE`).

    ## Estimated effect
    Each container's logs stay under max-size x max-file (30 MB with 10m x 3); the current file is
    dropped when the container is recreated.

    ## Fix safety
    Needs confirmation: recreating a container restarts it; older log lines are lost.

    ## References
    - Docker docs, "JSON File logging driver" (max-size, max-file; unbounded by default):
      https://docs.docker.com/engine/logging/drivers/json-file/
    - Docker docs, "Configure logging drivers" (daemon.json log-opts apply to new containers):
      https://docs.docker.com/engine/logging/configure/
    """
    medium = settings.threshold("DKR003", "medium_log_bytes")
    for container in facts.get("docker").get("containers", []):
        log = container.get("log") or {}
        if log.get("driver") != "json-file" or (log.get("options") or {}).get("max-size"):
            continue
        size = log.get("size_bytes")
        known = f"its log is {format_bytes(size)} now" if size is not None else \
            f"its log size is unknown ({log.get('size_error') or 'not readable'})"
        yield Hit(
            subject_of(container),
            f"Container {container['name']} logs with json-file without max-size: {known} and grows "
            "without bound.",
            _log_recommendation(container),
            [Evidence("docker", "log_driver", "json-file"),
             Evidence("docker", "log_options", log.get("options")),
             Evidence("docker", "log_size_bytes", size, "max-size set")],
            Severity.MEDIUM if size is not None and size >= medium else None,
        )


def _log_recommendation(container: Mapping[str, Any]) -> Recommendation:
    service = container.get("compose_service") or container["name"]
    compose = (f"services:\n  {service}:\n    logging:\n      driver: json-file\n      options:\n"
               f"        max-size: \"{LOG_ROTATION['max-size']}\"\n"
               f"        max-file: \"{LOG_ROTATION['max-file']}\"")
    daemon = ('/etc/docker/daemon.json: {"log-driver": "json-file", "log-opts": '
              f'{{"max-size": "{LOG_ROTATION["max-size"]}", "max-file": "{LOG_ROTATION["max-file"]}"}}}}'
              "  (then restart dockerd; applies to containers created afterwards)")
    return Recommendation(
        summary=f"Bound {service}'s log: max-size {LOG_ROTATION['max-size']}, "
                f"max-file {LOG_ROTATION['max-file']} in compose `logging:` (or daemon.json for every "
                "container), then recreate the container.",
        estimated_effect="Logs capped at 30 MB per container.",
        risk=Risk.CONFIRM, effort_minutes=10, phase=Phase.WEEK,
        action=f"{compose}\n# or, for all new containers:\n# {daemon}")


@rule("DKR004", "docker-build-cache-reclaimable", Severity.LOW, needs=("docker",))
def build_cache_reclaimable(facts: Facts, settings: Settings) -> Iterator[Hit]:
    """
    ## What it checks
    Build cache no running build uses, as `docker system df` counts it, above 1 GiB
    (`[thresholds.DKR004] min_reclaimable_bytes`).

    ## Why it matters
    Building images on the server (compose `build:`) leaves cache layers behind on every build; they
    are invisible in `docker images` and often the largest item in `docker system df`.

    ## Recommendation
    `stackaudit clean --include-build-cache --apply` (or `docker builder prune`), which removes
    only cache records no build is using. Add `--filter until=168h` to keep last week's cache.

    ## Estimated effect
    The reclaimable bytes in the finding; the next build runs slower once.

    ## Fix safety
    Safe: cache only, rebuilt on demand.

    ## References
    - Docker docs, docker builder prune: https://docs.docker.com/reference/cli/docker/builder/prune/
    - Docker Engine API, POST /build/prune:
      https://docs.docker.com/reference/api/engine/version/v1.41/#tag/Image/operation/BuildPrune
    """
    cache = facts.get("docker").get("build_cache") or {}
    reclaimable = cache.get("reclaimable_bytes")
    limit = settings.threshold("DKR004", "min_reclaimable_bytes")
    if reclaimable is None or reclaimable < limit:
        return
    yield Hit(
        "build cache",
        f"The build cache holds {format_bytes(cache.get('size_bytes'))} in {cache.get('records')} records; "
        f"{format_bytes(reclaimable)} of it is used by no running build.",
        Recommendation(
            summary="Prune the unused build cache.",
            estimated_effect=f"{format_bytes(reclaimable)} freed; the next build is slower.",
            risk=Risk.SAFE, effort_minutes=5, phase=Phase.NOW,
            action="stackaudit clean --include-build-cache --apply"),
        [Evidence("docker", "build_cache_bytes", cache.get("size_bytes")),
         Evidence("docker", "build_cache_reclaimable_bytes", reclaimable, f"< {format_bytes(limit)}")],
    )


@rule("DKR005", "docker-no-memory-limit", Severity.MEDIUM, needs=("docker",))
def no_memory_limit(facts: Facts, settings: Settings) -> Iterator[Hit]:
    """
    ## What it checks
    Running containers that are long-lived (up for an hour or more, or with a restart policy) and
    have no memory limit.

    ## Why it matters
    Without a limit one leaking or overloaded container takes the host's memory, and the kernel's
    OOM killer picks the victim, often PostgreSQL (the biggest process) rather than the culprit.

    ## Recommendation
    Set a limit per service from its measured use with headroom: compose `mem_limit:` (or
    `deploy.resources.limits.memory`). The suggestion is twice the measured use, at least 256 MiB.

    ## Estimated effect
    A runaway container is restarted on its own instead of taking the host down.

    ## Fix safety
    Needs confirmation: recreates the container; a limit set too low causes OOM kills of that
    container, so watch it after the change.

    ## References
    - Docker docs, "Resource constraints" (memory):
      https://docs.docker.com/engine/containers/resource_constraints/#memory
    - Compose specification, `mem_limit`: https://docs.docker.com/reference/compose-file/services/#mem_limit
    - Compose specification, `deploy.resources.limits`:
      https://docs.docker.com/reference/compose-file/deploy/#resources
    """
    min_uptime = settings.threshold("DKR005", "min_uptime_seconds")
    for container in facts.get("docker").get("containers", []):
        if container.get("state") != "running" or container.get("memory_limit_bytes"):
            continue
        uptime = container.get("uptime_seconds")
        policy = container.get("restart_policy") or "no"
        if policy in ("no", "") and (uptime is None or uptime < min_uptime):
            continue
        yield _memory_hit(container, uptime, policy, min_uptime)


def suggested_limit_bytes(usage: int | None) -> int:
    if not usage:
        return MIN_SUGGESTED_LIMIT_BYTES
    return max(MIN_SUGGESTED_LIMIT_BYTES, math.ceil(2 * usage / LIMIT_STEP_BYTES) * LIMIT_STEP_BYTES)


def _memory_hit(container: Mapping[str, Any], uptime: int | None, policy: str, min_uptime: float) -> Hit:
    usage = container.get("memory_usage_bytes")
    limit = suggested_limit_bytes(usage)
    service = container.get("compose_service") or container["name"]
    mib = limit // 2**20
    running = f"up {uptime // 3600} h" if uptime is not None and uptime >= 3600 else "running"
    return Hit(
        subject_of(container),
        f"Container {container['name']} ({running}, restart policy {policy}) has no memory limit; it uses "
        f"{format_bytes(usage)} now.",
        Recommendation(
            summary=f"Give {service} a memory limit of about {mib} MiB (twice its current use, "
                    "at least 256 MiB).",
            estimated_effect="A leak or overload restarts this container instead of starting the host's "
                             "OOM killer.",
            risk=Risk.CONFIRM, effort_minutes=10, phase=Phase.WEEK,
            action=f"services:\n  {service}:\n    mem_limit: {mib}m"),
        [Evidence("docker", "memory_limit_bytes", None, "a limit"),
         Evidence("docker", "memory_usage_bytes", usage),
         Evidence("docker", "uptime_seconds", uptime, f">= {min_uptime:.0f} or a restart policy"),
         Evidence("docker", "restart_policy", policy)],
    )
