"""MariaDB / MySQL rules (MY): memory budget and worst case, redo, temp tables, table cache (MY0xx),
connections (MY1xx), indexes and cache hits (MY3xx), statements (MY4xx), binary logs (MY5xx),
accounts (MY6xx). The same families and thresholds as PostgreSQL's PG rules."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from stackaudit.config import Settings
from stackaudit.derive import Derived
from stackaudit.derive.mysql import instances
from stackaudit.facts import Facts
from stackaudit.model import Evidence, Hit, Phase, Recommendation, Risk, Severity
from stackaudit.rules import rule
from stackaudit.tuning.mysql import MysqlTuning, as_conf
from stackaudit.tuning.units import parse_memory
from stackaudit.units import format_bytes

SRC = "mysql"
DAY = 86400.0
MAX_HITS = 10
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")


def _subject(instance: Mapping[str, Any]) -> str:
    if instance.get("service"):
        return f"{instance.get('project')}/{instance['service']}"
    return str(instance.get("target"))


def _name(instance: Mapping[str, Any]) -> str:
    return "MariaDB" if instance.get("flavor") == "mariadb" else "MySQL"


def _var(instance: Mapping[str, Any], name: str) -> float | None:
    try:
        return float(str((instance.get("variables") or {}).get(name)))
    except ValueError:
        return None


def _derived(instance: Mapping[str, Any]) -> dict[str, Any]:
    derived = instance.get("derived")
    return derived if isinstance(derived, dict) else {}


def _tuned(facts: Facts, derived: Derived) -> Iterator[tuple[dict[str, Any], MysqlTuning]]:
    """Each server with its tuning (computed once per audit in Derived)."""
    yield from zip(instances(facts), derived.mysql, strict=True)


def _tune_fix(tuning: MysqlTuning, summary: str, effect: str, risk: Risk = Risk.CONFIRM) -> Recommendation:
    return Recommendation(summary=summary, estimated_effect=effect, risk=risk, effort_minutes=15,
                          phase=Phase.WEEK,
                          action=as_conf(tuning) + "# or: stackaudit tune mysql --format sql")


# --- MY001 - MY005: memory, redo, temp tables, table cache ---------------------------------------


@rule("MY001", "mysql-buffer-pool-off-budget", Severity.MEDIUM, needs=("mysql",))
def buffer_pool_off_budget(facts: Facts, settings: Settings, derived: Derived) -> Iterator[Hit]:
    """
    ## What it checks
    innodb_buffer_pool_size against what the memory budget allows (`stackaudit tune mysql`): below
    half of it, or above twice it.

    ## Why it matters
    The buffer pool is InnoDB's cache of table and index pages. Too small (the default is 128 MB)
    and reads go to disk that memory could serve; too large for the budget and the server, the app
    and Redis compete for RAM until the kernel's OOM killer picks one. The budget is the host's
    RAM or the server's cgroup limit, minus the co-located services, minus an OS reserve.

    ## Recommendation
    Set the size `stackaudit tune mysql` proposes (a multiple of innodb_buffer_pool_chunk_size x
    innodb_buffer_pool_instances). It can be changed online: `SET GLOBAL innodb_buffer_pool_size`.

    ## Estimated effect
    More reads from memory (too small) or no memory pressure on the neighbours (too large).

    ## Fix safety
    Resizing online works in chunks and can stall briefly on a busy server; a smaller pool empties
    pages that were hot. Persist the value in a conf.d file, the compose command or SET PERSIST.

    ## References
    - MySQL manual, "Configuring InnoDB Buffer Pool Size":
      https://dev.mysql.com/doc/refman/8.0/en/innodb-buffer-pool-resize.html
    - MariaDB KB, "InnoDB Buffer Pool":
      https://mariadb.com/kb/en/innodb-buffer-pool/
    """
    low, high = settings.threshold("MY001", "low_ratio"), settings.threshold("MY001", "high_ratio")
    for instance, tuning in _tuned(facts, derived):
        current = _var(instance, "innodb_buffer_pool_size")
        proposal = tuning.settings.get("innodb_buffer_pool_size")
        if not current or proposal is None:
            continue
        wanted = parse_memory(proposal.recommended)
        if low * wanted <= current <= high * wanted:
            continue
        side = "small" if current < low * wanted else "large"
        yield Hit(
            _subject(instance),
            f"{_name(instance)} {_subject(instance)}: innodb_buffer_pool_size is {format_bytes(current)}, "
            f"too {side} for its {format_bytes(tuning.budget.postgres_bytes)} budget (proposed "
            f"{proposal.recommended}).",
            _tune_fix(tuning, f"Set innodb_buffer_pool_size = {proposal.recommended}.",
                      "reads served from memory" if side == "small" else "memory left to the neighbours"),
            (Evidence(SRC, "innodb_buffer_pool_size_bytes", int(current), proposal.recommended),
             Evidence(SRC, "budget", tuning.sentence()),
             Evidence(SRC, "source", proposal.source),
             Evidence(SRC, "worst_case_recommended", tuning.worst_case.arithmetic)),
        )


@rule("MY002", "mysql-worst-case-memory-overcommit", Severity.HIGH, needs=("mysql",))
def worst_case_overcommit(facts: Facts, settings: Settings, derived: Derived) -> Iterator[Hit]:
    """
    ## What it checks
    The worst case of the current settings: global buffers + max_connections x per-thread
    buffers (MySQLTuner's "maximum possible memory"), against the server's memory budget.

    ## Why it matters
    Each connection can allocate its sort, join, read and binlog buffers and a thread stack. When
    every allowed connection does so at once - a traffic spike, a slow query piling up requests -
    the total passes the memory the server really has and the kernel kills it (or the app next
    to it). A worst case that fits makes that spike a slowdown instead of an outage.

    ## Recommendation
    `stackaudit tune mysql` shows the arithmetic and proposes per-thread buffers back at their
    defaults and a max_connections near what was used, so the worst case fits.

    ## Estimated effect
    No out-of-memory kill at peak connections.

    ## Fix safety
    All are dynamic (new sessions take the new values); a lower max_connections refuses
    connections above it, so check the apps' pools first (APP001 / PG101 for PostgreSQL).

    ## References
    - MySQLTuner, mysqltuner.pl calculations() (server_buffers, per_thread_buffers):
      https://github.com/major/MySQLTuner-perl
    - MySQL manual, "How MySQL Uses Memory":
      https://dev.mysql.com/doc/refman/8.0/en/memory-use.html
    """
    for instance, tuning in _tuned(facts, derived):
        if not instance.get("variables"):
            continue
        current, allowed = tuning.worst_case_current, tuning.budget.postgres_bytes
        if current.bytes <= allowed:
            continue
        yield Hit(
            _subject(instance),
            f"{_name(instance)} {_subject(instance)} can use up to {format_bytes(current.bytes)} with every "
            f"connection busy, over its {format_bytes(allowed)} budget: {current.arithmetic}.",
            _tune_fix(tuning, "Bound the per-thread buffers and max_connections so the worst case "
                      "fits.", f"worst case {format_bytes(tuning.worst_case.bytes)}"),
            (Evidence(SRC, "worst_case_bytes", current.bytes, f"<= {allowed}"),
             Evidence(SRC, "worst_case_arithmetic", current.arithmetic),
             Evidence(SRC, "budget", tuning.sentence())),
        )


@rule("MY003", "mysql-redo-log-too-small", Severity.MEDIUM, needs=("mysql",))
def redo_too_small(facts: Facts, settings: Settings, derived: Derived) -> Iterator[Hit]:
    """
    ## What it checks
    The redo log capacity (innodb_redo_log_capacity on MySQL 8.0.30+, innodb_log_file_size x
    files elsewhere) against the measured redo write rate: less than `min_minutes` of writes.

    ## Why it matters
    When the redo log fills, InnoDB must flush dirty pages before it can reuse it: writes stall
    in bursts (furious flushing) and the buffer pool cannot absorb repeated changes to the same
    pages. About an hour of writes is the usual target; the PostgreSQL equivalent is PG008.

    ## Recommendation
    Size it for an hour of writes (`stackaudit tune mysql`). MySQL 8.0.30+ and MariaDB 10.9+
    resize it online; older servers need a restart with the new size.

    ## Estimated effect
    Fewer write stalls; smoother flushing.

    ## Fix safety
    A larger redo log takes longer to replay after a crash; online where the version allows it,
    else a restart.

    ## References
    - MySQL manual, "Configuring Redo Log Capacity":
      https://dev.mysql.com/doc/refman/8.0/en/innodb-redo-log.html
    - Percona blog, "How to calculate a good InnoDB log file size":
      https://www.percona.com/blog/how-to-calculate-a-good-innodb-log-file-size/
    - MariaDB KB, "InnoDB Redo Log":
      https://mariadb.com/kb/en/innodb-redo-log/
    """
    minutes = settings.threshold("MY003", "min_minutes")
    for instance, tuning in _tuned(facts, derived):
        figures = _derived(instance)
        capacity = figures.get("redo_capacity_bytes")
        measured = (figures.get("redo_write_bytes_per_second"),
                    figures.get("redo_write_bytes_per_second_since_start"))
        rates = [r for r in measured if isinstance(r, (int, float))]
        if not capacity or not rates or max(rates) <= 0:
            continue
        rate = max(rates)
        covered = capacity / rate / 60
        if covered >= minutes:
            continue
        yield Hit(
            _subject(instance),
            f"{_name(instance)} {_subject(instance)}: the {format_bytes(capacity)} redo log holds "
            f"{covered:.1f} minutes of writes at {format_bytes(rate)}/s (at least {minutes:g} wanted).",
            _tune_fix(tuning, "Size the redo log for about an hour of writes.",
                      "fewer write stalls"),
            (Evidence(SRC, "redo_capacity_bytes", capacity),
             Evidence(SRC, "redo_write_bytes_per_second", rate),
             Evidence(SRC, "minutes_of_writes", round(covered, 1), f">= {minutes:g}")),
        )


@rule("MY004", "mysql-tmp-tables-on-disk", Severity.MEDIUM, needs=("mysql",))
def tmp_tables_on_disk(facts: Facts, settings: Settings) -> Iterator[Hit]:
    """
    ## What it checks
    The share of internal temporary tables created on disk (Created_tmp_disk_tables /
    Created_tmp_tables since start), with the statements that spill most (digests).

    ## Why it matters
    GROUP BY, DISTINCT, UNION and ORDER BY on unindexed columns build temporary tables; above
    min(tmp_table_size, max_heap_table_size), or with TEXT/BLOB columns on MariaDB and older MySQL,
    they go to disk and the query slows by an order of magnitude. The PostgreSQL equivalent is PG004.

    ## Recommendation
    First fix the statements listed (an index for the GROUP BY, no TEXT column in the result).
    Raise tmp_table_size and max_heap_table_size together only within the worst-case budget
    (MY002): each connection can hold one.

    ## Estimated effect
    The listed statements run in memory.

    ## Fix safety
    Query and index changes need review; the variables are dynamic.

    ## References
    - MySQL manual, "Internal Temporary Table Use in MySQL":
      https://dev.mysql.com/doc/refman/8.0/en/internal-temporary-tables.html
    - MariaDB KB, "Server System Variables: tmp_table_size":
      https://mariadb.com/kb/en/server-system-variables/#tmp_table_size
    """
    share = settings.threshold("MY004", "disk_share")
    minimum = settings.threshold("MY004", "min_disk_tables")
    for instance in instances(facts):
        figures = _derived(instance)
        ratio, disk = figures.get("tmp_disk_ratio"), figures.get("tmp_disk_tables") or 0
        if ratio is None or ratio < share or disk < minimum:
            continue
        spilling = sorted((d for d in instance.get("digests") or [] if d.get("tmp_disk_tables")),
                          key=lambda d: d.get("tmp_disk_tables") or 0, reverse=True)[:3]
        listed = "; ".join(f"{d.get('tmp_disk_tables')}x {str(d.get('query'))[:80]}" for d in spilling)
        yield Hit(
            _subject(instance),
            f"{_name(instance)} {_subject(instance)}: {ratio:.0%} of temporary tables went to disk "
            f"({disk} of {figures.get('tmp_tables')})" + (f"; most from: {listed}" if listed else "") + ".",
            Recommendation("Fix the statements that spill (indexes, no TEXT in GROUP BY results), then size "
                           "tmp_table_size/max_heap_table_size within the budget.",
                           "those statements run in memory", Risk.MANUAL, 60, Phase.MONTH),
            (Evidence(SRC, "tmp_disk_ratio", ratio, f"< {share:g}"),
             Evidence(SRC, "tmp_disk_tables", disk),
             Evidence(SRC, "tmp_table_size", (instance.get("variables") or {}).get("tmp_table_size"))),
        )


@rule("MY005", "mysql-table-open-cache-misses", Severity.LOW, needs=("mysql",))
def table_open_cache_misses(facts: Facts, settings: Settings, derived: Derived) -> Iterator[Hit]:
    """
    ## What it checks
    Table_open_cache_misses against hits: more than `miss_share` of table opens missed the cache.

    ## Why it matters
    A miss opens the table's files again (and takes a lock on the table definition): with many
    tables (WordPress multisite, Nextcloud) a small table_open_cache makes every query pay for it.

    ## Recommendation
    Raise table_open_cache above the number of tables in use (`stackaudit tune mysql` proposes one
    from Open_tables); check open_files_limit allows it.

    ## Estimated effect
    Opens served from the cache.

    ## Fix safety
    Dynamic; each entry costs a little memory and file descriptors.

    ## References
    - MySQL manual, "How MySQL Opens and Closes Tables":
      https://dev.mysql.com/doc/refman/8.0/en/table-cache.html
    """
    share = settings.threshold("MY005", "miss_share")
    minimum = settings.threshold("MY005", "min_misses")
    for instance, tuning in _tuned(facts, derived):
        figures = _derived(instance)
        ratio = figures.get("table_open_cache_miss_ratio")
        misses = figures.get("table_open_cache_misses") or 0
        if ratio is None or ratio < share or misses < minimum:
            continue
        yield Hit(
            _subject(instance),
            f"{_name(instance)} {_subject(instance)}: {ratio:.0%} of table opens missed the "
            f"{(instance.get('variables') or {}).get('table_open_cache')}-entry table_open_cache "
            f"({misses} misses, {figures.get('open_tables')} tables open).",
            _tune_fix(tuning, "Raise table_open_cache.", "table opens from the cache", Risk.SAFE),
            (Evidence(SRC, "table_open_cache_miss_ratio", ratio, f"< {share:g}"),
             Evidence(SRC, "open_tables", figures.get("open_tables"))),
        )


# --- MY101 - MY102: connections -------------------------------------------------------------------


@rule("MY101", "mysql-connections-near-max", Severity.HIGH, needs=("mysql",))
def connections_near_max(facts: Facts, settings: Settings) -> Iterator[Hit]:
    """
    ## What it checks
    Max_used_connections since start against max_connections: at or above `used_share` of it.

    ## Why it matters
    At max_connections the server refuses new connections ("Too many connections"): PHP-FPM
    children and app workers get errors instead of waiting. Having touched the limit once says
    the next spike will pass it.

    ## Recommendation
    Find who holds the connections (pm.max_children per PHP-FPM pool, app pools, persistent
    connections); lower them or add a pooler (ProxySQL, MaxScale). Raise max_connections only
    within the worst-case memory budget (MY002).

    ## Estimated effect
    No refused connections at peak.

    ## Fix safety
    max_connections is dynamic; more connections raise the worst-case memory.

    ## References
    - MySQL manual, "Too many connections":
      https://dev.mysql.com/doc/refman/8.0/en/too-many-connections.html
    - MariaDB KB, "Server Status Variables: Max_used_connections":
      https://mariadb.com/kb/en/server-status-variables/#max_used_connections
    """
    share = settings.threshold("MY101", "used_share")
    for instance in instances(facts):
        used, allowed = _derived(instance).get("max_used_connections"), _var(instance, "max_connections")
        if not used or not allowed or used < share * allowed:
            continue
        yield Hit(
            _subject(instance),
            f"{_name(instance)} {_subject(instance)} has used {used} of its {int(allowed)} connections "
            f"({used / allowed:.0%}) since it started.",
            Recommendation("Bring the clients' pools (PHP-FPM pm.max_children, app pools) under "
                           "max_connections, or raise it within the memory budget.", "no refused connections",
                           Risk.MANUAL, 30, Phase.WEEK),
            (Evidence(SRC, "max_used_connections", used, f"< {share:g} x {int(allowed)}"),
             Evidence(SRC, "max_connections", int(allowed))),
            severity=Severity.CRITICAL if used >= allowed else None,
        )


@rule("MY102", "mysql-aborted-connections", Severity.LOW, needs=("mysql",))
def aborted_connections(facts: Facts, settings: Settings) -> Iterator[Hit]:
    """
    ## What it checks
    Aborted_connects (failed logins, handshake timeouts) as a share of all connection attempts.

    ## Why it matters
    Many failed connections mean a client with a wrong password retrying in a loop, a health check
    that does not log in, or someone guessing passwords; each also counts towards
    max_connect_errors, after which the server blocks the client's host.

    ## Recommendation
    Read the server's error log (log_warnings >= 2 on MariaDB) for the user and host, fix the client
    or block the source.

    ## Estimated effect
    No blocked hosts; attacks seen.

    ## Fix safety
    Read-only investigation.

    ## References
    - MySQL manual, "Communication Errors and Aborted Connections":
      https://dev.mysql.com/doc/refman/8.0/en/communication-errors.html
    """
    share = settings.threshold("MY102", "aborted_share")
    minimum = settings.threshold("MY102", "min_aborted")
    for instance in instances(facts):
        figures = _derived(instance)
        aborted, total = figures.get("aborted_connects") or 0, figures.get("connections") or 0
        if aborted < minimum or not total or aborted / total < share:
            continue
        yield Hit(
            _subject(instance),
            f"{_name(instance)} {_subject(instance)}: {aborted} of {total} connection attempts "
            f"({aborted / total:.0%}) failed since start.",
            Recommendation("Find the client in the error log and fix its credentials, or block it.",
                           "no failed-login loops", Risk.MANUAL, 20, Phase.WEEK),
            (Evidence(SRC, "aborted_connects", aborted), Evidence(SRC, "connections", total)),
        )


@rule("MY103", "mysql-connection-budget-exceeded", Severity.HIGH, needs=("mysql",))
def connection_budget_exceeded(facts: Facts, settings: Settings) -> Iterator[Hit]:
    """
    ## What it checks
    The PHP-FPM services of the server's stack: the sum of pm.max_children over their pools times
    their replicas (read from the pool files they mount, else the php image's default of 5),
    against max_connections. The PostgreSQL equivalent, for Puma and Sidekiq, is PG101.

    ## Why it matters
    Each FPM child runs one request at a time and holds a connection while it does: under load
    every child is busy at once. When the children can outnumber max_connections, a traffic peak
    ends in "Too many connections" errors for the requests above the limit, while the server's
    memory budget was sized for fewer.

    ## Recommendation
    Size pm.max_children from the memory per child and the connections the server allows (leave
    a few for admin tools, backups and monitoring), or raise max_connections within the
    worst-case memory budget (MY002).

    ## Estimated effect
    No refused connections at peak.

    ## Fix safety
    Fewer children queue requests in FPM's listen backlog instead of failing them; a pool change
    needs an FPM reload.

    ## References
    - PHP manual, "FPM configuration" (pm, pm.max_children):
      https://www.php.net/manual/en/install.fpm.configuration.php
    - Docker official image php, "Configuration" (www.conf defaults):
      https://hub.docker.com/_/php
    """
    for instance in instances(facts):
        clients = [c for c in instance.get("php_fpm_clients") or [] if isinstance(c, dict)]
        allowed = _var(instance, "max_connections")
        total = sum(int(c.get("max_children_total") or 0) for c in clients)
        if not clients or not allowed or total <= allowed:
            continue
        pools = [(c, name, pool) for c in clients for name, pool in (c.get("pools") or {}).items()]
        parts = [f"{c.get('service')}: {c.get('replicas')} x " + " + ".join(
            f"{name} {pool.get('max_children')}" for name, pool in (c.get("pools") or {}).items())
            for c in clients]
        yield Hit(
            _subject(instance),
            f"PHP-FPM can open {total} connections to {_name(instance)} {_subject(instance)}, which allows "
            f"{int(allowed)}: {'; '.join(parts)}.",
            Recommendation("Lower pm.max_children (or the replicas) under max_connections, or raise "
                           "max_connections within the memory budget.", "no refused connections at peak",
                           Risk.MANUAL, 30, Phase.WEEK),
            (Evidence(SRC, "php_fpm_max_children_total", total, f"<= {int(allowed)}"),
             *(Evidence(SRC, f"{c.get('service')}.{name}.max_children", pool.get("max_children"),
                        pool.get("source")) for c, name, pool in pools)),
        )


# --- MY301 - MY304: indexes and cache -------------------------------------------------------------


@rule("MY301", "mysql-unused-index", Severity.LOW, needs=("mysql",))
def unused_index(facts: Facts, settings: Settings) -> Iterator[Hit]:
    """
    ## What it checks
    Non-unique secondary indexes with no reads since the server started (sys.schema_unused_indexes,
    from performance_schema), with their size and the server's uptime.

    ## Why it matters
    Every index is updated on every write and takes disk and buffer pool pages. But the counters
    start at zero with each restart: after a few days they miss the monthly report; a young
    server says so (info only).

    ## Recommendation
    Check on every server that serves reads (replicas count their own), then drop it; keep its
    definition (SHOW CREATE TABLE) to restore it.

    ## Estimated effect
    Frees the index's size and makes writes to the table cheaper.

    ## Fix safety
    Rebuilding a dropped index takes time; a query that needed it becomes slow: review manually.
    MySQL 8 can first make it INVISIBLE to test safely.

    ## References
    - MySQL sys schema, "schema_unused_indexes":
      https://dev.mysql.com/doc/refman/8.0/en/sys-schema-unused-indexes.html
    - MySQL manual, "Invisible Indexes":
      https://dev.mysql.com/doc/refman/8.0/en/invisible-indexes.html
    """
    min_days = settings.threshold("MY301", "min_uptime_days")
    min_bytes = settings.threshold("MY301", "min_index_bytes")
    for instance in instances(facts):
        days = (instance.get("uptime_seconds") or 0) / DAY
        young = days < min_days
        candidates = [i for i in instance.get("unused_indexes") or []
                      if not i.get("unique") and (i.get("bytes") or 0) >= min_bytes]
        candidates.sort(key=lambda i: i.get("bytes") or 0, reverse=True)
        for index in candidates[:MAX_HITS]:
            name = f"{index.get('schema_name')}.{index.get('table_name')}.{index.get('index_name')}"
            age = (f"the server has been up only {days:.1f} days" if young
                   else f"over {days:.0f} days of uptime")
            yield Hit(
                f"index {name}",
                f"Index {name} ({format_bytes(index.get('bytes'))}) has not been read; {age}.",
                Recommendation(f"Confirm on every server, then drop {index.get('index_name')}"
                               + (" - after the counters cover a business cycle." if young else "."),
                               f"frees {format_bytes(index.get('bytes'))}", Risk.MANUAL, 15, Phase.MONTH,
                               f"ALTER TABLE `{index.get('schema_name')}`.`{index.get('table_name')}` "
                               f"DROP INDEX `{index.get('index_name')}`;"),
                (Evidence(SRC, "index_bytes", index.get("bytes")),
                 Evidence(SRC, "uptime_days", round(days, 1), f">= {min_days:g}")),
                severity=Severity.INFO if young else None,
            )


@rule("MY302", "mysql-redundant-index", Severity.LOW, needs=("mysql",))
def redundant_index(facts: Facts, settings: Settings) -> Iterator[Hit]:
    """
    ## What it checks
    Indexes whose columns are a left prefix of another index of the same table
    (sys.schema_redundant_indexes).

    ## Why it matters
    The longer index serves every lookup the shorter one could; the shorter one only costs writes,
    disk and buffer pool pages.

    ## Recommendation
    Drop the redundant index (the sys schema gives the statement) after checking no query names it
    in an index hint (FORCE INDEX / USE INDEX).

    ## Estimated effect
    Frees its size; cheaper writes.

    ## Fix safety
    A query with an index hint on it fails; review manually.

    ## References
    - MySQL sys schema, "schema_redundant_indexes":
      https://dev.mysql.com/doc/refman/8.0/en/sys-schema-redundant-indexes.html
    """
    for instance in instances(facts):
        for index in (instance.get("redundant_indexes") or [])[:MAX_HITS]:
            name = f"{index.get('schema_name')}.{index.get('table_name')}.{index.get('index_name')}"
            yield Hit(
                f"index {name}",
                f"Index {name} ({index.get('columns')}) is covered by {index.get('covered_by')} "
                f"({index.get('covered_by_columns')}).",
                Recommendation(f"Drop {index.get('index_name')}.", "cheaper writes, less disk",
                               Risk.MANUAL, 10, Phase.MONTH, str(index.get("sql_drop_index") or "")),
                (Evidence(SRC, "covered_by", index.get("covered_by")),),
            )


@rule("MY304", "mysql-low-buffer-pool-hit-ratio", Severity.MEDIUM, needs=("mysql",))
def low_buffer_pool_hit_ratio(facts: Facts, settings: Settings, derived: Derived) -> Iterator[Hit]:
    """
    ## What it checks
    The InnoDB buffer pool hit ratio (1 - Innodb_buffer_pool_reads / read requests) on a server
    with at least `min_read_requests` requests, with the free pages left.

    ## Why it matters
    Each miss reads a page from disk. Below about 95% with no free pages, the working set does
    not fit the pool: queries wait on storage. The PostgreSQL equivalent is PG304.

    ## Recommendation
    Grow the buffer pool within the budget (MY001, `stackaudit tune mysql`), or find the
    statements that read most rows (MY402) and index them.

    ## Estimated effect
    Fewer disk reads.

    ## Fix safety
    innodb_buffer_pool_size is dynamic; stay within the worst case (MY002).

    ## References
    - MySQL manual, "InnoDB Buffer Pool Metrics":
      https://dev.mysql.com/doc/refman/8.0/en/innodb-buffer-pool.html
    """
    minimum = settings.threshold("MY304", "min_hit_ratio")
    requests_min = settings.threshold("MY304", "min_read_requests")
    for instance, tuning in _tuned(facts, derived):
        figures = _derived(instance)
        ratio, requests = figures.get("buffer_pool_hit_ratio"), figures.get("buffer_pool_read_requests") or 0
        if ratio is None or ratio >= minimum or requests < requests_min:
            continue
        yield Hit(
            _subject(instance),
            f"{_name(instance)} {_subject(instance)}: buffer pool hit ratio {ratio:.1%} over {requests} read "
            f"requests, {figures.get('buffer_pool_pages_free')} of {figures.get('buffer_pool_pages_total')} "
            "pages free.",
            _tune_fix(tuning, "Grow the buffer pool within the budget, or index the heaviest reads.",
                      "fewer disk reads"),
            (Evidence(SRC, "buffer_pool_hit_ratio", ratio, f">= {minimum:g}"),
             Evidence(SRC, "buffer_pool_pages_free", figures.get("buffer_pool_pages_free"))),
        )


# --- MY401 - MY402: statements --------------------------------------------------------------------


@rule("MY401", "mysql-statement-digests-missing", Severity.LOW, needs=("mysql",))
def digests_missing(facts: Facts, settings: Settings) -> Iterator[Hit]:
    """
    ## What it checks
    performance_schema is off, so there are no statement digests (and no unused-index counters).

    ## Why it matters
    Without digests nobody can say which statements take the time, spill to disk or read millions
    of rows to return ten; MY301 and MY402 cannot run. MariaDB ships with performance_schema off;
    MySQL 8 has it on. The PostgreSQL equivalent is PG401.

    ## Recommendation
    `performance_schema = ON` in a conf.d file (or `--performance-schema=ON` in the compose
    command), then restart. It costs some memory (see performance_schema's own memory in
    `SHOW ENGINE PERFORMANCE_SCHEMA STATUS`).

    ## Estimated effect
    Slow statements and unused indexes become visible.

    ## Fix safety
    Needs a restart; a few percent of CPU and tens of MB of memory.

    ## References
    - MariaDB KB, "Performance Schema Overview":
      https://mariadb.com/kb/en/performance-schema-overview/
    - MySQL manual, "Performance Schema Statement Digests and Sampling":
      https://dev.mysql.com/doc/refman/8.0/en/performance-schema-statement-digests.html
    """
    for instance in instances(facts):
        if instance.get("performance_schema") is not False:
            continue
        yield Hit(
            _subject(instance),
            f"{_name(instance)} {_subject(instance)} runs with performance_schema OFF: no statement "
            "digests, no unused-index counters.",
            Recommendation("Enable performance_schema and restart.", "slow statements become visible",
                           Risk.CONFIRM, 10, Phase.WEEK, "[mysqld]\nperformance_schema = ON\n"),
            (Evidence(SRC, "performance_schema", "OFF", "ON"),),
        )


@rule("MY402", "mysql-slow-statements", Severity.MEDIUM, needs=("mysql",))
def slow_statements(facts: Facts, settings: Settings) -> Iterator[Hit]:
    """
    ## What it checks
    Statement digests with a high mean latency (at least `min_calls` calls) or a large share of the
    total time, with rows examined against rows sent.

    ## Why it matters
    A few statements usually take most of the database's time; a statement that examines a
    thousand rows per row it returns is missing an index. The PostgreSQL equivalent is PG402.

    ## Recommendation
    EXPLAIN the statement listed; add the index its WHERE/ORDER BY needs, or rewrite it.

    ## Estimated effect
    The statement's latency, often by orders of magnitude.

    ## Fix safety
    Adding an index is online on InnoDB (ALGORITHM=INPLACE) but costs writes; review manually.

    ## References
    - MySQL manual, "Performance Schema Statement Digests and Sampling":
      https://dev.mysql.com/doc/refman/8.0/en/performance-schema-statement-digests.html
    - MySQL sys schema, "statement_analysis":
      https://dev.mysql.com/doc/refman/8.0/en/sys-statement-analysis.html
    """
    mean_ms = settings.threshold("MY402", "mean_ms")
    share = settings.threshold("MY402", "total_share")
    min_calls = settings.threshold("MY402", "min_calls")
    min_total = settings.threshold("MY402", "min_total_ms")
    for instance in instances(facts):
        digests = [d for d in instance.get("digests") or [] if isinstance(d, dict)]
        total = sum(d.get("total_ms") or 0 for d in digests) or 1.0
        for digest in digests[:MAX_HITS]:
            calls, mean = digest.get("calls") or 0, digest.get("mean_ms") or 0
            spent = digest.get("total_ms") or 0
            slow = calls >= min_calls and mean >= mean_ms
            heavy = spent >= min_total and spent / total >= share
            if not (slow or heavy):
                continue
            examined, sent = digest.get("rows_examined") or 0, digest.get("rows_sent") or 0
            yield Hit(
                f"statement {str(digest.get('digest'))[:16]}",
                f"{str(digest.get('query'))[:120]} ran {calls} times, {mean:.0f} ms on average, "
                f"{spent / total:.0%} of all statement time; {examined} rows examined for {sent} sent.",
                Recommendation("EXPLAIN it and add the index it needs.", "lower latency for this statement",
                               Risk.MANUAL, 60, Phase.WEEK),
                (Evidence(SRC, "mean_ms", round(mean, 1), f"< {mean_ms:g}"),
                 Evidence(SRC, "calls", calls), Evidence(SRC, "total_share", round(spent / total, 3)),
                 Evidence(SRC, "schema", digest.get("schema_name"))),
            )


# --- MY501: binary logs ---------------------------------------------------------------------------


@rule("MY501", "mysql-binlog-without-expiry", Severity.MEDIUM, needs=("mysql",))
def binlog_without_expiry(facts: Facts, settings: Settings) -> Iterator[Hit]:
    """
    ## What it checks
    Binary logging on with no expiry (binlog_expire_logs_seconds and expire_logs_days both 0), or
    binary logs kept beyond `max_days`.

    ## Why it matters
    Without expiry, binary logs grow until the disk is full (SYS001), and then the server stops
    accepting writes. MariaDB's default keeps them forever; MySQL 8 keeps 30 days, which on a busy
    server can be more than the disk holds.

    ## Recommendation
    Keep as many days as the backups and replicas need (the time between full backups, plus a
    margin): `binlog_expire_logs_seconds` (MySQL 8, MariaDB 10.6+) or `expire_logs_days`.

    ## Estimated effect
    Bounded disk use by binary logs.

    ## Fix safety
    Dynamic; logs older than the new limit go at the next rotation: a replica or point-in-time
    restore that needed them loses them.

    ## References
    - MySQL manual, "binlog_expire_logs_seconds":
      https://dev.mysql.com/doc/refman/8.0/en/replication-options-binary-log.html
    - MariaDB KB, "Binary Log: expire_logs_days":
      https://mariadb.com/kb/en/replication-and-binary-log-system-variables/
    """
    max_days = settings.threshold("MY501", "max_days")
    for instance in instances(facts):
        binlog = instance.get("binlog") or {}
        if not binlog.get("enabled"):
            continue
        days = (binlog.get("expire_seconds") or 0) / DAY
        if days and days <= max_days:
            continue
        kept = "forever (no expiry)" if not days else f"{days:g} days"
        yield Hit(
            _subject(instance),
            f"{_name(instance)} {_subject(instance)} keeps binary logs {kept}: {binlog.get('files')} files, "
            f"{format_bytes(binlog.get('bytes'))} now.",
            Recommendation(f"Keep binary logs for at most {max_days:g} days (or what backups need).",
                           "bounded disk use", Risk.CONFIRM, 10, Phase.WEEK,
                           f"SET GLOBAL binlog_expire_logs_seconds = {int(max_days * DAY)};"),
            (Evidence(SRC, "binlog_expire_days", days, f"0 < days <= {max_days:g}"),
             Evidence(SRC, "binlog_bytes", binlog.get("bytes"))),
            severity=Severity.HIGH if not days else None,
        )


# --- MY601 - MY603: accounts ----------------------------------------------------------------------


def _accounts(instance: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [a for a in instance.get("accounts") or [] if isinstance(a, dict)]


def _account_fix(summary: str, action: str) -> Recommendation:
    return Recommendation(summary, "no login without a password", Risk.MANUAL, 10, Phase.NOW, action)


@rule("MY601", "mysql-account-without-password", Severity.HIGH, needs=("mysql",))
def account_without_password(facts: Facts, settings: Settings) -> Iterator[Hit]:
    """
    ## What it checks
    Named accounts that log in with a password plugin and an empty password (socket-authenticated
    accounts such as unix_socket/auth_socket are not counted).

    ## Why it matters
    Anyone who reaches the port as that user gets in: the app's database, or all of them.

    ## Recommendation
    Give the account a password (`ALTER USER ... IDENTIFIED BY ...`) or drop it; store the password
    in the app's secret, not in the compose file (SEC003).

    ## Estimated effect
    No login without a password.

    ## Fix safety
    Clients that log in without one stop working until they have it.

    ## References
    - MySQL manual, "Securing the Initial MySQL Account":
      https://dev.mysql.com/doc/refman/8.0/en/default-privileges.html
    - MariaDB KB, "mariadb-secure-installation":
      https://mariadb.com/kb/en/mariadb-secure-installation/
    """
    for instance in instances(facts):
        for account in _accounts(instance):
            if not account.get("no_password") or not account.get("user"):
                continue
            who = f"'{account['user']}'@'{account.get('host')}'"
            yield Hit(f"{_subject(instance)} account {who}",
                      f"{_name(instance)} {_subject(instance)}: account {who} has no password.",
                      _account_fix("Set a password or drop the account.",
                                   f"ALTER USER {who} IDENTIFIED BY '<new password>';"),
                      (Evidence(SRC, "plugin", account.get("plugin")),))


@rule("MY602", "mysql-anonymous-account", Severity.HIGH, needs=("mysql",))
def anonymous_account(facts: Facts, settings: Settings) -> Iterator[Hit]:
    """
    ## What it checks
    Accounts with an empty user name (anonymous users), which old installers created.

    ## Why it matters
    Anyone can log in under any name that has no account of its own, and an anonymous
    ''@'localhost' wins over 'app'@'%' for local connections: the app logs in with the wrong
    privileges.

    ## Recommendation
    `DROP USER ''@'host';` for each (mariadb-secure-installation does the same).

    ## Estimated effect
    No anonymous login.

    ## Fix safety
    Safe unless something relies on logging in anonymously.

    ## References
    - MySQL manual, "Securing the Initial MySQL Account":
      https://dev.mysql.com/doc/refman/8.0/en/default-privileges.html
    - MySQL manual, "Access Control, Stage 1: Connection Verification" (host/user matching order):
      https://dev.mysql.com/doc/refman/8.0/en/connection-access.html
    """
    for instance in instances(facts):
        for account in _accounts(instance):
            if account.get("user"):
                continue
            who = f"''@'{account.get('host')}'"
            yield Hit(f"{_subject(instance)} account {who}",
                      f"{_name(instance)} {_subject(instance)} has an anonymous account {who}.",
                      _account_fix("Drop the anonymous account.", f"DROP USER {who};"),
                      (Evidence(SRC, "user", "", "a name"),))


@rule("MY603", "mysql-root-from-any-host", Severity.MEDIUM, needs=("mysql",))
def root_from_any_host(facts: Facts, settings: Settings) -> Iterator[Hit]:
    """
    ## What it checks
    A root account whose host is not local (e.g. 'root'@'%', which the official images create
    when MYSQL_ROOT_HOST / MARIADB_ROOT_HOST is left at its default '%').

    ## Why it matters
    root can read and change everything; from any host, a leaked or guessed root password is enough
    from anywhere that reaches the port (see SEC004 for a published port).

    ## Recommendation
    Use a per-app account with the privileges it needs; restrict root to localhost
    (MARIADB_ROOT_HOST=localhost in the image) and drop 'root'@'%'.

    ## Estimated effect
    root only from the server itself.

    ## Fix safety
    Tools that log in as root over the network stop working; give them their own account first.

    ## References
    - MariaDB Docker image docs, "MARIADB_ROOT_HOST":
      https://hub.docker.com/_/mariadb
    - MySQL manual, "Account Names":
      https://dev.mysql.com/doc/refman/8.0/en/account-names.html
    """
    for instance in instances(facts):
        for account in _accounts(instance):
            if account.get("user") != "root" or account.get("host") in LOCAL_HOSTS:
                continue
            who = f"'root'@'{account.get('host')}'"
            severity = Severity.HIGH if account.get("no_password") else None
            yield Hit(f"{_subject(instance)} account {who}",
                      f"{_name(instance)} {_subject(instance)}: {who} lets root log in from "
                      f"{'any host' if account.get('host') == '%' else account.get('host')}.",
                      _account_fix("Restrict root to localhost; give apps their own accounts.",
                                   f"DROP USER {who};  -- after the apps have their own accounts"),
                      (Evidence(SRC, "host", account.get("host"), "localhost"),), severity)
