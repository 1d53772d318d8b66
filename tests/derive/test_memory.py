"""derive/memory.py: one memory budget for "the database", PostgreSQL's or a MariaDB/MySQL server's,
each passed in plainly (a `Database`), never by rewriting the facts."""

from __future__ import annotations

from typing import Any

from stackaudit.derive.memory import Database, database_cores, memory_budget, postgres_database
from stackaudit.derive.mysql import mysql_budget, mysql_database
from stackaudit.facts import Facts

GB = 2**30


def service(name: str, image: str, limit: int) -> dict[str, Any]:
    return {"name": name, "image": image, "mem_limit_bytes": limit}


def stack(**data: Any) -> Facts:
    """A 16 GiB host running PostgreSQL (4 GiB limit), MariaDB (2 GiB) and an app (1 GiB), from files."""
    services = {s["name"]: s for s in (service("pg", "postgres:16.4", 4 * GB),
                                       service("maria", "mariadb:10.11", 2 * GB),
                                       service("web", "ghcr.io/acme/web:1.0", GB))}
    return Facts(data={"host": {"memory_total_bytes": 16 * GB, "cpu_count": 4},
                       "compose": {"projects": [{"name": "shop", "services": services}]}, **data})


def test_postgres_is_the_default_database_and_the_others_are_its_co_tenants() -> None:
    facts = stack()
    budget = memory_budget(facts)
    assert budget == memory_budget(facts, database=postgres_database(facts))
    assert budget.postgres_limit_bytes == 4 * GB
    assert {t.name for t in budget.co_tenants} == {"maria", "web"}


def test_a_mysql_server_not_reached_is_found_by_its_product_not_as_postgresql() -> None:
    """Before, MariaDB's budget borrowed PostgreSQL's place, and with no runs_in the one postgres
    service became "the database": its 4 GiB limit capped MariaDB and PostgreSQL was no co-tenant."""
    budget = mysql_budget(stack(), None)
    assert budget.postgres_limit_bytes == 2 * GB  # MariaDB's own limit
    assert {t.name for t in budget.co_tenants} == {"pg", "web"}


def test_the_mysql_server_is_the_container_its_collector_names() -> None:
    instance = {"runs_in": {"kind": "container", "container": "shop-maria-1", "service": "maria",
                            "project": "shop"}}
    containers = [{"name": "shop-maria-1", "compose_service": "maria", "compose_project": "shop",
                   "memory_limit_bytes": 3 * GB, "cpu_limit_cores": 1.5},
                  {"name": "shop-pg-1", "compose_service": "pg", "compose_project": "shop",
                   "memory_limit_bytes": 4 * GB}]
    facts = stack(docker={"containers": containers})
    budget = mysql_budget(facts, instance)
    assert budget.postgres_limit_bytes == 2 * GB  # the compose mem_limit is the tighter of the two
    assert [t.name for t in budget.co_tenants] == ["shop-pg-1"]
    assert database_cores(facts, mysql_database(instance)) == 1
    assert database_cores(facts, Database("postgres", "PostgreSQL", {})) == 4
