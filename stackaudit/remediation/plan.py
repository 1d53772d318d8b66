"""The dry run: findings, tuner proposals and facts in, a Plan of Steps (and NoOps) out. Pure.

Each Step says what it changes (`change`), its Risk (what `apply` may do alone), whether it needs a
restart, and how it is undone. A NoOp says why nothing is done where the system already complies.
`Plan.to_json()` / `Plan.from_json()` round-trip exactly, so `stackaudit plan --out plan.json` is
later executed by `stackaudit apply plan.json` (which re-checks every `current` value first).

Step kinds (the `params` each carries):
- "pg-setting": one PostgreSQL setting. method "alter-system" (a server on this host: ALTER SYSTEM
  then reload or restart) or "compose-override" (a server in a compose service: `-c name=value` in
  the `command:` of an override file, then `docker compose up -d SERVICE`; never
  POSTGRES_INITDB_ARGS, which an existing data directory ignores: ERRATA 3).
- "env": one `KEY=value` line of a project's .env file (app worker/thread/pool tuning).
- "manual": display only (dropping an index, buying disk, a Redis command line, cleaning Docker).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stackaudit.derive import Derived
from stackaudit.facts import Facts
from stackaudit.model import Finding, Risk, to_jsonable
from stackaudit.tuning.postgres import Proposal, Tuning

PLAN_VERSION = 1
PG_SETTING = "pg-setting"
ENV = "env"
MANUAL = "manual"
ALTER_SYSTEM = "alter-system"
COMPOSE_OVERRIDE = "compose-override"

# The findings that the tuner's settings answer: a step for one of these settings carries the code.
SETTING_CODES: dict[str, tuple[str, ...]] = {
    "PG001": ("shared_buffers",),
    "PG002": ("effective_cache_size",),
    "PG003": ("work_mem", "max_connections", "hash_mem_multiplier"),
    "PG004": ("work_mem",),
    "PG006": (
        "max_worker_processes",
        "max_parallel_workers",
        "max_parallel_workers_per_gather",
        "max_parallel_maintenance_workers",
    ),
    "PG007": ("random_page_cost", "effective_io_concurrency"),
    "PG008": ("max_wal_size", "min_wal_size"),
}
# Findings `stackaudit clean` handles with its own plan (it re-plans from a fresh snapshot).
CLEAN_CODES = ("DKR001", "DKR004")


@dataclass(frozen=True)
class Step:
    id: str  # unique in the plan: "pg:work_mem", "env:/srv/app/.env:WEB_CONCURRENCY"
    kind: str  # PG_SETTING | ENV | MANUAL
    subject: str  # what it changes, e.g. "PostgreSQL work_mem"
    change: str  # a sentence: "work_mem 4MB -> 16MB through ALTER SYSTEM, then reload"
    current: str | None
    desired: str | None
    risk: Risk
    restart: bool
    reason: str
    undo: str  # how it is undone, in words
    codes: tuple[str, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = to_jsonable(self)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Step:
        return cls(
            id=str(data["id"]),
            kind=str(data["kind"]),
            subject=str(data["subject"]),
            change=str(data["change"]),
            current=data.get("current"),
            desired=data.get("desired"),
            risk=Risk(data["risk"]),
            restart=bool(data["restart"]),
            reason=str(data["reason"]),
            undo=str(data["undo"]),
            codes=tuple(data.get("codes") or ()),
            params=dict(data.get("params") or {}),
        )


@dataclass(frozen=True)
class NoOp:
    subject: str
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"subject": self.subject, "reason": self.reason}


@dataclass(frozen=True)
class Plan:
    steps: tuple[Step, ...]
    noops: tuple[NoOp, ...]
    target: Mapping[str, Any]  # where the PostgreSQL steps go: runs_in, data directory, budget...
    version: int = PLAN_VERSION

    def runnable(self) -> list[Step]:
        return [s for s in self.steps if s.kind != MANUAL]

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "target": to_jsonable(self.target),
            "steps": [s.to_json() for s in self.steps],
            "noops": [n.to_json() for n in self.noops],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Plan:
        if data.get("version") != PLAN_VERSION:
            raise ValueError(
                f"plan version {data.get('version')!r} is not {PLAN_VERSION}: run `stackaudit plan` "
                "again with this version"
            )
        return cls(
            steps=tuple(Step.from_json(s) for s in data.get("steps") or ()),
            noops=tuple(NoOp(str(n["subject"]), str(n["reason"])) for n in data.get("noops") or ()),
            target=dict(data.get("target") or {}),
        )


# --------------------------------------------------------------------------------------------
# Building the plan
# --------------------------------------------------------------------------------------------


def build_plan(
    findings: Sequence[Finding],
    facts: Facts,
    tuning: Tuning | None = None,
    env_changes: Mapping[str, str] | None = None,
    manual_extra: Iterable[tuple[str, str]] = (),
) -> Plan:
    """Steps for what the tuner would change and what the findings recommend; NoOps for the rest.

    `env_changes` are the app tuner's .env lines (KEY -> value, `AppTuning.env`); `manual_extra` are
    (subject, text) pairs shown as MANUAL steps (e.g. Redis advice).
    """
    target = postgres_target(facts, tuning)
    steps: list[Step] = []
    noops: list[NoOp] = []
    codes_by_setting = _codes_by_setting(findings)
    if tuning is not None:
        for proposal in tuning.settings.values():
            if proposal.changed:
                steps.append(setting_step(proposal, target, codes_by_setting.get(proposal.name, ())))
            else:
                noops.append(
                    NoOp(
                        f"PostgreSQL {proposal.name}",
                        f"already {proposal.current} ({proposal.source}): {proposal.reason}",
                    )
                )
    planned_settings = {s.params.get("name") for s in steps if s.kind == PG_SETTING}
    steps += env_steps(facts, env_changes or {})
    steps += finding_steps(findings, planned_settings)
    steps += [manual_step(f"manual:{subject}", subject, text, ()) for subject, text in manual_extra]
    if not findings and not steps:
        noops.append(NoOp("audit", "no finding and no proposed change: nothing to do"))
    return Plan(tuple(steps), tuple(noops), target)


def postgres_target(facts: Facts, tuning: Tuning | None) -> dict[str, Any]:
    pg = facts.get("postgres")
    runs_in = dict(pg.get("runs_in") or {"kind": "unknown"})
    target: dict[str, Any] = {
        "label": pg.get("target"),
        "dsn": pg.get("target_dsn"),  # no password: apply and rollback connect here unless --pg
        "system_identifier": pg.get("system_identifier"),
        "origin": pg.get("target_origin"),
        "major": pg.get("major"),
        "database": pg.get("current_database"),
        "runs_in": runs_in,
        "data_directory": (pg.get("data_directory") or {}).get("path"),
        "method": method_for(runs_in),
        "app_projects": [
            str(p.get("name")) for p in facts.get("compose").get("projects") or [] if p.get("name")
        ],
    }
    if runs_in.get("kind") == "container":
        target["compose"] = compose_location(facts, runs_in)
    if tuning is not None:
        target["budget"] = {
            "postgres_bytes": tuning.budget.postgres_bytes,
            "explanation": tuning.budget.sentence(),
            "worst_case_bytes": tuning.worst_case.bytes,
            "worst_case_arithmetic": tuning.worst_case.arithmetic,
        }
    return target


def method_for(runs_in: Mapping[str, Any]) -> str | None:
    kind = runs_in.get("kind")
    if kind == "host":
        return ALTER_SYSTEM
    if kind == "container" and runs_in.get("service"):
        return COMPOSE_OVERRIDE
    return None


def compose_location(facts: Facts, runs_in: Mapping[str, Any]) -> dict[str, Any] | None:
    """The project directory, its files, the override file to write and the service's command."""
    for project in facts.get("compose").get("projects") or []:
        if project.get("name") != runs_in.get("project"):
            continue
        files = [str(f) for f in project.get("files") or []]
        service = (project.get("services") or {}).get(runs_in.get("service")) or {}
        return {
            "project": project.get("name"),
            "dir": project.get("dir"),
            "files": files,
            "override_file": str(override_path(Path(str(project.get("dir"))), files)),
            "service": runs_in.get("service"),
            "command": service.get("command"),
            "container": runs_in.get("container"),
        }
    return None


