"""Facts -> Findings. One module per domain, one function per rule, the registry here.

A rule is declared with `@rule(code, name, severity, needs=(sources...))` on a function
`check(facts, settings)`, or `check(facts, settings, derived)` when it reads what `stackaudit.derive`
worked out once for the whole audit (the memory budget, the tunings). Its docstring is its
explain page and must carry every heading in DOC_SECTIONS (a test checks). Its function yields
`Hit`s; the registry stamps code, name and default severity on them. A source named in `needs`
that was not collected makes a `Skipped` with the reason, never an exception; so does a rule whose
`needs_any` names sources of which none was collected (rules that combine what is there).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cache

from stackaudit.config import Settings
from stackaudit.derive import Derived, derive
from stackaudit.facts import Facts
from stackaudit.model import Finding, Hit, Severity, Skipped

DOC_SECTIONS = (
    "What it checks",
    "Why it matters",
    "Recommendation",
    "Estimated effect",
    "Fix safety",
    "References",
)

CheckFunction = Callable[..., Iterable[Hit]]  # (facts, settings) or (facts, settings, derived)


@dataclass(frozen=True)
class Rule:
    code: str
    name: str
    severity: Severity
    needs: tuple[str, ...]
    check: CheckFunction
    doc: str
    needs_any: tuple[str, ...] = ()
    reads_derived: bool = False  # the check takes a third parameter, `derived`

    def run(self, facts: Facts, settings: Settings, derived: Derived) -> Iterable[Hit]:
        return self.check(facts, settings, derived) if self.reads_derived else self.check(facts, settings)

    @property
    def summary(self) -> str:
        """The first sentence of 'What it checks', for `stackaudit rules`."""
        body = self.section("What it checks")
        return body.split("\n\n")[0].replace("\n", " ").strip()

    def section(self, heading: str) -> str:
        marker = f"## {heading}"
        if marker not in self.doc:
            return ""
        after = self.doc.split(marker, 1)[1]
        return after.split("\n## ", 1)[0].strip()


REGISTRY: dict[str, Rule] = {}


def rule(
    code: str, name: str, severity: Severity, needs: tuple[str, ...] = (), needs_any: tuple[str, ...] = ()
) -> Callable[[CheckFunction], CheckFunction]:
    def register(func: CheckFunction) -> CheckFunction:
        if code in REGISTRY:
            raise RuntimeError(f"rule code {code} registered twice")
        reads_derived = len(inspect.signature(func).parameters) == 3
        REGISTRY[code] = Rule(code, name, severity, needs, func, inspect.cleandoc(func.__doc__ or ""),
                              needs_any, reads_derived)
        return func

    return register


def load_all() -> dict[str, Rule]:
    """Import every rules module so its @rule decorators run; returns the registry by code."""
    _import_rule_modules()
    return dict(sorted(REGISTRY.items()))


@cache
def _import_rule_modules() -> None:
    """Once per process: a fleet report evaluates a thousand snapshots, and listing the package
    each time was a seventh of its time."""
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")


def is_selected(code: str, select: Iterable[str], ignore: Iterable[str]) -> bool:
    """ruff-style: a code is in when a select prefix matches (or none is given) and no ignore does."""
    select, ignore = tuple(select), tuple(ignore)
    if select and not any(code.startswith(prefix) for prefix in select):
        return False
    return not any(code.startswith(prefix) for prefix in ignore)


def evaluate(facts: Facts, settings: Settings, derived: Derived | None = None
             ) -> tuple[list[Finding], list[Skipped]]:
    """Every selected rule on the facts; `derived` is derived from them when not given."""
    derived = derived if derived is not None else derive(facts)
    findings: list[Finding] = []
    skipped: list[Skipped] = []
    for code, registered in load_all().items():
        if not is_selected(code, settings.select, settings.ignore):
            continue
        missing = [s for s in registered.needs if not facts.has(s)]
        if registered.needs_any and not any(facts.has(s) for s in registered.needs_any):
            missing += list(registered.needs_any)
        if missing:
            reasons = "; ".join(f"{s}: {facts.why_missing(s)}" for s in missing)
            skipped.append(Skipped(code, reasons))
            continue
        try:
            findings.extend(_stamp(registered, registered.run(facts, settings, derived)))
        except Exception as exc:  # noqa: BLE001 - one broken rule must not end the audit
            skipped.append(Skipped(code, f"rule failed: {exc.__class__.__name__}: {exc}"))
    findings.sort(key=lambda f: f.sort_key)
    return findings, skipped


def _stamp(registered: Rule, hits: Iterable[Hit]) -> Iterator[Finding]:
    for hit in hits:
        yield Finding(
            code=registered.code,
            name=registered.name,
            severity=hit.severity if hit.severity is not None else registered.severity,
            subject=hit.subject,
            message=hit.message,
            evidence=tuple(hit.evidence),
            recommendation=hit.recommendation,
        )
