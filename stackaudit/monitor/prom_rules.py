"""Prometheus alerting rules and a Grafana dashboard for the check's metrics, from the same thresholds.

The thresholds come from `Settings.threshold` (the rules' own table, with the config's overrides), so
an alert in Prometheus and a finding of `stackaudit check` fire at the same value and point to the
same explain page. A second group does the same from node_exporter's metrics, for hosts where only
node_exporter is scraped; its used share is computed as df does: used / (used + available).
Rule file format: https://prometheus.io/docs/prometheus/latest/configuration/alerting_rules/
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ruamel.yaml import YAML

from stackaudit.config import Settings
from stackaudit.monitor import DAY_SECONDS

# No rule owns a "connections in use" threshold (PG101 compares the configured pools); this is the
# share of max_connections at which new sessions are close to being refused.
PG_CONNECTIONS_RATIO = 0.9
CHECK_STALE_SECONDS = 2 * 3600  # a 30-minute check that has not run for two hours is broken
NODE_FS = 'fstype!~"tmpfs|overlay|squashfs|ramfs|nsfs",mountpoint!~"/run.*|/boot.*"'
# Every alert names its host: with many hosts (`stackaudit fleet prometheus`) an alert without it
# says nothing. `instance` is the scrape target's label; a metric's own `instance` label (the Redis or
# MariaDB server) arrives as `exported_instance`, as Prometheus renames a clash when honor_labels is
# false (its default): https://prometheus.io/docs/prometheus/latest/configuration/configuration/
INSTANCE = "{{ $labels.instance }}"
SERVER = "{{ $labels.exported_instance }}"


@dataclass(frozen=True)
class AlertRule:
    name: str
    code: str
    expr: str
    severity: str  # "warning" | "critical"
    summary: str
    description: str
    for_: str = "10m"

    def to_yaml(self) -> dict[str, Any]:
        return {
            "alert": self.name,
            "expr": self.expr,
            "for": self.for_,
            "labels": {"severity": self.severity, "code": self.code},
            "annotations": {
                "summary": self.summary if INSTANCE in self.summary else f"{self.summary} on {INSTANCE}",
                "description": self.description,
                "explain": f"stackaudit explain {self.code}",
            },
        }


def _ratio(percent: float) -> str:
    return f"{percent / 100.0:g}"


def _mount_overrides(settings: Settings) -> list[str]:
    """Mounts with their own SYS001 thresholds (`[thresholds.SYS001."/srv"]`)."""
    per_code = settings.thresholds.get("SYS001", {})
    return sorted(k for k, v in per_code.items() if isinstance(v, Mapping))


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def regex_literal(value: str) -> str:
    """A literal inside a PromQL regex string: RE2 escapes, then the string's own backslash."""
    return "".join("\\\\" + c if c in ".^$*+?()[]{}|\\" else c for c in value)


def disk_rules(settings: Settings) -> Iterator[AlertRule]:
    """SYS001 per mount: the default thresholds, and one set per mount that overrides them."""
    overrides = _mount_overrides(settings)
    scopes: list[tuple[str | None, str]] = [(None, "")]
    if overrides:
        others = "|".join(regex_literal(m) for m in overrides)
        scopes = [(None, f'mountpoint!~"{others}"')]
    scopes += [(m, f'mountpoint="{_quote(m)}"') for m in overrides]
    for subject, selector in scopes:
        suffix = "" if subject is None else "".join(p.capitalize() for p in subject.strip("/").split("/"))
        yield from _disk_scope(settings, subject, "{" + selector + "}", suffix)


