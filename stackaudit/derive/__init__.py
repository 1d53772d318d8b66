"""Facts -> Derived: what several rules, the plan and the report all need, worked out once per audit.

`derive(facts)` is made after collection and handed to the rules, the plan and the report (see
`stackaudit.pipeline.audit`). Each part is computed on first use and kept:

- `resources`: the host's memory and cores (its cgroup limits when tighter), the one answer to
  "how much does this host have" (`service_resources` answers it for one service);
- `memory_budget` and `postgres`: PostgreSQL's memory budget with its co-tenants, and the tuning the
  PG0xx rules compare the live settings with (None when PostgreSQL was not collected);
- `connection_budget`: what the app processes (or their poolers) can open against the live
  max_connections, and `connection_summary` ("47 of 97") for the report; `live_connections`: that
  estimate per service against the sessions PostgreSQL shows (derive/app.py);
- `app`: the app tuner's advice and the connection budget before and after it;
- `mysql`: the MariaDB/MySQL tuning per server (MY0xx rules compare the live settings with it);
- `redis_instances`: every Redis to judge, live or as its compose files describe it (the live one
  wins), and `redis`: maxmemory and eviction advice for each.

Facts of the wrong shape (a hand-edited snapshot) can make a part fail: it raises `DerivationError`
with the reason every time it is read, so the rules that need it are skipped with that reason and
the rest of the audit goes on. Everything here is pure. A `Derived` is never saved; `stackaudit
audit --facts` derives it again from the snapshot, so the findings are identical.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from stackaudit.derive.app import app_tuning, budget_summary, connection_budget, live_connections
from stackaudit.derive.memory import Resources, host_resources, memory_budget, service_resources
from stackaudit.derive.mysql import instances as mysql_instances
from stackaudit.derive.mysql import tuning_for
from stackaudit.derive.postgres import postgres_tuning
from stackaudit.derive.redis import redis_instances
from stackaudit.facts import Facts
from stackaudit.tuning import appserver
from stackaudit.tuning.mysql import MysqlTuning
from stackaudit.tuning.postgres import Budget, Tuning
from stackaudit.tuning.redis import RedisAdvice, advise

__all__ = ["DerivationError", "Derived", "Resources", "app_tuning", "derive", "service_resources"]

T = TypeVar("T")


class DerivationError(Exception):
    """A part of Derived could not be worked out from these facts; the message says which and why."""


class Derived:
    """The parts, each computed once from the facts on first use (a failure is kept too)."""

    def __init__(self, facts: Facts) -> None:
        self.facts = facts
        self._parts: dict[str, Any] = {}

    def _part(self, name: str, compute: Callable[[], T]) -> T:
        if name not in self._parts:
            try:
                self._parts[name] = compute()
            except Exception as exc:  # noqa: BLE001 - kept and raised as a DerivationError on every read
                self._parts[name] = DerivationError(f"{name} could not be derived: "
                                                    f"{exc.__class__.__name__}: {exc}")
        value = self._parts[name]
        if isinstance(value, DerivationError):
            raise value
        return value  # type: ignore[no-any-return]

    @property
    def resources(self) -> Resources:
        return self._part("resources", lambda: host_resources(self.facts))

    @property
    def memory_budget(self) -> Budget | None:
        """PostgreSQL's memory budget; None when the host's memory is unknown."""
        return self._part("memory budget", lambda: memory_budget(self.facts)
                          if self.resources.memory_bytes else None)

    @property
    def postgres(self) -> Tuning | None:
        """The PostgreSQL tuning; None when PostgreSQL was not collected."""
        return self._part("PostgreSQL tuning", lambda: postgres_tuning(self.facts)
                          if self.facts.has("postgres") else None)

    @property
    def connection_budget(self) -> appserver.ConnectionBudget | None:
        """The app's connections against the live server's; None without app processes or limits."""
        return self._part("connection budget", lambda: connection_budget(self.facts))

    @property
    def connection_summary(self) -> dict[str, int]:
        """`db_connections_at_most` (and `db_connections_available`) for the app facts' summary."""
        return self._part("connection summary", lambda: budget_summary(self.facts, self.connection_budget))

    @property
    def live_connections(self) -> tuple[Mapping[str, Any], ...]:
        """Per app service the estimate against PostgreSQL's live sessions (+ an unattributed row)."""
        return self._part("live connections", lambda: tuple(live_connections(self.facts)))

    @property
    def app(self) -> appserver.AppTuning | None:
        """The app tuner's advice and connection budget; None without app processes or cores."""
        return self._part("app tuning", lambda: app_tuning(self.facts))

    @property
    def mysql(self) -> tuple[MysqlTuning, ...]:
        """The MariaDB/MySQL tuning per collected server, in the facts' order (derive/mysql.py)."""
        return self._part("MariaDB/MySQL tuning", lambda: tuple(
            tuning_for(self.facts, instance) for instance in mysql_instances(self.facts)))

    @property
    def redis_instances(self) -> tuple[Mapping[str, Any], ...]:
        return self._part("Redis instances", lambda: redis_instances(self.facts))

    @property
    def redis(self) -> tuple[RedisAdvice, ...]:
        return self._part("Redis advice", lambda: tuple(advise(i) for i in self.redis_instances))


def derive(facts: Facts) -> Derived:
    return Derived(facts)

