"""Shared fixtures: real PostgreSQL 15 and 18, Redis and a private Docker engine (see services.py).

- `pg15`, `pg18`: session-wide clusters (pg_stat_statements preloaded), as `LocalCluster`.
- `pg_cluster`: parametrized over both versions: a test using it runs on 15 and on 18.
- `pg_dsn`: a fresh database per test module on `pg_cluster`.
- `redis_factory`: start a Redis with the config a test needs; stopped after the test.
- `mariadb`: a session-wide MariaDB 10.11 (tests/mysql_server.py), root over TCP with a password.
- `pgbouncer_factory`: start Debian's PgBouncer (as a non-root user) with the [databases] and
  [pgbouncer] lines a test needs; stopped after the test.
- `docker_engine`: a private dockerd for the session (`.client`, `.make_image`, `.run_container`).
- `state_dir`: a temporary state directory (STACKAUDIT_STATE_DIR points at it).

A test that needs a service must be marked `integration` (`make unit` deselects those and must run
with no service at all). Two guards fail an unmarked test loudly instead of letting it start one:
it requests a fixture in SERVICE_FIXTURES, or it (or a fixture it set up) spawns a program in
SERVICE_PROGRAMS.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

# In-process CLI tests must not lower the test runner's own priority (and every service it starts
# afterwards); test_cli.py checks below_the_services() in a child with STACKAUDIT_NICE=1.
os.environ["STACKAUDIT_NICE"] = "0"

from stackaudit import redact
from stackaudit.localpg import LocalCluster
from tests.mysql_server import MariaDBServer, start_mariadb
from tests.services import (
    DockerEngine,
    PgBouncerServer,
    RedisServer,
    create_database,
    running_cluster,
    start_docker_engine,
    start_pgbouncer,
    start_redis,
)

# Fixtures (here and in the sub-folders' conftests) that are, or start, a real service.
SERVICE_FIXTURES = frozenset({
    "pg15", "pg18", "pg_cluster", "pg_dsn", "redis_factory", "pgbouncer_factory", "docker_engine", "mariadb",
    "browser",  # tests/browser/conftest.py: Chromium
})
# Programs that are servers, or need one of the Debian service packages (promtool is Prometheus').
SERVICE_PROGRAMS = frozenset({
    "postgres", "postmaster", "pg_ctl", "initdb", "redis-server", "dockerd", "containerd", "prometheus",
    "promtool", "alertmanager", "prometheus-alertmanager", "amtool", "chromium", "sshd", "weed", "rclone",
    "mariadbd", "mysqld",
    "mariadb-install-db", "mysql_install_db", "pgbouncer",
})
_running: list[pytest.Item | None] = []  # the test being set up or run; None while torn down


def _unmarked_failure(item: pytest.Item, what: str) -> str:
    return (f"{item.nodeid} is not marked integration but needs a service ({what}): add "
            "`pytestmark = pytest.mark.integration` to its module or @pytest.mark.integration to it")


# The unit files that cost most (in seconds, on one core), started first by `make unit`'s workers
# (pytest-xdist, a file per worker, in collection order: --no-loadscope-reorder) so that none of
# them is left for last while the other worker idles. An ordering only: a file missing here is
# still run.
SLOW_FIRST = (
    "tests/fleet/test_prometheus_role.py",  # ansible-playbook, twice, over four hosts (~17 s)
    "tests/monitor/test_watch.py",  # watchers and their check processes (~8 s)
    "tests/integration/test_robustness.py",  # audits killed at random moments (~6 s)
    "tests/test_cli.py",  # the canary's real processes, priorities
    "tests/monitor/test_check.py",
    "tests/test_cli_contract.py",
    "tests/web/test_serve.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if os.environ.get("PYTEST_XDIST_WORKER"):  # xdist's workers; a one-process run keeps its order
        rank = {path: index for index, path in enumerate(SLOW_FIRST)}
        items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    _running.append(item)
    try:
        yield
    finally:
        _running.pop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Iterator[None]:
    """A wider-scoped fixture is torn down in the teardown of whichever test ran last, marked or not:
    stopping a service there (pg_ctl stop) is not this test starting one."""
    _running.append(None)
    try:
        yield
    finally:
        _running.pop()


@pytest.hookimpl(tryfirst=True)  # before the fixtures are set up, so no service starts
def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("integration"):
        return
    wanted = sorted(SERVICE_FIXTURES & set(getattr(item, "fixturenames", ())))
    if wanted:
        pytest.fail(_unmarked_failure(item, f"fixtures {', '.join(wanted)}"), pytrace=False)


WRAPPERS = frozenset({"runuser", "su", "sudo", "setpriv", "env", "setsid", "nohup", "timeout"})


def _programs(args: Any) -> set[str]:
    """The program a Popen runs, and behind a wrapper (runuser -u x -- pg_ctl ...) the one it runs."""
    if isinstance(args, (str, bytes, os.PathLike)):
        words = os.fsdecode(args).split()
    else:
        words = [os.fsdecode(arg) for arg in args]
    names = [os.path.basename(word) for word in words]
    if names and names[0] in WRAPPERS:
        return set(names) - {"postgres"}  # behind runuser, "postgres" is a user name, not the server
    return set(names[:1])


def _refuse_services_outside_integration(event: str, args: tuple[Any, ...]) -> None:
    """An audit hook: a test not marked integration must not spawn a server (see module doc)."""
    if event != "subprocess.Popen" or not _running or _running[-1] is None:
        return
    item = _running[-1]
    started = sorted(_programs(args[1]) & SERVICE_PROGRAMS)
    if started and not item.get_closest_marker("integration"):
        pytest.fail(_unmarked_failure(item, f"it starts {', '.join(started)}"), pytrace=False)


sys.addaudithook(_refuse_services_outside_integration)


Server = TypeVar("Server", RedisServer, PgBouncerServer)


def _stopped_after(start: Callable[..., Server]) -> Iterator[Callable[..., Server]]:
    """A factory fixture's body: `start` as the test calls it; every server it made is stopped."""
    started: list[Server] = []

    def run(*args: Any, **kwargs: Any) -> Server:
        server = start(*args, **kwargs)
        started.append(server)
        return server

    yield run
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def pg15() -> Iterator[LocalCluster]:
    with running_cluster(15) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def pg18() -> Iterator[LocalCluster]:
    with running_cluster(18) as cluster:
        yield cluster