def _disk_scope(settings: Settings, subject: str | None, sel: str, suffix: str) -> Iterator[AlertRule]:
    def t(name: str) -> float:
        return settings.threshold("SYS001", name, subject)

    where = "{{ $labels.mountpoint }} ({{ $labels.holds }})"
    yield AlertRule(
        f"StackauditDiskSpaceHigh{suffix}",
        "SYS001",
        f"stackaudit_disk_used_ratio{sel} >= {_ratio(t('high_percent'))}",
        "warning",
        f"Disk {where} is {{{{ $value | humanizePercentage }}}} full",
        f"Used share at or above {t('high_percent'):g}% (critical at {t('critical_percent'):g}%).",
    )
    yield AlertRule(
        f"StackauditDiskSpaceCritical{suffix}",
        "SYS001",
        f"stackaudit_disk_used_ratio{sel} >= {_ratio(t('critical_percent'))}",
        "critical",
        f"Disk {where} is {{{{ $value | humanizePercentage }}}} full",
        f"Used share at or above {t('critical_percent'):g}%: writes will soon fail.",
        "5m",
    )
    yield AlertRule(
        f"StackauditDiskInodesHigh{suffix}",
        "SYS001",
        f"stackaudit_disk_inodes_used_ratio{sel} >= {_ratio(t('inodes_high_percent'))}",
        "warning",
        f"Inodes of {where} {{{{ $value | humanizePercentage }}}} used",
        f"Inode use at or above {t('inodes_high_percent'):g}%: new files fail although bytes are free.",
    )
    yield AlertRule(
        f"StackauditDiskInodesCritical{suffix}",
        "SYS001",
        f"stackaudit_disk_inodes_used_ratio{sel} >= {_ratio(t('inodes_critical_percent'))}",
        "critical",
        f"Inodes of {where} {{{{ $value | humanizePercentage }}}} used",
        f"Inode use at or above {t('inodes_critical_percent'):g}%.",
        "5m",
    )
    days = t("days_to_full")
    yield AlertRule(
        f"StackauditDiskFullSoon{suffix}",
        "SYS001",
        f"stackaudit_disk_forecast_seconds_to_full{sel} < {days * DAY_SECONDS:g}",
        "warning",
        "Disk {{ $labels.mountpoint }} full in {{ $value | humanizeDuration }} at the recent rate",
        f"The fill-rate forecast reaches 100% within {days:g} days.",
        "30m",
    )


def service_rules(settings: Settings) -> Iterator[AlertRule]:
    available = settings.threshold("SYS002", "available_percent")
    yield AlertRule(
        "StackauditMemoryLow",
        "SYS002",
        f"stackaudit_memory_available_ratio < {_ratio(available)}",
        "warning",
        "Available memory is {{ $value | humanizePercentage }}",
        f"Less than {available:g}% of the usable memory is available.",
        "15m",
    )
    yield AlertRule(
        "StackauditPostgresConnectionsHigh",
        "PG101",
        f"stackaudit_postgres_connections_used_ratio >= {PG_CONNECTIONS_RATIO:g}",
        "warning",
        "PostgreSQL uses {{ $value | humanizePercentage }} of max_connections",
        "New sessions will soon be refused; compare the pools with max_connections.",
    )
    mysql = settings.threshold("MY101", "used_share")
    yield AlertRule(
        "StackauditMysqlConnectionsHigh",
        "MY101",
        f"stackaudit_mysql_connections_used_ratio >= {mysql:g}",
        "warning",
        f"MariaDB/MySQL {SERVER} on {INSTANCE} uses {{{{ $value | humanizePercentage }}}} of max_connections",
        f"Sessions at or above {mysql * 100:g}% of max_connections: new ones will soon be refused.",
    )
    redis = settings.threshold("RDS003", "used_ratio")
    yield AlertRule(
        "StackauditRedisMemoryNearLimit",
        "RDS003",
        f"stackaudit_redis_memory_used_ratio >= {redis:g}",
        "warning",
        f"Redis {SERVER} on {INSTANCE} uses {{{{ $value | humanizePercentage }}}} of its limit",
        f"Used memory at or above {redis * 100:g}% of maxmemory or the container limit.",
    )
    backup = settings.threshold("BAK001", "max_age_hours")
    yield AlertRule(
        "StackauditBackupStale",
        "BAK001",
        f"stackaudit_backup_age_seconds > {backup * 3600:g}",
        "critical",
        "Newest verified backup of {{ $labels.database }} is {{ $value | humanizeDuration }} old",
        f"No verified backup in the last {backup:g} hours.",
        "0m",
    )
    days = settings.threshold("SEC006", "days")
    yield AlertRule(
        "StackauditCertificateExpiring",
        "SEC006",
        f"stackaudit_tls_certificate_expiry_seconds < {days * DAY_SECONDS:g}",
        "warning",
        "Certificate of {{ $labels.domain }} expires in {{ $value | humanizeDuration }}",
        f"The certificate expires within {days:g} days.",
        "1h",
    )


