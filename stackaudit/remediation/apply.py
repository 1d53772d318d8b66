"""Execute a Plan: re-check, back up, snapshot, change, validate, activate, check health; else undo.

The order, each phase journalled before the next begins (`<state_dir>/journal/*-apply-*.json`):

    started -> preconditions -> validated -> backup -> snapshot -> written -> activated -> healthy

- preconditions: every value the plan saw is still the live one (else stop and say which changed);
- validated: the candidate PostgreSQL values through the server's own parser (`postgres -C`) and
  the memory budget (the worst case of tuning.postgres must fit, or at least not grow past it);
- backup: a verified backup of the database newer than 26 hours is found, or taken now;
- snapshot: postgresql.auto.conf / the override file / the .env files byte for byte, plus the
  pg_settings rows, go into the journal BEFORE anything is touched;
- written, activated: ALTER SYSTEM (or the override, or the .env lines), then `postgres -C` again
  on the files as written, then a reload, or a restart (only with --allow-restart); after .env
  lines, "recreating" journals the services that read them (planned, plus any whose `docker
  compose config` changed) before `docker compose up -d --no-deps` recreates them;
- healthy: the server accepts connections, every setting reads back as planned, the recreated
  services pass their health checks, no app container of the stack is unhealthy. Any failure from
  `written` on rolls back automatically (a rollback recreates those services on the old files).

A run killed at any instant leaves a journal with status "running": the next `apply` or `rollback`
takes the lock, finds it and finishes it (see rollback.recover): a journal that reached "healthy"
is completed, anything between "snapshot" and "healthy" is undone, anything earlier changed nothing.

The plan names its server (`target.dsn`, without a password, and `target.system_identifier`): apply
connects there unless `--pg` overrides it, and refuses a server whose data directory or system
identifier (pg_control_system()) differs, since a restored copy or a replica can sit at the same path.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from stackaudit.config import Settings
from stackaudit.model import Risk
from stackaudit.peer import OsUser, PeerError, run_as, socket_owner
from stackaudit.redact import scrub
from stackaudit.remediation import actions
from stackaudit.remediation.actions import ActionError, HostServer
from stackaudit.remediation.journal import KIND, ApplyError, Journal, remediation_lock
from stackaudit.remediation.plan import ALTER_SYSTEM, COMPOSE_OVERRIDE, ENV, MANUAL, PG_SETTING, Plan, Step
from stackaudit.remediation.rollback import recover, undo
from stackaudit.remediation.target import describe_target, resolve_dsn
from stackaudit.tuning.postgres import worst_case
from stackaudit.units import format_bytes

PHASES = ("started", "preconditions", "validated", "backup", "snapshot", "written", "activated", "healthy")
BACKUP_MAX_AGE = timedelta(hours=26)
__all__ = ["PHASES", "ApplyError", "ApplyOptions", "ApplyResult", "apply_plan"]  # ApplyError: journal's
BUDGET_SETTINGS = (
    "max_connections",
    "max_parallel_workers",
    "work_mem",
    "hash_mem_multiplier",
    "shared_buffers",
    "maintenance_work_mem",
    "autovacuum_work_mem",
    "autovacuum_max_workers",
    "wal_buffers",
)


class StepFailed(RuntimeError):
    """A phase failed: `phase` says which, the message what (shown to the user)."""

    def __init__(self, phase: str, message: str) -> None:
        super().__init__(message)
        self.phase = phase


@dataclass(frozen=True)
class ApplyOptions:
    yes: bool = False  # run CONFIRM steps
    allow_restart: bool = False  # run steps that need a restart (or a recreate)
    dsn: str | None = None  # PostgreSQL superuser connection ("" = libpq's environment)
    docker_host: str | None = None
    take_backup: bool = True


@dataclass
class ApplyResult:
    status: str  # done | nothing | stopped | rejected | rolled-back | failed
    message: str
    journal: str | None = None
    applied: list[str] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)
    backup: dict[str, Any] | None = None
    recovered: list[dict[str, Any]] = field(default_factory=list)
    failed_phase: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "message": self.message,
            "journal": self.journal,
            "applied": self.applied,
            "skipped": self.skipped,
            "checks": self.checks,
            "backup": self.backup,
            "recovered": self.recovered,
            "failed_phase": self.failed_phase,
        }


# --------------------------------------------------------------------------------------------
# Journal phases
# --------------------------------------------------------------------------------------------


def reached(journal: Journal, phase: str, **details: Any) -> None:
    """Journal a phase as done (written to disk before the next phase begins)."""
    journal.record({"phase": phase, **details})


# --------------------------------------------------------------------------------------------
# Choosing the steps
# --------------------------------------------------------------------------------------------


def select_steps(plan: Plan, options: ApplyOptions) -> tuple[list[Step], list[dict[str, str]]]:
    chosen, skipped = [], []
    method = plan.target.get("method")
    for step in plan.steps:
        why = None
        if step.kind == MANUAL or step.risk == Risk.MANUAL:
            why = "MANUAL: display only, apply never runs it"
        elif step.risk == Risk.CONFIRM and not options.yes:
            why = "CONFIRM: needs --yes"
        elif step.restart and not options.allow_restart:
            why = "needs a restart: pass --allow-restart"
        elif step.kind == PG_SETTING and step.params.get("method") != method:
            why = f"planned for {step.params.get('method')}, but the plan's server is reached by {method}"
        if why:
            skipped.append({"id": step.id, "subject": step.subject, "why": why})
        else:
            chosen.append(step)
    return chosen, skipped


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------


def apply_plan(plan: Plan, settings: Settings, options: ApplyOptions) -> ApplyResult:
    """Run the plan's steps that the options allow; never raises for a failed step (see status)."""

    with remediation_lock(settings.state_dir):
        recovered = recover(settings, options.dsn, options.docker_host)
        chosen, skipped = select_steps(plan, options)
        if not chosen:
            return ApplyResult(
                "nothing", "no step to run with these options", skipped=skipped, recovered=recovered
            )
        run = _Run(plan, settings, options, chosen)
        result = run.execute()
        result.skipped, result.recovered = skipped, recovered
        return result