def override_path(directory: Path, files: Sequence[str]) -> Path:
    """An override already among the files, else the one Compose loads beside the main file
    (compose.yaml -> compose.override.yaml; docker-compose.yml -> docker-compose.override.yml)."""
    for name in files:
        if ".override." in Path(name).name:
            return Path(name)
    main = Path(files[0]) if files else directory / "compose.yaml"
    return main.with_name(f"{main.stem}.override{main.suffix}")


def setting_step(proposal: Proposal, target: Mapping[str, Any], codes: tuple[str, ...]) -> Step:
    method = target.get("method")
    name, current, desired = proposal.name, proposal.current, proposal.recommended
    reason = proposal.reason
    risk, how, undo = _setting_risk(proposal, method)
    if proposal.confidence == "low":
        risk, reason = Risk.MANUAL, f"{reason} (low confidence: decide by hand)"
    params: dict[str, Any] = {"name": name, "method": method, "source": proposal.source}
    compose = target.get("compose")
    if method == COMPOSE_OVERRIDE and isinstance(compose, Mapping):
        params.update(override_file=compose.get("override_file"), service=compose.get("service"))
    return Step(
        id=f"pg:{name}",
        kind=PG_SETTING,
        subject=f"PostgreSQL {name}",
        change=f"{name} {current or '(unknown)'} -> {desired} {how}",
        current=current,
        desired=desired,
        risk=risk,
        restart=proposal.restart or method == COMPOSE_OVERRIDE,
        reason=reason,
        undo=undo,
        codes=codes,
        params=params,
    )


