"""Bad input gets a clear error and loses nothing: the real CLI against broken services and files.

Every case checks the contract: the exit code, no traceback on stderr, JSON that parses,
`collection_errors` naming what could not be read, and the rest of the audit (other sources' facts
and findings) still there. A case runs `python -m stackaudit` as a user would where the process is
the point (a service that dies or hangs under it, a SIGKILL); the broken files and facts snapshots
run in this process (tests/cli_runner.py: the same parsing, exit codes and output). Services are real (see
tests/services.py); the ones a test breaks (a Docker engine it kills, a cluster it stops, a Redis it
kills) are private to that test.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pytest

from stackaudit.localpg import LocalCluster
from tests.cli_runner import invoke
from tests.services import DockerEngine, RedisServer, create_database, running_cluster, start_docker_engine

EXAMPLE = Path(__file__).parents[2] / "stackaudit" / "examples" / "reference-stack"
PG_PASSWORD = "Robust-Canary-Pw-4d1e"  # must never appear in any output
REDIS_PASSWORD = "Redis-Canary-Pw-9c2a"
NO_DOCKER = "unix:///nonexistent/docker.sock"


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    def report(self) -> dict[str, Any]:
        """The JSON report; the contract every run here checks first."""
        assert "Traceback" not in self.stderr + self.stdout, self.stderr[-2000:]
        report: dict[str, Any] = json.loads(self.stdout)
        assert isinstance(report["collection_errors"], list)
        return report


def cli_env(tmp_path: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    return {**os.environ, "DOCKER_HOST": NO_DOCKER, "STACKAUDIT_STATE_DIR": str(tmp_path / "state"),
            **(extra or {})}


def run_cli(tmp_path: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 120) -> Run:
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "stackaudit", *args], capture_output=True, text=True,
                            env=cli_env(tmp_path, env), timeout=timeout)
    return Run(result.returncode, result.stdout, result.stderr, time.monotonic() - started)


def run_many(tmp_path: Path, runs: dict[str, tuple[str, ...]]) -> dict[str, Run]:
    """Several CLI runs at once: most of their time is start-up and waiting, not shared state."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {name: pool.submit(run_cli, tmp_path / name, *args) for name, args in runs.items()}
        return {name: future.result() for name, future in futures.items()}


def run_in_process(tmp_path: Path, *args: str) -> Run:
    """run_cli's command in this process, with the same private state folder."""
    started = time.monotonic()
    result = invoke(*args, env={"STACKAUDIT_STATE_DIR": str(tmp_path / "state")})
    return Run(result.returncode, result.stdout, result.stderr, time.monotonic() - started)


def errors_of(report: dict[str, Any], source: str) -> list[dict[str, str]]:
    return [e for e in report["collection_errors"] if e["source"] == source]


def assert_host_still_audited(report: dict[str, Any]) -> None:
    """The source that did work is in the report: host facts and the host rules that ran."""
    assert report["facts"]["host"]["cpus"] == os.cpu_count()
    assert not [s for s in report["skipped"] if s["reason"].startswith("host:")]
    assert not [s for s in report["skipped"] if s["code"] in ("SYS001", "SYS002", "SYS004")]