@dataclass
class _Run:
    plan: Plan
    settings: Settings
    options: ApplyOptions
    steps: list[Step]
    journal: Journal | None = None
    checks: list[dict[str, Any]] = field(default_factory=list)
    recreated: list[dict[str, Any]] = field(default_factory=list)  # the services `activate` recreated
    _dsn: tuple[str | None] | None = None  # resolved once (the stack's password means reading it)

    @property
    def pg_steps(self) -> list[Step]:
        return [s for s in self.steps if s.kind == PG_SETTING]

    @property
    def env_steps(self) -> list[Step]:
        return [s for s in self.steps if s.kind == ENV]

    @property
    def values(self) -> dict[str, str]:
        return {str(s.params["name"]): str(s.desired) for s in self.pg_steps}

    @property
    def method(self) -> str | None:
        return str(self.plan.target.get("method")) if self.pg_steps else None

    @property
    def needs_restart(self) -> bool:
        return any(s.restart for s in self.pg_steps)

    @property
    def resolved_dsn(self) -> str | None:
        if self._dsn is None:
            self._dsn = (resolve_dsn(self.options.dsn, self.plan.target, self.settings),)
        return self._dsn[0]

    @property
    def dsn(self) -> str:
        dsn = self.resolved_dsn
        if dsn is None:
            raise StepFailed(
                "preconditions",
                "PostgreSQL steps need a superuser connection and the plan does not name its server: "
                "pass --pg DSN (or set STACKAUDIT_PG_DSN / libpq's PGHOST...)",
            )
        return dsn

    def execute(self) -> ApplyResult:
        self.journal = Journal.start(
            self.settings.state_dir,
            KIND,
            meta={
                "plan": self.plan.to_json(),
                "selected": [s.id for s in self.steps],
                "method": self.method,
                "restart": self.needs_restart,
                "target": self.plan.target.get("label"),
                "target_dsn": self.plan.target.get("dsn"),
                "yes": self.options.yes,
                "allow_restart": self.options.allow_restart,
            },
        )
        journal = self.journal
        reached(journal, "started")
        backup: dict[str, Any] | None = None
        try:
            server = self.preconditions()
            reached(journal, "preconditions")
            self.validate(server)
            reached(journal, "validated", checks=self.checks)
            backup = self.backup()
            reached(journal, "backup", backup=backup)
            snapshot = self.snapshot(server)
            reached(journal, "snapshot", **snapshot)
        except StepFailed as exc:
            status = "rejected" if exc.phase == "validated" else "stopped"
            journal.finish(status, error=str(exc), failed_phase=exc.phase, changed=False)
            return self._result(status, f"{exc} (nothing was changed)", backup, exc.phase)
        try:
            journal.record({"phase": "writing"})
            self.write(server)
            reached(journal, "written")
            journal.record({"phase": "activating", "restart": self.needs_restart})
            self.activate(server)
            reached(journal, "activated")
            self.health()
            reached(journal, "healthy", checks=self.checks)
        except StepFailed as exc:
            return self._roll_back(exc, backup)
        journal.finish("done", checks=self.checks)
        return self._result("done", f"{len(self.steps)} step(s) applied; health checks passed", backup)

    def _result(
        self, status: str, message: str, backup: dict[str, Any] | None, phase: str | None = None
    ) -> ApplyResult:
        assert self.journal is not None
        applied = [s.id for s in self.steps] if status == "done" else []
        return ApplyResult(
            status,
            scrub(message),
            self.journal.id,
            applied,
            checks=self.checks,
            backup=backup,
            failed_phase=phase,
        )

    def _roll_back(self, exc: StepFailed, backup: dict[str, Any] | None) -> ApplyResult:

        assert self.journal is not None
        self.journal.record({"phase": "failed", "failed_phase": exc.phase, "error": str(exc)})
        checks = undo(self.journal, self.resolved_dsn, self.options.docker_host)
        ok = all(c["ok"] for c in checks)
        self.checks += checks
        self.journal.finish(
            "rolled-back" if ok else "failed", error=str(exc), failed_phase=exc.phase, rollback_checks=checks
        )
        message = f"{exc.phase} failed: {exc}; " + (
            "rolled back automatically: the previous state is restored"
            if ok
            else "the automatic rollback did NOT fully restore the previous state: "
            + "; ".join(c["detail"] for c in checks if not c["ok"])
        )
        return self._result("rolled-back" if ok else "failed", message, backup, exc.phase)

    # --- phases ---------------------------------------------------------------------------

    def preconditions(self) -> HostServer | None:
        """Every value the plan saw is still the live one; the server is reachable as planned."""
        for step in self.env_steps:
            path = Path(str(step.params["path"]))
            data = path.read_bytes() if path.exists() else b""
            present = actions.env_value(data, str(step.params["key"])) is not None
            if step.params.get("present") is not None and present != bool(step.params["present"]):
                raise StepFailed(
                    "preconditions",
                    f"{path}: {step.params['key']} is "
                    f"{'now' if present else 'no longer'} set; the plan is stale: plan again",
                )
        if not self.pg_steps:
            return None
        try:
            rows = actions.read_settings(self.dsn, list(self.values))
            info = actions.server_info(self.dsn)
        except ActionError as exc:
            raise StepFailed("preconditions", str(exc)) from None
        if not info.get("superuser"):
            raise StepFailed(
                "preconditions",
                "the connection's role is not a superuser: ALTER SYSTEM and pg_reload_conf() need one",
            )
        self._same_server(info)
        changed = []
        for step in self.pg_steps:
            row = rows.get(str(step.params["name"]))
            if row is None:
                raise StepFailed("preconditions", f"the server has no setting {step.params['name']}")
            if step.current is not None and not actions.same_value(str(row["value"]), step.current, row):
                changed.append(f"{row['name']} is {row['value']} now, the plan saw {step.current}")
        if changed:
            raise StepFailed(
                "preconditions", "the server changed since the plan: " + "; ".join(changed) + ": plan again"
            )
        if self.method == ALTER_SYSTEM:
            try:
                return actions.discover_host_server(str(info["data_directory"]))
            except ActionError as exc:
                raise StepFailed("preconditions", str(exc)) from None
        if self.method != COMPOSE_OVERRIDE:
            raise StepFailed(
                "preconditions", "the plan does not say how to reach this server's configuration"
            )
        return None

    def _same_server(self, info: Mapping[str, Any]) -> None:
        """The data directory and the system identifier are the ones the plan saw."""
        target = self.plan.target
        planned_dir, planned_id = target.get("data_directory"), target.get("system_identifier")
        differs = []
        if planned_dir and planned_dir != info["data_directory"]:
            differs.append(f"its data directory is {info['data_directory']}")
        if planned_id and info.get("system_identifier") and str(planned_id) != str(info["system_identifier"]):
            differs.append(f"its system identifier is {info['system_identifier']}")
        if differs:
            raise StepFailed(
                "preconditions",
                f"this is not the server the plan was made for: {' and '.join(differs)}; "
                f"the plan was made for {describe_target(target)}",
            )

    def validate(self, server: HostServer | None) -> None:
        if not self.pg_steps:
            return
        try:
            if server is not None:
                server.validate(self.values)
            else:
                compose = self._compose()
                if compose.get("container"):
                    actions.validate_in_container(
                        str(compose["container"]), self.values, self.options.docker_host
                    )
                else:
                    raise ActionError(
                        "the container of the postgres service is not known (not running?): "
                        "cannot check the values with `postgres -C` before recreating it"
                    )
        except ActionError as exc:
            self.checks.append({"name": "postgres -C", "ok": False, "detail": str(exc)})
            raise StepFailed("validated", str(exc)) from None
        self.checks.append(
            {
                "name": "postgres -C",
                "ok": True,
                "detail": f"the server's parser accepts {', '.join(self.values)}",
            }
        )
        self._check_budget()

    def _check_budget(self) -> None:
        budget = self.plan.target.get("budget") or {}
        if not any(n in BUDGET_SETTINGS for n in self.values):
            return
        if not budget.get("postgres_bytes"):
            self.checks.append(
                {"name": "memory budget", "ok": True, "detail": "no budget in the plan: not checked"}
            )
            return
        rows = actions.read_settings(self.dsn, BUDGET_SETTINGS)
        before = candidate_worst_case(rows, {})
        after = candidate_worst_case(rows, self.values)
        limit = int(budget["postgres_bytes"])
        ok = after.bytes <= limit or after.bytes <= before.bytes
        why = f" ({budget['explanation']})" if budget.get("explanation") else ""
        detail = (
            f"worst case {format_bytes(after.bytes)} ({after.arithmetic}) against the "
            f"{format_bytes(limit)} budget{why}; now {format_bytes(before.bytes)}"
        )
        self.checks.append({"name": "memory budget", "ok": ok, "detail": detail})
        if not ok:
            raise StepFailed("validated", f"the candidate settings do not fit the memory budget: {detail}")

    def backup(self) -> dict[str, Any] | None:
        if not self.pg_steps or not self.options.take_backup:
            return None
        database = str(self.plan.target.get("database") or "")
        try:
            info = actions.server_info(self.dsn)
        except ActionError as exc:
            raise StepFailed("backup", str(exc)) from None
        database = database or str(info["database"])
        return ensure_backup(self.settings, self.dsn, database, self._container())

    def _container(self) -> str | None:
        compose = self.plan.target.get("compose") or {}
        return compose.get("container") if isinstance(compose, Mapping) else None

    def _compose(self) -> Mapping[str, Any]:
        compose = self.plan.target.get("compose")
        if not isinstance(compose, Mapping) or not compose.get("override_file"):
            raise StepFailed("preconditions", "the compose project of the postgres service is not known")
        return compose

    def snapshot(self, server: HostServer | None) -> dict[str, Any]:
        files = []
        settings_rows: dict[str, Any] = {}
        identifier = None
        if self.pg_steps:
            settings_rows = actions.read_settings(self.dsn, list(self.values))
            identifier = actions.server_info(self.dsn).get("system_identifier")
            if server is not None:
                files.append(actions.snapshot_file(Path(server.data_dir) / actions.AUTO_CONF))
            else:
                files.append(actions.snapshot_file(Path(str(self._compose()["override_file"]))))
        seen = set()
        for step in self.env_steps:
            path = str(step.params["path"])
            if path not in seen:
                seen.add(path)
                files.append(actions.snapshot_file(Path(path)))
        return {
            "files": files,
            "settings": settings_rows,
            "method": self.method,
            "restart": self.needs_restart,
            "server": server.to_json() if server else None,
            "compose": dict(self.plan.target.get("compose") or {})
            if self.method == COMPOSE_OVERRIDE
            else None,
            "desired": self.values,
            "system_identifier": identifier,
            "app_projects": list(self.plan.target.get("app_projects") or []),
            "recreate": self._readers_before(),
        }

    def _readers_before(self) -> list[dict[str, Any]]:
        """Per compose project the .env steps touch: the services planned to be recreated, and
        every service's resolved configuration now (to find the others the change alters)."""
        projects: dict[str, dict[str, Any]] = {}
        for step in self.env_steps:
            target = step.params.get("recreate")
            if not isinstance(target, Mapping) or not target.get("dir"):
                continue
            entry = projects.setdefault(str(target["dir"]), {**target, "services": []})
            entry["services"] = sorted(set(entry["services"]) | set(target.get("services") or []))
        try:
            for entry in projects.values():
                entry["before"] = actions.service_configs(str(entry["dir"]), list(entry["files"]))
        except ActionError as exc:
            raise StepFailed("snapshot", str(exc)) from None
        return list(projects.values())

    def write(self, server: HostServer | None) -> None:
        try:
            for step in self.env_steps:
                actions.write_env(Path(str(step.params["path"])), str(step.params["key"]), str(step.desired))
            if server is not None:
                actions.alter_system(self.dsn, self.values)
                server.validate({})  # the files as written, read by the server's own parser
            elif self.pg_steps:
                compose = self._compose()
                actions.write_override(
                    Path(str(compose["override_file"])),
                    str(compose["service"]),
                    compose.get("command"),
                    self.values,
                )
        except (ActionError, OSError) as exc:
            raise StepFailed("written", str(exc)) from None

    def activate(self, server: HostServer | None) -> None:
        self._recreate_readers()
        if not self.pg_steps:
            return
        try:
            if server is not None:
                if self.needs_restart:
                    server.restart()
                    self.checks.append({"name": "restarted", "ok": True, "detail": server.describe_restart()})
                else:
                    actions.reload(self.dsn)
            else:
                compose = self._compose()
                actions.recreate_service(
                    str(compose["dir"]),
                    list(compose.get("files") or []),
                    str(compose["override_file"]),
                    str(compose["service"]),
                    self.options.docker_host,
                )
        except ActionError as exc:
            raise StepFailed("activated", str(exc)) from None

    def _recreate_readers(self) -> None:
        """Recreate the services that read the changed .env lines (planned, plus any whose resolved
        configuration changed), journalled first so an undo after a kill recreates them again."""
        assert self.journal is not None
        snap = next((s for s in self.journal.steps if s.get("phase") == "snapshot"), {})
        for entry in snap.get("recreate") or []:
            directory, files = str(entry["dir"]), list(entry["files"])
            try:
                after = actions.service_configs(directory, files)
                services = sorted(set(entry["services"]) & set(after)
                                  | set(actions.changed_services(entry.get("before") or {}, after)))
                step = {"phase": "recreating", "project": entry.get("project"), "dir": directory,
                        "files": files, "services": services}
                self.journal.record(step)
                actions.recreate_services(directory, files, services, self.options.docker_host)
            except ActionError as exc:
                raise StepFailed("activated", str(exc)) from None
            self.recreated.append(step)

    def health(self) -> None:
        for entry in self.recreated:
            problems = actions.wait_healthy(str(entry["project"]), entry["services"],
                                            self.options.docker_host)
            self.checks.append({"name": f"recreated {', '.join(entry['services']) or 'nothing'}",
                                "ok": not problems, "detail": "; ".join(problems) or "running and healthy"})
            if problems:
                raise StepFailed("healthy", "recreated services not healthy: " + "; ".join(problems))
        failures = health_checks(
            self.checks,
            self.dsn if self.pg_steps else None,
            self.values,
            list(self.plan.target.get("app_projects") or []),
            self.options.docker_host,
        )
        if failures:
            raise StepFailed("healthy", "; ".join(failures))


