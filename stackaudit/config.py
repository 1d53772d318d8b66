"""One Settings object: targets, thresholds, ignores. File + environment; every default is here.

Precedence (last wins): built-in defaults < stackaudit.toml (project dir, then ~/.config/stackaudit,
or --config) < STACKAUDIT_* environment variables < command-line options.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from stackaudit.model import Severity

ALL_SOURCES: tuple[str, ...] = (
    "host",
    "docker",
    "compose",
    "env",
    "postgres",
    "app",  # runs beside postgres (facts.AFTER); listed here for its place in snapshots and reports
    "pgbouncer",  # after app: its live pools are matched to the poolers the app goes through
    "redis",
    "mysql",
    "monitoring",
    "tls",
    "backups",
)

# Sources read from another source's files alone: collected whenever that one is.
FILE_SOURCES: dict[str, str] = {"app": "compose"}

# Every rule threshold in one table: code -> name -> value. A per-subject override is written
# `[thresholds.SYS001."/var/lib/docker"] high_percent = 80` in the config file.
DEFAULT_THRESHOLDS: dict[str, dict[str, float]] = {
    "SYS001": {"high_percent": 75.0, "critical_percent": 85.0, "inodes_high_percent": 80.0,
               "inodes_critical_percent": 90.0, "days_to_full": 14.0},
    "SYS002": {"available_percent": 10.0, "psi_some_avg300": 10.0},
    "SYS004": {"load15_per_core": 1.0},
    "PG001": {"low_ratio": 0.5, "high_ratio": 2.0},
    "PG002": {"low_ratio": 0.5, "high_ratio": 1.5},
    "PG008": {"requested_share": 0.2, "min_checkpoints": 10.0},
    "PG004": {"min_temp_bytes_per_day": 512.0 * 1024**2, "min_statement_temp_bytes": 16.0 * 1024**2},
    "PG102": {"idle_in_transaction_seconds": 300.0, "critical_seconds": 3600.0},
    "PG201": {"dead_tuple_ratio": 0.2, "min_dead_tuples": 10000.0, "min_rows_never_vacuumed": 10000.0},
    "PG202": {"xid_age_high": 1_000_000_000.0, "xid_age_critical": 1_500_000_000.0},
    "PG301": {"min_index_bytes": 1024.0**2, "min_stats_days": 7.0},
    "PG303": {"min_rows": 100000.0, "min_seq_scans": 50.0, "seq_scan_share": 0.5},
    "PG304": {"min_hit_ratio": 0.95, "min_blocks_read": 100000.0},
    "PG402": {"mean_exec_ms": 100.0, "total_exec_share": 0.2, "min_calls": 5.0,
              "min_total_exec_ms": 60000.0},
    "MY001": {"low_ratio": 0.5, "high_ratio": 2.0},
    "MY003": {"min_minutes": 15.0},
    "MY004": {"disk_share": 0.25, "min_disk_tables": 100.0},
    "MY005": {"miss_share": 0.1, "min_misses": 1000.0},
    "MY101": {"used_share": 0.85},
    "MY102": {"aborted_share": 0.05, "min_aborted": 100.0},
    "MY301": {"min_uptime_days": 7.0, "min_index_bytes": 1024.0**2},
    "MY304": {"min_hit_ratio": 0.95, "min_read_requests": 100000.0},
    "MY402": {"mean_ms": 100.0, "total_share": 0.2, "min_calls": 5.0, "min_total_ms": 60000.0},
    "MY501": {"max_days": 14.0},
    "APP002": {"web_processes_per_core": 2.0, "max_web_threads": 16.0, "max_job_threads": 50.0},
    "RDS003": {"used_ratio": 0.85},
    "DKR001": {"keep_releases": 3.0, "min_reclaimable_bytes": 100.0 * 2**20, "medium_bytes": 2.0 * 2**30},
    "DKR003": {"medium_log_bytes": 1.0 * 2**30},
    "DKR004": {"min_reclaimable_bytes": 1.0 * 2**30},
    "DKR005": {"min_uptime_seconds": 3600.0},
    "SEC006": {"days": 21.0},
    "PGB001": {"maxwait_seconds": 1.0, "high_maxwait_seconds": 10.0},
    "BAK001": {"max_age_hours": 26.0},
    "BAK002": {"max_age_days": 35.0},
}

SECRET_ENV_PREFIX = "STACKAUDIT_"


class ConfigError(ValueError):
    """The configuration file or an option is wrong; the message says where and why."""


@dataclass(frozen=True)
class Settings:
    project_dirs: tuple[Path, ...] = ()
    compose_files: tuple[Path, ...] = ()  # explicit -f files, in order
    pg_dsn: str | None = None
    pgbouncer_dsn: str | None = None  # the admin console (database "pgbouncer")
    redis_url: str | None = None
    mysql_url: str | None = None
    docker_host: str | None = None
    prometheus_url: str | None = None
    tls_domains: tuple[str, ...] = ()
    sources: tuple[str, ...] = ALL_SOURCES
    select: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    fail_on: Severity = Severity.HIGH
    thresholds: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    disk_paths: tuple[Path, ...] = ()
    backup_dest: Path | None = None
    alert_urls: tuple[str, ...] = ()
    state_dir: Path = field(default_factory=lambda: default_state_dir())
    proc_root: Path = Path("/proc")  # collectors read here, so tests can point them elsewhere
    sys_root: Path = Path("/sys")
    timeout_seconds: float = 10.0
    storage_probe: bool = True  # measure random reads on the data mounts (evidence for the tuner)

    def threshold(self, code: str, name: str, subject: str | None = None) -> float:
        """The threshold `name` of rule `code`, overridden per subject (e.g. a mount) if configured."""
        per_code = self.thresholds.get(code, {})
        if subject is not None:
            per_subject = per_code.get(subject)
            if isinstance(per_subject, Mapping) and name in per_subject:
                return float(per_subject[name])
        if name in per_code and not isinstance(per_code[name], Mapping):
            return float(per_code[name])
        return DEFAULT_THRESHOLDS[code][name]

    def wants(self, source: str) -> bool:
        """A source asked for, or one read from the files of one asked for: `app` is read from the
        compose files and the config files they mount, so a files-only audit (`--sources compose,env`)
        runs the APP rules too."""
        return source in self.sources or FILE_SOURCES.get(source) in self.sources

    def with_overrides(self, **changes: Any) -> Settings:
        """Apply command-line options; None means 'not given' and keeps the current value."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def default_state_dir() -> Path:
    env = os.environ.get("STACKAUDIT_STATE_DIR")
    if env:
        return Path(env)
    if os.geteuid() == 0:
        return Path("/var/lib/stackaudit")
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "stackaudit"


