"""Secrets never leave: recognise secret-looking keys, strip DSN passwords, and scrub known values.

Collectors redact at the moment they read a value (`redact_env`, `redact_dsn`). As a second line of
defence every secret value a collector has seen is remembered (`remember`) and `scrub` replaces it
in any text a renderer produces.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

REDACTED = "***"

# Names that hold a secret, matched on word parts of an upper-cased key (DB_PASSWORD, API_TOKEN,
# SECRET_KEY_BASE, AWS_SECRET_ACCESS_KEY, REDIS_URL with a password, ...).
_SECRET_KEY = re.compile(
    r"(PASSW(OR)?D|PASSWD|PWD|SECRET|TOKEN|API_?KEY|PRIVATE_?KEY|ACCESS_?KEY|CREDENTIAL|AUTH|"
    r"SALT|SIGNING|ENCRYPTION_?KEY|MASTER_?KEY|DSN|LICENSE_?KEY|WEBHOOK)",
)
# Names that match the pattern above but hold a method name, not a secret: rules need the value
# (POSTGRES_HOST_AUTH_METHOD=trust is SEC005).
_NOT_SECRET_KEY = re.compile(r"AUTH_?(METHOD|MECHANISM|TYPE|MODE)$")
_URL_WITH_PASSWORD = re.compile(r"\b([a-z][a-z0-9+.-]*://)([^:/@\s]*):([^@\s]*)@", re.IGNORECASE)
# libpq keyword form: password=secret or password='se cret'
_KEYWORD_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)

# Values that anyone guessing would try first, and the placeholders of popular examples. SEC003
# reports them; `remember` leaves them out, since scrubbing "postgres" or "redis" from every sentence
# would ruin a report while hiding nothing an attacker would not try first.
WEAK_VALUES = frozenset({
    "postgres", "password", "passw0rd", "changeme", "change_me", "change-me", "changeit", "secret",
    "admin", "administrator", "root", "toor", "test", "example", "default", "pass", "redis", "mysql",
    "123456", "12345678", "123456789", "qwerty", "letmein", "guest", "xxx", "todo", "replaceme",
    "your_secret_here", "your-secret-key", "maybe_password", "sure_password",
})

_known_secrets: set[str] = set()
_MIN_SCRUB_LENGTH = 6  # shorter values ("1", "on", "wrong") would blank out ordinary words


def is_secret_key(name: str) -> bool:
    upper = name.upper()
    return bool(_SECRET_KEY.search(upper)) and not _NOT_SECRET_KEY.search(upper)


def remember(value: str | None) -> None:
    """Note a secret value so that `scrub` removes it from any output."""
    if value and len(value) >= _MIN_SCRUB_LENGTH and value.lower() not in WEAK_VALUES:
        _known_secrets.add(value)


def forget_all() -> None:
    """Clear the remembered values (a new audit in a long-lived process, and test isolation)."""
    _known_secrets.clear()


def redact_dsn(text: str) -> str:
    """postgres://u:pw@h/db -> postgres://u:***@h/db; `password=pw` -> `password=***`."""
    for match in _URL_WITH_PASSWORD.finditer(text):
        remember(match.group(3))
    for match in _KEYWORD_PASSWORD.finditer(text):
        remember(match.group(2).strip("'"))
    text = _URL_WITH_PASSWORD.sub(lambda m: f"{m.group(1)}{m.group(2)}:{REDACTED}@", text)
    return _KEYWORD_PASSWORD.sub(lambda m: f"{m.group(1)}{REDACTED}", text)


def redact_value(key: str, value: str) -> str:
    """The value of an environment variable as it may be shown."""
    if is_secret_key(key) and value:
        remember(value)
        return REDACTED
    return redact_dsn(value)


def redact_env(env: Mapping[str, str | None]) -> dict[str, str | None]:
    return {k: (None if v is None else redact_value(k, v)) for k, v in env.items()}


def url_without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    remember(parts.password)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:{REDACTED}@" if parts.username else f":{REDACTED}@"
    return urlunsplit((parts.scheme, user + host, parts.path, parts.query, parts.fragment))


def scrub(text: str) -> str:
    """Remove every remembered secret and any DSN password from rendered text."""
    text = redact_dsn(text)
    for secret in sorted(_known_secrets, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


def scrub_data(value: Any) -> Any:
    """`scrub` applied to every string inside JSON-like data."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, Mapping):
        return {k: scrub_data(v) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub_data(v) for v in value]
    return value