class StderrWatcher:
    """Reads a running CLI's stderr line by line so a test can act right after a progress line."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._seen = threading.Condition()
        assert process.stderr is not None
        self._thread = threading.Thread(target=self._read, args=(process.stderr,), daemon=True)
        self._thread.start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            with self._seen:
                self.lines.append(line)
                self._seen.notify_all()

    def wait_for(self, text: str, timeout: float) -> bool:
        with self._seen:
            return self._seen.wait_for(lambda: any(text in line for line in self.lines), timeout)

    def text(self) -> str:
        self._thread.join(10)
        return "".join(self.lines)


def start_cli(tmp_path: Path, *args: str, env: dict[str, str] | None = None
              ) -> tuple[subprocess.Popen[str], StderrWatcher]:
    process = subprocess.Popen([sys.executable, "-m", "stackaudit", *args], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=cli_env(tmp_path, env))
    return process, StderrWatcher(process)


def finish(process: subprocess.Popen[str], watcher: StderrWatcher, timeout: float = 90) -> Run:
    started = time.monotonic()
    assert process.stdout is not None
    stdout = process.stdout.read()
    process.wait(timeout)
    return Run(process.returncode, stdout, watcher.text(), time.monotonic() - started)


# ------------------------------------------------------------------ 1. Docker engine dies or hangs

def discard_killed_engine(engine: DockerEngine) -> None:
    """engine.stop() asks the (dead) daemon for its containers; here only the files are left to remove.
    Its containers were never started, so no container process outlives the daemon."""
    engine.process.kill()
    engine.process.wait(30)
    engine.client.close()
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
              if line.split()[1].startswith(str(engine.root))]
    for mountpoint in sorted(mounts, key=len, reverse=True):
        subprocess.run(["umount", "-l", mountpoint], capture_output=True, check=False)
    shutil.rmtree(engine.root, ignore_errors=True)


@pytest.mark.integration
def test_docker_engine_killed_before_the_run_is_a_clean_error(tmp_path: Path) -> None:
    engine = start_docker_engine()
    try:
        engine.process.send_signal(signal.SIGKILL)
        engine.process.wait(10)
        result = run_cli(tmp_path, "audit", "--sources", "host,docker", "--format", "json",
                         env={"DOCKER_HOST": engine.host})
    finally:
        discard_killed_engine(engine)
    report = result.report()
    assert result.returncode in (0, 1)
    [error] = errors_of(report, "docker")
    assert "cannot reach the Docker engine" in error["why"] and engine.host in error["why"]
    assert "docker" not in report["facts"]
    assert_host_still_audited(report)


class KillingRelay:
    """A unix socket in front of the engine that relays requests and SIGKILLs the engine just before
    the n-th request reaches it: the collector has had its first answers (the ping), then the daemon
    dies under it, whatever the speed of the machine."""

    def __init__(self, path: Path, engine: DockerEngine, kill_at_request: int = 2) -> None:
        self.engine, self.kill_at, self.requests = engine, kill_at_request, 0
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(16)
        self.upstream = str(engine.root / "docker.sock")
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = self.server.accept()
                threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with contextlib.suppress(OSError), client, upstream:
            upstream.connect(self.upstream)
            threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()
            while chunk := client.recv(65536):
                self.requests += chunk.count(b" HTTP/1.1\r\n")
                if self.requests >= self.kill_at and self.engine.process.poll() is None:
                    self.engine.process.send_signal(signal.SIGKILL)
                    self.engine.process.wait(10)
                    return
                upstream.sendall(chunk)

    @staticmethod
    def _pipe(source: socket.socket, target: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while chunk := source.recv(65536):
                target.sendall(chunk)
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.server.close()


@pytest.mark.integration
def test_docker_engine_killed_mid_collection_keeps_the_rest(tmp_path: Path) -> None:
    engine = start_docker_engine()
    relay = KillingRelay(tmp_path / "relay.sock", engine)
    try:
        engine.make_image("robust/app")
        engine.run_container("robust/app:latest", "robust-0", detach_running=False)
        result = run_cli(tmp_path, "audit", "--sources", "host,docker", "--format", "json",
                         env={"DOCKER_HOST": f"unix://{tmp_path / 'relay.sock'}"})
    finally:
        relay.close()
        discard_killed_engine(engine)
    report = result.report()
    assert result.returncode in (0, 1), result.stderr
    assert relay.requests >= 2 and engine.process.poll() is not None  # it answered, then it died
    errors = errors_of(report, "docker")
    assert errors, "the dead engine must be named"
    assert any(why in e["why"] for e in errors for why in ("refused", "no such file", "closed the connection")
               ), errors
    assert_host_still_audited(report)


def hung_socket(path: Path) -> Callable[[], None]:
    """A unix socket that accepts connections and never answers; returns a function that closes it."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()

    def close() -> None:
        stop.set()
        thread.join(5)
        for conn in accepted:
            conn.close()
        server.close()

    return close


