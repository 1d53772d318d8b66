"""Secrets never leave: recognise secrets by name and by value, strip DSN passwords, scrub known values.

Collectors redact at the moment they read a value (`redact_env`, `redact_value`, `redact_dsn`). As a
second line of defence every strong secret value a collector has seen is remembered (`remember`) and
`scrub` replaces it in any text a renderer produces. A guessable value (a common word, a service's
own name) is not remembered: scrubbing it would blank out names and words all over a report while
hiding nothing an attacker would not try first; it is redacted where it stands and reported weak.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

REDACTED = "***"

# Names that hold a secret, matched on an upper-cased key (DB_PASSWORD, API_TOKEN, SECRET_KEY_BASE,
# AWS_SECRET_ACCESS_KEY, SMTP_PASS, DB_PW, GPG_PASSPHRASE, ...).
_SECRET_KEY = re.compile(
    r"(PASSW(OR)?D|PASSWD|PWD|PASSPHRASE|SECRET|TOKEN|API_?KEY|PRIVATE_?KEY|ACCESS_?KEY|CREDENTIAL|AUTH|"
    r"SALT|SIGNING|ENCRYPTION_?KEY|MASTER_?KEY|DSN|LICENSE_?KEY|WEBHOOK|(^|_)PW$|(^|_)PASS$)",
)
# Names that match the pattern above but hold a setting, a name or a file path, not a secret: rules
# need those values (POSTGRES_HOST_AUTH_METHOD=trust is SEC005, GF_AUTH_ANONYMOUS_ORG_ROLE=Admin is
# SEC010, POSTGRES_PASSWORD_FILE=/run/secrets/pg is the recommended way to pass a password).
_NOT_SECRET_KEY = re.compile(
    r"(^|_)(METHOD|MECHANISM|TYPE|MODE|ENABLED?|DISABLED?|ROLE|PROVIDER|USER|USERNAME|LOGIN|ID|NAME|HOST|"
    r"PORT|TTL|EXPIRY|EXPIRES?|EXPIRATION|TIMEOUT|LENGTH|LIFETIME|AGE|HEADER|ALGORITHM|ISSUER|AUDIENCE|"
    r"SCOPES?|DOMAIN|FORM|REQUIRED|POLICY|STRATEGY|FORMAT|PREFIX|URL_PATH|FILE|PATH|DIR|FILENAME|"
    r"LOCATION)$"
)
# `*_KEY` names (APP_KEY, STRIPE_KEY, SECRET_KEY) hold a secret only when the value is key material:
# PRIMARY_KEY=id or SORT_KEY=created_at are settings.
_KEY_NAME = re.compile(r"(^|_)KEY(_BASE)?$")
# Switch names: MYSQL_ALLOW_EMPTY_PASSWORD=yes, MYSQL_RANDOM_ROOT_PASSWORD=yes say how, not what.
_SWITCH_NAME = re.compile(r"(^|_)(ALLOW|RANDOM|EMPTY|GENERATE|SKIP|REQUIRE|ENABLE|DISABLE|RESET|FORCE|USE)"
                          r"(_|$)")
_SWITCH_VALUES = frozenset({"true", "false", "yes", "no", "on", "off", "1", "0", "y", "n", "enabled",
                            "disabled", "none", "null"})
# A path to the file holding the secret (`/run/secrets/db_password`): the Compose secrets way.
_FILE_REFERENCE = re.compile(r"/run/secrets/\S+|/[\w.@+-]+(/[\w.@+-]+)+|\./[\w./@+-]+")
_URL_WITH_PASSWORD = re.compile(r"\b([a-z][a-z0-9+.-]*://)([^:/@\s]*):([^@\s]*)@", re.IGNORECASE)
# libpq keyword form: password=secret or password='se cret'
_KEYWORD_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)
# Password flags inside free text (a shell command string): `--requirepass X`, `redis-cli -a X`.
_FLAG_PASSWORD = re.compile(r"((?:^|\s)(?:--(?:requirepass|masterauth|password|pass)|redis-cli\b[^\n]*?\s-a)"
                            r"(?:=|\s+))(?!\*\*\*)(\S+)", re.IGNORECASE)

# .env parse errors of compose-go quote the rest of the line, value included ("unterminated quoted
# value \"s3cret", "unexpected character \"'\" in variable name \"A'=s3cret\""): cut them there.
_DOTENV_ERROR_TAIL = re.compile(r"(unterminated quoted value|in variable name)(?! of )(?: .*)?", re.DOTALL)

# Values that anyone guessing would try first, and the placeholders of popular examples. SEC003
# reports them as weak; `remember` leaves them out (see the module docstring).
WEAK_VALUES = frozenset({
    "postgres", "password", "passw0rd", "changeme", "change_me", "change-me", "changeit", "secret",
    "admin", "administrator", "root", "toor", "test", "example", "default", "pass", "redis", "mysql",
    "mariadb", "mongo", "mongodb", "grafana", "elastic", "123456", "12345678", "123456789", "qwerty",
    "letmein", "guest", "xxx", "todo", "replaceme", "your_secret_here", "your-secret-key",
    "maybe_password", "sure_password", "supersecret", "mysecret", "mypassword", "pa55word", "p@ssw0rd",
    "welcome", "user", "demo",
})
# The SECRET_KEY_BASE that Maybe's example compose file falls back to (maybe-finance/maybe,
# compose.example.yml, `${SECRET_KEY_BASE:-a7523c3d...}`): every copy-pasted install shares it.
UPSTREAM_EXAMPLE_SECRETS = frozenset({
    "a7523c3d0ae56415046ad8abae168d71074a79534a7062258f8d1d51ac2f76d3c3bc86d86b6b0b307df30d9a6a90a20"
    "66a3fa9e67c5e6f374dbd7dd4e0778e13",
})
MIN_SECRET_LENGTH = 8
# One run of letters (a longer one is a passphrase or random), maybe with digits and symbols around.
_ONE_WORD = re.compile(r"([\W\d_]*)([A-Za-z]{3,12})[\W\d_]*")
_MAX_LEFTOVER_LETTERS = 3  # besides known words: "db", "pw", "app" add no real guessing work

_known_secrets: set[str] = set()
# Where each remembered value was met ("env:/srv/app/.env:DB_PASSWORD" -> value), in this process
# only: `stackaudit collect` turns them into keyed fingerprints (facts/fingerprints.py), never output.
_places: dict[str, str] = {}
_names: set[str] = set()  # service, project and image names the report shows (never scrubbed)
_scrubbed: list[list[str]] = []  # the values scrub replaces, longest first (cached until a change)
_MIN_SCRUB_LENGTH = 6  # shorter values ("1", "on", "wrong") would blank out ordinary words


def is_secret_key(name: str) -> bool:
    """Whether a variable's name says it holds a secret (a `*_KEY` is judged by its value too)."""
    upper = name.upper()
    return bool(_SECRET_KEY.search(upper)) and not _NOT_SECRET_KEY.search(upper)


