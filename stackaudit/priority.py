"""The priority of the commands that only observe (audit, collect, check): below the services.

`stackaudit.__main__` lowers it before the CLI framework and the command are imported (those imports
are a third of an audit's CPU), and the commands do again (idempotent) for other entry points.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

from stackaudit import pacing

OBSERVING_COMMANDS = ("audit", "collect", "check")
# The long observers whose answer can wait. `check` (and watch's passes) carry the alerts, which must
# still get their share of CPU on a saturated host, so they stay in the normal scheduling class.
IDLE_CLASS_COMMANDS = ("audit", "collect")
# nice 19, as updatedb's and man-db's daily jobs: beside pgbench it took less from the database
# than nice 10 in both measured runs (docs/benchmarks.md, "pgbench beside back-to-back audits").
DEFAULT_NICE = 19


def nice_level(setting: str | None) -> int | None:
    """STACKAUDIT_NICE: 0 keeps the normal priority, 2-19 is that nice level and nothing more; unset
    (or 1) is the default, None here. Anything else is the default too: a typo must not raise the
    audit's priority."""
    try:
        level = int(setting) if setting is not None else 1
    except ValueError:
        return None
    return level if 0 <= level <= 19 and level != 1 else None


def below_the_services(command: str) -> None:
    """Observing commands run below the services they look at, as `stackaudit schedule`'s units do:
    CPU nice 19 (in a session of their own when unattended, see own_autogroup) and the idle I/O class,
    so beside a busy database they take spare CPU and disk time. An unattended audit or collect also
    takes the idle scheduling class (SCHED_IDLE, sched(7)): a database process that wakes up then
    preempts it at once instead of waiting for its time slice, which nice alone does not give
    (pgbench kept 0.95x of its TPS beside back-to-back audits, against 0.81x at nice 19). The class
    still gets a minimal CPU share on a saturated host, so an audit is slowed, never starved."""
    setting = nice_level(os.environ.get("STACKAUDIT_NICE"))
    if setting == 0:
        return
    level = DEFAULT_NICE if setting is None else setting
    try:
        if os.getpriority(os.PRIO_PROCESS, 0) < level:
            os.nice(level - os.getpriority(os.PRIO_PROCESS, 0))
        own_autogroup(level=level)
        if unattended() and setting is None and command in IDLE_CLASS_COMMANDS:
            # on the calling thread: the audit starts its worker threads later, and they inherit it
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
            pacing.start()  # and it yields to a busy host (stackaudit.pacing: the class is not free)
    except (OSError, AttributeError, ValueError):
        pass  # not Linux, or not allowed: the audit still runs, at the priority it was given
    idle_io_class()


def idle_io_class() -> None:
    import psutil  # lazy: start-up

    # psutil's AccessDenied is not an OSError; there is no ionice outside Linux
    with contextlib.suppress(psutil.Error, OSError, AttributeError, ValueError):
        psutil.Process().ionice(psutil.IOPRIO_CLASS_IDLE)


def unattended() -> bool:
    """Run from a script, cron, a service or Ansible: stdin is not a terminal."""
    return sys.stdin is not None and not sys.stdin.isatty()


def own_autogroup(autogroup: Path = Path("/proc/self/autogroup"), level: int = DEFAULT_NICE) -> bool:
    """With the kernel's autogroup scheduling (sched_autogroup_enabled, on in most distributions),
    CPU is shared between sessions first and nice only orders the tasks of one session: a niced
    audit still took its session's full share beside the database's session. Run from a script,
    cron or a service (stdin not a terminal), it becomes a session of its own and gives that
    session the audit's nice level (sched(7), "The autogroup feature"). On a terminal it stays in
    the user's session (Ctrl-C must reach it), as does a process that cannot have its own: True when
    done."""
    if not autogroup.exists() or not unattended():
        return False
    if os.getsid(0) != os.getpid():
        try:
            os.setsid()
        except OSError:
            return False  # a process group leader (a shell's job): its session is the user's
    autogroup.write_text(str(level))
    return True
