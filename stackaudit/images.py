"""Image references and what a container is (a datastore, a monitoring component), as pure functions.

Rules and collectors recognise a service by its image's repository name (`prom/node-exporter` ->
"node_exporter"), falling back to the service or container name for locally built images.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ImageRef:
    repository: str  # without registry host and tag: "library/postgres", "prom/prometheus"
    tag: str | None
    digest: str | None

    @property
    def basename(self) -> str:
        return self.repository.rsplit("/", 1)[-1].lower()


def parse_image(reference: str | None) -> ImageRef:
    """`registry:5000/team/app:1.2@sha256:..` -> ImageRef("team/app", "1.2", "sha256:..")."""
    text = (reference or "").strip()
    digest = None
    if "@" in text:
        text, digest = text.split("@", 1)
    tag = None
    last = text.rsplit("/", 1)[-1]
    if ":" in last:  # a colon before the last slash is a registry port, not a tag
        text, tag = text.rsplit(":", 1)
    parts = text.split("/")
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        parts = parts[1:]
    return ImageRef("/".join(parts), tag or None, digest)


# Datastores by image repository basename; the value is the kind rules talk about.
_DATASTORES: dict[str, str] = {
    "postgres": "postgres", "postgis": "postgres", "timescaledb": "postgres",
    "timescaledb-ha": "postgres", "pgvector": "postgres", "postgresql": "postgres",
    "redis": "redis", "redis-stack": "redis", "redis-stack-server": "redis", "valkey": "redis",
    "keydb": "redis", "dragonfly": "redis",
    "mysql": "mysql", "mariadb": "mysql", "percona-server": "mysql",
    "mongo": "mongo", "mongodb": "mongo", "mongodb-community-server": "mongo",
    "elasticsearch": "elasticsearch", "opensearch": "elasticsearch",
    "memcached": "memcached", "rabbitmq": "rabbitmq", "clickhouse-server": "clickhouse",
    "cassandra": "cassandra", "couchdb": "couchdb", "influxdb": "influxdb", "neo4j": "neo4j",
    "meilisearch": "meilisearch", "typesense": "typesense", "minio": "minio",
}

# Datastores whose on-disk format is tied to the major version: a floating tag that crosses a
# major makes the new container refuse (PostgreSQL) or silently upgrade (MySQL, MongoDB) the data.
MAJOR_BOUND_DATASTORES = frozenset({"postgres", "mysql", "mongo", "elasticsearch", "clickhouse",
                                    "cassandra", "influxdb", "neo4j"})

# Monitoring components by image basename, process name or service name.
_MONITORING: dict[str, str] = {
    "prometheus": "prometheus",
    "grafana": "grafana", "grafana-oss": "grafana", "grafana-enterprise": "grafana",
    "grafana-server": "grafana",
    "loki": "loki", "promtail": "promtail",
    "alertmanager": "alertmanager", "prometheus-alertmanager": "alertmanager",
    "cadvisor": "cadvisor",
    "node-exporter": "node_exporter", "node_exporter": "node_exporter",
    "prometheus-node-exporter": "node_exporter",
    "postgres-exporter": "postgres_exporter", "postgres_exporter": "postgres_exporter",
    "prometheus-postgres-exporter": "postgres_exporter",
    "redis-exporter": "redis_exporter", "redis_exporter": "redis_exporter",
    "prometheus-redis-exporter": "redis_exporter",
    "mysqld-exporter": "mysql_exporter", "mysqld_exporter": "mysql_exporter",
    "mongodb-exporter": "mongo_exporter", "mongodb_exporter": "mongo_exporter",
    "elasticsearch-exporter": "elasticsearch_exporter", "elasticsearch_exporter": "elasticsearch_exporter",
    "memcached-exporter": "memcached_exporter", "memcached_exporter": "memcached_exporter",
    "alloy": "agent", "grafana-agent": "agent", "agent": "agent", "telegraf": "agent",
    "netdata": "agent", "vector": "agent", "otel-collector": "agent",
    "opentelemetry-collector-contrib": "agent",
}

# Which component gives metrics of what: a datastore kind, or "host" / "containers".
EXPORTS_FOR: dict[str, str] = {
    "node_exporter": "host", "cadvisor": "containers", "postgres_exporter": "postgres",
    "redis_exporter": "redis", "mysql_exporter": "mysql", "mongo_exporter": "mongo",
    "elasticsearch_exporter": "elasticsearch", "memcached_exporter": "memcached",
}

# Agents that need the Docker socket, privileges or the host network to do their job.
HOST_AGENTS = frozenset({
    "cadvisor", "node-exporter", "node_exporter", "prometheus-node-exporter", "promtail", "alloy",
    "grafana-agent", "telegraf", "netdata", "watchtower", "autoheal", "docker-autoheal",
    "docker-socket-proxy", "socket-proxy", "traefik", "caddy-docker-proxy", "nginx-proxy",
    "docker-gen", "dozzle", "portainer-agent", "agent", "vector", "fluent-bit", "fluentd",
    "diun", "ofelia", "docker-volume-backup",
})

# Reverse proxies that usually terminate TLS in front of an app.
TLS_PROXIES = frozenset({"cloudflared", "traefik", "caddy", "nginx", "nginx-proxy", "haproxy", "envoy",
                         "nginx-proxy-manager", "swag", "caddy-docker-proxy", "kamal-proxy", "openresty"})


def _normalise(name: str | None) -> str:
    return re.sub(r"[-_]\d+$", "", (name or "").strip().lower())  # "redis-1" -> "redis"


def monitoring_kind(image: str | None, name: str | None = None) -> str | None:
    """"prometheus", "node_exporter", ... for a monitoring component, by image then by name."""
    base = parse_image(image).basename if image else ""
    if base in _MONITORING:
        return _MONITORING[base]
    return _MONITORING.get(_normalise(name))


def is_host_agent(image: str | None, name: str | None = None) -> bool:
    base = parse_image(image).basename if image else ""
    return base in HOST_AGENTS or _normalise(name) in HOST_AGENTS


def is_tls_proxy(image: str | None, name: str | None = None) -> bool:
    base = parse_image(image).basename if image else ""
    return base in TLS_PROXIES or (not image and _normalise(name) in TLS_PROXIES)


# --- what a compose service is, from all its evidence ---------------------------------------------
#
# The one place that classifies a service. The compose collector stamps the answer on every service
# (`kind`, `product`, `kind_evidence`); rules, the memory budget and the collectors read it through
# `service_product` / `service_kind`, which classify again only for snapshots older than the stamp.

# Images that carry a datastore's name but are not that datastore: clients, exporters, admin UIs,
# poolers, backup sidecars.
_NOT_THE_DATASTORE = re.compile(
    r"(exporter|pgadmin|adminer|admin|pgbouncer|pgcat|pgpool|odyssey|backup|pgbackrest|wal-g|barman|"
    r"commander|insight|-ui$|^ui-|dump|cron|migrat|proxy|bouncer|postgrest|operator|express|-client$|"
    r"-cli$)")

# Words in a derived image's repository (auto-upgrade wrappers, PostGIS/Timescale builds, vendor
# images) that say which datastore it runs.
_DERIVED_WORDS: tuple[tuple[str, str], ...] = (
    ("postgres", "postgres"), ("postgis", "postgres"), ("timescale", "postgres"), ("pgvector", "postgres"),
    ("pgautoupgrade", "postgres"), ("supabase/postgres", "postgres"), ("spilo", "postgres"),
    ("pgvecto", "postgres"), ("vectorchord", "postgres"), ("paradedb", "postgres"),
    ("citusdata/citus", "postgres"), ("apache/age", "postgres"),  # PostgreSQL with an extension
    ("redis", "redis"), ("valkey", "redis"), ("keydb", "redis"), ("dragonfly", "redis"),
    ("mariadb", "mysql"), ("mysql", "mysql"), ("percona", "mysql"),
    ("mongo", "mongo"), ("elasticsearch", "elasticsearch"), ("opensearch", "elasticsearch"),
)

# Server-side evidence per product: the command's program, healthcheck probes, variables only the
# server image reads, and the default container port.
_SERVER_PROGRAMS = {"postgres": "postgres", "redis-server": "redis", "valkey-server": "redis",
                    "keydb-server": "redis", "redis-stack-server": "redis", "mysqld": "mysql",
                    "mariadbd": "mysql", "mongod": "mongo"}
_HEALTH_PROBES = (("pg_isready", "postgres"), ("redis-cli", "redis"), ("valkey-cli", "redis"),
                  ("mysqladmin", "mysql"), ("healthcheck.sh", "mysql"), ("mongosh", "mongo"))
_SERVER_ENV = re.compile(r"^(PGDATA|POSTGRES_INITDB_ARGS|POSTGRES_INITDB_WALDIR|POSTGRES_HOST_AUTH_METHOD"
                         r"|MYSQL_ROOT_PASSWORD|MARIADB_ROOT_PASSWORD|MYSQL_ALLOW_EMPTY_PASSWORD"
                         r"|MARIADB_ALLOW_EMPTY_ROOT_PASSWORD|MYSQL_RANDOM_ROOT_PASSWORD"
                         r"|REDIS_ARGS|REDIS_EXTRA_FLAGS|REDIS_AOF_ENABLED"
                         r"|MONGO_INITDB_ROOT_USERNAME)$")
_SERVER_ENV_PRODUCT = {"PG": "postgres", "POSTGRES": "postgres", "MYSQL": "mysql", "MARIADB": "mysql",
                       "REDIS": "redis", "MONGO": "mongo"}
# Variables a server image reads that a client never names (a client has *_HOST, *_URL, *_PORT).
_IMAGE_ENV = re.compile(r"^(POSTGRES|MYSQL|MARIADB|REDIS|MONGO)_(USER|PASSWORD|DB|DATABASE|PASSWORD_FILE"
                        r"|ROOT_PASSWORD_FILE)$")
_CLIENT_ENV = re.compile(r"(_HOST|_URL|_URI|_DSN|_ADDR|_SERVER|_PORT)$|^DATABASE_")
_DEFAULT_PORTS = {5432: "postgres", 6379: "redis", 3306: "mysql", 27017: "mongo"}
# A datastore image run as a client (a backup cron on the postgres image, a redis-cli one-shot).
_CLIENT_TOOLS = re.compile(r"\b(pg_dump|pg_dumpall|psql|pg_basebackup|pg_restore|redis-cli|valkey-cli|"
                           r"mysqldump|mariadb-dump|mongodump|mongorestore)\b")
_APP_PROGRAMS = re.compile(r"^(bundle|rails|puma|unicorn|sidekiq|gunicorn|uvicorn|celery|rq|rqworker|"
                           r"python\d*|node|npm|yarn|php|php-fpm|java|ruby|dramatiq|huey|manage\.py)$")
_WORKER_WORDS = re.compile(r"\b(sidekiq|good_job|solid_queue|resque|delayed_job|jobs:work|celery|"
                           r"rq|rqworker|dramatiq|huey|worker)\b")
_APP_SERVER_WORDS = re.compile(r"\b(puma|unicorn|passenger|gunicorn|uvicorn|hypercorn|daphne|"
                               r"rails (s|server)|runserver|php-fpm|node|next start)\b")
_QUEUE_KEYS = re.compile(r"SIDEKIQ|BROKER|CELERY|(^|_)RQ(_|$)|QUEUE|JOB")
_CACHE_KEYS = re.compile(r"CACHE|RESULT_BACKEND|SESSION")

DATASTORE_KINDS = {"postgres": "database", "mysql": "database", "mongo": "database",
                   "elasticsearch": "database", "clickhouse": "database", "cassandra": "database",
                   "couchdb": "database", "influxdb": "database", "neo4j": "database",
                   "meilisearch": "database", "typesense": "database", "minio": "database",
                   "redis": "cache", "memcached": "cache", "rabbitmq": "queue"}


@dataclass(frozen=True)
class ServiceKind:
    kind: str  # database | queue | cache | app_server | worker | monitoring | proxy | other
    product: str | None  # postgres | redis | mysql | ... | prometheus | ...
    evidence: tuple[str, ...]


def _argv_words(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    return str(value).split() if value else []


def _program(service: Mapping[str, Any]) -> str:
    """The program the container runs: the command's first word (past an entrypoint wrapper)."""
    words = _argv_words(service.get("entrypoint")) + _argv_words(service.get("command"))
    words = [w for w in words if w not in ("docker-entrypoint.sh", "/usr/local/bin/docker-entrypoint.sh",
                                           "exec", "tini", "--", "/sbin/tini", "dumb-init")]
    return words[0].rsplit("/", 1)[-1] if words else ""


