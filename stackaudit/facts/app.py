"""App-server facts: which compose services run Puma, Sidekiq, Gunicorn, Uvicorn, Celery or RQ, with
how many processes, threads and database connections each may hold, and where every number came from.

Read from the compose facts (command, entrypoint, environment, replicas) and from config files the
services mount (or bake in from their build context): config/puma.rb, config/database.yml,
config/sidekiq.yml, gunicorn.conf.py. Defaults are the upstream ones, cited where they are used.

What these numbers add up to - the connection budget against max_connections, and its cross-check
with PostgreSQL's live sessions - is worked out once per audit in derive/app.py.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import parse_qs, urlsplit

from stackaudit.facts import CollectContext, Facts, SourceUnavailable
from stackaudit.facts.appconfig import (
    Env,
    Resolved,
    YamlError,
    as_int,
    option,
    parse_database_yml,
    parse_gunicorn_conf,
    parse_prepared_statements,
    parse_puma_rb,
    parse_queue_yml,
    parse_sidekiq_yml,
    safe_parse,
    split_commands,
)
from stackaudit.facts.host import effective_cores
from stackaudit.facts.pooler import database_target, recognise_pooler, route_through_poolers

# Upstream defaults (checked in the projects' sources):
PUMA_DEFAULT_MAX_THREADS = 5  # puma lib/puma/configuration.rb DEFAULTS max_threads (MRI)
RAILS_PUMA_RB_THREADS = 3  # Rails >= 7.2 generated puma.rb: ENV.fetch("RAILS_MAX_THREADS", 3); 5 before
ACTIVE_RECORD_POOL = 5  # Active Record's pool default, and the generated database.yml's fallback
SIDEKIQ_CONCURRENCY = 5  # Sidekiq 7 lib/sidekiq/config.rb DEFAULTS concurrency (10 in 6.x, 25 before)
GUNICORN_WORKERS = 1  # gunicorn settings: workers = $WEB_CONCURRENCY or 1; threads = 1
UVICORN_WORKERS = 1  # uvicorn --workers: $WEB_CONCURRENCY or 1
SQLALCHEMY_POOL = (5, 10)  # create_engine pool_size=5, max_overflow=10

WEB_KINDS = ("puma", "gunicorn", "uvicorn")
DB_HINT = re.compile(r"(^|_)(DATABASE|DB|POSTGRES|PG)(_|$)|^PGHOST$")
MAX_FILE_BYTES = 1_000_000


@dataclass
class Process:
    """One compose service's app process, filled in by a recogniser; `to_json` is the facts shape."""

    project: str
    service: str
    kind: str
    role: str
    replicas: int
    framework: str | None = None
    processes: int = 1
    threads: int | None = None
    db_pool: int | None = None
    pool_source: str | None = None
    concurrency: int | None = None
    pool_type: str | None = None
    conn_max_age: str | None = None
    uses_database: bool = True
    pool_env_var: str | None = None
    database_target: dict[str, Any] = field(default_factory=dict)  # host, port, database: no secret
    via_pooler: str | None = None
    extra_per_process: int = 0  # connections a process holds besides its threads (same pool)
    extra_per_replica: int = 0  # helper processes outside the thread model (Solid Queue's supervisor)
    prepared_statements: bool | None = None  # Rails: does Active Record prepare statements?
    evidence: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def cite(self, name: str, resolved: Resolved | int | None, origin: str | None = None) -> int | None:
        """Record where a number came from and return it as an int."""
        value = resolved if isinstance(resolved, int) or resolved is None else as_int(resolved)
        text = origin if origin is not None else (resolved.origin if isinstance(resolved, Resolved) else "")
        self.evidence.append({"field": name, "value": value, "from": text})
        return value

    def to_json(self) -> dict[str, Any]:
        return {
            "project": self.project, "service": self.service, "kind": self.kind, "role": self.role,
            "framework": self.framework, "replicas": self.replicas, "processes": self.processes,
            "threads": self.threads, "db_pool": self.db_pool, "pool_source": self.pool_source,
            "pool_env_var": self.pool_env_var, "concurrency": self.concurrency,
            "pool_type": self.pool_type, "conn_max_age": self.conn_max_age,
            "uses_database": self.uses_database, "database_target": self.database_target,
            "via_pooler": self.via_pooler, "extra_per_process": self.extra_per_process,
            "extra_per_replica": self.extra_per_replica, "prepared_statements": self.prepared_statements,
            "evidence": self.evidence, "notes": self.notes,
        }