def _setting_risk(proposal: Proposal, method: str | None) -> tuple[Risk, str, str]:
    if method == ALTER_SYSTEM:
        if proposal.source.startswith("command line"):
            return (
                Risk.MANUAL,
                "(set on the server's command line, which overrides ALTER SYSTEM: change "
                "how the server is started)",
                "by hand",
            )
        then = "then a restart" if proposal.restart else "then pg_reload_conf()"
        undo = "postgresql.auto.conf restored byte for byte from the journal, then " + (
            "a restart" if proposal.restart else "a reload"
        )
        return (Risk.CONFIRM if proposal.restart else Risk.SAFE), f"through ALTER SYSTEM, {then}", undo
    if method == COMPOSE_OVERRIDE:
        return (
            Risk.CONFIRM,
            "as `-c` in the compose override's command, then the service is recreated",
            "the override file restored byte for byte (or removed), then the service is recreated",
        )
    return (
        Risk.MANUAL,
        "(where the server runs is unknown: apply it by hand, see `tune postgres --format sql|compose`)",
        "by hand",
    )


def _codes_by_setting(findings: Sequence[Finding]) -> dict[str, tuple[str, ...]]:
    found: dict[str, list[str]] = {}
    for finding in findings:
        for name in SETTING_CODES.get(finding.code, ()):
            found.setdefault(name, []).append(finding.code)
    return {name: tuple(sorted(set(codes))) for name, codes in found.items()}


def env_steps(facts: Facts, changes: Mapping[str, str]) -> list[Step]:
    """One step per .env line to change: in the project's .env that has the key, else its first .env."""
    steps = []
    files = [f for f in facts.get("env").get("files") or [] if f.get("exists", True)]
    for key, value in changes.items():
        holder = next((f for f in files if key in (f.get("keys") or [])), None)
        chosen = holder or (files[0] if files else None)
        if chosen is None:
            steps.append(
                manual_step(
                    f"env:{key}",
                    f"app {key}",
                    f"set {key}={value} where the app reads it (no .env file found)",
                    (),
                )
            )
            continue
        path = str(chosen["path"])
        recreate = env_readers(facts, path, key)
        services = ", ".join(recreate["services"]) if recreate else ""
        steps.append(
            Step(
                id=f"env:{path}:{key}",
                kind=ENV,
                subject=f"{path} {key}",
                change=f"{key}={value} in {path} ({'changed' if holder else 'added'}); "
                + (f"recreate {services} (docker compose up -d --no-deps) and wait for their health checks"
                   if services else "no compose service found that reads it: recreate what reads it"),
                current=None,
                desired=value,
                risk=Risk.CONFIRM,
                restart=bool(services),
                reason="app server tuning (stackaudit tune app)",
                undo=f"{path} restored byte for byte from the journal"
                + (f", {services} recreated on it" if services else ""),
                params={"path": path, "key": key, "present": holder is not None,
                        **({"recreate": recreate} if recreate else {})},
            )
        )
    return steps