@pytest.fixture(scope="session", params=[15, 18], ids=["pg15", "pg18"])
def pg_cluster(request: pytest.FixtureRequest) -> LocalCluster:
    cluster: LocalCluster = request.getfixturevalue(f"pg{request.param}")
    return cluster


@pytest.fixture(scope="module")
def pg_dsn(pg_cluster: LocalCluster, request: pytest.FixtureRequest) -> str:
    name = re.sub(r"\W", "_", request.module.__name__.rsplit(".", 1)[-1])[:50]
    return create_database(pg_cluster, f"t_{name}")


@pytest.fixture
def redis_factory() -> Iterator[Callable[..., RedisServer]]:
    yield from _stopped_after(start_redis)


@pytest.fixture
def pgbouncer_factory() -> Iterator[Callable[..., PgBouncerServer]]:
    yield from _stopped_after(start_pgbouncer)


@pytest.fixture(scope="session")
def mariadb() -> Iterator[MariaDBServer]:
    """A MariaDB 10.11 on loopback for the session; each test makes the state it needs."""
    server = start_mariadb()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[DockerEngine]:
    engine = start_docker_engine()
    yield engine
    engine.stop()


@pytest.fixture(autouse=True)
def _forget_remembered_secrets() -> Iterator[None]:
    """Each CLI run is a new process; in-process tests must not inherit each other's secrets."""
    yield
    redact.forget_all()


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "state"
    path.mkdir()
    monkeypatch.setenv("STACKAUDIT_STATE_DIR", str(path))
    return path
