"""The app processes against PostgreSQL: the connection budget (what they can open at most, against
max_connections), its one-line summary, the live cross-check with the sessions PostgreSQL shows, and
the app tuning. Pure: computed once per audit by `Derived` from the app, postgres, pgbouncer and
docker facts.

The app facts say what each process may hold (replicas, processes, threads, pool); PostgreSQL's
sessions are in the postgres facts. `compare_live` matches the two per service.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from stackaudit.derive.memory import host_resources
from stackaudit.facts import Facts
from stackaudit.shapes import rows, source
from stackaudit.tuning import appserver
from stackaudit.tuning.pgbouncer import with_live_pools


def app_poolers(facts: Facts) -> list[dict[str, Any]]:
    """The compose poolers, with the pools PgBouncer applies when it was read live."""
    return with_live_pools(rows(source(facts, "app").get("poolers")),
                           rows(source(facts, "pgbouncer").get("instances")))


def connection_budget(facts: Facts, limits: appserver.PostgresLimits | None = None
                      ) -> appserver.ConnectionBudget | None:
    """What the app processes (directly or through their poolers) can open, against PostgreSQL's
    limits (`limits` when given, else the live server's); None without processes or limits."""
    processes = rows(source(facts, "app").get("processes"))
    limits = limits or appserver.postgres_limits(source(facts, "postgres"))
    if not processes or limits is None:
        return None
    return appserver.connection_budget(processes, limits, poolers=app_poolers(facts))


def budget_summary(facts: Facts, budget: appserver.ConnectionBudget | None) -> dict[str, int]:
    """The report's "47 of 97": `db_connections_at_most` (the app's side of the budget, which needs
    no server) and, when the server's limits are known, `db_connections_available`."""
    if budget is None:
        budget = connection_budget(facts, appserver.DEFAULT_LIMITS)
        return {} if budget is None else {"db_connections_at_most": budget.app_total}
    return {"db_connections_at_most": budget.app_total, "db_connections_available": budget.available}


def app_tuning(facts: Facts, cores: float | None = None, memory_bytes: int | None = None,
               limits: appserver.PostgresLimits | None = None) -> appserver.AppTuning | None:
    """Workers, threads and pools for the host's cores and memory (or the given ones, for what-if),
    against PostgreSQL's connection limits (`limits` when given, else the live server's)."""
    processes = rows(source(facts, "app").get("processes"))
    resources = host_resources(facts)
    cores = cores or resources.cores
    if not processes or not cores:
        return None
    limits = limits or appserver.postgres_limits(source(facts, "postgres"))
    measured = appserver.measured_process_bytes(processes, rows(source(facts, "docker").get("containers")))
    memory = memory_bytes or resources.memory_bytes
    return appserver.recommend(processes, appserver.Resources(float(cores), memory), limits, measured,
                               poolers=app_poolers(facts))


# ---------------------------------------------------------------------------------------------
# live cross-check against PostgreSQL's sessions


@dataclass(frozen=True)
class ConnectionRow:
    """A group of sessions: by application_name, by client address, or both ("" = not grouped by)."""

    application_name: str
    client_addr: str
    count: int


_NO_NAME = ("", "(none)", "None")


def connection_rows(postgres: Mapping[str, Any]) -> tuple[list[ConnectionRow], int | None]:
    """PostgreSQL's sessions as groups, from the postgres facts' `connections` (`by_application` and
    `by_client` count maps, or a list of rows), and the total when known. Defensive: any other shape
    gives no rows."""
    raw = postgres.get("connections", postgres)
    if isinstance(raw, list):
        return _rows_from_list(raw), None
    if not isinstance(raw, Mapping):
        return [], None
    total = raw.get("total") if isinstance(raw.get("total"), int) else None
    for key in ("by_application_and_client", "rows", "sessions"):
        if isinstance(raw.get(key), list):
            return _rows_from_list(raw[key]), total
    found = []
    for key, is_app in (("by_application", True), ("by_client", False)):
        groups = raw.get(key)
        if isinstance(groups, Mapping):
            for name, count in groups.items():
                if isinstance(count, int):
                    app, addr = (str(name), "") if is_app else ("", str(name))
                    found.append(ConnectionRow(app, addr, count))
    return found, total


def _rows_from_list(raw: list[Any]) -> list[ConnectionRow]:
    result = []
    for row in raw:
        if not isinstance(row, Mapping):
            continue
        count = next((row[k] for k in ("count", "connections", "n", "total")
                      if isinstance(row.get(k), int)), 1)
        app = row.get("application_name", row.get("application")) or ""
        addr = row.get("client_addr", row.get("client")) or ""
        result.append(ConnectionRow(str(app), str(addr), int(count)))
    return result


def container_addresses(facts: Facts) -> dict[tuple[str, str], set[str]]:
    """(project, service) -> the container IPs the docker facts know (any of the usual keys)."""
    addresses: dict[tuple[str, str], set[str]] = {}
    for container in facts.get("docker").get("containers") or []:
        key = (str(container.get("compose_project") or ""), str(container.get("compose_service") or ""))
        found = addresses.setdefault(key, set())
        for ip in container.get("ip_addresses") or []:
            found.add(str(ip))
        networks = container.get("networks") or {}
        for net in networks.values() if isinstance(networks, Mapping) else networks:
            if isinstance(net, Mapping):
                for k in ("ip", "ip_address", "IPAddress"):
                    if net.get(k):
                        found.add(str(net[k]))
    return addresses


def compare_live(processes: Sequence[Mapping[str, Any]], facts: Facts) -> list[dict[str, Any]]:
    sessions, total = connection_rows(source(facts, "postgres"))
    return compare_rows(processes, sessions, container_addresses(facts), total)


def compare_rows(processes: Sequence[Mapping[str, Any]], rows: Sequence[ConnectionRow],
                 addresses: Mapping[tuple[str, str], set[str]] | None = None,
                 total: int | None = None) -> list[dict[str, Any]]:
    """Per app service: the static ceiling, the live sessions attributed to it (by application_name
    naming the service or its server, else by its containers' client address), and a note where
    they disagree. Name groups and address groups may count the same sessions, so a process is
    matched by one kind only."""
    addresses = addresses or {}
    by_name = [r for r in rows if r.application_name not in _NO_NAME]
    by_addr = [r for r in rows if r.client_addr and r.application_name in _NO_NAME]
    result: list[dict[str, Any]] = []
    attributed = 0
    for proc in processes:
        ips = addresses.get((str(proc.get("project", "")), str(proc.get("service", ""))), set())
        mine, how = [r for r in by_name if _name_matches(r.application_name, proc)], "application_name"
        if not mine and ips:
            mine, how = [r for r in by_addr if r.client_addr.split("/")[0] in ips], "client_addr"
        by_name = [r for r in by_name if r not in mine]
        by_addr = [r for r in by_addr if r not in mine]
        estimate = appserver.process_connections(proc).total
        live = sum(r.count for r in mine)
        attributed += live
        result.append({
            "project": proc.get("project"), "service": proc.get("service"), "kind": proc.get("kind"),
            "estimated_max": estimate, "live": live, "matched_by": how if mine else None,
            "note": _disagreement(estimate, live, proc.get("via_pooler")),
        })
    if total is None:
        total = attributed + sum(r.count for r in by_name) + sum(
            r.count for r in rows if r.application_name in _NO_NAME and not r.client_addr)
    if total > attributed:
        result.append({"project": None, "service": None, "kind": "unattributed", "estimated_max": None,
                       "live": total - attributed, "matched_by": None,
                       "applications": sorted({r.application_name for r in by_name}),
                       "note": "sessions no app service could be matched to (admin, exporters, cron, "
                               "or apps that set no application_name)"})
    return result


def _name_matches(application_name: str, proc: Mapping[str, Any]) -> bool:
    name = application_name.lower()
    words = set(re.split(r"[^a-z0-9_-]+", name))
    service = str(proc.get("service", "")).lower()
    kind = str(proc.get("kind", "")).lower()
    # ruby-pg names sessions after $0: "puma: cluster worker 0: 1 [app]", "sidekiq 7.3.0 app [...]"
    return service in words or name.startswith(kind)


def _disagreement(estimate: int, live: int, via_pooler: str | None = None) -> str | None:
    if via_pooler and live == 0:
        return (f"connects through {via_pooler}: PostgreSQL sees the pooler's server connections, "
                "shared by its clients, not this service's")
    if live > estimate:
        return (f"{live} live sessions exceed the static estimate of {estimate}: a setting the estimate "
                "missed, a one-off process (console, rake) or another service using the same name")
    if live == 0 and estimate > 0:
        return ("no live session matched: the service may be stopped, idle with a lazy pool, or set no "
                "application_name")
    return None


def live_connections(facts: Facts) -> list[dict[str, Any]]:
    """The cross-check of the app facts against PostgreSQL's sessions; [] without both sources."""
    if not (facts.has("app") and facts.has("postgres")):
        return []
    return compare_live(rows(source(facts, "app").get("processes")), facts)
