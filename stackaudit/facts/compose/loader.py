"""The builtin loader, used when no Compose v2 binary is found: read, interpolate, extend and merge
the files following the compose-spec rules (`!reset`, `!override`, extends) into a model shaped
like `docker compose config`'s."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq, TaggedScalar
from ruamel.yaml.error import YAMLError

from stackaudit.facts import not_a_regular_file
from stackaudit.facts.compose.files import ErrorSink, absolute, default_project_name, dotenv_defaults
from stackaudit.facts.compose.raw import (
    MAX_COMPOSE_BYTES,
    MAX_DEPTH,
    RawFile,
    item_line,
    line_of,
    template_line,
    unsafe_yaml,
    yaml_error,
    yaml_type,
)
from stackaudit.facts.envfile import (
    DotenvError,
    InterpolationError,
    Lookup,
    as_dict,
    interpolate,
    mapping_lookup,
    parse_dotenv,
)

KNOWN_TOP_LEVEL = {"version", "name", "services", "networks", "volumes", "secrets", "configs", "include",
                   "models"}
# What `include` copies from an included application into the including one (compose-spec, "Include").
INCLUDED_RESOURCES = ("services", "networks", "volumes", "secrets", "configs")
REMOTE_RESOURCE = re.compile(r"^([a-z][a-z0-9+.-]*://|git@)", re.IGNORECASE)
MAX_INCLUDED_FILES = 64  # in all, nested includes too: a file that includes itself twice over is refused


class _Reset:
    """A `!reset` value: the key is removed from what it overrides."""


RESET = _Reset()


@dataclass
class Override:
    """An `!override` value: replaces instead of merging."""

    value: Any


class BuiltinLoader:
    """Load, interpolate, extend and merge compose files into a model shaped like `config`'s."""

    def __init__(self, project_dir: Path, env: Mapping[str, str], error: ErrorSink,
                 including: tuple[Path, ...] = (), include_budget: list[int] | None = None) -> None:
        self.project_dir = project_dir
        self.including = including  # the files whose `include` led here, outermost first
        self.include_budget = include_budget if include_budget is not None else [MAX_INCLUDED_FILES]
        self.included_files: list[Path] = []
        self.env = dict(env)
        self.lookup: Lookup = mapping_lookup(self.env)
        self.error = error
        self.raw_files: list[RawFile] = []
        self._services_cache: dict[Path, dict[str, Any]] = {}
        self.refused: list[Path] = []  # files that are FIFOs, directories, ...: never opened
        self.unsafe = False  # bad input found: the binary is not given these files
        self.invalid: list[tuple[str, str]] = []  # bad input: shown as ✗ and fails the run

    def bad_input(self, where: str, why: str) -> None:
        """What Compose would refuse: reported as invalid, and the binary is not asked (its model
        would hide the error, or it would choke on the same file)."""
        self.unsafe = True
        self.invalid.append((where, why))
        self.error(where, why)

    def load(self, files: list[Path]) -> dict[str, Any] | None:
        merged: dict[str, Any] | None = None
        for path in files:
            tree = self._read_yaml(path)
            if tree is None:
                continue
            self.raw_files.append(RawFile(path, tree))
            model = self._file_model(path, tree, self.project_dir)
            merged = model if merged is None else merge_values(merged, model, "")
        if merged is None:
            return None
        merged = _drop_markers(merged)
        services = merged.get("services") or {}
        for name, service in services.items():
            services[name] = self._finish_service(name, service)
        merged["services"] = services
        merged["name"] = self._project_name(merged)
        self._include(merged, files)
        return merged

    def _include(self, model: dict[str, Any], files: list[Path]) -> None:
        """Load each `include` entry as an application of its own (its project directory, its
        env_file as defaults under this environment) and copy its resources in; a name this
        project already has stays this project's, as Compose refuses to merge them. Evaluated after
        the files were merged, as Compose does."""
        where = str(files[0])
        for entry in as_list(model.pop("include", None)):
            spec = {"path": entry} if isinstance(entry, str) else entry if isinstance(entry, dict) else {}
            paths = self._include_paths(spec, where)
            if not paths:
                continue
            if any(p in self.including or p in files for p in paths):
                self.error(where, f"include of {paths[0]} loops back to a file that includes it (ignored)")
                continue
            if self.include_budget[0] < len(paths):  # shared by every nested loader of the project
                self.error(where, f"more than {MAX_INCLUDED_FILES} included files: the rest is ignored")
                return
            self.include_budget[0] -= len(paths)
            self._copy_resources(model, self._included_model(spec, paths, files), paths[0])

    def _include_paths(self, spec: Mapping[str, Any], where: str) -> list[Path]:
        """The local files of one `include` entry ([] when there are none to read, said why)."""
        named = [str(p) for p in as_list(spec.get("path")) if p]
        remote = [p for p in named if REMOTE_RESOURCE.match(p)]
        if remote:  # Compose 2.26+ fetches git and OCI includes; an audit reads local files only
            self.error(where, f"include of the remote resource {remote[0]} is not read (local files only)")
            return []
        if not named:
            self.error(where, f"include entry {dict(spec)!r} names no file (ignored)")
        return [absolute(self.project_dir / os.path.expanduser(p)) for p in named]

    def _included_model(self, spec: Mapping[str, Any], paths: list[Path],
                        files: list[Path]) -> dict[str, Any]:
        project_dir = (absolute(self.project_dir / str(spec["project_directory"]))
                       if spec.get("project_directory") else paths[0].parent)
        env_files = [absolute(self.project_dir / str(f)) for f in as_list(spec.get("env_file"))]
        defaults: dict[str, str] = {}
        for env_file in env_files or [project_dir / ".env"]:
            if env_files and not env_file.is_file():
                self.error(str(files[0]), f"include env_file {env_file} not found")
            defaults.update(dotenv_defaults(env_file, self.error))
        sub = BuiltinLoader(project_dir, {**defaults, **self.env}, self.error, (*self.including, *files),
                            self.include_budget)
        included = sub.load(paths) or {}
        self.raw_files += sub.raw_files  # their lines, origins and literal secrets count too
        self.refused += sub.refused
        self.invalid += sub.invalid
        self.unsafe = self.unsafe or sub.unsafe
        self.included_files = list(dict.fromkeys([*self.included_files, *sub.raw_paths()]))
        return included

    def raw_paths(self) -> list[Path]:
        return [raw.path for raw in self.raw_files]

    def _copy_resources(self, model: dict[str, Any], included: Mapping[str, Any], source: Path) -> None:
        for kind in INCLUDED_RESOURCES:
            mine = model.setdefault(kind, {}) if isinstance(model.get(kind, {}), dict) else {}
            for name, value in (included.get(kind) or {}).items():
                if name in mine:
                    self.error(str(source), f"included {kind[:-1]} {name!r} is already defined by the "
                                            "project: the project's is kept (Compose refuses to merge them)")
                    continue
                mine[name] = value

    def _read_yaml(self, path: Path) -> CommentedMap | None:
        odd = not_a_regular_file(path)
        if odd is not None:
            self.error(str(path), f"cannot read compose file: {odd}")
            self.refused.append(path)
            return None
        with contextlib.suppress(OSError):
            size = path.stat().st_size
            if size > MAX_COMPOSE_BYTES:
                self.bad_input(str(path), f"compose file is {size / 2**20:.1f} MiB, more than the "
                                          f"{MAX_COMPOSE_BYTES // 2**20} MiB limit: not read")
                return None
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            self.bad_input(str(path), f"not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset "
                                      f"{exc.start}): not a compose file")
            return None
        except OSError as exc:
            self.error(str(path), f"cannot read compose file: {exc.strerror or exc}")
            return None
        try:
            tree = YAML(typ="rt").load(text)
        except YAMLError as exc:
            self.bad_input(*yaml_error(path, text, exc))
            return None
        except RecursionError:
            self.bad_input(str(path), f"YAML nested more than {MAX_DEPTH} levels deep: refused")
            return None
        if tree is None:
            return CommentedMap()
        if not isinstance(tree, CommentedMap):
            self.bad_input(str(path), "a compose file must be a mapping at the top level, not a "
                                      f"{yaml_type(tree)}")
            return None
        template = template_line(path, text)
        if template is not None:
            self.bad_input(*template)
            return None
        problem = unsafe_yaml(tree)
        if problem is not None:
            self.bad_input(f"{path}:{problem[0]}", problem[1])
            return None
        return tree

    def _file_model(self, path: Path, tree: CommentedMap, base_dir: Path) -> dict[str, Any]:
        model: dict[str, Any] = {}
        for key in tree:
            if not (key in KNOWN_TOP_LEVEL or str(key).startswith("x-")):
                self.error(f"{path}:{line_of(tree, key)}", f"unknown top-level key {key!r} (ignored)")
                continue
            model[key] = self._plain(tree[key], path, line_of(tree, key))
        services = model.get("services")
        if services is None:
            model["services"] = {}
        elif not isinstance(services, dict):
            self.bad_input(f"{path}:{line_of(tree, 'services')}", "`services` must be a mapping")
            model["services"] = {}
        for name, service in list(model["services"].items()):
            if not isinstance(service, dict):
                self.bad_input(f"{path}:{line_of(tree['services'], name)}",
                               f"service {name!r} must be a mapping (ignored)")
                del model["services"][name]
                continue
            model["services"][name] = canonical_service(service, base_dir)
        for name in list(model["services"]):
            model["services"][name] = self._extended(name, model["services"], path, set())
        return model

    def _plain(self, node: Any, path: Path, line: int) -> Any:
        """ruamel nodes to plain data, strings interpolated (an error empties the value)."""
        tag = getattr(getattr(node, "tag", None), "value", None)
        if tag == "!reset":
            return RESET
        if isinstance(node, TaggedScalar):
            node = node.value
        if isinstance(node, CommentedMap):
            value: Any = {str(k): self._plain(node[k], path, line_of(node, k, line)) for k in node}
        elif isinstance(node, CommentedSeq):
            value = [self._plain(item, path, item_line(node, i, line)) for i, item in enumerate(node)]
        elif isinstance(node, str):
            try:
                value = interpolate(str(node), self.lookup)
            except InterpolationError as exc:
                self.error(f"{path}:{line}", str(exc))
                value = ""
        elif isinstance(node, bool):
            value = bool(node)
        elif isinstance(node, int):
            value = int(node)
        elif isinstance(node, float):
            value = float(node)
        else:
            value = node
        return Override(value) if tag == "!override" else value

    def _extended(self, name: str, services: dict[str, Any], path: Path, seen: set[tuple[Path, str]]) -> Any:
        service = services[name]
        ext = service.get("extends") if isinstance(service, dict) else None
        if not ext:
            return service
        spec = {"service": ext} if isinstance(ext, str) else ext if isinstance(ext, dict) else {}
        base_name = str(spec.get("service") or "")
        if (path, name) in seen:
            self.error(str(path), f"service {name!r}: circular extends")
            return {k: v for k, v in service.items() if k != "extends"}
        seen = seen | {(path, name)}
        base_services, base_path = services, path
        if spec.get("file"):
            base_path = absolute(path.parent / str(spec["file"]))
            base_services = self._other_file_services(base_path)
        if base_name not in base_services:
            self.error(str(path), f"service {name!r} extends {base_name!r}, not defined in {base_path}")
            return {k: v for k, v in service.items() if k != "extends"}
        base = self._extended(base_name, base_services, base_path, seen)
        own = {k: v for k, v in service.items() if k != "extends"}
        return merge_values(base, own, "service")

    def _other_file_services(self, path: Path) -> dict[str, Any]:
        """Services of a file named by `extends.file`; its relative paths are relative to it."""
        if path not in self._services_cache:
            tree = self._read_yaml(path)
            services: dict[str, Any] = {}
            if tree is not None:
                raw = self._plain(tree.get("services") or CommentedMap(), path, 1)
                for name, service in (raw if isinstance(raw, dict) else {}).items():
                    if isinstance(service, dict):
                        services[name] = canonical_service(service, path.parent)
            self._services_cache[path] = services
        return self._services_cache[path]

    def _finish_service(self, name: str, service: dict[str, Any]) -> dict[str, Any]:
        """Fold the env_files into the environment and look up bare keys, as `config` does."""
        environment: dict[str, str | None] = {}
        for env_file in service.get("env_file") or []:
            environment.update(self._read_env_file(name, env_file))
        for key, value in (service.get("environment") or {}).items():
            environment[key] = value if value is not None else self.env.get(key)
        service["environment"] = environment
        return service

    def _read_env_file(self, service: str, env_file: Mapping[str, Any]) -> dict[str, str]:
        path = Path(str(env_file["path"]))
        odd = not_a_regular_file(path)
        if odd is not None:
            self.error(str(path), f"env_file of service {service!r} is {odd}")
            self.refused.append(path)
            return {}
        if not path.is_file():
            if env_file.get("required", True):
                self.error(str(path), f"env_file of service {service!r} not found")
            return {}
        try:
            return as_dict(parse_dotenv(path.read_text(encoding="utf-8"), self.lookup))
        except DotenvError as exc:
            self.error(f"{path}:{exc.line}", exc.why)
        except (InterpolationError, OSError, UnicodeDecodeError) as exc:
            self.error(str(path), str(exc))
        return {}

    def _project_name(self, model: Mapping[str, Any]) -> str:
        if self.env.get("COMPOSE_PROJECT_NAME"):
            return default_project_name(self.project_dir, self.env)
        if model.get("name"):
            return str(model["name"])
        return default_project_name(self.project_dir, self.env)


