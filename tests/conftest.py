"""Shared fixtures: real PostgreSQL 15 and 18, Redis and a private Docker engine (see services.py).

- `pg15`, `pg18`: session-wide clusters (pg_stat_statements preloaded), as `LocalCluster`.
- `pg_cluster`: parametrized over both versions: a test using it runs on 15 and on 18.
- `pg_dsn`: a fresh database per test module on `pg_cluster`.
- `redis_factory`: start a Redis with the config a test needs; stopped after the test.
- `pgbouncer_factory`: start Debian's PgBouncer (as a non-root user) with the [databases] and
  [pgbouncer] lines a test needs; stopped after the test.
- `docker_engine`: a private dockerd for the session (`.client`, `.make_image`, `.run_container`).
- `state_dir`: a temporary state directory (STACKAUDIT_STATE_DIR points at it).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from stackaudit import redact
from stackaudit.localpg import LocalCluster
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
