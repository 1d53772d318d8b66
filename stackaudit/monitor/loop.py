"""`stackaudit watch` that stays small: a lean loop, and one short-lived child process per check.

`stackaudit watch` parses its options, then becomes this loop with os.execv (same PID, so systemd
and signals see one process) and leaves behind everything the command line imported. The loop
imports only the standard library, the history (sqlite3) and the redaction helper. Each check runs
in a child, `python -m stackaudit.monitor.loop --run pass`, which imports the collectors and rules,
records the history, sends the alerts, writes the textfile, logs one line and exits: nothing a
check needed stays in memory between checks. Between checks the loop looks in the history's outbox
and starts a child (`--run flush`) only when a notification is due.

`stackaudit metrics --listen` uses the same kind of child for each check it serves
(`exposition_in_child`, `--run exposition`): the child renders the exposition text and the server
keeps those bytes, so the check's work never holds the server's GIL and a scrape, during a check
or not, is answered by copying the previous bytes. Each child lowers its priority as the observing
commands do for `check` (`stackaudit.priority`: nice 19, idle I/O, a session of its own at autogroup
nice 19, the normal scheduling class).

The settings can hold a DSN password and alert tokens: they reach the loop through an inherited
pipe and each child on its stdin, pickled, never in argv or the environment.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from stackaudit.priority import below_the_services
from stackaudit.redact import scrub

log = logging.getLogger("stackaudit.watch")
CHILD_TIMEOUT_FACTOR = 10.0  # a check that takes 10 intervals (at least 10 minutes) is stuck


def setup_logging(level: int) -> None:
    """Log lines to stderr, every one scrubbed of remembered secrets."""

    class Scrub(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            record.msg, record.args = scrub(record.getMessage()), None
            return True

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(Scrub())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("apprise").setLevel(logging.ERROR)  # our own lines say which alert failed


def stop_event() -> threading.Event:
    """Set on SIGTERM or SIGINT; the pass in progress finishes first."""
    stop = threading.Event()

    def handler(signum: int, frame: object) -> None:
        log.info("%s: stopping after the current pass", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop


# --- the loop ------------------------------------------------------------------------------------


def become_loop(settings: Any, options: Any, interval_seconds: float, interval_text: str,
                textfile: Path | None) -> None:
    """Replace this process with the lean loop (does not return)."""
    job = {"payload": pickle.dumps((settings, options, textfile)), "interval": interval_seconds,
           "interval_text": interval_text, "state_dir": str(settings.state_dir)}
    read, write = os.pipe()
    data = pickle.dumps(job)
    if len(data) > 60_000:  # a pipe holds 64 KiB: more would block before exec
        raise ValueError("the watch settings are too large to hand over")
    os.write(write, data)
    os.close(write)
    os.set_inheritable(read, True)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "stackaudit.monitor.loop", "--watch", str(read)])


def lean_watch(job: dict[str, Any], stop: threading.Event, tick_seconds: float = 60.0) -> int:
    """Passes every `interval` until `stop`; returns the number of passes. A failing pass is logged
    and the loop goes on."""
    interval = float(job["interval"])
    state_dir = Path(job["state_dir"])
    passes = 0
    next_pass = time.monotonic()
    while not stop.is_set():
        if time.monotonic() >= next_pass:
            next_pass = time.monotonic() + interval
            passes += 1
            run_child("pass", job["payload"], max(600.0, interval * CHILD_TIMEOUT_FACTOR))
        elif notifications_due(state_dir):
            run_child("flush", job["payload"], 600.0)
        stop.wait(max(0.0, min(next_pass - time.monotonic(), tick_seconds)))
    return passes


def notifications_due(state_dir: Path) -> bool:
    from stackaudit.monitor.history import History, database_path  # lazy: start-up

    if not database_path(state_dir).exists():
        return False
    try:
        with History.open(state_dir) as history:
            return bool(history.pending(time.time()))
    except Exception as exc:  # noqa: BLE001 - a locked or damaged file: the next pass says more
        log.error("reading the alert outbox failed: %s", scrub(str(exc)))
        return False


def exposition_in_child(settings: Any, timeout_seconds: float = 600.0) -> bytes:
    """The Prometheus exposition text of a read-only check, rendered in a child: what `metrics
    --listen` serves as it is (the server process never loads the collectors or rules)."""
    return _child_output("exposition", settings, timeout_seconds)


def _child_output(mode: str, settings: Any, timeout_seconds: float) -> bytes:
    child = subprocess.Popen([sys.executable, "-m", "stackaudit.monitor.loop", "--run", mode],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        out, _ = child.communicate(pickle.dumps((settings, None, None)), timeout=timeout_seconds)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
        raise RuntimeError(f"the check did not finish in {timeout_seconds:.0f} s") from None
    if child.returncode != 0:
        raise RuntimeError(f"the check failed (child exit status {child.returncode})")
    return out


def run_child(mode: str, payload: bytes, timeout_seconds: float) -> int:
    """One check (or outbox flush) in a child process; its log lines go to our stderr."""
    child = subprocess.Popen([sys.executable, "-m", "stackaudit.monitor.loop", "--run", mode],
                             stdin=subprocess.PIPE)
    try:
        child.communicate(payload, timeout=timeout_seconds)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
        log.error("%s: the child did not finish in %.0f s and was stopped", mode, timeout_seconds)
        return -1
    if child.returncode != 0:
        log.error("%s failed (child exit status %s)", mode, child.returncode)
    return child.returncode


# --- one child -----------------------------------------------------------------------------------


def child_main(mode: str) -> int:
    """Read the settings from stdin, run one pass (or flush the outbox), exit."""
    from stackaudit.redact import remember  # lazy: start-up

    # The loop decides when to stop; a Ctrl-C or a SIGTERM to the whole group must not cut a pass
    # (and its history write) in half.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    settings, options, textfile = pickle.loads(sys.stdin.buffer.read())
    # a check observes, as `stackaudit check` does: below the services, and below the `metrics`
    # server that started it, whose scrapes then get the CPU first (the tail of their latency was
    # the check's child competing with them at the same priority, in the same session)
    below_the_services("check")
    setup_logging(logging.INFO)
    for url in settings.alert_urls:
        remember(url)
    try:
        if mode == "flush":
            from stackaudit.monitor.check import flush_pending  # lazy: start-up

            flush_pending(settings, options)
        elif mode == "exposition":
            from stackaudit.monitor.metrics import exposition  # lazy: start-up

            sys.stdout.buffer.write(exposition(read_only_check(settings)))
            sys.stdout.buffer.flush()
        else:
            report_pass(settings, options, textfile)
    except Exception as exc:  # noqa: BLE001 - logged like any failed pass; the loop goes on
        log.error("%s failed: %s: %s", "check" if mode == "pass" else "alert retry",
                  exc.__class__.__name__, scrub(str(exc)))
        return 1
    return 0


def read_only_check(settings: Any) -> Any:
    """What `metrics` serves: a check with the history's forecasts, recording nothing."""
    from stackaudit.monitor.check import run_check  # lazy: start-up
    from stackaudit.monitor.history import History, database_path  # lazy: start-up

    if not database_path(settings.state_dir).exists():
        return run_check(settings)
    with History.open(settings.state_dir) as history:
        return run_check(settings, history)


def report_pass(settings: Any, options: Any, textfile: Path | None) -> None:
    from stackaudit.monitor.check import run_pass  # lazy: start-up
    from stackaudit.monitor.metrics import write_textfile  # lazy: start-up

    result = run_pass(settings, options)
    worst = result.report.worst()
    log.info("check: %d finding(s), worst %s, %d alert(s)", len(result.report.findings),
             worst.label() if worst else "none", len(result.alerts))
    if textfile is not None:
        write_textfile(textfile, result)


def main(argv: list[str]) -> int:
    if argv[:1] == ["--run"] and len(argv) == 2:
        return child_main(argv[1])
    if argv[:1] == ["--watch"] and len(argv) == 2:
        with os.fdopen(int(argv[1]), "rb") as handle:
            job = pickle.loads(handle.read())
        setup_logging(logging.INFO)
        stop = stop_event()
        log.info("watching every %s; history in %s", job["interval_text"], job["state_dir"])
        passes = lean_watch(job, stop)
        log.info("stopped after %d pass(es)", passes)
        return 0
    print("internal entry point of `stackaudit watch`; run `stackaudit watch --help`", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