class Files:
    """Finds a config file a service sees at a container path, on the host: through its bind
    mounts, else in its build context (baked into the image at build time)."""

    def __init__(self, service: Mapping[str, Any], project_dir: Path | None,
                 on_error: Callable[[str, str], None]) -> None:
        self.mounts = [
            (PurePosixPath(str(v.get("target", ""))), Path(str(v["source"])))
            for v in service.get("volumes") or []
            if isinstance(v, Mapping) and v.get("type", "bind") == "bind" and v.get("source")
        ]
        self.mounts = [(t, s if s.is_absolute() or project_dir is None else project_dir / s)
                       for t, s in self.mounts]
        self.context = _build_context(service, project_dir)
        self.project_dir = project_dir
        self.on_error = on_error

    def find(self, relative: str, explicit: str | None = None) -> tuple[str, str] | None:
        """(text, shown name) of `relative` (e.g. config/puma.rb), or of an explicit -C path."""
        for path, shown in self._candidates(relative, explicit):
            if path.is_file():
                return self._read(path, shown)
        return None

    def _candidates(self, relative: str, explicit: str | None) -> Iterable[tuple[Path, str]]:
        wanted = PurePosixPath(explicit or relative)
        if wanted.is_absolute():
            for target, source in self.mounts:
                if wanted == target or wanted.is_relative_to(target):
                    path = source / wanted.relative_to(target)
                    yield path, self._shown(path)
            wanted = PurePosixPath(*wanted.parts[-2:])
        parts = wanted.parts
        for target, source in self.mounts:
            if target.parts[-len(parts):] == parts:  # the file itself is mounted
                yield source, self._shown(source)
            for cut in range(len(parts) - 1, -1, -1):  # a parent directory is mounted
                if (cut == 0 or target.parts[-cut:] == parts[:cut]) and source.is_dir():
                    yield source.joinpath(*parts[cut:]), self._shown(source.joinpath(*parts[cut:]))
        if self.context is not None:
            path = self.context.joinpath(*parts)
            yield path, f"{self._shown(path)} (build context)"

    def _shown(self, path: Path) -> str:
        """A host path as the user knows it: relative to the project directory when inside it."""
        if self.project_dir is not None and path.is_relative_to(self.project_dir):
            return str(path.relative_to(self.project_dir))
        return str(path)

    def _read(self, path: Path, shown: str) -> tuple[str, str] | None:
        try:
            if path.stat().st_size > MAX_FILE_BYTES:
                self.on_error(str(path), "larger than 1 MB: not read as an app config file")
                return None
            return path.read_text(encoding="utf-8", errors="replace"), shown
        except OSError as exc:
            self.on_error(str(path), f"cannot read: {exc.strerror or exc}")
            return None


def _build_context(service: Mapping[str, Any], project_dir: Path | None) -> Path | None:
    build = service.get("build")
    if build is True:  # the compose facts say only "built here": the usual context is the project dir
        return project_dir if project_dir is not None and project_dir.is_dir() else None
    context = build.get("context") if isinstance(build, Mapping) else build
    if not context or not isinstance(context, str) or "://" in context:
        return None
    path = Path(context)
    if not path.is_absolute():
        if project_dir is None:
            return None
        path = project_dir / path
    return path if path.is_dir() else None


# ---------------------------------------------------------------------------------------------
# collect


