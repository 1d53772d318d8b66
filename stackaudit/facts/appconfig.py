"""Pure parsers for app-server configuration: command lines, puma.rb, database.yml, sidekiq.yml,
gunicorn.conf.py, and the small Ruby/ERB expressions they use to read the environment.

Every number comes back as a `Resolved(value, origin)` so the app facts can say where it came from
("env RAILS_MAX_THREADS=8", "config/puma.rb:12 default 2"). Nothing here reads files or the
environment itself: callers pass text and an env mapping, so tests feed them strings.
"""

from __future__ import annotations

import ast
import re
import shlex
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Env = Mapping[str, "str | None"]


@dataclass(frozen=True)
class Resolved:
    """A value and a short human description of where it came from."""

    value: Any
    origin: str


# ---------------------------------------------------------------------------------------------
# Ruby expressions as written in puma.rb and ERB tags: ENV.fetch("X") { 2 }, ENV.fetch("X", 2),
# Integer(ENV["X"] || 5), ENV["X"].to_i, variables assigned earlier in the same file.

_RUBY_TOKEN = re.compile(
    r"""\s*(?:(\d+)|"([^"]*)"|'([^']*)'|(\|\||[A-Za-z_][A-Za-z0-9_]*[?!]?|[(){}\[\],.|]))""")


class _RubyParser:
    """Recursive descent over the tiny subset of Ruby that config files use for numbers."""

    def __init__(self, text: str, env: Env, variables: Mapping[str, Resolved]) -> None:
        self.tokens = self._tokenize(text)
        self.pos = 0
        self.env = env
        self.variables = variables

    @staticmethod
    def _tokenize(text: str) -> list[tuple[str, str]]:
        tokens: list[tuple[str, str]] = []
        pos = 0
        text = text.strip()
        while pos < len(text):
            match = _RUBY_TOKEN.match(text, pos)
            if not match or match.end() == pos:
                raise ValueError(f"unsupported Ruby near {text[pos:pos + 20]!r}")
            number, dq, sq, other = match.groups()
            if number is not None:
                tokens.append(("int", number))
            elif dq is not None or sq is not None:
                tokens.append(("str", dq if dq is not None else sq or ""))
            else:
                tokens.append(("op" if not other[0].isalpha() and other[0] != "_" else "name", other))
            pos = match.end()
            while pos < len(text) and text[pos].isspace():
                pos += 1
        return tokens

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, expected: str | None = None) -> tuple[str, str]:
        token = self.peek()
        if token is None or (expected is not None and token[1] != expected):
            raise ValueError(f"expected {expected or 'a token'}, got {token}")
        self.pos += 1
        return token

    def accept(self, text: str) -> bool:
        token = self.peek()
        if token is not None and token[1] == text and token[0] in ("op", "name"):
            self.pos += 1
            return True
        return False

    def parse(self) -> Resolved:
        result = self.expression()
        if self.peek() is not None:
            raise ValueError(f"unexpected {self.peek()}")
        return result

    def expression(self) -> Resolved:
        left = self.postfix()
        while self.accept("||"):
            right = self.postfix()
            if left.value is None:
                how = f"default {right.value}" if right.origin.startswith("literal") else right.origin
                left = Resolved(right.value, f"{left.origin}, {how}")
        return left

    def postfix(self) -> Resolved:
        value = self.primary()
        while self.accept("."):
            method = self.take()[1]
            if method in ("to_i", "to_int"):
                value = Resolved(_ruby_to_i(value.value), value.origin)
            elif method != "to_s":
                raise ValueError(f"unsupported method .{method}")
        return value

    def primary(self) -> Resolved:
        kind, text = self.take()
        if kind == "int":
            return Resolved(int(text), f"literal {text}")
        if kind == "str":
            return Resolved(text, f"literal {text!r}")
        if text == "(":
            inner = self.expression()
            self.take(")")
            return inner
        if text in ("Integer", "Float"):
            self.take("(")
            inner = self.expression()
            self.take(")")
            return Resolved(_ruby_to_i(inner.value), inner.origin)
        if text == "ENV":
            return self.env_access()
        if text == "nil":
            return Resolved(None, "nil")
        if text in self.variables:
            return self.variables[text]
        raise ValueError(f"unknown name {text}")

    def env_access(self) -> Resolved:
        if self.accept("["):
            name = self.take()[1]
            self.take("]")
            return self._env_value(name) or Resolved(None, f"env {name} unset")
        self.take(".")
        self.take("fetch")
        self.take("(")
        name = self.take()[1]
        default: Resolved | None = None
        if self.accept(","):
            default = self.expression()
        self.take(")")
        if self.accept("{"):
            if self.accept("|"):  # { |key| ... }
                self.take()
                self.take("|")
            default = self.expression()
            self.take("}")
        found = self._env_value(name)
        if found is not None:
            return found
        if default is None:
            raise ValueError(f"ENV.fetch({name!r}) without default and {name} unset (KeyError at boot)")
        how = f"default {default.value}" if default.origin.startswith("literal") else default.origin
        return Resolved(default.value, f"env {name} unset, {how}")

    def _env_value(self, name: str) -> Resolved | None:
        value = self.env.get(name)
        if value is None:
            return None
        return Resolved(value, f"env {name}={value}")


