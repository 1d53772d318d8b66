"""App-server facts: the config parsers, the compose corpus (Rails like the reference, Django +
Celery, several Sidekiq services, anchors and env files), and the live cross-check against real
PostgreSQL sessions."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import psycopg
import pytest

from stackaudit.config import Settings
from stackaudit.derive import app as derive_app
from stackaudit.derive import derive
from stackaudit.facts import CollectContext, Facts, SourceUnavailable
from stackaudit.facts import app as app_source
from stackaudit.facts import compose as compose_source
from stackaudit.facts.appconfig import (
    eval_ruby,
    parse_database_yml,
    parse_gunicorn_conf,
    parse_puma_rb,
    parse_sidekiq_yml,
    split_commands,
)

CORPUS = Path(__file__).parent / "app_corpus"


def collect_project(directory: Path, cpu_count: int = 4) -> tuple[dict[str, Any], CollectContext]:
    ctx = CollectContext(settings=Settings(project_dirs=(directory.resolve(),)), facts=Facts())
    ctx.source = "compose"
    ctx.facts.data["compose"] = compose_source.collect(ctx)
    ctx.facts.data["host"] = {"cpu_count": cpu_count, "cpu_limit_cores": None}
    ctx.source = "app"
    return app_source.collect(ctx), ctx


def connections_at_most(data: dict[str, Any]) -> int:
    """What the derive step adds up for the report's app summary (derive/app.py)."""
    return derive(Facts(data={"app": data})).connection_summary["db_connections_at_most"]


def by_service(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["service"]: p for p in data["processes"]}


def origin(proc: dict[str, Any], field: str) -> str:
    return next(e["from"] for e in proc["evidence"] if e["field"] == field)


# --- parsers -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("expr", "env", "value", "origin_part"), [
    ('ENV.fetch("WEB_CONCURRENCY") { 2 }', {"WEB_CONCURRENCY": "4"}, "4", "env WEB_CONCURRENCY=4"),
    ('ENV.fetch("WEB_CONCURRENCY") { 2 }', {}, 2, "env WEB_CONCURRENCY unset, default 2"),
    ('ENV.fetch("RAILS_MAX_THREADS", 3)', {}, 3, "default 3"),
    ('Integer(ENV["WEB_CONCURRENCY"] || 2)', {}, 2, "unset, default 2"),
    ('ENV.fetch("DB_POOL") { ENV.fetch("RAILS_MAX_THREADS") { 5 } }', {"RAILS_MAX_THREADS": "8"}, "8",
     "env DB_POOL unset, env RAILS_MAX_THREADS=8"),
    ('ENV["SIDEKIQ_CONCURRENCY"].to_i', {"SIDEKIQ_CONCURRENCY": "12"}, 12, "SIDEKIQ_CONCURRENCY=12"),
])
def test_eval_ruby_reads_the_environment_with_defaults(expr: str, env: dict[str, str], value: Any,
                                                       origin_part: str) -> None:
    resolved = eval_ruby(expr, env)
    assert resolved.value == value
    assert origin_part in resolved.origin


def test_eval_ruby_refuses_what_it_cannot_evaluate() -> None:
    with pytest.raises(ValueError):
        eval_ruby("Etc.nprocessors", {})


def test_puma_rb_of_rails_72_defaults_to_3_threads_and_leaves_workers_to_puma() -> None:
    text = ('threads_count = ENV.fetch("RAILS_MAX_THREADS", 3)\n'
            "threads threads_count, threads_count\n"
            'port ENV.fetch("PORT", 3000)\n'
            'plugin :tmp_restart\n')
    parsed = parse_puma_rb(text, {})
    assert parsed.workers is None
    assert parsed.max_threads is not None and parsed.max_threads.value == 3
    assert parsed.max_threads.origin.startswith("config/puma.rb:2 (")


def test_database_yml_multi_database_and_rails_81_max_connections() -> None:
    text = ("production:\n  primary:\n    adapter: postgresql\n"
            "    max_connections: <%= ENV.fetch(\"RAILS_MAX_THREADS\") { 5 } %>\n"
            "  cache:\n    adapter: postgresql\n    pool: 2\n")
    resolved = parse_database_yml(text, {"RAILS_MAX_THREADS": "7"})
    assert resolved is not None and resolved.value == "7"
    assert "config/database.yml:4" in resolved.origin