def test_hung_docker_socket_times_out_in_bounded_time(tmp_path: Path) -> None:
    sock = tmp_path / "hung.sock"
    close = hung_socket(sock)
    try:
        result = run_cli(tmp_path, "audit", "--sources", "host,docker", "--format", "json",
                         env={"DOCKER_HOST": f"unix://{sock}", "STACKAUDIT_TIMEOUT": "2"}, timeout=90)
    finally:
        close()
    report = result.report()
    assert result.returncode in (0, 1)
    [error] = errors_of(report, "docker")
    # The timeout path was taken (not a hang: run_cli's own 90 s limit would fail the test); no
    # wall-clock bound here, which a loaded machine's interpreter start alone can cross.
    assert "no answer within the timeout" in error["why"]
    assert_host_still_audited(report)


# ------------------------------------------------------------------ 2. PostgreSQL


@pytest.fixture(scope="module")
def private_pg() -> Iterator[LocalCluster]:
    """A password-protected cluster of our own: tests here stop and kill it."""
    with running_cluster(15, password=PG_PASSWORD) as cluster:
        yield cluster


def assert_no_password(run: Run, *passwords: str) -> None:
    for password in passwords:
        assert password not in run.stdout + run.stderr


@pytest.mark.integration
def test_postgres_wrong_password_names_the_cause_and_hides_it(tmp_path: Path,
                                                              private_pg: LocalCluster) -> None:
    wrong = "Wrong-Canary-Pw-77aa"
    result = run_cli(tmp_path, "audit", "--sources", "host,postgres", "--format", "json",
                     "--pg", private_pg.dsn(password=wrong))
    report = result.report()
    assert result.returncode in (0, 1)
    [error] = errors_of(report, "postgres")
    assert "password" in error["why"].lower()
    assert_no_password(result, wrong, PG_PASSWORD)
    assert_host_still_audited(report)
    assert any(s["code"].startswith("PG") and "postgres:" in s["reason"] for s in report["skipped"])


PG_SECRET = "Dsn-Canary-Pw-31f0"
PG_CASES = {  # case: what the collection error must say
    "unknown-host": "host",
    "no-database": "does not exist",
    "stopped": "refused",
}


@pytest.fixture(scope="module")
def pg_unreachable_runs(pg15: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    root = tmp_path_factory.mktemp("pg")
    dsns = {
        "unknown-host": f"postgresql://app:{PG_SECRET}@no-such-host.invalid:5432/app",
        "no-database": pg15.dsn("no_such_database_here"),
        "stopped": f"postgresql://app:{PG_SECRET}@127.0.0.1:1/app",  # nothing listens on port 1
    }
    return run_many(root, {case: ("audit", "--sources", "host,postgres", "--format", "json", "--pg", dsn)
                           for case, dsn in dsns.items()})


@pytest.mark.integration
@pytest.mark.parametrize("case", list(PG_CASES))
def test_postgres_unreachable_targets_are_clean_errors(pg_unreachable_runs: dict[str, Run],
                                                       case: str) -> None:
    result = pg_unreachable_runs[case]
    report = result.report()
    assert result.returncode in (0, 1)
    [error] = errors_of(report, "postgres")
    assert PG_CASES[case] in error["why"].lower(), error  # the cause, not a timeout: no wait
    assert_no_password(result, PG_SECRET)
    assert_host_still_audited(report)


@pytest.mark.integration
def test_postgres_killed_mid_collection(tmp_path: Path, private_pg: LocalCluster) -> None:
    """The collector is paused (tests/integration/pause_harness.py) after its third query has
    answered; the cluster is then stopped with -m immediate and the collector resumed: its next
    query meets a dead connection."""
    dsn = create_database(private_pg, "robust_kill")
    with psycopg.connect(dsn, autocommit=True) as conn:
        for index in range(50):
            conn.execute(f"CREATE TABLE t{index} (id int PRIMARY KEY, v text)")
    ready_read, ready_write = os.pipe()
    resume_read, resume_write = os.pipe()
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.pause_harness", str(ready_write), str(resume_read),
         "audit", "--sources", "host,postgres", "--format", "json", "--pg", dsn],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(tmp_path),
        pass_fds=(ready_write, resume_read))
    os.close(ready_write)
    os.close(resume_read)
    watcher = StderrWatcher(process)
    try:
        with os.fdopen(ready_read) as ready:
            assert ready.readline() == "paused\n", watcher.text()
        private_pg.stop("immediate")
        os.write(resume_write, b"x")
        result = finish(process, watcher)
    finally:
        os.close(resume_write)
        if process.poll() is None:
            process.kill()
        private_pg.start()
    report = result.report()
    assert result.returncode in (0, 1), result.stderr
    errors = errors_of(report, "postgres")
    assert errors and any("connection lost" in e["why"] or "terminat" in e["why"] for e in errors), errors
    assert_no_password(result, PG_PASSWORD)
    assert_host_still_audited(report)


