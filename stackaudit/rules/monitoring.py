"""Monitoring coverage rules: what nobody is watching (MON)."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from stackaudit.config import Settings
from stackaudit.facts import Facts
from stackaudit.images import EXPORTS_FOR
from stackaudit.model import Evidence, Hit, Phase, Recommendation, Risk, Severity
from stackaudit.rules import rule

# Metrics a disk-space alert is written on: node_exporter's filesystem gauges, cAdvisor's container
# filesystem usage, and the metrics `stackaudit metrics` exports.
DISK_METRICS = re.compile(r"node_filesystem_(avail|free|files_free)_bytes|node_filesystem_files_free|"
                          r"container_fs_(usage|limit)_bytes|stackaudit_disk")
HOST_METRIC_KINDS = frozenset({"node_exporter", "agent"})
STOPPED_STATES = frozenset({"exited", "dead", "created", "restarting", "paused", "removing", "not running"})
GENERATED_RULES = "stackaudit monitoring rules"


def _generated_rules(summary: str, effect: str, minutes: int = 30) -> Recommendation:
    return Recommendation(summary, effect, Risk.MANUAL, minutes, Phase.MONTH, GENERATED_RULES)


def _components(facts: Facts) -> list[dict[str, Any]]:
    return list(facts.get("monitoring").get("components", []))


def _targets(facts: Facts) -> list[dict[str, Any]]:
    return list((facts.get("monitoring").get("prometheus") or {}).get("targets") or [])


def _scraped_jobs(facts: Facts) -> set[str]:
    return {str(t.get("job") or "").lower() for t in _targets(facts)}


@rule("MON001", "monitoring-gap", Severity.MEDIUM, needs=("monitoring",))
def monitoring_gap(facts: Facts, settings: Settings) -> Iterator[Hit]:
    """
    ## What it checks
    What is not watched: no monitoring at all; no metrics for the host (no node_exporter or agent);
    a datastore (PostgreSQL, Redis, MySQL, MongoDB, Elasticsearch, memcached) without an exporter
    or a Prometheus job for it; no alert rule on disk space in the Prometheus that answered (an
    expression on node_filesystem_avail_bytes, container_fs_usage_bytes or stackaudit_disk); alert
    rules with no Alertmanager to send them to, or an Alertmanager whose route goes to a receiver
    with no integration (or to the example webhook http://127.0.0.1:5001/).

    ## Why it matters
    The failures that end self-hosted stacks (a full disk, a datastore out of memory, an expired
    certificate) build up over days; without a metric and an alert they are found by users. An alert
    rule that goes nowhere is worse than none: it looks covered.

    ## Recommendation
    Use the rules `stackaudit monitoring rules` generates (disk, memory, datastores, backups: the same
    thresholds as this audit), add node_exporter and the exporters of the datastores to the stack,
    and give Alertmanager a real receiver (mail, Slack, ntfy...). Or run `stackaudit watch` from cron,
    which alerts through apprise without a Prometheus.

    ## Estimated effect
    The next disk or memory problem is seen days before it stops the stack.

    ## Fix safety
    Display only: adding monitoring changes no running service.

    ## References
    - Prometheus docs, "Alerting rules":
      https://prometheus.io/docs/prometheus/latest/configuration/alerting_rules/
    - node_exporter (the filesystem collector): https://github.com/prometheus/node_exporter
    - Alertmanager docs, "Configuration" (receivers, route):
      https://prometheus.io/docs/alerting/latest/configuration/
    """
    monitoring = facts.get("monitoring")
    components = _components(facts)
    prometheus = monitoring.get("prometheus") or {}
    if not components and not prometheus.get("reachable"):
        yield Hit("stack", "Nothing monitors this stack: no Prometheus, exporter or monitoring agent was "
                           "found in the containers, the compose services or the host's processes.",
                  _generated_rules("Set up Prometheus with node_exporter and the stackaudit rules, or run "
                                   "`stackaudit watch` from cron.", "Disk, memory and datastore problems are "
                                   "alerted on before they stop the stack.", 120),
                  [Evidence("monitoring", "components", 0, "> 0")], severity=Severity.HIGH)
        return
    yield from _host_gap(facts, components)
    yield from _datastore_gaps(facts, components)
    if prometheus.get("reachable"):
        yield from _disk_alert_gap(prometheus)
        yield from _alert_routing_gap(prometheus, monitoring.get("alertmanager") or {})


def _host_gap(facts: Facts, components: list[dict[str, Any]]) -> Iterator[Hit]:
    if any(c["kind"] in HOST_METRIC_KINDS for c in components) or "node" in _scraped_jobs(facts):
        return
    kinds = sorted({c["kind"] for c in components})
    yield Hit("host", f"No metrics for the host itself: no node_exporter or agent among the monitoring "
                      f"components found ({', '.join(kinds) or 'none'}).",
              _generated_rules("Add node_exporter (prom/node-exporter, / mounted read-only) and scrape it.",
                               "Disk, memory and CPU of the host become visible and alertable."),
              [Evidence("monitoring", "components", kinds, "node_exporter")])


def _datastore_gaps(facts: Facts, components: list[dict[str, Any]]) -> Iterator[Hit]:
    exported = {EXPORTS_FOR[c["kind"]] for c in components if c["kind"] in EXPORTS_FOR}
    jobs = _scraped_jobs(facts)
    agents = [c["name"] for c in components if c["kind"] == "agent"]
    for store in facts.get("monitoring").get("datastores", []):
        kind = store["kind"]
        if kind not in EXPORTS_FOR.values() or kind in exported:
            continue
        if any(kind in job or (store.get("service") or "\0") in job for job in jobs):
            continue
        subject = str(store.get("service"))
        if store.get("project"):
            subject = f"{store['project']}/{subject}"
        maybe = f" (unless the agent {agents[0]} collects it)" if agents else ""
        yield Hit(subject, f"The {kind} service {subject} has no exporter and no Prometheus job scrapes it"
                           f"{maybe}: its memory, connections and errors are not watched.",
                  _generated_rules(f"Add the {kind} exporter for {subject} and scrape it.",
                                   f"{kind} saturation is alerted on before it fails."),
                  [Evidence("monitoring", "datastore", kind),
                   Evidence("monitoring", "exporters", sorted(exported), f"{kind}_exporter")],
                  severity=Severity.LOW if agents else None)


def _disk_alert_gap(prometheus: dict[str, Any]) -> Iterator[Hit]:
    alerting = [r for r in prometheus.get("rules") or [] if r.get("type") == "alerting"]
    if any(DISK_METRICS.search(str(r.get("expr") or "")) for r in alerting):
        return
    yield Hit("prometheus alert rules", f"Prometheus at {prometheus.get('url')} has {len(alerting)} alert "
                                        "rule(s) and none on disk space.",
              _generated_rules("Load the disk alert rules from `stackaudit monitoring rules`.",
                               "A filling disk is alerted on days before it is full.", 20),
              [Evidence("monitoring", "alert_rules", len(alerting)),
               Evidence("monitoring", "disk_alert_rules", 0, ">= 1")])


def _alert_routing_gap(prometheus: dict[str, Any], alertmanager: dict[str, Any]) -> Iterator[Hit]:
    alerting = [r for r in prometheus.get("rules") or [] if r.get("type") == "alerting"]
    active = (prometheus.get("alertmanagers") or {}).get("active") or []
    if alerting and not active:
        yield Hit("alertmanager", f"Prometheus has {len(alerting)} alert rule(s) but no Alertmanager to send "
                                  "them to: alerts fire and nobody is told.",
                  _generated_rules("Run Alertmanager with a real receiver and list it under `alerting:` in "
                                   "prometheus.yml.", "Firing alerts reach a person.", 45),
                  [Evidence("monitoring", "alert_rules", len(alerting)),
                   Evidence("monitoring", "active_alertmanagers", 0, ">= 1")], severity=Severity.HIGH)
    if not alertmanager.get("reachable"):
        return
    receivers = {r.get("name"): r for r in alertmanager.get("receivers") or []}
    route = receivers.get(alertmanager.get("route_receiver")) or {}
    if route.get("integrations") and not route.get("placeholder"):
        return
    why = "the example webhook http://127.0.0.1:5001/" if route.get("placeholder") else "no integration"
    receiver = alertmanager.get("route_receiver")
    yield Hit("alertmanager", f"Alertmanager at {alertmanager.get('url')} routes alerts to receiver "
                              f"{receiver!r}, which has {why}: alerts reach nobody.",
              _generated_rules("Give the default route a receiver with a real integration (email, Slack, "
                               "webhook...).", "Firing alerts reach a person.", 30),
              [Evidence("monitoring", "route_receiver", alertmanager.get("route_receiver")),
               Evidence("monitoring", "integrations", route.get("integrations") or [], ">= 1")],
              severity=Severity.HIGH)


@rule("MON002", "monitoring-targets-down", Severity.MEDIUM, needs=("monitoring",))
def monitoring_targets_down(facts: Facts, settings: Settings) -> Iterator[Hit]:
    """
    ## What it checks
    Prometheus scrape targets whose last scrape failed (health "down", grouped by job, with the last
    error), a Prometheus that was given (`--prometheus-url`) or seen running but does not answer, and
    monitoring containers (Prometheus, Grafana, Alertmanager, exporters...) that are stopped or
    restarting.

    ## Why it matters
    A target down is a blind spot that looks like coverage: its alerts cannot fire (an `up == 0`
    alert is the exception). A stopped Prometheus or Alertmanager silences everything.

    ## Recommendation
    Read the target's last error (connection refused: the exporter is down or on another address;
    context deadline exceeded: it is too slow) and fix or remove the target. Start the stopped
    containers and give them `restart: unless-stopped`. Add an `up == 0` alert (part of
    `stackaudit monitoring rules`).

    ## Estimated effect
    Every configured metric is collected again.

    ## Fix safety
    Display only.

    ## References
    - Prometheus HTTP API, /api/v1/targets: https://prometheus.io/docs/prometheus/latest/querying/api/#targets
    """
    yield from _targets_down(facts)
    for prometheus in facts.get("monitoring").get("prometheus_unreachable") or []:
        if prometheus.get("expected") is False:  # only declared in a compose file: maybe not started
            continue
        message = f"Prometheus at {prometheus.get('url')} does not answer: {prometheus.get('error')}."
        yield Hit(f"prometheus {prometheus.get('url')}", message,
                  Recommendation("Check that Prometheus runs and listens where expected.",
                                 "Metrics are collected and alerts evaluated again.", Risk.MANUAL, 15,
                                 Phase.NOW),
                  [Evidence("monitoring", "prometheus_url", prometheus.get("url")),
                   Evidence("monitoring", "error", prometheus.get("error"))], severity=Severity.HIGH)
    for component in _components(facts):
        if component.get("state") not in STOPPED_STATES:
            continue
        central = component["kind"] in ("prometheus", "alertmanager")
        label = component.get("name")
        message = f"Monitoring {component['where']} {label} ({component['kind']}) is {component['state']}."
        yield Hit(f"{component['kind']} {label}", message,
                  Recommendation(f"Start {label} and give it a restart policy.",
                                 "Its metrics and alerts come back.", Risk.CONFIRM, 10, Phase.NOW,
                                 f"docker compose up -d {component.get('service') or label}"),
                  [Evidence("monitoring", "state", component["state"], "running"),
                   Evidence("monitoring", "image", component.get("image"))],
                  severity=Severity.HIGH if central else None)


def _targets_down(facts: Facts) -> Iterator[Hit]:
    by_job: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for target in _targets(facts):
        by_job[str(target.get("job"))].append(target)
    for job, targets in sorted(by_job.items()):
        down = [t for t in targets if t.get("health") == "down"]
        if not down:
            continue
        first = down[0]
        message = (f"{len(down)} of {len(targets)} target(s) of Prometheus job {job} are down; "
                   f"{first.get('instance')}: {first.get('last_error')}.")
        yield Hit(f"prometheus job {job}", message,
                  Recommendation(f"Fix or remove the down target(s) of job {job}.",
                                 "The job's metrics are collected again.", Risk.MANUAL, 20, Phase.WEEK),
                  [Evidence("monitoring", "targets_down", len(down), 0),
                   Evidence("monitoring", "instances_down", [t.get("instance") for t in down]),
                   Evidence("monitoring", "last_error", first.get("last_error"))])
