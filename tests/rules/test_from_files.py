"""Rules on compose files alone (issue 18.1, 18.2): RDS001-RDS003 and SEC005 judge a Redis from its
files when no live one is read (the live server wins), and SEC004 / PG010 recognise datastores from
derived images and builds. The facts come from the real compose collector on files written here."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from stackaudit.config import Settings
from stackaudit.derive import derive
from stackaudit.facts import CollectContext, Facts
from stackaudit.facts import compose as compose_source
from stackaudit.model import Finding
from stackaudit.rules import evaluate

REFERENCE = """\
    services:
      redis:
        image: redis:7
        command: redis-server --maxmemory-policy allkeys-lru
        mem_limit: 512m
      web:
        build: .
        command: bundle exec puma
        environment:
          REDIS_URL: redis://redis:6379/0
      worker:
        build: .
        command: bundle exec sidekiq
        environment:
          REDIS_URL: redis://redis:6379/0
    """


def compose_facts(tmp_path: Path, text: str) -> dict[str, Any]:
    directory = tmp_path / "stack"
    directory.mkdir(exist_ok=True)
    (directory / "compose.yml").write_text(textwrap.dedent(text), encoding="utf-8")
    ctx = CollectContext(settings=Settings(project_dirs=(directory,)), facts=Facts(), source="compose")
    return compose_source.collect(ctx)


def run(code: str, tmp_path: Path, text: str, redis: dict[str, Any] | None = None) -> list[Finding]:
    data: dict[str, Any] = {"compose": compose_facts(tmp_path, text)}
    if redis is not None:
        data["redis"] = redis
    findings, skipped = evaluate(Facts(data=data), Settings(select=(code,)))
    assert [s.code for s in skipped] == []
    return [f for f in findings if f.code == code]


def sources(finding: Finding) -> dict[str, str]:
    return {e.key: e.source for e in finding.evidence}


def live(**values: Any) -> dict[str, Any]:
    base = {"target": "redis://127.0.0.1:6379/0", "project": "stack", "service": "redis", "readable": True,
            "container_memory_limit_bytes": 512 * 2**20, "maxmemory_bytes": 300 * 2**20,
            "maxmemory_policy": "noeviction", "auth_required": True, "users": []}
    return {"instances": [{**base, **values}]}


def test_rds001_fires_from_the_files_with_the_line(tmp_path: Path) -> None:
    [finding] = run("RDS001", tmp_path, REFERENCE)
    assert finding.subject == "stack/redis"
    assert "no maxmemory inside a 512.0 MiB container limit" in finding.message
    assert sources(finding) == {"maxmemory_bytes": "Redis default",
                                "container_memory_limit_bytes": "compose.yml:5"}


def test_rds001_silent_with_maxmemory_in_the_command_or_no_limit(tmp_path: Path) -> None:
    assert run("RDS001", tmp_path, REFERENCE.replace("allkeys-lru", "noeviction --maxmemory 300mb")) == []
    assert run("RDS001", tmp_path, REFERENCE.replace("mem_limit: 512m", "restart: always")) == []


def test_rds001_silent_when_the_config_is_baked_into_the_image(tmp_path: Path) -> None:
    baked = REFERENCE.replace("image: redis:7", "build: ./redis").replace(
        "redis-server --maxmemory-policy allkeys-lru", "redis-server /etc/redis/redis.conf")
    assert run("RDS001", tmp_path, baked) == []


def test_rds001_the_live_server_wins(tmp_path: Path) -> None:
    assert run("RDS001", tmp_path, REFERENCE, redis=live()) == []
    [finding] = run("RDS001", tmp_path, REFERENCE.replace("allkeys-lru", "noeviction --maxmemory 300mb"),
                    redis=live(maxmemory_bytes=0))
    assert sources(finding)["maxmemory_bytes"] == "redis"


def test_rds002_fires_for_sidekiq_on_allkeys_lru_from_the_files(tmp_path: Path) -> None:
    [finding] = run("RDS002", tmp_path, REFERENCE)
    assert "holds the job queue of web (queue), worker (sidekiq)" in finding.message
    assert "allkeys-lru" in finding.message
    assert sources(finding)["maxmemory_policy"] == "compose.yml:4"
    assert sources(finding)["queue_users"] == "compose.yml:10, compose.yml:15"


def test_rds002_silent_for_noeviction_or_a_cache_only(tmp_path: Path) -> None:
    assert run("RDS002", tmp_path, REFERENCE.replace("allkeys-lru", "noeviction")) == []
    cache_only = """\
        services:
          redis:
            image: redis:7
            command: redis-server --maxmemory 100mb --maxmemory-policy allkeys-lru
          web:
            build: .
            command: bundle exec puma
            environment:
              REDIS_CACHE_URL: redis://redis:6379/1
        """
    assert run("RDS002", tmp_path, cache_only) == []


def test_rds003_fires_when_maxmemory_fills_the_container_limit(tmp_path: Path) -> None:
    [finding] = run("RDS003", tmp_path, REFERENCE.replace("allkeys-lru", "noeviction --maxmemory 480mb"))
    assert "may fill 480.0 MiB, 94% of its container limit (512.0 MiB)" in finding.message
    assert sources(finding)["maxmemory_bytes"] == "compose.yml:4"


def test_rds003_silent_with_headroom_in_the_files(tmp_path: Path) -> None:
    assert run("RDS003", tmp_path, REFERENCE.replace("allkeys-lru", "noeviction --maxmemory 300mb")) == []


def test_sec005_fires_for_a_redis_without_password_in_its_files(tmp_path: Path) -> None:
    [finding] = run("SEC005", tmp_path, REFERENCE)
    assert finding.message.startswith("Redis stack/redis runs without a password: its files set none "
                                      "(compose.yml:4)")
    assert sources(finding)["auth_required"] == "compose.yml:4"


def test_sec005_silent_with_requirepass_or_when_the_live_server_asks_for_one(tmp_path: Path) -> None:
    protected = REFERENCE.replace("allkeys-lru", "allkeys-lru --requirepass ${REDIS_PASSWORD:?}")
    assert run("SEC005", tmp_path, protected.replace("${REDIS_PASSWORD:?}", "from-env")) == []
    assert run("SEC005", tmp_path, REFERENCE, redis=live(auth_required=True)) == []


def test_sec005_grades_an_open_redis_by_who_can_reach_it(tmp_path: Path) -> None:
    """Unpublished (the official Immich / Nextcloud / Mastodon layouts): the other containers only,
    MEDIUM. On loopback or bound to it on the host network: the host's processes too, MEDIUM.
    Published on all interfaces or on the host network: HIGH (SEC004 adds the CRITICAL)."""
    default = "redis-server --maxmemory-policy allkeys-lru"

    def graded(extra: str, command: str = default) -> tuple[str, str]:
        text = REFERENCE.replace(f"command: {default}", f"command: {command}")
        text = text.replace("        mem_limit: 512m\n", f"        mem_limit: 512m\n{extra}", 1)
        [finding] = run("SEC005", tmp_path, text)
        return finding.severity.label(), finding.message.split(", so ")[1]

    assert graded("") == ("medium", "every container on its networks (a request forgery in one of them is "
                                    "enough) can read and change the data.")
    assert graded('        ports: ["127.0.0.1:6379:6379"]\n')[0] == "medium"
    assert "every process of the host" in graded('        ports: ["127.0.0.1:6379:6379"]\n')[1]
    assert graded('        ports: ["6379:6379"]\n') == ("high", "anything that reaches its port can read and "
                                                         "change the data.")
    assert graded("        network_mode: host\n")[0] == "high"
    on_loopback = "redis-server --bind 127.0.0.1 -::1 --port 6380"
    assert graded("        network_mode: host\n", on_loopback)[0] == "medium"


def test_sec005_is_high_for_a_live_redis_outside_the_stack(tmp_path: Path) -> None:
    [finding] = run("SEC005", tmp_path, "services: {}\n",
                    redis=live(project=None, service=None, auth_required=False))
    assert finding.severity.label() == "high" and "anything that reaches its port" in finding.message


def test_sec005_bitnami_allow_empty_password(tmp_path: Path) -> None:
    text = ("services:\n  cache:\n    image: bitnami/redis:7.2\n    environment:\n"
            "      ALLOW_EMPTY_PASSWORD: 'yes'\n")
    [finding] = run("SEC005", tmp_path, text)
    assert sources(finding)["auth_required"] == "compose.yml:5"
    with_password = text.replace("ALLOW_EMPTY_PASSWORD: 'yes'", "REDIS_PASSWORD_FILE: /run/s")
    assert run("SEC005", tmp_path, with_password) == []


DERIVED = """\
    services:
      db:
        image: pgautoupgrade/pgautoupgrade:16-alpine
        ports: ["5432:5432"]
        environment:
          POSTGRES_INITDB_ARGS: "-c shared_buffers=1GB"
      modules:
        build: ./redis
        command: ["redis-server", "--loadmodule", "/opt/redisearch.so", "--requirepass", "x"]
        ports: ["6379:6379"]
      pgadmin:
        image: dpage/pgadmin4:8
        ports: ["5050:80"]
        environment:
          PGADMIN_DEFAULT_EMAIL: a@example.com
      web:
        build: .
        command: bundle exec puma
        ports: ["3000:3000"]
        environment:
          REDIS_URL: redis://modules:6379/0
          POSTGRES_HOST: db
    """


def test_sec004_fires_for_derived_and_built_datastores(tmp_path: Path) -> None:
    findings = run("SEC004", tmp_path, DERIVED)
    assert sorted(f.subject for f in findings) == ["stack/db", "stack/modules"]
    db = next(f for f in findings if f.subject == "stack/db")
    assert db.message.startswith("postgres service stack/db is published on all interfaces "
                                 "(0.0.0.0:5432->5432)")
    assert f"{tmp_path}/stack/compose.yml:4" in [e.observed for e in db.evidence]


def test_sec004_silent_for_admin_uis_and_apps(tmp_path: Path) -> None:
    quiet = DERIVED.replace('["5432:5432"]', '["127.0.0.1:5432:5432"]').replace(
        '["6379:6379"]', "[]")
    assert run("SEC004", tmp_path, quiet) == []  # pgadmin on 5050 and web on 3000 stay unreported


def test_pg010_fires_for_a_derived_postgres_image(tmp_path: Path) -> None:
    [finding] = run("PG010", tmp_path, DERIVED)
    assert finding.subject == "service stack/db"
    assert run("PG010", tmp_path, DERIVED.replace('"-c shared_buffers=1GB"', '"--data-checksums"')) == []


def test_sec004_is_critical_for_a_public_redis_whose_files_set_no_password(tmp_path: Path) -> None:
    [finding] = run("SEC004", tmp_path, REFERENCE.replace("mem_limit: 512m", 'ports: ["6379:6379"]'))
    assert finding.severity.name == "CRITICAL"
    assert finding.message.endswith("bypasses the host firewall and its files set no password "
                                    "(compose.yml:4).")


def test_the_redis_advice_covers_a_redis_known_from_its_files(tmp_path: Path) -> None:
    facts = Facts(data={"compose": compose_facts(tmp_path, REFERENCE)})
    [advice] = derive(facts).redis
    assert advice.service == "redis" and advice.policy == "noeviction"
    assert advice.compose_command() == ["redis-server", "--maxmemory", "307mb", "--maxmemory-policy",
                                        "noeviction"]


WORDPRESS = """\
    services:
      wordpress:
        image: wordpress:6.6-php8.2-fpm
        volumes:
          - ./www.conf:/usr/local/etc/php-fpm.d/www.conf:ro
        deploy:
          resources:
            limits:
              memory: 512M
    """


def test_app006_fires_when_the_fpm_children_can_outgrow_the_container(tmp_path: Path) -> None:
    (tmp_path / "stack").mkdir()
    (tmp_path / "stack" / "www.conf").write_text("[www]\npm = dynamic\npm.max_children = 50\n")
    [finding] = run("APP006", tmp_path, WORDPRESS)
    assert finding.severity.label() == "high"  # 12.5x: even at a quarter of memory_limit it overruns
    assert finding.message == ("stack/wordpress runs up to 50 PHP-FPM children (www 50 x 128.0 MiB, "
                               "memory_limit): 6.2 GiB at worst in a 512.0 MiB container limit, 12.5x "
                               "what it may use.")
    assert finding.recommendation.action == "pm.max_children = 4"
    assert sources(finding)["mem_limit_bytes"] == "compose.yml:9"
    assert sources(finding)["www.max_children"].endswith("www.conf:3 (www.conf)")
    (tmp_path / "stack" / "www.conf").write_text("[www]\npm.max_children = 6\n")
    [finding] = run("APP006", tmp_path, WORDPRESS)  # 768 MiB in 512 MiB: possible, not certain
    assert finding.severity.label() == "medium"


def test_app006_silent_when_the_children_fit_or_nothing_bounds_them(tmp_path: Path) -> None:
    (tmp_path / "stack").mkdir()
    (tmp_path / "stack" / "www.conf").write_text("[www]\npm.max_children = 4\n")
    assert run("APP006", tmp_path, WORDPRESS) == []  # 4 x 128 MiB = the limit
    (tmp_path / "stack" / "www.conf").write_text("[www]\npm.max_children = 50\n")
    assert run("APP006", tmp_path, WORDPRESS.replace("memory: 512M", "memory: 8G")) == []
    unlimited = WORDPRESS.replace("        deploy:\n          resources:\n            limits:\n"
                                  "              memory: 512M\n", "")
    assert run("APP006", tmp_path, unlimited) == []  # no container limit: the host's budget (SYS) judges
    apache = WORDPRESS.replace("6.6-php8.2-fpm", "6.6-php8.2-apache").replace(
        "          - ./www.conf:/usr/local/etc/php-fpm.d/www.conf:ro\n", "")
    assert run("APP006", tmp_path, apache) == []
