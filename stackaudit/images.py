"""Image references and what a container is (a datastore, a monitoring component), as pure functions.

Rules and collectors recognise a service by its image's repository name (`prom/node-exporter` ->
"node_exporter"), falling back to the service or container name for locally built images.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


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


def datastore_kind(image: str | None, name: str | None = None) -> str | None:
    """"postgres", "redis", ... for a datastore image (or, for a built image, its service name)."""
    base = parse_image(image).basename if image else ""
    if base in _DATASTORES:
        return _DATASTORES[base]
    if base.endswith("exporter"):
        return None
    return _DATASTORES.get(_normalise(name)) if not image else None


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