def test_database_yml_without_pool_returns_none() -> None:
    assert parse_database_yml("production:\n  adapter: postgresql\n", {}) is None


def test_sidekiq_yml_environment_section_wins() -> None:
    resolved = parse_sidekiq_yml("---\n:concurrency: 5\nproduction:\n  :concurrency: 20\n", {})
    assert resolved is not None and resolved.value == 20
    assert "config/sidekiq.yml:4" in resolved.origin


def test_gunicorn_conf_evaluates_cpu_count_without_running_code() -> None:
    conf = parse_gunicorn_conf("import multiprocessing\nworkers = multiprocessing.cpu_count() * 2 + 1\n"
                               "threads = 4\nbind = '0.0.0.0:8000'\n", {}, cpu_count=4)
    assert conf["workers"].value == 9 and conf["threads"].value == 4
    assert "cpu_count()=4" in conf["workers"].origin


def test_split_commands_unwraps_sh_c_and_chains() -> None:
    segments = split_commands(["sh", "-c", "bin/rails db:prepare && exec bundle exec puma -C config/puma.rb"])
    assert segments[-1][-3:] == ["puma", "-C", "config/puma.rb"]


# --- compose corpus -----------------------------------------------------------------------------

def test_rails_reference_stack_from_compose_anchors_env_file_and_mounted_configs() -> None:
    data, ctx = collect_project(CORPUS / "rails_reference")
    assert ctx.facts.errors == []
    procs = by_service(data)
    assert set(procs) == {"web", "worker"}
    web, worker = procs["web"], procs["worker"]
    assert (web["kind"], web["role"], web["processes"], web["threads"], web["db_pool"]) == \
        ("puma", "web", 4, 8, 52)
    assert origin(web, "workers") == "config/puma.rb:9 (env WEB_CONCURRENCY=4)"
    assert origin(web, "threads") == "config/puma.rb:4 (env RAILS_MAX_THREADS=8)"
    assert origin(web, "db_pool") == "config/database.yml:5 (env DB_POOL=52)"
    assert any("no command" in n for n in web["notes"])
    assert (worker["kind"], worker["role"], worker["concurrency"], worker["db_pool"]) == \
        ("sidekiq", "worker", 15, 52)
    assert origin(worker, "concurrency") == "config/sidekiq.yml:1 (env SIDEKIQ_CONCURRENCY=15)"
    text = json.dumps(data)
    assert "correct-horse-battery" not in text and "3f1c0a9e8b7d" not in text


def test_django_celery_gunicorn_rq() -> None:
    data, ctx = collect_project(CORPUS / "django_celery", cpu_count=4)
    assert ctx.facts.errors == []
    procs = by_service(data)
    assert "beat" not in procs  # celery beat runs no jobs
    web = procs["web"]
    assert (web["kind"], web["framework"], web["processes"], web["threads"]) == ("gunicorn", "django", 3, 4)
    assert origin(web, "workers") == "gunicorn.conf.py:5 (env GUNICORN_WORKERS=3)"
    assert origin(web, "threads") == "command flag --threads 4"
    assert web["conn_max_age"] == "60"
    celery = procs["celery"]
    assert (celery["replicas"], celery["processes"], celery["threads"], celery["pool_type"]) == \
        (2, 6, 1, "prefork")
    io = procs["celery-io"]
    assert (io["processes"], io["threads"], io["pool_type"]) == (1, 50, "gevent")
    rq = procs["rq"]
    assert (rq["kind"], rq["processes"], rq["threads"]) == ("rq", 3, 1)
    assert "s3cretpw" not in json.dumps(data)


def test_several_sidekiq_services_with_replicas_and_url_pool() -> None:
    data, ctx = collect_project(CORPUS / "multi_sidekiq")
    assert ctx.facts.errors == []
    procs = by_service(data)
    default, mailers, web = procs["sidekiq-default"], procs["sidekiq-mailers"], procs["web"]
    assert (default["replicas"], default["concurrency"], default["db_pool"]) == (2, 16, 5)
    assert "generated database.yml default" in origin(default, "db_pool")
    assert (mailers["concurrency"], mailers["db_pool"], mailers["pool_source"]) == (4, 10, "DATABASE_URL")
    # ./bin/thrust ./bin/rails server
    assert (web["kind"], web["processes"], web["threads"]) == ("puma", 1, 5)


