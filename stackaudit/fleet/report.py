"""`stackaudit fleet report DIR`: the newest snapshot of every host audited with the same rules as
`stackaudit audit --facts`, and what only a fleet view shows: which codes fire on how many hosts,
drift inside an inventory group (versions, image tags, settings), hosts that are stale or failed,
and one secret reused on several hosts (through the keyed fingerprints of `collect`).

One host at a time: its snapshot is read, audited and reduced to its findings and the few values
drift compares, then dropped, so memory grows with the findings, not with the snapshots.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stackaudit import __version__
from stackaudit.config import Settings
from stackaudit.facts import Facts, iter_services
from stackaudit.fleet.inventory import FleetError
from stackaudit.fleet.snapshots import MAX_SNAPSHOT_BYTES, BadFile, HostFolder, host_folders, read_json
from stackaudit.model import Finding, Severity, to_jsonable
from stackaudit.pipeline import audit

FLEET_REPORT_SCHEMA_VERSION = 1
STATUSES = ("ok", "failed", "stale")
DEFAULT_STALE = "2d"
# last-error.json's stage when the role stackaudit_metrics failed after a good snapshot was fetched:
# the host's status comes from that snapshot, the failure is its reason (fleet.collect writes it).
METRICS_STAGE = "metrics"
# pg_settings sources that mean nobody chose the value (PostgreSQL docs, "pg_settings": source).
_UNSET_SOURCES = frozenset({"default", "override", "client", "session", None})
# Settings that name this very server (paths, ports, its name): different on every host by design.
_IDENTITY_SETTINGS = frozenset({
    "data_directory", "config_file", "hba_file", "ident_file", "external_pid_file", "cluster_name",
    "port", "listen_addresses", "unix_socket_directories", "log_directory", "log_filename",
    "ssl_cert_file", "ssl_key_file", "ssl_ca_file", "application_name", "primary_conninfo",
})
# Redis CONFIG keys that change how it behaves (memory, eviction, persistence).
_REDIS_SETTINGS = ("maxmemory", "maxmemory-policy", "appendonly", "appendfsync", "save")

# MariaDB/MySQL variables compared whatever their origin: the sizes that decide memory, connections
# and redo (MySQL 8.0.30+ sizes redo by innodb_redo_log_capacity, the others by the log file size).
_MYSQL_KEY_SETTINGS = frozenset({
    "innodb_buffer_pool_size", "max_connections", "innodb_log_file_size", "innodb_redo_log_capacity",
    "innodb_log_files_in_group", "innodb_flush_log_at_trx_commit", "sync_binlog", "tmp_table_size",
    "max_heap_table_size", "table_open_cache", "thread_cache_size", "sql_mode",
})
_MYSQL_UNSET_ORIGINS = frozenset({"auto", "compiled", "compile-time"})
# Variables that name this very server or change as it runs: different on every host by design.
_MYSQL_IDENTITY = frozenset({
    "hostname", "port", "socket", "datadir", "basedir", "tmpdir", "pid_file", "log_error", "server_id",
    "server_uuid", "bind_address", "report_host", "report_port", "general_log_file", "slow_query_log_file",
    "log_bin_basename", "log_bin_index", "relay_log", "relay_log_basename", "relay_log_index",
    "innodb_data_home_dir", "innodb_log_group_home_dir", "plugin_dir", "secure_file_priv",
    "character_sets_dir", "lc_messages_dir", "version", "version_comment", "version_compile_machine",
    "version_compile_os", "version_malloc_library", "version_source_revision", "version_ssl_library",
    "timestamp", "system_time_zone", "wsrep_node_name", "wsrep_node_address", "wsrep_sst_receive_address",
})
_MYSQL_IDENTITY_PREFIXES = ("gtid_", "ssl_", "wsrep_provider_")

DriftKey = tuple[str, str]  # (what, subject): ("PostgreSQL setting", "work_mem")


@dataclass
class HostReport:
    name: str
    status: str  # ok | failed | stale
    groups: tuple[str, ...]
    collected_at: str | None = None
    snapshot: str | None = None  # file name of the newest snapshot
    reason: str | None = None  # why failed or stale; of an ok host, its metrics failure; else None
    stage: str | None = None  # last-error.json's, when that error is the host's status
    failed_at: str | None = None
    findings: list[Finding] = field(default_factory=list)
    audited: bool = False  # a snapshot was read and audited (its findings count)
    # (what, subject) -> (value, chosen): what drift compares; `chosen` says someone set it
    values: dict[DriftKey, tuple[str, bool]] = field(default_factory=dict)
    fingerprints: list[dict[str, str]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        counted = Counter(f.severity for f in self.findings)
        return {s.label(): counted.get(s, 0) for s in sorted(Severity, reverse=True)}

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "groups": list(self.groups),
                "collected_at": self.collected_at, "snapshot": self.snapshot, "reason": self.reason,
                "stage": self.stage, "failed_at": self.failed_at,
                "audited": self.audited, "severity_counts": self.counts(),
                "findings": to_jsonable(self.findings)}


@dataclass(frozen=True)
class CodeSpread:
    """One finding code and the hosts it fires on."""

    code: str
    name: str
    severity: Severity  # the worst it has on any host
    hosts: tuple[str, ...]
    of: int  # hosts audited

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "severity": self.severity.label(), "count": len(self.hosts),
                "of": self.of, "hosts": list(self.hosts)}


@dataclass(frozen=True)
class Drift:
    """Hosts of one group that disagree on a version, an image tag or a setting."""

    group: str
    what: str
    subject: str
    values: tuple[tuple[str, tuple[str, ...]], ...]  # (value, hosts), most hosts first

    def to_json(self) -> dict[str, Any]:
        return {"group": self.group, "what": self.what, "subject": self.subject,
                "values": [{"value": v, "hosts": list(h)} for v, h in self.values]}


@dataclass(frozen=True)
class SecretReuse:
    """One secret value met on several hosts: the hosts and the places, never the value."""

    hosts: tuple[str, ...]
    places: tuple[tuple[str, str], ...]  # (host, where)

    def to_json(self) -> dict[str, Any]:
        return {"hosts": list(self.hosts), "places": [{"host": h, "where": w} for h, w in self.places]}


@dataclass
class FleetReport:
    directory: str
    stale_after_seconds: float
    hosts: list[HostReport]
    by_code: list[CodeSpread]
    drift: list[Drift]
    secret_reuse: list[SecretReuse]
    generated_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    tool_version: str = __version__

    @property
    def audited(self) -> int:
        return sum(1 for h in self.hosts if h.audited)

    def status_counts(self) -> dict[str, int]:
        counted = Counter(h.status for h in self.hosts)
        return {s: counted.get(s, 0) for s in STATUSES}

    def severity_counts(self) -> dict[str, int]:
        counted = Counter(f.severity for h in self.hosts for f in h.findings)
        return {s.label(): counted.get(s, 0) for s in sorted(Severity, reverse=True)}

    def not_current(self) -> list[HostReport]:
        return [h for h in self.hosts if h.status != "ok"]

    def to_look_at(self) -> list[HostReport]:
        """Hosts not current, and current ones with a reason (their metrics role failed)."""
        return [h for h in self.hosts if h.status != "ok" or h.reason]

    def exit_code(self, fail_on: Severity) -> int:
        """2 when no host could be audited; 1 for a finding at or above fail_on or a host not ok."""
        if not self.audited:
            return 2
        worst = max((f.severity for h in self.hosts for f in h.findings), default=None)
        return 1 if self.not_current() or (worst is not None and worst >= fail_on) else 0

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": FLEET_REPORT_SCHEMA_VERSION,
            "generated_at": self.generated_at,
            "tool_version": self.tool_version,
            "directory": self.directory,
            "stale_after_seconds": self.stale_after_seconds,
            "summary": {"hosts": len(self.hosts), "audited": self.audited, **self.status_counts()},
            "severity_counts": self.severity_counts(),
            "hosts": [h.to_json() for h in self.hosts],
            "by_code": {c.code: c.to_json() for c in self.by_code},
            "drift": [d.to_json() for d in self.drift],
            "secret_reuse": [r.to_json() for r in self.secret_reuse],
        }


def build(directory: Path, settings: Settings, stale_after_seconds: float,
          now: datetime | None = None) -> FleetReport:
    """The fleet report of DIR; FleetError when DIR is not a fleet directory or holds no host."""
    if not directory.is_dir():
        raise FleetError(f"{directory} is not a directory (give the --out DIR of `stackaudit fleet collect`)")
    now = now or datetime.now(UTC)
    try:
        hosts = [host_report(folder, settings, stale_after_seconds, now)
                 for folder in host_folders(directory)]
    except OSError as exc:
        raise FleetError(f"cannot read {directory}: {exc.strerror or exc}") from None
    if not hosts:
        raise FleetError(f"no hosts in {directory}: collect them first with `stackaudit fleet collect`")
    return FleetReport(str(directory), stale_after_seconds, hosts, spread(hosts), drift(hosts),
                       secret_reuse(hosts))


def host_report(folder: HostFolder, settings: Settings, stale_after_seconds: float,
                now: datetime) -> HostReport:
    """One host: its newest snapshot audited, and its status (the newer of snapshot and error wins)."""
    host = HostReport(folder.name, "failed", folder.groups)
    if folder.problem and folder.snapshot is None and folder.last_error is None:
        host.reason = folder.problem
        return host
    if folder.snapshot is not None:
        host.snapshot = folder.snapshot.name
        try:
            _audit_into(host, folder.snapshot, folder.path.parent.resolve(), settings)
        except BadFile as exc:
            host.reason = f"newest snapshot {exc}"
            return host
    error = folder.last_error
    taken = folder.snapshot_time
    if error is not None and (taken is None or error["failed_at"] > taken):
        when = error["failed_at"].strftime("%Y-%m-%d %H:%M UTC")
        host.stage, host.failed_at = error["stage"], error["failed_at"].isoformat()
        host.reason = f"{error['stage']} ({when}): {error['reason']}"
        if error["stage"] == METRICS_STAGE and host.audited:
            _status_by_age(host, taken, stale_after_seconds, now)  # the snapshot before it is good
    elif taken is None:
        host.reason = "no snapshot yet"
    else:
        _status_by_age(host, taken, stale_after_seconds, now)
    if folder.problem:  # a groups.json or last-error.json that could not be used
        host.reason = f"{host.reason}; {folder.problem}" if host.reason else folder.problem
    return host


def _status_by_age(host: HostReport, taken: datetime | None, stale_after_seconds: float,
                   now: datetime) -> None:
    """ok, or stale when the newest snapshot is too old; a reason already there (metrics) stays."""
    if taken is not None and (now - taken).total_seconds() > stale_after_seconds:
        host.status = "stale"
        stale = f"newest snapshot is {age((now - taken).total_seconds())} old"
        host.reason = f"{stale}; {host.reason}" if host.reason else stale
    else:
        host.status = "ok"


def _audit_into(host: HostReport, path: Path, root: Path, settings: Settings) -> None:
    payload = read_json(path, root, MAX_SNAPSHOT_BYTES)
    try:
        facts = Facts.from_json(payload)
    except (ValueError, KeyError, TypeError) as exc:
        raise BadFile(f"{path.name}: {exc}") from None
    try:
        report = audit(settings, facts)
    except Exception as exc:  # noqa: BLE001 - one hostile snapshot must not end the fleet's report
        raise BadFile(f"{path.name} could not be audited ({exc.__class__.__name__}: {exc})") from None
    host.findings = report.findings
    host.audited = True
    host.collected_at = facts.collected_at or None
    host.values = drift_values(facts)
    host.fingerprints = facts.secret_fingerprints or []


def age(seconds: float) -> str:
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.0f} days"
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:.0f} hours"
    return f"{max(seconds, 0) / 60:.0f} minutes"


# --- what drift compares ---------------------------------------------------------------------------

def drift_values(facts: Facts) -> dict[DriftKey, tuple[str, bool]]:
    """Versions, image tags and settings of one host; each with whether someone chose it."""
    values: dict[DriftKey, tuple[str, bool]] = {}
    postgres = facts.get("postgres")
    if postgres.get("server_version"):
        values[("PostgreSQL version", "server")] = (str(postgres["server_version"]), True)
    for name, setting in _mapping(postgres.get("settings")).items():
        if isinstance(setting, Mapping) and name not in _IDENTITY_SETTINGS:
            chosen = setting.get("source") not in _UNSET_SOURCES
            values[("PostgreSQL setting", str(name))] = (_setting_text(setting), chosen)
    for instance in _list(facts.get("redis").get("instances")):
        subject = str(instance.get("service") or instance.get("target") or "redis")
        if instance.get("version"):
            values[("Redis version", subject)] = (str(instance["version"]), True)
        config = _mapping(instance.get("config"))
        for key in _REDIS_SETTINGS:
            if key in config:
                values[("Redis setting", f"{subject} {key}")] = (str(config[key]), True)
    for instance in _list(facts.get("mysql").get("instances")):
        values.update(_mysql_values(instance))
    for service in iter_services(facts):
        if isinstance(service, Mapping) and service.get("image"):
            subject = f"{service.get('project')}/{service.get('name')}"
            values[("image", subject)] = (str(service["image"]), True)
    return values


def _mysql_values(instance: Mapping[str, Any]) -> dict[DriftKey, tuple[str, bool]]:
    """A MariaDB/MySQL server's flavour and version, and its variables: chosen when its origin says
    someone set it (facts/mysql.py read_origins), the key sizes always."""
    subject = str(instance.get("service") or instance.get("target") or "mysql")
    values: dict[DriftKey, tuple[str, bool]] = {}
    if instance.get("version"):
        flavour = "MariaDB" if instance.get("flavor") == "mariadb" else "MySQL"
        values[("MariaDB/MySQL version", subject)] = (f"{flavour} {instance['version']}", True)
    origins = _mapping(instance.get("origins"))
    for name, value in _mapping(instance.get("variables")).items():
        name = str(name).lower()
        if name in _MYSQL_IDENTITY or name.startswith(_MYSQL_IDENTITY_PREFIXES):
            continue
        chosen = name in _MYSQL_KEY_SETTINGS or _mysql_chosen(origins.get(name))
        values[("MariaDB/MySQL setting", f"{subject} {name}")] = (str(value), chosen)
    return values


def _mysql_chosen(origin: Any) -> bool:
    """MariaDB's "config"/"command-line"/"sql" and MySQL's "global"/"explicit"/"persisted"/
    "dynamic"/"command_line" (with a file's path after them) are someone's choice; "auto" is the
    server sizing itself and no origin is the compiled default."""
    return bool(origin) and str(origin).split(" ", 1)[0] not in _MYSQL_UNSET_ORIGINS


def _setting_text(setting: Mapping[str, Any]) -> str:
    if setting.get("value") is not None:
        return str(setting["value"])
    unit = setting.get("unit") or ""
    return f"{setting.get('setting')}{unit if unit and not str(unit)[0].isdigit() else ''}"


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Mapping[str, Any]]:
    return [v for v in value if isinstance(v, Mapping)] if isinstance(value, list) else []


# --- the fleet's views -----------------------------------------------------------------------------

def spread(hosts: Iterable[HostReport]) -> list[CodeSpread]:
    """Every code with the hosts it fires on; most hosts first, then the worst, then the code."""
    audited = [h for h in hosts if h.audited]
    on: dict[str, set[str]] = defaultdict(set)
    worst: dict[str, Finding] = {}
    for host in audited:
        for finding in host.findings:
            on[finding.code].add(host.name)
            if finding.code not in worst or finding.severity > worst[finding.code].severity:
                worst[finding.code] = finding
    spreads = [CodeSpread(code, worst[code].name, worst[code].severity, tuple(sorted(names)), len(audited))
               for code, names in on.items()]
    return sorted(spreads, key=lambda c: (-len(c.hosts), -int(c.severity), c.code))


def drift(hosts: Iterable[HostReport]) -> list[Drift]:
    """Within each inventory group, every compared value on which its hosts disagree."""
    groups: dict[str, list[HostReport]] = defaultdict(list)
    for host in hosts:
        if host.audited:
            for group in host.groups:
                groups[group].append(host)
    found = []
    for group, members in sorted(groups.items()):
        if len(members) < 2:
            continue
        chosen = {key for h in members for key, (_, was_chosen) in h.values.items() if was_chosen}
        for what, subject in sorted(chosen):
            by_value: dict[str, list[str]] = defaultdict(list)
            for member in members:
                if (what, subject) in member.values:
                    by_value[member.values[(what, subject)][0]].append(member.name)
            if len(by_value) > 1:
                ordered = sorted(by_value.items(), key=lambda kv: (-len(kv[1]), kv[0]))
                found.append(Drift(group, what, subject, tuple((v, tuple(h)) for v, h in ordered)))
    return found


def secret_reuse(hosts: Iterable[HostReport]) -> list[SecretReuse]:
    """Fingerprints seen on two hosts or more: the same secret value, named by where it is."""
    places: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for host in hosts:
        for entry in host.fingerprints:
            places[entry["fingerprint"]].add((host.name, entry["where"]))
    reused = []
    for where in places.values():
        names = tuple(sorted({h for h, _ in where}))
        if len(names) > 1:
            reused.append(SecretReuse(names, tuple(sorted(where))))
    return sorted(reused, key=lambda r: (-len(r.hosts), r.places))