# ------------------------------------------------------------------ 3. Redis


@pytest.mark.integration
def test_redis_wrong_password(tmp_path: Path, redis_factory: Callable[..., RedisServer]) -> None:
    server = redis_factory(password=REDIS_PASSWORD)
    wrong = "Wrong-Redis-Canary-5b5b"
    result = run_cli(tmp_path, "audit", "--sources", "host,redis", "--format", "json",
                     "--redis", f"redis://:{wrong}@127.0.0.1:{server.port}/0")
    report = result.report()
    assert result.returncode in (0, 1)
    errors = errors_of(report, "redis")
    assert any("password" in e["why"].lower() or "auth" in e["why"].lower() for e in errors), errors
    assert_no_password(result, wrong, REDIS_PASSWORD)
    assert_host_still_audited(report)


@pytest.mark.integration
def test_redis_killed_mid_collection(tmp_path: Path, redis_factory: Callable[..., RedisServer]) -> None:
    """DEBUG SLEEP blocks the single-threaded server; it is killed while the collector waits on it.

    The server is blocked before the audit starts: redis and host are read side by side, so once
    host is done the redis collector has been waiting on the blocked server (its timeout is 10 s).
    """
    server = redis_factory({"enable-debug-command": "yes"}, password=REDIS_PASSWORD)
    sleeper = threading.Thread(target=lambda: _debug_sleep(server), daemon=True)
    sleeper.start()  # the server now answers nobody for 30 s
    time.sleep(1.0)
    process, watcher = start_cli(tmp_path, "audit", "--sources", "host,redis", "--format", "json",
                                 "--redis", server.url)
    try:
        assert watcher.wait_for("✓ host", 60), watcher.text()
        # killed once the collector is connected and waiting, however long it took to get there
        assert wait_for_connection(process.pid, server.port, 60), watcher.text()
        server.process.send_signal(signal.SIGKILL)
        result = finish(process, watcher)
    finally:
        if process.poll() is None:
            process.kill()
    report = result.report()
    assert result.returncode in (0, 1), result.stderr
    assert errors_of(report, "redis"), report["collection_errors"]
    assert_no_password(result, REDIS_PASSWORD)
    assert_host_still_audited(report)