def is_key_name(name: str) -> bool:
    upper = name.upper()
    return bool(_KEY_NAME.search(upper)) and not _NOT_SECRET_KEY.search(upper)


def looks_like_key_material(value: str) -> bool:
    """A PEM block, Laravel's `base64:...`, or a long token of letters and digits (no words)."""
    text = value.strip()
    if "-----BEGIN" in text or text.startswith("base64:"):
        return True
    return (len(text) >= 16 and not any(c.isspace() for c in text)
            and any(c.isdigit() for c in text) and any(c.isalpha() for c in text))


def is_switch_value(value: str) -> bool:
    return value.strip().lower() in _SWITCH_VALUES


def is_file_reference(value: str) -> bool:
    return bool(_FILE_REFERENCE.fullmatch(value.strip()))


def holds_secret(key: str, value: str | None) -> bool:
    """Whether `key=value` passes a secret: judged by the name, then by the value.

    Not secrets: an empty value, a path to a secrets file (`POSTGRES_PASSWORD_FILE`, or a
    `*_PASSWORD` whose value is under /run/secrets), a switch (`MYSQL_ALLOW_EMPTY_PASSWORD=yes`), a
    role or method (`GF_AUTH_ANONYMOUS_ORG_ROLE=Admin`), a `*_KEY` that holds a name (`PRIMARY_KEY=id`).
    A switch word under a plain password name (`POSTGRES_PASSWORD=true`) is a password, a weak one.
    """
    text = (value or "").strip()
    if not text:
        return False
    if url_password(text):
        return True  # DATABASE_URL=postgres://app:pw@db/app, whatever the name
    if is_file_reference(text):
        return False
    if not is_secret_key(key):
        return is_key_name(key) and looks_like_key_material(text)
    return not (is_switch_value(text) and _SWITCH_NAME.search(key.upper()))


def url_password(text: str) -> str | None:
    """The password written in a URL of the text (not an interpolation like `${DB_PASSWORD}`)."""
    for match in _URL_WITH_PASSWORD.finditer(text):
        if match.group(3) and "$" not in match.group(3):
            return match.group(3)
    return None


def secret_part(key: str, value: str) -> str:
    """The part of a secret value to judge: a URL's password, else the whole value."""
    return url_password(value) or value


def note_names(names: Iterable[str | None]) -> None:
    """Names the report shows (services, projects, images, directories): a remembered value that is
    part of one is not scrubbed, since hiding it would mangle the name and hide nothing."""
    _names.update(n for n in names if n)
    _scrubbed.clear()