def env_readers(facts: Facts, path: str, key: str) -> dict[str, Any] | None:
    """The compose project of an .env file and its services that read `key`: those that load the
    file (env_file) or set the variable in their environment (Compose interpolates the project's
    .env there). Apply adds any other service whose resolved configuration the change alters."""
    for project in facts.get("compose").get("projects") or []:
        services = project.get("services") or {}
        loads = {n for n, s in services.items() if path in (s.get("env_files") or [])}
        if not loads and Path(path).parent != Path(str(project.get("dir"))):
            continue
        sets = {n for n, s in services.items() if key in (s.get("environment") or {})}
        return {"project": project.get("name"), "dir": project.get("dir"),
                "files": [str(f) for f in project.get("files") or []], "services": sorted(loads | sets)}
    return None


def finding_steps(findings: Sequence[Finding], planned_settings: set[Any]) -> list[Step]:
    """A MANUAL step per finding no automatic step answers (display only)."""
    steps = []
    for finding in findings:
        names = SETTING_CODES.get(finding.code)
        if names and planned_settings.intersection(names):
            continue
        rec = finding.recommendation
        text = rec.summary
        if finding.code in CLEAN_CODES:
            text += " (run `stackaudit clean`, which plans and applies this safely)"
        if rec.action:
            text += f"\n{rec.action}"
        steps.append(
            manual_step(
                f"finding:{finding.code}:{finding.subject}",
                f"{finding.code} {finding.subject}",
                text,
                (finding.code,),
                reason=finding.message,
            )
        )
    return steps


def manual_step(step_id: str, subject: str, text: str, codes: tuple[str, ...], reason: str = "") -> Step:
    return Step(
        id=step_id,
        kind=MANUAL,
        subject=subject,
        change=text,
        current=None,
        desired=None,
        risk=Risk.MANUAL,
        restart=False,
        reason=reason or text,
        undo="by hand",
        codes=codes,
        params={},
    )


def describe(plan: Plan) -> str:
    """The plan for a terminal: steps by risk, then what stays as it is and why."""
    lines = []
    for risk in (Risk.SAFE, Risk.CONFIRM, Risk.MANUAL):
        chosen = [s for s in plan.steps if s.risk == risk]
        if not chosen:
            continue
        lines.append(f"{risk.value.upper()} ({len(chosen)}):")
        for step in chosen:
            restart = " [restart]" if step.restart else ""
            codes = f" ({', '.join(step.codes)})" if step.codes else ""
            lines.append(f"  - {step.subject}{codes}{restart}: {step.change.splitlines()[0]}")
            lines.append(f"      why: {step.reason.splitlines()[0] if step.reason else '-'}")
            if step.kind != MANUAL:
                lines.append(f"      undo: {step.undo}")
    if plan.noops:
        lines.append(f"Already compliant ({len(plan.noops)}):")
        lines += [f"  - {n.subject}: {n.reason}" for n in plan.noops]
    if not plan.steps:
        lines.append("Nothing to change.")
    return "\n".join(lines)


def plan_for(findings: Sequence[Finding], derived: Derived, facts: Facts) -> Plan:
    """The plan for an audit: its findings, and the PostgreSQL, app and Redis tunings it derived."""
    env = dict(derived.app.env) if derived.app is not None else {}
    extra = [(f"Redis {advice.service or advice.target}",
              f"command: {advice.compose_command()} ({'; '.join(advice.reasons)})")
             for advice in derived.redis
             if advice.maxmemory_bytes != advice.current_maxmemory_bytes
             or advice.policy != advice.current_policy]
    return build_plan(findings, facts, derived.postgres, env, extra)
