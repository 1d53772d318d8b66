"""Fixtures of the monitor tests: a real small filesystem to fill, and a real HTTP alert receiver."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

DISK_BYTES = 4 * 1024 * 1024


class SmallDisk:
    """A 4 MiB tmpfs mounted for the test; `fill(percent)` makes df's Use% that value."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fill(self, percent: float) -> None:
        target = self.path / "fill.bin"
        target.unlink(missing_ok=True)
        st = os.statvfs(self.path)
        capacity = (st.f_blocks - st.f_bfree + st.f_bavail) * st.f_frsize
        size = int(capacity * percent / 100.0)
        with open(target, "wb") as handle:
            handle.write(b"\0" * size)
            handle.flush()
            os.fsync(handle.fileno())

    def used_percent(self) -> float:
        st = os.statvfs(self.path)
        used = st.f_blocks - st.f_bfree
        return 100.0 * used / (used + st.f_bavail)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    mountpoint = tmp_path / "disk"
    mountpoint.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs", str(mountpoint)], check=True)
    try:
        yield SmallDisk(mountpoint)
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


class Receiver:
    """An HTTP server on 127.0.0.1 that keeps every JSON body posted to it (apprise's json://)."""

    def __init__(self, port: int = 0) -> None:
        received: list[dict[str, Any]] = []
        self.received = received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        # stop() waits for the loop's next poll: 0.5 s by default, after every test that used one
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.port}/"

    def titles(self) -> list[str]:
        return [str(r["title"]) for r in self.received]

    def wait_for(self, count: int, timeout: float = 30.0,
                 sender: subprocess.Popen[bytes] | None = None) -> None:
        """Until `count` notifications came. With the `sender` process given, for as long as it runs
        (however slow the machine: pytest's timeout is the hang guard), else for `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while len(self.received) < count and (sender is not None or time.monotonic() < deadline):
            assert sender is None or sender.poll() is None, sender.communicate()[1].decode()[-2000:]
            time.sleep(0.05)
        assert len(self.received) >= count, f"got {self.titles()}, wanted {count}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.stop()


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
