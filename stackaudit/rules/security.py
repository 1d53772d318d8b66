"""Security rules: who could get in (SEC).

Compose-based checks read the normalised compose facts (and the docker containers when collected,
for stacks started otherwise); env file checks read facts["env"]["files"]; PostgreSQL and Redis
facts are read defensively, since those collectors may not give every key.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from stackaudit.config import Settings
from stackaudit.derive import Derived
from stackaudit.facts import Facts
from stackaudit.images import (
    MAJOR_BOUND_DATASTORES,
    is_host_agent,
    is_tls_proxy,
    parse_image,
    service_product,
)
from stackaudit.model import Evidence, Hit, Phase, Recommendation, Risk, Severity
from stackaudit.rules import rule

ALL_INTERFACES = frozenset({"", "0.0.0.0", "::", "[::]"})
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
    """Env files that exist and hold secrets (or are named like secrets files)."""
    for file in facts.get("env").get("files", []):
        if file.get("exists") is False or file.get("template"):  # .env.example is meant to be shared
            continue
        name = str(file.get("path", "")).rsplit("/", 1)[-1]
        if file.get("secret_keys") or SECRET_FILE_NAME.search(name):
            yield file


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
    Secrets files of the stack (`.env`, `env_file:` targets, `*.key`/`*.pem`) that the group or
    every user of the host can read, or that belong to another user than the one who owns the project
    directory (the user that runs the stack).

    ## Why it matters
    Those files hold the database password, SECRET_KEY_BASE and API tokens. A world-readable file gives
    them to any process or account on the host (a compromised web app running as another user, a
    shared CI runner); a file owned by another account lets that account change them.

    ## Recommendation
    `chmod 600` the file and `chown` it to the user that runs `docker compose`.

    ## Estimated effect
    Only the stack's own user (and root) can read the secrets.

    ## Fix safety
    Safe for Compose itself: `env_file` and `.env` are read by the `docker compose` client as the
    user who runs it, and containers get the values through their environment. Check first whether a
    container bind-mounts the file and reads it as another uid.

    ## References
    - Compose docs, "Set environment variables" / `env_file`
    - chmod(1)
    """
    for file in secret_files(facts):
        path = str(file.get("path"))
        group, world = _readable_by(file)
        bits = mode_bits(file)
        mode = f"{bits:04o}" if bits is not None else str(file.get("mode"))
        evidence = [Evidence("env", "path", path), Evidence("env", "mode", mode, "0600"),
                    Evidence("env", "owner", file.get("owner") or file.get("owner_uid"))]
        if world or group:
            who = "every user of the host" if world else "its group"
            yield Hit(path, f"{path} holds secrets (mode {mode}) and is readable by {who}.",
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
    Secrets files that git tracks, or that sit in a git working tree without being ignored
    (`git ls-files --error-unmatch`, `git check-ignore`: git itself answers, with every .gitignore,
    .git/info/exclude and core.excludesFile taken into account).

    ## Why it matters
    A tracked file's secrets are in every clone and in the history forever; an unignored one is one
    `git add .` away from it.

    ## Recommendation
    Add the file to `.gitignore`; if it was ever committed, remove it from the index with
    `git rm --cached` and rotate every secret it held (the history keeps the old values).

    ## Estimated effect
    Secrets stop travelling with the code.

    ## Fix safety
    Manual: rotating secrets means changing them in the services that use them.

    ## References
    - git-check-ignore(1), git-ls-files(1), gitignore(5)
    - GitHub docs, "Removing sensitive data from a repository"
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
            yield Hit(path, f"{path} holds secrets and is tracked by the git repository {git['repo']}: they "
                            "are in every clone and in the history.",
                      Recommendation(f"Untrack {path}, ignore it and rotate its secrets.",
                                     "Secrets leave the repository from now on; rotation voids the old ones.",
                                     Risk.MANUAL, 60, Phase.NOW,
                                     f"git rm --cached {path} && echo '{_name(path)}' >> .gitignore"),
                      evidence, severity=Severity.HIGH)
        elif not git.get("ignored"):
            yield Hit(path, f"{path} holds secrets inside the git repository {git['repo']} and no .gitignore "
                            "rule covers it: `git add .` would commit it.",
                      Recommendation(f"Add {path} to .gitignore.",
                                     "The file cannot be committed by accident.", Risk.SAFE, 2, Phase.NOW,
                                     f"echo '{_name(path)}' >> .gitignore"),
                      evidence, severity=Severity.MEDIUM)


# --- SEC003: secrets written in files ------------------------------------------------------------

@rule("SEC003", "secret-in-compose", Severity.MEDIUM, needs=("compose",))
def secret_in_compose(facts: Facts, settings: Settings) -> Iterator[Hit]:
    """
    ## What it checks
    Passwords, tokens and keys written literally in compose files, including the default of a
    `${VAR:-secret}` interpolation, and well-known placeholder or default values (`postgres`,
    `password`, `changeme`, an upstream example's SECRET_KEY_BASE) in the stack's .env files.

    ## Why it matters
    Compose files are committed and copied around: a literal secret there is public to everyone who
    sees the repository. A default password is the first one an attacker tries, and a default
    `${VAR:-secret}` silently takes over when the variable is missing.

    ## Recommendation
    Move the value to the (ignored, mode 600) `.env` file or a Compose secret, and use
    `${VAR:?VAR must be set}` so a missing value fails loudly. Replace placeholder values with
    generated ones (`openssl rand -hex 32`), then rotate them where they were used.

    ## Estimated effect
    No secret in the repository; no guessable credential.

    ## Fix safety
    Manual: changing a database password needs the same change in the database (`ALTER ROLE`) and in
    every client, in one deploy.

    ## References
    - Compose docs, "Interpolation" (`${VAR:?err}`) and "Secrets in Compose"
    """
    for project in facts.get("compose").get("projects", []):
        for item in project.get("literal_secrets", []):
            where = _where(item.get("file"), item.get("line"))
            kind = item.get("kind", "literal")
            how = "as the default of a ${VAR:-...} interpolation" if kind == "default" else "literally"
            key = item.get("key")
            subject = f"{project.get('name')}/{item.get('service')} {key}"
            yield Hit(subject, f"{key} of service {item.get('service')} is written {how} in {where}.",
                      Recommendation(f"Move {key} out of the compose file.",
                                     "The secret leaves the repository.", Risk.MANUAL, 15, Phase.WEEK,
                                     f"{key}: ${{{key}:?{key} must be set}}"),
                      [Evidence("compose", "location", where), Evidence("compose", "key", item.get("key")),
                       Evidence("compose", "kind", kind)])
    for file in facts.get("env").get("files", []):
        if file.get("template"):  # placeholders are what an .env.example is for
            continue
        for weak in file.get("weak_values", []):
            where = _where(file.get("path"), weak.get("line"))
            yield Hit(f"{file.get('path')} {weak.get('key')}",
                      f"{weak.get('key')} in {where} has a well-known value ({weak.get('reason')}).",
                      Recommendation(f"Generate a new value for {weak.get('key')}.",
                                     "The credential can no longer be guessed.", Risk.MANUAL, 15, Phase.NOW,
                                     "openssl rand -hex 32"),
                      [Evidence("env", "location", where), Evidence("env", "key", weak.get("key")),
                       Evidence("env", "reason", weak.get("reason"))],
                      severity=Severity.HIGH)


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
                   "sockets": [v.get("source") for v in service.get("volumes") or []
                               if str(v.get("source") or "") in DOCKER_SOCKETS],
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
               "sockets": [m.get("source") for m in container.get("mounts") or []
                           if str(m.get("source") or "") in DOCKER_SOCKETS],
               "environment": {}, "labels": container.get("labels") or {}, "profiles": [], "command": []}


