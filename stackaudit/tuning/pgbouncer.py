"""How many server connections a live PgBouncer can open to PostgreSQL. Pure.

PgBouncer keeps one server pool per database/user pair. A pool opens at most pool_size
connections, plus reserve_pool when clients have waited reserve_pool_timeout; a database's
max_db_connections caps all its pools together and max_user_connections caps a user's
(pgbouncer.org/config.html). SHOW DATABASES gives each database's effective pool_size,
reserve_pool and max_connections (the per-database value or the global default), SHOW POOLS the
pairs that exist now. A database no client has used yet has no pool: it counts as one pair, since
the first client makes one. A database with force_user has exactly one pair.

The input is one `instances` entry of the pgbouncer facts (a plain mapping).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# SHOW CONFIG keys that replace the compose pooler's settings read from its files.
LIVE_SETTINGS = ("pool_mode", "default_pool_size", "reserve_pool_size", "max_client_conn",
                 "max_db_connections")


@dataclass(frozen=True)
class DatabasePools:
    """The server connections one pooled database can open, and why."""

    name: str
    host: str | None
    port: int | None
    users: tuple[str, ...]
    pool_size: int
    reserve_pool: int
    max_db_connections: int  # 0: no cap
    max_user_connections: int  # 0: no cap

    @property
    def per_pool(self) -> int:
        size = self.pool_size + self.reserve_pool
        return min(size, self.max_user_connections) if self.max_user_connections else size

    @property
    def pairs(self) -> int:
        return max(1, len(self.users))

    @property
    def capacity(self) -> int:
        total = self.pairs * self.per_pool
        return min(total, self.max_db_connections) if self.max_db_connections else total

    def arithmetic(self) -> str:
        size = f"pool_size {self.pool_size} + reserve_pool {self.reserve_pool}"
        if self.max_user_connections:
            size = f"min({size}, max_user_connections {self.max_user_connections})"
        users = ", ".join(self.users) if self.users else "no client yet"
        text = f"{self.name}: {self.pairs} user pool{'s' if self.pairs != 1 else ''} ({users}) x ({size})"
        if self.max_db_connections:
            text = f"min({text}, max_db_connections {self.max_db_connections})"
        return f"{text} = {self.capacity}"


def database_pools(instance: Mapping[str, Any]) -> list[DatabasePools]:
    """Per pooled database, its pools as PgBouncer sizes them now."""
    config = instance.get("config") or {}
    max_user = _int(config.get("max_user_connections"))
    pools: Sequence[Mapping[str, Any]] = instance.get("pools") or []
    result = []
    for db in instance.get("databases") or []:
        name = str(db.get("name") or "")
        if name == "*" or db.get("disabled"):
            continue  # the auto-database template; a disabled database opens nothing
        users = tuple(sorted({str(p.get("user")) for p in pools if p.get("database") == name}))
        if db.get("force_user"):
            users = (str(db["force_user"]),)
        result.append(DatabasePools(
            name=name, host=str(db["host"]) if db.get("host") else None, port=_int(db.get("port")) or None,
            users=users, pool_size=_int(db.get("pool_size")), reserve_pool=_int(db.get("reserve_pool")),
            max_db_connections=_int(db.get("max_connections")), max_user_connections=max_user))
    return result


def server_capacity(instance: Mapping[str, Any]) -> int:
    return sum(d.capacity for d in database_pools(instance))


def live_instance_for(pooler: Mapping[str, Any], instances: Sequence[Mapping[str, Any]],
                      only_pooler: bool = False) -> Mapping[str, Any] | None:
    """The live PgBouncer that is this compose pooler: the same project and service; or, for the
    stack's only pooler, the only PgBouncer read, when it was given as --pgbouncer (no service)."""
    for instance in instances:
        if instance.get("service") and (instance.get("project"), instance.get("service")) == (
                pooler.get("project"), pooler.get("service")):
            return instance
    if only_pooler and len(instances) == 1 and not instances[0].get("service"):
        return instances[0]
    return None


def with_live_pools(poolers: Sequence[Mapping[str, Any]],
                    instances: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The compose poolers, each with `live_capacity` and `live_arithmetic` when its PgBouncer was
    read live: the connection budget then uses what PgBouncer really applies, not its files."""
    merged = []
    for pooler in poolers:
        entry = dict(pooler)
        instance = live_instance_for(pooler, instances, only_pooler=len(poolers) == 1)
        if instance is not None and instance.get("databases"):
            pools = database_pools(instance)
            entry["live_capacity"] = sum(d.capacity for d in pools)
            entry["live_arithmetic"] = "; ".join(d.arithmetic() for d in pools)
            _live_settings(entry, instance.get("config") or {})
        merged.append(entry)
    return merged


def _live_settings(entry: dict[str, Any], config: Mapping[str, Any]) -> None:
    """The settings PgBouncer runs with (SHOW CONFIG) replace those read from its files."""
    live = {k: config[k] for k in LIVE_SETTINGS if config.get(k) not in (None, "")}
    entry.update(live)
    entry["evidence"] = [
        {**e, "value": live[e["field"]], "from": "live SHOW CONFIG"} if e.get("field") in live else e
        for e in entry.get("evidence") or [] if isinstance(e, Mapping)]


def _int(value: Any) -> int:
    if isinstance(value, bool) or value is None:
        return 0
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0
