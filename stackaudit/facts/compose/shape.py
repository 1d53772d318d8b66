"""The normaliser both parsers' models go through: one service as the facts show it (image,
environment redacted, ports, volumes, limits, healthcheck, logging, ...)."""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from stackaudit import units
from stackaudit.facts.compose.loader import as_list, as_mapping, volume_entry
from stackaudit.facts.compose.ports import ports_of
from stackaudit.facts.compose.secrets import redact_argv
from stackaudit.redact import redact_value, scrub_data


def service_shape(name: str, project: str, svc: Mapping[str, Any], env_files: list[str],
                  problems: list[tuple[str, str]] | None = None) -> dict[str, Any]:
    """The normalised service; values Compose would refuse are described in `problems` (origin key,
    message) and left out."""
    problems = [] if problems is None else problems
    image = str(svc["image"]) if svc.get("image") else None
    repository, tag = split_image(image) if image else (None, None)
    deploy = _mapping(svc.get("deploy"))
    resources = _mapping(deploy.get("resources"))
    limits, reservations = _mapping(resources.get("limits")), _mapping(resources.get("reservations"))
    environment = plain_environment(svc.get("environment"))
    health = healthcheck_shape(svc.get("healthcheck"))
    if health and health["test"]:
        health["test"] = redact_argv(health["test"])
    command, entrypoint = _argv(svc.get("command")), _argv(svc.get("entrypoint"))
    shape: dict[str, Any] = {
        "name": name,
        "project": project,
        "image": image,
        "image_repository": repository,
        "image_tag": tag,
        "build": svc.get("build") is not None,
        "command": None if command is None else redact_argv(command),
        "entrypoint": None if entrypoint is None else redact_argv(entrypoint),
        "environment": {k: None if v is None else redact_value(k, v) for k, v in sorted(environment.items())},
        "env_files": env_files,
        "ports": ports_of(svc.get("ports"), problems),
        "volumes": volume_shapes_of_service(svc),
        "mem_limit_bytes": parse_bytes(svc.get("mem_limit")) or parse_bytes(limits.get("memory")),
        "mem_reservation_bytes": (parse_bytes(svc.get("mem_reservation"))
                                  or parse_bytes(reservations.get("memory"))),
        "cpus": _float(svc.get("cpus")) or _float(limits.get("cpus")),
        "replicas": _int(deploy.get("replicas")) or _int(svc.get("scale")) or 1,
        "restart": str(svc["restart"]) if svc.get("restart") else None,
        "healthcheck": health,
        "logging": _logging(svc.get("logging")),
        "profiles": [str(p) for p in svc.get("profiles") or []],
        "network_mode": str(svc["network_mode"]) if svc.get("network_mode") else None,
        "pid_mode": str(svc["pid"]) if svc.get("pid") else None,  # "host" shares the host's PIDs
        "ipc_mode": str(svc["ipc"]) if svc.get("ipc") else None,
        "container_name": str(svc["container_name"]) if svc.get("container_name") else None,
        "network_aliases": _network_aliases(svc.get("networks")),
        "privileged": bool(svc.get("privileged")),
        "cap_add": sorted({str(c).upper().removeprefix("CAP_") for c in as_list(svc.get("cap_add"))}),
        "labels": {k: redact_value(k, v) for k, v in sorted(_labels(svc.get("labels")).items())},
        "shm_size_bytes": parse_bytes(svc.get("shm_size")),
        "depends_on": sorted(str(d) for d in _as_names(svc.get("depends_on"))),
    }
    scrubbed: dict[str, Any] = scrub_data(shape)
    return scrubbed


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def plain_environment(value: Any) -> dict[str, str | None]:
    mapping = as_mapping(value)
    return dict(mapping) if isinstance(mapping, dict) else {}


def _labels(value: Any) -> dict[str, str]:
    return {k: v or "" for k, v in plain_environment(value).items()}


def _as_names(value: Any) -> list[Any]:
    if isinstance(value, Mapping):
        return list(value)
    return list(value) if isinstance(value, list) else []


def env_file_paths(service: Mapping[str, Any]) -> list[str]:
    paths = []
    for entry in as_list(service.get("env_file")):
        path = entry.get("path") if isinstance(entry, Mapping) else entry
        if path:
            paths.append(str(path))
    return paths


