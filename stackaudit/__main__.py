"""`python -m stackaudit` and the `stackaudit` script.

`--version` is answered here, before the CLI framework is imported: scripts that ask pay only for
Python itself (docs/benchmarks.md, start-up row).
"""

from __future__ import annotations

import sys

from stackaudit import __version__
from stackaudit.priority import OBSERVING_COMMANDS, below_the_services


def main() -> None:
    if sys.argv[1:] == ["--version"]:
        sys.stdout.write(f"stackaudit {__version__}\n")
        return
    if sys.argv[1:2] and sys.argv[1] in OBSERVING_COMMANDS:
        below_the_services()  # before the imports below: they run at the lower priority too
    from stackaudit.cli import main as cli_main  # lazy: start-up

    cli_main()


if __name__ == "__main__":
    main()
