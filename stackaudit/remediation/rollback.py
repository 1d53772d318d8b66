"""Undo an apply from its journal, exactly: files byte-identical, settings as they were, restarted
if the change needed it. Also the crash recovery every `apply` and `rollback` runs first.

Undo is idempotent (restore the snapshotted bytes, reload, restart only when a setting is still
pending a restart or differs from the snapshot), so a rollback killed half-way is simply run again.

Recovery of an unfinished journal (status "running" or "rolling-back", found while holding the lock,
so its process is gone):
- it reached "healthy": every change was made and checked; only the final write was lost: completed
  (and `rollback` without a journal id, which was asked to undo the last apply, then undoes it);
- it has a snapshot: something may have been changed: undone;
- no snapshot yet: nothing was touched: closed as "abandoned".

Each journal is undone on its own server (the plan's DSN, without a password) unless `--pg` overrides
it, and only if that server's system identifier is the one snapshotted. A journal whose server is
gone can be set aside (`rollback --set-aside ID`): recorded in the journal, never deleted, and no
longer blocking later runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stackaudit.config import Settings
from stackaudit.remediation import actions
from stackaudit.remediation.actions import ActionError, HostServer
from stackaudit.remediation.journal import (
    JOURNAL_DIR,
    KIND,
    RUNNING,
    ApplyError,
    Journal,
    list_journals,
    remediation_lock,
)
from stackaudit.remediation.plan import ALTER_SYSTEM, COMPOSE_OVERRIDE
from stackaudit.remediation.target import resolve_dsn

ROLLING_BACK = "rolling-back"
SET_ASIDE = "set-aside"
UNFINISHED = (RUNNING, ROLLING_BACK)
COMPLETED = "completed: every change was made and checked before the kill"


@dataclass
class RollbackResult:
    status: str  # rolled-back | failed | dry-run | nothing
    message: str
    journal: str | None = None
    checks: list[dict[str, Any]] = field(default_factory=list)
    would_restore: dict[str, Any] | None = None
    recovered: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "message": self.message,
            "journal": self.journal,
            "checks": self.checks,
            "would_restore": self.would_restore,
            "recovered": self.recovered,
        }


def snapshot_of(journal: Journal) -> dict[str, Any] | None:
    return next((s for s in journal.steps if s.get("phase") == "snapshot"), None)


def phases(journal: Journal) -> list[str]:
    return [str(s.get("phase")) for s in journal.steps]


def journal_dsn(journal: Journal, given: str | None, settings: Settings) -> str | None:
    """`--pg` when given, else the server the journal's plan was made for (apply.resolve_dsn)."""
    plan = journal.document.get("meta", {}).get("plan") or {}
    return resolve_dsn(given, plan.get("target") or {}, settings)


def undo(journal: Journal, dsn: str | None, docker_host: str | None) -> list[dict[str, Any]]:
    """Restore what the journal's snapshot holds; return the checks that prove it."""
    snap = snapshot_of(journal)
    if snap is None:
        return [{"name": "nothing to undo", "ok": True, "detail": "no snapshot: nothing was changed"}]
    method, saved = snap.get("method"), dict(snap.get("settings") or {})
    if saved and dsn is None:
        return [
            {
                "name": "reconnect",
                "ok": False,
                "detail": "PostgreSQL settings to restore: pass --pg DSN (a superuser) to roll back",
            }
        ]
    checks = []
    try:
        for snapshot in snap.get("files") or []:
            actions.restore_file(snapshot)
    except OSError as exc:
        return [{"name": "files restored", "ok": False, "detail": f"restoring failed: {exc}"}]
    identical = [s["path"] for s in snap.get("files") or [] if actions.file_matches(s)]
    different = [s["path"] for s in snap.get("files") or [] if not actions.file_matches(s)]
    checks.append(
        {
            "name": "files byte-identical",
            "ok": not different,
            "detail": f"different: {', '.join(different)}" if different else ", ".join(identical) or "none",
        }
    )
    if saved and dsn is not None:
        checks += _restore_server(snap, method, saved, dsn, docker_host, journal)
    recreated = [s for s in journal.steps if s.get("phase") == "recreating"]
    return checks + actions.recreate_as_restored(recreated, docker_host)


