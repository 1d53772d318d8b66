"""The priority of the commands that only observe (audit, collect, check): below the services.

`stackaudit.__main__` lowers it before the CLI framework and the command are imported (those imports
are a third of an audit's CPU), and the commands do again (idempotent) for other entry points.
"""

from __future__ import annotations

import os

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
        import psutil  # lazy: start-up

        psutil.Process().ionice(psutil.IOPRIO_CLASS_IDLE)
    except (OSError, AttributeError, ValueError):
        pass  # not Linux, or not allowed: the audit still runs, at the priority it was given