def test_malformed_config_file_is_a_collection_error_not_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "database.yml").write_text("production: [unclosed\n")
    (tmp_path / "compose.yml").write_text(
        "services:\n  web:\n    image: app\n    command: bundle exec puma\n"
        "    environment: {RAILS_ENV: production, DATABASE_URL: postgres://db/app}\n"
        "    volumes: ['./config:/app/config:ro']\n"
        "  ok:\n    image: app\n    command: bundle exec sidekiq -c 3\n"
        "    environment: {DATABASE_URL: postgres://db/app}\n")
    data, ctx = collect_project(tmp_path)
    assert [p["service"] for p in data["processes"]] == ["ok"]
    assert len(ctx.facts.errors) == 1
    assert "config/database.yml" in ctx.facts.errors[0].why


def test_no_compose_project_makes_the_source_unavailable() -> None:
    ctx = CollectContext(settings=Settings(), facts=Facts())
    with pytest.raises(SourceUnavailable, match="no compose project"):
        app_source.collect(ctx)


# --- live cross-check against PostgreSQL sessions ---------------------------------------------

@pytest.fixture
def sessions(pg_dsn: str) -> Iterator[dict[str, int]]:
    """Real sessions named as ruby-pg names Puma and Sidekiq processes, plus an admin one."""
    names = {"puma: cluster worker 0: 1 [app]": 2, "puma: cluster worker 1: 1 [app]": 1,
             "sidekiq 7.3.9 app [0 of 15 busy]": 2, "psql": 1}
    with ExitStack() as stack:
        for name, count in names.items():
            for _ in range(count):
                stack.enter_context(psycopg.connect(pg_dsn, application_name=name))
        yield names


@pytest.mark.integration
def test_live_cross_check_on_real_sessions(pg_dsn: str, sessions: dict[str, int]) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT application_name, count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' "
            "AND pid <> pg_backend_pid() AND datname = current_database() GROUP BY 1").fetchall()
    postgres = {"connections": {"total": sum(n for _, n in rows),
                                "by_application": {name or "(none)": n for name, n in rows}}}
    processes, _ = collect_project(CORPUS / "rails_reference")
    # a second Sidekiq that is not running, to show the "no live session" note
    processes["processes"].append({**processes["processes"][1], "service": "sidekiq-low",
                                   "kind": "unknown"})
    facts = Facts(data={"app": processes, "postgres": postgres})
    live = {row["service"] or row["kind"]: row for row in derive_app.live_connections(facts)}
    assert (live["web"]["live"], live["web"]["estimated_max"], live["web"]["note"]) == (3, 32, None)
    assert live["web"]["matched_by"] == "application_name"
    assert (live["worker"]["live"], live["worker"]["estimated_max"]) == (2, 15)
    assert "no live session matched" in live["sidekiq-low"]["note"]
    assert live["unattributed"]["live"] == 1 and live["unattributed"]["applications"] == ["psql"]


@pytest.mark.integration
def test_live_count_above_the_estimate_is_noted(pg_dsn: str, sessions: dict[str, int]) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        rows = conn.execute("SELECT application_name, count(*) FROM pg_stat_activity "
                            "WHERE datname = current_database() AND application_name LIKE 'puma%' "
                            "GROUP BY 1").fetchall()
    postgres = {"connections": {"by_application": dict(rows)}}
    single = {"project": "p", "service": "web", "kind": "puma", "role": "web", "processes": 1,
              "threads": 2, "db_pool": 5}
    live = derive_app.compare_live([single], Facts(data={"postgres": postgres}))
    assert live[0]["live"] == 3 and live[0]["estimated_max"] == 2
    assert "exceed the static estimate of 2" in live[0]["note"]


# --- PgBouncer ----------------------------------------------------------------------------------

def test_pgbouncer_settings_come_from_its_file_then_its_environment_then_defaults() -> None:
    data, _ = collect_project(CORPUS / "rails_pgbouncer")
    (pooler,) = data["poolers"]
    assert pooler["service"] == "bouncer" and pooler["kind"] == "pgbouncer"
    assert pooler["pool_mode"] == "session" and pooler["default_pool_size"] == 12
    assert pooler["max_client_conn"] == 20 and pooler["reserve_pool_size"] == 0
    origins = {e["field"]: e["from"] for e in pooler["evidence"]}
    assert origins["default_pool_size"] == "pgbouncer/pgbouncer.ini [pgbouncer] default_pool_size"
    assert origins["max_client_conn"] == "env MAX_CLIENT_CONN"
    assert origins["reserve_pool_size"] == "PgBouncer's default"
    assert "pool" in pooler["aliases"]
    # The pooler is not an app process.
    assert "bouncer" not in by_service(data)


