"""images.classify_service / classify_project: a service's kind from all its evidence (issue 18.2)."""

from __future__ import annotations

from typing import Any

import pytest

from stackaudit.images import classify_project, classify_service, service_kind, service_product


def svc(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, **fields}


@pytest.mark.parametrize(("service", "product"), [
    (svc("db", image="pgautoupgrade/pgautoupgrade:16-alpine"), "postgres"),
    (svc("db", image="postgis/postgis:16-3.4"), "postgres"),
    (svc("db", image="timescale/timescaledb-ha:pg16"), "postgres"),
    (svc("db", image="registry.example.com/library/postgres:16"), "postgres"),
    (svc("db", image="ghcr.io/cloudnative-pg/postgresql:16"), "postgres"),
    (svc("database", build={"context": "."}, command=["postgres", "-c", "work_mem=8MB"]), "postgres"),
    (svc("store", build=True, healthcheck={"test": ["CMD-SHELL", "pg_isready -U app"]},
         environment={"PGDATA": "/data"}), "postgres"),
    (svc("redis", image="redis/redis-stack:7.2.0-v10"), "redis"),
    (svc("kv", build=True, command=["redis-server", "--loadmodule", "/opt/rejson.so"]), "redis"),
    (svc("kv", build=True, command="sh -c 'redis-server --requirepass x'",
         healthcheck={"test": ["CMD", "redis-cli", "ping"]}), "redis"),
    (svc("mariadb", image="lscr.io/linuxserver/mariadb:11"), "mysql"),
    (svc("redis", build=True), "redis"),  # a local build named after the datastore
    (svc("database", image="tensorchord/pgvecto-rs:pg14-v0.2.0"), "postgres"),
    (svc("coordinator", image="citusdata/citus:12.1"), "postgres"),
    (svc("graph", image="apache/age:release_PG16_1.5.0"), "postgres"),
    (svc("database", image="ghcr.io/immich-app/postgres:14-vectorchord0.4.3-pgvectors0.2.0"), "postgres"),
    (svc("database", image="ghcr.io/acme/pg-custom:1", command=["postgres", "-c", "x=1"],
         healthcheck={"test": ["CMD-SHELL", "pg_isready"]}), "postgres"),
    (svc("redis", image="redis:7", command="redis-server --save 60 1",
         healthcheck={"test": ["CMD", "redis-cli", "ping"]}), "redis"),  # the probe is no client
])
def test_derived_images_and_builds_are_what_they_run(service: dict[str, Any], product: str) -> None:
    assert classify_service(service).product == product
    assert service_product(service) == product


@pytest.mark.parametrize("service", [
    svc("web", build=True, command=["bundle", "exec", "puma"], environment={"REDIS_URL": "redis://redis"}),
    svc("pgadmin", image="dpage/pgadmin4:8", ports=[{"target": 80}]),
    svc("exporter", image="prometheuscommunity/postgres-exporter", environment={"DATA_SOURCE_NAME": "x"}),
    svc("redis-exporter", image="oliver006/redis_exporter"),
    svc("nextcloud", image="nextcloud:29", environment={
        "POSTGRES_DB": "nc", "POSTGRES_USER": "nc", "POSTGRES_PASSWORD": "***", "POSTGRES_HOST": "db"}),
    svc("app", image="ghcr.io/acme/app:1", environment={"POSTGRES_INITDB_ARGS": "-c x=1"}),
    svc("pooler", image="edoburu/pgbouncer:1.22", ports=[{"target": 5432}]),
    svc("commander", image="rediscommander/redis-commander"),
    svc("backup", image="prodrigestivill/postgres-backup-local"),
    svc("dump", image="postgres:16", command=["sh", "-c", "while true; do pg_dumpall -h db > /b/all.sql; "
                                              "sleep 86400; done"]),
    svc("redis-init", image="redis:7", command="redis-cli -h redis SET ready 1"),
    svc("api", image="postgrest/postgrest:v12", ports=[{"target": 3000}]),
    svc("mongo-express", image="mongo-express:1"),
    svc("operator", image="ghcr.io/zalando/postgres-operator:v1.12"),
])
def test_clients_exporters_and_admin_uis_are_not_datastores(service: dict[str, Any]) -> None:
    assert service_product(service) is None, classify_service(service)


def test_kinds_of_processes() -> None:
    assert classify_service(svc("web", build=True, command="bundle exec puma")).kind == "app_server"
    celery = svc("jobs", build=True, command=["celery", "-A", "app", "worker"])
    assert classify_service(celery).kind == "worker"
    assert classify_service(svc("grafana", image="grafana/grafana:11")).kind == "monitoring"
    assert classify_service(svc("proxy", image="traefik:v3")).kind == "proxy"
    assert classify_service(svc("pg", image="postgres:16")).kind == "database"


def test_a_redis_is_a_queue_when_a_worker_or_a_queue_variable_names_it() -> None:
    services = {
        "redis": svc("redis", image="redis:7"),
        "cache": svc("cache", image="valkey/valkey:8"),
        "worker": svc("worker", build=True, command="bundle exec sidekiq",
                      environment={"REDIS_URL": "redis://redis:6379/0", "REDIS_CACHE_URL": "redis://cache/1"}),
    }
    kinds = classify_project(services)
    assert (kinds["redis"].kind, kinds["redis"].product) == ("queue", "redis")
    assert "job queue of worker (REDIS_URL)" in kinds["redis"].evidence
    assert kinds["cache"].kind == "cache"  # a cache variable, even from a worker
    broker = classify_project({"r": svc("r", image="redis"), "api": svc("api", build=True, environment={
        "CELERY_BROKER_URL": "redis://:pw@r:6379/0"})})
    assert broker["r"].kind == "queue"
    by_host = classify_project({"cache": svc("cache", image="redis"), "jobs": svc(
        "jobs", build=True, command="celery -A app worker", environment={"REDIS_HOST": "cache"})})
    assert by_host["cache"].kind == "queue"


def test_the_collectors_stamp_wins_over_a_new_guess() -> None:
    stamped = svc("thing", image="alpine", kind="database", product="postgres",
                  kind_evidence=["command runs postgres"])
    assert service_kind(stamped).product == "postgres" and service_product(stamped) == "postgres"
