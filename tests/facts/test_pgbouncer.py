"""The pgbouncer collector against Debian's PgBouncer in front of a real PostgreSQL 15: a pool of
one server connection, one client holding it and two waiting; PGB001 and PGB002 on what it reads."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from stackaudit.config import Settings
from stackaudit.facts import CollectContext, Facts, collect
from stackaudit.facts import pgbouncer as collector
from stackaudit.localpg import LocalCluster
from stackaudit.model import Severity
from stackaudit.rules import evaluate
from tests.services import PgBouncerServer, create_database
from tests.test_cli import run as run_cli

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def app_db(pg15: LocalCluster) -> str:
    create_database(pg15, "pgb_app")
    return "pgb_app"


@pytest.fixture
def bouncer_factory(pgbouncer_factory: Any) -> Any:
    """start(databases, **[pgbouncer] settings)."""
    return lambda databases, **settings: pgbouncer_factory(databases, settings)


def _db_line(cluster: LocalCluster, dbname: str, **extra: str) -> str:
    return " ".join([f"host=127.0.0.1 port={cluster.port} dbname={dbname} user=postgres",
                     *(f"{k}={v}" for k, v in extra.items())])


def _facts(server: PgBouncerServer, sources: tuple[str, ...] = ("pgbouncer",),
           pg_dsn: str | None = None, **overrides: Any) -> Facts:
    options: dict[str, Any] = {"timeout_seconds": 5.0, **overrides}
    settings = Settings(sources=sources, pgbouncer_dsn=server.dsn("pgbouncer", "admin"), pg_dsn=pg_dsn,
                        storage_probe=False, **options)
    return collect(settings)


def _waiting(server: PgBouncerServer) -> int:
    with psycopg.connect(server.dsn("pgbouncer", "admin"), autocommit=True,
                         cursor_factory=psycopg.ClientCursor) as conn:
        rows = conn.execute("SHOW POOLS").fetchall()
    return sum(int(r[3]) for r in rows if r[0] != "pgbouncer")  # cl_waiting


@pytest.fixture
def three_clients_on_one_connection(pg15: LocalCluster, app_db: str,
                                    bouncer_factory: Any) -> Iterator[PgBouncerServer]:
    """pool_size 1, session pooling: the first client holds the server connection, two wait."""
    server = bouncer_factory({"app": _db_line(pg15, app_db, pool_size="1")}, default_pool_size="1",
                             query_wait_timeout="300")
    holder = psycopg.connect(server.dsn("app", "postgres"), autocommit=True)
    holder.execute("SELECT 1")
    done: list[int] = []

    def wait_for_a_connection() -> None:
        with psycopg.connect(server.dsn("app", "postgres"), autocommit=True) as conn:
            done.append(conn.execute("SELECT 1").fetchone()[0])  # type: ignore[index]

    threads = [threading.Thread(target=wait_for_a_connection) for _ in range(2)]
    for thread in threads:
        thread.start()
    for _ in range(600):  # bounded: the two clients reach PgBouncer's wait queue
        if _waiting(server) == 2:
            break
        time.sleep(0.05)
    assert _waiting(server) == 2
    yield server
    holder.close()
    for thread in threads:
        thread.join(30)
    assert done == [1, 1]  # both got the connection once the holder left


def test_reads_pools_databases_config_and_stats_live(three_clients_on_one_connection: PgBouncerServer,
                                                     app_db: str) -> None:
    server = three_clients_on_one_connection
    facts = _facts(server)
    assert facts.errors == []
    instance = facts["pgbouncer"]["instances"][0]
    assert instance["version"].startswith("1.")
    assert instance["target"] == f"127.0.0.1:{server.port}" and instance["origin"] == "--pgbouncer"
    pool = next(p for p in instance["pools"] if p["database"] == "app")
    assert (pool["user"], pool["cl_active"], pool["cl_waiting"], pool["sv_active"]) == ("postgres", 1, 2, 1)
    assert pool["maxwait_seconds"] >= 0
    assert [d["name"] for d in instance["databases"]] == ["app"]  # the console itself is left out
    assert instance["databases"][0]["pool_size"] == 1 and instance["databases"][0]["database"] == app_db
    assert instance["config"]["default_pool_size"] == 1 and instance["config"]["pool_mode"] == "session"
    assert "auth_file" not in instance["config"]
    assert instance["stats"][0]["database"] == "app"
    assert (instance["server_connections"], instance["clients_waiting"]) == (1, 2)
    text = json.dumps(facts.to_json())
    assert all(password not in text for password in server.passwords.values())


def test_pgb001_fires_on_a_live_pool_with_two_clients_waiting(
        three_clients_on_one_connection: PgBouncerServer) -> None:
    facts = _facts(three_clients_on_one_connection)
    findings, _ = evaluate(facts, Settings(select=("PGB001",)))
    assert [f.code for f in findings] == ["PGB001"]
    assert "pool app/postgres (database app) has 2 clients waiting" in findings[0].message
    assert findings[0].subject.endswith("/app/postgres")
    assert "pool_mode = transaction" in (findings[0].recommendation.action or "")


def test_audit_cli_with_pgbouncer_reports_pgb001_in_json(
        three_clients_on_one_connection: PgBouncerServer) -> None:
    server = three_clients_on_one_connection
    result = run_cli("audit", "--sources", "pgbouncer", "--pgbouncer", server.dsn("pgbouncer", "admin"),
                     "--format", "json", "--fail-on", "critical")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert [f["code"] for f in report["findings"]] == ["PGB001"]
    assert report["collection_errors"] == []
    assert all(p not in result.stdout + result.stderr for p in server.passwords.values())


def test_pgb001_silent_when_nobody_waits(pg15: LocalCluster, app_db: str, bouncer_factory: Any) -> None:
    server = bouncer_factory({"app": _db_line(pg15, app_db, pool_size="1")})
    with psycopg.connect(server.dsn("app", "postgres"), autocommit=True) as conn:
        conn.execute("SELECT 1")
        findings, _ = evaluate(_facts(server), Settings(select=("PGB001",)))
    assert findings == []


def test_pgb002_fires_when_live_pools_outgrow_max_connections(pg15: LocalCluster, app_db: str,
                                                              bouncer_factory: Any) -> None:
    server = bouncer_factory({"app": _db_line(pg15, app_db, pool_size="60"),
                              "reports": _db_line(pg15, app_db, pool_size="40", reserve_pool="5")})
    facts = _facts(server, ("pgbouncer", "postgres"), pg_dsn=pg15.dsn(app_db))
    findings, skipped = evaluate(facts, Settings(select=("PGB002",)))
    assert skipped == []
    assert [f.code for f in findings] == ["PGB002"]
    assert findings[0].severity == Severity.CRITICAL  # 105 > 97 even before other clients
    assert "can open 105 server connections" in findings[0].message
    assert "max_connections 100 - superuser_reserved_connections 3 = 97" in findings[0].message


def test_pgb002_silent_when_the_pools_fit(pg15: LocalCluster, app_db: str, bouncer_factory: Any) -> None:
    server = bouncer_factory({"app": _db_line(pg15, app_db, pool_size="10")})
    facts = _facts(server, ("pgbouncer", "postgres"), pg_dsn=pg15.dsn(app_db))
    findings, skipped = evaluate(facts, Settings(select=("PGB002",)))
    assert (findings, skipped) == ([], [])


def test_a_user_that_is_not_admin_or_stats_gets_a_clear_reason(pg15: LocalCluster, app_db: str,
                                                               bouncer_factory: Any) -> None:
    server = bouncer_factory({"app": _db_line(pg15, app_db)})
    facts = collect(Settings(sources=("pgbouncer",), pgbouncer_dsn=server.dsn("pgbouncer", "postgres")))
    assert not facts.has("pgbouncer")
    why = facts.why_missing("pgbouncer")
    assert "refused the login" in why and "admin_users or stats_users" in why
    assert server.passwords["postgres"] not in why


def test_a_stopped_pgbouncer_times_out_instead_of_hanging(pg15: LocalCluster, app_db: str,
                                                         bouncer_factory: Any) -> None:
    server = bouncer_factory({"app": _db_line(pg15, app_db)})
    pid = int((server.directory / "pgbouncer.pid").read_text())
    os.kill(pid, signal.SIGSTOP)  # accepts TCP (the kernel's backlog) but never answers
    try:
        facts = _facts(server, timeout_seconds=1)
    finally:
        os.kill(pid, signal.SIGCONT)
    assert not facts.has("pgbouncer")
    assert "did not answer in time" in facts.why_missing("pgbouncer")


def test_found_from_the_compose_stack_with_the_image_user(pg15: LocalCluster, app_db: str,
                                                          bouncer_factory: Any) -> None:
    """A pgbouncer service publishing its port: logged in as the DB_USER its environment names
    (edoburu/pgbouncer writes that user into its auth file)."""
    server = bouncer_factory({"app": _db_line(pg15, app_db)})
    env = {"DB_USER": "admin", "DB_PASSWORD": server.passwords["admin"]}
    service = {"name": "pgbouncer", "image": "edoburu/pgbouncer:v1.18.0",
               "ports": [{"target": 6432, "published": str(server.port), "host_ip": "127.0.0.1"}],
               "environment": env}
    facts = Facts(data={"compose": {"projects": [{"name": "shop", "services": {"pgbouncer": service}}]},
                      "app": {"poolers": [{"project": "shop", "service": "pgbouncer", "listen_port": 6432}]}})
    ctx = CollectContext(settings=Settings(sources=("pgbouncer",)), facts=facts,
                         private={"compose_env": {"shop": {"pgbouncer": env}}})
    data = collector.collect(ctx)
    instance = data["instances"][0]
    assert (instance["project"], instance["service"], instance["origin"]) == ("shop", "pgbouncer", "compose")
    assert [d["name"] for d in instance["databases"]] == ["app"]
    assert ctx.facts.errors == []


def test_a_stack_pgbouncer_without_port_or_container_says_so() -> None:
    service = {"name": "pgbouncer", "image": "bitnami/pgbouncer:1.23.1"}
    facts = Facts(data={"compose": {"projects": [{"name": "shop", "services": {"pgbouncer": service}}]}})
    ctx = CollectContext(settings=Settings(sources=("pgbouncer",)), facts=facts, source="pgbouncer")
    with pytest.raises(collector.SourceUnavailable, match=r"cannot be reached .* give --pgbouncer DSN"):
        collector.collect(ctx)
    assert [e.where for e in ctx.facts.errors] == ["pgbouncer shop/pgbouncer"]
    assert "no published port and no running container" in ctx.facts.errors[0].why


def test_login_candidates_from_the_image_and_the_apps_urls() -> None:
    service_env = {"POSTGRESQL_USERNAME": "stats", "POSTGRESQL_PASSWORD": "pw1"}
    project_env = {"web": {"DATABASE_URL": "postgresql://app:pw2@pgbouncer:6432/shop"},
                   "worker": {"DATABASE_URL": "postgresql://app:pw2@pgbouncer:6432/shop"},
                   "other": {"DATABASE_URL": "postgresql://x:y@db:5432/shop"}}
    assert collector.login_candidates(service_env, project_env, "pgbouncer") == [("stats", "pw1"),
                                                                                  ("app", "pw2")]
    assert collector.login_candidates({}, {}, "pgbouncer") == [("pgbouncer", None)]


def test_parsers_on_recorded_rows() -> None:
    assert collector.parse_version([{"version": "PgBouncer 1.23.1"}]) == "1.23.1"
    pools = collector.parse_pools([
        {"database": "app", "user": "u", "cl_active": 3, "cl_waiting": 1, "sv_active": 2, "maxwait": 2,
         "maxwait_us": 500000, "pool_mode": "transaction"},
        {"database": "pgbouncer", "user": "pgbouncer", "cl_active": 1}])
    assert [(p["database"], p["cl_waiting"], p["maxwait_seconds"]) for p in pools] == [("app", 1, 2.5)]
    config = collector.parse_config([{"key": "default_pool_size", "value": "25"},
                                     {"key": "auth_query", "value": "SELECT ..."}])
    assert config == {"default_pool_size": 25}
    assert Path(collector.__file__).name == "pgbouncer.py"