def test_processes_are_routed_through_the_pooler_by_url_host_and_by_db_host_alias() -> None:
    data, _ = collect_project(CORPUS / "rails_pgbouncer")
    procs = by_service(data)
    assert procs["web"]["via_pooler"] == "bouncer"
    assert procs["jobs"]["via_pooler"] == "bouncer"  # DB_HOST=pool, the pooler's network alias
    assert procs["admin"]["via_pooler"] is None
    assert procs["web"]["database_target"] == {"host": "bouncer", "port": 6432, "database": "shop_production",
                                               "from": "env DATABASE_URL (host part)"}
    assert procs["jobs"]["database_target"]["database"] == "shop_production"


def test_pooler_and_routing_facts_carry_no_password() -> None:
    data, _ = collect_project(CORPUS / "rails_pgbouncer")
    text = json.dumps(data)
    assert "canary-pw-7731" not in text
    assert "shop:" not in text  # the user part of the URL is not kept either


def test_pgbouncer_recognised_by_command_with_bitnami_environment(tmp_path: Path) -> None:
    (tmp_path / "compose.yml").write_text(
        "services:\n"
        "  pgb:\n"
        "    image: registry.example/tools/pooler:1\n"
        "    command: [pgbouncer, /etc/pgbouncer/custom.ini]\n"
        "    environment:\n"
        "      PGBOUNCER_POOL_MODE: transaction\n"
        "      PGBOUNCER_DEFAULT_POOL_SIZE: '25'\n"
        "      PGBOUNCER_MAX_DB_CONNECTIONS: 'lots'\n")
    data, _ = collect_project(tmp_path)
    (pooler,) = data["poolers"]
    assert pooler["pool_mode"] == "transaction" and pooler["default_pool_size"] == 25
    assert pooler["max_db_connections"] == 0  # unreadable: PgBouncer's default (no cap) is assumed
    origins = {e["field"]: e["from"] for e in pooler["evidence"]}
    assert "'lots', not a number" in origins["max_db_connections"]
    assert pooler["max_client_conn"] == 100


def test_a_malformed_pgbouncer_ini_falls_back_to_environment_and_defaults(tmp_path: Path) -> None:
    (tmp_path / "pgbouncer.ini").write_text("this is [not an ini\n= =\n")
    (tmp_path / "compose.yml").write_text(
        "services:\n"
        "  pgbouncer:\n"
        "    image: bitnami/pgbouncer:1.22.1\n"
        "    volumes: ['./pgbouncer.ini:/opt/bitnami/pgbouncer/conf/pgbouncer.ini']\n"
        "    environment: {PGBOUNCER_DEFAULT_POOL_SIZE: '7'}\n")
    data, _ = collect_project(tmp_path)
    (pooler,) = data["poolers"]
    assert pooler["default_pool_size"] == 7 and pooler["pool_mode"] == "session"


def test_summary_and_live_notes_count_the_poolers_side() -> None:
    data, _ = collect_project(CORPUS / "rails_pgbouncer")
    # admin 1 x 2 direct + the pooler's min(15 + 10 clients, 12) = 14
    assert connections_at_most(data) == 14
    assert data["summary"]["bouncer_pgbouncer"] == "session pooling, default_pool_size 12"
    rows = [derive_app.ConnectionRow("psql", "", 1)]
    live = {r["service"]: r for r in derive_app.compare_rows(data["processes"], rows)}
    assert "connects through bouncer" in live["web"]["note"]
    assert "no live session matched" in live["admin"]["note"]


# --- Solid Queue and GoodJob --------------------------------------------------------------------