def collect(ctx: CollectContext) -> dict[str, Any]:
    projects = ctx.facts.get("compose").get("projects") or []
    if not projects:
        raise SourceUnavailable("no compose project was found: app servers are recognised from compose "
                                "services (give --project-dir)")
    cpu_count = _cpu_count(ctx.facts)
    processes: list[dict[str, Any]] = []
    poolers: list[dict[str, Any]] = []
    private_env = ctx.private.get("compose_env", {})
    for project in projects:
        project_dir = Path(project["dir"]) if project.get("dir") else None
        for service in (project.get("services") or {}).values():
            env = private_env.get(project.get("name"), {}).get(service.get("name")) \
                or service.get("environment") or {}
            files = Files(service, project_dir, lambda where, why: ctx.error(where, why))
            pooler = recognise_pooler(project.get("name", ""), service, _argv(service), env, files)
            if pooler is not None:
                poolers.append(pooler)
                continue
            try:
                found = recognise(project.get("name", ""), service, env, files, cpu_count)
            except YamlError as exc:
                ctx.error(f"{project.get('name')}/{service.get('name')}", str(exc))
                continue
            if found is not None:
                processes.append(found.to_json())
    route_through_poolers(processes, poolers)
    return {"processes": processes, "poolers": poolers, "summary": _summary(processes, poolers)}


def _cpu_count(facts: Facts) -> int | None:
    """Whole cores the app can use (the cgroup quota when tighter), or None without host facts."""
    host = facts.get("host")
    return max(1, int(effective_cores(host))) if host.get("cpu_count") else None