def canonical_service(service: dict[str, Any], base_dir: Path) -> dict[str, Any]:
    """Short forms to the long ones (so files can be merged), relative paths made absolute."""
    out = dict(service)
    for key in ("environment", "labels"):
        if key in out and out[key] is not RESET:
            out[key] = as_mapping(out[key])
    if isinstance(out.get("depends_on"), list):
        out["depends_on"] = {str(name): {"condition": "service_started"} for name in out["depends_on"]}
    if "env_file" in out and out["env_file"] is not RESET:
        out["env_file"] = [_env_file_entry(e, base_dir) for e in as_list(out["env_file"])]
    if isinstance(out.get("volumes"), list):
        out["volumes"] = [volume_entry(v, base_dir) for v in out["volumes"]]
    if isinstance(out.get("tmpfs"), str):
        out["tmpfs"] = [out["tmpfs"]]
    return out


def as_list(value: Any) -> list[Any]:
    if isinstance(value, Override):
        value = value.value
    return value if isinstance(value, list) else [] if value is None else [value]


def as_mapping(value: Any) -> Any:
    """`["A=1", "B"]` or `{A: 1}` to `{"A": "1", "B": None}` (values as the strings a container sees)."""
    wrapper = value if isinstance(value, Override) else None
    inner = value.value if wrapper else value
    result: dict[str, str | None] = {}
    if isinstance(inner, dict):
        result = {str(k): _env_string(v) for k, v in inner.items()}
    elif isinstance(inner, list):
        for item in inner:
            key, sep, val = str(item).partition("=")
            result[key] = val if sep else None
    return Override(result) if wrapper else result