def _restore_server(
    snap: Mapping[str, Any],
    method: Any,
    saved: Mapping[str, Any],
    dsn: str,
    docker_host: str | None,
    journal: Journal,
) -> list[dict[str, Any]]:
    wrong_server = _other_server(snap, dsn)
    if wrong_server:
        return [{"name": "same server", "ok": False, "detail": wrong_server}]
    try:
        if method == ALTER_SYSTEM:
            _restore_host(HostServer.from_json(snap["server"]), dsn, saved)
        elif method == COMPOSE_OVERRIDE and "activating" in phases(journal):
            compose = snap.get("compose") or {}
            actions.recreate_service(
                str(compose["dir"]),
                list(compose.get("files") or []),
                str(compose["override_file"]),
                str(compose["service"]),
                docker_host,
            )
    except (ActionError, KeyError) as exc:
        return [{"name": "server restored", "ok": False, "detail": str(exc)}]
    error = actions.wait_for_connections(dsn)
    if error is not None:
        return [{"name": "server accepts connections", "ok": False, "detail": error}]
    rows = actions.read_settings(dsn, list(saved))
    wrong = [
        f"{name} is {rows.get(name, {}).get('value')}, was {row['value']}"
        for name, row in saved.items()
        if name not in rows
        or rows[name].get("pending_restart")
        or not actions.same_value(str(rows[name]["value"]), str(row["value"]), rows[name])
    ]
    return [
        {"name": "server accepts connections", "ok": True, "detail": "SELECT 1 ok"},
        {
            "name": "settings as before",
            "ok": not wrong,
            "detail": "; ".join(wrong) or ", ".join(f"{n}={r['value']}" for n, r in saved.items()),
        },
    ]


def _other_server(snap: Mapping[str, Any], dsn: str) -> str | None:
    """Why `dsn` is not the server the journal changed (another system identifier), else None.
    A server that does not answer is not judged here: the restore starts it when it is down."""
    expected = snap.get("system_identifier")
    if not expected:
        return None
    try:
        found = actions.server_info(dsn).get("system_identifier")
    except ActionError:
        return None
    if found and str(found) != str(expected):
        return (
            f"the server reached is not the one this journal changed: its system identifier is "
            f"{found}, the journal's is {expected}: pass --pg DSN for that server"
        )
    return None


def _restore_host(server: HostServer, dsn: str, saved: Mapping[str, Any]) -> None:
    """Start it if it is down; else reload, and restart when a value still differs or waits for one."""
    if not server.is_running():
        server.restart()
        return
    actions.reload(dsn)
    rows = actions.read_settings(dsn, list(saved))
    if any(
        rows.get(n, {}).get("pending_restart")
        or not actions.same_value(str(rows.get(n, {}).get("value")), str(r["value"]), rows.get(n, r))
        for n, r in saved.items()
    ):
        server.restart()


# --------------------------------------------------------------------------------------------
# Crash recovery
# --------------------------------------------------------------------------------------------


def recover(settings: Settings, dsn: str | None, docker_host: str | None) -> list[dict[str, Any]]:
    """Finish every unfinished apply journal (call with the lock held). Raises ApplyError when one
    cannot be finished, so nothing new starts on top of a half-applied state."""
    results = []
    for journal in list_journals(settings.state_dir, KIND):
        status = journal.document.get("status")
        if status not in UNFINISHED:
            continue
        done = phases(journal)
        if status == RUNNING and "healthy" in done:
            journal.finish("done", recovered=COMPLETED)
            results.append({"journal": journal.id, "action": "completed", "ok": True, "checks": []})
            continue
        if snapshot_of(journal) is None:
            journal.finish("abandoned", recovered="interrupted before any change: nothing was changed")
            results.append(
                {"journal": journal.id, "action": "abandoned (nothing changed)", "ok": True, "checks": []}
            )
            continue
        checks = undo(journal, journal_dsn(journal, dsn, settings), docker_host)
        ok = all(c["ok"] for c in checks)
        if not ok:
            journal.record({"phase": "recovery-failed", "checks": checks})
            raise ApplyError(
                f"journal {journal.id} was interrupted and could not be undone: "
                + "; ".join(c["detail"] for c in checks if not c["ok"])
                + f". If its server is gone for good, set it aside (kept, and recorded in it): "
                f"stackaudit rollback --set-aside {journal.id}"
            )
        journal.finish(
            "rolled-back", recovered=f"interrupted after {done[-1]}: undone", rollback_checks=checks
        )
        results.append(
            {
                "journal": journal.id,
                "action": f"undone (was interrupted after {done[-1]})",
                "ok": True,
                "checks": checks,
            }
        )
    return results


