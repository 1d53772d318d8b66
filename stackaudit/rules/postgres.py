"""PostgreSQL rules read from the live statistics (and PG010 from the compose files).

The memory/CPU/storage tuning rules (PG001-PG003, PG006-PG008) are in `postgres_tuning`.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator, Mapping
from typing import Any

from stackaudit.config import Settings
from stackaudit.facts import Facts, iter_services
from stackaudit.facts.postgres_indexes import never_scanned
from stackaudit.images import service_product
from stackaudit.model import Evidence, Hit, Phase, Recommendation, Risk, Severity
from stackaudit.rules import rule
from stackaudit.units import format_bytes

SRC = "postgres"
BLOCK_BYTES = 8192  # pg_stat_statements counts temp blocks of BLCKSZ, 8 kB in every stock build
DAY = 86400.0
MAX_HITS_PER_DATABASE = 20
# Index builds, CLUSTER and VACUUM spill against maintenance_work_mem, not work_mem.
_MAINTENANCE_STATEMENT = re.compile(r"^\s*(CREATE|ALTER|REINDEX|CLUSTER|VACUUM|REFRESH)\b", re.IGNORECASE)


def human_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "an unknown time"
    for unit, length in (("days", DAY), ("hours", 3600.0), ("minutes", 60.0)):
        if seconds >= length:
            return f"{seconds / length:.1f} {unit}"
    return f"{seconds:.0f} seconds"


def setting_origin(setting: Mapping[str, Any]) -> str:
    """Where a live value comes from, in words (pg_settings.source/sourcefile).

    A `-c` on the server command line outranks postgresql.auto.conf (ALTER SYSTEM), which outranks
    postgresql.conf: https://www.postgresql.org/docs/current/config-setting.html
    """
    source = setting.get("source") or "unknown"
    path = str(setting.get("sourcefile") or "")
    line = f" line {setting['sourceline']}" if setting.get("sourceline") else ""
    if source == "configuration file" and path.endswith("postgresql.auto.conf"):
        return f"ALTER SYSTEM ({path}{line})"
    if source == "configuration file":
        return f"configuration file {path}{line}"
    if source == "command line":
        return "server command line (-c), which overrides ALTER SYSTEM and postgresql.conf"
    if source in ("database", "user", "database user"):
        return f"a per-{source} setting (ALTER ROLE/DATABASE ... SET)"
    return source


def _settings(facts: Facts) -> dict[str, dict[str, Any]]:
    settings: dict[str, dict[str, Any]] = facts.get(SRC).get("settings", {})
    return settings


def _per_database(facts: Facts) -> Iterator[tuple[str, dict[str, Any]]]:
    yield from facts.get(SRC).get("per_database", {}).items()


def _statements(facts: Facts) -> list[dict[str, Any]]:
    top: list[dict[str, Any]] = facts.get(SRC).get("statements", {}).get("top", [])
    return top


# --- PG004 -------------------------------------------------------------------------------------


@rule("PG004", "pg-work-mem-too-small", Severity.MEDIUM, needs=("postgres",))
def work_mem_too_small(facts: Facts, settings: Settings) -> Iterator[Hit]:
    """
    ## What it checks
    Temporary files written by sorts and hashes that did not fit in work_mem: bytes per day per
    database since its statistics were reset (pg_stat_database.temp_bytes), and the statements that
    spill most (pg_stat_statements.temp_blks_written).

    ## Why it matters
    A sort or hash that exceeds work_mem (x hash_mem_multiplier for hashes) goes to disk, which is
    much slower than memory and adds I/O to everything else. But work_mem is per sort/hash node, per
    session and per parallel worker: raising it globally multiplies by max_connections (see PG003).

    ## Recommendation
    Raise work_mem only where the spills happen: for the role that runs the reports or jobs
    (`ALTER ROLE reporting SET work_mem = '64MB'`) or inside the transaction of the one query
    (`SET LOCAL work_mem = '64MB'`), sized from the temp bytes per call, not globally.

    ## Estimated effect
    The listed statements stop writing temp files. How much faster they get depends on the storage
    and the page cache (a spill that stays in the cache costs little), and a larger work_mem can make
    the planner drop a parallel plan: measured in `bench.tuning` (docs/benchmarks.md), 960MB for the
    role running the analytic query made its plan serial and the query 1.7x slower than with 64MB and
    its 604 MiB spill, where 256MB kept the parallel plan and removed the spill. Raise it in steps
    toward the suggested value and keep a step only if `stackaudit verify` (or EXPLAIN ANALYZE:
    is the plan still parallel?) shows the gain.

    ## Fix safety
    Safe per role or per transaction (reload not even needed, new sessions pick it up). A global
    raise risks the worst case of PG003.

    ## References
    https://www.postgresql.org/docs/current/runtime-config-resource.html#GUC-WORK-MEM
    https://www.postgresql.org/docs/current/monitoring-stats.html#MONITORING-PG-STAT-DATABASE-VIEW
    https://www.postgresql.org/docs/current/pgstatstatements.html
    """
    pg = facts.get(SRC)
    per_day_limit = settings.threshold("PG004", "min_temp_bytes_per_day")
    statement_limit = settings.threshold("PG004", "min_statement_temp_bytes")
    work_mem = _settings(facts).get("work_mem", {})
    for db in pg.get("databases", []):
        temp_bytes = db.get("temp_bytes") or 0
        age = pg.get("per_database", {}).get(db["name"], {}).get("stats_age_seconds")
        days = max((age or DAY) / DAY, 1.0)
        if temp_bytes / days < per_day_limit:
            continue
        spilling = [s for s in _statements(facts) if s.get("database") == db["name"]
                    and (s.get("temp_blks_written") or 0) * BLOCK_BYTES >= statement_limit
                    and not _MAINTENANCE_STATEMENT.match(str(s.get("query") or ""))]
        spilling.sort(key=lambda s: s.get("temp_blks_written") or 0, reverse=True)
        yield _temp_hit(db, temp_bytes, days, work_mem, spilling[:5])


def _temp_hit(db: Mapping[str, Any], temp_bytes: float, days: float, work_mem: Mapping[str, Any],
              spilling: list[dict[str, Any]]) -> Hit:
    listed = "; ".join(
        f"{format_bytes((s.get('temp_blks_written') or 0) * BLOCK_BYTES)} in {s.get('calls')} "
        f"call{'' if s.get('calls') == 1 else 's'} by "
        f"{s.get('user')}: {s.get('query')!r}" for s in spilling)
    roles = sorted({str(s.get("user")) for s in spilling if s.get("user")}) or ["<role>"]
    per_call = max(((s.get("temp_blks_written") or 0) * BLOCK_BYTES / max(s.get("calls") or 1, 1)
                    for s in spilling), default=0.0)
    suggestion = _work_mem_suggestion(per_call, work_mem.get("base_value"))
    message = (f"Database {db['name']} wrote {format_bytes(temp_bytes)} of temporary files in "
               f"{db.get('temp_files')} files ({format_bytes(temp_bytes / days)} per day) with work_mem = "
               f"{work_mem.get('value', '?')} (from {setting_origin(work_mem)})"
               + (f"; most from: {listed}" if listed else "") + ".")
    action = "\n".join(f"ALTER ROLE \"{role}\" SET work_mem = '{suggestion}';" for role in roles)
    return Hit(
        subject=f"database {db['name']}",
        message=message,
        evidence=[Evidence(SRC, "temp_bytes", temp_bytes), Evidence(SRC, "temp_files", db.get("temp_files")),
                  Evidence(SRC, "temp_bytes_per_day", round(temp_bytes / days)),
                  Evidence(SRC, "work_mem", work_mem.get("value")),
                  Evidence(SRC, "work_mem_source", setting_origin(work_mem)),
                  *[Evidence(SRC, f"statement_temp_bytes[{s.get('queryid')}]",
                             (s.get("temp_blks_written") or 0) * BLOCK_BYTES) for s in spilling]],
        recommendation=Recommendation(
            summary=f"Raise work_mem to about {suggestion} for the role(s) {', '.join(roles)} (or SET LOCAL "
                    "in the spilling query), not globally: the global value multiplies by every "
                    "connection (PG003).",
            estimated_effect="Those sorts/hashes run in memory instead of temp files; confirm with "
                             "`stackaudit verify` and watch temp_bytes fall.",
            risk=Risk.SAFE, effort_minutes=15, phase=Phase.WEEK, action=action),
    )


def _work_mem_suggestion(per_call_bytes: float, current_bytes: float | None) -> str:
    """Twice the spill per call (in-memory sorts need more than their on-disk form), rounded up to
    a power of two in MB, at least double the current value, at most 1GB."""
    current_mb = (current_bytes or 4 * 1024**2) / 1024**2
    wanted = max(per_call_bytes * 2 / 1024**2, current_mb * 2)
    mb = 1
    while mb < wanted and mb < 1024:
        mb *= 2
    return f"{mb}MB" if mb < 1024 else "1GB"


# --- PG009 -------------------------------------------------------------------------------------


@rule("PG009", "pg-pending-restart", Severity.MEDIUM, needs=("postgres",))
def pending_restart(facts: Facts, settings: Settings) -> Iterator[Hit]:
    """
    ## What it checks
    Settings whose new value was written (postgresql.conf or ALTER SYSTEM) but which only take
    effect at the next server restart (pg_settings.pending_restart).

    ## Why it matters
    The configuration files say one thing and the server runs another: a tuning change that
    "was done" is not in effect, and the next unplanned restart changes behaviour by surprise.

    ## Recommendation
    Plan a restart in a maintenance window (`docker compose restart db` or `pg_ctl restart`), or
    revert the file if the change was not wanted.

    ## Estimated effect
    The configured values become the running ones; the effect is that of each setting.

    ## Fix safety
    A restart drops every connection for a few seconds: confirm first.

    ## References
    https://www.postgresql.org/docs/current/view-pg-settings.html
    https://www.postgresql.org/docs/current/view-pg-file-settings.html
    """
    file_settings = facts.get(SRC).get("file_settings") or []
    for name, setting in sorted(_settings(facts).items()):
        if not setting.get("pending_restart"):
            continue
        waiting = [f for f in file_settings if f.get("name") == name and not f.get("applied")]
        new_value = waiting[-1].get("setting") if waiting else None
        where = (f"{waiting[-1].get('sourcefile')} line {waiting[-1].get('sourceline')}" if waiting
                 else "a configuration file")
        change = f"{new_value!r} set in {where}" if new_value is not None else f"a new value in {where}"
        yield Hit(
            subject=f"setting {name}",
            message=f"{name} runs with {setting.get('value')} (from {setting_origin(setting)}) but "
                    f"{change} waits for a restart.",
            evidence=[Evidence(SRC, f"{name}.running_value", setting.get("value")),
                      Evidence(SRC, f"{name}.pending_value", new_value),
                      Evidence(SRC, f"{name}.source", setting_origin(setting)),
                      Evidence(SRC, f"{name}.context", setting.get("context"))],
            recommendation=Recommendation(
                summary=f"Restart PostgreSQL in a maintenance window so {name} takes effect, or revert it.",
                estimated_effect="The configured value becomes the running one.",
                risk=Risk.CONFIRM, effort_minutes=10, phase=Phase.WEEK,
                action="docker compose restart <postgres service>  # or: pg_ctl restart -D $PGDATA"),
        )


# --- PG010 -------------------------------------------------------------------------------------

_INITDB_SETTING = re.compile(r"^(?:-c|--set)(?:=|\s*)?(?P<body>.*)$")


def initdb_settings(args: str) -> list[tuple[str, str]]:
    """`-c name=value` / `--set name=value` / `-cname=value` pairs in POSTGRES_INITDB_ARGS."""
    try:
        words = shlex.split(args)
    except ValueError:
        words = args.split()
    pairs = []
    for i, word in enumerate(words):
        match = _INITDB_SETTING.match(word)
        if not match:
            continue
        body = match.group("body") or (words[i + 1] if i + 1 < len(words) else "")
        if "=" in body:
            name, value = body.split("=", 1)
            pairs.append((name.strip(), value.strip()))
    return pairs


@rule("PG010", "pg-settings-only-at-initdb", Severity.HIGH, needs=("compose",))
def settings_only_at_initdb(facts: Facts, settings: Settings) -> Iterator[Hit]:
    """
    ## What it checks
    A postgres service whose POSTGRES_INITDB_ARGS carries server settings (`-c name=value`,
    `--set name=value`).

    ## Why it matters
    The official image's entrypoint runs initdb only when the data directory is empty. On an
    existing volume these settings do nothing, so the tuning you think is live is not. On a fresh
    volume initdb writes them into postgresql.conf once (PostgreSQL 16+; older initdb rejects `-c`
    and the container fails to start), after which changing the variable has no effect.

    ## Recommendation
    Pass settings to the server on every start instead:
    `command: ["postgres", "-c", "shared_buffers=2GB", ...]` in the compose file (or a mounted
    postgresql.conf, or ALTER SYSTEM). Review the values first (`stackaudit tune postgres`).
    Keep only real initdb options (`--data-checksums`, `--locale`, `--encoding`) in the variable.

    ## Estimated effect
    The intended values become the running ones, visible in pg_settings with source
    "command line".

    ## Fix safety
    Needs a container recreate (restart of PostgreSQL): confirm first. Values from the
    command line override ALTER SYSTEM.

    ## References
    https://hub.docker.com/_/postgres (POSTGRES_INITDB_ARGS, "Database Configuration")
    https://www.postgresql.org/docs/current/app-initdb.html (`--set`, since 16)
    https://www.postgresql.org/docs/current/config-setting.html
    """
    live = _settings(facts)
    for service in iter_services(facts):
        args = (service.get("environment") or {}).get("POSTGRES_INITDB_ARGS")
        if not args or service_product(service) != "postgres":
            continue
        pairs = initdb_settings(str(args))
        if pairs:
            yield _initdb_hit(service, pairs, live)


def _initdb_hit(service: Mapping[str, Any], pairs: list[tuple[str, str]],
                live: Mapping[str, Mapping[str, Any]]) -> Hit:
    name = f"{service.get('project')}/{service.get('name')}"
    mismatched = [(k, v, live[k]) for k, v in pairs if k in live]
    live_text = "; ".join(f"live {k} = {s.get('value')} from {setting_origin(s)}" for k, _v, s in mismatched)
    command = ["postgres"] + [part for k, v in pairs for part in ("-c", f"{k}={v}")]
    action = (f"services:\n  {service.get('name')}:\n    # review the values: stackaudit tune postgres "
              f"--format compose\n    command: {command!r}".replace("'", '"'))
    return Hit(
        subject=f"service {name}",
        message=f"Service {name} passes {len(pairs)} server settings through POSTGRES_INITDB_ARGS "
                f"({', '.join(f'{k}={v}' for k, v in pairs)}); the entrypoint runs initdb only on an empty "
                "data directory, so on an existing volume they are ignored"
                + (f" ({live_text})." if live_text else "."),
        evidence=[Evidence("compose", "POSTGRES_INITDB_ARGS", " ".join(f"-c {k}={v}" for k, v in pairs)),
                  *[Evidence(SRC, f"{k}.live_value", s.get("value"), expected=v) for k, v, s in mismatched],
                  *[Evidence(SRC, f"{k}.source", setting_origin(s)) for k, _v, s in mismatched]],
        recommendation=Recommendation(
            summary="Move the settings to `command: [\"postgres\", \"-c\", ...]` (applied on every start) "
                    "after reviewing them; keep only initdb options in POSTGRES_INITDB_ARGS.",
            estimated_effect="The intended settings actually run; pg_settings shows source 'command line'.",
            risk=Risk.CONFIRM, effort_minutes=20, phase=Phase.WEEK, action=action),
    )


# --- PG102 -------------------------------------------------------------------------------------


@rule("PG102", "pg-idle-in-transaction", Severity.MEDIUM, needs=("postgres",))
def idle_in_transaction(facts: Facts, settings: Settings) -> Iterator[Hit]:
    """
    ## What it checks
    Sessions in the state "idle in transaction" for longer than the threshold
    (pg_stat_activity.state_change).

    ## Why it matters
    An open transaction keeps its locks and holds back the xmin horizon: VACUUM cannot remove dead
    rows newer than it, tables and indexes bloat, and DDL queues behind its locks. It also holds a
    connection slot doing nothing.

    ## Recommendation
    Fix the application code that opens a transaction and waits (an HTTP call or a job inside a
    transaction block), and set a safety net:
    `ALTER ROLE app SET idle_in_transaction_session_timeout = '5min'`.

    ## Estimated effect
    Vacuum can clean up again; no more lock pile-ups behind forgotten transactions.

    ## Fix safety
    The timeout ends such sessions (their transaction rolls back): the application must handle a
    lost connection. Confirm first.

    ## References
    https://www.postgresql.org/docs/current/runtime-config-client.html#GUC-IDLE-IN-TRANSACTION-SESSION-TIMEOUT
    https://www.postgresql.org/docs/current/monitoring-stats.html#MONITORING-PG-STAT-ACTIVITY-VIEW
    """
    limit = settings.threshold("PG102", "idle_in_transaction_seconds")
    critical = settings.threshold("PG102", "critical_seconds")
    timeout = _settings(facts).get("idle_in_transaction_session_timeout", {})
    for session in facts.get(SRC).get("connections", {}).get("idle_in_transaction", [])[:10]:
        idle = session.get("state_age_seconds") or 0
        if idle < limit:
            continue
        who = f"{session.get('user')}@{session.get('database')} ({session.get('application') or 'no name'})"
        yield Hit(
            subject=f"session {who}",
            severity=Severity.HIGH if idle >= critical else None,
            message=f"Session pid {session.get('pid')} of {who} from {session.get('client') or 'local'} "
                    f"has been idle in transaction for {human_seconds(idle)} (transaction open "
                    f"{human_seconds(session.get('xact_age_seconds'))}); "
                    f"last query: {session.get('query')!r}.",
            evidence=[Evidence(SRC, "idle_seconds", round(idle), expected=f"< {limit:g}"),
                      Evidence(SRC, "xact_age_seconds", session.get("xact_age_seconds")),
                      Evidence(SRC, "holds_xid", session.get("holds_xid")),
                      Evidence(SRC, "idle_in_transaction_session_timeout", timeout.get("value"))],
            recommendation=Recommendation(
                summary="Find why the application leaves the transaction open; set "
                        "idle_in_transaction_session_timeout for the application role as a safety net.",
                estimated_effect="Vacuum is no longer held back and locks are released.",
                risk=Risk.CONFIRM, effort_minutes=30, phase=Phase.NOW,
                action=f"ALTER ROLE \"{session.get('user')}\" "
                       "SET idle_in_transaction_session_timeout = '5min';\n"
                       f"-- end this one now: SELECT pg_terminate_backend({session.get('pid')});"),
        )


# --- PG201, PG202 --------------------------------------------------------------------------------


@rule("PG201", "pg-vacuum-stale", Severity.MEDIUM, needs=("postgres",))
def vacuum_stale(facts: Facts, settings: Settings) -> Iterator[Hit]:
    """
    ## What it checks
    Tables whose dead tuples exceed the threshold ratio of all tuples (and a minimum count), and
    tables with rows that were never vacuumed nor analyzed, manually or by autovacuum.

    ## Why it matters
    Dead tuples take space and slow scans until VACUUM reclaims them; a table never analyzed has no
    statistics, so the planner guesses its row counts and picks bad plans. Both mean autovacuum is
    off for the table, too slow (cost limits), or blocked by a long transaction (PG102).

    ## Recommendation
    Run `VACUUM (ANALYZE, VERBOSE)` on the table now; then find why autovacuum lags: the table's
    autovacuum_enabled, autovacuum_vacuum_scale_factor (lower it for big tables), the cost limit,
    or open transactions holding the xmin horizon.

    ## Estimated effect
    Dead space becomes reusable, scans touch fewer pages, and plans use real row counts.

    ## Fix safety
    VACUUM (not FULL) takes no exclusive lock and is safe online; it adds I/O while it runs.

    ## References
    https://www.postgresql.org/docs/current/routine-vacuuming.html
    https://www.postgresql.org/docs/current/runtime-config-autovacuum.html
    """
    ratio_limit = settings.threshold("PG201", "dead_tuple_ratio")
    min_dead = settings.threshold("PG201", "min_dead_tuples")
    min_rows = settings.threshold("PG201", "min_rows_never_vacuumed")
    for database, info in _per_database(facts):
        hits = 0
        for table in info.get("tables", []):
            hit = _vacuum_hit(database, table, ratio_limit, min_dead, min_rows)
            if hit is not None and hits < MAX_HITS_PER_DATABASE:
                hits += 1
                yield hit


def _vacuum_hit(database: str, table: Mapping[str, Any], ratio_limit: float, min_dead: float,
                min_rows: float) -> Hit | None:
    live, dead = table.get("live_tuples") or 0, table.get("dead_tuples") or 0
    ratio = dead / (live + dead) if live + dead else 0.0
    never = not any(table.get(k) for k in ("last_vacuum", "last_autovacuum", "last_analyze",
                                           "last_autoanalyze"))
    name = f"{database}.{table.get('schema')}.{table.get('table')}"
    if dead >= min_dead and ratio >= ratio_limit:
        problem = (f"Table {name} has {dead:,} dead tuples ({ratio:.0%} of {live + dead:,}); "
                   f"last autovacuum {table.get('last_autovacuum') or 'never'}, "
                   f"last vacuum {table.get('last_vacuum') or 'never'}.")
    elif never and live >= min_rows:
        problem = (f"Table {name} has {live:,} rows and was never vacuumed nor analyzed (manually or by "
                   "autovacuum): the planner has no statistics for it.")
    else:
        return None
    options = table.get("options") or []
    if any(str(o).startswith("autovacuum_enabled=f") for o in options):
        problem += " Autovacuum is disabled on it (autovacuum_enabled=false)."
    return Hit(
        subject=f"table {name}",
        message=problem,
        evidence=[Evidence(SRC, "dead_tuples", dead, expected=f"< {min_dead:g} or < {ratio_limit:.0%}"),
                  Evidence(SRC, "live_tuples", live), Evidence(SRC, "dead_tuple_ratio", round(ratio, 4)),
                  Evidence(SRC, "last_autovacuum", table.get("last_autovacuum")),
                  Evidence(SRC, "last_autoanalyze", table.get("last_autoanalyze")),
                  Evidence(SRC, "table_options", options),
                  Evidence(SRC, "total_bytes", table.get("total_bytes"))],
        recommendation=Recommendation(
            summary=f"VACUUM (ANALYZE) {table.get('schema')}.{table.get('table')} now, then find why "
                    "autovacuum does not keep up (table options, scale factor, long transactions).",
            estimated_effect="Dead space becomes reusable and the planner gets fresh statistics.",
            risk=Risk.SAFE, effort_minutes=15, phase=Phase.NOW,
            action=f'VACUUM (ANALYZE, VERBOSE) "{table.get("schema")}"."{table.get("table")}";'),
    )


@rule("PG202", "pg-xid-wraparound-age", Severity.HIGH, needs=("postgres",))
def xid_wraparound_age(facts: Facts, settings: Settings) -> Iterator[Hit]:
    """
    ## What it checks
    The age of each database's oldest unfrozen transaction ID (age(datfrozenxid)) against the
    danger zone (default: 1 billion high, 1.5 billion critical; the hard stop is about 2.1 billion).

    ## Why it matters
    Transaction IDs wrap around at 2^31. Near the limit PostgreSQL first warns, then refuses new
    transactions to protect the data: a full outage until a long VACUUM finishes.

    ## Recommendation
    Find what prevents freezing (long transactions, abandoned replication slots or prepared
    transactions, autovacuum disabled or throttled) and run `VACUUM (FREEZE, VERBOSE)` on the
    oldest tables of the database.

    ## Estimated effect
    The age falls back under autovacuum_freeze_max_age and the outage risk disappears.

    ## Fix safety
    VACUUM FREEZE is online but heavy on I/O; run it at a quiet time.

    ## References
    https://www.postgresql.org/docs/current/routine-vacuuming.html#VACUUM-FOR-WRAPAROUND
    """
    high = settings.threshold("PG202", "xid_age_high")
    critical = settings.threshold("PG202", "xid_age_critical")
    freeze_max = _settings(facts).get("autovacuum_freeze_max_age", {}).get("value")
    for db in facts.get(SRC).get("databases", []):
        age = db.get("xid_age") or 0
        if age < high:
            continue
        yield Hit(
            subject=f"database {db['name']}",
            severity=Severity.CRITICAL if age >= critical else None,
            message=f"Database {db['name']} has a transaction ID age of {age:,} ({age / 2**31:.0%} of the "
                    f"2^31 wraparound limit; autovacuum_freeze_max_age = {freeze_max}).",
            evidence=[Evidence(SRC, "xid_age", age, expected=f"< {high:,.0f}"),
                      Evidence(SRC, "mxid_age", db.get("mxid_age")),
                      Evidence(SRC, "autovacuum_freeze_max_age", freeze_max)],
            recommendation=Recommendation(
                summary="Find what blocks freezing (long transactions, stale replication slots, prepared "
                        "transactions) and VACUUM FREEZE the oldest tables.",
                estimated_effect="Removes the risk of a forced shutdown for wraparound.",
                risk=Risk.SAFE, effort_minutes=60, phase=Phase.NOW,
                action="SELECT relname, age(relfrozenxid) FROM pg_class WHERE relkind = 'r' "
                       "ORDER BY 2 DESC LIMIT 10;  -- then VACUUM (FREEZE, VERBOSE) <table>;"),
        )


# --- PG301 - PG304 -------------------------------------------------------------------------------


@rule("PG301", "pg-unused-index", Severity.LOW, needs=("postgres",))
def unused_index(facts: Facts, settings: Settings) -> Iterator[Hit]:
    """
    ## What it checks
    Indexes never scanned since the statistics were reset (idx_scan = 0), that are not unique, do
    not back a primary key, unique or exclusion constraint, and are valid; with their size and how
    old the statistics are.

    ## Why it matters
    Every index is written on every insert and on most updates (no HOT update), takes disk and
    cache, and slows VACUUM. An index nobody reads is pure cost. But statistics that are only days
    old miss the monthly report or the yearly job: the younger they are, the weaker the evidence.

    ## Recommendation
    Check the index is unused on every server that serves reads (replicas keep their own counters),
    then `DROP INDEX CONCURRENTLY`. Keep the CREATE INDEX definition to restore it.

    ## Estimated effect
    Frees the index's size on disk and in cache and speeds up writes to the table.

    ## Fix safety
    Dropping is reversible only by rebuilding the index (which takes time on a big table) and a
    query that needed it becomes slow: review manually.

    ## References
    https://www.postgresql.org/docs/current/monitoring-stats.html#MONITORING-PG-STAT-ALL-INDEXES-VIEW
    https://www.postgresql.org/docs/current/sql-dropindex.html
    """
    min_bytes = settings.threshold("PG301", "min_index_bytes")
    min_days = settings.threshold("PG301", "min_stats_days")
    for database, info in _per_database(facts):
        age_days = (info.get("stats_age_seconds") or 0) / DAY
        candidates = [i for i in info.get("indexes", [])
                      if never_scanned(i) and (i.get("size_bytes") or 0) >= min_bytes]
        candidates.sort(key=lambda i: i.get("size_bytes") or 0, reverse=True)
        for index in candidates[:MAX_HITS_PER_DATABASE]:
            yield _unused_hit(database, info, index, age_days, min_days)


def _unused_hit(database: str, info: Mapping[str, Any], index: Mapping[str, Any], age_days: float,
                min_days: float) -> Hit:
    young = age_days < min_days
    basis = {"stats_reset": "the last statistics reset", "database_created": "the database was created",
             "server_start": "the server started"}.get(str(info.get("stats_since_basis")), "an unknown time")
    age_text = (f"statistics are only {age_days:.1f} days old (since {basis})" if young
                else f"statistics cover {age_days:.0f} days (since {basis})")
    name = f"{database}.{index.get('schema')}.{index.get('index')}"
    return Hit(
        subject=f"index {name}",
        severity=Severity.INFO if young else None,
        message=f"Index {name} on {index.get('table')} ({format_bytes(index.get('size_bytes'))}) has "
                f"never been scanned; {age_text}.",
        evidence=[Evidence(SRC, "idx_scan", index.get("idx_scan"), expected="> 0"),
                  Evidence(SRC, "size_bytes", index.get("size_bytes")),
                  Evidence(SRC, "stats_age_days", round(age_days, 1), expected=f">= {min_days:g}"),
                  Evidence(SRC, "stats_since", info.get("stats_since")),
                  Evidence(SRC, "definition", index.get("definition"))],
        recommendation=Recommendation(
            summary=f"Confirm on every server that serves reads, then drop {index.get('index')} concurrently"
                    + (" — wait until the statistics cover at least a business cycle." if young else "."),
            estimated_effect=f"Frees {format_bytes(index.get('size_bytes'))} and makes writes to "
                             f"{index.get('table')} cheaper.",
            risk=Risk.MANUAL, effort_minutes=15, phase=Phase.MONTH,
            action=f'DROP INDEX CONCURRENTLY "{index.get("schema")}"."{index.get("index")}";\n'
                   f"-- to restore: {index.get('definition')};"),
    )


@rule("PG302", "pg-duplicate-index", Severity.LOW, needs=("postgres",))
def duplicate_index(facts: Facts, settings: Settings) -> Iterator[Hit]:
    """
    ## What it checks
    Indexes made redundant by another index of the same table: identical (same columns or
    expressions, operator classes, sort order and predicate), or a btree whose columns are a left
    prefix of another btree's. Unique and constraint-backing indexes are never the redundant one.

    ## Why it matters
    The redundant index costs writes, disk and cache while the other serves every query it could
    serve.

    ## Recommendation
    Drop the redundant index with `DROP INDEX CONCURRENTLY` after checking no query hint or
    tool refers to it by name.

    ## Estimated effect
    Frees its size and makes writes cheaper; reads keep using the covering index.

    ## Fix safety
    Reversible by recreating it; the covering index may be a little larger to scan for queries on
    the prefix. Review manually.

    ## References
    https://www.postgresql.org/docs/current/indexes-multicolumn.html
    https://www.postgresql.org/docs/current/catalog-pg-index.html
    """
    for database, info in _per_database(facts):
        for dup in info.get("duplicate_indexes", [])[:MAX_HITS_PER_DATABASE]:
            name = f"{database}.{dup.get('schema')}.{dup.get('index')}"
            how = "is identical to" if dup.get("kind") == "identical" else "is a left prefix of"
            yield Hit(
                subject=f"index {name}",
                message=f"Index {name} ({format_bytes(dup.get('size_bytes'))}, {dup.get('idx_scan')} scans) "
                        f"{how} {dup.get('covered_by')} on {dup.get('table')}: {dup.get('definition')} vs "
                        f"{dup.get('covered_by_definition')}.",
                evidence=[Evidence(SRC, "size_bytes", dup.get("size_bytes")),
                          Evidence(SRC, "kind", dup.get("kind")),
                          Evidence(SRC, "covered_by", dup.get("covered_by")),
                          Evidence(SRC, "idx_scan", dup.get("idx_scan"))],
                recommendation=Recommendation(
                    summary=f"Drop {dup.get('index')}; {dup.get('covered_by')} serves the same queries.",
                    estimated_effect=f"Frees {format_bytes(dup.get('size_bytes'))} and one index write "
                                     "per row.",
                    risk=Risk.MANUAL, effort_minutes=10, phase=Phase.MONTH,
                    action=f'DROP INDEX CONCURRENTLY "{dup.get("schema")}"."{dup.get("index")}";\n'
                           f"-- to restore: {dup.get('definition')};"),
            )


@rule("PG303", "pg-missing-index-candidate", Severity.MEDIUM, needs=("postgres",))
def missing_index_candidate(facts: Facts, settings: Settings) -> Iterator[Hit]:
    """
    ## What it checks
    Large tables (many live rows) read mostly by sequential scans: seq_scan is a large share of all
    scans, with the rows each scan reads.

    ## Why it matters
    A sequential scan reads the whole table; on a large table a query that needs a few rows pays
    for all of them, in I/O and in cache pushed out. Often a WHERE or JOIN column lacks an index.

    ## Recommendation
    Find the statements that scan it (pg_stat_statements, `EXPLAIN (ANALYZE, BUFFERS)`), and index
    the filtered columns with `CREATE INDEX CONCURRENTLY`. Reports that truly read the whole table
    are fine as they are.

    ## Estimated effect
    Queries that filter on the indexed column go from reading the table to reading a few pages.

    ## Fix safety
    Building an index concurrently is online but costs I/O and adds write cost: review manually.

    ## References
    https://www.postgresql.org/docs/current/monitoring-stats.html#MONITORING-PG-STAT-ALL-TABLES-VIEW
    https://www.postgresql.org/docs/current/using-explain.html
    """
    min_rows = settings.threshold("PG303", "min_rows")
    min_scans = settings.threshold("PG303", "min_seq_scans")
    share_limit = settings.threshold("PG303", "seq_scan_share")
    for database, info in _per_database(facts):
        hits = 0
        for table in info.get("tables", []):
            seq, idx = table.get("seq_scan") or 0, table.get("idx_scan") or 0
            share = seq / (seq + idx) if seq + idx else 0.0
            if (table.get("live_tuples") or 0) < min_rows or seq < min_scans or share < share_limit:
                continue
            if hits >= MAX_HITS_PER_DATABASE:
                break
            hits += 1
            yield _seq_scan_hit(database, table, share, share_limit)


def _seq_scan_hit(database: str, table: Mapping[str, Any], share: float, share_limit: float) -> Hit:
    seq = table.get("seq_scan") or 0
    per_scan = (table.get("seq_tup_read") or 0) / seq if seq else 0
    name = f"{database}.{table.get('schema')}.{table.get('table')}"
    return Hit(
        subject=f"table {name}",
        message=f"Table {name} ({table.get('live_tuples'):,} rows, {format_bytes(table.get('total_bytes'))}) "
                f"was read by {seq:,} sequential scans ({share:.0%} of its scans, {per_scan:,.0f} rows read "
                f"per scan) against {table.get('idx_scan') or 0:,} index scans.",
        evidence=[Evidence(SRC, "seq_scan", seq), Evidence(SRC, "idx_scan", table.get("idx_scan")),
                  Evidence(SRC, "seq_scan_share", round(share, 3), expected=f"< {share_limit:.0%}"),
                  Evidence(SRC, "seq_tup_read", table.get("seq_tup_read")),
                  Evidence(SRC, "live_tuples", table.get("live_tuples")),
                  Evidence(SRC, "total_bytes", table.get("total_bytes"))],
        recommendation=Recommendation(
            summary=f"Find the queries that scan {table.get('table')} (pg_stat_statements, EXPLAIN) and "
                    "index the columns they filter on.",
            estimated_effect="Filtered queries read a few index pages instead of the whole table.",
            risk=Risk.MANUAL, effort_minutes=60, phase=Phase.MONTH,
            action=f"-- EXPLAIN (ANALYZE, BUFFERS) <the query>; then:\n"
                   f'CREATE INDEX CONCURRENTLY ON "{table.get("schema")}"."{table.get("table")}" '
                   "(<column>);"),
    )


@rule("PG304", "pg-low-cache-hit-ratio", Severity.MEDIUM, needs=("postgres",))
def low_cache_hit_ratio(facts: Facts, settings: Settings) -> Iterator[Hit]:
    """
    ## What it checks
    The share of block requests served from shared_buffers (blks_hit / (blks_hit + blks_read))
    on a database busy enough to matter (blocks read above a minimum).

    ## Why it matters
    A block not in shared_buffers is read from the OS page cache or, worse, from disk. A low ratio
    on a busy database means the working set does not fit in memory, or large sequential scans
    churn the cache (PG303). Note that a "read" here may still come from the OS page cache.

    ## Recommendation
    First remove the scans that read whole tables (PG303, PG402); then size shared_buffers from the
    memory budget (PG001, `stackaudit tune postgres`) rather than blindly raising it.

    ## Estimated effect
    Fewer reads from disk for the hot data; measure with `stackaudit verify`.

    ## Fix safety
    Index changes are manual; a shared_buffers change needs a restart.

    ## References
    https://www.postgresql.org/docs/current/monitoring-stats.html#MONITORING-PG-STAT-DATABASE-VIEW
    https://www.postgresql.org/docs/current/runtime-config-resource.html#GUC-SHARED-BUFFERS
    """
    min_ratio = settings.threshold("PG304", "min_hit_ratio")
    min_read = settings.threshold("PG304", "min_blocks_read")
    shared_buffers = _settings(facts).get("shared_buffers", {})
    for db in facts.get(SRC).get("databases", []):
        ratio, read = db.get("cache_hit_ratio"), db.get("blks_read") or 0
        if ratio is None or ratio >= min_ratio or read < min_read:
            continue
        yield Hit(
            subject=f"database {db['name']}",
            message=f"Database {db['name']} served only {ratio:.1%} of block requests from shared_buffers "
                    f"({db.get('blks_read'):,} blocks read, {db.get('blks_hit'):,} hits) with "
                    f"shared_buffers = {shared_buffers.get('value', '?')}.",
            evidence=[Evidence(SRC, "cache_hit_ratio", round(ratio, 4), expected=f">= {min_ratio:g}"),
                      Evidence(SRC, "blks_read", db.get("blks_read")),
                      Evidence(SRC, "blks_hit", db.get("blks_hit")),
                      Evidence(SRC, "shared_buffers", shared_buffers.get("value")),
                      Evidence(SRC, "size_bytes", db.get("size_bytes"))],
            recommendation=Recommendation(
                summary="Remove whole-table scans first (PG303/PG402), then size shared_buffers from the "
                        "memory budget (stackaudit tune postgres).",
                estimated_effect="More of the working set served from memory.",
                risk=Risk.MANUAL, effort_minutes=60, phase=Phase.MONTH),
        )


# --- PG401, PG402 --------------------------------------------------------------------------------


@rule("PG401", "pg-stat-statements-missing", Severity.LOW, needs=("postgres",))
def stat_statements_missing(facts: Facts, settings: Settings) -> Iterator[Hit]:
    """
    ## What it checks
    Whether pg_stat_statements is loaded (shared_preload_libraries) and created as an extension in
    at least one database.

    ## Why it matters
    Without it there is no record of which statements take the time, so slow queries (PG402) and
    the statements that spill to disk (PG004) stay invisible, and tuning is guesswork.

    ## Recommendation
    Add pg_stat_statements to shared_preload_libraries (restart), then
    `CREATE EXTENSION pg_stat_statements;` in the application database.

    ## Estimated effect
    Query statistics for every later audit; the overhead is small (a few percent at most).

    ## Fix safety
    Loading the library needs a restart: confirm first. Creating the extension is safe.

    ## References
    https://www.postgresql.org/docs/current/pgstatstatements.html
    """
    statements = facts.get(SRC).get("statements", {})
    preload = _settings(facts).get("shared_preload_libraries", {})
    if statements.get("installed"):
        return
    if statements.get("preloaded") is False:
        problem = (f"pg_stat_statements is not in shared_preload_libraries ("
                   f"{preload.get('value') or 'empty'!r}, from {setting_origin(preload)})")
        action = ("-- keep the libraries already listed:\n"
                  "ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements';\n"
                  "-- restart, then in the application database:\nCREATE EXTENSION pg_stat_statements;")
        risk = Risk.CONFIRM
    elif not statements.get("installed_in"):
        loaded = ("is loaded but" if statements.get("preloaded")
                  else "(whether it is preloaded is hidden from this role)")
        problem = f"pg_stat_statements {loaded} CREATE EXTENSION was not run in any database"
        action, risk = "CREATE EXTENSION pg_stat_statements;", Risk.SAFE
    else:
        return  # installed somewhere but unreadable: a collection error says why
    yield Hit(
        subject="pg_stat_statements",
        message=f"{problem}; there are no query statistics to find slow or spilling statements.",
        evidence=[Evidence(SRC, "shared_preload_libraries", preload.get("value")),
                  Evidence(SRC, "installed_in", statements.get("installed_in")),
                  Evidence(SRC, "extension_available", statements.get("available"))],
        recommendation=Recommendation(
            summary="Load pg_stat_statements and create the extension in the application database.",
            estimated_effect="Slow and spilling statements become visible to every later audit.",
            risk=risk, effort_minutes=10, phase=Phase.WEEK, action=action),
    )


@rule("PG402", "pg-slow-queries", Severity.MEDIUM, needs=("postgres",))
def slow_queries(facts: Facts, settings: Settings) -> Iterator[Hit]:
    """
    ## What it checks
    Statements in pg_stat_statements with a high mean execution time (called at least a few
    times), or a high share of all execution time on a server that has spent real time running
    queries. Planning time is included where pg_stat_statements.track_planning is on. Columns are
    read by their PostgreSQL 13+ names (total_exec_time, mean_exec_time), not the old total_time.

    ## Why it matters
    A few statements usually take most of the database's time; a slow one run by a web request is
    a slow page, and one that dominates the total is where an index or a rewrite pays most.

    ## Recommendation
    For each listed statement run `EXPLAIN (ANALYZE, BUFFERS)` with real parameters; add the
    missing index, rewrite, or cache the result. Reset the statistics after a fix
    (`SELECT pg_stat_statements_reset();`) to measure again.

    ## Estimated effect
    The statement's share of database time shrinks in proportion to the fix; `stackaudit verify`
    measures it.

    ## Fix safety
    Investigation only: review manually.

    ## References
    https://www.postgresql.org/docs/current/pgstatstatements.html
    https://www.postgresql.org/docs/current/using-explain.html
    """
    mean_limit = settings.threshold("PG402", "mean_exec_ms")
    share_limit = settings.threshold("PG402", "total_exec_share")
    min_calls = settings.threshold("PG402", "min_calls")
    min_total = settings.threshold("PG402", "min_total_exec_ms")
    statements = facts.get(SRC).get("statements", {})
    busy = (statements.get("totals", {}).get("total_exec_ms") or 0) >= min_total
    slow = [s for s in statements.get("top", [])
            if ((s.get("calls") or 0) >= min_calls and (s.get("mean_exec_ms") or 0) >= mean_limit)
            or (busy and (s.get("share_of_total_exec") or 0) >= share_limit)]
    slow.sort(key=lambda s: s.get("total_exec_ms") or 0, reverse=True)
    for statement in slow[:10]:
        yield _slow_hit(statement, statements, mean_limit, share_limit)


def _slow_hit(s: Mapping[str, Any], statements: Mapping[str, Any], mean_limit: float,
              share_limit: float) -> Hit:
    plan = (f", planning {s['mean_plan_ms']:.1f} ms mean" if s.get("mean_plan_ms") is not None else "")
    share = s.get("share_of_total_exec")
    share_text = f"{share:.0%} of all execution time" if share is not None else "an unknown share of the time"
    since = statements.get("stats_reset")
    return Hit(
        subject=f"statement {s.get('queryid')}",
        message=f"Statement {s.get('queryid')} in {s.get('database')} by {s.get('user')} ran "
                f"{s.get('calls') or 0:,} times, {s.get('mean_exec_ms') or 0:.1f} ms mean "
                f"({(s.get('total_exec_ms') or 0) / 1000:.1f} s total, {share_text}{plan}): "
                f"{s.get('query')!r}.",
        evidence=[Evidence(SRC, "mean_exec_ms", round(s.get("mean_exec_ms") or 0, 2),
                           expected=f"< {mean_limit:g}"),
                  Evidence(SRC, "total_exec_ms", round(s.get("total_exec_ms") or 0, 1)),
                  Evidence(SRC, "share_of_total_exec", round(share, 3) if share is not None else None,
                           expected=f"< {share_limit:g}"),
                  Evidence(SRC, "mean_plan_ms", s.get("mean_plan_ms")),
                  Evidence(SRC, "calls", s.get("calls")), Evidence(SRC, "rows", s.get("rows")),
                  Evidence(SRC, "temp_blks_written", s.get("temp_blks_written")),
                  Evidence(SRC, "shared_blks_read", s.get("shared_blks_read")),
                  Evidence(SRC, "statistics_since", since)],
        recommendation=Recommendation(
            summary="EXPLAIN (ANALYZE, BUFFERS) this statement with real parameters; index, rewrite or "
                    "cache it.",
            estimated_effect="Its share of database time falls in proportion to the fix.",
            risk=Risk.MANUAL, effort_minutes=60, phase=Phase.WEEK,
            action=f"EXPLAIN (ANALYZE, BUFFERS) {s.get('query')}"),
    )
