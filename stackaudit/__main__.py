"""`python -m stackaudit` and the `stackaudit` script.

`--version` is answered here, before the CLI framework is imported: scripts that ask pay only for
Python itself (docs/benchmarks.md, start-up row).
"""

from __future__ import annotations

import atexit
import gc
import os
import sys
import threading
from typing import NoReturn

from stackaudit import __version__
from stackaudit.priority import OBSERVING_COMMANDS, below_the_services

# An audit allocates tens of thousands of objects that all live to its end (the facts): with the
# default threshold (700) the collector walks them ~200 times for nothing (0.05 s of CPU at 8,000
# tables). The short observing commands collect young objects 100x less often; RSS stays the same.
YOUNG_THRESHOLD = 100_000


def main() -> None:
    if sys.argv[1:] == ["--version"]:
        sys.stdout.write(f"stackaudit {__version__}\n")
        return
    if sys.argv[1:2] and sys.argv[1] in OBSERVING_COMMANDS:
        below_the_services(sys.argv[1])  # before the imports below: they run at the lower priority too
        gc.set_threshold(YOUNG_THRESHOLD, *gc.get_threshold()[1:])
    from stackaudit.cli import main as cli_main  # lazy: start-up

    try:
        cli_main()
    except SystemExit as exc:
        if exc.code is not None and not isinstance(exc.code, int):
            raise  # a message to print: the interpreter's own exit says it
        exit_now(exc.code or 0)
    exit_now(0)


def exit_now(code: int) -> NoReturn:
    """End the process as the interpreter would, without tearing down every module one by one
    (~0.08 s of CPU after an audit, a tenth of its wall time): wait for the threads it would wait
    for, run the atexit handlers (logging's flush, temporary files, coverage), flush stdout and
    stderr, then leave. If the output cannot be flushed (a closed pipe), the ordinary exit says so."""
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        sys.exit(code)
    os._exit(code)


if __name__ == "__main__":
    main()
