"""Ansible stdout callback of `stackaudit fleet collect`: one JSON line per host result, read by the
controller as the run goes. It prints a host's name, stage and Ansible's message, never variables,
results or task arguments.

Events: {"event": "collected", "host", "path"} when a host's snapshot is fetched;
{"event": "metrics-done", "host"} when the role stackaudit_metrics ended well on a host (its last
task, after its handlers); {"event": "failed", "host", "stage", "reason"} when a task fails or the
host is unreachable; {"event": "done"} at the end of the play.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
    name: stackaudit_progress
    type: stdout
    short_description: one JSON line per host result, for stackaudit fleet collect
    description: prints host names, stages and Ansible's failure messages, never variables
"""
STAGES = ("install", "collect", "fetch", "metrics")
METRICS_DONE = "metrics: done"  # the last task of the role stackaudit_metrics
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
SSH_NOISE = re.compile(r"^Shared connection to \S+ closed\.$")
HIDDEN = "the task's output is hidden (no_log)"


def stage_of(task_name: str) -> str:
    """The stage a task belongs to: its name starts with it ("install: ship the wheelhouse"), after
    the role's name that Ansible puts in front ("stackaudit_install : install: ...")."""
    head = task_name.rsplit(" : ", 1)[-1].split(":", 1)[0].strip()
    return head if head in STAGES else "collect"


def reason_of(result: dict[str, Any]) -> str:
    """Ansible's message for a failed task: msg, else the tail of its output (stderr, else stdout: a
    script runs on a terminal, where both are one), else the return code."""
    if result.get("censored") or result.get("_ansible_no_log"):
        return HIDDEN
    message = str(result.get("msg") or "").strip()
    if message and not message.startswith("non-zero return code"):
        return message
    for stream in ("stderr", "stdout"):
        text = ANSI.sub("", str(result.get(stream) or ""))
        stripped = (raw.strip() for raw in text.splitlines())
        lines = [line for line in stripped if line and not SSH_NOISE.match(line)]
        if lines:
            return " / ".join(lines[-3:])
    return message or f"failed with return code {result.get('rc')}"


class CallbackModule(CallbackBase):  # type: ignore[misc]
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "stdout"
    CALLBACK_NAME = "stackaudit_progress"

    def _emit(self, **event: Any) -> None:
        sys.stdout.write(json.dumps(event) + "\n")
        sys.stdout.flush()

    def v2_runner_on_failed(self, result: Any, ignore_errors: bool = False) -> None:
        if not ignore_errors:
            name = result._task.get_name()
            stage, reason = stage_of(name), reason_of(result._result)
            if stage == "metrics":  # a role of many tasks: say which one ("the unit folder: ...")
                reason = f"{name.rsplit(' : ', 1)[-1].split(':', 1)[-1].strip()}: {reason}"
            self._emit(event="failed", host=result._host.get_name(), stage=stage, reason=reason)

    def v2_runner_on_unreachable(self, result: Any) -> None:
        self._emit(event="failed", host=result._host.get_name(), stage="unreachable",
                   reason=reason_of(result._result))

    def v2_runner_on_ok(self, result: Any) -> None:
        name = result._task.get_name()
        if stage_of(name) == "fetch":
            self._emit(event="collected", host=result._host.get_name(), path=result._result.get("dest"))
        elif name.rsplit(" : ", 1)[-1] == METRICS_DONE:
            self._emit(event="metrics-done", host=result._host.get_name())

    def v2_playbook_on_stats(self, stats: Any) -> None:
        self._emit(event="done")
