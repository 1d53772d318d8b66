"""The Docker Engine API over a local unix socket, with the standard library only.

An audit only reads (version, info, system df, lists, inspects, stats, history, events), and on a
local engine those are plain HTTP/1.1 GETs on the socket. The Docker SDK with requests and urllib3
cost the audit ~0.1 s of CPU and ~10 MiB just to import, plus a few hundred microseconds a call
(docs/benchmarks.md, "Audit cost"); `LocalEngine` answers the same calls with http.client. A
remote engine (tcp://, ssh://, TLS) still goes through the SDK (`facts.docker.connect`), and so
does everything that writes (`remediation.clean`).

The method names and arguments are the SDK's `APIClient` ones that `facts.docker.snapshot` calls,
so either client serves it. Paths are unversioned: the engine answers them in its own API version,
which is what the SDK's version negotiation ends up asking for (Engine API docs, "Versioned API
and SDK": "If you omit the version-prefix, the current version of the API is used").
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
from collections.abc import Iterator, Mapping
from typing import Any, Protocol
from urllib.parse import quote, urlencode


class EngineCalls(Protocol):
    """The read calls `facts.docker.snapshot` makes: the SDK's APIClient has them, so has LocalEngine."""

    timeout: Any

    def version(self) -> Any: ...
    def info(self) -> Any: ...
    def df(self) -> Any: ...
    def containers(self, all: bool = ...) -> Any: ...
    def inspect_container(self, container: str) -> Any: ...
    def stats(self, container: str, stream: bool = ..., one_shot: bool = ...) -> Any: ...
    def images(self, all: bool = ...) -> Any: ...
    def inspect_image(self, image: str) -> Any: ...
    def history(self, image: str) -> Any: ...
    def volumes(self) -> Any: ...
    def events(self, since: Any = ..., until: Any = ..., filters: Any = ..., decode: bool = ...) -> Any: ...


class EngineClient(Protocol):
    """A docker.DockerClient or a LocalEngine: `.api.<call>()` and `.close()`."""

    @property
    def api(self) -> EngineCalls: ...
    def close(self) -> None: ...


class EngineAPIError(Exception):
    """The engine answered with an error status; `explanation` is its message (as the SDK's APIError)."""

    def __init__(self, status: int, explanation: str) -> None:
        super().__init__(f"{status}: {explanation}")
        self.status, self.explanation = status, explanation


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class LocalEngine:
    """A read-only Engine API client on `unix://PATH`: one kept-alive connection per thread.

    `api` is the client itself, so code written for `DockerClient.api.<call>` works unchanged;
    `timeout` (seconds) may be changed between calls, as `facts.docker.longer_timeout` does.
    """

    def __init__(self, base_url: str, timeout: float) -> None:
        if not base_url.startswith("unix://"):
            raise ValueError(f"not a unix socket: {base_url}")
        self.path = base_url.removeprefix("unix://")
        self.timeout = timeout
        self._local = threading.local()
        self._opened: list[_UnixConnection] = []
        self._lock = threading.Lock()

    @property
    def api(self) -> LocalEngine:
        return self

    # ------------------------------------------------------------------ transport

    def _connection(self) -> _UnixConnection:
        conn: _UnixConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = _UnixConnection(self.path, self.timeout)
            self._local.conn = conn
            with self._lock:
                self._opened.append(conn)
        conn.timeout = self.timeout
        if conn.sock is not None:
            conn.sock.settimeout(self.timeout)
        return conn

    def _get(self, path: str, params: Mapping[str, Any] | None = None) -> bytes:
        """The body of GET path?params; EngineAPIError for a 4xx/5xx; OSError (timeouts too) as raised."""
        target = path + (f"?{urlencode(params)}" if params else "")
        for attempt in (1, 2):
            conn = self._connection()
            reused = conn.sock is not None
            try:
                conn.request("GET", target, headers={"Host": "docker"})
                response = conn.getresponse()
                body = response.read()
                break
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                conn.close()
                if not reused or attempt == 2:  # a kept-alive connection the engine closed: once more
                    raise
            except BaseException:
                conn.close()
                raise
        if response.status >= 400:
            raise EngineAPIError(response.status, _message(body))
        return body

    def _json(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        return json.loads(self._get(path, params) or b"null")

    def close(self) -> None:
        with self._lock:
            for conn in self._opened:
                conn.close()
            self._opened.clear()

    # ------------------------------------------------------------------ the calls snapshot() makes

    def ping(self) -> bool:
        return self._get("/_ping") == b"OK"

    def version(self) -> dict[str, Any]:
        result: dict[str, Any] = self._json("/version")
        return result

    def info(self) -> dict[str, Any]:
        result: dict[str, Any] = self._json("/info")
        return result

    def df(self) -> dict[str, Any]:
        result: dict[str, Any] = self._json("/system/df")
        return result

    def containers(self, all: bool = False) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._json("/containers/json", {"all": int(all)})
        return result

    def inspect_container(self, container: str) -> dict[str, Any]:
        result: dict[str, Any] = self._json(f"/containers/{quote(container, safe='')}/json")
        return result

    def stats(self, container: str, stream: bool = False, one_shot: bool = True) -> dict[str, Any]:
        if stream:
            raise ValueError("a streaming stats call is not a read this client makes")
        result: dict[str, Any] = self._json(f"/containers/{quote(container, safe='')}/stats",
                                            {"stream": 0, "one-shot": int(one_shot)})
        return result

    def images(self, all: bool = False) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._json("/images/json", {"all": int(all)})
        return result

    def inspect_image(self, image: str) -> dict[str, Any]:
        result: dict[str, Any] = self._json(f"/images/{quote(image, safe=':')}/json")
        return result

    def history(self, image: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._json(f"/images/{quote(image, safe=':')}/history")
        return result

    def volumes(self) -> dict[str, Any]:
        result: dict[str, Any] = self._json("/volumes")
        return result

    def events(self, since: Any = None, until: Any = None, filters: Mapping[str, Any] | None = None,
               decode: bool = True) -> Iterator[dict[str, Any]]:
        """The engine's buffered events between since and until (with `until` the stream ends)."""
        if until is None:
            raise ValueError("events without `until` never end: this client reads bounded ranges only")
        params = {"since": since, "until": until, **({"filters": json.dumps(filters)} if filters else {})}
        body = self._get("/events", {k: v for k, v in params.items() if v is not None})
        return iter(parse_json_stream(body))


def parse_json_stream(body: bytes) -> list[dict[str, Any]]:
    """JSON objects one after another (the events stream writes one per line), in order."""
    decoder, text, at = json.JSONDecoder(), body.decode("utf-8", "replace"), 0
    found: list[dict[str, Any]] = []
    while True:
        while at < len(text) and text[at].isspace():
            at += 1
        if at >= len(text):
            return found
        value, at = decoder.raw_decode(text, at)
        found.append(value)


def _message(body: bytes) -> str:
    """The engine's {"message": ...} error body, else the body's text."""
    try:
        payload = json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace").strip()[:300]
    return str(payload.get("message", payload)) if isinstance(payload, dict) else str(payload)