def wait_for_connection(pid: int, port: int, timeout: float) -> bool:
    """True once process `pid` has a TCP connection to 127.0.0.1:`port` (a polled condition, not a
    guess of how long start-up takes)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(psutil.Error):
            if any(c.raddr and c.raddr.port == port for c in psutil.Process(pid).net_connections("tcp")):
                return True
        time.sleep(0.1)
    return False


def _debug_sleep(server: RedisServer) -> None:
    with contextlib.suppress(Exception):  # the server is killed under it, on purpose
        server.client().execute_command("DEBUG", "SLEEP", "30")


# ------------------------------------------------------------------ 4. Files


def make_project(root: Path, name: str) -> Path:
    project = root / name
    shutil.copytree(EXAMPLE, project)
    (project / ".env.example").rename(project / ".env")
    return project


def _compose_is_a_directory(project: Path) -> None:
    (project / "compose.yml").unlink()
    (project / "compose.yml").mkdir()


def _compose_is_a_fifo(project: Path) -> None:
    (project / "compose.yml").unlink()
    os.mkfifo(project / "compose.yml")


def _malformed_yaml(project: Path) -> None:
    with (project / "compose.yml").open("a") as handle:
        handle.write("  broken:\n    image: [unclosed\n")


def _malformed_env(project: Path) -> None:
    with (project / ".env").open("a") as handle:
        handle.write("this line is not valid\nQUOTED=\"never closed\n")


def _missing_env_file(project: Path) -> None:
    compose = project / "compose.yml"
    compose.write_text(compose.read_text().replace("  worker:\n", "  worker:\n    env_file: [missing.env]\n"))


def _env_file_is_a_fifo(project: Path) -> None:
    compose = project / "compose.yml"
    compose.write_text(compose.read_text().replace("  worker:\n", "  worker:\n    env_file: [worker.env]\n"))
    os.mkfifo(project / "worker.env")


def _env_is_a_broken_symlink(project: Path) -> None:
    (project / ".env").unlink()
    (project / ".env").symlink_to(project / "gone" / ".env")


def _huge_env(project: Path) -> None:
    """2 MB of short lines (32,768): a parser that rescans the text per line never finishes."""
    line_count = 2 * 1024 * 1024 // 64
    with (project / ".env").open("a") as handle:
        handle.writelines(f"FILLER_{i}=value-{i:08d}-{'x' * 40}\n" for i in range(line_count))


# case: (how to break the project, the collection error's source, text in its `where`, text in `why`)
FILE_CASES: dict[str, tuple[Callable[[Path], None], str, str, str]] = {
    "compose-is-a-directory": (_compose_is_a_directory, "compose", "compose.yml", "a directory, not a"),
    "compose-is-a-fifo": (_compose_is_a_fifo, "compose", "compose.yml", "FIFO"),
    "malformed-yaml": (_malformed_yaml, "compose", "compose.yml:", "malformed YAML"),
    "malformed-env": (_malformed_env, "env", ".env:", "key cannot contain a space"),
    "missing-env-file": (_missing_env_file, "compose", "missing.env", "not found"),
    "env-file-is-a-fifo": (_env_file_is_a_fifo, "env", "worker.env", "FIFO"),
    "env-broken-symlink": (_env_is_a_broken_symlink, "env", ".env", "broken symlink"),
    "huge-env": (_huge_env, "", "", ""),
}
# What the intact example stack gives with `--sources compose,env,app`, by code.
BASELINE = "baseline"


@pytest.fixture(scope="module")
def file_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    """Every broken project audited, in this process."""
    root = tmp_path_factory.mktemp("projects")
    projects = {BASELINE: make_project(root, BASELINE)}
    for case, (breaks, *_rest) in FILE_CASES.items():
        projects[case] = make_project(root, case)
        breaks(projects[case])

    return {case: run_in_process(root / case, "audit", "--sources", "compose,env,app", "-p", str(project),
                                 "--format", "json") for case, project in projects.items()}


@pytest.mark.parametrize("case", list(FILE_CASES))
def test_broken_project_files_are_named_and_the_rest_is_audited(file_runs: dict[str, Run], case: str) -> None:
    _breaks, source, where, why = FILE_CASES[case]
    result = file_runs[case]
    report = result.report()
    # a file Compose itself would refuse is bad input: the run fails (README, exit codes)
    assert result.returncode in ((2,) if case == "malformed-yaml" else (0, 1)), result.stderr
    if source:
        named = [e for e in errors_of(report, source) if where in e["where"] and why in e["why"]]
        assert named, report["collection_errors"]
    else:
        # read to the end: pytest's timeout fails a run that never ends (a quadratic parser's)
        assert not errors_of(report, "env"), report["collection_errors"]
    codes = {f["code"] for f in report["findings"]}
    baseline = {f["code"] for f in file_runs[BASELINE].report()["findings"]}
    if case.startswith(("compose-is", "malformed-yaml")):
        # no compose model, yet the env files are still audited (SEC001: the .env is world-readable)
        assert "SEC001" in codes and "env" in report["facts"]
    else:
        lost = baseline - codes - {"SEC001", "SEC002", "SEC003"}  # these read the .env itself
        assert not lost, f"findings lost: {lost}"
        assert "compose" in report["facts"] and "app" in report["facts"]


# ------------------------------------------------------------------ 5. Facts snapshots


def _future(snapshot: dict[str, Any]) -> Any:
    return {**snapshot, "schema_version": 99}


def _wrong_types(snapshot: dict[str, Any]) -> Any:
    data = {**snapshot["data"], "postgres": {"settings": 5, "connections": []},
            "compose": {"projects": [{"name": "x", "services": 3}]}}
    data["host"] = {key: value for key, value in snapshot["data"]["host"].items()
                    if key != "memory_total_bytes"}
    return {**snapshot, "data": data}


SNAPSHOT_CASES: dict[str, tuple[Callable[[dict[str, Any]], Any] | str, str]] = {
    # case: (a transformation of a good snapshot, or raw text; what the error must say)
    "future-schema": (_future, "schema_version 99"),
    "truncated": ("", "cannot read facts snapshot"),
    "a-list": (lambda snapshot: [snapshot], "JSON object, not a list"),
    "data-not-objects": (lambda snapshot: {**snapshot, "data": {"host": None}}, "'data' must be"),
    "no-data": (lambda snapshot: {"schema_version": 1}, "'data' must be"),
}


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("snapshot")
    out = root / "facts.json"
    result = run_in_process(root, "collect", "--sources", "host", "--out", str(out))
    assert result.returncode == 0, result.stderr
    loaded: dict[str, Any] = json.loads(out.read_text())
    return loaded


@pytest.fixture(scope="module")
def snapshot_runs(snapshot: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    root = tmp_path_factory.mktemp("snapshots")
    runs: dict[str, tuple[str, ...]] = {}
    for case, (transform, _message) in SNAPSHOT_CASES.items():
        path = root / f"{case}.json"
        text = json.dumps(snapshot)
        path.write_text(text[: len(text) // 2] if isinstance(transform, str)
                        else json.dumps(transform(snapshot)))
        runs[case] = ("audit", "--facts", str(path), "--format", "json")
    path = root / "wrong-types.json"
    path.write_text(json.dumps(_wrong_types(snapshot)))
    runs["wrong-types"] = ("audit", "--facts", str(path), "--format", "json")
    return {case: run_in_process(root / case, *args) for case, args in runs.items()}


@pytest.mark.parametrize("case", list(SNAPSHOT_CASES))
def test_bad_facts_snapshots_are_usage_errors(snapshot_runs: dict[str, Run], case: str) -> None:
    result = snapshot_runs[case]
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    assert SNAPSHOT_CASES[case][1] in result.stderr


def test_facts_of_the_wrong_shape_skip_the_rules_that_fail(snapshot_runs: dict[str, Run]) -> None:
    result = snapshot_runs["wrong-types"]
    report = result.report()
    assert result.returncode in (0, 1)
    reasons = {s["code"]: s["reason"] for s in report["skipped"]}
    failed = {code for code, reason in reasons.items() if reason.startswith("rule failed:")}
    # a rule that needs memory_total_bytes or the postgres settings fails, and says so
    assert "SYS002" in failed and any(code.startswith("PG") for code in failed), reasons
    assert "memory_total_bytes" in reasons["SYS002"]
    # SYS001 reads only the mounts, which are intact: it still ran
    assert "SYS001" not in reasons


# ------------------------------------------------------------------ 7. killed while writing --out


def kill_while_writing(folder: Path, delay: float) -> str:
    """Start an audit writing folder/report.json, SIGKILL it after `delay` s; what is left there."""
    folder.mkdir()
    out = folder / "report.json"
    process = subprocess.Popen([sys.executable, "-m", "stackaudit", "audit", "--sources", "host",
                                "--format", "json", "--out", str(out)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=cli_env(folder))
    time.sleep(delay)
    process.send_signal(signal.SIGKILL)
    process.wait(30)
    leftovers = [p.name for p in folder.iterdir() if p.name not in ("report.json", "state")]
    assert all(name.startswith(".report.json.") for name in leftovers), leftovers  # temp files only
    if not out.exists():
        return "absent"
    assert json.loads(out.read_text())["schema_version"] == 1  # complete, never half
    return "complete"


def test_sigkill_never_leaves_a_partial_report(tmp_path: Path) -> None:
    rng = random.Random(20_260_101)
    # A kill at 0 s lands before the end on any machine, so the property is exercised whatever the
    # speed; the random delays probe the moment of the write.
    delays = [0.0] + [rng.uniform(0.3, 6.0) for _ in range(9)]
    with ThreadPoolExecutor(max_workers=5) as pool:
        outcomes = list(pool.map(lambda i: kill_while_writing(tmp_path / f"run{i}", delays[i]), range(10)))
    assert outcomes[0] == "absent" and set(outcomes) <= {"absent", "complete"}