def health_checks(
    checks: list[dict[str, Any]],
    dsn: str | None,
    desired: Mapping[str, str],
    projects: Sequence[str],
    docker_host: str | None,
) -> list[str]:
    """Append each check to `checks`; return what failed."""
    failures = []
    if dsn is not None:
        error = actions.wait_for_connections(dsn)
        checks.append(
            {"name": "server accepts connections", "ok": error is None, "detail": error or "SELECT 1 ok"}
        )
        if error is not None:
            return [f"the server does not accept connections: {error}"]
        rows = actions.read_settings(dsn, list(desired))
        wrong = [
            f"{name} is {rows.get(name, {}).get('value')} (planned {value}"
            f"{', pending restart' if rows.get(name, {}).get('pending_restart') else ''})"
            for name, value in desired.items()
            if name not in rows
            or rows[name].get("pending_restart")
            or not actions.same_value(str(rows[name]["value"]), value, rows[name])
        ]
        checks.append(
            {
                "name": "settings read back as planned",
                "ok": not wrong,
                "detail": "; ".join(wrong) or ", ".join(f"{n}={rows[n]['value']}" for n in desired),
            }
        )
        if wrong:
            failures.append("settings do not read back as planned: " + "; ".join(wrong))
    for project in projects:
        problems, note = actions.unhealthy_containers(project, docker_host)
        checks.append(
            {
                "name": f"app containers of {project}",
                "ok": not problems,
                "detail": "; ".join(problems) or note or "all running and healthy",
            }
        )
        if problems:
            failures.append(f"app containers of {project} not healthy: " + "; ".join(problems))
    return failures


