"""Runs the shipped playbook with `ansible-playbook` and yields the progress callback's events as they
come. The user's inventory, ansible.cfg, ssh config, keys, become and vault apply as in any of their
Ansible runs: the environment passes through (ANSIBLE_*), and only the output callback is ours.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from stackaudit.fleet.inventory import FleetError, ansible_program
from stackaudit.redact import scrub

CALLBACK = "stackaudit_progress"
# ansible-playbook's exit codes when hosts failed (2) or were unreachable (4): the run itself worked.
HOST_FAILURE_CODES = frozenset({0, 2, 4})


@dataclass(frozen=True)
class PlaybookRun:
    inventory: Path
    playbook: str  # a playbook file of the package's fleet/ansible folder
    extra_vars: Mapping[str, Any]
    limit: str | None = None
    forks: int | None = None
    options: Sequence[str] = field(default_factory=tuple)  # e.g. --vault-password-file FILE


def ansible_dir() -> Path:
    return Path(str(resources.files("stackaudit.fleet") / "ansible"))


def command(run: PlaybookRun, extra_vars_file: Path) -> list[str]:
    args = [ansible_program("ansible-playbook"), "-i", str(run.inventory),
            str(ansible_dir() / run.playbook), "-e", f"@{extra_vars_file}"]
    if run.limit:
        args += ["--limit", run.limit]
    if run.forks:
        args += ["--forks", str(run.forks)]
    return args + list(run.options)


def environment(base: Mapping[str, str]) -> dict[str, str]:
    """The caller's environment with our callback as the output; a user's callback folders stay.

    Pipelining is on unless the caller says (ANSIBLE_PIPELINING=False): it sends each module over the
    open SSH connection instead of copying it, several round trips fewer per task. It only fails with
    become on a sudoers `requiretty`, which current distributions no longer set.
    https://docs.ansible.com/ansible/latest/reference_appendices/config.html#ansible-pipelining
    """
    plugins = str(ansible_dir() / "callback_plugins")
    theirs = base.get("ANSIBLE_CALLBACK_PLUGINS")
    return {"ANSIBLE_PIPELINING": "True", **base, "ANSIBLE_STDOUT_CALLBACK": CALLBACK, "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_CALLBACK_PLUGINS": f"{plugins}:{theirs}" if theirs else plugins}


def events(run: PlaybookRun) -> Iterator[dict[str, Any]]:
    """The callback's events, one per host result as it happens. Ansible's own stderr (warnings,
    errors) goes to a temporary file: a run that fails as a whole is a FleetError with its tail."""
    with tempfile.TemporaryDirectory(prefix="stackaudit-fleet-") as work:
        extra = Path(work) / "extra-vars.json"
        extra.write_text(json.dumps(dict(run.extra_vars)))
        with (Path(work) / "stderr").open("w+") as stderr:
            try:
                process = subprocess.Popen(command(run, extra), stdout=subprocess.PIPE, stderr=stderr,
                                           text=True, env=environment(os.environ))
            except OSError as error:
                raise FleetError(f"could not run ansible-playbook: {error}") from None
            assert process.stdout is not None
            with process:
                for line in process.stdout:
                    event = parse_event(line)
                    if event is not None:
                        yield event
            if process.returncode not in HOST_FAILURE_CODES:
                stderr.seek(0)
                raise FleetError(f"ansible-playbook failed (exit {process.returncode}): "
                                 f"{failure_tail(stderr.read())}")


def parse_event(line: str) -> dict[str, Any] | None:
    """A callback line as a dict; anything else on stdout (another plugin's print) is not ours."""
    try:
        event = json.loads(line)
    except json.JSONDecodeError:
        return None
    return event if isinstance(event, dict) and "event" in event else None


def failure_tail(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    return scrub(" / ".join(lines[-3:])) or "no message"