def meta_rules() -> Iterator[AlertRule]:
    yield AlertRule(
        "StackauditCheckStale",
        "MON001",
        f"time() - stackaudit_check_timestamp_seconds > {CHECK_STALE_SECONDS}",
        "warning",
        "stackaudit check has not run for {{ $value | humanizeDuration }}",
        "The metrics are old: the check timer or the textfile export stopped.",
        "0m",
    )
    yield AlertRule(
        "StackauditSourceDown",
        "MON002",
        "stackaudit_source_up == 0",
        "warning",
        "stackaudit cannot read {{ $labels.source }}",
        "The source could not be collected; run `stackaudit check` to see why.",
        "1h",
    )


def node_rules(settings: Settings) -> Iterator[AlertRule]:
    high, critical = (
        settings.threshold("SYS001", "high_percent"),
        settings.threshold("SYS001", "critical_percent"),
    )
    inodes = settings.threshold("SYS001", "inodes_high_percent")
    days = settings.threshold("SYS001", "days_to_full")
    used = (
        f"(node_filesystem_size_bytes{{{NODE_FS}}} - node_filesystem_free_bytes{{{NODE_FS}}}) / "
        f"(node_filesystem_size_bytes{{{NODE_FS}}} - node_filesystem_free_bytes{{{NODE_FS}}} "
        f"+ node_filesystem_avail_bytes{{{NODE_FS}}})"
    )
    where = "{{ $labels.mountpoint }} on {{ $labels.instance }}"
    yield AlertRule(
        "NodeDiskSpaceHigh",
        "SYS001",
        f"{used} >= {_ratio(high)}",
        "warning",
        f"Disk {where} is {{{{ $value | humanizePercentage }}}} full",
        f"At or above {high:g}%.",
    )
    yield AlertRule(
        "NodeDiskSpaceCritical",
        "SYS001",
        f"{used} >= {_ratio(critical)}",
        "critical",
        f"Disk {where} is {{{{ $value | humanizePercentage }}}} full",
        f"At or above {critical:g}%.",
        "5m",
    )
    yield AlertRule(
        "NodeDiskInodesHigh",
        "SYS001",
        f"1 - node_filesystem_files_free{{{NODE_FS}}} / node_filesystem_files{{{NODE_FS}}} "
        f">= {_ratio(inodes)}",
        "warning",
        f"Inodes of {where} {{{{ $value | humanizePercentage }}}} used",
        f"At or above {inodes:g}%.",
    )
    yield AlertRule(
        "NodeDiskFullSoon",
        "SYS001",
        f"predict_linear(node_filesystem_avail_bytes{{{NODE_FS}}}[6h], {days * DAY_SECONDS:g}) < 0 "
        f"and node_filesystem_readonly{{{NODE_FS}}} == 0",
        "warning",
        f"Disk {where} fills within {days:g} days at the last 6 hours' rate",
        "Linear extrapolation of the last 6 hours (less robust than stackaudit's forecast).",
        "1h",
    )


def rule_groups(settings: Settings, include_node: bool = True) -> dict[str, Any]:
    groups = [
        {
            "name": "stackaudit",
            "rules": [r.to_yaml() for r in (*disk_rules(settings), *service_rules(settings), *meta_rules())],
        }
    ]
    if include_node:
        groups.append(
            {"name": "stackaudit-node-exporter", "rules": [r.to_yaml() for r in node_rules(settings)]}
        )
    return {"groups": groups}


def rules_yaml(settings: Settings, include_node: bool = True) -> str:
    header = "Generated by `stackaudit monitoring rules`; thresholds from the stackaudit config."
    return dump_yaml(rule_groups(settings, include_node), header)


def dump_yaml(data: Any, header: str) -> str:
    """A Prometheus/Alertmanager file: block style, one expression per line, a comment on top."""
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.width = 4096
    yaml.representer.sort_base_mapping_type_on_output = False  # keys as written: global first
    out = io.StringIO()
    out.write("".join(f"# {line}\n" for line in header.splitlines()))
    yaml.dump(data, out)
    return out.getvalue()


# --- Grafana dashboard ---------------------------------------------------------------------------


def _panel(
    panel_id: int,
    title: str,
    exprs: list[tuple[str, str]],
    unit: str,
    steps: list[tuple[float | None, str]] | None = None,
    kind: str = "timeseries",
) -> dict[str, Any]:
    steps = steps or [(None, "green")]
    return {
        "id": panel_id,
        "type": kind,
        "title": title,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"h": 8, "w": 12, "x": 12 * ((panel_id - 1) % 2), "y": 8 * ((panel_id - 1) // 2)},
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "thresholds": {
                    "mode": "absolute",
                    "steps": [{"value": value, "color": color} for value, color in steps],
                },
            },
            "overrides": [],
        },
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
        "targets": [
            {
                "refId": chr(ord("A") + i),
                "expr": expr,
                "legendFormat": legend,
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
            }
            for i, (expr, legend) in enumerate(exprs)
        ],
    }