def test_solid_queue_reads_the_generated_queue_yml_and_counts_its_helpers() -> None:
    data, _ = collect_project(CORPUS / "rails8_jobs")
    jobs = by_service(data)["jobs"]
    assert (jobs["kind"], jobs["role"]) == ("solid_queue", "worker")
    assert (jobs["processes"], jobs["threads"], jobs["db_pool"]) == (2, 3, 3)
    assert origin(jobs, "workers") == "config/queue.yml:8 (env JOB_CONCURRENCY=2)"
    # 2: polling and heartbeat per worker process; 3: the supervisor and one dispatcher
    assert (jobs["extra_per_process"], jobs["extra_per_replica"]) == (2, 3)


def test_good_job_threads_add_up_over_its_queue_pools() -> None:
    data, _ = collect_project(CORPUS / "rails8_jobs")
    good = by_service(data)["goodjob"]
    assert (good["kind"], good["threads"], good["db_pool"]) == ("good_job", 9, 8)
    assert good["extra_per_process"] == 1
    assert origin(good, "concurrency") == "queues 'critical:2;default:3;*': 2 + 3 + 4 threads"


def test_connections_of_job_runners_include_their_own() -> None:
    data, _ = collect_project(CORPUS / "rails8_jobs")
    # web 3 + Solid Queue 2 x min(3 + 2, pool 3) + 3 + GoodJob min(9 + 1, pool 8) = 3 + 9 + 8
    assert connections_at_most(data) == 20


def test_solid_queue_without_a_config_file_runs_one_worker_and_one_dispatcher(tmp_path: Path) -> None:
    (tmp_path / "compose.yml").write_text(
        "services:\n  jobs:\n    image: app\n    command: bin/rails solid_queue:start\n"
        "    environment: {RAILS_ENV: production, DB_POOL: '10'}\n")
    data, _ = collect_project(tmp_path)
    jobs = by_service(data)["jobs"]
    assert (jobs["processes"], jobs["threads"], jobs["extra_per_replica"]) == (1, 3, 3)
    assert "config/queue.yml not found" in origin(jobs, "concurrency")


def test_pgbouncer_version_from_the_tag_decides_prepared_statement_support() -> None:
    data, _ = collect_project(CORPUS / "rails_pgbouncer")
    (pooler,) = data["poolers"]
    assert pooler["version"] == "1.23.1"  # edoburu/pgbouncer:v1.23.1-p2
    assert pooler["max_prepared_statements"] == 0
    assert {e["field"]: e["from"] for e in pooler["evidence"]}["max_prepared_statements"] == \
        "PgBouncer 1.23.1 default 0 (off until 1.24)"
    web = by_service(data)["web"]
    assert web["prepared_statements"] is True
    assert origin(web, "prepared_statements") == "Active Record's PostgreSQL adapter default (true)"


@pytest.mark.parametrize(("image", "version"), [
    ("edoburu/pgbouncer:v1.23.1-p2", "1.23.1"), ("bitnami/pgbouncer:1.24.0", "1.24.0"),
    ("pgbouncer/pgbouncer:1.15", "1.15"), ("edoburu/pgbouncer:latest", None), ("edoburu/pgbouncer", None),
    ("registry.local:5000/pgbouncer", None),
])
def test_pgbouncer_version_is_read_from_the_image_tag(image: str, version: str | None) -> None:
    from stackaudit.facts.pooler import image_version

    assert image_version(image) == version


def test_prepared_statements_read_from_database_yml_or_the_url(tmp_path: Path) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "database.yml").write_text(
        "production:\n  primary:\n    adapter: postgresql\n"
        "    prepared_statements: <%= ENV.fetch(\"PREPARED\", \"false\") %>\n")
    (tmp_path / "compose.yml").write_text(
        "services:\n"
        "  web:\n    image: app\n    command: bundle exec puma\n    volumes: ['./config:/app/config']\n"
        "    environment: {RAILS_ENV: production, DATABASE_URL: 'postgres://db/app'}\n"
        "  jobs:\n    image: app\n    command: bundle exec sidekiq\n"
        "    environment: {RAILS_ENV: production, DATABASE_URL: 'postgres://db/app?prepared_statements=false'}\n")
    data, _ = collect_project(tmp_path)
    web, jobs = by_service(data)["web"], by_service(data)["jobs"]
    assert web["prepared_statements"] is False
    assert "config/database.yml:4" in origin(web, "prepared_statements")
    assert jobs["prepared_statements"] is False
    assert origin(jobs, "prepared_statements") == "DATABASE_URL ?prepared_statements= parameter"