def _image_product(image: str | None) -> tuple[str | None, bool]:
    """(product, is_known_other): the datastore an image runs, or that it is a known non-datastore."""
    ref = parse_image(image)
    base, repo = ref.basename, ref.repository.lower()
    if base.endswith("exporter") or _NOT_THE_DATASTORE.search(base):
        return None, True
    if base in _DATASTORES:
        return _DATASTORES[base], False
    if base in _MONITORING or base in TLS_PROXIES:
        return None, True
    for word, product in _DERIVED_WORDS:
        if word in repo:
            return product, False
    return None, False


def _evidence_votes(service: Mapping[str, Any]) -> list[tuple[str, int, str]]:
    """(product, weight, why) from everything but the image."""
    votes: list[tuple[str, int, str]] = []
    program = _program(service)
    if program in _SERVER_PROGRAMS:
        votes.append((_SERVER_PROGRAMS[program], 3, f"command runs {program}"))
    health = " ".join((service.get("healthcheck") or {}).get("test") or [])
    for probe, product in _HEALTH_PROBES:
        if probe in health:
            votes.append((product, 2, f"healthcheck uses {probe}"))
            break
    env = [str(k) for k in service.get("environment") or {}]
    clients = {k.split("_")[0] for k in env if _CLIENT_ENV.search(k)}  # POSTGRES_HOST: a client's
    for key in env:
        if key.split("_")[0] in clients:
            continue
        if _SERVER_ENV.match(key):
            votes.append((_SERVER_ENV_PRODUCT[key.split("_")[0]] if key != "PGDATA" else "postgres", 2,
                          f"variable {key}"))
        elif _IMAGE_ENV.match(key):
            votes.append((_SERVER_ENV_PRODUCT[key.split("_")[0]], 1, f"variable {key}"))
    for port in service.get("ports") or []:
        by_port = _DEFAULT_PORTS.get(int(port.get("target") or 0))
        if by_port:
            votes.append((by_port, 1, f"container port {port.get('target')}"))
    name = _normalise(str(service.get("name") or ""))
    if _DATASTORES.get(name) in _DEFAULT_PORTS.values():
        votes.append((_DATASTORES[name], 1, f"service name {name}"))
    return votes


