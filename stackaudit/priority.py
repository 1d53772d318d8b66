"""The priority of the commands that only observe (audit, collect, check): below the services.

`stackaudit.__main__` lowers it before the CLI framework and the command are imported (those imports
are a third of an audit's CPU), and the commands do again (idempotent) for other entry points.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

OBSERVING_COMMANDS = ("audit", "collect", "check")


def below_the_services() -> None:
    """Observing commands (audit, collect, check) run below the services they look at: CPU nice 10
    and the idle I/O class, as `stackaudit schedule`'s units do, so beside a busy database they take
    spare CPU and disk time first. STACKAUDIT_NICE=0 keeps the normal priority."""
    if os.environ.get("STACKAUDIT_NICE", "1") == "0":
        return
    try:
        if os.getpriority(os.PRIO_PROCESS, 0) < 10:
            os.nice(10 - os.getpriority(os.PRIO_PROCESS, 0))
        own_autogroup()
    except (OSError, AttributeError, ValueError):
        pass  # not Linux, or not allowed: the audit still runs, at the priority it was given
    idle_io_class()


def idle_io_class() -> None:
    import psutil  # lazy: start-up

    # psutil's AccessDenied is not an OSError; there is no ionice outside Linux
    with contextlib.suppress(psutil.Error, OSError, AttributeError, ValueError):
        psutil.Process().ionice(psutil.IOPRIO_CLASS_IDLE)


def own_autogroup(autogroup: Path = Path("/proc/self/autogroup")) -> bool:
    """With the kernel's autogroup scheduling (sched_autogroup_enabled, on in most distributions),
    CPU is shared between sessions first and nice only orders the tasks of one session: a niced
    audit still took its session's full share beside the database's session. Run from a script,
    cron or a service (stdin not a terminal), it becomes a session of its own and gives that
    session nice 10 (sched(7), "The autogroup feature"). On a terminal it stays in the user's
    session (Ctrl-C must reach it), as does a process that cannot have its own: True when done."""
    if not autogroup.exists() or sys.stdin is None or sys.stdin.isatty():
        return False
    if os.getsid(0) != os.getpid():
        try:
            os.setsid()
        except OSError:
            return False  # a process group leader (a shell's job): its session is the user's
    autogroup.write_text("10")
    return True