def _ruby_to_i(value: Any) -> int:
    """Ruby's String#to_i: leading digits or 0 (nil.to_i is 0 too)."""
    if isinstance(value, int):
        return value
    match = re.match(r"\s*([-+]?\d+)", str(value or ""))
    return int(match.group(1)) if match else 0


def eval_ruby(text: str, env: Env, variables: Mapping[str, Resolved] | None = None) -> Resolved:
    """Evaluate a config expression; raises ValueError for anything outside the subset."""
    return _RubyParser(text, env, variables or {}).parse()


def as_int(resolved: Resolved | None) -> int | None:
    if resolved is None or resolved.value is None:
        return None
    try:
        return int(str(resolved.value).strip())
    except ValueError:
        return _ruby_to_i(resolved.value) or None


def _split_top_level_comma(text: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    depth, quote = 0, ""
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return [p.strip() for p in parts]


def _strip_ruby_comment(line: str) -> str:
    quote = ""
    for index, char in enumerate(line):
        if quote:
            quote = "" if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char == "#":
            return line[:index]
    return line


# ---------------------------------------------------------------------------------------------
# config/puma.rb


@dataclass(frozen=True)
class PumaConfig:
    workers: Resolved | None
    min_threads: Resolved | None
    max_threads: Resolved | None
    problems: tuple[str, ...]


_PUMA_ASSIGN = re.compile(r"^\s*([a-z_][a-z0-9_]*)\s*=\s*(.+?)\s*$")
_PUMA_CALL = re.compile(r"^\s*(workers|threads)[\s(]+(.+?)\)?\s*$")


def parse_puma_rb(text: str, env: Env, filename: str = "config/puma.rb") -> PumaConfig:
    """The `workers` and `threads` a puma.rb sets, evaluated against the service environment."""
    variables: dict[str, Resolved] = {}
    workers = min_threads = max_threads = None
    problems: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = _strip_ruby_comment(raw).strip()
        where = f"{filename}:{number}"
        try:
            call = _PUMA_CALL.match(line)
            if call and call.group(1) == "workers":
                workers = _located(eval_ruby(call.group(2), env, variables), where)
            elif call:
                args = _split_top_level_comma(call.group(2))
                min_threads = _located(eval_ruby(args[0], env, variables), where)
                max_threads = _located(eval_ruby(args[-1], env, variables), where)
            elif assign := _PUMA_ASSIGN.match(line):
                variables[assign.group(1)] = eval_ruby(assign.group(2), env, variables)
        except (ValueError, IndexError) as exc:
            if call:  # an assignment we cannot read only matters if workers/threads use it
                problems.append(f"{where}: cannot evaluate {line!r}: {exc}")
    return PumaConfig(workers, min_threads, max_threads, tuple(problems))


def _located(resolved: Resolved, where: str) -> Resolved:
    if resolved.origin.startswith(f"{where} "):
        return resolved
    return Resolved(resolved.value, f"{where} ({resolved.origin})")


# ---------------------------------------------------------------------------------------------
# YAML with ERB tags (database.yml, sidekiq.yml)

_ERB_TAG = re.compile(r"<%=?\s*(.*?)\s*-?%>", re.DOTALL)


def load_erb_yaml(text: str, env: Env) -> tuple[Any, dict[str, tuple[Resolved | None, int, str]]]:
    """YAML whose `<%= expr %>` tags are replaced by placeholders; returns the data and, per
    placeholder, the evaluated expression (None when outside the subset), its line and its text."""
    tags: dict[str, tuple[Resolved | None, int, str]] = {}

    def substitute(match: re.Match[str]) -> str:
        key = f"__erb{len(tags)}__"
        line = text.count("\n", 0, match.start()) + 1
        try:
            resolved: Resolved | None = eval_ruby(match.group(1), env)
        except ValueError:
            resolved = None
        tags[key] = (resolved, line, match.group(1))
        return key

    from ruamel.yaml import YAML  # lazy: start-up (the rules import this module; YAML is for files)

    yaml = YAML(typ="safe", pure=True)
    data = yaml.load(_ERB_TAG.sub(substitute, text))
    return data, tags


def _yaml_number(value: Any, key: str, tags: Mapping[str, tuple[Resolved | None, int, str]],
                 text: str, filename: str) -> Resolved | None:
    if value is None:
        return None
    if isinstance(value, str) and value in tags:
        resolved, line, expr = tags[value]
        if resolved is None:
            return Resolved(None, f"{filename}:{line} `{expr}` (not evaluable)")
        return Resolved(resolved.value, f"{filename}:{line} ({resolved.origin})")
    found = _line_of(text, key, value)
    return Resolved(value, f"{filename}:{found} literal {value}" if found else f"{filename} literal {value}")


def _line_of(text: str, key: str, value: Any) -> int | None:
    pattern = re.compile(rf"^\s*:?{re.escape(key)}:\s*{re.escape(str(value))}\s*(#.*)?$")
    for number, line in enumerate(text.splitlines(), start=1):
        if pattern.match(line):
            return number
    return None


def _primary_section(data: Any, rails_env: str) -> Mapping[str, Any] | None:
    """The settings of `rails_env`'s primary database (the section itself, or its `primary:` entry
    in a multi-database layout)."""
    section = data.get(rails_env) if isinstance(data, Mapping) else None
    if not isinstance(section, Mapping):
        return None
    if not any(k in section for k in ("adapter", "pool", "max_connections", "url", "database")):
        # multi-database layout: production: {primary: {...}, cache: {...}}
        section = section.get("primary") or next((v for v in section.values() if isinstance(v, Mapping)), {})
    return section if isinstance(section, Mapping) else None


def parse_database_yml(text: str, env: Env, rails_env: str = "production",
                       filename: str = "config/database.yml") -> Resolved | None:
    """The pool size (`pool:`, `max_connections:` since Rails 8.1) of the primary database of
    `rails_env`; None when the file sets none (then Active Record's default of 5 applies)."""
    data, tags = load_erb_yaml(text, env)
    section = _primary_section(data, rails_env)
    for key in ("max_connections", "pool"):
        if section is not None and key in section:
            return _yaml_number(section[key], key, tags, text, filename)
    return None


def parse_prepared_statements(text: str, env: Env, rails_env: str = "production",
                              filename: str = "config/database.yml") -> Resolved | None:
    """`prepared_statements:` of the primary database of `rails_env` as a bool, or None when unset
    (the PostgreSQL adapter then prepares statements)."""
    data, tags = load_erb_yaml(text, env)
    section = _primary_section(data, rails_env)
    if section is None or "prepared_statements" not in section:
        return None
    value = section["prepared_statements"]
    origin = f"{filename} prepared_statements: {value}"
    if isinstance(value, str) and value in tags:
        resolved, line, expr = tags[value]
        value = None if resolved is None else resolved.value
        origin = f"{filename}:{line} `{expr}`" + ("" if resolved is None else f" ({resolved.origin})")
    if value is None:
        return Resolved(None, origin + " (not evaluable)")
    return Resolved(str(value).strip().lower() not in ("false", "0", "no", "off"), origin)


def parse_sidekiq_yml(text: str, env: Env, rails_env: str = "production",
                      filename: str = "config/sidekiq.yml") -> Resolved | None:
    """`:concurrency:` at the top level or in the environment's section (which wins)."""
    data, tags = load_erb_yaml(text, env)
    if not isinstance(data, Mapping):
        return None
    found = None
    for scope in (data, data.get(rails_env), data.get(f":{rails_env}")):
        if isinstance(scope, Mapping):
            for key in (":concurrency", "concurrency"):
                if key in scope:
                    found = _yaml_number(scope[key], key.lstrip(":"), tags, text, filename)
    return found


@dataclass(frozen=True)
class SolidQueueConfig:
    """config/queue.yml for one environment: per worker entry (threads, processes), and how many
    dispatchers run. Solid Queue's defaults: threads 3, processes 1; with no file at all, one worker
    and one dispatcher (rails/solid_queue README, "Workers, dispatchers and scheduler")."""

    workers: tuple[tuple[Resolved, Resolved], ...]
    dispatchers: int


def parse_queue_yml(text: str, env: Env, rails_env: str = "production",
                    filename: str = "config/queue.yml") -> SolidQueueConfig:
    data, tags = load_erb_yaml(text, env)
    scope = data.get(rails_env, data) if isinstance(data, Mapping) else {}
    if not isinstance(scope, Mapping):
        scope = {}
    workers = []
    for entry in scope.get("workers") or []:
        if not isinstance(entry, Mapping):
            continue
        threads = _yaml_number(entry.get("threads"), "threads", tags, text, filename) \
            or Resolved(3, "Solid Queue default threads 3")
        processes = _yaml_number(entry.get("processes"), "processes", tags, text, filename) \
            or Resolved(1, "Solid Queue default processes 1")
        workers.append((threads, processes))
    dispatchers = scope.get("dispatchers") or []
    return SolidQueueConfig(tuple(workers), len(dispatchers) if isinstance(dispatchers, list) else 0)


# ---------------------------------------------------------------------------------------------
# gunicorn.conf.py (Python, evaluated with ast over a safe subset: no code runs)

_GUNICORN_SETTINGS = ("workers", "threads", "worker_class", "worker_connections")


def parse_gunicorn_conf(text: str, env: Env, cpu_count: int | None,
                        filename: str = "gunicorn.conf.py") -> dict[str, Resolved]:
    tree = ast.parse(text, filename=filename)
    found: dict[str, Resolved] = {}
    for node in tree.body:
        if not isinstance(node, ast.Assign) or len(node.targets) != 1:
            continue
        target = node.targets[0]
        if not isinstance(target, ast.Name) or target.id not in _GUNICORN_SETTINGS:
            continue
        try:
            value, origin = _py_eval(node.value, env, cpu_count)
        except ValueError as exc:
            found[target.id] = Resolved(None, f"{filename}:{node.lineno} not evaluable ({exc})")
            continue
        found[target.id] = Resolved(value, f"{filename}:{node.lineno} ({origin})")
    return found


def _py_eval(node: ast.expr, env: Env, cpu_count: int | None) -> tuple[Any, str]:
    if isinstance(node, ast.Constant):
        return node.value, f"literal {node.value!r}"
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub, ast.Mult, ast.FloorDiv)):
        left, lo = _py_eval(node.left, env, cpu_count)
        right, ro = _py_eval(node.right, env, cpu_count)
        ops: dict[type, Callable[[int, int], int]] = {
            ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b,
            ast.Mult: lambda a, b: a * b, ast.FloorDiv: lambda a, b: a // b}
        inputs = [o for o in (lo, ro) if not o.startswith("literal")]
        return ops[type(node.op)](int(left), int(right)), " ".join([ast.unparse(node), *inputs])
    if isinstance(node, ast.Call):
        return _py_call(node, env, cpu_count)
    if isinstance(node, ast.Subscript) and _dotted(node.value) == "os.environ":
        name = _py_eval(node.slice, env, cpu_count)[0]
        if env.get(name) is None:
            raise ValueError(f"os.environ[{name!r}] unset")
        return env[name], f"env {name}={env[name]}"
    raise ValueError(f"unsupported expression {ast.dump(node)[:60]}")


def _py_call(node: ast.Call, env: Env, cpu_count: int | None) -> tuple[Any, str]:
    name = _dotted(node.func)
    if name in ("int", "str") and len(node.args) == 1:
        value, origin = _py_eval(node.args[0], env, cpu_count)
        return (int(value) if name == "int" else str(value)), origin
    if name in ("multiprocessing.cpu_count", "os.cpu_count", "cpu_count"):
        if cpu_count is None:
            raise ValueError("depends on the CPU count, which is unknown")
        return cpu_count, f"cpu_count()={cpu_count}"
    if name in ("os.environ.get", "os.getenv") and node.args:
        key = _py_eval(node.args[0], env, cpu_count)[0]
        if env.get(key) is not None:
            return env[key], f"env {key}={env[key]}"
        if len(node.args) > 1:
            value, origin = _py_eval(node.args[1], env, cpu_count)
            return value, f"env {key} unset, {origin}"
        raise ValueError(f"{key} unset and no default")
    raise ValueError(f"unsupported call {name}")


def _dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return "?"


# ---------------------------------------------------------------------------------------------
# Command lines


def split_commands(argv: Sequence[str]) -> list[list[str]]:
    """entrypoint+command as shell-like segments: `sh -c "a && b"` -> [[a...], [b...]]."""
    words = list(argv)
    if len(words) >= 3 and words[0].rsplit("/", 1)[-1] in ("sh", "bash", "ash", "dash") and "-c" in words:
        script = words[words.index("-c") + 1] if words.index("-c") + 1 < len(words) else ""
        try:
            words = shlex.split(script, posix=True)
        except ValueError:
            words = script.split()
    segments: list[list[str]] = [[]]
    for word in words:
        if word in ("&&", "||", ";", "|"):
            segments.append([])
        elif word.endswith(";") and len(word) > 1:
            segments[-1].append(word[:-1])
            segments.append([])
        else:
            segments[-1].append(word)
    return [s for s in segments if s]


def option(args: Sequence[str], names: Sequence[str]) -> str | None:
    """The last value of an option given as `-w 4`, `-w4`, `--workers 4` or `--workers=4`."""
    found = None
    for index, word in enumerate(args):
        for name in names:
            if word == name and index + 1 < len(args):
                found = args[index + 1]
            elif name.startswith("--") and word.startswith(name + "="):
                found = word.split("=", 1)[1]
            elif not name.startswith("--") and word.startswith(name) and len(word) > len(name) \
                    and word[len(name)].isdigit():
                found = word[len(name):]
    return found


def iter_env_names(env: Env, pattern: str) -> Iterator[str]:
    regex = re.compile(pattern)
    for key in sorted(env):
        if regex.fullmatch(key):
            yield key


class YamlError(ValueError):
    """A config file the parser cannot read (the message says which and why)."""


def safe_parse(parse: Callable[[], Any], filename: str) -> Any:
    """Run a parser and turn any YAML/syntax problem into a YamlError with the file name."""
    from ruamel.yaml.error import YAMLError  # lazy: start-up (as above)

    try:
        return parse()
    except (YAMLError, SyntaxError, ValueError, TypeError, AttributeError) as exc:
        raise YamlError(f"{filename}: {exc.__class__.__name__}: {str(exc).splitlines()[0][:200]}") from None
