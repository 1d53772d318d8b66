"""What a Prometheus and an Alertmanager need to watch every host of an inventory.

`fleet_files` is pure: the inventory's hosts and the settings in, four files' text out.

- `targets.json`: Prometheus file_sd, one entry per host whose `stackaudit metrics --listen` runs
  (https://prometheus.io/docs/guides/file-sd/). The target is `stackaudit_metrics_address` (when it
  is an address, not a wildcard), else `ansible_host`, else the inventory name, with
  `stackaudit_metrics_port` (default `METRICS_PORT`). Labels: `host` (the inventory name) and
  `groups`, the host's inventory groups as `,a,b,` (sorted; the leading and trailing comma let one
  regex match a whole name: `groups=~".*,web,.*"`, as Prometheus' own Consul tags are joined). One
  label keeps every group name exact, where `group_<name>` labels would have to rewrite the names
  Prometheus does not allow in a label name. Hosts with `stackaudit_metrics_mode: textfile` are left
  out: node_exporter serves their metrics, on a target the user's node job already has.
- `rules.yml`: exactly what `stackaudit monitoring rules` makes (monitor/prom_rules.py), whose every
  summary names `{{ $labels.instance }}`.
- `prometheus.yml`: an example that reads the two files beside it (Prometheus resolves rule_files
  and file_sd paths against the config file's folder) and sends alerts to one Alertmanager.
- `alertmanager.yml`: a route per inventory group, each `continue: true` so an alert reaches the
  receiver of every group its host is in, and the default receiver when it is in none; a critical
  alert silences the warning of the same code, host and mount.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stackaudit.config import Settings
from stackaudit.fleet.inventory import FleetError, InventoryHost
from stackaudit.fsutil import atomic_write
from stackaudit.monitor import METRICS_PORT
from stackaudit.monitor.prom_rules import dump_yaml, regex_literal, rules_yaml
from stackaudit.network import on_all_interfaces

TARGETS_FILE = "targets.json"
RULES_FILE = "rules.yml"
PROMETHEUS_FILE = "prometheus.yml"
ALERTMANAGER_FILE = "alertmanager.yml"
FILES = (TARGETS_FILE, RULES_FILE, PROMETHEUS_FILE, ALERTMANAGER_FILE)
JOB_NAME = "stackaudit"
DEFAULT_ALERTMANAGER = "localhost:9093"
DEFAULT_RECEIVER = "stackaudit-default"
TEXTFILE_MODE = "textfile"


@dataclass(frozen=True)
class Target:
    host: str  # inventory_hostname
    address: str  # host:port Prometheus scrapes
    groups: tuple[str, ...]

    def file_sd(self) -> dict[str, Any]:
        return {"targets": [self.address], "labels": {"host": self.host, "groups": groups_label(self.groups)}}


@dataclass(frozen=True)
class FleetMonitoring:
    targets: tuple[Target, ...]
    textfile_hosts: tuple[str, ...]  # scraped through node_exporter, not listed in targets.json
    files: Mapping[str, str]  # file name -> text


def groups_label(groups: Iterable[str]) -> str:
    return "," + "".join(f"{g}," for g in sorted(groups))


def metrics_port(host: InventoryHost) -> int:
    value = host.variables.get("stackaudit_metrics_port", METRICS_PORT)
    try:
        port = int(str(value))
    except ValueError:
        port = 0
    if not 0 < port < 65536:
        raise FleetError(f"{host.name}: stackaudit_metrics_port {value!r} is not a port (1-65535)")
    return port


def scrape_address(host: InventoryHost) -> str:
    """host:port, an IPv6 literal in brackets."""
    listen = str(host.variables.get("stackaudit_metrics_address") or "")
    address = host.address if on_all_interfaces(listen) else listen
    if ":" in address and not address.startswith("["):
        address = f"[{address}]"
    return f"{address}:{metrics_port(host)}"


def targets_of(hosts: Iterable[InventoryHost]) -> tuple[list[Target], list[str]]:
    """The hosts Prometheus scrapes, and the names of those in textfile mode."""
    targets, textfile = [], []
    for host in hosts:
        if host.variables.get("stackaudit_metrics_mode") == TEXTFILE_MODE:
            textfile.append(host.name)
        else:
            targets.append(Target(host.name, scrape_address(host), host.groups))
    return targets, textfile


def targets_json(targets: Sequence[Target]) -> str:
    return json.dumps([t.file_sd() for t in targets], indent=2) + "\n"


def prometheus_yml(alertmanager: str = DEFAULT_ALERTMANAGER) -> str:
    config = {
        "global": {"scrape_interval": "1m", "evaluation_interval": "1m"},
        "rule_files": [RULES_FILE],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]},
        "scrape_configs": [
            {
                "job_name": JOB_NAME,
                # a scrape is served from the last check; only a process's first one waits for it
                "scrape_timeout": "30s",
                "file_sd_configs": [{"files": [TARGETS_FILE], "refresh_interval": "5m"}],
            }
        ],
    }
    header = (
        "Example Prometheus config from `stackaudit fleet prometheus`: keep it beside targets.json\n"
        "and rules.yml (relative paths are read from this file's folder), or copy its rule_files,\n"
        "alerting and the stackaudit job into your own prometheus.yml."
    )
    return dump_yaml(config, header)


def group_matcher(group: str) -> str:
    """An Alertmanager matcher for the hosts in `group`: its name between commas of `groups`."""
    return f'groups=~".*,{regex_literal(group)},.*"'


def receiver_name(group: str) -> str:
    return f"group-{group}"


def alertmanager_yml(groups: Iterable[str]) -> str:
    names = sorted(set(groups))
    config = {
        "route": {
            "receiver": DEFAULT_RECEIVER,
            "group_by": ["alertname", "instance"],
            "group_wait": "30s",
            "group_interval": "5m",
            "repeat_interval": "4h",
            "routes": [
                {"matchers": [group_matcher(g)], "receiver": receiver_name(g), "continue": True}
                for g in names
            ],
        },
        "inhibit_rules": [
            {
                "source_matchers": ['severity="critical"'],
                "target_matchers": ['severity="warning"'],
                "equal": ["code", "instance", "mountpoint"],
            }
        ],
        "receivers": [{"name": DEFAULT_RECEIVER}, *({"name": receiver_name(g)} for g in names)],
    }
    header = (
        "Example Alertmanager config from `stackaudit fleet prometheus`: one route per inventory\n"
        "group (an alert reaches every group its host is in), the default receiver for the rest.\n"
        "Give each receiver its email_configs, webhook_configs, ...: as written they drop alerts.\n"
        "https://prometheus.io/docs/alerting/latest/configuration/"
    )
    return dump_yaml(config, header)


def fleet_files(hosts: Sequence[InventoryHost], settings: Settings,
                alertmanager: str = DEFAULT_ALERTMANAGER) -> FleetMonitoring:
    targets, textfile = targets_of(hosts)
    files = {
        TARGETS_FILE: targets_json(targets),
        RULES_FILE: rules_yaml(settings),
        PROMETHEUS_FILE: prometheus_yml(alertmanager),
        ALERTMANAGER_FILE: alertmanager_yml(g for h in hosts for g in h.groups),
    }
    return FleetMonitoring(tuple(targets), tuple(textfile), files)


def write_files(out: Path, files: Mapping[str, str]) -> list[Path]:
    """Each file atomically (a Prometheus re-reading targets.json never sees half of it) into `out`,
    created 0700 as every fleet folder is."""
    try:
        out.mkdir(parents=True, exist_ok=True, mode=0o700)
        out.chmod(0o700)
        written = []
        for name, text in files.items():
            atomic_write(out / name, text.encode("utf-8"), mode=0o600)
            written.append(out / name)
    except OSError as error:
        raise FleetError(f"cannot write into {out}: {error.strerror or error}") from None
    return written
