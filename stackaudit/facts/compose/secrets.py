"""Secrets written in a compose file: literal values and `${VAR:-default}` defaults of secret-like
variables (SEC003, with the file and line), and password flags hidden in commands."""

from __future__ import annotations

import re
from typing import Any

from ruamel.yaml.comments import CommentedMap

from stackaudit.facts.compose.raw import RawFile, raw_environment
from stackaudit.facts.envfile import references
from stackaudit.images import parse_image
from stackaudit.redact import REDACTED, holds_secret, is_secret_key, remember, secret_part, weak_reason

_URL_PASSWORD = re.compile(r"[a-z][a-z0-9+.-]*://[^:/@\s]*:([^@\s]+)@", re.IGNORECASE)
_SECRET_FLAG = re.compile(r"^--?([a-z][a-z0-9_-]*)(?:=(.*))?$", re.IGNORECASE)


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
            for key, value, line in raw_environment(service):
                for kind, weak in _secret_kinds(key, value, own):
                    found.append({"service": str(service_name), "key": key, "file": str(raw.path),
                                  "line": line, "kind": kind, "weak": weak})
    return found


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