def _label(service: dict[str, Any]) -> str:
    return f"{service['project']}/{service['name']}" if service.get("project") else str(service["name"])


def _location(service: dict[str, Any]) -> Evidence:
    if service["origin"] == "compose":
        return Evidence("compose", "file", _where(service["file"], service["line"]))
    return Evidence("docker", "container", service["name"])


def _public_ports(service: dict[str, Any]) -> list[str]:
    public = []
    for port in service["ports"]:
        host_ip = port.get("host_ip") or ""
        if host_ip in ALL_INTERFACES:
            host = "0.0.0.0" if ":" not in host_ip else "[::]"
            published = port.get("host_port") or "a random host port"
            public.append(f"{host}:{published}->{port.get('container_port')}")
    return public


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
    - Docker docs, "Packet filtering and firewalls" (Docker and ufw)
    - Compose file reference, `ports` (HOST_IP)
    """
    for service in stack_services(facts):
        kind = service["product"]
        public = _public_ports(service) if kind else []
        if not public:
            continue
        open_redis = _redis_without_auth(derived, service) if kind == "redis" else ""
        extra = f" and {open_redis}" if open_redis else ""
        loopback = f'ports: ["127.0.0.1:{_host_port(public[0])}:{_container_port(public[0])}"]'
        yield Hit(_label(service),
                  f"{kind} service {_label(service)} is published on all interfaces ({', '.join(public)}), "
                  f"which bypasses the host firewall{extra}.",
                  Recommendation("Remove the published port, or bind it to 127.0.0.1.",
                                 "The datastore is no longer reachable from outside the host.",
                                 Risk.CONFIRM, 10, Phase.NOW, loopback),
                  [_location(service), Evidence(service["origin"], "ports", public, "127.0.0.1:... or none"),
                   Evidence(service["origin"], "datastore", kind)],
                  severity=Severity.CRITICAL if open_redis else None)


def _host_port(mapping: str) -> str:
    port = mapping.rsplit("->", 1)[0].rsplit(":", 1)[-1]
    return port if port.isdigit() else "PORT"


def _container_port(mapping: str) -> str:
    return mapping.rsplit("->", 1)[-1]


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
    one is set (it is built with protected mode off).

    ## Why it matters
    Any process that reaches an unauthenticated datastore owns its data; with Redis that includes
    writing files on the server (CONFIG SET dir). md5 password hashes can be replayed and are
    deprecated since PostgreSQL 18. A superuser app can drop any database, read files with
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
    - Redis docs, "Redis security" (protected mode, AUTH)
    - PostgreSQL docs, "Password Authentication" and `password_encryption`; the postgres image's
      POSTGRES_HOST_AUTH_METHOD documentation
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
    for instance in [*live, *views]:
        if instance.get("auth_required") is not False:
            continue
        name = instance.get("service") or instance.get("target")
        source = "redis"
        if instance.get("from_files"):
            source = str(instance.get("auth_source") or "compose")
            message = (f"Redis {instance.get('project')}/{name} runs without a password: its files set none "
                       f"({source}), so anything that reaches its port can read and change the data.")
        else:
            message = f"Redis {name} ({instance.get('target')}) accepts commands without a password."
        yield Hit(f"redis {name}", message,
                  Recommendation("Set requirepass (or ACL users) and put the password in the clients' URLs.",
                                 "Reaching the port is no longer enough to read or change the data.",
                                 Risk.CONFIRM, 20, Phase.NOW, 'command: ["redis-server", "--requirepass", '
                                 '"${REDIS_PASSWORD:?}"]'),
                  [Evidence(source, "target", instance.get("target")),
                   Evidence(source, "auth_required", False, True)])


def _postgres_trust_env(facts: Facts) -> Iterator[Hit]:
    for service in stack_services(facts):
        method = str(service["environment"].get("POSTGRES_HOST_AUTH_METHOD") or "")
        if method.lower() != "trust":
            continue
        yield Hit(_label(service), f"{_label(service)} sets POSTGRES_HOST_AUTH_METHOD=trust: every "
                                   "connection from another container or host is accepted without a "
                                   "password.",
                  Recommendation("Remove POSTGRES_HOST_AUTH_METHOD and set POSTGRES_PASSWORD.",
                                 "PostgreSQL asks every network client for a password.", Risk.CONFIRM, 20,
                                 Phase.NOW, "POSTGRES_HOST_AUTH_METHOD: scram-sha-256"),
                  [_location(service),
                   Evidence("compose", "POSTGRES_HOST_AUTH_METHOD", "trust", "scram-sha-256")],
                  severity=Severity.CRITICAL)


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
    - RFC 5280 4.1.2.5 (validity)
    - Let's Encrypt docs, "Integration Guide" (renew 30 days before expiry)
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
    - Rails guides, "Configuring Rails Applications": config.assume_ssl, config.force_ssl
    - Django docs, settings: SECURE_PROXY_SSL_HEADER
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

@rule("SEC008", "container-host-access", Severity.HIGH, needs_any=("compose", "docker"))
def container_host_access(facts: Facts, settings: Settings) -> Iterator[Hit]:
    """
    ## What it checks
    Containers (compose services or running containers) with the Docker socket mounted, running
    privileged, or on the host network. Monitoring and maintenance agents that need this
    (cAdvisor, node-exporter, promtail, watchtower, traefik's docker provider...) are reported at
    INFO so the exposure stays known.

    ## Why it matters
    The Docker socket is root on the host: whoever controls the container can start a privileged
    container mounting `/` (a read-only mount does not help, the API is still writable). A privileged
    container can load kernel modules and reach every device. On the host network a container's ports
    bypass Docker's isolation and can reach services bound to the host's loopback.

    ## Recommendation
    Remove the socket mount, `privileged: true` or `network_mode: host` unless the service needs them;
    give an agent a filtered socket (tecnativa/docker-socket-proxy with only the API sections it
    reads), and precise `cap_add:` / `devices:` instead of privileged.

    ## Estimated effect
    A compromised container no longer means a compromised host.

    ## Fix safety
    Confirm: the service may lose a feature that needed the access; test it after the change.

    ## References
    - Docker docs, "Docker daemon attack surface"; OWASP Docker Security Cheat Sheet (rules 1 and 2)
    """
    for service in stack_services(facts):
        issues = []
        if service["sockets"]:
            issues.append(f"mounts the Docker socket ({service['sockets'][0]})")
        if service["privileged"]:
            issues.append("runs privileged")
        if service["network_mode"] == "host":
            issues.append("uses the host network")
        if not issues:
            continue
        agent = is_host_agent(service["image"], service["name"])
        if agent:
            severity = Severity.INFO
        elif service["sockets"] or service["privileged"]:
            severity = Severity.HIGH
        else:
            severity = Severity.MEDIUM
        note = " (expected for this agent; keep it limited)" if agent else ""
        yield Hit(_label(service), f"{_label(service)} {' and '.join(issues)}{note}.",
                  Recommendation("Remove the host access, or give the agent a filtered socket proxy.",
                                 "A compromised container no longer controls the host.", Risk.CONFIRM, 30,
                                 Phase.MONTH if agent else Phase.WEEK),
                  [_location(service), Evidence(service["origin"], "image", service["image"]),
                   Evidence(service["origin"], "host_access", issues, [])],
                  severity=severity)


# --- SEC009: floating datastore tags -------------------------------------------------------------

def tag_risk(kind: str, tag: str | None, digest: str | None) -> tuple[Severity, str] | None:
    """How dangerous a datastore image's tag is, or None when it is pinned enough."""
    if digest:
        return None
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
    Datastore images on a floating tag: `latest`, no tag, or a distribution name (`alpine`) is
    floating (HIGH for PostgreSQL, MySQL, MongoDB and others whose data format is tied to the major
    version, MEDIUM otherwise); a bare major (`postgres:16`, `redis:7-alpine`) is LOW. Images pinned
    by digest or by a minor version (`postgres:16.4`) pass.

    ## Why it matters
    The next `docker compose pull && up -d` (or watchtower) silently installs what the tag points to
    that day. Across a major version PostgreSQL refuses to start on the old data directory (an
    outage until a pg_upgrade or a restore), and MySQL/MongoDB upgrade the files in place with no way
    back. A bare major only moves minor releases, which keep the data format: the risk is an
    unplanned restart (the container is recreated) and a version that differs from the one tested,
    hence LOW.

    ## Recommendation
    Pin the datastore to a minor version (`postgres:16.4`, `redis:7.4.1`) or a digest, and upgrade on
    purpose: read the release notes, take a backup, then change the tag.

    ## Estimated effect
    No surprise major upgrade; upgrades happen when planned.

    ## Fix safety
    Safe to pin to the version running now (`docker inspect` shows it); pinning to another version is
    an upgrade.

    ## References
    - PostgreSQL docs, "Upgrading a PostgreSQL Cluster"; the postgres image's notes on PGDATA and
      major versions
    """
    for service in stack_services(facts):
        kind = service["product"]
        if not kind or not service["image"]:
            continue
        image = parse_image(service["image"])
        risk = tag_risk(kind, image.tag, image.digest)
        if risk is None:
            continue
        severity, why = risk
        yield Hit(_label(service), f"{kind} service {_label(service)} uses {service['image']}: {why}.",
                  Recommendation("Pin the image to the running minor version or a digest.",
                                 "Upgrades happen only when planned.", Risk.SAFE, 5, Phase.MONTH,
                                 f"image: {image.repository.removeprefix('library/')}:<major.minor>"),
                  [_location(service), Evidence(service["origin"], "image", service["image"]),
                   Evidence(service["origin"], "tag", image.tag, "major.minor or @sha256 digest")],
                  severity=severity)