def _normal(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def weak_reason(value: str, names: Iterable[str | None] = ()) -> str | None:
    """Why a secret value is guessable, without repeating it; None when it looks like a real secret.

    `names` are the words an attacker tries first besides the well-known ones: the service's, the
    project's and the image's own names.
    """
    text = value.strip()
    if not text:
        return "empty"
    lower = text.lower()
    if lower in WEAK_VALUES:
        return "a well-known default or placeholder"
    if text in UPSTREAM_EXAMPLE_SECRETS:
        return "the example value published by the upstream project"
    given = [n.lower() for n in names if n]
    own = {_normal(n) for n in given if len(_normal(n)) >= 3}
    if _normal(text) in own:
        return "the service's or image's own name"
    parts = {p for n in given for p in re.split(r"[^a-z0-9]+", n) if len(p) >= 3}
    if _made_of(text, own | parts | WEAK_VALUES):
        return "common words or the service's name, with a few digits, symbols or letters around them"
    word = _ONE_WORD.fullmatch(text)
    if word and (word.group(2).islower() or word.group(2).istitle()):
        return "a single word" if word.group(2) == text else "a single word with digits or symbols around it"
    if len(text) < MIN_SECRET_LENGTH:
        return f"shorter than {MIN_SECRET_LENGTH} characters"
    return None


def _made_of(value: str, words: Iterable[str]) -> bool:
    """Whether the value is known words (longest first) plus digits, symbols and a few lower-case
    letters ("nextcloud-db-pass", "shopdb2024"); a mixed-case leftover ("Kx93") looks generated."""
    rest = value
    found = False
    for word in sorted((w for w in words if len(w) >= 3), key=len, reverse=True):
        if word in rest.lower():
            rest = re.sub(re.escape(word), " ", rest, flags=re.IGNORECASE)
            found = True
    letters = [c for c in rest if c.isalpha()]
    return found and len(letters) <= _MAX_LEFTOVER_LETTERS and not any(c.isupper() for c in letters)


def is_guessable(value: str) -> bool:
    """Too short or too common to scrub from prose (see the module docstring)."""
    if len(value) < _MIN_SCRUB_LENGTH:
        return True
    return weak_reason(value) not in (None, f"shorter than {MIN_SECRET_LENGTH} characters")


def remember(value: str | None, where: str | None = None) -> None:
    """Note a secret value so that `scrub` removes it from any output; `where` (names only, never
    the value) says where it was met, for the fleet's secret-reuse check. A guessable value is not
    fingerprinted either: its reuse is reported as weak already, and a fingerprint of a common word
    could be looked up by whoever holds the fleet key."""
    if value and not is_guessable(value):
        _known_secrets.add(value)
        _scrubbed.clear()
        if where:
            _places[where] = value


def remember_env(where: str, env: Mapping[str, str | None]) -> None:
    """Remember every secret of an environment, each at `where:KEY`."""
    for key, value in env.items():
        if value is not None and holds_secret(key, value):
            remember(secret_part(key, value), f"{where}:{key}")


def dsn_password(text: str) -> str | None:
    """The password of a URL or of a libpq keyword string (`password=...`), else None."""
    found = url_password(text)
    if found is None:
        match = _KEYWORD_PASSWORD.search(text)
        found = match.group(2).strip("'") if match else None
    return found


def secret_places() -> dict[str, str]:
    """Where each remembered secret was met (see `remember`), sorted by place."""
    return dict(sorted(_places.items()))


def forget_all() -> None:
    """Clear the remembered values (a new audit in a long-lived process, and test isolation)."""
    _known_secrets.clear()
    _places.clear()
    _names.clear()
    _scrubbed.clear()


def redact_dsn(text: str) -> str:
    """postgres://u:pw@h/db -> postgres://u:***@h/db; `password=pw` -> `password=***`.

    Each pattern is searched once and replaces only when it matched: a fleet report scrubs
    megabytes of text in which nothing matches."""
    urls = [m.group(3) for m in _URL_WITH_PASSWORD.finditer(text)]
    keywords = [m.group(2).strip("'") for m in _KEYWORD_PASSWORD.finditer(text)]
    flags = [m.group(2) for m in _FLAG_PASSWORD.finditer(text)]
    for value in urls + keywords + flags:
        remember(value)
    if urls:
        text = _URL_WITH_PASSWORD.sub(lambda m: f"{m.group(1)}{m.group(2)}:{REDACTED}@", text)
    if keywords:
        text = _KEYWORD_PASSWORD.sub(lambda m: f"{m.group(1)}{REDACTED}", text)
    return _FLAG_PASSWORD.sub(lambda m: f"{m.group(1)}{REDACTED}", text) if flags else text


def without_dotenv_values(message: str) -> str:
    """A compose-go .env error message with the quoted rest of the line (the value) cut off."""
    return _DOTENV_ERROR_TAIL.sub(lambda m: f"{m.group(1)} (the value is not shown)", message)


def redact_value(key: str, value: str) -> str:
    """The value of an environment variable as it may be shown: a secret never, a weak one neither."""
    if holds_secret(key, value) and (is_secret_key(key) or not url_password(value)):
        remember(value)
        return REDACTED
    return redact_dsn(value)  # a URL keeps its user and host: rules read them (SEC005)


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
    for secret in _to_scrub():
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def _to_scrub() -> list[str]:
    if not _scrubbed:
        _scrubbed.append(sorted((s for s in _known_secrets if not any(s in name for name in _names)),
                                key=len, reverse=True))
    return _scrubbed[0]


def scrub_data(value: Any) -> Any:
    """`scrub` applied to every string inside JSON-like data."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, Mapping):
        return {k: scrub_data(v) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub_data(v) for v in value]
    return value