def _env_string(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _env_file_entry(entry: Any, base_dir: Path) -> dict[str, Any]:
    if isinstance(entry, dict):
        path, required = str(entry.get("path", "")), bool(entry.get("required", True))
    else:
        path, required = str(entry), True
    return {"path": str(absolute(base_dir / path)), "required": required}


def volume_entry(entry: Any, base_dir: Path) -> Any:
    if isinstance(entry, dict):
        volume = dict(entry)
        if volume.get("type") == "bind" and volume.get("source"):
            volume["source"] = _bind_source(str(volume["source"]), base_dir)
        return volume
    parts = str(entry).split(":")
    if len(parts) == 1:
        return {"type": "volume", "target": parts[0]}
    source, target, mode = parts[0], parts[1], parts[2] if len(parts) > 2 else ""
    is_path = source.startswith((".", "/", "~"))
    short: dict[str, Any] = {
        "type": "bind" if is_path else "volume",
        "source": _bind_source(source, base_dir) if is_path else source,
        "target": target,
    }
    if "ro" in mode.split(","):
        short["read_only"] = True
    return short


def _bind_source(source: str, base_dir: Path) -> str:
    return str(absolute(base_dir / os.path.expanduser(source)))


# Keys whose value replaces the one it overrides instead of merging (compose-spec merge rules).
_REPLACED = {"command", "entrypoint", "test"}


def merge_values(base: Any, over: Any, key: str) -> Any:
    """Merge `over` into `base` following the compose-spec rules for overrides and extends."""
    if isinstance(over, Override):
        return over.value
    if isinstance(base, dict) and isinstance(over, dict) and key not in _REPLACED:
        out = dict(base)
        for k, v in over.items():
            if v is RESET:
                out.pop(k, None)
            else:
                out[k] = merge_values(base[k], v, k) if k in base else v
        return out
    if isinstance(base, list) and isinstance(over, list) and key not in _REPLACED:
        if key == "volumes":
            return _merge_by(base, over, "target")
        if key == "env_file":
            return _merge_by(base, over, "path")
        return base + [item for item in over if item not in base]
    return over


def _merge_by(base: list[Any], over: list[Any], field_name: str) -> list[Any]:
    """Entries of `over` replace those of `base` with the same field in place; others are appended."""
    replacements = {item.get(field_name): item for item in over if isinstance(item, dict)}
    merged = [replacements.pop(item.get(field_name), item) if isinstance(item, dict) else item
              for item in base]
    return merged + [item for item in over if not isinstance(item, dict) or item in replacements.values()]


def _drop_markers(value: Any) -> Any:
    if isinstance(value, Override):
        return _drop_markers(value.value)
    if isinstance(value, dict):
        return {k: _drop_markers(v) for k, v in value.items() if v is not RESET}
    if isinstance(value, list):
        return [_drop_markers(v) for v in value if v is not RESET]
    return value
