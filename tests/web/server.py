"""Start `stackaudit serve` as a real subprocess on a free loopback port (for HTTP and browser tests)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.report.report_facts import sample_facts
from tests.services import end_process


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_snapshot(directory: Path) -> Path:
    path = directory / "facts.json"
    path.write_text(json.dumps(sample_facts().to_json()))
    return path


@dataclass
class Served:
    url: str
    state_dir: Path
    process: subprocess.Popen[str]


@contextmanager
def serve(tmp: Path, *args: str, token: str | None = None) -> Iterator[Served]:
    """The dashboard on 127.0.0.1:<free port>, stopped (and waited for) afterwards."""
    port = free_port()
    state = tmp / "state"
    command = [sys.executable, "-m", "stackaudit", "serve", "--listen", f"127.0.0.1:{port}",
               "--state-dir", str(state), *args]
    env = {k: v for k, v in os.environ.items() if k != "STACKAUDIT_TOKEN"}
    if token:
        env["STACKAUDIT_TOKEN"] = token
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url, process)
        yield Served(url, state, process)
    finally:
        end_process(process)


def wait_until_up(url: str, process: subprocess.Popen[str], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = process.stdout.read() if process.stdout else ""
            raise AssertionError(f"stackaudit serve exited with {process.returncode}: {output}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError("stackaudit serve did not come up")


def wait_for_report(url: str, headers: dict[str, str] | None = None,
                    timeout: float = 60.0) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = httpx.get(f"{url}/api/status", headers=headers or {}, timeout=5.0).json()
        if status["report"] and status["job"]["state"] != "running":
            return dict(status)
        time.sleep(0.2)
    raise AssertionError("no audit finished")