def dashboard(settings: Settings) -> dict[str, Any]:
    """A Grafana dashboard (schema 39) for the stackaudit metrics, thresholds drawn from the settings."""
    high = settings.threshold("SYS001", "high_percent") / 100
    critical = settings.threshold("SYS001", "critical_percent") / 100
    days = settings.threshold("SYS001", "days_to_full")
    inst = '{instance=~"$instance"}'
    panels = [
        _panel(
            1,
            "Disk used (SYS001)",
            [(f"stackaudit_disk_used_ratio{inst}", "{{mountpoint}}")],
            "percentunit",
            [(None, "green"), (high, "orange"), (critical, "red")],
        ),
        _panel(
            2,
            "Disk full in (forecast)",
            [(f"stackaudit_disk_forecast_seconds_to_full{inst} / 86400", "{{mountpoint}}")],
            "d",
            [(None, "red"), (days, "green")],
        ),
        _panel(
            3,
            "Disk used bytes",
            [
                (f"stackaudit_disk_used_bytes{inst}", "{{mountpoint}} used"),
                (f"stackaudit_disk_size_bytes{inst}", "{{mountpoint}} size"),
            ],
            "bytes",
        ),
        _panel(
            4,
            "Inodes used",
            [(f"stackaudit_disk_inodes_used_ratio{inst}", "{{mountpoint}}")],
            "percentunit",
            [(None, "green"), (settings.threshold("SYS001", "inodes_high_percent") / 100, "orange")],
        ),
        _panel(
            5,
            "Memory available (SYS002)",
            [(f"stackaudit_memory_available_ratio{inst}", "available")],
            "percentunit",
            [(None, "red"), (settings.threshold("SYS002", "available_percent") / 100, "green")],
        ),
        _panel(
            6,
            "PostgreSQL connections used",
            [(f"stackaudit_postgres_connections_used_ratio{inst}", "used")],
            "percentunit",
            [(None, "green"), (PG_CONNECTIONS_RATIO, "red")],
        ),
        _panel(
            7,
            "Redis memory (RDS003)",
            [(f"stackaudit_redis_memory_used_ratio{inst}", "{{exported_instance}}")],
            "percentunit",
            [(None, "green"), (settings.threshold("RDS003", "used_ratio"), "red")],
        ),
        _panel(
            8,
            "Backup age (BAK001)",
            [(f"stackaudit_backup_age_seconds{inst}", "{{database}}")],
            "s",
            [(None, "green"), (settings.threshold("BAK001", "max_age_hours") * 3600, "red")],
        ),
        _panel(
            9,
            "Certificate expiry (SEC006)",
            [(f"stackaudit_tls_certificate_expiry_seconds{inst}", "{{domain}}")],
            "s",
            [(None, "red"), (settings.threshold("SEC006", "days") * DAY_SECONDS, "green")],
        ),
        _panel(10, "Findings by severity", [(f"stackaudit_findings{inst}", "{{severity}}")], "short"),
        _panel(
            11,
            "Check age",
            [(f"time() - stackaudit_check_timestamp_seconds{inst}", "age")],
            "s",
            [(None, "green"), (CHECK_STALE_SECONDS, "red")],
        ),
        _panel(12, "Sources up", [(f"stackaudit_source_up{inst}", "{{source}}")], "short"),
    ]
    return {
        "uid": "stackaudit",
        "title": "stackaudit",
        "tags": ["stackaudit"],
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "time": {"from": "now-7d", "to": "now"},
        "refresh": "5m",
        "templating": {
            "list": [
                {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Data source"},
                {
                    "name": "instance",
                    "type": "query",
                    "label": "Instance",
                    "multi": True,
                    "includeAll": True,
                    "datasource": {"type": "prometheus", "uid": "${datasource}"},
                    "query": "label_values(stackaudit_check_timestamp_seconds, instance)",
                    "refresh": 2,
                },
            ]
        },
        "panels": panels,
    }


def dashboard_json(settings: Settings) -> str:
    return json.dumps(dashboard(settings), indent=2)
