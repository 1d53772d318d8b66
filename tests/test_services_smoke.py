"""The fixtures themselves: each service really starts and answers."""

import psycopg
import pytest

from stackaudit.localpg import LocalCluster
from tests.services import DockerEngine, RedisServer

pytestmark = pytest.mark.integration


def test_postgres_cluster_answers_with_its_version(pg_cluster: LocalCluster, pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn) as conn:
        version = conn.execute("SHOW server_version_num").fetchone()[0]
        libs = conn.execute("SHOW shared_preload_libraries").fetchone()[0]
    assert int(version) // 10000 == pg_cluster.major_version()
    assert "pg_stat_statements" in libs


def test_redis_factory_applies_config(redis_factory) -> None:  # type: ignore[no-untyped-def]
    server: RedisServer = redis_factory({"maxmemory": "64mb"}, password="s3cret-canary")
    assert server.client().config_get("maxmemory")["maxmemory"] == str(64 * 1024 * 1024)


def test_docker_engine_imports_and_runs(docker_engine: DockerEngine) -> None:
    image_id = docker_engine.make_image("smoke/app", "v1")
    container = docker_engine.run_container("smoke/app:v1", "smoke1")
    container.reload()
    assert container.status == "running"
    assert container.image.id == image_id
    container.remove(force=True)
