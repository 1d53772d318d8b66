"""Apply a `tune mysql` result to a live MariaDB/MySQL, journalled, and roll it back exactly.

The phases, each journalled before the next (`<state_dir>/journal/*-mysql-apply-*.json`):

    started -> preconditions -> validated -> snapshot -> written -> healthy

- preconditions: every value the tuning read is still the live one;
- validated: the worst case fits the budget, and the candidate conf fragment goes through the
  server binary's own option parser: `mysqld --validate-config` (MySQL 8.0.16+), or for MariaDB,
  which has no such flag, `mariadbd --defaults-file=F --verbose --help` (it refuses an unknown
  variable or a bad value) when the binary is on this host;
- snapshot: the live values and the conf file's bytes go into the journal BEFORE anything changes;
- written: the conf file (the persistent copy, e.g. a file mounted into /etc/mysql/conf.d), then
  SET PERSIST (MySQL 8) / SET GLOBAL (MariaDB) for every dynamic setting; settings that need a
  restart are only written to the file and reported as pending;
- healthy: a new connection reads every dynamic value back as planned.

Any failure from `written` on undoes what was done (values SET back, the file byte for byte); a
run killed in between leaves a "running" journal that the next apply or `rollback --mysql` undoes.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pymysql

from stackaudit.config import Settings
from stackaudit.fsutil import atomic_write
from stackaudit.mysqlconn import Target, connect, connection_error
from stackaudit.redact import scrub
from stackaudit.remediation.actions import file_matches, restore_file, snapshot_file
from stackaudit.remediation.apply import reached
from stackaudit.remediation.journal import RUNNING, ApplyError, Journal, list_journals, remediation_lock
from stackaudit.tuning.mysql import MysqlTuning, as_conf, sql_value
from stackaudit.tuning.units import UnitError, parse_memory
from stackaudit.units import format_bytes

KIND = "mysql-apply"
SERVER_BINARIES = {"mariadb": ("mariadbd", "mysqld"), "mysql": ("mysqld",)}


@dataclass(frozen=True)
class MysqlApplyOptions:
    conf_file: Path | None = None  # the persistent copy; MySQL 8 persists with SET PERSIST anyway
    only: tuple[str, ...] = ()  # variable names; empty: every changed one


def _query(target: Target, statements: list[str]) -> list[dict[str, Any]]:
    try:
        with connect(target, 30) as conn, conn.cursor() as cur:
            rows: list[dict[str, Any]] = []
            for statement in statements:
                cur.execute(statement)
                rows = list(cur.fetchall())
            return rows
    except pymysql.err.MySQLError as exc:
        raise ApplyError(scrub(connection_error(exc, target))) from None


def read_values(target: Target, names: list[str]) -> dict[str, str]:
    if not names:
        return {}
    rows = _query(target, ["SHOW GLOBAL VARIABLES WHERE Variable_name IN ("
                           + ", ".join(f"'{n}'" for n in names) + ")"])
    return {str(r["Variable_name"]).lower(): str(r["Value"]) for r in rows}


def _same(a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return a == b
    try:
        return parse_memory(a) == parse_memory(b)
    except UnitError:
        return a.strip().lower() == b.strip().lower()


def validate_conf(flavor: str, text: str, wanted: dict[str, str] | None = None) -> str | None:
    """None when the server binary accepts the fragment (or is not on this host). MariaDB's
    `--verbose --help` also prints each value as it parsed it: a value it clamped or could not read
    (`banana` becomes a number) is a rejection too."""
    binary = next((b for name in SERVER_BINARIES.get(flavor, ("mysqld",)) if (b := shutil.which(name))), None)
    if binary is None:
        return None
    with tempfile.NamedTemporaryFile("w", suffix=".cnf", delete=False) as handle:
        handle.write(text)
    try:
        help_run = ["--verbose", "--help"] if flavor == "mariadb" else ["--validate-config"]
        result = subprocess.run([binary, f"--defaults-file={handle.name}", "--user=mysql", *help_run],
                                capture_output=True, text=True, timeout=60, check=False)
    finally:
        Path(handle.name).unlink(missing_ok=True)
    if result.returncode == 0:
        return _misread(result.stdout, wanted or {}) if flavor == "mariadb" else None
    errors = [line for line in result.stderr.splitlines() if "ERROR" in line]
    return (errors[-1] if errors else result.stderr.strip()[-300:]) or f"{binary} exited {result.returncode}"


def _misread(help_text: str, wanted: dict[str, str]) -> str | None:
    parsed = {}
    for line in help_text.splitlines():
        parts = line.split(None, 1)
        if len(parts) == 2:
            parsed[parts[0].replace("-", "_")] = parts[1].strip()
    for name, value in wanted.items():
        if name in parsed and not _same(parsed[name], str(sql_value(value)).strip("'")):
            return f"it reads {name} = {value} as {parsed[name]}"
    return None


def apply_tuning(settings: Settings, target: Target, tuning: MysqlTuning,
                 options: MysqlApplyOptions) -> dict[str, Any]:
    with remediation_lock(settings.state_dir):
        recovered = recover(settings, target)
        changes = [p for p in tuning.changed() if not options.only or p.name in options.only]
        if not changes:
            return {"status": "nothing-to-do", "recovered": recovered, "journal": None}
        journal = Journal.start(settings.state_dir, KIND, meta={
            "target": target.label, "flavor": tuning.inputs.flavor,
            "conf_file": str(options.conf_file) if options.conf_file else None})
        try:
            result = _apply(target, tuning, options, journal, changes)
        except ApplyError as exc:
            try:
                undone = _undo(target, journal) if _phase_reached(journal, "snapshot") else []
            except ApplyError as undo_error:  # the journal stays "running": the next run retries
                raise ApplyError(f"{exc}; undoing it failed too: {undo_error}") from None
            journal.finish("rolled-back" if undone else "failed", error=str(exc))
            return {"status": journal.document["status"], "error": str(exc), "undone": undone,
                    "recovered": recovered, "journal": journal.id}
        journal.finish("done", **result)
        return {"status": "done", **result, "recovered": recovered, "journal": journal.id}


def _apply(target: Target, tuning: MysqlTuning, options: MysqlApplyOptions, journal: Journal,
           changes: list[Any]) -> dict[str, Any]:
    names = [p.name for p in changes]
    reached(journal, "started", names=names)
    live = read_values(target, names)
    drifted = [p.name for p in changes if p.current is not None and not _same(live.get(p.name), p.current)]
    if drifted:
        raise ApplyError(f"changed since the tuning read them: {', '.join(drifted)}; run tune mysql again")
    reached(journal, "preconditions")
    if not tuning.fits:
        raise ApplyError(f"the worst case {format_bytes(tuning.worst_case.bytes)} does not fit the "
                         f"{format_bytes(tuning.budget.postgres_bytes)} budget")
    conf = as_conf(tuning) if options.conf_file else None
    problem = validate_conf(tuning.inputs.flavor, conf or as_conf(tuning),
                            {p.name: p.recommended for p in changes})
    if problem:
        raise ApplyError(f"the server rejects the settings: {problem}")
    reached(journal, "validated")
    persist = tuning.inputs.flavor == "mysql" and tuning.inputs.version >= (8, 0, 0)
    dynamic = [p for p in changes if not p.restart]
    verb = "SET PERSIST" if persist else "SET GLOBAL"
    snapshot = {"variables": {p.name: live.get(p.name) for p in dynamic if live.get(p.name) is not None},
                "verb": verb, "conf": snapshot_file(options.conf_file) if options.conf_file else None}
    reached(journal, "snapshot", snapshot=snapshot)
    if options.conf_file and conf is not None:
        options.conf_file.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(options.conf_file, conf.encode(), mode=0o644)
    try:
        _query(target, [f"{verb} {p.name} = {sql_value(p.recommended)}" for p in dynamic])
    except ApplyError as exc:
        raise ApplyError(f"{verb} failed: {exc}") from None
    pending = [p.name for p in changes if p.restart]
    reached(journal, "written", applied=[p.name for p in dynamic], pending_restart=pending)
    now = read_values(target, [p.name for p in dynamic])
    wrong = [p.name for p in dynamic if not _same(now.get(p.name), str(sql_value(p.recommended)).strip("'"))
             and not _resizing(p.name)]
    if wrong:
        raise ApplyError(f"the server does not report the new value of {', '.join(wrong)}")
    reached(journal, "healthy")
    return {"applied": [p.name for p in dynamic], "pending_restart": pending,
            "conf_file": str(options.conf_file) if options.conf_file else None}


def _resizing(name: str) -> bool:
    """The buffer pool resizes in the background: the value may lag the statement."""
    return name == "innodb_buffer_pool_size"


def _phase_reached(journal: Journal, phase: str) -> bool:
    return any(step.get("phase") == phase for step in journal.steps)


def _snapshot(journal: Journal) -> dict[str, Any] | None:
    return next((s["snapshot"] for s in journal.steps if s.get("phase") == "snapshot"), None)


def _undo(target: Target, journal: Journal) -> list[dict[str, Any]]:
    """Values SET back to the snapshot and the conf file restored byte for byte."""
    snapshot = _snapshot(journal)
    if snapshot is None:
        return []
    done: list[dict[str, Any]] = []
    conf = snapshot.get("conf")
    if conf and not file_matches(conf):
        restore_file(conf)
        done.append({"file": conf["path"], "restored": True})
    verb = str(snapshot.get("verb") or "SET GLOBAL")
    saved = snapshot.get("variables") or {}
    now = read_values(target, list(saved))
    changed = {name: value for name, value in saved.items() if not _same(now.get(name), value)}
    if changed:  # only what differs: a variable the run never managed to set may be read-only
        _query(target, [f"{verb} {name} = {sql_value(value)}" for name, value in changed.items()])
        done += [{"variable": name, "value": value} for name, value in changed.items()]
    return done


def recover(settings: Settings, target: Target) -> list[dict[str, Any]]:
    """Undo every mysql-apply journal a killed run left 'running' (before the caller's own run)."""
    recovered = []
    for journal in list_journals(settings.state_dir, KIND):
        if journal.document.get("status") != RUNNING:
            continue
        undone = _undo(target, journal)
        journal.finish("rolled-back", recovered=True)
        recovered.append({"journal": journal.id, "undone": undone})
    return recovered


def rollback(settings: Settings, target: Target, ref: str | None = None) -> dict[str, Any]:
    """Restore the state before the last (or the named) MariaDB/MySQL apply."""
    with remediation_lock(settings.state_dir):
        recovered = recover(settings, target)
        journals = [j for j in list_journals(settings.state_dir, KIND)
                    if ref is None or j.id == ref or str(j.path) == ref]
        done = [j for j in journals if j.document.get("status") == "done"]
        if not done:
            if recovered:
                return {"status": "done", "recovered": recovered, "undone": [], "journal": None}
            raise ApplyError("no MariaDB/MySQL apply to roll back" + (f" named {ref}" if ref else ""))
        journal = done[-1]
        undone = _undo(target, journal)
        journal.finish("rolled-back", rolled_back_by="rollback")
        pending: list[str] = next((list(s.get("pending_restart") or []) for s in journal.steps
                                   if s.get("phase") == "written"), [])
        return {"status": "done", "journal": journal.id, "undone": undone, "recovered": recovered,
                "restart_needed_for": pending or []}
