"""Every registered rule has a complete explain page and tests where it fires and stays silent.

The firing and silent tests are found by what they assert, not by their names: the test files' AST
is read, and per code there must be a test function with an assertion that a finding of that code
exists (`assert "PG302" in codes`, `[hit] = hits(rules.duplicate_index, ...)`, `assert len(found) == 1`
on what a call naming the code returned) and one with an assertion that none does (`== []`,
`not in`, `not any(...)`). A code is named by its string ("PG302") or its rule function
(`rules.duplicate_index`), directly, through a module constant, a variable assigned from such a
call, or a parametrize argument.
"""

from __future__ import annotations

import ast
import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from stackaudit.rules import DOC_SECTIONS, load_all

TESTS = Path(__file__).parent
CODE = re.compile(r"^[A-Z]{2,3}\d{3}$")
CODE_IN_TEXT = re.compile(r"\b[A-Z]{2,3}\d{3}\b")
URL = re.compile(r"https?://\S+$")

RULES = load_all()
CODE_OF_FUNCTION = {rule.check.__name__: code for code, rule in RULES.items()}


# ------------------------------------------------------------------ what a test asserts, from its AST


@dataclass
class Asserted:
    fires: set[str] = field(default_factory=set)
    silent: set[str] = field(default_factory=set)


class TestFunction:
    """One test function: which codes its expressions name, and which its assertions say fire or not."""

    def __init__(self, node: ast.FunctionDef, constants: dict[str, set[str]]) -> None:
        self.node = node
        self.names: dict[str, set[str]] = dict(constants)  # variable -> codes it stands for
        self.names.update(_parametrized(node, self))
        self.asserted = Asserted()

    def codes(self, expr: ast.AST | None) -> set[str]:
        found: set[str] = set()
        for sub in ast.walk(expr) if expr is not None else ():
            if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
                found |= set(CODE_IN_TEXT.findall(sub.value)) & RULES.keys()
            elif isinstance(sub, ast.Attribute) and sub.attr in CODE_OF_FUNCTION:
                found.add(CODE_OF_FUNCTION[sub.attr])
            elif isinstance(sub, ast.Name):
                found |= self.names.get(sub.id, set())
                if sub.id in CODE_OF_FUNCTION:
                    found.add(CODE_OF_FUNCTION[sub.id])
        return found

    def read(self) -> Asserted:
        for statement in _statements(self.node.body):
            if isinstance(statement, (ast.Assign, ast.AnnAssign)) and statement.value is not None:
                self._assignment(statement)
            elif isinstance(statement, ast.Assert):
                for clause in _clauses(statement.test):
                    self._assertion(clause)
        return self.asserted

    def _assignment(self, statement: ast.Assign | ast.AnnAssign) -> None:
        codes = self.codes(statement.value)
        targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
        for target in targets:
            for name in ast.walk(target):
                if isinstance(name, ast.Name):
                    self.names[name.id] = self.names.get(name.id, set()) | codes
            # `[hit] = hits(...)` fails unless exactly that many findings came back
            unpacked = isinstance(target, (ast.List, ast.Tuple)) and target.elts
            if unpacked and isinstance(statement.value, ast.Call) and not _is_empty(statement.value):
                self.asserted.fires |= codes

    def _assertion(self, test: ast.expr) -> None:
        fires, silent = self.asserted.fires, self.asserted.silent
        if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
            silent |= self.codes(test.operand)  # assert not run(...), assert not any(f.code == ...)
        elif isinstance(test, ast.Compare) and len(test.ops) == 1:
            self._comparison(test.left, test.ops[0], test.comparators[0])
        elif isinstance(test, ast.Call) and _called(test) == "all":
            silent |= self.codes(test)  # all(f.code != "X" ...)
        elif isinstance(test, (ast.Call, ast.Name, ast.Attribute, ast.Subscript)):
            fires |= self.codes(test)  # assert findings, assert any(f.code == "X" ...)
        if not (isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not)):
            # found[0].message, hits["shop/ci"]: indexing what came back fails unless it fired
            fires |= {code for sub in ast.walk(test) if isinstance(sub, ast.Subscript)
                      and not isinstance(sub.slice, ast.Slice) for code in self.codes(sub.value)}

    def _comparison(self, left: ast.expr, op: ast.cmpop, right: ast.expr) -> None:
        fires, silent = self.asserted.fires, self.asserted.silent
        if isinstance(op, ast.In):
            fires |= self.codes(left)
        elif isinstance(op, ast.NotIn):
            silent |= self.codes(left)
        elif isinstance(op, (ast.Eq, ast.Is)):
            for one, other in ((left, right), (right, left)):
                if _is_empty(one) or (_is_falsy(one) and _is_count(other)):
                    silent |= self.codes(other)  # found == [], len(found) == 0
                elif _is_count(one) and _is_positive(other):
                    fires |= self.codes(one)
                elif _is_literal(one) and not _is_falsy(one) and not _mentions_skipped(other):
                    # codes(found) == [("PG301", ...)], f.code == "PG301", [h.subject for h in found] == ["x"]
                    fires |= self.codes(one) | self.codes(other)
        elif isinstance(op, ast.LtE):  # {"PG010", "SEC001"} <= codes
            fires |= self.codes(left)
        elif isinstance(op, ast.GtE):
            fires |= self.codes(right) if _is_literal(right) else self.codes(left)
        elif isinstance(op, (ast.Gt, ast.NotEq)) and (_is_empty(right) or _is_zero(right)):
            fires |= self.codes(left)