def candidate_worst_case(rows: Mapping[str, Mapping[str, Any]], values: Mapping[str, str]) -> Any:
    """tuning.postgres.worst_case with the live values, the candidate ones on top."""

    def number(name: str, default: float) -> float:
        row = rows.get(name)
        if row is None:
            return default
        value = actions.normalise(values.get(name, str(row["value"])), row)
        return float(value) if isinstance(value, float) else default

    sb = number("shared_buffers", 128 * 2**20)
    mwm = number("maintenance_work_mem", 64 * 2**20)
    avwm = number("autovacuum_work_mem", -1)
    wal = number("wal_buffers", -1)
    return worst_case(
        int(number("max_connections", 100)),
        int(number("max_parallel_workers", 8)),
        number("work_mem", 4 * 2**20),
        number("hash_mem_multiplier", 2.0),
        sb,
        mwm,
        mwm if avwm < 0 else avwm,
        int(number("autovacuum_max_workers", 3)),
        min(16 * 2**20, sb / 32) if wal < 0 else wal,
    )


def ensure_backup(settings: Settings, dsn: str, database: str, container: str | None) -> dict[str, Any]:
    """A verified backup of `database` newer than 26 hours (stackaudit.backups), found or taken now."""
    from stackaudit.backups import find_verified_backup, resolve_dest  # lazy: start-up
    from stackaudit.backups.dump import BackupError, Connection, backup_database  # lazy: start-up

    dest = resolve_dest(settings)
    found = find_verified_backup(settings, database, datetime.now(UTC) - BACKUP_MAX_AGE)
    if found is not None:
        return {
            "database": database,
            "id": found.id,
            "file": str(dest / (found.file or "")),
            "taken": False,
            "started_at": found.started_at,
        }
    owner = socket_owner(dsn)
    try:
        if owner is not None:
            manifest = backup_as(owner, dsn, database, dest)
        else:
            connection = Connection.from_dsn(dsn)
            manifest = backup_database(
                connection, database, dest, container=container, docker_host=settings.docker_host
            )
    except BackupError as exc:
        raise StepFailed("backup", f"no verified backup of {database} and taking one failed: {exc}") from None
    if not manifest.good:
        raise StepFailed(
            "backup", f"no verified backup of {database} and taking one failed: {manifest.error}"
        )
    return {
        "database": database,
        "id": manifest.id,
        "file": str(dest / (manifest.file or "")),
        "taken": True,
        "sha256": manifest.sha256,
        "bytes": manifest.bytes,
    }


def backup_as(owner: OsUser, dsn: str, database: str, dest: Path) -> Any:
    """The backup of a peer-auth cluster, taken by a child running as its owner (pg_dump included)
    into a private folder of the owner's (`dest` is root's, 0700), then moved into `dest`, the dump
    before its manifest (a manifest never names a file that is not there yet), and given to root."""
    from stackaudit.backups.dump import BackupError, Connection, backup_database  # lazy: start-up
    from stackaudit.backups.manifest import Manifest  # lazy: start-up

    dest.mkdir(parents=True, exist_ok=True, mode=0o700)
    staging = Path(tempfile.mkdtemp(prefix=f"stackaudit-backup-{owner.name}-"))
    try:
        os.chown(staging, owner.uid, owner.gid)
        answer = run_as(owner, lambda: backup_database(Connection.from_dsn(dsn), database, staging).to_json())
        for path in sorted(staging.iterdir(), key=lambda p: p.suffix == ".json"):
            os.chown(path, os.geteuid(), os.getegid())
            os.chmod(path, 0o600)
            shutil.move(path, dest / path.name)
    except (PeerError, OSError) as exc:
        raise BackupError(f"the backup as {owner.name} failed: {exc}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return Manifest.from_json(answer)