def classify_service(service: Mapping[str, Any]) -> ServiceKind:
    """What one compose service is, from its image, name, variables, command, healthcheck and ports.

    A known image decides (a pgadmin or an exporter is never the datastore it names); a derived or
    locally built image is judged by the server-side evidence, which must add up to 2: a client's
    REDIS_URL or POSTGRES_HOST is no evidence, and neither is a lone default port or name.
    """
    image = service.get("image")
    product, known_other = _image_product(str(image)) if image else (None, False)
    program = _program(service)
    if product and _runs_client_tool(service):
        repository = parse_image(str(image)).repository
        return ServiceKind("other", None, (f"image {repository} running a client tool",))
    if product:
        return ServiceKind(DATASTORE_KINDS.get(product, "database"), product,
                           (f"image {parse_image(str(image)).repository}",))
    monitoring = monitoring_kind(str(image) if image else None, None if image else service.get("name"))
    if monitoring:
        return ServiceKind("monitoring", monitoring, (f"monitoring component {monitoring}",))
    if not known_other and not _APP_PROGRAMS.match(program):
        scores: dict[str, int] = {}
        reasons: dict[str, list[str]] = {}
        for voted, weight, reason in _evidence_votes(service):
            scores[voted] = scores.get(voted, 0) + weight
            reasons.setdefault(voted, []).append(reason)
        if scores:
            best = max(scores, key=lambda p: scores[p])
            # a named image needs more than its variables (an app may carry POSTGRES_* for its client)
            beyond_env = image is None or any(not r.startswith("variable ") for r in reasons[best])
            named = not image and _normalise(str(service.get("name") or "")) in _DATASTORES
            if beyond_env and (scores[best] >= 2 or named):
                return ServiceKind(DATASTORE_KINDS.get(best, "database"), best, tuple(reasons[best]))
    return _process_kind(service, str(image) if image else None)


