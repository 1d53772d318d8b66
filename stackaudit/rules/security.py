"""Security rules: who could get in (SEC).

Compose-based checks read the normalised compose facts (and the docker containers when collected,
for stacks started otherwise); env file checks read facts["env"]["files"]; PostgreSQL and Redis
facts are read defensively, since those collectors may not give every key.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from stackaudit.config import Settings
from stackaudit.derive import Derived
from stackaudit.facts import Facts
from stackaudit.images import (
    MAJOR_BOUND_DATASTORES,
    is_host_agent,
    is_tls_proxy,
    monitoring_kind,
    parse_image,
    service_product,
)
from stackaudit.model import Evidence, Hit, Phase, Recommendation, Risk, Severity
from stackaudit.network import on_all_interfaces
from stackaudit.rules import rule

LOOPBACK = re.compile(r"^(127\.\d+\.\d+\.\d+|::1|\[::1\]|localhost)$")
SECRET_FILE_NAME = re.compile(r"(^\.env($|\.)|\.env$|\.(key|pem|p12|pfx)$)")
TRUTHY = frozenset({"true", "1", "yes", "on", "enabled", "y"})
RAILS_SSL_KEYS = ("RAILS_FORCE_SSL", "RAILS_ASSUME_SSL", "FORCE_SSL", "ASSUME_SSL")
FLOATING_TAGS = frozenset({"latest", "stable", "lts", "mainline", "edge", "current", "alpine", "bookworm",
                           "bullseye", "jammy", "noble"})
BARE_MAJOR_TAG = re.compile(r"^v?\d+(-[a-z][a-z0-9.]*)?$")  # "16", "16-alpine", "7-bookworm"
DOCKER_SOCKETS = ("/var/run/docker.sock", "/run/docker.sock")
# Job runners: they serve no request, so SSL request settings do not apply to them.
WORKER_COMMAND = re.compile(r"\b(sidekiq|good_job|solid_queue|solid-queue|resque|delayed_job|jobs:work|"
                            r"celery|rq worker|rqworker|dramatiq|huey)\b")


def _name(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def _where(file: Any, line: Any) -> str:
    return f"{file}:{line}" if line else str(file)


# --- SEC001 / SEC002: secrets files --------------------------------------------------------------

def secret_files(facts: Facts) -> Iterator[dict[str, Any]]:
    """Env files that exist and hold a secret (judged by value: a `_FILE` path, a switch or an empty
    value is none), then private keys (facts["env"]["key_files"], found by name and first line)."""
    for file in facts.get("env").get("files", []):
        if file.get("exists") is False or file.get("template"):  # .env.example is meant to be shared
            continue
        if file.get("secret_keys"):
            yield file
    for key in facts.get("env").get("key_files", []):
        if key.get("exists") is not False:
            yield key


def _holds(file: dict[str, Any]) -> str:
    """What the file holds, by key names or key type, never by value."""
    if file.get("private_key"):
        return f"a private key ({file['private_key']})"
    keys = list(file.get("secret_keys") or [])
    shown = ", ".join(keys[:6]) + (f" and {len(keys) - 6} more" if len(keys) > 6 else "")
    return f"secrets ({shown})"


def mode_bits(file: dict[str, Any]) -> int | None:
    mode = file.get("mode")
    if isinstance(mode, int):
        return mode & 0o7777
    if isinstance(mode, str) and re.fullmatch(r"(0o?)?[0-7]{3,4}", mode):
        return int(mode.removeprefix("0o"), 8)
    return None


def _readable_by(file: dict[str, Any]) -> tuple[bool, bool]:
    bits = mode_bits(file)
    group = file.get("group_readable")
    world = file.get("world_readable")
    if group is None and bits is not None:
        group = bool(bits & 0o040)
    if world is None and bits is not None:
        world = bool(bits & 0o004)
    return bool(group), bool(world)


@rule("SEC001", "env-file-permissions", Severity.HIGH, needs=("env",))
def env_file_permissions(facts: Facts, settings: Settings) -> Iterator[Hit]:
    """
    ## What it checks
    Secrets files of the stack that the group or every user of the host can read, or that belong to
    another user than the one who owns the project directory (the user that runs the stack). A file
    counts when it holds a secret, judged by value: an `.env` or `env_file:` target with a password,
    token or key (a `*_FILE` path, a switch like `MYSQL_ALLOW_EMPTY_PASSWORD=yes` or an empty value
    is none), or a private key in the project (`*.key`, a `*.pem` holding a PRIVATE KEY block,
    `id_rsa`/`id_ed25519`, `*.p12`). The finding names the keys, never their values.

    ## Why it matters
    Those files hold the database password, SECRET_KEY_BASE, API tokens and TLS or SSH private
    keys. A world-readable file gives them to any process or account on the host (a compromised web
    app running as another user, a shared CI runner); a file owned by another account lets that
    account change them. Only values are secret: a file with no secret in it is not reported.

    ## Recommendation
    `chmod 600` the file and `chown` it to the user that runs `docker compose`.

    ## Estimated effect
    Only the stack's own user (and root) can read the secrets.

    ## Fix safety
    Safe for Compose itself: `env_file` and `.env` are read by the `docker compose` client as the
    user who runs it, and containers get the values through their environment. Check first whether a
    container bind-mounts the file and reads it as another uid.

    ## References
    - Compose docs, "Set environment variables" (`env_file`):
      https://docs.docker.com/compose/how-tos/environment-variables/set-environment-variables/
    - chmod(1): https://man7.org/linux/man-pages/man1/chmod.1.html
    - OpenSSH ssh(1) ("private keys ... must not be accessible by others"): https://man.openbsd.org/ssh.1
    """
    for file in secret_files(facts):
        path = str(file.get("path"))
        group, world = _readable_by(file)
        bits = mode_bits(file)
        mode = f"{bits:04o}" if bits is not None else str(file.get("mode"))
        evidence = [Evidence("env", "path", path), Evidence("env", "mode", mode, "0600"),
                    Evidence("env", "owner", file.get("owner") or file.get("owner_uid")),
                    Evidence("env", "secret_keys", list(file.get("secret_keys") or [])),
                    Evidence("env", "private_key", file.get("private_key"))]
        if world or group:
            who = "every user of the host" if world else "its group"
            yield Hit(path, f"{path} holds {_holds(file)} (mode {mode}) and is readable by {who}.",
                      _chmod_recommendation(path), evidence,
                      severity=Severity.HIGH if world else Severity.MEDIUM)
        expected_uid = file.get("dir_owner_uid")
        owner_uid = file.get("owner_uid")
        if expected_uid is not None and owner_uid not in (None, 0, expected_uid):
            yield Hit(path, f"{path} belongs to uid {owner_uid}, not to uid {expected_uid} that owns the "
                            "project directory: that other account can read and change the secrets.",
                      _chmod_recommendation(path, expected_uid),
                      [*evidence, Evidence("env", "owner_uid", owner_uid, expected_uid)],
                      severity=Severity.MEDIUM)


def _chmod_recommendation(path: str, uid: Any = None) -> Recommendation:
    chown = f" && chown {uid} {path}" if uid is not None else ""
    return Recommendation(f"Restrict {path} to the stack's user.", "Secrets readable only by that user.",
                          Risk.SAFE, 2, Phase.NOW, f"chmod 600 {path}{chown}")


@rule("SEC002", "env-file-in-git", Severity.HIGH, needs=("env",))
def env_file_in_git(facts: Facts, settings: Settings) -> Iterator[Hit]:
    """
    ## What it checks
    Secrets files (env files holding a secret, private keys: see SEC001) that git tracks, or that sit
    in a git working tree without being ignored
    (`git ls-files --error-unmatch`, `git check-ignore`: git itself answers, with every .gitignore,
    .git/info/exclude and core.excludesFile taken into account).

    ## Why it matters
    A tracked file's secrets are in every clone and in the history forever; an unignored one is one
    `git add .` away from it.

    ## Recommendation
    Add the file to `.gitignore`; if it was ever committed, remove it from the index with
    `git rm --cached` and rotate every secret it held (the history keeps the old values): a new
    password, token or key pair (and revoke the old certificate or SSH key).

    ## Estimated effect
    Secrets stop travelling with the code.

    ## Fix safety
    Manual: rotating secrets means changing them in the services that use them.

    ## References
    - git-check-ignore(1): https://git-scm.com/docs/git-check-ignore
    - git-ls-files(1): https://git-scm.com/docs/git-ls-files
    - gitignore(5): https://git-scm.com/docs/gitignore
    - GitHub docs, "Removing sensitive data from a repository":
      https://docs.github.com/en/authentication/keeping-your-account-and-data-secure/removing-sensitive-data-from-a-repository
    """
    for file in secret_files(facts):
        git = file.get("git") or {}
        if not git.get("repo"):
            continue
        path = str(file.get("path"))
        evidence = [Evidence("env", "path", path), Evidence("env", "git_repo", git["repo"]),
                    Evidence("env", "tracked", bool(git.get("tracked")), False),
                    Evidence("env", "ignored", bool(git.get("ignored")), True)]
        if git.get("tracked"):
            yield Hit(path, f"{path} holds {_holds(file)} and is tracked by the git repository "
                            f"{git['repo']}: they are in every clone and in the history.",
                      Recommendation(f"Untrack {path}, ignore it and rotate its secrets.",
                                     "Secrets leave the repository from now on; rotation voids the old ones.",
                                     Risk.MANUAL, 60, Phase.NOW,
                                     f"git rm --cached {path} && echo '{_name(path)}' >> .gitignore"),
                      evidence, severity=Severity.HIGH)
        elif not git.get("ignored"):
            yield Hit(path, f"{path} holds {_holds(file)} inside the git repository {git['repo']} and no "
                            ".gitignore rule covers it: `git add .` would commit it.",
                      Recommendation(f"Add {path} to .gitignore.",
                                     "The file cannot be committed by accident.", Risk.SAFE, 2, Phase.NOW,
                                     f"echo '{_name(path)}' >> .gitignore"),
                      evidence, severity=Severity.MEDIUM)


# --- SEC003: secrets written in files ------------------------------------------------------------

# Images whose entrypoint reads VAR from the file that VAR_FILE names (Docker secrets), per their docs:
# postgres (Docker Hub "postgres", "Docker Secrets": POSTGRES_INITDB_ARGS, POSTGRES_PASSWORD,
# POSTGRES_USER, POSTGRES_DB; postgis, timescaledb and pgvector build on its entrypoint), mariadb
# ("Docker Secrets": the MARIADB_*/MYSQL_* root password, password, user, database, root host), mysql
# ("Docker Secrets": MYSQL_ROOT_PASSWORD, MYSQL_ROOT_HOST, MYSQL_DATABASE, MYSQL_USER,
# MYSQL_PASSWORD), mongo ("Docker Secrets": MONGO_INITDB_ROOT_USERNAME, MONGO_INITDB_ROOT_PASSWORD),
# wordpress ("Docker Secrets": WORDPRESS_DB_HOST, _USER, _PASSWORD, _NAME), nextcloud (README,
# "Docker Secrets"), grafana (Grafana docs, "Configure a Grafana Docker image": any GF_ variable
# with the suffix `__FILE`).
_POSTGRES_FILE_VARS = ("_FILE", re.compile(r"POSTGRES_(PASSWORD|USER|DB|INITDB_ARGS)"))
_GRAFANA_FILE_VARS = ("__FILE", re.compile(r"GF_\w+"))
FILE_VARIANTS: dict[str, tuple[str, re.Pattern[str]]] = {
    "postgres": _POSTGRES_FILE_VARS, "postgis": _POSTGRES_FILE_VARS, "timescaledb": _POSTGRES_FILE_VARS,
    "pgvector": _POSTGRES_FILE_VARS,
    "mariadb": ("_FILE", re.compile(r"(MARIADB|MYSQL)_(ROOT_PASSWORD|PASSWORD|USER|DATABASE|ROOT_HOST)")),
    "mysql": ("_FILE", re.compile(r"MYSQL_(ROOT_PASSWORD|PASSWORD|USER|DATABASE|ROOT_HOST)")),
    "mongo": ("_FILE", re.compile(r"MONGO_INITDB_ROOT_(USERNAME|PASSWORD)")),
    "wordpress": ("_FILE", re.compile(r"WORDPRESS_DB_(HOST|USER|PASSWORD|NAME)")),
    "nextcloud": ("_FILE", re.compile(r"(POSTGRES|MYSQL)_(PASSWORD|USER|DB|DATABASE)|NEXTCLOUD_ADMIN_"
                                      r"(USER|PASSWORD)|REDIS_HOST_PASSWORD|SMTP_PASSWORD")),
    "grafana": _GRAFANA_FILE_VARS, "grafana-oss": _GRAFANA_FILE_VARS,
    "grafana-enterprise": _GRAFANA_FILE_VARS,
}


def file_variant(image: str | None, key: str) -> str | None:
    """The `_FILE` variable the image documents for `key`, or None."""
    if not image:
        return None
    variant = FILE_VARIANTS.get(parse_image(image).basename)
    if variant is None or not variant[1].fullmatch(key):
        return None
    return f"{key}{variant[0]}"


def secret_recommendation(service: str, image: str | None, key: str, weak: bool) -> Recommendation:
    """`_FILE` + `secrets:` where the image reads one, else `${KEY:?}` from a 0600, ignored .env."""
    fresh = " Generate a new value (`openssl rand -hex 32`) and change it where it is used." if weak else ""
    variant = file_variant(image, key)
    if variant:
        name = f"{service}_{key.lower()}"
        action = (f"services:\n  {service}:\n    environment:\n      {variant}: /run/secrets/{name}\n"
                  f"    secrets: [{name}]\nsecrets:\n  {name}:\n    file: ./secrets/{name}"
                  "  # chmod 600, in .gitignore")
        return Recommendation(f"Pass {key} as a Compose secret: {image} reads {variant}.{fresh}",
                              "The secret leaves the compose file and the container's environment "
                              "(docker inspect no longer shows it).", Risk.MANUAL, 20, Phase.WEEK, action)
    return Recommendation(f"Move {key} to the project's .env (chmod 600, ignored by git) and require it."
                          f"{fresh}", "The secret leaves the repository.", Risk.MANUAL, 15, Phase.WEEK,
                          f"{key}: ${{{key}:?{key} must be set}}")


@rule("SEC003", "secret-in-compose", Severity.MEDIUM, needs=("compose",))
def secret_in_compose(facts: Facts, settings: Settings) -> Iterator[Hit]:
    """
    ## What it checks
    Secrets written literally in compose files, including the default of a `${VAR:-secret}`
    interpolation, and guessable secrets in the stack's .env files. A secret is judged by its name
    and its value: `*_PASSWORD`, `*_PW`, `*_PASS`, `*_TOKEN`, `*_SECRET`, URL passwords, and `*_KEY`
    holding key material; not a `*_FILE` path, a value under /run/secrets, a switch (`yes`, `true`)
    or a role name. A guessable value (changeme, password, secret, a single word, the service's,
    project's or image's own name, with or without digits around it) is reported as weak, HIGH.

    ## Why it matters
    Compose files are committed and copied around: a literal secret there is public to everyone who
    sees the repository. A guessable password is the first one an attacker tries, and a default
    `${VAR:-secret}` silently takes over when the variable is missing.

    ## Recommendation
    Where the image reads the secret from a file (postgres, mariadb, mysql, mongo, grafana,
    nextcloud, wordpress document `VAR_FILE`), use `VAR_FILE: /run/secrets/NAME` with a Compose
    `secrets:` entry whose file is mode 600 and ignored by git. Otherwise move the value to the
    project's `.env` (mode 600, ignored) and write `${VAR:?VAR must be set}` so a missing value
    fails loudly. Replace guessable values with generated ones (`openssl rand -hex 32`).

    ## Estimated effect
    No secret in the repository; no guessable credential.

    ## Fix safety
    Manual: changing a database password needs the same change in the database (`ALTER ROLE`) and in
    every client, in one deploy.

    ## References
    - Compose docs, "Interpolation" (`${VAR:?err}`):
      https://docs.docker.com/reference/compose-file/interpolation/
    - Compose docs, "Secrets in Compose": https://docs.docker.com/compose/how-tos/use-secrets/
    - Docker Hub postgres image, "Docker Secrets": https://hub.docker.com/_/postgres
    - Docker Hub mariadb image, "Docker Secrets": https://hub.docker.com/_/mariadb
    - Docker Hub mysql image, "Docker Secrets": https://hub.docker.com/_/mysql
    - Docker Hub mongo image, "Docker Secrets": https://hub.docker.com/_/mongo
    - Grafana docs, "Configure a Grafana Docker image" (`__FILE`):
      https://grafana.com/docs/grafana/latest/setup-grafana/configure-docker/
    """
    for project in facts.get("compose").get("projects", []):
        services = project.get("services", {})
        for item in project.get("literal_secrets", []):
            yield _literal_secret_hit(project, services, item)
    for file in facts.get("env").get("files", []):
        if file.get("template"):  # placeholders are what an .env.example is for
            continue
        for weak in file.get("weak_values", []):
            where = _where(file.get("path"), weak.get("line"))
            yield Hit(f"{file.get('path')} {weak.get('key')}",
                      f"{weak.get('key')} in {where} is guessable ({weak.get('reason')}).",
                      Recommendation(f"Generate a new value for {weak.get('key')}.",
                                     "The credential can no longer be guessed.", Risk.MANUAL, 15, Phase.NOW,
                                     "openssl rand -hex 32"),
                      [Evidence("env", "location", where), Evidence("env", "key", weak.get("key")),
                       Evidence("env", "reason", weak.get("reason"))],
                      severity=Severity.HIGH)


def _literal_secret_hit(project: dict[str, Any], services: dict[str, Any], item: dict[str, Any]) -> Hit:
    where = _where(item.get("file"), item.get("line"))
    kind = item.get("kind", "literal")
    how = "as the default of a ${VAR:-...} interpolation" if kind == "default" else "literally"
    key, service, weak = str(item.get("key")), str(item.get("service")), item.get("weak")
    image = (services.get(service) or {}).get("image")
    guessable = f", and the value is guessable ({weak})" if weak else ""
    return Hit(f"{project.get('name')}/{service} {key}",
               f"{key} of service {service} is written {how} in {where}{guessable}.",
               secret_recommendation(service, image, key, bool(weak)),
               [Evidence("compose", "location", where), Evidence("compose", "key", key),
                Evidence("compose", "kind", kind), Evidence("compose", "weak", weak, None),
                Evidence("compose", "file_variant", file_variant(image, key))],
               severity=Severity.HIGH if weak else None)


# --- the stack's services, from compose and from the running containers ---------------------------

def stack_services(facts: Facts) -> Iterator[dict[str, Any]]:
    """Compose services and containers (not started from one of them) in one shape."""
    seen: set[tuple[Any, Any]] = set()
    for project in facts.get("compose").get("projects", []):
        files = project.get("files") or []
        for service in project.get("services", {}).values():
            seen.add((project.get("name"), service.get("name")))
            yield {"origin": "compose", "project": project.get("name"), "name": service.get("name"),
                   "image": service.get("image"), "file": files[0] if files else project.get("dir"),
                   "product": service_product(service), "origins": service.get("origins") or {},
                   "line": str((service.get("origins") or {}).get("ports", "")).rpartition(":")[2] or None,
                   "ports": [{"host_ip": p.get("host_ip"), "host_port": p.get("published"),
                              "container_port": p.get("target")} for p in service.get("ports") or []],
                   "privileged": bool(service.get("privileged")), "network_mode": service.get("network_mode"),
                   "pid_mode": service.get("pid_mode"), "ipc_mode": service.get("ipc_mode"),
                   "sockets": [v.get("source") for v in service.get("volumes") or []
                               if str(v.get("source") or "") in DOCKER_SOCKETS],
                   "cap_add": service.get("cap_add") or [],
                   "host_mounts": _binds(service.get("volumes"), lambda v: not v.get("read_only")),
                   "environment": service.get("environment") or {}, "labels": service.get("labels") or {},
                   "profiles": service.get("profiles") or [], "command": service.get("command") or []}
    for container in facts.get("docker").get("containers", []):
        key = (container.get("compose_project"), container.get("compose_service"))
        if key[1] is not None and key in seen:
            continue
        yield {"origin": "container", "project": key[0], "name": container.get("name"),
               "image": container.get("image"), "file": None, "line": None, "origins": {},
               "product": service_product({"image": container.get("image"), "name": container.get("name")}),
               "ports": [p for p in container.get("ports") or [] if p.get("host_port")],
               "privileged": bool(container.get("privileged")), "network_mode": container.get("network_mode"),
               "pid_mode": container.get("pid_mode"), "ipc_mode": container.get("ipc_mode"),
               "sockets": [m.get("source") for m in container.get("mounts") or []
                           if str(m.get("source") or "") in DOCKER_SOCKETS],
               "cap_add": container.get("cap_add") or [],
               "host_mounts": _binds(container.get("mounts"), lambda m: bool(m.get("rw", True))),
               "environment": {}, "labels": container.get("labels") or {}, "profiles": [], "command": []}


def _binds(mounts: Any, writable: Callable[[dict[str, Any]], bool]) -> list[tuple[str, bool]]:
    """(host path, writable) of the bind mounts, from compose volumes or docker inspect mounts."""
    return [(str(m["source"]), writable(m)) for m in mounts or []
            if m.get("type") == "bind" and m.get("source")]


def _label(service: dict[str, Any]) -> str:
    return f"{service['project']}/{service['name']}" if service.get("project") else str(service["name"])


def _location(service: dict[str, Any]) -> Evidence:
    if service["origin"] == "compose":
        return Evidence("compose", "file", _where(service["file"], service["line"]))
    return Evidence("docker", "container", service["name"])


@dataclass(frozen=True)
class PublicPort:
    """Where a service answers on all interfaces, kept as numbers (shown as text, never parsed back)."""

    host: str  # "0.0.0.0", "[::]", or "host network"
    host_port: Any
    container_port: Any

    def __str__(self) -> str:
        if self.host == "host network":
            return f"host network, port {self.container_port or 'default'} on all interfaces"
        return f"{self.host}:{self.host_port or 'a random host port'}->{self.container_port}"

    def loopback(self) -> str | None:
        """The compose line that publishes the same port on 127.0.0.1 only."""
        if self.host == "host network":
            return None
        return f'ports: ["127.0.0.1:{self.host_port or "PORT"}:{self.container_port}"]'


def _public_ports(service: dict[str, Any]) -> list[PublicPort]:
    public = []
    for port in service["ports"]:
        host_ip = port.get("host_ip") or ""
        if on_all_interfaces(host_ip):
            host = "0.0.0.0" if ":" not in host_ip else "[::]"
            public.append(PublicPort(host, port.get("host_port"), port.get("container_port")))
    return public


def _texts(public: list[PublicPort]) -> list[str]:
    return [str(p) for p in public]


def _redis_without_auth(derived: Derived, service: dict[str, Any]) -> str:
    """How we know this Redis takes no password ("" when it does or we cannot tell)."""
    for instance in derived.redis_instances:
        if instance.get("auth_required") is False and instance.get("service") == service["name"]:
            return (f"its files set no password ({instance.get('auth_source')})" if instance.get("from_files")
                    else "it answers without a password")
    return ""


@rule("SEC004", "datastore-port-public", Severity.HIGH, needs_any=("compose", "docker"))
def datastore_port_public(facts: Facts, settings: Settings, derived: Derived) -> Iterator[Hit]:
    """
    ## What it checks
    PostgreSQL, Redis and other datastores (MySQL/MariaDB, MongoDB, Elasticsearch, memcached,
    RabbitMQ...) whose port is published on all interfaces: a compose `ports:` entry without a host
    IP (`"5432:5432"`, or `"5432"` which picks a random host port), or bound to 0.0.0.0 / `::`.
    Read from the compose files and the running containers' port bindings. What a service is comes
    from all its evidence (images.classify_service): a PostgreSQL from a derived image
    (pgautoupgrade, PostGIS, Timescale, a registry mirror, a local build running `postgres`) or a
    Redis built with modules is still a datastore; an app with REDIS_URL, a pgadmin or an exporter
    is not.

    ## Why it matters
    Docker publishes ports with its own iptables rules, placed before the host firewall's: ufw or
    firewalld rules do not protect a published port. The datastore is then reachable from the
    internet, where scanners try default passwords within hours (Redis without a password is
    taken over to plant SSH keys or miners).

    ## Recommendation
    Do not publish the port: services reach the datastore on the compose network by its service name.
    If the host itself needs it (a backup script, an admin tunnel), bind it to loopback:
    `"127.0.0.1:5432:5432"`.

    ## Estimated effect
    The datastore is reachable only from the stack (and the host, with loopback).

    ## Fix safety
    Needs a `docker compose up -d` that recreates the container (a short restart); a client outside
    the host that used the public port stops working (use an SSH tunnel instead).

    ## References
    - Docker docs, "Packet filtering and firewalls" (Docker and ufw):
      https://docs.docker.com/engine/network/packet-filtering-firewalls/
    - Compose file reference, `ports` (HOST_IP):
      https://docs.docker.com/reference/compose-file/services/#ports
    """
    for service in stack_services(facts):
        kind = service["product"]
        public = _public_ports(service) if kind else []
        if not public:
            continue
        open_redis = _redis_without_auth(derived, service) if kind == "redis" else ""
        extra = f" and {open_redis}" if open_redis else ""
        loopback = public[0].loopback()
        yield Hit(_label(service),
                  f"{kind} service {_label(service)} is published on all interfaces "
                  f"({', '.join(_texts(public))}), "
                  f"which bypasses the host firewall{extra}.",
                  Recommendation("Remove the published port, or bind it to 127.0.0.1.",
                                 "The datastore is no longer reachable from outside the host.",
                                 Risk.CONFIRM, 10, Phase.NOW, loopback),
                  [_location(service),
                   Evidence(service["origin"], "ports", _texts(public), "127.0.0.1:... or none"),
                   Evidence(service["origin"], "datastore", kind)],
                  severity=Severity.CRITICAL if open_redis else None)


# --- SEC005: authentication of the datastores ----------------------------------------------------

def _setting(postgres: dict[str, Any], name: str) -> str | None:
    item = (postgres.get("settings") or {}).get(name)
    if isinstance(item, dict):
        value = item.get("setting", item.get("value"))
        return None if value is None else str(value)
    return None if item is None else str(item)


@rule("SEC005", "redis-no-auth", Severity.HIGH, needs_any=("redis", "compose", "postgres"))
def datastore_no_auth(facts: Facts, settings: Settings, derived: Derived) -> Iterator[Hit]:
    """
    ## What it checks
    Redis that answers commands without a password; PostgreSQL accepting connections without one
    (`POSTGRES_HOST_AUTH_METHOD=trust` in the compose environment, or a `trust` line for non-local
    addresses in pg_hba.conf when readable); passwords stored as md5 instead of scram-sha-256
    (`password_encryption`); and the app connecting as a superuser (its DATABASE_URL user is the
    image's POSTGRES_USER, which the official image creates as superuser, or the collector saw it).
    A Redis that cannot be read live is judged from its files: no `requirepass` in its command flags
    or mounted redis.conf (a `user default ... nopass` line counts as none), bitnami's
    `ALLOW_EMPTY_PASSWORD=yes` without REDIS_PASSWORD; the official image has no password unless
    one is set (it is built with protected mode off). An open Redis is HIGH when other hosts can
    reach it (published on all interfaces, the host network, or a server outside the stack whose
    bind address is unknown; a published one is CRITICAL under datastore-port-public) and MEDIUM
    when only the containers on its compose networks, and with a loopback port the host's own
    processes, can; PostgreSQL's `trust` is CRITICAL and HIGH on the same lines.

    ## Why it matters
    Any process that reaches an unauthenticated datastore owns its data; with Redis that includes
    writing files on the server (CONFIG SET dir). Inside a compose network that still means every
    other container: a server-side request forgery in the app reaches it. md5 password hashes can
    be replayed and are deprecated since PostgreSQL 18. A superuser app can drop any database, read files with
    COPY ... FROM and run programs (COPY ... PROGRAM), so one SQL injection becomes a server takeover.

    ## Recommendation
    Redis: `requirepass` (or ACL users) and the password in the clients' URL. PostgreSQL: remove
    POSTGRES_HOST_AUTH_METHOD=trust, use `scram-sha-256` in pg_hba.conf, set
    `password_encryption = scram-sha-256` and reset the passwords, and create an app role that owns
    its database without SUPERUSER.

    ## Estimated effect
    A network position alone no longer gives access to the data.

    ## Fix safety
    Confirm: clients need the new password in the same deploy; a password reset is needed to move
    stored hashes from md5 to SCRAM.

    ## References
    - Redis docs, "Redis security" (protected mode, AUTH):
      https://redis.io/docs/latest/operate/oss_and_stack/management/security/
    - PostgreSQL docs, "Password Authentication" (password_encryption):
      https://www.postgresql.org/docs/current/auth-password.html
    - The postgres image's documentation (POSTGRES_HOST_AUTH_METHOD): https://hub.docker.com/_/postgres
    """
    yield from _redis_auth(facts, derived)
    yield from _postgres_trust_env(facts)
    yield from _postgres_hba(facts)
    yield from _postgres_md5(facts)
    yield from _postgres_superuser(facts)


def _redis_auth(facts: Facts, derived: Derived) -> Iterator[Hit]:
    """Live servers answer for themselves; a Redis not read live is judged from its files."""
    live = [i for i in facts.get("redis").get("instances", []) if i.get("auth_required") is not None]
    judged = {(i.get("project"), i.get("service")) for i in live}
    views = [i for i in derived.redis_instances
             if i.get("from_files") and (i.get("project"), i.get("service")) not in judged]
    services = {(s["project"], s["name"]): s for s in stack_services(facts)}
    for instance in [*live, *views]:
        if instance.get("auth_required") is not False:
            continue
        name = instance.get("service") or instance.get("target")
        service = services.get((instance.get("project"), instance.get("service")))
        severity = Severity.HIGH if _reached_from_other_hosts(service) else Severity.MEDIUM
        who = _who_reaches(service)
        source = "redis"
        if instance.get("from_files"):
            source = str(instance.get("auth_source") or "compose")
            message = (f"Redis {instance.get('project')}/{name} runs without a password: its files set none "
                       f"({source}), so {who} can read and change the data.")
        else:
            message = (f"Redis {name} ({instance.get('target')}) accepts commands without a password: "
                       f"{who} can read and change the data.")
        yield Hit(f"redis {name}", message,
                  Recommendation("Set requirepass (or ACL users) and put the password in the clients' URLs.",
                                 "Reaching the port is no longer enough to read or change the data.",
                                 Risk.CONFIRM, 20, Phase.NOW, 'command: ["redis-server", "--requirepass", '
                                 '"${REDIS_PASSWORD:?}"]'),
                  [Evidence(source, "target", instance.get("target")),
                   Evidence(source, "auth_required", False, True)], severity=severity)


def _reached_from_other_hosts(service: dict[str, Any] | None) -> bool:
    """Whether other hosts reach this datastore: published on all interfaces, on the host network
    without a loopback bind, or not a service of the stack (its bind address is not known)."""
    host_network = service is not None and service["network_mode"] == "host"
    return service is None or bool(_public_ports(service)) or (host_network and not _binds_loopback(service))


def _who_reaches(service: dict[str, Any] | None) -> str:
    if _reached_from_other_hosts(service):
        return "anything that reaches its port"
    if service is not None and (service["ports"] or service["network_mode"] == "host"):
        return "every process of the host (its port is on loopback) and every container on its networks"
    return "every container on its networks (a request forgery in one of them is enough)"


def _binds_loopback(service: dict[str, Any]) -> bool:
    """The server's own flags bind it to loopback only: `redis-server --bind 127.0.0.1 -::1` (every
    address up to the next flag), `postgres -c listen_addresses=localhost`."""
    argv = [str(a) for a in service["command"] or []]
    for arg in argv:
        if arg.startswith("listen_addresses="):
            addresses = arg.partition("=")[2].strip("'\"").split(",")
            return all(LOOPBACK.match(a.strip()) for a in addresses)
    if "--bind" not in argv:
        return False
    addresses = list(itertools.takewhile(lambda a: not a.startswith("--"), argv[argv.index("--bind") + 1:]))
    return bool(addresses) and all(LOOPBACK.match(a.lstrip("-")) for a in addresses)


def _postgres_trust_env(facts: Facts) -> Iterator[Hit]:
    for service in stack_services(facts):
        method = str(service["environment"].get("POSTGRES_HOST_AUTH_METHOD") or "")
        if method.lower() != "trust":
            continue
        yield Hit(_label(service), f"{_label(service)} sets POSTGRES_HOST_AUTH_METHOD=trust: "
                                   f"{_who_reaches(service)} can connect as any role without a password.",
                  Recommendation("Remove POSTGRES_HOST_AUTH_METHOD and set POSTGRES_PASSWORD.",
                                 "PostgreSQL asks every network client for a password.", Risk.CONFIRM, 20,
                                 Phase.NOW, "POSTGRES_HOST_AUTH_METHOD: scram-sha-256"),
                  [_location(service),
                   Evidence("compose", "POSTGRES_HOST_AUTH_METHOD", "trust", "scram-sha-256")],
                  severity=Severity.CRITICAL if _reached_from_other_hosts(service) else Severity.HIGH)


def _postgres_hba(facts: Facts) -> Iterator[Hit]:
    hba = facts.get("postgres").get("hba") or []
    for line in hba if isinstance(hba, list) else []:
        method = str(line.get("auth_method") or "").lower()
        address = str(line.get("address") or "all")
        if not str(line.get("type", "")).startswith("host") or LOOPBACK.match(address.split("/")[0]):
            continue
        if method not in ("trust", "password"):
            continue
        where = _where(line.get("file_name") or "pg_hba.conf", line.get("line_number"))
        why = "without a password" if method == "trust" else "with the password sent in clear text"
        yield Hit(f"pg_hba {where}", f"pg_hba.conf ({where}) accepts {line.get('type')} connections from "
                                     f"{address} {why} (method {method}).",
                  Recommendation("Use scram-sha-256 for every non-local line of pg_hba.conf.",
                                 "Network clients must prove the password without sending it.",
                                 Risk.CONFIRM, 15, Phase.NOW, "SELECT pg_reload_conf();"),
                  [Evidence("postgres", "hba_line", where), Evidence("postgres", "auth_method", method,
                                                                      "scram-sha-256")],
                  severity=Severity.CRITICAL if method == "trust" else Severity.HIGH)


def _postgres_md5(facts: Facts) -> Iterator[Hit]:
    encryption = _setting(facts.get("postgres"), "password_encryption")
    if encryption is None or encryption.lower() != "md5":
        return
    yield Hit("postgres password_encryption", "PostgreSQL stores new passwords as md5 hashes "
                                              "(password_encryption = md5), not scram-sha-256.",
              Recommendation("Set password_encryption = scram-sha-256, then reset each role's password.",
                             "Stored hashes can no longer be replayed as passwords.", Risk.CONFIRM, 20,
                             Phase.MONTH, "ALTER SYSTEM SET password_encryption = 'scram-sha-256';"),
              [Evidence("postgres", "password_encryption", "md5", "scram-sha-256")], severity=Severity.MEDIUM)


def _postgres_superuser(facts: Facts) -> Iterator[Hit]:
    postgres = facts.get("postgres")
    if postgres.get("app_user_is_superuser") or postgres.get("current_user_is_superuser"):
        user = postgres.get("current_user") or "the app's user"
        message = f"PostgreSQL user {user}, that the app connects as, is a superuser."
        yield _superuser_hit(f"postgres {user}", message, [Evidence("postgres", "is_superuser", True, False)])
        return
    for service, user, db_service in _apps_using_image_superuser(facts):
        yield _superuser_hit(_label(service), f"{_label(service)} connects to {db_service} as {user}, the "
                                              "POSTGRES_USER that the postgres image creates as superuser.",
                             [_location(service), Evidence("compose", "database_url_user", user),
                              Evidence("compose", "postgres_service", db_service)])


def _superuser_hit(subject: str, message: str, evidence: list[Evidence]) -> Hit:
    return Hit(subject, message,
               Recommendation("Create an app role without SUPERUSER that owns the app's database.",
                              "An SQL injection can no longer reach the server's files or other databases.",
                              Risk.MANUAL, 45, Phase.MONTH,
                              "CREATE ROLE app LOGIN PASSWORD '...'; ALTER DATABASE app OWNER TO app;"),
               evidence, severity=Severity.MEDIUM)


def _apps_using_image_superuser(facts: Facts) -> Iterator[tuple[dict[str, Any], str, str]]:
    services = [s for s in stack_services(facts) if s["origin"] == "compose"]
    superusers = {(s["project"], s["name"]): str(s["environment"].get("POSTGRES_USER") or "postgres")
                  for s in services if s["product"] == "postgres"}
    for service in services:
        for key, value in service["environment"].items():
            if not key.endswith("DATABASE_URL") or not value:
                continue
            url = urlsplit(str(value))
            if not url.scheme.startswith("postgres") or url.hostname is None:
                continue
            superuser = superusers.get((service["project"], url.hostname))
            if superuser is not None and url.username == superuser:
                yield service, superuser, url.hostname
                break


# --- SEC006: certificates ------------------------------------------------------------------------

@rule("SEC006", "tls-certificate-expiring", Severity.HIGH, needs=("tls",))
def tls_certificate_expiring(facts: Facts, settings: Settings) -> Iterator[Hit]:
    """
    ## What it checks
    The TLS certificate served for each domain of the stack (given with `--domain` / `[targets]
    domains`, or found in traefik/caddy labels and VIRTUAL_HOST): it expires within 21 days
    (`[thresholds.SEC006] days`), critical within 7 days or when already expired. A domain that
    could not be reached is reported at INFO: it is an observation about the domain (down, firewalled
    from this host, a typo in the configuration), not a failure of the audit, and it must stay visible
    next to the domains that were checked.

    ## Why it matters
    An expired certificate takes the site down for every browser and breaks API clients and webhooks.
    Automatic renewal (Let's Encrypt, Cloudflare) fails silently: a changed DNS record, a blocked
    port 80, a rate limit; 21 days leaves time for two renewal attempts.

    ## Recommendation
    Check the renewal: the proxy's ACME logs (traefik, caddy), certbot's timer
    (`certbot renew --dry-run`), or the certificate's origin. Renew now if it is within days.

    ## Estimated effect
    No outage at expiry.

    ## Fix safety
    Display only: renewing is done by the proxy or certbot.

    ## References
    - RFC 5280 4.1.2.5 (validity): https://www.rfc-editor.org/rfc/rfc5280#section-4.1.2.5
    - Let's Encrypt, "Integration Guide" (renew 30 days before expiry):
      https://letsencrypt.org/docs/integration-guide/
    """
    limit = settings.threshold("SEC006", "days")
    for cert in facts.get("tls").get("certificates", []):
        domain = cert.get("domain")
        if not cert.get("reachable"):
            yield Hit(domain, f"The certificate of {domain} could not be checked: {cert.get('error')}.",
                      Recommendation(f"Check that {domain} resolves and answers TLS from this host, or "
                                     "remove it from the domains to check.",
                                     "The certificate is checked next time.",
                                     Risk.MANUAL, 10, Phase.WEEK),
                      [Evidence("tls", "domain", domain), Evidence("tls", "error", cert.get("error"))],
                      severity=Severity.INFO)
            continue
        days = cert.get("days_left")
        if days is None or days > limit:
            continue
        severity = Severity.CRITICAL if days <= 7 else Severity.HIGH
        when = f"expired {abs(days):.1f} days ago" if days < 0 else f"expires in {days:.1f} days"
        yield Hit(domain, f"The certificate of {domain} {when} (not after {cert.get('not_after')}, "
                          f"issuer {cert.get('issuer_cn')}).",
                  Recommendation(f"Renew the certificate of {domain} and check why renewal did not happen.",
                                 "No outage at expiry.", Risk.MANUAL, 30, Phase.NOW,
                                 "certbot renew --dry-run"),
                  [Evidence("tls", "days_left", days, f"> {limit:g}"),
                   Evidence("tls", "not_after", cert.get("not_after")),
                   Evidence("tls", "verified", cert.get("verified"), True),
                   Evidence("tls", "verify_error", cert.get("verify_error"))],
                  severity=severity)


# --- SEC007: app SSL settings vs TLS termination -------------------------------------------------

def proxy_evidence(facts: Facts, settings: Settings, project: str | None,
                   app: dict[str, Any]) -> list[str]:
    """Why we believe the app is reached through a TLS-terminating proxy (empty: no evidence)."""
    found = []
    for other in stack_services(facts):
        if other["project"] == project and other["name"] != app["name"] and is_tls_proxy(other["image"],
                                                                                        other["name"]):
            found.append(f"TLS proxy service {other['name']} ({other['image'] or 'built'})")
    tls_labels = [k for k, v in app["labels"].items()
                  if k.startswith("traefik.") and (".tls" in k) and str(v).lower() != "false"]
    if tls_labels:
        found.append(f"traefik label {tls_labels[0]}")
    ports = app["ports"]
    if ports and all(LOOPBACK.match(str(p.get("host_ip") or "")) for p in ports):
        found.append("app ports published only on 127.0.0.1 (a proxy on the host)")
    if settings.tls_domains:
        found.append(f"TLS domains configured: {', '.join(settings.tls_domains)}")
    served = [c["domain"] for c in facts.get("tls").get("certificates", []) if c.get("reachable")]
    if served and not settings.tls_domains:
        found.append(f"TLS served for {', '.join(served)}")
    return found


@rule("SEC007", "app-ssl-behind-proxy", Severity.MEDIUM, needs=("compose",))
def app_ssl_behind_proxy(facts: Facts, settings: Settings) -> Iterator[Hit]:
    """
    ## What it checks
    A web app whose SSL settings contradict how TLS is terminated: a Rails app with RAILS_FORCE_SSL /
    RAILS_ASSUME_SSL (or FORCE_SSL / ASSUME_SSL) all false, or a Django app without
    SECURE_PROXY_SSL_HEADER, while the stack shows a TLS-terminating proxy in front of it (a
    cloudflared, traefik, caddy or nginx service, traefik TLS labels, the app published only on
    127.0.0.1, or TLS domains configured). Job runners (Sidekiq, Celery...) serve no request and are
    left out. The reference audit called FORCE_SSL=false and
    ASSUME_SSL=false behind Cloudflare "OK"; it is not (ERRATA 16).

    ## Why it matters
    Behind a proxy the app receives plain HTTP. Unless it assumes SSL (or trusts X-Forwarded-Proto)
    it believes requests are insecure: it builds `http://` URLs in redirects, mails and OAuth
    callbacks, sets cookies without the Secure flag, and never sends Strict-Transport-Security.
    Django's CSRF check also rejects HTTPS form posts whose Origin does not match.

    ## Recommendation
    Rails: `RAILS_ASSUME_SSL=true` (config.assume_ssl) and `RAILS_FORCE_SSL=true` (secure cookies,
    HSTS; the proxy must send X-Forwarded-Proto: https, which cloudflared, traefik and caddy do).
    Django: `SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")` with a proxy that sets
    that header, and `SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = True`.

    ## Estimated effect
    Correct https:// URLs, secure cookies and HSTS.

    ## Fix safety
    Confirm: force_ssl redirects every http request; a health check that calls the app over plain
    HTTP must be excluded (Rails: `config.ssl_options = { redirect: { exclude: ... } }`).

    ## References
    - Rails guides, "Configuring Rails Applications" (config.assume_ssl, config.force_ssl):
      https://guides.rubyonrails.org/configuring.html#config-assume-ssl
    - Django settings, SECURE_PROXY_SSL_HEADER:
      https://docs.djangoproject.com/en/stable/ref/settings/#secure-proxy-ssl-header
    """
    for service in stack_services(facts):
        if service["origin"] != "compose":
            continue
        env = service["environment"]
        rails = {k: str(env[k]) for k in RAILS_SSL_KEYS if env.get(k) is not None}
        django = "DJANGO_SETTINGS_MODULE" in env
        if not rails and not django:
            continue
        if is_worker(facts, service):
            continue
        proxy = proxy_evidence(facts, settings, service["project"], service)
        if not proxy:
            continue
        if rails and not any(v.strip().lower() in TRUTHY for v in rails.values()):
            yield _rails_ssl_hit(service, rails, proxy)
        elif django:
            yield from _django_ssl_hit(facts, service, proxy)


def is_worker(facts: Facts, service: dict[str, Any]) -> bool:
    """A job runner, by the app facts' role or by its command."""
    roles = {p.get("role") for p in facts.get("app").get("processes", [])
             if p.get("service") == service["name"] and p.get("project") in (None, service["project"])}
    if roles:
        return roles == {"worker"}
    return bool(WORKER_COMMAND.search(" ".join(str(a) for a in service["command"])))


def _rails_ssl_hit(service: dict[str, Any], rails: dict[str, str], proxy: list[str]) -> Hit:
    written = ", ".join(f"{k}={v}" for k, v in rails.items())
    missing = [k for k in ("RAILS_ASSUME_SSL", "ASSUME_SSL") if k in rails] or ["RAILS_ASSUME_SSL"]
    return Hit(_label(service),
               f"{_label(service)} sets {written} although it is reached through a TLS proxy "
               f"({proxy[0]}): it will build http:// URLs and cookies without the Secure flag.",
               Recommendation(f"Set {missing[0]}=true (and FORCE_SSL=true once the proxy sends "
                              "X-Forwarded-Proto).", "https:// URLs, Secure cookies and HSTS.",
                              Risk.CONFIRM, 10, Phase.WEEK, f"{missing[0]}=true"),
               [_location(service), *[Evidence("compose", k, v, "true") for k, v in rails.items()],
                Evidence("compose", "tls_proxy_evidence", proxy)])


def _django_ssl_hit(facts: Facts, service: dict[str, Any], proxy: list[str]) -> Iterator[Hit]:
    env = service["environment"]
    if any("SECURE_PROXY_SSL_HEADER" in k for k in env):
        return
    known = [p.get("secure_proxy_ssl_header", "unknown") for p in facts.get("app").get("processes", [])
             if p.get("service") == service["name"] and "secure_proxy_ssl_header" in p]
    if known and any(known):
        return
    seen = "is not set in its settings" if known else "was not found in its environment (check settings.py)"
    yield Hit(_label(service),
              f"Django service {_label(service)} is reached through a TLS proxy ({proxy[0]}) but "
              f"SECURE_PROXY_SSL_HEADER {seen}: request.is_secure() is False for every request.",
              Recommendation('Set SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https").',
                             "https:// URLs and secure cookies.", Risk.CONFIRM, 10, Phase.WEEK,
                             'SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")'),
              [_location(service), Evidence("compose", "tls_proxy_evidence", proxy)],
              severity=Severity.MEDIUM if known else Severity.LOW)


# --- SEC008: host access from containers ---------------------------------------------------------

# Capabilities that give the host away (capabilities(7)): SYS_ADMIN (mount, and most of what root
# does), SYS_MODULE (load a kernel module), SYS_RAWIO (raw device and port I/O), DAC_READ_SEARCH
# (open any host file by handle: the "shocker" escape), ALL; and those that widen what a compromised
# container can do around it: NET_ADMIN (routes, firewall: the host's with network_mode host),
# SYS_PTRACE (trace other processes of its PID namespace), BPF.
HOST_CAPABILITIES = frozenset({"ALL", "SYS_ADMIN", "SYS_MODULE", "SYS_RAWIO", "DAC_READ_SEARCH"})
WIDE_CAPABILITIES = frozenset({"NET_ADMIN", "SYS_PTRACE", "BPF"})
# Host paths whose mount exposes the kernel or every file: the whole tree under them counts.
HOST_TREES = ("/proc", "/sys", "/lib/modules", "/usr/lib/modules", "/boot", "/var/lib/docker",
              "/run/containerd", "/var/run/containerd")
HOST_EXACT = frozenset({"/", "/etc", "/root", "/dev", "/home", "/var/run", "/run"})


def host_path_mounts(service: dict[str, Any]) -> list[tuple[str, bool]]:
    """(source, writable) of bind mounts of the host's root, kernel or runtime paths."""
    found = []
    for source, writable in service.get("host_mounts") or []:
        path = source.rstrip("/") or "/"
        if path in DOCKER_SOCKETS:
            continue  # reported as the Docker socket
        if path in HOST_EXACT or any(path == t or path.startswith(t + "/") for t in HOST_TREES):
            found.append((path, writable))
    return found


def host_access(service: dict[str, Any]) -> tuple[list[str], bool]:
    """What gives the container a hold on the host, and whether any of it is host-root grade."""
    issues: list[str] = []
    root_grade = False
    if service["sockets"]:
        issues.append(f"mounts the Docker socket ({service['sockets'][0]})")
        root_grade = True
    if service["privileged"]:
        issues.append("runs privileged")
        root_grade = True
    caps = set(service.get("cap_add") or [])
    host_net = service["network_mode"] == "host"
    strong = sorted(caps & HOST_CAPABILITIES) + (["NET_ADMIN"] if host_net and "NET_ADMIN" in caps else [])
    wide = sorted((caps & WIDE_CAPABILITIES) - set(strong))
    if strong:
        issues.append(f"adds the capabilities {', '.join(strong)}")
        root_grade = True
    if wide:
        issues.append(f"adds the capabilities {', '.join(wide)}")
    for path, writable in host_path_mounts(service):
        issues.append(f"mounts the host's {path} {'read-write' if writable else 'read-only'}")
        root_grade = root_grade or writable
    if host_net:
        issues.append("uses the host network")
    if service.get("pid_mode") == "host":
        issues.append("shares the host's processes (pid: host)")
        root_grade = root_grade or "SYS_PTRACE" in caps  # it can then trace any host process
    if service.get("ipc_mode") == "host":
        issues.append("shares the host's IPC namespace and /dev/shm (ipc: host)")
    return issues, root_grade


@rule("SEC008", "container-host-access", Severity.HIGH, needs_any=("compose", "docker"))
def container_host_access(facts: Facts, settings: Settings) -> Iterator[Hit]:
    """
    ## What it checks
    Containers (compose services or running containers) with a hold on the host: the Docker socket
    mounted, privileged, capabilities added with `cap_add` (SYS_ADMIN, SYS_MODULE, SYS_RAWIO,
    DAC_READ_SEARCH, ALL; NET_ADMIN, SYS_PTRACE, BPF), bind mounts of the host's `/`, `/etc`,
    `/root`, `/proc`, `/sys`, `/lib/modules`, `/dev`, `/boot` or Docker's own data, the host
    network, or the host's processes (`pid: host`) or IPC namespace (`ipc: host`). Monitoring and
    maintenance agents that need this (cAdvisor, node-exporter, promtail, watchtower, traefik's
    docker provider...) are reported at INFO so the exposure stays known.

    ## Why it matters
    The Docker socket is root on the host: whoever controls the container can start a privileged
    container mounting `/` (a read-only mount does not help, the API is still writable). A privileged
    container, or one with SYS_ADMIN or SYS_MODULE, can mount host filesystems or load a kernel module;
    DAC_READ_SEARCH reads any host file. A writable `/proc` or `/sys` lets it change kernel settings
    (`/proc/sys/kernel/core_pattern` runs a program as root on the host); `/lib/modules` gives the
    kernel's modules to load. NET_ADMIN on the host network rewrites the host's firewall. On the host
    network a container's ports bypass Docker's isolation and can reach services bound to loopback.
    With `pid: host` it sees every host process and its command line (passwords passed as arguments
    included) and, with the KILL capability Docker grants by default, can signal any of them; with
    SYS_PTRACE as well it can trace them, which is root on the host. `ipc: host` shares the host's
    System V shared memory and `/dev/shm`.

    ## Recommendation
    Remove the socket mount, `privileged: true`, the capabilities, the host mounts or the shared
    `pid:` / `ipc:` namespaces unless the service needs them; give an agent a filtered socket
    (tecnativa/docker-socket-proxy with only the API sections it reads), mount only the files it
    reads, read-only, and precise `cap_add:` / `devices:` instead of privileged.

    ## Estimated effect
    A compromised container no longer means a compromised host.

    ## Fix safety
    Confirm: the service may lose a feature that needed the access (a VPN needs NET_ADMIN); test it
    after the change.

    ## References
    - Docker docs, "Docker daemon attack surface":
      https://docs.docker.com/engine/security/#docker-daemon-attack-surface
    - Docker docs, "Runtime privilege and Linux capabilities":
      https://docs.docker.com/engine/containers/run/#runtime-privilege-and-linux-capabilities
    - capabilities(7): https://man7.org/linux/man-pages/man7/capabilities.7.html
    - Docker docs, "PID settings (--pid)" and "IPC settings (--ipc)":
      https://docs.docker.com/engine/containers/run/#pid-settings---pid
    - ptrace(2), "Ptrace access mode checking": https://man7.org/linux/man-pages/man2/ptrace.2.html
    - OWASP Docker Security Cheat Sheet (rules 1, 2 and 3):
      https://cheatsheetseries.owasp.org/cheatsheets/Docker_Security_Cheat_Sheet.html
    """
    for service in stack_services(facts):
        issues, root_grade = host_access(service)
        if not issues:
            continue
        agent = is_host_agent(service["image"], service["name"])
        if agent:
            severity = Severity.INFO
        elif root_grade:
            severity = Severity.HIGH
        else:
            severity = Severity.MEDIUM
        note = " (expected for this agent; keep it limited)" if agent else ""
        yield Hit(_label(service), f"{_label(service)} {', '.join(issues)}{note}.",
                  Recommendation("Remove the host access, or give the agent a filtered socket proxy and "
                                 "read-only mounts of what it reads.",
                                 "A compromised container no longer controls the host.", Risk.CONFIRM, 30,
                                 Phase.MONTH if agent else Phase.WEEK),
                  [_location(service), Evidence(service["origin"], "image", service["image"]),
                   Evidence(service["origin"], "host_access", issues, [])],
                  severity=severity)


# --- SEC009: floating datastore tags -------------------------------------------------------------

@dataclass(frozen=True)
class VersionRule:
    """What a major release is for one product, and what moving within or across one does."""

    product: str
    major_parts: Callable[[tuple[int, ...]], int]  # how many leading numbers name a major release
    majors: str  # examples of its major releases, for the message
    floating: Severity  # a tag that follows new majors
    across: str  # what crossing a major does to the data
    within: str  # what moving within a major does
    pin: str  # a tag pinned enough, as an example


# Sources: PostgreSQL "Versioning Policy" (major = first number since 10) and "Upgrading a
# PostgreSQL Cluster"; MariaDB "Release model" and "Upgrading MariaDB" (10.5, 10.6, 10.11, 11.4
# are majors; mariadb-upgrade; no downgrade); MySQL "Release model" (8.0, 8.4 LTS and 9.x innovation
# series) and "Downgrading MySQL" (not supported across or, for 8.0, within a series); MongoDB
# "Upgrade a Self-Managed Replica Set / Standalone" (one release series at a time, with
# featureCompatibilityVersion); Redis release notes (RDB format 11 in 7.2, 12 in 7.4: older
# releases cannot load it; Redis 8 is AGPLv3); Elasticsearch "Upgrade Elasticsearch" (indices of
# the previous major only, no downgrade).
VERSION_RULES: dict[str, VersionRule] = {
    "postgres": VersionRule("PostgreSQL", lambda v: 1 if v[0] >= 10 else 2, "9.6, 16 and 17", Severity.HIGH,
                            "a new major refuses the old data directory until pg_upgrade or a restore",
                            "minor releases keep the data format, but each one recreates the container",
                            "major.minor, e.g. 16.4"),
    "mariadb": VersionRule("MariaDB", lambda v: 2, "10.5, 10.6, 10.11 and 11.4", Severity.HIGH,
                           "each major upgrades the data files in place (mariadb-upgrade) with no way back",
                           "point releases keep the data format, but each one recreates the container",
                           "major.minor.patch, e.g. 10.11.9"),
    "mysql": VersionRule("MySQL", lambda v: 2, "5.7, 8.0, 8.4 and 9.x", Severity.HIGH,
                         "the data dictionary is upgraded in place at the first start, and MySQL cannot be "
                         "downgraded", "8.0 patch releases upgrade the data dictionary in place too, with no "
                         "downgrade", "series.patch, e.g. 8.4.2"),
    "mongo": VersionRule("MongoDB", lambda v: 2, "6.0, 7.0 and 8.0", Severity.HIGH,
                         "a new series starts only on data the previous one marked with its "
                         "featureCompatibilityVersion: skipping one fails to start",
                         "patch releases keep the data format, but each one recreates the container",
                         "series.patch, e.g. 7.0.14"),
    "redis": VersionRule("Redis", lambda v: 1, "6, 7 and 8", Severity.MEDIUM,
                         "it writes an RDB format older releases cannot load (no way back), and Redis 8 "
                         "changed its license", "a minor release may write an RDB format the previous "
                         "minor cannot load (7.4 cannot go back to 7.2)", "major.minor, e.g. 7.4"),
    "elasticsearch": VersionRule("Elasticsearch", lambda v: 1, "7 and 8", Severity.HIGH,
                                 "a new major reads only indices of the previous one and cannot be "
                                 "downgraded",
                                 "minor releases upgrade the indices in place, with no downgrade",
                                 "major.minor.patch, e.g. 8.15.0"),
}
_TAG_VERSION = re.compile(r"^v?(\d+(?:\.\d+)*)(?=$|[^\d.])")  # "16", "10.11-jammy", "17beta1"


def version_product(kind: str, image: str | None) -> str:
    """The product whose version rules apply: MariaDB is not MySQL, whatever their kind."""
    return "mariadb" if kind == "mysql" and parse_image(image).basename == "mariadb" else kind


def tag_risk(kind: str, tag: str | None, digest: str | None) -> tuple[Severity, str] | None:
    """How dangerous a datastore image's tag is, or None when it is pinned enough.

    `kind` is a datastore kind or a product of VERSION_RULES ("mariadb"); others get the generic
    rule: a floating tag crosses majors, a bare number moves minors.
    """
    if digest:
        return None
    rule_ = VERSION_RULES.get(kind)
    version = _TAG_VERSION.match(tag or "")
    if rule_ is None:
        return _generic_tag_risk(kind, tag)
    if tag is None or version is None:
        shown = tag or "no tag (latest)"
        return rule_.floating, f"{shown} follows new {rule_.product} major releases: {rule_.across}"
    numbers = tuple(int(n) for n in version.group(1).split("."))
    major = rule_.major_parts(numbers)
    if len(numbers) < major:
        return rule_.floating, (f"{tag} spans several {rule_.product} major releases ({rule_.majors} are "
                                f"each one): {rule_.across}")
    if len(numbers) == major:
        return Severity.LOW, f"{tag} is a bare {rule_.product} major: {rule_.within}"
    return None


def _generic_tag_risk(kind: str, tag: str | None) -> tuple[Severity, str] | None:
    if tag is None or tag.lower() in FLOATING_TAGS:
        shown = tag or "no tag (latest)"
        if kind in MAJOR_BOUND_DATASTORES:
            return Severity.HIGH, f"{shown} follows new major versions, whose data format differs"
        return Severity.MEDIUM, f"{shown} follows new major versions"
    if BARE_MAJOR_TAG.match(tag):
        return Severity.LOW, f"{tag} is a bare major version: every minor release recreates the container"
    return None


@rule("SEC009", "datastore-floating-tag", Severity.MEDIUM, needs_any=("compose", "docker"))
def datastore_floating_tag(facts: Facts, settings: Settings) -> Iterator[Hit]:
    """
    ## What it checks
    Datastore images on a tag that moves, judged by each product's own version rules. A floating
    tag (`latest`, none, `lts`, a distribution name such as `alpine` or `focal`) or one that names
    less than a major release is HIGH for PostgreSQL, MariaDB, MySQL, MongoDB and Elasticsearch
    (MEDIUM for Redis): `mariadb:10-focal` spans 10.5, 10.6 and 10.11, which are separate majors;
    `mysql:8` spans 8.0 and 8.4; `mongo:7` the 7.x series. A bare major is LOW: `postgres:16`,
    `mariadb:10.11`, `mysql:8.4`, `mongo:7.0`, `redis:7`, `elasticsearch:8`. Pinned enough:
    `postgres:16.4`, `mariadb:10.11.9`, `mysql:8.4.2`, `mongo:7.0.14`, `redis:7.4`, a digest.
    Other datastores: a floating tag is HIGH or MEDIUM, a bare number LOW.

    ## Why it matters
    The next `docker compose pull && up -d` (or watchtower) silently installs what the tag points to
    that day. Across a major PostgreSQL refuses to start on the old data directory (an outage until
    pg_upgrade or a restore); MariaDB and MySQL upgrade the data files in place with no way back;
    MongoDB refuses data that skipped a series; Elasticsearch cannot go back either. Within a major
    the data format mostly stays (MySQL 8.0 and Redis minors are exceptions: no downgrade), so the
    risk is an unplanned restart and a version that differs from the one tested, hence LOW.

    ## Recommendation
    Pin the datastore to the release running now, as precisely as the product needs
    (`postgres:16.4`, `mariadb:10.11.9`, `mysql:8.4.2`, `mongo:7.0.14`, `redis:7.4`) or to a
    digest, and upgrade on purpose: read the release notes, take a backup, then change the tag.

    ## Estimated effect
    No surprise major upgrade; upgrades happen when planned.

    ## Fix safety
    Safe to pin to the version running now (`docker inspect` or the server's version()); pinning
    to another version is an upgrade.

    ## References
    - PostgreSQL "Versioning Policy": https://www.postgresql.org/support/versioning/
    - PostgreSQL docs, "Upgrading a PostgreSQL Cluster":
      https://www.postgresql.org/docs/current/upgrading.html
    - The postgres image's notes on PGDATA and major versions: https://hub.docker.com/_/postgres
    - MariaDB "Upgrading MariaDB": https://mariadb.com/kb/en/upgrading/
    - MySQL "Downgrading MySQL": https://dev.mysql.com/doc/refman/8.0/en/downgrading.html
    - MongoDB "Upgrade a Standalone" (featureCompatibilityVersion):
      https://www.mongodb.com/docs/manual/release-notes/7.0-upgrade-standalone/
    - Elasticsearch "Upgrade Elasticsearch":
      https://www.elastic.co/guide/en/elasticsearch/reference/current/setup-upgrade.html
    - Redis release notes: https://github.com/redis/redis/releases
    """
    for service in stack_services(facts):
        kind = service["product"]
        if not kind or not service["image"]:
            continue
        image = parse_image(service["image"])
        product = version_product(kind, service["image"])
        risk = tag_risk(product, image.tag, image.digest)
        if risk is None:
            continue
        severity, why = risk
        version = VERSION_RULES.get(product)
        pin = version.pin if version else "major.minor"
        yield Hit(_label(service), f"{kind} service {_label(service)} uses {service['image']}: {why}.",
                  Recommendation("Pin the image to the running release or a digest.",
                                 "Upgrades happen only when planned.", Risk.SAFE, 5, Phase.MONTH,
                                 f"image: {image.repository.removeprefix('library/')}:<{pin}>"),
                  [_location(service), Evidence(service["origin"], "image", service["image"]),
                   Evidence(service["origin"], "tag", image.tag, f"{pin}, or an @sha256 digest")],
                  severity=severity)


# --- SEC010: monitoring UIs and APIs open to anyone -----------------------------------------------

# Components with no authentication of their own (Prometheus, Alertmanager and the exporters can be
# given basic auth with --web.config.file; Loki expects a proxy in front, auth_enabled is tenancy),
# with the default port they listen on and how bad an open one is.
OPEN_COMPONENTS: dict[str, tuple[int, Severity, str]] = {
    "prometheus": (9090, Severity.MEDIUM, "every metric and label of the stack, and its targets"),
    "alertmanager": (9093, Severity.MEDIUM, "the alerts, and anyone can silence them"),
    "loki": (3100, Severity.HIGH, "every log line (with the secrets that end up in logs), and anyone can "
                                  "push"),
    "pushgateway": (9091, Severity.MEDIUM, "anyone can push or delete metrics, and fake the alerts"),
    "cadvisor": (8080, Severity.LOW, "every container's name, image and resource use"),
    "exporter": (9100, Severity.LOW, "the host's or datastore's metrics, for reconnaissance"),
}
GRAFANA_WRITE_ROLES = frozenset({"admin", "editor"})
GRAFANA_SIGN_INS = ("proxy", "generic_oauth", "github", "gitlab", "google", "azuread", "okta", "ldap", "jwt")
_LISTEN_FLAG = re.compile(r"^-{1,2}(web\.listen-address|server\.http-listen-address)=?(.*)$")


def monitoring_component(service: dict[str, Any]) -> str | None:
    """"grafana", "prometheus", "exporter"... for a service (one helper, to point at the shared
    classifier of service kinds when it lands)."""
    if parse_image(service["image"]).basename == "pushgateway" or service["name"] == "pushgateway":
        return "pushgateway"
    kind = monitoring_kind(service["image"], service["name"])
    if kind and kind.endswith("_exporter"):
        return "exporter"
    return kind


def _exposure(service: dict[str, Any], kind: str) -> list[PublicPort]:
    """Where the component answers on all interfaces: published ports, or the host network."""
    public = _public_ports(service)
    if service["network_mode"] == "host" and not _listens_on_loopback(service):
        default = 3000 if kind == "grafana" else OPEN_COMPONENTS.get(kind, (0,))[0]
        public.append(PublicPort("host network", None, default or None))
    return public


def _listens_on_loopback(service: dict[str, Any]) -> bool:
    argv = [str(a) for a in service["command"] or []]
    for i, arg in enumerate(argv):
        match = _LISTEN_FLAG.match(arg)
        if match:
            value = match.group(2) or (argv[i + 1] if i + 1 < len(argv) else "")
            return bool(LOOPBACK.match(value.rsplit(":", 1)[0] or "x"))
    return False


def grafana_settings(facts: Facts, service: dict[str, Any]) -> dict[str, str]:
    """grafana.ini's auth keys, overridden by GF_<SECTION>_<KEY> variables as Grafana does."""
    settings: dict[str, str] = {}
    for ini in facts.get("monitoring").get("grafana_ini", []):
        if ini.get("service") == service["name"] and ini.get("project") in (None, service["project"]):
            settings.update(ini.get("settings") or {})
    env = service["environment"]
    for name in ("auth.anonymous.enabled", "auth.anonymous.org_role", "auth.disable_login_form",
                 *(f"auth.{p}.enabled" for p in GRAFANA_SIGN_INS)):
        variable = "GF_" + name.upper().replace(".", "_")
        if env.get(variable) is not None:
            settings[name] = str(env[variable])
    return settings


def _true(value: str | None) -> bool:
    return (value or "").strip().lower() in TRUTHY


@rule("SEC010", "monitoring-ui-exposed", Severity.HIGH, needs_any=("compose", "docker"))
def monitoring_ui_exposed(facts: Facts, settings: Settings) -> Iterator[Hit]:
    """
    ## What it checks
    Grafana that lets anyone in: anonymous access as Admin or Editor (`GF_AUTH_ANONYMOUS_ENABLED` +
    `GF_AUTH_ANONYMOUS_ORG_ROLE`, or `[auth.anonymous]` in a mounted grafana.ini), anonymous Viewer
    on all interfaces, the login form disabled (`GF_AUTH_DISABLE_LOGIN_FORM`) with no other sign-in,
    or auth proxy mode with its port open (anyone can send the user header). And Prometheus,
    Alertmanager, Loki, Pushgateway, cAdvisor or an exporter published on all interfaces, or on the
    host network without a loopback listen address: none of them authenticates by default. A
    component started with `--web.config.file` (basic auth or TLS) is left out.

    ## Why it matters
    Anonymous Editor or Admin can change dashboards and alerting, add data sources and query every
    database Grafana can reach. Prometheus shows every metric and target (a map of the stack), and
    with the admin or lifecycle API enabled it can be emptied or stopped; Alertmanager lets anyone
    silence the alerts; Loki gives every log line (and accepts fake ones). Docker publishes ports
    ahead of the host firewall.

    ## Recommendation
    Grafana: `GF_AUTH_ANONYMOUS_ENABLED=false` (or `GF_AUTH_ANONYMOUS_ORG_ROLE=Viewer` on a private
    network), keep the login form unless an OAuth/LDAP sign-in replaces it, and publish auth-proxy
    Grafana only to the proxy. The others: do not publish the port (Prometheus scrapes over the
    compose network) or bind it to `127.0.0.1`, or put them behind a proxy with authentication
    (or `--web.config.file` with basic_auth_users).

    ## Estimated effect
    The monitoring stack is reachable only by who should see it.

    ## Fix safety
    Confirm: dashboards shown anonymously (a wall screen) need a login or a Viewer role; remote
    Grafana data sources need another way in (an SSH tunnel, the proxy).

    ## References
    - Grafana docs, "Configure authentication" (anonymous authentication, auth proxy):
      https://grafana.com/docs/grafana/latest/setup-grafana/configure-security/configure-authentication/
    - Prometheus docs, "Security model": https://prometheus.io/docs/operating/security/
    - Prometheus docs, "HTTPS and authentication" (web.config.file):
      https://prometheus.io/docs/prometheus/latest/configuration/https/
    - Loki docs, "Authentication" (Loki does not come with an authentication layer):
      https://grafana.com/docs/loki/latest/operations/authentication/
    """
    for service in stack_services(facts):
        kind = monitoring_component(service)
        if kind == "grafana":
            yield from _grafana_hits(facts, service)
        elif kind in OPEN_COMPONENTS:
            yield from _open_component_hit(service, kind)


def _grafana_hits(facts: Facts, service: dict[str, Any]) -> Iterator[Hit]:
    conf = grafana_settings(facts, service)
    public = _exposure(service, "grafana")
    anonymous = _true(conf.get("auth.anonymous.enabled"))
    role = conf.get("auth.anonymous.org_role") or "Viewer"  # Grafana's default anonymous role
    sign_ins = [p for p in GRAFANA_SIGN_INS if _true(conf.get(f"auth.{p}.enabled"))]
    evidence = [_location(service), Evidence(service["origin"], "grafana_auth", conf),
                Evidence(service["origin"], "public_ports", _texts(public), [])]
    where = f" on all interfaces ({', '.join(_texts(public))})" if public else ""
    if anonymous and role.strip().lower() in GRAFANA_WRITE_ROLES:
        yield Hit(_label(service), f"Grafana {_label(service)} lets anyone in without a login as "
                                   f"{role}{where}.",
                  _grafana_fix("GF_AUTH_ANONYMOUS_ENABLED=false"), evidence,
                  severity=Severity.CRITICAL if public else Severity.HIGH)
    elif anonymous and public:
        yield Hit(_label(service), f"Grafana {_label(service)} shows its dashboards to anyone without a "
                                   f"login (anonymous {role}){where}.",
                  _grafana_fix("GF_AUTH_ANONYMOUS_ENABLED=false"), evidence, severity=Severity.LOW)
    if _true(conf.get("auth.disable_login_form")) and not sign_ins:
        yield Hit(_label(service), f"Grafana {_label(service)} has its login form disabled and no other "
                                   "sign-in configured: only anonymous access or basic auth remain.",
                  _grafana_fix("GF_AUTH_DISABLE_LOGIN_FORM=false"), evidence, severity=Severity.MEDIUM)
    if "proxy" in sign_ins and public:
        yield Hit(_label(service), f"Grafana {_label(service)} trusts an auth proxy's user header but is "
                                   f"reachable without the proxy{where}: anyone can sign in as anyone.",
                  _grafana_fix('ports: ["127.0.0.1:3000:3000"]'), evidence, severity=Severity.HIGH)


def _grafana_fix(action: str) -> Recommendation:
    return Recommendation("Require a login for Grafana (no anonymous editing, keep a sign-in).",
                          "Only known users see and change the dashboards.", Risk.CONFIRM, 10, Phase.NOW,
                          action)


def _open_component_hit(service: dict[str, Any], kind: str) -> Iterator[Hit]:
    argv = " ".join(str(a) for a in service["command"] or [])
    public = _exposure(service, kind)
    if not public or "web.config.file" in argv:
        return
    _, severity, gives = OPEN_COMPONENTS[kind]
    apis = [f for f in ("--web.enable-admin-api", "--web.enable-lifecycle") if f in argv]
    if kind == "prometheus" and apis:
        severity = Severity.HIGH
        gives = f"{gives}; with {' and '.join(apis)} anyone can delete data or stop it"
    yield Hit(_label(service), f"{kind} {_label(service)} answers on all interfaces "
                               f"({', '.join(_texts(public))}) "
                               f"without authentication: it gives {gives}.",
              Recommendation(f"Stop publishing {kind}, or bind it to 127.0.0.1, or put it behind an "
                             "authenticating proxy.", "Monitoring data stays private.", Risk.CONFIRM, 10,
                             Phase.WEEK, public[0].loopback()),
              [_location(service), Evidence(service["origin"], "public_ports", _texts(public), []),
               Evidence(service["origin"], "component", kind)],
              severity=severity)
