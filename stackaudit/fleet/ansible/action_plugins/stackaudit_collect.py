"""Ansible action of `stackaudit fleet collect`: `stackaudit collect` on the host and its snapshot
written on the controller, in one remote shell command and no Python module on the host.

The builtin way (command, fetch, file) cost four module runs on the host (Python start-up and the
module's zip each time), a stat and a transfer round trip, and as many worker forks on the
controller; this is one command over the connection Ansible already holds (ssh, its ControlPersist,
become, the user's settings), the same low-level call the builtin `raw` action makes.

The secrets (the fleet key, the DSN) go to the remote shell on stdin (`in_data`), never into the
command line. The task that calls this is `no_log`; its registered result holds rc, stackaudit's
own (redacted) stderr and `fetch_error`, and the next tasks of the role turn them into a failure
with its stage. Arguments: argv (the collect command, its `--out` the remote snapshot file),
snapshot (that file, removed by the same command whatever happens), stdin, dest (the controller's
file, written 0600 by a rename).
"""

from __future__ import annotations

import os
import shlex
import tempfile
from typing import Any

from ansible.plugins.action import ActionBase

MARKER = "--- stackaudit snapshot ---"
# $1 the remote snapshot file, then the collect command. Its stdout goes to stderr, so that what a
# login script may print comes before the marker and the snapshot after it is exactly the file.
SCRIPT = (
    "IFS= read -r STACKAUDIT_FLEET_KEY; export STACKAUDIT_FLEET_KEY; "
    "IFS= read -r dsn || true; "
    'if [ -n "$dsn" ]; then STACKAUDIT_PG_DSN=$dsn; export STACKAUDIT_PG_DSN; fi; unset dsn; '
    "STACKAUDIT_NICE=1; export STACKAUDIT_NICE; "
    'snapshot=$1; shift; trap \'rm -f "$snapshot"\' EXIT; '
    '"$@" >&2 || exit $?; '
    f"printf '%s\\n' '{MARKER}'; cat \"$snapshot\""
)


class ActionModule(ActionBase):  # type: ignore[misc]
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("argv", "snapshot", "stdin", "dest"))

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        result: dict[str, Any] = super().run(tmp, task_vars or {})
        args = self._task.args
        argv = [str(a) for a in args["argv"]]
        command = shlex.join(["sh", "-c", SCRIPT, "stackaudit", str(args["snapshot"]), *argv])
        ran = self._low_level_execute_command(command, in_data=str(args.get("stdin") or "").encode())
        stderr = [line for line in ran["stderr_lines"] if line.strip()]
        result.update(changed=True, rc=ran["rc"], stderr_lines=stderr[-20:])
        if ran["rc"] == 0:
            _, found, snapshot = ran["stdout"].partition(MARKER + "\n")
            if not found:
                result["fetch_error"] = "the host sent no snapshot after stackaudit collect"
            else:
                result["fetch_error"] = write_private(str(args["dest"]), snapshot)
        return result


def write_private(dest: str, text: str) -> str | None:
    """The snapshot into dest (0600, temp file and rename: a kill leaves no half file); the error's
    words, else None."""
    folder = os.path.dirname(dest)
    try:
        fd, temp = tempfile.mkstemp(dir=folder, prefix=".snapshot-")
        try:
            with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, dest)
        except BaseException:
            os.unlink(temp)
            raise
    except OSError as error:
        return f"cannot write {dest}: {error.strerror or error}"
    return None
