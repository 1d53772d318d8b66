"""Run the stackaudit CLI paused in the middle of its PostgreSQL collection, so that a test can break
the server at that exact point, from outside.

    python -m tests.integration.pause_harness READY_FD RESUME_FD stackaudit-args...

Test code, not product code: it wraps `facts.postgres.run` so that after the third query of the
collection has answered, the process writes one line to READY_FD and waits until a byte arrives on
RESUME_FD. The test stops the server in between; no timing is involved on either side.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from stackaudit.facts import postgres

PAUSE_AFTER_QUERIES = 3


def main() -> None:
    ready, resume, args = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
    original = postgres.run
    answered = [0]

    def run_then_pause(*call: Any, **kwargs: Any) -> Any:
        rows = original(*call, **kwargs)
        answered[0] += 1
        if answered[0] == PAUSE_AFTER_QUERIES:
            os.write(ready, b"paused\n")
            os.read(resume, 1)
        return rows

    postgres.run = run_then_pause  # type: ignore[assignment]
    from stackaudit.cli import main as cli_main

    sys.argv = ["stackaudit", *args]
    cli_main()


if __name__ == "__main__":
    main()
