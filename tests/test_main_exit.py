"""The entry point ends the process without module teardown, but as the interpreter would otherwise:
the command's exit code, the threads it would wait for, then the atexit handlers, all output flushed.

Real subprocesses of the real entry point (stackaudit.__main__.main); nothing is timed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

# A non-daemon thread that finishes only after the command has returned, an atexit handler, and the
# collector's threshold seen from inside: each leaves a line on stdout, which is a pipe (buffered).
WRAPPER = """
import atexit, gc, sys, threading
release = threading.Event()
def late():
    release.wait()
    print("THREAD done")
threading.Thread(target=late).start()
atexit.register(lambda: print("ATEXIT gc", gc.get_threshold()[0]))
sys.argv = ["stackaudit", *sys.argv[1:]]
from stackaudit import __main__ as entry
original = entry.exit_now
def exit_now(code):
    release.set()  # the command is done: the thread may end now, and must be waited for
    original(code)
entry.exit_now = exit_now
entry.main()
"""


def run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "STACKAUDIT_"))}
    env.update(HOME=str(tmp_path), DOCKER_HOST="unix:///nonexistent/docker.sock",
               STACKAUDIT_STATE_DIR=str(tmp_path / "state"), STACKAUDIT_NICE="0")
    return subprocess.run([sys.executable, "-c", WRAPPER, *args], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=120)


def test_an_audit_flushes_its_report_waits_for_threads_then_runs_atexit(tmp_path: Path) -> None:
    result = run(tmp_path, "audit", "--sources", "host", "--format", "json")
    assert result.returncode in (0, 1), result.stderr
    report, _, tail = result.stdout.rpartition("}\n")
    assert json.loads(report + "}")["facts"]["host"]["cpus"] >= 1
    # the thread is joined before the atexit handlers run, as Py_Finalize does; an observing
    # command collects young objects less often
    assert tail.splitlines() == ["THREAD done", "ATEXIT gc 100000"]


def test_an_error_keeps_its_exit_code_and_message(tmp_path: Path) -> None:
    result = run(tmp_path, "explain", "NOPE123")
    assert result.returncode == 2
    assert "no rule 'NOPE123'" in result.stderr
    thread, handler = result.stdout.splitlines()
    assert thread == "THREAD done" and handler.startswith("ATEXIT gc ")
    assert handler != "ATEXIT gc 100000"  # the interpreter's default: not an observing command