# --------------------------------------------------------------------------------------------
# `stackaudit rollback`
# --------------------------------------------------------------------------------------------


def find_journal(settings: Settings, ref: str | None) -> Journal | None:
    """A path, a journal id, or (None) the newest apply that finished "done"."""
    if ref:
        path = Path(ref)
        if not path.exists():
            path = settings.state_dir / JOURNAL_DIR / (ref if ref.endswith(".json") else f"{ref}.json")
        if not path.exists():
            raise ApplyError(f"no journal {ref} (looked in {settings.state_dir / JOURNAL_DIR})")
        return Journal.load(path)
    done = [j for j in list_journals(settings.state_dir, KIND) if j.document.get("status") == "done"]
    return done[-1] if done else None


def describe_restore(journal: Journal) -> dict[str, Any]:
    snap = snapshot_of(journal) or {}
    return {
        "files": [f["path"] for f in snap.get("files") or []],
        "settings": {n: r.get("value") for n, r in (snap.get("settings") or {}).items()},
        "restart": bool(snap.get("restart")),
    }


def rollback(
    settings: Settings, ref: str | None, yes: bool, dsn: str | None, docker_host: str | None
) -> RollbackResult:
    """Undo `ref` (or the last apply). An apply interrupted after its health checks is completed by
    recovery and, being the last apply, then undone here: one `rollback` is enough."""
    with remediation_lock(settings.state_dir):
        recovered = recover(settings, dsn, docker_host)
        journal = find_journal(settings, ref)
        completed = [r for r in recovered if r["action"] == "completed"]
        if journal is None or (ref is None and recovered and not completed):
            message = (
                "the interrupted run(s) were undone by recovery; nothing else to roll back"
                if recovered
                else "no applied change to roll back"
            )
            return RollbackResult("nothing", message, recovered=recovered)
        status = journal.document.get("status")
        if status != "done":
            return RollbackResult(
                "nothing",
                f"journal {journal.id} is {status}: nothing applied to roll back",
                journal.id,
                recovered=recovered,
            )
        plan = describe_restore(journal)
        if not yes:
            return RollbackResult(
                "dry-run",
                "would restore (run with --yes)",
                journal.id,
                would_restore=plan,
                recovered=recovered,
            )
        journal.document["status"] = ROLLING_BACK
        journal.record({"phase": "rollback-started"})
        checks = undo(journal, journal_dsn(journal, dsn, settings), docker_host)
        ok = all(c["ok"] for c in checks)
        journal.finish("rolled-back" if ok else ROLLING_BACK, rollback_checks=checks)
        message = (
            "previous state restored"
            if ok
            else "rollback incomplete: " + "; ".join(c["detail"] for c in checks if not c["ok"])
        )
        return RollbackResult("rolled-back" if ok else "failed", message, journal.id, checks, plan, recovered)


def set_aside(settings: Settings, ref: str, reason: str | None) -> RollbackResult:
    """Mark one journal "set-aside": recovery and `rollback` skip it from now on. The journal file is
    kept, with a step saying when, from which status and why; nothing on any server is touched."""
    with remediation_lock(settings.state_dir):
        journal = find_journal(settings, ref)
        assert journal is not None  # find_journal raises for an unknown ref
        status = journal.document.get("status")
        if status == SET_ASIDE:
            return RollbackResult("nothing", f"journal {journal.id} is already set aside", journal.id)
        if status not in (*UNFINISHED, "done"):
            return RollbackResult(
                "nothing", f"journal {journal.id} is {status}: nothing left to set aside", journal.id
            )
        journal.record(
            {"phase": SET_ASIDE, "previous_status": status, "reason": reason or "set aside by the operator"}
        )
        journal.finish(SET_ASIDE, set_aside_from=status)
        return RollbackResult(
            SET_ASIDE,
            f"journal {journal.id} ({status}) is set aside: later runs no longer try to finish or undo "
            f"it; its file stays in {journal.path.parent}, and its server was not touched",
            journal.id,
        )
