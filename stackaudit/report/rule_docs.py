"""docs/rules/: one Markdown page per rule code, generated from the rule docstrings.

`python -m stackaudit.report.rule_docs docs/rules` rewrites them; a test fails when a page is out of
date, so the explain pages, the docs and the code never disagree.
"""

from __future__ import annotations

import sys
from pathlib import Path

from stackaudit.rules import Rule, load_all


def page(rule: Rule) -> str:
    needs = ", ".join(rule.needs) or (f"any of {', '.join(rule.needs_any)}" if rule.needs_any else "nothing")
    return (f"# {rule.code} {rule.name}\n\nDefault severity: **{rule.severity.label()}** · "
            f"needs: {needs} · `stackaudit explain {rule.code}`\n\n{rule.doc.strip()}\n")


def index(rules: dict[str, Rule]) -> str:
    rows = "\n".join(f"| [{r.code}]({r.code}.md) | {r.name} | {r.severity.label()} | {r.summary} |"
                     for r in rules.values())
    return ("# Rules\n\nGenerated from the rule docstrings by `python -m stackaudit.report.rule_docs "
            "docs/rules`.\n\n| code | name | severity | checks |\n|---|---|---|---|\n" + rows + "\n")


def expected_files() -> dict[str, str]:
    rules = load_all()
    files = {f"{code}.md": page(rule) for code, rule in rules.items()}
    files["README.md"] = index(rules)
    return files


def write(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.md"):
        stale.unlink()
    for name, text in expected_files().items():
        (directory / name).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    write(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/rules"))