def _runs_client_tool(service: Mapping[str, Any]) -> bool:
    """The command runs pg_dump, redis-cli, ... and no server program."""
    words = _argv_words(service.get("entrypoint")) + _argv_words(service.get("command"))
    text = " ".join(words)
    servers = any(w.rsplit("/", 1)[-1] in _SERVER_PROGRAMS for part in words for w in part.split())
    return bool(_CLIENT_TOOLS.search(text)) and not servers


def _process_kind(service: Mapping[str, Any], image: str | None) -> ServiceKind:
    if is_tls_proxy(image, service.get("name")):
        return ServiceKind("proxy", None, ("reverse proxy image",))
    words = " ".join(_argv_words(service.get("entrypoint")) + _argv_words(service.get("command")))
    if _WORKER_WORDS.search(words.lower()):
        return ServiceKind("worker", None, (f"command {words[:60]}",))
    if _APP_SERVER_WORDS.search(words.lower()):
        return ServiceKind("app_server", None, (f"command {words[:60]}",))
    return ServiceKind("other", None, ())


def classify_project(services: Mapping[str, Mapping[str, Any]]) -> dict[str, ServiceKind]:
    """Every service's kind; a Redis that a worker or a queue variable points at is a queue."""
    kinds = {name: classify_service(svc) for name, svc in services.items()}
    for name, svc in services.items():
        for key, value in (svc.get("environment") or {}).items():
            host = redis_host(key, value)
            target = kinds.get(host or "")
            if target is None or target.product != "redis" or target.kind == "queue":
                continue
            if queue_or_cache(key, kinds[name].kind) == "queue":
                kinds[str(host)] = ServiceKind("queue", "redis",
                                               (*target.evidence, f"job queue of {name} ({key})"))
    return kinds