def _parametrized(node: ast.FunctionDef, function: TestFunction) -> dict[str, set[str]]:
    names: dict[str, set[str]] = {}
    for decorator in node.decorator_list:
        if isinstance(decorator, ast.Call) and _called(decorator) == "parametrize" and decorator.args:
            first = decorator.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                codes = function.codes(decorator.args[1]) if len(decorator.args) > 1 else set()
                for argname in first.value.split(","):
                    names[argname.strip()] = codes
    return names


def _statements(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """The statements in order, into with/for/if/try blocks (not into nested functions)."""
    for statement in body:
        yield statement
        if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        for name in ("body", "orelse", "finalbody", "handlers"):
            inner = getattr(statement, name, None)
            if isinstance(inner, list):
                yield from _statements([s for s in inner if isinstance(s, ast.stmt)] +
                                       [s for h in inner if isinstance(h, ast.ExceptHandler) for s in h.body])


def _clauses(test: ast.expr) -> list[ast.expr]:
    if isinstance(test, ast.BoolOp) and isinstance(test.op, ast.And):
        return [clause for value in test.values for clause in _clauses(value)]
    return [test]


def _called(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def _is_empty(node: ast.expr) -> bool:
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        return not node.elts
    if isinstance(node, ast.Dict):
        return not node.keys
    return isinstance(node, ast.Call) and _called(node) in ("set", "list", "dict", "tuple") and not node.args


def _is_literal(node: ast.expr) -> bool:
    return isinstance(node, (ast.Constant, ast.List, ast.Tuple, ast.Set, ast.Dict)) and not _is_empty(node)


def _is_count(node: ast.expr) -> bool:
    return isinstance(node, ast.Call) and _called(node) == "len"


def _is_positive(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, int) and node.value > 0


def _is_falsy(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and not node.value


def _is_zero(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and node.value == 0


def _mentions_skipped(node: ast.expr) -> bool:
    """`[s.code for s in skipped] == ["SYS003"]` says the rule was skipped, not that it fired."""
    return any(isinstance(n, ast.Name) and "skip" in n.id.lower() for n in ast.walk(node))


def _module_constants(tree: ast.Module) -> dict[str, set[str]]:
    constants: dict[str, set[str]] = {}
    for statement in tree.body:
        if isinstance(statement, ast.Assign):
            codes = {c for n in ast.walk(statement.value) if isinstance(n, ast.Constant)
                     and isinstance(n.value, str) for c in CODE_IN_TEXT.findall(n.value)} & RULES.keys()
            for target in statement.targets:
                if isinstance(target, ast.Name) and codes:
                    constants[target.id] = codes
    return constants


def _test_functions(tree: ast.Module) -> Iterator[ast.FunctionDef]:
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
            yield node


@functools.cache  # read when a test asks, once: not at import by every pytest-xdist worker
def assertions_per_code() -> dict[str, dict[str, list[str]]]:
    """code -> {"fires": [test ids], "silent": [test ids]}."""
    found: dict[str, dict[str, list[str]]] = {code: {"fires": [], "silent": []} for code in RULES}
    for path in sorted(TESTS.rglob("test_*.py")):
        if path == Path(__file__):
            continue  # this file's own examples of the reader are not tests of rules
        tree = ast.parse(path.read_text(encoding="utf-8"))
        constants = _module_constants(tree)
        for node in _test_functions(tree):
            asserted = TestFunction(node, constants).read()
            where = f"{path.relative_to(TESTS)}::{node.name}"
            for code in asserted.fires:
                found[code]["fires"].append(where)
            for code in asserted.silent:
                found[code]["silent"].append(where)
    return found



# ------------------------------------------------------------------ the catalogue


def test_catalogue_has_the_fixed_minimum_codes_that_exist_so_far() -> None:
    assert RULES, "no rules registered"
    for code in RULES:
        assert CODE.match(code), f"{code} is not PREFIX + three digits"


@pytest.mark.parametrize("code", sorted(RULES))
def test_rule_doc_has_every_section(code: str) -> None:
    rule = RULES[code]
    for heading in DOC_SECTIONS:
        assert rule.section(heading), f"{code} lacks '## {heading}' (or it is empty)"


def reference_entries(text: str) -> list[str]:
    """The entries of a References section: `- ...` lines with their indented continuations."""
    entries: list[str] = []
    for line in text.splitlines():
        if line.startswith("- "):
            entries.append(line[2:].strip())
        elif line.strip() and entries:
            entries[-1] += " " + line.strip()
        elif line.strip():
            entries.append(line.strip())  # text before the first entry: not an entry, so it fails
    return entries


@pytest.mark.parametrize("code", sorted(RULES))
def test_every_reference_is_a_url(code: str) -> None:
    entries = reference_entries(RULES[code].section("References"))
    assert entries, f"{code} has no references"
    for entry in entries:
        assert URL.search(entry), f"{code}: reference {entry!r} does not end with an http(s):// URL"


def test_reference_entries_are_read_with_their_continuation_lines() -> None:
    text = "- PostgreSQL docs, work_mem:\n  https://www.postgresql.org/docs/x.html\n- PG docs, pg_dump"
    entries = reference_entries(text)
    assert entries == ["PostgreSQL docs, work_mem: https://www.postgresql.org/docs/x.html",
                       "PG docs, pg_dump"]
    assert URL.search(entries[0]) and not URL.search(entries[1])


@pytest.mark.parametrize("code", sorted(RULES))
def test_rule_has_a_firing_and_a_silent_test(code: str) -> None:
    asserted = assertions_per_code()[code]
    assert asserted["fires"], f"no test function asserts that {code} fires (finds a hit for it)"
    assert asserted["silent"], f"no test function asserts that {code} stays silent (no hit for it)"


def _asserted_by(source: str) -> Asserted:
    tree = ast.parse(source)
    [node] = _test_functions(tree)
    return TestFunction(node, _module_constants(tree)).read()


def test_the_ast_reader_tells_firing_from_silent_and_from_mere_mentions() -> None:
    fires = _asserted_by('def test_x():\n    [hit] = hits(rules.duplicate_index, facts)\n')
    assert fires.fires == {"PG302"} and not fires.silent
    silent = _asserted_by('def test_x():\n    found = run(data, "SYS001")\n    assert found == []\n')
    assert silent.silent == {"SYS001"} and not silent.fires
    # a name that says "fires" and a call that names the code, but no assertion about it: nothing
    named = _asserted_by('def test_sys004_fires():\n    run(data, "SYS004")\n    assert True\n')
    assert not named.fires and not named.silent
    skipped = _asserted_by('def test_x():\n    assert [s.code for s in skipped] == ["SYS003"]\n')
    assert not skipped.fires
    counted = _asserted_by('def test_x():\n    found = run(data, "SYS002")\n    assert len(found) == 0\n')
    assert counted.silent == {"SYS002"} and not counted.fires
    constant = _asserted_by('CODE = "PG401"\ndef test_x():\n    assert CODE not in codes(found)\n')
    assert constant.silent == {"PG401"}


def test_docs_rules_pages_are_up_to_date() -> None:
    from stackaudit.report.rule_docs import expected_files

    directory = TESTS.parent / "docs" / "rules"
    expected = expected_files()
    on_disk = {p.name: p.read_text(encoding="utf-8") for p in directory.glob("*.md")}
    names = expected.keys() | on_disk.keys()
    stale = sorted(name for name in names if expected.get(name) != on_disk.get(name))
    assert not stale, f"run `python -m stackaudit.report.rule_docs docs/rules`: {stale}"


def test_a_rule_needing_any_of_several_sources_is_skipped_when_none_was_collected() -> None:
    from stackaudit.config import Settings
    from stackaudit.facts import Facts
    from stackaudit.rules import evaluate

    _, skipped = evaluate(Facts(data={"host": {}}), Settings(select=("SEC004",)))
    assert [s.code for s in skipped] == ["SEC004"] and "compose" in skipped[0].reason
    _, skipped = evaluate(Facts(data={"compose": {"projects": []}}), Settings(select=("SEC004",)))
    assert skipped == []
