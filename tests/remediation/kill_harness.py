"""Run the stackaudit CLI so that a test can SIGKILL it exactly at one journal phase, from outside.

    python -m tests.remediation.kill_harness PHASE FD stackaudit-args...

Test code, not product code: it wraps Journal._save so that, right after the journal of an apply
has been written with PHASE as its last step, the process writes PHASE to the pipe FD and waits for
ever. The test reads the pipe (no polling, no timing), sees the journal on disk ending at PHASE and
kills the process with SIGKILL. Nothing runs past that phase, on any machine speed.
"""

from __future__ import annotations

import os
import signal
import sys

from stackaudit.remediation import journal as journal_module


def main() -> None:
    phase, fd, args = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    original = journal_module.Journal._save

    def save_then_wait(self: journal_module.Journal) -> None:
        original(self)
        steps = self.document.get("steps") or []
        if self.document.get("kind") == "apply" and steps and steps[-1].get("phase") == phase:
            os.write(fd, f"{phase}\n".encode())
            while True:  # the test kills us here
                signal.pause()

    journal_module.Journal._save = save_then_wait  # type: ignore[method-assign]
    from stackaudit.cli import main as cli_main

    sys.argv = ["stackaudit", *args]
    cli_main()


if __name__ == "__main__":
    main()