def parse_code_list(text: str | None) -> tuple[str, ...]:
    """`PG,SYS001 , pg2` -> ("PG", "SYS001", "PG2")."""
    if not text:
        return ()
    return tuple(part.strip().upper() for part in text.split(",") if part.strip())


def parse_sources(text: str | None) -> tuple[str, ...] | None:
    if not text:
        return None
    wanted = tuple(part.strip().lower() for part in text.split(",") if part.strip())
    unknown = [s for s in wanted if s not in ALL_SOURCES]
    if unknown:
        raise ConfigError(f"unknown source(s) {', '.join(unknown)}; known: {', '.join(ALL_SOURCES)}")
    return wanted


def find_config_file(explicit: Path | None, project_dirs: tuple[Path, ...]) -> Path | None:
    if explicit is not None:
        if not explicit.is_file():
            raise ConfigError(f"config file {explicit} does not exist")
        return explicit
    candidates = [d / "stackaudit.toml" for d in project_dirs]
    candidates.append(Path.home() / ".config" / "stackaudit" / "stackaudit.toml")
    return next((c for c in candidates if c.is_file()), None)


def load_settings(
    config_file: Path | None = None,
    project_dirs: tuple[Path, ...] = (),
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Defaults, then the config file, then STACKAUDIT_* variables."""
    environ = os.environ if environ is None else environ
    settings = Settings(project_dirs=project_dirs)
    path = find_config_file(config_file, project_dirs)
    if path is not None:
        settings = _apply_file(settings, path)
    return _apply_environment(settings, environ)


def _apply_file(settings: Settings, path: Path) -> Settings:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.__class__.__name__}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    changes: dict[str, Any] = {}
    if "thresholds" in data:
        changes["thresholds"] = _check_thresholds(data["thresholds"], path)
    disk = data.get("disk", {})
    if "paths" in disk:
        changes["disk_paths"] = tuple(Path(p) for p in disk["paths"])
    alerts = data.get("alerts", {})
    if "urls" in alerts:
        changes["alert_urls"] = tuple(str(u) for u in alerts["urls"])
    backup = data.get("backup", {})
    if "dest" in backup:
        changes["backup_dest"] = Path(backup["dest"])
    ignore = data.get("ignore", {})
    if "codes" in ignore:
        changes["ignore"] = tuple(str(c).upper() for c in ignore["codes"])
    targets = data.get("targets", {})
    for key, attr in (("pg", "pg_dsn"), ("redis", "redis_url"), ("mysql", "mysql_url"),
                      ("prometheus", "prometheus_url"), ("pgbouncer", "pgbouncer_dsn")):
        if key in targets:
            changes[attr] = str(targets[key])
    if "domains" in targets:
        changes["tls_domains"] = tuple(str(d) for d in targets["domains"])
    if "timeout_seconds" in targets:
        changes["timeout_seconds"] = _positive_seconds(targets["timeout_seconds"], f"{path}: [targets]")
    if "state_dir" in data:
        changes["state_dir"] = Path(data["state_dir"])
    return replace(settings, **changes)


def _positive_seconds(value: Any, where: str) -> float:
    """How long one call to a service may take (connect, query, Docker API)."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: timeout_seconds must be a number of seconds, not {value!r}") from None
    if seconds <= 0:
        raise ConfigError(f"{where}: timeout_seconds must be above 0")
    return seconds