def redis_host(key: str, value: Any) -> str | None:
    """The Redis host a variable names: a redis:// URL's (`redis://:pw@cache:6379/0` -> "cache"), or
    the value of a REDIS_HOST-like variable; else None."""
    match = re.match(r"^rediss?://(?:[^@/]*@)?(\[[^\]]+\]|[^:/?#]+)", str(value or ""))
    if match:
        return match.group(1)
    upper = key.upper()
    if "REDIS" in upper and upper.endswith(("_HOST", "_HOSTNAME")) and value:
        return str(value).strip()
    return None


def queue_or_cache(key: str, user_kind: str) -> str:
    """How a service uses the Redis its variable `key` names: "queue", "cache" or "unknown"."""
    upper = key.upper()
    if _CACHE_KEYS.search(upper):
        return "cache"
    if _QUEUE_KEYS.search(upper) or user_kind == "worker":
        return "queue"
    return "unknown"


def service_kind(service: Mapping[str, Any]) -> ServiceKind:
    """The collector's stamp when present (it saw the whole project), else classified now."""
    if "kind" in service:
        return ServiceKind(str(service["kind"]), service.get("product"),
                           tuple(service.get("kind_evidence") or ()))
    return classify_service(service)


def service_product(service: Mapping[str, Any]) -> str | None:
    """"postgres", "redis", ... for a datastore service, else None."""
    found = service_kind(service)
    return found.product if found.kind in ("database", "cache", "queue") else None


def datastore_kind(image: str | None, name: str | None = None) -> str | None:
    """The one classifier on what a caller knows of a container: its image and name."""
    return service_product({"image": image, "name": name})
