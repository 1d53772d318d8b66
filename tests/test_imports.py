"""A function-local import is there for start-up time only, and says so (docs/architecture.md):
everything else is imported at the top, where import-linter sees it."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "stackaudit"
MARK = "# lazy: start-up"


def local_imports(path: Path) -> list[tuple[int, str]]:
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    found = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.Import, ast.ImportFrom)) and node.col_offset > 0:
            if "TYPE_CHECKING" in lines[node.lineno - 2]:
                continue  # a type only (import-linter leaves those out too)
            found.append((node.lineno, "\n".join(lines[node.lineno - 2:node.end_lineno])))
    return found


def test_every_function_local_import_is_marked_as_a_start_up_import() -> None:
    files = sorted(PACKAGE.rglob("*.py"))
    seen = [(path, line, text) for path in files for line, text in local_imports(path)]
    assert seen, "no function-local import at all: the check would pass on nothing"
    unmarked = [f"{path.relative_to(PACKAGE.parent)}:{line}" for path, line, text in seen if MARK not in text]
    assert unmarked == [], f"function-local imports without {MARK!r}: {unmarked}"
