"""Which compose projects to read, which files make each one, and the environment Compose
interpolates them with (the project's .env, then the process environment)."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stackaudit.facts import CollectContext
from stackaudit.facts.envfile import as_dict, mapping_lookup, parse_dotenv_lenient
from stackaudit.redact import holds_secret, remember

# compose-go's default file names, in the order it looks for them, and the override beside each.
COMPOSE_FILE_NAMES = ("compose.yaml", "compose.yml", "docker-compose.yml", "docker-compose.yaml")
LABEL_WORKING_DIR = "com.docker.compose.project.working_dir"
LABEL_CONFIG_FILES = "com.docker.compose.project.config_files"


ErrorSink = Callable[[str, str], None]  # (where, why)


@dataclass
class ProjectSpec:
    """A project to load: its directory and, when known, its files (else discovered in the dir)."""

    dir: Path
    files: list[Path] = field(default_factory=list)


def discover_projects(ctx: CollectContext) -> list[ProjectSpec]:
    """Project dirs from the settings (with explicit -f files), then from running containers' labels."""
    settings = ctx.settings
    specs: list[ProjectSpec] = []
    explicit = [absolute(f) for f in settings.compose_files]
    dirs = [absolute(d) for d in settings.project_dirs]
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
        yield ProjectSpec(absolute(Path(str(labels[LABEL_WORKING_DIR]))), [absolute(f) for f in files])


def absolute(path: Path) -> Path:
    return Path(os.path.abspath(os.path.expanduser(str(path))))


def project_environment(project_dir: Path, error: ErrorSink) -> dict[str, str]:
    """What Compose interpolates with: the project's .env, overridden by the process environment."""
    return {**dotenv_defaults(project_dir / ".env", error), **os.environ}


def dotenv_defaults(dotenv: Path, error: ErrorSink) -> dict[str, str]:
    """The values of a .env file that Compose interpolates with (nothing when there is no regular
    file: a FIFO would block); its secrets are remembered so that redaction hides them."""
    if not dotenv.is_file():
        return {}
    try:
        text = dotenv.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        error(str(dotenv), f"cannot read: {exc.__class__.__name__}: {exc}")
        return {}
    entries, errors = parse_dotenv_lenient(text, mapping_lookup(os.environ))
    for bad in errors:
        error(f"{dotenv}:{bad.line}", bad.why)
    for entry in entries:
        if holds_secret(entry.key, entry.value):
            remember(entry.value)
    return as_dict(entries)


def find_compose_files(project_dir: Path, env: Mapping[str, str]) -> list[Path]:
    """COMPOSE_FILE, else the first default name found plus its override file, like Compose."""
    if env.get("COMPOSE_FILE"):
        separator = env.get("COMPOSE_PATH_SEPARATOR") or os.pathsep
        return [absolute(project_dir / f) for f in env["COMPOSE_FILE"].split(separator) if f]
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
