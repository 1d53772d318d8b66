"""SEC001-SEC009 on facts snapshots: each fires, and a near miss stays silent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import stackaudit.rules.security  # noqa: F401 - registers the SEC rules
from stackaudit.config import Settings
from stackaudit.derive import derive
from stackaudit.facts import CollectContext, Facts
from stackaudit.model import Severity
from stackaudit.rules import REGISTRY
from stackaudit.rules.security import tag_risk


def run(code: str, data: dict[str, Any], settings: Settings | None = None) -> list[tuple[str, Severity, str]]:
    registered = REGISTRY[code]
    facts = Facts(data=data)
    hits = registered.run(facts, settings or Settings(), derive(facts))
    return [(h.subject, registered.severity if h.severity is None else h.severity, h.message) for h in hits]


def service(name: str, image: str | None, **extra: Any) -> dict[str, Any]:
    shape: dict[str, Any] = {
        "name": name,
        "project": "shop",
        "image": image,
        "environment": {},
        "ports": [],
        "volumes": [],
        "labels": {},
        "privileged": False,
        "network_mode": None,
        "profiles": [],
    }
    shape.update(extra)
    return shape


def compose(*services: dict[str, Any], literal_secrets: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "compose": {
            "projects": [
                {
                    "name": "shop",
                    "dir": "/srv/shop",
                    "files": ["/srv/shop/compose.yaml"],
                    "services": {s["name"]: s for s in services},
                    "literal_secrets": literal_secrets or [],
                }
            ]
        }
    }


def port(published: str | None, target: int, host_ip: str | None = None) -> dict[str, Any]:
    return {"host_ip": host_ip, "published": published, "target": target, "protocol": "tcp"}


def env_file(path: str = "/srv/shop/.env", **extra: Any) -> dict[str, Any]:
    shape: dict[str, Any] = {
        "path": path,
        "project": "shop",
        "exists": True,
        "mode": 0o600,
        "owner_uid": 1000,
        "owner": "deploy",
        "group_readable": False,
        "world_readable": False,
        "keys": ["DATABASE_URL", "SECRET_KEY_BASE"],
        "secret_keys": ["SECRET_KEY_BASE"],
        "weak_values": [],
    }
    shape.update(extra)
    return shape


# --- SEC001 ---------------------------------------------------------------------------------------


def test_sec001_fires_on_world_readable_env_file() -> None:
    hits = run("SEC001", {"env": {"files": [env_file(mode=0o644, group_readable=True, world_readable=True)]}})
    assert [(s, sev) for s, sev, _ in hits] == [("/srv/shop/.env", Severity.HIGH)]
    assert "0644" in hits[0][2] and "every user" in hits[0][2]


def test_sec001_fires_medium_when_group_readable_and_mode_is_a_string() -> None:
    hits = run(
        "SEC001", {"env": {"files": [env_file(mode="0640", group_readable=None, world_readable=None)]}}
    )
    assert [sev for _, sev, _ in hits] == [Severity.MEDIUM]


def test_sec001_silent_for_mode_600_and_for_files_without_secrets() -> None:
    no_secrets = env_file(path="/srv/shop/app.conf", mode=0o644, world_readable=True, secret_keys=[])
    assert run("SEC001", {"env": {"files": [env_file(), no_secrets]}}) == []


def test_sec001_fires_when_owned_by_another_account() -> None:
    hits = run("SEC001", {"env": {"files": [env_file(owner_uid=1001, dir_owner_uid=1000)]}})
    assert len(hits) == 1 and "uid 1001" in hits[0][2]
    # root-owned or same owner: no ownership finding
    assert (
        run(
            "SEC001",
            {
                "env": {
                    "files": [
                        env_file(owner_uid=0, dir_owner_uid=1000),
                        env_file(owner_uid=1000, dir_owner_uid=1000),
                    ]
                }
            },
        )
        == []
    )


# --- SEC002 ---------------------------------------------------------------------------------------


def test_sec002_fires_on_tracked_and_unignored_files() -> None:
    tracked = env_file(git={"tracked": True, "ignored": False, "repo": "/srv/shop"})
    unignored = env_file(
        path="/srv/shop/.env.production", git={"tracked": False, "ignored": False, "repo": "/srv/shop"}
    )
    hits = run("SEC002", {"env": {"files": [tracked, unignored]}})
    assert [(s, sev) for s, sev, _ in hits] == [
        ("/srv/shop/.env", Severity.HIGH),
        ("/srv/shop/.env.production", Severity.MEDIUM),
    ]


def test_sec002_silent_when_ignored_or_outside_a_repository() -> None:
    ignored = env_file(git={"tracked": False, "ignored": True, "repo": "/srv/shop"})
    no_repo = env_file(path="/etc/shop/.env", git={"tracked": False, "ignored": False, "repo": None})
    assert run("SEC002", {"env": {"files": [ignored, no_repo, env_file()]}}) == []


# --- SEC003 ---------------------------------------------------------------------------------------


def test_sec003_fires_on_literal_and_default_secrets_and_weak_values() -> None:
    data = compose(
        service("db", "postgres:16.4"),
        literal_secrets=[
            {
                "service": "db",
                "key": "POSTGRES_PASSWORD",
                "file": "/srv/shop/compose.yaml",
                "line": 12,
                "kind": "literal",
            },
            {
                "service": "web",
                "key": "SECRET_KEY_BASE",
                "file": "/srv/shop/compose.yaml",
                "line": 30,
                "kind": "default",
            },
        ],
    )
    data["env"] = {
        "files": [
            env_file(
                weak_values=[
                    {"key": "POSTGRES_PASSWORD", "line": 3, "reason": "a well-known default password"}
                ]
            )
        ]
    }
    hits = run("SEC003", data)
    messages = [m for _, _, m in hits]
    assert "/srv/shop/compose.yaml:12" in messages[0] and "literally" in messages[0]
    assert "/srv/shop/compose.yaml:30" in messages[1] and "${VAR:-...}" in messages[1]
    assert "/srv/shop/.env:3" in messages[2] and hits[2][1] == Severity.HIGH


def test_sec003_silent_without_literal_secrets_or_weak_values() -> None:
    data = compose(service("db", "postgres:16.4", environment={"POSTGRES_PASSWORD": "***"}))
    data["env"] = {"files": [env_file()]}
    assert run("SEC003", data) == []


# --- SEC004 ---------------------------------------------------------------------------------------


def test_sec004_fires_on_datastores_published_on_all_interfaces() -> None:
    data = compose(
        service("db", "postgres:16.4", ports=[port("5432", 5432)]),
        service("cache", "redis:7.4", ports=[port("6379", 6379, "0.0.0.0")]),
        service("search", "elasticsearch:8.15.0", ports=[port(None, 9200)]),
    )
    hits = run("SEC004", data)
    assert [s for s, _, _ in hits] == ["shop/db", "shop/cache", "shop/search"]
    assert "0.0.0.0:5432->5432" in hits[0][2]
    assert "random host port" in hits[2][2]


def test_sec004_fires_critical_for_open_redis() -> None:
    data = compose(service("cache", "redis:7.4", ports=[port("6379", 6379)]))
    data["redis"] = {
        "instances": [{"service": "cache", "target": "redis://cache:6379", "auth_required": False}]
    }
    assert [sev for _, sev, _ in run("SEC004", data)] == [Severity.CRITICAL]


def test_sec004_silent_on_loopback_unpublished_and_non_datastores() -> None:
    data = compose(
        service("db", "postgres:16.4", ports=[port("5432", 5432, "127.0.0.1")]),
        service("cache", "redis:7.4"),
        service("web", "ghcr.io/shop/web:1.2", ports=[port("80", 3000)]),
    )
    assert run("SEC004", data) == []


def test_sec004_fires_on_running_containers_too() -> None:
    data = {
        "docker": {
            "containers": [
                {
                    "name": "legacy-mysql",
                    "image": "mysql:8.0.39",
                    "compose_project": None,
                    "compose_service": None,
                    "ports": [
                        {"host_ip": "::", "host_port": 3306, "container_port": 3306, "protocol": "tcp"},
                        {
                            "host_ip": "127.0.0.1",
                            "host_port": 33060,
                            "container_port": 33060,
                            "protocol": "tcp",
                        },
                    ],
                }
            ]
        }
    }
    hits = run("SEC004", data)
    assert len(hits) == 1 and "3306" in hits[0][2] and "33060" not in hits[0][2]


# --- SEC005 ---------------------------------------------------------------------------------------


def test_sec005_fires_on_redis_without_password() -> None:
    data = {
        "redis": {
            "instances": [
                {"service": "cache", "target": "redis://cache:6379/0", "auth_required": False},
                {"service": "queue", "target": "redis://:***@queue:6379/0", "auth_required": True},
                {"service": "unknown", "target": "redis://x:6379/0", "auth_required": None},
            ]
        }
    }
    hits = run("SEC005", data)
    assert [s for s, _, _ in hits] == ["redis cache"]


def test_sec005_fires_on_postgres_trust_md5_and_superuser_app() -> None:
    data = compose(
        service(
            "db", "postgres:16.4", environment={"POSTGRES_HOST_AUTH_METHOD": "trust", "POSTGRES_USER": "shop"}
        ),
        service(
            "web", "ghcr.io/shop/web:1.2", environment={"DATABASE_URL": "postgres://shop:***@db:5432/shop"}
        ),
    )
    data["postgres"] = {
        "settings": {"password_encryption": {"setting": "md5"}},
        "hba": [
            {
                "line_number": 99,
                "type": "host",
                "address": "0.0.0.0",
                "netmask": "0.0.0.0",
                "auth_method": "trust",
            },
            {"line_number": 98, "type": "host", "address": "127.0.0.1", "auth_method": "trust"},
            {"line_number": 97, "type": "local", "auth_method": "trust"},
        ],
    }
    hits = run("SEC005", data)
    subjects = [s for s, _, _ in hits]
    assert subjects == ["shop/db", "pg_hba pg_hba.conf:99", "postgres password_encryption", "shop/web"]
    assert hits[0][1] == Severity.HIGH and "connects to db as shop" in hits[3][2]  # db: not published
    assert "every container on its networks (a request forgery" in hits[0][2]


def test_sec005_trust_is_critical_once_other_hosts_reach_the_server() -> None:
    trust = {"POSTGRES_HOST_AUTH_METHOD": "trust"}
    published = compose(service("db", "postgres:16.4", environment=trust,
                                ports=[{"host_ip": None, "published": "5432", "target": 5432}]))
    [(_, severity, message)] = run("SEC005", published)
    assert severity == Severity.CRITICAL and "anything that reaches its port can connect" in message
    local = compose(service("db", "postgres:16.4", environment=trust, network_mode="host",
                            command=["postgres", "-c", "listen_addresses=localhost"]))
    [(_, severity, message)] = run("SEC005", local)
    assert severity == Severity.HIGH and "every process of the host" in message


def test_sec005_silent_with_scram_and_an_app_role() -> None:
    data = compose(
        service("db", "postgres:16.4", environment={"POSTGRES_USER": "admin"}),
        service(
            "web", "ghcr.io/shop/web:1.2", environment={"DATABASE_URL": "postgres://shop:***@db:5432/shop"}
        ),
    )
    data["postgres"] = {
        "settings": {"password_encryption": {"setting": "scram-sha-256"}},
        "hba": [{"line_number": 100, "type": "host", "address": "all", "auth_method": "scram-sha-256"}],
        "is_superuser": True,
    }  # the audit's own connection, not the app's
    assert run("SEC005", data) == []


# --- SEC006 ---------------------------------------------------------------------------------------


def cert(domain: str, days: float | None, reachable: bool = True, error: str | None = None) -> dict[str, Any]:
    return {
        "domain": domain,
        "reachable": reachable,
        "error": error,
        "days_left": days,
        "verified": True,
        "verify_error": None,
        "not_after": "2030-01-01T00:00:00+00:00",
        "issuer_cn": "R11",
    }


def test_sec006_fires_on_expiring_expired_and_unreachable() -> None:
    data = {
        "tls": {
            "certificates": [
                cert("a.example", 12.5),
                cert("b.example", -2.0),
                cert("c.example", None, reachable=False, error="connection refused"),
            ]
        }
    }
    hits = run("SEC006", data)
    assert [(s, sev) for s, sev, _ in hits] == [
        ("a.example", Severity.HIGH),
        ("b.example", Severity.CRITICAL),
        ("c.example", Severity.INFO),
    ]
    assert "12.5 days" in hits[0][2] and "expired 2.0 days ago" in hits[1][2]


def test_sec006_silent_beyond_threshold_and_threshold_is_configurable() -> None:
    data = {"tls": {"certificates": [cert("a.example", 30.0)]}}
    assert run("SEC006", data) == []
    strict = Settings(thresholds={"SEC006": {"days": 45}})
    assert len(run("SEC006", data, strict)) == 1


# --- SEC007 (ERRATA 16) ---------------------------------------------------------------------------

RAILS_OFF = {"RAILS_FORCE_SSL": "false", "RAILS_ASSUME_SSL": "false"}


def test_sec007_fires_on_rails_ssl_off_behind_cloudflared() -> None:
    data = compose(
        service("web", "ghcr.io/shop/web:1.2", environment=RAILS_OFF),
        service("tunnel", "cloudflare/cloudflared:2024.9.1"),
    )
    hits = run("SEC007", data)
    assert len(hits) == 1
    assert "RAILS_FORCE_SSL=false, RAILS_ASSUME_SSL=false" in hits[0][2] and "cloudflared" in hits[0][2]


def test_sec007_fires_with_loopback_port_or_configured_domain() -> None:
    loopback = compose(
        service("web", "shop/web:1", environment=RAILS_OFF, ports=[port("3000", 3000, "127.0.0.1")])
    )
    assert len(run("SEC007", loopback)) == 1
    bare = compose(service("web", "shop/web:1", environment=RAILS_OFF))
    assert len(run("SEC007", bare, Settings(tls_domains=("shop.example",)))) == 1


def test_sec007_silent_when_assume_ssl_true_or_no_proxy() -> None:
    assumed = compose(
        service("web", "shop/web:1", environment={"RAILS_FORCE_SSL": "false", "RAILS_ASSUME_SSL": "true"}),
        service("proxy", "traefik:v3.1"),
    )
    assert run("SEC007", assumed) == []
    direct = compose(service("web", "shop/web:1", environment=RAILS_OFF, ports=[port("80", 3000)]))
    assert run("SEC007", direct) == []


def test_sec007_fires_on_django_without_proxy_header() -> None:
    django = service(
        "web",
        "shop/web:1",
        environment={"DJANGO_SETTINGS_MODULE": "shop.settings"},
        labels={"traefik.http.routers.web.tls.certresolver": "le"},
    )
    hits = run("SEC007", compose(django))
    assert len(hits) == 1 and "SECURE_PROXY_SSL_HEADER" in hits[0][2] and hits[0][1] == Severity.LOW
    django["environment"]["DJANGO_SECURE_PROXY_SSL_HEADER"] = "HTTP_X_FORWARDED_PROTO,https"
    assert run("SEC007", compose(django)) == []


# --- SEC008 ---------------------------------------------------------------------------------------

SOCKET = {
    "type": "bind",
    "source": "/var/run/docker.sock",
    "target": "/var/run/docker.sock",
    "read_only": True,
}


def test_sec008_fires_on_socket_privileged_host_network() -> None:
    data = compose(
        service("ci", "gitlab/gitlab-runner:v17.3.1", volumes=[SOCKET]),
        service("vpn", "shop/vpn:1", privileged=True),
        service("web", "shop/web:1", network_mode="host"),
        service("cadvisor", "gcr.io/cadvisor/cadvisor:v0.49.1", privileged=True, volumes=[SOCKET]),
    )
    hits = {s: (sev, m) for s, sev, m in run("SEC008", data)}
    assert hits["shop/ci"][0] == Severity.HIGH and "Docker socket" in hits["shop/ci"][1]
    assert hits["shop/vpn"][0] == Severity.HIGH
    assert hits["shop/web"][0] == Severity.MEDIUM
    assert hits["shop/cadvisor"][0] == Severity.INFO and "expected" in hits["shop/cadvisor"][1]


def test_sec008_silent_for_plain_services() -> None:
    data = compose(
        service(
            "web",
            "shop/web:1",
            network_mode="bridge",
            volumes=[{"type": "bind", "source": "/srv/shop/storage", "target": "/app/storage"}],
        )
    )
    assert run("SEC008", data) == []


# --- SEC009 ---------------------------------------------------------------------------------------


def test_sec009_fires_on_floating_tags_by_datastore() -> None:
    data = compose(
        service("db", "postgres:latest"),
        service("cache", "redis"),
        service("mq", "rabbitmq:3-management"),
        service("db2", "postgres:16"),
    )
    hits = {s: sev for s, sev, _ in run("SEC009", data)}
    assert hits == {
        "shop/db": Severity.HIGH,
        "shop/cache": Severity.MEDIUM,
        "shop/mq": Severity.LOW,
        "shop/db2": Severity.LOW,
    }


def test_sec009_silent_when_pinned() -> None:
    data = compose(
        service("db", "postgres:16.4-alpine"),
        service("cache", "redis:7.4.1"),
        service("db2", "postgres@sha256:" + "a" * 64),
        service("web", "shop/web:latest"),
    )
    assert run("SEC009", data) == []


def test_tag_risk_table() -> None:
    def severity(kind: str, tag: str | None, digest: str | None = None) -> Severity | None:
        risk = tag_risk(kind, tag, digest)
        return None if risk is None else risk[0]

    assert severity("postgres", None) == severity("postgres", "latest") == Severity.HIGH
    assert severity("postgres", "alpine") == Severity.HIGH
    assert severity("memcached", "latest") == Severity.MEDIUM
    assert severity("postgres", "16-bookworm") == Severity.LOW
    assert severity("postgres", "16.4") is None
    assert severity("postgres", "latest", "sha256:abc") is None


def test_sec007_silent_for_job_runners_behind_the_same_proxy() -> None:
    worker = service("worker", "shop/web:1", environment=RAILS_OFF, command=["bundle", "exec", "sidekiq"])
    data = compose(worker, service("tunnel", "cloudflare/cloudflared:2024.9.1"))
    assert run("SEC007", data) == []
    # the app facts' role wins over the command
    data["app"] = {"processes": [{"project": "shop", "service": "worker", "role": "web"}]}
    assert len(run("SEC007", data)) == 1


# --- issue 18: secrets by value, weak values, _FILE advice ------------------------------------------


def literal(service: str, key: str, weak: str | None = None, kind: str = "literal") -> dict[str, Any]:
    return {"service": service, "key": key, "file": "/srv/shop/compose.yaml", "line": 7, "kind": kind,
            "weak": weak}


def test_sec003_fires_high_on_a_weak_literal_and_offers_file_secrets_where_the_image_reads_them() -> None:
    data = compose(
        service("db", "postgres:16.4"),
        service("api", "ghcr.io/shop/api:1.2"),
        service("grafana", "grafana/grafana:12.1.0"),
        literal_secrets=[literal("db", "POSTGRES_PASSWORD", "the service's or image's own name"),
                         literal("api", "STRIPE_API_KEY"), literal("grafana", "GF_SECURITY_ADMIN_PASSWORD")],
    )
    registered = REGISTRY["SEC003"]
    hits = {h.subject: h for h in registered.run(Facts(data=data), Settings(), derive(Facts(data=data)))}
    db = hits["shop/db POSTGRES_PASSWORD"]
    assert db.severity == Severity.HIGH and "guessable (the service's or image's own name)" in db.message
    assert db.recommendation.action and "POSTGRES_PASSWORD_FILE: /run/secrets/db_postgres_password" in (
        db.recommendation.action) and "secrets: [db_postgres_password]" in db.recommendation.action
    assert "openssl rand" in db.recommendation.summary
    api = hits["shop/api STRIPE_API_KEY"]
    assert api.severity is None
    assert api.recommendation.action == "STRIPE_API_KEY: ${STRIPE_API_KEY:?STRIPE_API_KEY must be set}"
    grafana = hits["shop/grafana GF_SECURITY_ADMIN_PASSWORD"]
    assert "GF_SECURITY_ADMIN_PASSWORD__FILE" in str(grafana.recommendation.action)


def test_sec003_silent_for_file_references_switches_and_roles_in_compose(tmp_path: Path) -> None:
    from stackaudit.facts import compose as compose_collector

    (tmp_path / "compose.yaml").write_text(
        "services:\n"
        "  db:\n    image: postgres:16.4\n    environment:\n"
        "      POSTGRES_PASSWORD_FILE: /run/secrets/pg\n      DB_PASSWORD: /run/secrets/db_password\n"
        "    secrets: [pg]\n"
        "  mysql:\n    image: mariadb:10.11.9\n    environment:\n"
        "      - MYSQL_ROOT_PASSWORD_FILE=/run/secrets/root\n      - MYSQL_ALLOW_EMPTY_PASSWORD=yes\n"
        "      - MARIADB_RANDOM_ROOT_PASSWORD=true\n"
        "  grafana:\n    image: grafana/grafana:12.1.0\n    environment:\n"
        "      GF_AUTH_ANONYMOUS_ORG_ROLE: Admin\n      GF_AUTH_ANONYMOUS_ENABLED: \"false\"\n"
        "      PRIMARY_KEY: id\n      GF_SECURITY_ADMIN_PASSWORD: ${GRAFANA_PASSWORD:?set it}\n"
        "secrets:\n  pg:\n    file: ./pg.txt\n")
    settings = Settings(project_dirs=(tmp_path,), sources=("compose",))
    ctx = CollectContext(settings=settings, facts=Facts(), source="compose")
    data = compose_collector.collect(ctx)
    assert data["projects"][0]["literal_secrets"] == []
    assert run("SEC003", {"compose": data}) == []
    grafana = data["projects"][0]["services"]["grafana"]["environment"]
    assert grafana["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Admin"  # a role is shown, not redacted


def test_sec003_fires_on_weak_values_in_compose_whatever_the_key(tmp_path: Path) -> None:
    from stackaudit.facts import compose as compose_collector

    (tmp_path / "compose.yaml").write_text(
        "services:\n  nextcloud-db:\n    image: postgres:16.4\n    environment:\n"
        "      POSTGRES_PASSWORD: nextcloud-db\n      SMTP_PASS: changeit\n      ADMIN_PW: Summer2024!\n"
        "      APP_SECRET: ${APP_SECRET:-changeme}\n      SESSION_TOKEN: Vq7mR2xkP9Lw3nTz\n")
    settings = Settings(project_dirs=(tmp_path,), sources=("compose",))
    data = compose_collector.collect(CollectContext(settings=settings, facts=Facts(), source="compose"))
    weak = {i["key"]: (i["kind"], i["weak"]) for i in data["projects"][0]["literal_secrets"]}
    assert weak == {
        "POSTGRES_PASSWORD": ("literal", "the service's or image's own name"),
        "SMTP_PASS": ("literal", "a well-known default or placeholder"),
        "ADMIN_PW": ("literal", "a single word with digits or symbols around it"),
        "APP_SECRET": ("default", "a well-known default or placeholder"),
        "SESSION_TOKEN": ("literal", None),
    }
    severities = {s.rsplit(" ", 1)[1]: sev for s, sev, _ in run("SEC003", {"compose": data})}
    assert severities["SESSION_TOKEN"] == Severity.MEDIUM and severities["POSTGRES_PASSWORD"] == Severity.HIGH


def test_sec001_fires_naming_keys_only_and_silent_for_an_env_file_without_secret_values() -> None:
    names_only = env_file(mode=0o644, world_readable=True, secret_keys=[], keys=["COMPOSE_PROJECT_NAME"])
    assert run("SEC001", {"env": {"files": [names_only]}}) == []
    holding = env_file(mode=0o644, world_readable=True, secret_keys=["DB_PW", "SMTP_PASS"])
    (hit,) = run("SEC001", {"env": {"files": [holding]}})
    assert "holds secrets (DB_PW, SMTP_PASS) (mode 0644)" in hit[2]


def test_sec001_fires_and_sec002_fires_on_private_keys_by_path() -> None:
    key = {"path": "/srv/shop/certs/site.key", "exists": True, "mode": "0644", "private_key": "RSA",
           "group_readable": True, "world_readable": True, "owner_uid": 1000,
           "git": {"repo": "/srv/shop", "tracked": True, "ignored": False}}
    data = {"env": {"files": [], "key_files": [key]}}
    assert [(s, sev) for s, sev, _ in run("SEC001", data)] == [("/srv/shop/certs/site.key", Severity.HIGH)]
    (hit,) = run("SEC002", data)
    assert "a private key (RSA)" in hit[2] and hit[1] == Severity.HIGH


# --- SEC008: capabilities and host mounts ---------------------------------------------------------------


def bind(source: str, read_only: bool = False) -> dict[str, Any]:
    return {"type": "bind", "source": source, "target": "/host" + source, "read_only": read_only}


def test_sec008_fires_on_capabilities_and_host_mounts() -> None:
    data = compose(
        service("fuse", "shop/fuse:1", cap_add=["SYS_ADMIN"]),
        service("vpn", "linuxserver/wireguard:1.0", cap_add=["NET_ADMIN"]),
        service("mods", "shop/mods:1", volumes=[bind("/lib/modules", read_only=True)]),
        service("tuner", "shop/tuner:1", volumes=[bind("/proc"), bind("/sys/kernel")]),
        service("hostnet", "shop/fw:1", cap_add=["NET_ADMIN"], network_mode="host"),
        service("cadvisor", "gcr.io/cadvisor/cadvisor:v0.49.1",
                volumes=[bind("/", True), bind("/sys", True)]),
    )
    hits = {s: (sev, m) for s, sev, m in run("SEC008", data)}
    assert hits["shop/fuse"] == (Severity.HIGH, "shop/fuse adds the capabilities SYS_ADMIN.")
    assert hits["shop/vpn"][0] == Severity.MEDIUM and "NET_ADMIN" in hits["shop/vpn"][1]
    assert hits["shop/mods"][0] == Severity.MEDIUM and "/lib/modules read-only" in hits["shop/mods"][1]
    assert hits["shop/tuner"][0] == Severity.HIGH and "/sys/kernel read-write" in hits["shop/tuner"][1]
    assert hits["shop/hostnet"][0] == Severity.HIGH  # NET_ADMIN on the host's own network
    assert hits["shop/cadvisor"][0] == Severity.INFO


def test_sec008_silent_for_harmless_mounts_and_capabilities() -> None:
    data = compose(service("web", "shop/web:1", cap_add=["NET_BIND_SERVICE", "CHOWN"],
                           volumes=[bind("/etc/localtime", True), bind("/srv/shop/uploads"),
                                    bind("/etc/ssl/certs", True)]))
    assert run("SEC008", data) == []


def test_sec008_fires_on_running_containers_with_cap_add() -> None:
    data = {"docker": {"containers": [{"name": "legacy", "image": "shop/legacy:1", "compose_project": None,
                                       "compose_service": None, "cap_add": ["SYS_MODULE"],
                                       "mounts": [{"type": "bind", "source": "/proc", "rw": False}]}]}}
    ((_, severity, message),) = run("SEC008", data)
    assert severity == Severity.HIGH and "SYS_MODULE" in message and "/proc read-only" in message


def test_sec008_fires_on_the_hosts_process_and_ipc_namespaces() -> None:
    data = compose(
        service("debug", "shop/debug:1", pid_mode="host"),
        service("tracer", "shop/tracer:1", pid_mode="host", cap_add=["SYS_PTRACE"]),
        service("shm", "shop/shm:1", ipc_mode="host"),
        service("sidecar", "shop/sidecar:1", pid_mode="service:web", ipc_mode="shareable"),
        service("node-exporter", "prom/node-exporter:v1.8.2", pid_mode="host"),
    )
    hits = {s: (sev, m) for s, sev, m in run("SEC008", data)}
    assert hits["shop/debug"] == (Severity.MEDIUM, "shop/debug shares the host's processes (pid: host).")
    assert hits["shop/tracer"][0] == Severity.HIGH  # SYS_PTRACE over every host process
    assert hits["shop/shm"][0] == Severity.MEDIUM and "ipc: host" in hits["shop/shm"][1]
    assert "shop/sidecar" not in hits  # another container's namespace is not the host's
    assert hits["shop/node-exporter"][0] == Severity.INFO


def test_sec008_reads_pid_host_from_running_containers() -> None:
    data = {"docker": {"containers": [{"name": "legacy", "image": "shop/legacy:1", "compose_project": None,
                                       "compose_service": None, "pid_mode": "host", "ipc_mode": "private"}]}}
    ((_, severity, message),) = run("SEC008", data)
    assert severity == Severity.MEDIUM and message == "legacy shares the host's processes (pid: host)."


# --- SEC009: each product's version rules ---------------------------------------------------------------


def test_sec009_fires_per_product_version_rules() -> None:
    data = compose(
        service("maria", "mariadb:10-focal"),
        service("maria2", "mariadb:10.11"),
        service("my", "mysql:8"),
        service("mongo", "mongo:7"),
        service("search", "docker.elastic.co/elasticsearch/elasticsearch:8"),
    )
    hits = {s: (sev, m) for s, sev, m in run("SEC009", data)}
    assert hits["shop/maria"][0] == Severity.HIGH
    assert "10-focal spans several MariaDB major releases (10.5, 10.6, 10.11 and 11.4" in (
        hits["shop/maria"][1])
    assert "bare major" not in hits["shop/maria"][1]
    assert hits["shop/maria2"][0] == Severity.LOW and "bare MariaDB major" in hits["shop/maria2"][1]
    assert hits["shop/my"][0] == Severity.HIGH and hits["shop/mongo"][0] == Severity.HIGH
    assert hits["shop/search"][0] == Severity.LOW


def test_sec009_silent_when_pinned_as_each_product_needs() -> None:
    data = compose(service("maria", "mariadb:10.11.9-jammy"), service("my", "mysql:8.4.2"),
                   service("mongo", "mongo:7.0.14"), service("cache", "redis:7.4"),
                   service("search", "elasticsearch:8.15.0"), service("pg", "postgres:9.6.24"))
    assert run("SEC009", data) == []


def test_tag_risk_per_product_table() -> None:
    def severity(kind: str, tag: str | None) -> Severity | None:
        risk = tag_risk(kind, tag, None)
        return None if risk is None else risk[0]

    assert severity("mariadb", "10") == Severity.HIGH and severity("mariadb", "10.6") == Severity.LOW
    assert severity("mysql", "8.0") == Severity.LOW and severity("mysql", "innovation") == Severity.HIGH
    assert severity("mongo", "7.0") == Severity.LOW and severity("mongo", "latest") == Severity.HIGH
    assert severity("redis", "7-alpine") == Severity.LOW and severity("redis", None) == Severity.MEDIUM
    assert severity("postgres", "9.6") == Severity.LOW and severity("postgres", "9") == Severity.HIGH
    assert severity("postgres", "16-alpine3.20") == Severity.LOW


# --- SEC010: monitoring UIs and APIs ----------------------------------------------------------------------


def grafana(**env: str) -> dict[str, Any]:
    return service("grafana", "grafana/grafana:12.1.0", environment=env, ports=[port("3000", 3000)])


def test_sec010_fires_on_grafana_anonymous_editor_and_disabled_login_form() -> None:
    data = compose(grafana(GF_AUTH_ANONYMOUS_ENABLED="true", GF_AUTH_ANONYMOUS_ORG_ROLE="Editor",
                           GF_AUTH_DISABLE_LOGIN_FORM="true"))
    hits = run("SEC010", data)
    assert [sev for _, sev, _ in hits] == [Severity.CRITICAL, Severity.MEDIUM]
    assert "without a login as Editor on all interfaces (0.0.0.0:3000->3000)" in hits[0][2]
    assert "login form disabled" in hits[1][2]


def test_sec010_fires_on_grafana_ini_admin_role_and_on_auth_proxy_published() -> None:
    unpublished = service("grafana", "grafana/grafana:12.1.0")
    data = compose(unpublished)
    data["monitoring"] = {"grafana_ini": [{"project": "shop", "service": "grafana", "path": "/srv/g.ini",
                                           "settings": {"auth.anonymous.enabled": "true",
                                                        "auth.anonymous.org_role": "Admin"}}]}
    assert [sev for _, sev, _ in run("SEC010", data)] == [Severity.HIGH]
    # the variable wins over the file, as in Grafana
    unpublished["environment"] = {"GF_AUTH_ANONYMOUS_ENABLED": "false"}
    assert run("SEC010", data) == []
    proxied = compose(grafana(GF_AUTH_PROXY_ENABLED="true", GF_AUTH_DISABLE_LOGIN_FORM="true"))
    ((_, severity, message),) = run("SEC010", proxied)
    assert severity == Severity.HIGH and "anyone can sign in as anyone" in message


def test_sec010_fires_on_prometheus_loki_and_exporters_on_all_interfaces() -> None:
    data = compose(
        service("prometheus", "prom/prometheus:v3.5.0", ports=[port("9090", 9090)],
                command=["--config.file=/etc/prometheus/prometheus.yml", "--web.enable-admin-api"]),
        service("loki", "grafana/loki:3.4.2", ports=[port("3100", 3100, "0.0.0.0")]),
        service("alertmanager", "prom/alertmanager:v0.28.1", ports=[port("9093", 9093)]),
        service("node-exporter", "prom/node-exporter:v1.9.1", network_mode="host", command=[]),
    )
    hits = {s: (sev, m) for s, sev, m in run("SEC010", data)}
    assert hits["shop/prometheus"][0] == Severity.HIGH
    assert "--web.enable-admin-api" in hits["shop/prometheus"][1]
    assert hits["shop/loki"][0] == Severity.HIGH and hits["shop/alertmanager"][0] == Severity.MEDIUM
    assert hits["shop/node-exporter"][0] == Severity.LOW
    assert "host network, port 9100" in hits["shop/node-exporter"][1]


def test_sec010_silent_for_private_monitoring() -> None:
    data = compose(
        grafana(GF_AUTH_ANONYMOUS_ENABLED="true", GF_AUTH_ANONYMOUS_ORG_ROLE="Viewer") | {
            "ports": [port("3000", 3000, "127.0.0.1")]},
        service("grafana2", "grafana/grafana-oss:12.1.0",
                environment={"GF_AUTH_DISABLE_LOGIN_FORM": "true", "GF_AUTH_GENERIC_OAUTH_ENABLED": "true"}),
        service("prometheus", "prom/prometheus:v3.5.0", ports=[port("9090", 9090, "127.0.0.1")]),
        service("secured", "prom/prometheus:v3.5.0", ports=[port("9091", 9090)],
                command=["--web.config.file=/etc/prometheus/web.yml"]),
        service("node-exporter", "prom/node-exporter:v1.9.1", network_mode="host",
                command=["--web.listen-address=127.0.0.1:9100"]),
        service("postgres-exporter", "prometheuscommunity/postgres-exporter:v0.17.1"),
    )
    assert run("SEC010", data) == []
