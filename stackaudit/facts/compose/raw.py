"""The raw YAML of a compose file: what the loader refuses before reading it (alias bombs, hostile
tags, templates, deep nesting), and the `file:line` of every service key, which a merged model has
lost (`service_origins`, and the environment as written, for literal secrets)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

# Bounds on what a compose file may make us do. compose-go refuses "excessive aliasing" (go-yaml v3
# decode.go allowedAliasRatio) at once; we count the nodes the aliases would expand to, without
# expanding them, and refuse beyond this many. Real files, anchors and all, stay under ~10,000.
MAX_EXPANDED_NODES = 200_000
MAX_COMPOSE_BYTES = 4 * 1024 * 1024
MAX_DEPTH = 100  # compose files nest a dozen levels; the readers below recurse
ALLOWED_TAGS = {"!reset", "!override"}  # the only local tags the compose spec defines
_CORE_TAGS = {"str", "int", "float", "bool", "null", "map", "seq", "merge", "binary", "timestamp"}

# `{{`/`{%` where a YAML value or item starts, unquoted: a Jinja/Helm template, not YAML to audit
# (quoted ones are legitimate strings, e.g. traefik rules or Go templates in labels).
_TEMPLATE = re.compile(r"^\s*(?:-\s+|[^#\"'{]*?:\s+)?\{[{%]")


@dataclass
class RawFile:
    path: Path
    tree: CommentedMap


def line_of(node: CommentedMap, key: Any, default: int = 1) -> int:
    """1-based line of a key's value, looking through `<<` merges into the anchored mapping."""
    positions = getattr(node.lc, "data", None) or {}
    if key in positions:
        return int(positions[key][2]) + 1
    for merged in getattr(node, "merge", None) or []:
        source = merged[1] if isinstance(merged, tuple) else merged
        if isinstance(source, CommentedMap) and key in source:
            return line_of(source, key, default)
    return default


def item_line(node: CommentedSeq, index: int, default: int) -> int:
    try:
        return int(node.lc.item(index)[0]) + 1
    except (KeyError, IndexError, TypeError):
        return default


def yaml_error(path: Path, text: str, exc: YAMLError) -> tuple[str, str]:
    """Where and why a file is not YAML; a Jinja/Helm template is named as such."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
    template = template_line(path, text)
    if template is not None:
        return template
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return where, f"malformed YAML: {problem}"


def template_line(path: Path, text: str) -> tuple[str, str] | None:
    """(where, why) when the file is a Jinja/Helm template rather than a compose file."""
    line = next((i for i, line in enumerate(text.splitlines(), 1) if _TEMPLATE.match(line)), None)
    if line is None:
        return None
    return (f"{path}:{line}", "a template (Jinja/Helm `{{ }}` or `{% %}`), not a compose file: "
                              "render it first and audit the result")


def yaml_type(value: Any) -> str:
    """A value's type in the words of a YAML file."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    kinds = ((list, "list"), (dict, "mapping"), (str, "string"))
    return next((word for kind, word in kinds if isinstance(value, kind)), type(value).__name__)


def unsafe_yaml(tree: Any) -> tuple[int, str] | None:
    """(line, why) for a tree the loader must refuse: a tag compose does not define (`!!python/...`),
    nesting past MAX_DEPTH, or aliases expanding past MAX_EXPANDED_NODES. Counted once per distinct
    node, never expanded."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[Any, bool, int]] = [(tree, False, 0)]
    while stack:
        node, children_done, depth = stack.pop()
        if depth > MAX_DEPTH:
            return _node_line(node), f"YAML nested more than {MAX_DEPTH} levels deep: refused"
        if id(node) in sizes:
            continue
        children = list(node.values()) if isinstance(node, dict) else list(node) if isinstance(node, list) \
            else []
        if not children_done:
            if id(node) in open_nodes:
                return _node_line(node), "a YAML alias refers to the node that contains it: refused"
            open_nodes.add(id(node))
            tag = getattr(getattr(node, "tag", None), "value", None)
            if tag and tag not in ALLOWED_TAGS and tag.removeprefix("tag:yaml.org,2002:") not in _CORE_TAGS:
                shown = tag.replace("tag:yaml.org,2002:", "!!")
                return _node_line(node), (f"YAML tag {shown} is not allowed in a compose file (only !reset "
                                          "and !override are): refused")
            stack.append((node, True, depth))
            stack.extend((child, False, depth + 1) for child in children if id(child) not in sizes)
            continue
        open_nodes.discard(id(node))
        sizes[id(node)] = 1 + sum(sizes.get(id(child), 1) for child in children)
        if sizes[id(node)] > MAX_EXPANDED_NODES:
            return _node_line(node), (f"YAML aliases expand to more than {MAX_EXPANDED_NODES:,} values "
                                      "(an alias bomb?): refused, as docker compose refuses it")
    return None


def _node_line(node: Any) -> int:
    lc = getattr(node, "lc", None)
    return int(lc.line) + 1 if lc is not None and lc.line is not None else 1


def raw_environment(service: CommentedMap) -> Iterator[tuple[str, str, int]]:
    env = service.get("environment")
    default_line = line_of(service, "environment")
    if isinstance(env, CommentedMap):
        for key in env:
            if isinstance(env[key], str | int | float) and not isinstance(env[key], bool):
                yield str(key), str(env[key]), line_of(env, key, default_line)
    elif isinstance(env, CommentedSeq):
        for i, item in enumerate(env):
            key, sep, value = str(item).partition("=")
            if sep:
                yield key, value, item_line(env, i, default_line)


def service_origins(raw_files: list[RawFile], project_dir: Path) -> dict[str, dict[str, str]]:
    """`file:line` of each service's keys ("" = the service itself, "environment.KEY" = a variable),
    the last file that sets a key winning, as Compose merges them."""
    origins: dict[str, dict[str, str]] = {}
    for raw in raw_files:
        services = raw.tree.get("services")
        if not isinstance(services, CommentedMap):
            continue
        shown = _shown_path(raw.path, project_dir)
        for service_name in services:
            node = services[service_name]
            where = origins.setdefault(str(service_name), {})
            where[""] = f"{shown}:{line_of(services, service_name)}"
            if not isinstance(node, CommentedMap):
                continue
            for key in node:
                where[str(key)] = f"{shown}:{line_of(node, key)}"
            ports = node.get("ports")
            if isinstance(ports, CommentedSeq):
                for index in range(len(ports)):
                    where[f"ports.{index}"] = f"{shown}:{item_line(ports, index, 1)}"
            limits = _nested(node, "deploy", "resources", "limits")
            if limits is not None and "memory" in limits:
                where["deploy.resources.limits.memory"] = f"{shown}:{line_of(limits, 'memory')}"
            for key, _value, line in raw_environment(node):
                where[f"environment.{key}"] = f"{shown}:{line}"
    return origins


def _nested(node: CommentedMap, *keys: str) -> CommentedMap | None:
    for key in keys:
        node = node.get(key) if isinstance(node, CommentedMap) else None
    return node if isinstance(node, CommentedMap) else None


def _shown_path(path: Path, project_dir: Path) -> str:
    try:
        return str(path.relative_to(project_dir))
    except ValueError:
        return str(path)
