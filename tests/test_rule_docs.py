"""Every registered rule has a complete explain page and tests where it fires and stays silent."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from stackaudit.rules import DOC_SECTIONS, load_all

TESTS = Path(__file__).parent
CODE = re.compile(r"^[A-Z]{2,3}\d{3}$")


def _test_function_names() -> set[str]:
    names: set[str] = set()
    for path in TESTS.rglob("test_*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names.update(node.name for node in ast.walk(tree)
                     if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"))
    return names


RULES = load_all()
TEST_NAMES = _test_function_names()


def test_catalogue_has_the_fixed_minimum_codes_that_exist_so_far() -> None:
    assert RULES, "no rules registered"
    for code in RULES:
        assert CODE.match(code), f"{code} is not PREFIX + three digits"


@pytest.mark.parametrize("code", sorted(RULES))
def test_rule_doc_has_every_section(code: str) -> None:
    rule = RULES[code]
    for heading in DOC_SECTIONS:
        assert rule.section(heading), f"{code} lacks '## {heading}' (or it is empty)"


@pytest.mark.parametrize("code", sorted(RULES))
def test_rule_has_a_firing_and_a_silent_test(code: str) -> None:
    prefix = f"test_{code.lower()}_"
    assert any(n.startswith(prefix + "fires") for n in TEST_NAMES), f"no {prefix}fires… test"
    assert any(n.startswith(prefix + "silent") for n in TEST_NAMES), f"no {prefix}silent… test"


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
