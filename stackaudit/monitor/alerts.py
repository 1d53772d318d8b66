"""Change-based alerts: one state machine per condition (code, subject), apprise destinations.

- A condition goes ok -> warning -> critical at once, and comes back down only after
  `recover_checks` consecutive checks below its level (hysteresis): a disk hovering at 75% does not
  flap, and a source that could not be read (its rule skipped) changes nothing.
- A notification is sent on a change of level only, and a still-critical condition is repeated every
  `repeat_seconds`: never two alerts for the same unchanged condition.
- States and notifications are written in one transaction (an outbox), then delivered. A failing
  destination is retried within the pass with backoff, then at later passes with a growing delay,
  and logged; it never raises. apprise's `notify` returns a falsy result on failure, it does not
  raise (https://github.com/caronc/apprise/wiki/Development_API).
"""

from __future__ import annotations

import hashlib
import json
import logging
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from stackaudit.model import Finding, Severity, to_jsonable
from stackaudit.monitor import MonitorOptions
from stackaudit.monitor.history import AlertState, History, Pending
from stackaudit.redact import scrub
from stackaudit.rules import load_all

if TYPE_CHECKING:  # a type only: check.py calls into this module, not the other way round
    from stackaudit.monitor.check import CheckResult

log = logging.getLogger(__name__)

LEVELS = ("ok", "warning", "critical")
NOTIFY_TYPES = {
    "firing": "warning",
    "escalated": "failure",
    "repeat": "failure",
    "de-escalated": "warning",
    "resolved": "success",
}


def rank(level: str) -> int:
    return LEVELS.index(level)


def level_of(severity: Severity) -> str:
    """CRITICAL pages as critical; HIGH and MEDIUM warn; LOW and INFO are report material, not alerts."""
    if severity >= Severity.CRITICAL:
        return "critical"
    return "warning" if severity >= Severity.MEDIUM else "ok"


@dataclass(frozen=True)
class Transition:
    """A notification-worthy change of one condition."""

    code: str
    subject: str
    kind: str  # "firing" | "escalated" | "de-escalated" | "resolved" | "repeat"
    level: str
    previous: str
    title: str
    body: str


def step(
    previous: AlertState | None,
    code: str,
    subject: str,
    observed: str,
    now: float,
    options: MonitorOptions,
    finding: Finding | None = None,
) -> tuple[AlertState, str | None]:
    """The next state of one condition and the kind of notification it calls for (or None)."""
    state = previous or AlertState(code, subject, "ok", now)
    if finding is not None:
        state = replace(state, message=finding.message, evidence=json.dumps(to_jsonable(finding.evidence)))
    if rank(observed) > rank(state.level):
        kind = "firing" if state.level == "ok" else "escalated"
        return replace(
            state, level=observed, since=now, last_notified=now, lower_streak=0, lower_level=None
        ), kind
    if observed == state.level:
        state = replace(state, lower_streak=0, lower_level=None)
        due = state.last_notified is None or now - state.last_notified >= options.repeat_seconds
        if state.level == "critical" and due:
            return replace(state, last_notified=now), "repeat"
        return state, None
    streak = state.lower_streak + 1
    lower = (
        observed
        if state.lower_level is None or rank(observed) > rank(state.lower_level)
        else state.lower_level
    )
    if streak < options.recover_checks:
        return replace(state, lower_streak=streak, lower_level=lower), None
    kind = "resolved" if lower == "ok" else "de-escalated"
    return replace(state, level=lower, since=now, last_notified=now, lower_streak=0, lower_level=None), kind


def transitions(
    history_states: dict[tuple[str, str], AlertState],
    result: CheckResult,
    options: MonitorOptions,
) -> tuple[list[AlertState], list[Transition]]:
    """Step every condition seen now or known from before whose rule ran in this check."""
    observed = {(f.code, f.subject): f for f in result.report.findings if level_of(f.severity) != "ok"}
    keys = set(observed) | {k for k in history_states if k[0] in result.evaluated}
    host = str(result.report.facts.get("host").get("hostname") or socket.gethostname())
    states: list[AlertState] = []
    changes: list[Transition] = []
    for code, subject in sorted(keys):
        finding = observed.get((code, subject))
        level = level_of(finding.severity) if finding else "ok"
        before = history_states.get((code, subject))
        state, kind = step(before, code, subject, level, result.ts, options, finding)
        states.append(state)
        if kind is not None:
            previous = before.level if before else "ok"
            title, body = compose_message(kind, state, previous, finding, host, options)
            changes.append(Transition(code, subject, kind, state.level, previous, title, body))
    return states, changes