def split_image(image: str) -> tuple[str, str | None]:
    """`ghcr.io/a/b:1.2@sha256:..` -> ("ghcr.io/a/b", "1.2"); no tag written -> None."""
    reference = image.split("@", 1)[0]
    slash, colon = reference.rfind("/"), reference.rfind(":")
    if colon > slash:
        return reference[:colon], reference[colon + 1:]
    return reference, None


def _argv(value: Any) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            return shlex.split(value)
        except ValueError:
            return value.split()
    if isinstance(value, list):
        return [str(v) for v in value]
    return [str(value)]


def volume_shapes_of_service(svc: Mapping[str, Any]) -> list[dict[str, Any]]:
    shapes = []
    for entry in svc.get("volumes") or []:
        volume = volume_entry(entry, Path.cwd()) if not isinstance(entry, Mapping) else entry
        shapes.append({
            "type": str(volume.get("type") or "volume"),
            "source": str(volume["source"]) if volume.get("source") else None,
            "target": str(volume.get("target") or ""),
            "read_only": bool(volume.get("read_only")),
        })
    for target in as_list(svc.get("tmpfs")):
        shapes.append({"type": "tmpfs", "source": None, "target": str(target), "read_only": False})
    return shapes


def volume_shapes(model: Mapping[str, Any], project: str) -> dict[str, dict[str, Any]]:
    """Top-level volumes that a service mounts (Compose drops the unused ones too)."""
    declared = model.get("volumes")
    if not isinstance(declared, Mapping):
        return {}
    used = {v.get("source") for s in (model.get("services") or {}).values() if isinstance(s, Mapping)
            for v in s.get("volumes") or [] if isinstance(v, Mapping) and v.get("type") == "volume"}
    shapes = {}
    for name, spec in sorted(declared.items()):
        if name not in used:
            continue
        spec = spec if isinstance(spec, Mapping) else {}
        external = spec.get("external")
        is_external = bool(external.get("name", True)) if isinstance(external, Mapping) else bool(external)
        default = name if is_external else f"{project}_{name}"
        shapes[str(name)] = {"external": is_external, "name": str(spec.get("name") or default)}
    return shapes


def healthcheck_shape(value: Any) -> dict[str, Any] | None:
    if not isinstance(value, Mapping):
        return None
    test = value.get("test")
    if isinstance(test, str):
        test = ["CMD-SHELL", test]
    argv = [str(t) for t in test] if isinstance(test, list) else None
    return {
        "test": argv,
        "interval_seconds": parse_duration(value.get("interval")),
        "timeout_seconds": parse_duration(value.get("timeout")),
        "start_period_seconds": parse_duration(value.get("start_period")),
        "retries": _int(value.get("retries")),
        "disabled": bool(value.get("disable")) or argv == ["NONE"],
    }


def _network_aliases(networks: Any) -> list[str]:
    """The extra names a service answers to on its networks (`networks: {net: {aliases: [...]}}`)."""
    if not isinstance(networks, dict):
        return []  # the list form carries no aliases
    return sorted({str(a) for net in networks.values() if isinstance(net, dict)
                   for a in net.get("aliases") or []})


def _logging(value: Any) -> dict[str, Any]:
    value = value if isinstance(value, Mapping) else {}
    options = value.get("options") if isinstance(value.get("options"), Mapping) else {}
    return {"driver": str(value["driver"]) if value.get("driver") else None,
            "options": {str(k): str(v) for k, v in sorted(options.items())}}


def parse_bytes(value: Any) -> int | None:
    """`512m`, `1.5g`, `1024`, 1073741824 -> bytes (binary multiples, as docker's units.RAMInBytes);
    None when not given or not a size."""
    if value is None or isinstance(value, bool) or value == "":
        return None
    try:
        return int(value) if isinstance(value, int | float) else units.parse_size(str(value))
    except ValueError:
        return None


def parse_duration(value: Any) -> float | None:
    """A Go duration (`1m30s`, `500ms`) or a number of seconds; None when not given or not one."""
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        return units.parse_duration(value)
    except ValueError:
        return None


def _float(value: Any) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _int(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None