def _summary(processes: Sequence[Mapping[str, Any]], poolers: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per service replicas x processes x threads (pool); the connections they add up to are the
    derived `connection_summary`, which the report and `collect --out` add here."""
    summary: dict[str, Any] = {"services": len(processes)}
    for proc in processes:
        key = f"{proc['service']}_{proc['kind']}"
        summary[key] = f"{proc['replicas']}x{proc['processes']}x{proc['threads']} (pool {proc['db_pool']})"
    for pooler in poolers:
        summary[f"{pooler['service']}_pgbouncer"] = (f"{pooler['pool_mode']} pooling, default_pool_size "
                                                     f"{pooler['default_pool_size']}")
    return summary


# ---------------------------------------------------------------------------------------------
# recognising a service


def recognise(project: str, service: Mapping[str, Any], env: Env, files: Files,
              cpu_count: int | None = None) -> Process | None:
    """The app process a compose service runs, or None when it is not an app server."""
    argv = _argv(service)
    replicas = service.get("replicas")
    base = {"project": project, "service": str(service.get("name", "")),
            "replicas": int(replicas) if isinstance(replicas, int) else 1}
    for segment in reversed(split_commands(argv)):
        found = _recognise_segment(segment, base, env, files, cpu_count)
        if found is not None:
            if found.framework == "rails":
                _prepared_statements(found, env, files)
            return _finish(found, env, service)
    if not argv and _looks_like_rails(env):
        proc = Process(kind="puma", role="web", framework="rails", **base)  # type: ignore[arg-type]
        proc.notes.append("no command in compose: assumed the image's default `rails server` (Puma), "
                          "from the RAILS_* environment")
        _puma(proc, [], env, files)
        return _finish(proc, env, service)
    return None


def _argv(service: Mapping[str, Any]) -> list[str]:
    return [str(w) for w in _as_list(service.get("entrypoint")) + _as_list(service.get("command"))]


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, str):
        return value.split()
    return list(value)


def _looks_like_rails(env: Env) -> bool:
    return any(k in env for k in ("RAILS_ENV", "RAILS_MAX_THREADS", "SECRET_KEY_BASE", "RAILS_MASTER_KEY"))


def _program(segment: Sequence[str]) -> tuple[str, list[str]] | None:
    """The server a command runs (puma, sidekiq, ...) and its arguments after the program name."""
    for index, word in enumerate(segment):
        name = word.rsplit("/", 1)[-1]
        rest = list(segment[index + 1:])
        if name in ("puma", "sidekiq", "gunicorn", "uvicorn", "celery", "rq", "rqworker"):
            return name, rest
        if name == "rails" and rest[:1] in (["server"], ["s"]):
            return "puma", rest[1:]
        if name in ("rails", "rake") and rest[:1] == ["solid_queue:start"]:
            return "solid_queue", rest[1:]
        if name == "jobs" and "bin/" in word:  # Rails 8's bin/jobs runs Solid Queue
            return "solid_queue", rest
        if name == "good_job" and rest[:1] in ([], ["start"]):
            return "good_job", rest[1:]
        if name.startswith("python") and rest[:1] == ["-m"] and len(rest) > 1:
            module = rest[1].split(".")[0]
            if module in ("gunicorn", "uvicorn", "celery", "rq"):
                return module, rest[2:]
    return None


def _recognise_segment(segment: Sequence[str], base: dict[str, Any], env: Env, files: Files,
                       cpu_count: int | None) -> Process | None:
    found = _program(segment)
    if found is None:
        return None
    name, args = found
    if name == "puma":
        proc = Process(kind="puma", role="web", framework="rails", **base)
        _puma(proc, args, env, files)
    elif name == "sidekiq":
        proc = Process(kind="sidekiq", role="worker", framework="rails", **base)
        _sidekiq(proc, args, env, files)
    elif name == "gunicorn":
        proc = Process(kind="gunicorn", role="web", **base)
        _gunicorn(proc, args, env, files, cpu_count)
    elif name == "uvicorn":
        proc = Process(kind="uvicorn", role="web", **base)
        _uvicorn(proc, args, env)
    elif name in ("solid_queue", "good_job"):
        proc = Process(kind=name, role="worker", framework="rails", **base)
        (_solid_queue if name == "solid_queue" else _good_job)(proc, args, env, files)
    elif name == "celery":
        if "worker" not in args:
            return None  # celery beat / flower: no job concurrency of their own
        proc = Process(kind="celery", role="worker", **base)
        _celery(proc, args, env, cpu_count)
    else:
        if name == "rq" and not any(a in ("worker", "worker-pool") for a in args):
            return None
        proc = Process(kind="rq", role="worker", **base)
        _rq(proc, args)
        _python_pool(proc, args, env)
    return proc


def _env_int(env: Env, *names: str) -> tuple[int, str] | None:
    for name in names:
        value = env.get(name)
        if value is not None and str(value).strip().isdigit():
            return int(str(value).strip()), f"env {name}={value}"
    return None


def _flag_int(args: Sequence[str], names: Sequence[str]) -> tuple[int, str] | None:
    value = option(args, names)
    if value is not None and value.split(":")[-1].isdigit():
        return int(value.split(":")[-1]), f"command flag {names[0]} {value}"
    return None


# --- Puma --------------------------------------------------------------------------------------


def _puma(proc: Process, args: Sequence[str], env: Env, files: Files) -> None:
    """Precedence as Puma applies it: command-line flags > config file > its env defaults."""
    config = files.find("config/puma.rb", option(args, ("-C", "--config")))
    parsed = safe_parse(lambda: parse_puma_rb(config[0], env, config[1]), config[1]) if config else None
    if parsed is not None:
        proc.notes.extend(parsed.problems)
    workers = _flag_int(args, ("-w", "--workers"))
    if workers:
        count = proc.cite("workers", workers[0], workers[1])
    elif parsed is not None and parsed.workers is not None:
        count = proc.cite("workers", parsed.workers)
    elif (from_env := _env_int(env, "WEB_CONCURRENCY")) is not None:
        count = proc.cite("workers", from_env[0], f"{from_env[1]} (read by Puma itself)")
    else:
        count = proc.cite("workers", 0, "Puma default 0 (single mode, one process)")
    proc.processes = max(1, count or 0)
    threads = _flag_int(args, ("-t", "--threads"))
    if threads:
        proc.threads = proc.cite("threads", threads[0], threads[1])
    elif parsed is not None and parsed.max_threads is not None:
        proc.threads = proc.cite("threads", parsed.max_threads)
    elif (from_env := _env_int(env, "PUMA_MAX_THREADS", "MAX_THREADS")) is not None:
        proc.threads = proc.cite("threads", from_env[0], from_env[1])
    elif (from_env := _env_int(env, "RAILS_MAX_THREADS")) is not None:
        proc.threads = proc.cite("threads", from_env[0], f"{from_env[1]} (read by the app's puma.rb, "
                                                         "not mounted)")
    else:
        proc.threads = proc.cite("threads", RAILS_PUMA_RB_THREADS,
                                 "assumed Rails 7.2+ generated puma.rb default 3 (5 before 7.2; "
                                 f"bare Puma {PUMA_DEFAULT_MAX_THREADS})")
    _rails_pool(proc, env, files)


# --- Sidekiq -----------------------------------------------------------------------------------


def _sidekiq(proc: Process, args: Sequence[str], env: Env, files: Files) -> None:
    """Sidekiq's CLI order (lib/sidekiq/cli.rb setup_options): -c flag > sidekiq.yml :concurrency: >
    RAILS_MAX_THREADS > 5 (Sidekiq 7). SIDEKIQ_CONCURRENCY is only a convention of apps' sidekiq.yml."""
    rails_env = str(env.get("RAILS_ENV") or env.get("RACK_ENV") or "production")
    config = files.find("config/sidekiq.yml", option(args, ("-C", "--config")))
    from_file = safe_parse(lambda: parse_sidekiq_yml(config[0], env, rails_env, config[1]),
                           config[1]) if config else None
    flag = _flag_int(args, ("-c", "--concurrency"))
    if flag:
        value = proc.cite("concurrency", flag[0], flag[1])
    elif from_file is not None and as_int(from_file) is not None:
        value = proc.cite("concurrency", from_file)
    elif config is None and (from_env := _env_int(env, "SIDEKIQ_CONCURRENCY")) is not None:
        value = proc.cite("concurrency", from_env[0], f"{from_env[1]} (assumed read by the image's "
                                                      "sidekiq.yml, not mounted)")
    elif (from_env := _env_int(env, "RAILS_MAX_THREADS")) is not None:
        value = proc.cite("concurrency", from_env[0], f"{from_env[1]} (Sidekiq's CLI falls back to it)")
    else:
        value = proc.cite("concurrency", SIDEKIQ_CONCURRENCY, "Sidekiq 7 default 5")
    proc.concurrency = proc.threads = value
    _rails_pool(proc, env, files)


# --- Solid Queue and GoodJob --------------------------------------------------------------------


def _solid_queue(proc: Process, args: Sequence[str], env: Env, files: Files) -> None:
    """bin/jobs (or solid_queue:start) runs config/queue.yml (-c flag > SOLID_QUEUE_CONFIG > the default
    path). Each worker process uses one connection per thread plus two, for polling and the heartbeat
    (rails/solid_queue README, "threads"); the supervisor (1) and each dispatcher (2: polling and
    heartbeat, by the same design) hold their own. With no file Solid Queue runs one worker of 3
    threads and one dispatcher."""
    rails_env = str(env.get("RAILS_ENV") or env.get("RACK_ENV") or "production")
    explicit = option(args, ("-c", "--config_file")) or env.get("SOLID_QUEUE_CONFIG")
    config = files.find("config/queue.yml", explicit)
    parsed = safe_parse(lambda: parse_queue_yml(config[0], env, rails_env, config[1]),
                        config[1]) if config else None
    if parsed is None:
        workers = ((Resolved(3, "Solid Queue default threads 3 (config/queue.yml not found)"),
                    Resolved(1, "Solid Queue default processes 1")),)
        dispatchers = 1
    else:
        workers, dispatchers = parsed.workers, parsed.dispatchers
    counts = [(as_int(t) or 3, as_int(n) or 1) for t, n in workers]
    proc.threads = proc.concurrency = proc.cite(
        "concurrency", max((t for t, _ in counts), default=0),
        "; ".join(t.origin for t, _ in workers) + (" (the largest entry, counted for every worker)"
                                                    if len(counts) > 1 else ""))
    processes = max(1, sum(n for _, n in counts))
    proc.cite("workers", processes, "; ".join(n.origin for _, n in workers) or "no workers configured")
    proc.processes = processes
    proc.extra_per_process = 2 if counts else 0
    proc.extra_per_replica = 1 + 2 * dispatchers
    proc.notes.append(f"Solid Queue: each worker process needs threads + 2 connections; the supervisor and "
                      f"{dispatchers} dispatcher(s) hold {proc.extra_per_replica} more")
    _rails_pool(proc, env, files)


def _good_job(proc: Process, args: Sequence[str], env: Env, files: Files) -> None:
    """GoodJob's order (lib/good_job/configuration.rb, max_threads): --max-threads > GOOD_JOB_MAX_THREADS
    > RAILS_MAX_THREADS > 5. Queues written 'a:2;b:3' run one pool per ';' part, each with its own
    threads (the count after ':', else max_threads). The notifier keeps one more connection for
    LISTEN/NOTIFY (GoodJob README, "Database connections")."""
    found = _flag_int(args, ("--max-threads",)) or _env_int(env, "GOOD_JOB_MAX_THREADS") \
        or _env_int(env, "RAILS_MAX_THREADS")
    threads, origin = found if found else (5, "GoodJob default 5")
    queues = option(args, ("--queues", "-q")) or env.get("GOOD_JOB_QUEUES")
    pools = [part.strip() for part in str(queues or "").split(";") if part.strip()]
    counted = [int(c) if (c := part.rpartition(":")[2].strip()).isdigit() and ":" in part else threads
               for part in pools]
    if len(pools) > 1 or counted != [threads] * len(pools):
        threads, origin = sum(counted), f"queues '{queues}': {' + '.join(map(str, counted))} threads"
    proc.threads = proc.concurrency = proc.cite("concurrency", threads, origin)
    proc.extra_per_process = 1
    _rails_pool(proc, env, files)


# --- Rails database pool ------------------------------------------------------------------------


def _prepared_statements(proc: Process, env: Env, files: Files) -> None:
    """Whether Active Record prepares statements: DATABASE_URL ?prepared_statements= > database.yml >
    the PostgreSQL adapter's default (true). Matters behind a transaction-pooling PgBouncer."""
    rails_env = str(env.get("RAILS_ENV") or env.get("RACK_ENV") or "production")
    flag = _url_query(env.get("DATABASE_URL"), "prepared_statements")
    if flag is not None:
        proc.prepared_statements = flag.lower() not in ("false", "0", "no", "off")
        proc.evidence.append({"field": "prepared_statements", "value": proc.prepared_statements,
                              "from": "DATABASE_URL ?prepared_statements= parameter"})
        return
    config = files.find("config/database.yml")
    found = safe_parse(lambda: parse_prepared_statements(config[0], env, rails_env, config[1]),
                       config[1]) if config else None
    if found is not None and found.value is not None:
        proc.prepared_statements = bool(found.value)
        proc.evidence.append({"field": "prepared_statements", "value": proc.prepared_statements,
                              "from": found.origin})
        return
    proc.prepared_statements = True
    proc.evidence.append({"field": "prepared_statements", "value": True,
                          "from": "Active Record's PostgreSQL adapter default (true)"})


def _rails_pool(proc: Process, env: Env, files: Files) -> None:
    """The Active Record pool of one process: DATABASE_URL ?pool= > database.yml > env conventions."""
    rails_env = str(env.get("RAILS_ENV") or env.get("RACK_ENV") or "production")
    url_pool = _url_param(env.get("DATABASE_URL"), "pool")
    if url_pool is not None:
        proc.db_pool = proc.cite("db_pool", url_pool, "DATABASE_URL ?pool= parameter")
        proc.pool_source = "DATABASE_URL"
        return
    config = files.find("config/database.yml")
    if config is not None:
        resolved = safe_parse(lambda: parse_database_yml(config[0], env, rails_env, config[1]), config[1])
        if resolved is not None and as_int(resolved) is not None:
            proc.db_pool = proc.cite("db_pool", resolved)
            proc.pool_source = config[1]
            proc.pool_env_var = _env_var_in(resolved.origin)
            return
        proc.db_pool = proc.cite("db_pool", ACTIVE_RECORD_POOL,
                                 f"{config[1]} sets no pool for {rails_env}: Active Record default 5")
        proc.pool_source = "default"
        return
    for name in ("DB_POOL", "DATABASE_POOL", "RAILS_DB_POOL", "RAILS_MAX_THREADS"):
        found = _env_int(env, name)
        if found is not None:
            proc.db_pool = proc.cite("db_pool", found[0], f"{found[1]} (database.yml not mounted: assumed "
                                                          "the image's database.yml reads it)")
            proc.pool_source = f"env {name}"
            proc.pool_env_var = name
            return
    proc.db_pool = proc.cite("db_pool", ACTIVE_RECORD_POOL,
                             "generated database.yml default ENV.fetch(\"RAILS_MAX_THREADS\") { 5 }")
    proc.pool_source = "default"


def _env_var_in(origin: str) -> str | None:
    match = re.search(r"env ([A-Z0-9_]+)=", origin)
    return match.group(1) if match else None


def _url_query(url: str | None, name: str) -> str | None:
    """The last value of a query parameter of a database URL (`?pool=10`), or None."""
    if not url:
        return None
    values = parse_qs(urlsplit(str(url)).query).get(name)
    return values[-1] if values else None


def _url_param(url: str | None, name: str) -> int | None:
    value = _url_query(url, name)
    return int(value) if value is not None and value.isdigit() else None


# --- Python servers ----------------------------------------------------------------------------


def _gunicorn(proc: Process, args: Sequence[str], env: Env, files: Files, cpu_count: int | None) -> None:
    """Gunicorn's order: command line > GUNICORN_CMD_ARGS > config file > defaults ($WEB_CONCURRENCY)."""
    env_args = str(env.get("GUNICORN_CMD_ARGS") or "").split()
    config = files.find("gunicorn.conf.py", option(args, ("-c", "--config")))
    conf = safe_parse(lambda: parse_gunicorn_conf(config[0], env, cpu_count, config[1]),
                      config[1]) if config else {}
    workers = _flag_int(args, ("-w", "--workers")) or _from_env_args(env_args, ("-w", "--workers"))
    if workers:
        proc.processes = proc.cite("workers", workers[0], workers[1]) or 1
    elif as_int(conf.get("workers")) is not None:
        proc.processes = proc.cite("workers", conf["workers"]) or 1
    elif (from_env := _env_int(env, "WEB_CONCURRENCY")) is not None:
        proc.processes = proc.cite("workers", from_env[0], from_env[1]) or 1
    else:
        proc.processes = proc.cite("workers", GUNICORN_WORKERS, "Gunicorn default 1") or 1
    threads = _flag_int(args, ("--threads",)) or _from_env_args(env_args, ("--threads",))
    if threads:
        proc.threads = proc.cite("threads", threads[0], threads[1])
    elif as_int(conf.get("threads")) is not None:
        proc.threads = proc.cite("threads", conf["threads"])
    else:
        proc.threads = proc.cite("threads", 1, "Gunicorn default 1 (sync worker)")
    worker_class = option(args, ("-k", "--worker-class")) or option(env_args, ("-k", "--worker-class"))
    if worker_class is None and conf.get("worker_class") is not None:
        worker_class = str(conf["worker_class"].value)
    if worker_class and any(k in worker_class for k in ("gevent", "eventlet")):
        connections = _flag_int(args, ("--worker-connections",)) or (1000, "Gunicorn default 1000")
        proc.threads = proc.cite("threads", connections[0], f"{worker_class}: {connections[1]} "
                                                            "greenlets per worker")
    proc.pool_type = worker_class
    _python_pool(proc, args, env)


def _from_env_args(env_args: Sequence[str], names: Sequence[str]) -> tuple[int, str] | None:
    found = _flag_int(env_args, names)
    return (found[0], f"GUNICORN_CMD_ARGS {names[0]} {found[0]}") if found else None


def _uvicorn(proc: Process, args: Sequence[str], env: Env) -> None:
    workers = _flag_int(args, ("--workers",)) or _env_int(env, "WEB_CONCURRENCY")
    proc.processes = proc.cite("workers", *(workers or (UVICORN_WORKERS, "Uvicorn default 1"))) or 1
    proc.threads = None  # async: sessions are bounded by the app's pool, not by threads
    proc.notes.append("async server: connections per process are bounded by the app's pool")
    _python_pool(proc, args, env)


def _celery(proc: Process, args: Sequence[str], env: Env, cpu_count: int | None) -> None:
    """Celery: -c/--concurrency, default the CPU count; -P prefork (processes) | threads | gevent."""
    pool = option(args, ("-P", "--pool")) or "prefork"
    concurrency = _flag_int(args, ("-c", "--concurrency"))
    autoscale = option(args, ("--autoscale",))
    if autoscale and autoscale.split(",")[0].isdigit():
        concurrency = (int(autoscale.split(",")[0]), f"command flag --autoscale {autoscale} (maximum)")
    env_c = _env_int(env, "CELERY_WORKER_CONCURRENCY", "CELERYD_CONCURRENCY")
    if concurrency is None and env_c is not None:
        concurrency = env_c
    if concurrency is None:
        concurrency = (cpu_count or 1, f"Celery default: the CPU count ({cpu_count or 'unknown, 1 assumed'})")
    proc.concurrency = proc.cite("concurrency", *concurrency)
    proc.pool_type = pool
    if pool in ("prefork", "processes"):
        proc.processes, proc.threads = proc.concurrency or 1, 1
    else:
        proc.processes, proc.threads = 1, proc.concurrency
    _python_pool(proc, args, env)


def _rq(proc: Process, args: Sequence[str]) -> None:
    """`rq worker` runs one job at a time in one process; `rq worker-pool -n N` runs N."""
    count = _flag_int(args, ("-n", "--num-workers")) if "worker-pool" in args else None
    proc.processes = proc.cite("workers", *(count or (1, "rq worker: one job at a time"))) or 1
    proc.threads = proc.concurrency = 1


def _python_pool(proc: Process, args: Sequence[str], env: Env) -> None:
    """Django: one connection per thread (no pool); SQLAlchemy: pool_size + max_overflow per process."""
    django = bool(env.get("DJANGO_SETTINGS_MODULE")) or any(".wsgi" in a or ".asgi" in a for a in args)
    proc.framework = "django" if django else (proc.framework or "python")
    conn_age = _env_int(env, "CONN_MAX_AGE", "DJANGO_CONN_MAX_AGE", "DB_CONN_MAX_AGE",
                        "DATABASE_CONN_MAX_AGE")
    url_age = _url_param(env.get("DATABASE_URL"), "conn_max_age")
    if conn_age or url_age is not None:
        proc.conn_max_age = str(conn_age[0] if conn_age else url_age)
        proc.cite("conn_max_age", int(proc.conn_max_age), conn_age[1] if conn_age else "DATABASE_URL param")
    size = _env_int(env, "SQLALCHEMY_POOL_SIZE", "DB_POOL_SIZE", "DATABASE_POOL_SIZE", "POOL_SIZE")
    if size is not None:
        overflow = _env_int(env, "SQLALCHEMY_MAX_OVERFLOW", "DB_MAX_OVERFLOW", "DATABASE_MAX_OVERFLOW",
                            "MAX_OVERFLOW") or (SQLALCHEMY_POOL[1], "SQLAlchemy default max_overflow 10")
        proc.framework = "sqlalchemy" if not django else proc.framework
        how = f"pool_size {size[0]} ({size[1]}) + max_overflow {overflow[0]} ({overflow[1]})"
        proc.db_pool = proc.cite("db_pool", size[0] + overflow[0], how)
        proc.pool_source = size[1]
    elif django:
        proc.pool_source = "django: one connection per thread"


def _finish(proc: Process, env: Env, service: Mapping[str, Any]) -> Process:
    depends = service.get("depends_on") or []
    depends_names = list(depends) if not isinstance(depends, Mapping) else list(depends.keys())
    proc.uses_database = any(DB_HINT.search(k) for k in env) or any(
        re.search(r"postgres|(^|[-_])db($|[-_])|database", str(d)) for d in depends_names)
    if not proc.uses_database:
        proc.notes.append("no database variable or dependency found: not counted in the connection budget")
    proc.database_target = database_target(env)
    return proc