def compose_message(
    kind: str, state: AlertState, previous: str, finding: Finding | None, host: str, options: MonitorOptions
) -> tuple[str, str]:
    """What, where, the measured value, the threshold, and the command that explains it."""
    name = finding.name if finding else _rule_name(state.code)
    label = "RESOLVED" if kind == "resolved" else state.level.upper()
    title = f"[{label}] {state.code} {name}: {state.subject} on {host}"
    lines: list[str] = []
    if kind == "resolved":
        lines.append(
            f"Back to ok: not seen in the last {options.recover_checks} checks. Last seen: {state.message}"
        )
    elif kind == "de-escalated":
        lines.append(
            f"Down from {previous} to {state.level} after {options.recover_checks} checks: {state.message}"
        )
    elif kind == "repeat":
        lines.append(
            f"Still critical since {time.strftime('%Y-%m-%d %H:%M %Z', time.localtime(state.since))}: "
            f"{state.message}"
        )
    else:
        lines.append(state.message)
    lines.extend(_measured_lines(state.evidence))
    lines.append(f"Host: {host}")
    lines.append(f"Explain: stackaudit explain {state.code}")
    return scrub(title), scrub("\n".join(lines))


def _measured_lines(evidence_json: str) -> list[str]:
    lines = []
    for item in json.loads(evidence_json or "[]"):
        if item.get("expected") is not None:
            lines.append(f"Measured: {item['key']} = {item['observed']} (threshold: {item['expected']})")
    return lines


def _rule_name(code: str) -> str:
    found = load_all().get(code)
    return found.name if found else ""


def process(
    history: History, result: CheckResult, notifier: Notifier, options: MonitorOptions
) -> list[Transition]:
    """Advance every condition, queue the notifications with the new states, deliver what is due."""
    states, changes = transitions(history.alert_states(), result, options)
    history.save_alert_states(states, notifier.outbox_items(changes, result.ts))
    notifier.flush(result.ts)
    return changes


# --- delivery ------------------------------------------------------------------------------------

Deliver = Callable[[str, str, str, str], bool]  # (url, title, body, notify type) -> delivered


def apprise_deliver(url: str, title: str, body: str, notify_type: str) -> bool:
    import apprise  # lazy: start-up

    sender = apprise.Apprise()
    if not sender.add(url):
        log.error("alert destination %s is not a valid apprise URL", destination_label(url))
        return False
    try:
        return bool(sender.notify(title=title, body=body, notify_type=notify_type))
    except Exception as exc:  # noqa: BLE001 - a plugin bug must not end the watch loop
        log.error("alert to %s raised %s", destination_label(url), exc.__class__.__name__)
        return False


def destination_key(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()


def destination_label(url: str) -> str:
    """The scheme and host only: apprise URLs carry tokens in the host and the path."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    safe_host = host if host in ("localhost",) or host.replace(".", "").isdigit() else "…"
    return f"{parts.scheme}://{safe_host}"


class Notifier:
    """Puts notifications into the outbox and delivers them, retrying with backoff."""

    def __init__(
        self,
        urls: Sequence[str],
        history: History,
        options: MonitorOptions,
        deliver: Deliver = apprise_deliver,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.urls = {destination_key(u): u for u in urls}
        self.history = history
        self.options = options
        self.deliver = deliver
        self.sleep = sleep

    def outbox_items(self, changes: Sequence[Transition], now: float) -> list[Pending]:
        return [
            Pending(
                0,
                now,
                key,
                destination_label(url),
                t.title,
                t.body,
                NOTIFY_TYPES[t.kind],
                0,
                now,
                t.code,
                t.subject,
                t.kind,
            )
            for t in changes
            for key, url in self.urls.items()
        ]

    def flush(self, now: float | None = None) -> int:
        """Deliver every due notification; returns how many were delivered."""
        now = time.time() if now is None else now
        delivered = 0
        for item in self.history.pending(now):
            url = self.urls.get(item.destination)
            if url is None:
                log.warning(
                    "dropping a queued alert for %s: the destination is no longer configured", item.label
                )
                self.history.dequeue(item.id)
                continue
            delivered += self._attempt(item, url, now)
        return delivered

    def _attempt(self, item: Pending, url: str, now: float) -> int:
        attempts = item.attempts
        for tries in range(self.options.send_attempts):
            attempts += 1
            if self.deliver(url, item.title, item.body, item.notify_type):
                self.history.dequeue(item.id)
                self.history.log_notification(
                    now, item.code, item.subject, item.kind, item.label, True, attempts
                )
                return 1
            log.warning("alert %s %s to %s failed (attempt %d)", item.code, item.kind, item.label, attempts)
            if tries + 1 < self.options.send_attempts:
                self.sleep(self.options.send_backoff_seconds * 2**tries)
        if now - item.created >= self.options.give_up_seconds:
            log.error(
                "giving up on alert %s %s to %s after %d attempts", item.code, item.kind, item.label, attempts
            )
            self.history.dequeue(item.id)
            self.history.log_notification(
                now, item.code, item.subject, item.kind, item.label, False, attempts
            )
            return 0
        passes = max(1, attempts // max(1, self.options.send_attempts))
        delay = min(self.options.retry_base_seconds * 2 ** (passes - 1), self.options.retry_max_seconds)
        log.warning("alert %s to %s will be retried in %.0f s", item.code, item.label, delay)
        self.history.reschedule(item.id, attempts, now + delay)
        return 0
