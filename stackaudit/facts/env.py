"""The `env` source: every .env file of the compose projects and every env_file their services name.

For each file: who may read it (mode, owner, group/world readable), which keys it sets, which of
them look secret, and which secret values are well-known placeholders. Values are never stored.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from stackaudit.facts import CollectContext, not_a_regular_file
from stackaudit.facts.envfile import EnvEntry, mapping_lookup, parse_dotenv_lenient
from stackaudit.facts.keyfiles import MAX_ENTRIES, find_key_files, key_kind
from stackaudit.facts.secrets_git import git_status
from stackaudit.images import parse_image
from stackaudit.redact import holds_secret, is_secret_key, remember, secret_part, weak_reason

TEMPLATE_SUFFIXES = (".example", ".sample", ".template", ".dist", ".tmpl")


def collect(ctx: CollectContext) -> dict[str, Any]:
    files = [file_facts(ctx, path, project) for path, project in env_file_targets(ctx)]
    existing = [f for f in files if f["exists"]]
    keys = key_file_facts(ctx)
    return {
        "files": files,
        "key_files": keys,
        "summary": {
            "key_files": len(keys),
            "files": len(files),
            "existing": len(existing),
            "group_readable": sum(1 for f in existing if f["group_readable"]),
            "world_readable": sum(1 for f in existing if f["world_readable"]),
            "secret_keys": sum(len(f["secret_keys"]) for f in existing),
            "weak_values": sum(len(f["weak_values"]) for f in existing),
        },
    }


def env_file_targets(ctx: CollectContext) -> list[tuple[Path, str | None]]:
    """(path, project name): .env* in every project dir, then every service's env_file."""
    targets: dict[Path, str | None] = {}
    projects = ctx.facts.get("compose").get("projects", [])
    dirs: list[tuple[Path, str | None]] = [(Path(p["dir"]), p.get("name")) for p in projects if p.get("dir")]
    dirs += [(Path(os.path.abspath(d)), None) for d in ctx.settings.project_dirs]
    for directory, name in dirs:
        for path in _dotenv_files(directory):
            targets.setdefault(path, name)
    for project in projects:
        for service in project.get("services", {}).values():
            for env_file in service.get("env_files", []):
                targets.setdefault(Path(env_file), project.get("name"))
    return list(targets.items())


def key_file_facts(ctx: CollectContext) -> list[dict[str, Any]]:
    """Private keys in the project directories and bind-mounted into services (SEC001/SEC002)."""
    projects = ctx.facts.get("compose").get("projects", [])
    roots = {Path(p["dir"]): p.get("name") for p in projects if p.get("dir")}
    for directory in ctx.settings.project_dirs:
        roots.setdefault(Path(os.path.abspath(directory)), None)
    mounted = [Path(str(v["source"])) for p in projects for s in p.get("services", {}).values()
               for v in s.get("volumes") or [] if v.get("type") == "bind" and v.get("source")]
    paths, cut = find_key_files([r for r in roots if r.is_dir()], mounted)
    if cut:
        ctx.error(", ".join(str(r) for r in roots), f"stopped looking for private keys after {MAX_ENTRIES} "
                  "entries: keys deeper in the tree are not checked")
    found = []
    for path in paths:
        kind = key_kind(path)
        if kind is None:
            continue
        project = next((name for root, name in roots.items() if path.is_relative_to(root)), None)
        facts: dict[str, Any] = {"path": str(path), "project": project, "private_key": kind}
        facts.update(stat_facts(ctx, path))
        found.append(facts)
    return found


def _dotenv_files(directory: Path) -> Iterator[Path]:
    try:
        # not only regular files: a broken symlink or a FIFO named .env is reported by file_facts
        found = sorted(p for p in directory.glob(".env*") if not p.is_dir() and _is_dotenv_name(p.name))
    except OSError:
        return
    yield from found


def _is_dotenv_name(name: str) -> bool:
    return name == ".env" or name.startswith(".env.")


def file_facts(ctx: CollectContext, path: Path, project: str | None) -> dict[str, Any]:
    facts: dict[str, Any] = {
        "path": str(path), "project": project, "exists": False,
        "template": path.name.endswith(TEMPLATE_SUFFIXES),
        "mode": None, "owner_uid": None, "owner": None, "group": None,
        "group_readable": False, "world_readable": False,
        "keys": [], "secret_keys": [], "weak_values": [],
    }
    facts.update(stat_facts(ctx, path))
    if not facts["exists"]:
        return facts
    odd = not_a_regular_file(path)
    if odd is not None:
        ctx.error(str(path), odd)
        return facts
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        ctx.error(str(path), f"cannot read: {exc.__class__.__name__}")
        return facts
    entries, errors = parse_dotenv_lenient(text, mapping_lookup({}))
    for error in errors:
        ctx.error(f"{path}:{error.line}", error.why)
    facts.update(key_facts(entries, project_names(ctx, project), where=f"env:{path}"))
    return facts


def stat_facts(ctx: CollectContext, path: Path) -> dict[str, Any]:
    """Who may read the file, and what git says of it; {"exists": False} when it is not there."""
    try:
        info = path.stat()
    except FileNotFoundError:
        if path.is_symlink():
            ctx.error(str(path), f"broken symlink to {os.readlink(path)}: not read")
        return {"exists": False}
    except OSError as exc:
        ctx.error(str(path), f"cannot stat: {exc.strerror or exc}")
        return {"exists": False}
    mode = stat.S_IMODE(info.st_mode)
    return {
        "exists": True,
        "mode": f"{mode:04o}",
        "owner_uid": info.st_uid,
        "owner": _user_name(info.st_uid),
        "group": _group_name(info.st_gid),
        "group_readable": bool(mode & stat.S_IRGRP),
        "world_readable": bool(mode & stat.S_IROTH),
        "git": git_status(path),  # tracked / ignored, asked of git itself (SEC002)
    }


def key_facts(entries: list[EnvEntry], names: Iterable[str | None] = (), where: str | None = None
              ) -> dict[str, Any]:
    """The keys, those whose value is a secret (by name and value), and the guessable ones; each
    secret is remembered at `where:KEY` (for the fleet's fingerprints)."""
    keys = list(dict.fromkeys(e.key for e in entries))
    own = tuple(names)
    secret = [e for e in entries if e.value is not None and holds_secret(e.key, e.value)]
    # an empty password is no secret to protect, but the weakest password there is
    empty = [e for e in entries if e.value is not None and not e.value.strip() and is_secret_key(e.key)]
    weak = []
    for entry in sorted(secret + empty, key=lambda e: e.line):
        part = secret_part(entry.key, entry.value or "")
        remember(part, f"{where}:{entry.key}" if where else None)
        reason = weak_reason(part, own)
        if reason:
            weak.append({"key": entry.key, "line": entry.line, "reason": reason})
    return {"keys": keys, "secret_keys": list(dict.fromkeys(e.key for e in secret)), "weak_values": weak}


def project_names(ctx: CollectContext, project: str | None) -> list[str | None]:
    """The project's, its services' and their images' names: the first guesses for a password."""
    names: list[str | None] = [project]
    for compose in ctx.facts.get("compose").get("projects", []):
        if compose.get("name") == project:
            for service in compose.get("services", {}).values():
                names += [service.get("name"), parse_image(service.get("image")).basename or None]
    return names


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)