def _check_thresholds(raw: Any, path: Path) -> dict[str, dict[str, Any]]:
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: [thresholds] must be a table")
    for code, values in raw.items():
        if code not in DEFAULT_THRESHOLDS:
            raise ConfigError(f"{path}: [thresholds.{code}]: no rule with thresholds has that code")
        for name, value in values.items():
            known = DEFAULT_THRESHOLDS[code]
            if isinstance(value, dict):
                bad = [n for n in value if n not in known]
            else:
                bad = [] if name in known else [name]
            if bad:
                raise ConfigError(f"{path}: [thresholds.{code}]: unknown threshold {bad[0]!r}")
    return raw


def _apply_environment(settings: Settings, environ: Mapping[str, str]) -> Settings:
    changes: dict[str, Any] = {}
    simple = {"PG_DSN": "pg_dsn", "REDIS_URL": "redis_url", "DOCKER_HOST": "docker_host",
              "PROMETHEUS_URL": "prometheus_url", "PGBOUNCER_DSN": "pgbouncer_dsn", "MYSQL_URL": "mysql_url"}
    for suffix, attr in simple.items():
        value = environ.get(SECRET_ENV_PREFIX + suffix)
        if value:
            changes[attr] = value
    if environ.get("STACKAUDIT_STATE_DIR"):
        changes["state_dir"] = Path(environ["STACKAUDIT_STATE_DIR"])
    if environ.get("STACKAUDIT_BACKUP_DEST"):
        changes["backup_dest"] = Path(environ["STACKAUDIT_BACKUP_DEST"])
    if environ.get("STACKAUDIT_IGNORE"):
        changes["ignore"] = parse_code_list(environ["STACKAUDIT_IGNORE"])
    if environ.get("STACKAUDIT_SOURCES"):
        changes["sources"] = parse_sources(environ["STACKAUDIT_SOURCES"])
    if environ.get("STACKAUDIT_TIMEOUT"):
        changes["timeout_seconds"] = _positive_seconds(environ["STACKAUDIT_TIMEOUT"], "STACKAUDIT_TIMEOUT")
    if environ.get("STACKAUDIT_FAIL_ON"):
        changes["fail_on"] = Severity.parse(environ["STACKAUDIT_FAIL_ON"])
    return replace(settings, **changes)
