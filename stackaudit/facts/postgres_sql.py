"""One named SQL query per concern, for PostgreSQL 13 to 18.

Every query carries the `/* stackaudit */` tag right after its first keyword, so our own statements
can be told apart in pg_stat_statements and pg_stat_activity. Not before it: PostgreSQL 18 stores a
statement's text from its first token, so a leading comment never reaches pg_stat_statements.
Each constant says what it finds and which docs back it; the verdicts (thresholds) live in the
rules, not here. Queries that differ by version are functions of the major version (or of the
columns a view really has: an extension's columns follow the *extension* version, which can lag
the server's after an upgrade).

Patterns in the spirit of pghero's lib/pghero/methods/{maintenance,indexes,queries}.rb (read, not
copied).
"""

from __future__ import annotations

TAG = "/* stackaudit */"

# Server identity, privileges and uptime. pg_monitor (PG10+) is enough to read every statistic
# we use: https://www.postgresql.org/docs/current/predefined-roles.html
SERVER = f"""SELECT {TAG}
       current_setting('server_version') AS server_version,
       current_setting('server_version_num')::int AS server_version_num,
       current_database() AS current_database,
       current_user AS current_user,
       (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS is_superuser,
       pg_has_role(current_user, 'pg_monitor', 'USAGE') AS has_pg_monitor,
       pg_is_in_recovery() AS in_recovery,
       pg_postmaster_start_time() AS postmaster_start_time,
       extract(epoch FROM now() - pg_postmaster_start_time())::float8 AS uptime_seconds,
       now() AS collected_at
"""

# The cluster's identity (one per initdb; a restored copy or a replica at the same path has another).
# https://www.postgresql.org/docs/current/functions-info.html#FUNCTIONS-PG-CONTROL-SYSTEM
SYSTEM_IDENTIFIER = f"""SELECT {TAG}
       system_identifier::text AS system_identifier FROM pg_control_system()
"""

# Every row of pg_settings; `value` is what SHOW prints (current_setting formats units, e.g. 128MB).
# https://www.postgresql.org/docs/current/view-pg-settings.html
SETTINGS = f"""SELECT {TAG}
       name, current_setting(name, true) AS value, setting, unit, source, sourcefile, sourceline,
       pending_restart, context, vartype
FROM pg_settings
ORDER BY name
"""

# What the configuration files say (including values waiting for a restart). Superuser-only by
# default: https://www.postgresql.org/docs/current/view-pg-file-settings.html
FILE_SETTINGS = f"""SELECT {TAG}
       name, setting, sourcefile, sourceline, applied, error
FROM pg_file_settings
ORDER BY seqno
"""

# Per database: size, transaction ID age (wraparound: autovacuum_freeze_max_age, 2^31 hard stop),
# cache hits, temp files since the stats reset.
# https://www.postgresql.org/docs/current/routine-vacuuming.html#VACUUM-FOR-WRAPAROUND
# https://www.postgresql.org/docs/current/monitoring-stats.html#MONITORING-PG-STAT-DATABASE-VIEW
DATABASES = f"""SELECT {TAG}
       d.datname AS name, d.oid::bigint AS oid,
       d.datallowconn AS allow_connections,
       d.datistemplate AS is_template,
       CASE WHEN has_database_privilege(d.oid, 'CONNECT') OR pg_has_role('pg_read_all_stats', 'USAGE')
            THEN pg_database_size(d.oid) END AS size_bytes,
       has_database_privilege(d.oid, 'CONNECT') AS can_connect,
       age(d.datfrozenxid) AS xid_age,
       mxid_age(d.datminmxid) AS mxid_age,
       s.numbackends, s.xact_commit, s.xact_rollback, s.blks_read, s.blks_hit,
       s.temp_files, s.temp_bytes, s.deadlocks, s.stats_reset
FROM pg_database d
LEFT JOIN pg_stat_database s ON s.datid = d.oid
ORDER BY d.datname
"""

# The data directory path (needs pg_read_all_settings, part of pg_monitor) and the WAL size
# (pg_ls_waldir: superuser or pg_monitor since PG10).
# https://www.postgresql.org/docs/current/functions-admin.html#FUNCTIONS-ADMIN-GENFILE
WAL_DIRECTORY_BYTES = f"""SELECT {TAG}
       coalesce(sum(size), 0)::bigint AS wal_bytes, count(*) AS wal_files FROM pg_ls_waldir()
"""

# The database directory's PG_VERSION file is written when the database is created: a lower bound
# for how long its statistics can have run when stats_reset is NULL. Superuser (or an explicit
# grant on pg_stat_file) only.
DATABASE_CREATED = f"""SELECT {TAG}
       (pg_stat_file('base/' || oid || '/PG_VERSION')).modification AS created
FROM pg_database WHERE datname = current_database()
"""

# Client sessions (not background workers). Without pg_monitor, other roles' rows show no state,
# query or client: https://www.postgresql.org/docs/current/monitoring-stats.html#MONITORING-PG-STAT-ACTIVITY-VIEW
# Our own sessions (application_name = stackaudit, set at connect time) are flagged `own` so the
# collector leaves them out of connection counts and idle-in-transaction.
OWN_APPLICATION = "stackaudit"
ACTIVITY = f"""SELECT {TAG}
       pid, application_name = '{OWN_APPLICATION}' AS own,
       datname AS database, usename AS user, application_name AS application,
       host(client_addr) AS client, state,
       extract(epoch FROM now() - state_change)::float8 AS state_age_seconds,
       extract(epoch FROM now() - xact_start)::float8 AS xact_age_seconds,
       backend_xid IS NOT NULL AS holds_xid,
       left(query, 300) AS query
FROM pg_stat_activity
WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
"""


def checkpoints(major: int) -> str:
    """Timed vs requested checkpoints: many requested ones mean max_wal_size is too small.

    PG17 moved these counters from pg_stat_bgwriter to pg_stat_checkpointer (renamed columns):
    https://www.postgresql.org/docs/17/release-17.html (E.1.2, "pg_stat_checkpointer")
    https://www.postgresql.org/docs/current/wal-configuration.html
    """
    if major >= 17:
        return f"""SELECT {TAG}
       'pg_stat_checkpointer' AS view, num_timed AS checkpoints_timed,
       num_requested AS checkpoints_requested, write_time AS write_time_ms,
       sync_time AS sync_time_ms, buffers_written, stats_reset
FROM pg_stat_checkpointer
"""
    return f"""SELECT {TAG}
       'pg_stat_bgwriter' AS view, checkpoints_timed, checkpoints_req AS checkpoints_requested,
       checkpoint_write_time AS write_time_ms, checkpoint_sync_time AS sync_time_ms,
       buffers_checkpoint AS buffers_written, stats_reset
FROM pg_stat_bgwriter
"""


# WAL generated since its stats reset (pg_stat_wal exists since PG14): with the checkpoint
# statistics it sizes max_wal_size. https://www.postgresql.org/docs/current/monitoring-stats.html#MONITORING-PG-STAT-WAL-VIEW
WAL_STATS = f"""SELECT {TAG}
       wal_bytes, stats_reset FROM pg_stat_wal
"""

# Installed extensions in the current database (pg_stat_statements lives in one schema of one or
# more databases).
EXTENSIONS = f"""SELECT {TAG}
       e.extname AS name, e.extversion AS version, n.nspname AS schema
FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
ORDER BY e.extname
"""

# Whether the server ships pg_stat_statements at all (contrib package installed).
EXTENSION_AVAILABLE = f"""SELECT {TAG}
       EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_stat_statements') AS available
"""


# Relations another session holds, or waits for, in ACCESS EXCLUSIVE mode: the only mode that
# conflicts with the ACCESS SHARE lock pg_relation_size() takes, and a waiting request is queued
# ahead of ours too (https://www.postgresql.org/docs/current/explicit-locking.html, table 13.2).
# Reading pg_locks takes no relation lock.
_LOCKED = """locked AS (
  SELECT l.relation AS oid, min(l.pid) AS pid, bool_or(l.granted) AS granted
  FROM pg_locks l
  WHERE l.locktype = 'relation' AND l.mode = 'AccessExclusiveLock'
    AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  GROUP BY l.relation
)"""


def tables(limit: int) -> str:
    """Per table: live/dead tuples, last (auto)vacuum/analyze, seq vs index scans, size.

    Dead tuples and the vacuum timestamps show autovacuum keeping up (or not); seq_scan with
    seq_tup_read on a large table is pghero's "missing index" signal.
    https://www.postgresql.org/docs/current/monitoring-stats.html#MONITORING-PG-STAT-ALL-TABLES-VIEW
    https://www.postgresql.org/docs/current/routine-vacuuming.html

    Set-based and lock-aware: the largest tables are chosen by pg_class.relpages (table, TOAST and
    indexes; kept by VACUUM/ANALYZE, read without a lock), and only those `limit` get their exact
    size. A table whose heap, TOAST or indexes are under an ACCESS EXCLUSIVE lock is not sized (the
    size would wait for the lock); `locked_by_pid` names the session and the sizes stay NULL.
    `tables_total` counts every user table.

    The ranking reads only names and pages of every table (the view's statistics columns go unused,
    so the planner leaves them out); the statistics are read for the `limit` chosen ones, whose oids
    the `= ANY (ARRAY(...))` pushes into the view's grouped scan (an index scan of 500 rows instead
    of the statistics of every table: a third of this query at 8,000 tables).
    """
    return f"""WITH {TAG}
{_LOCKED},
index_pages AS (
  SELECT i.indrelid AS oid, sum(ic.relpages)::bigint AS pages,
         min(lk.pid) AS locked_pid
  FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
  LEFT JOIN locked lk ON lk.oid = i.indexrelid
  GROUP BY i.indrelid
), candidates AS (
  SELECT s.relid, c.reloptions, count(*) OVER () AS tables_total,
         coalesce(lk.pid, tk.pid, ip.locked_pid, tip.locked_pid) AS locked_by_pid
  FROM pg_stat_user_tables s
  JOIN pg_class c ON c.oid = s.relid
  LEFT JOIN pg_class t ON t.oid = c.reltoastrelid
  LEFT JOIN index_pages ip ON ip.oid = c.oid
  LEFT JOIN index_pages tip ON tip.oid = c.reltoastrelid
  LEFT JOIN locked lk ON lk.oid = c.oid
  LEFT JOIN locked tk ON tk.oid = c.reltoastrelid
  ORDER BY c.relpages::bigint + coalesce(t.relpages, 0) + coalesce(ip.pages, 0) DESC,
           s.schemaname, s.relname
  LIMIT {int(limit)}
), chosen AS (
  SELECT s.*, k.reloptions, k.tables_total, k.locked_by_pid
  FROM pg_stat_user_tables s JOIN candidates k ON k.relid = s.relid
  WHERE s.relid = ANY (ARRAY(SELECT relid FROM candidates))
)
SELECT s.schemaname AS schema, s.relname AS table, s.n_live_tup AS live_tuples,
       s.n_dead_tup AS dead_tuples, s.n_mod_since_analyze AS modified_since_analyze,
       s.last_vacuum, s.last_autovacuum, s.last_analyze, s.last_autoanalyze,
       s.vacuum_count, s.autovacuum_count, s.analyze_count, s.autoanalyze_count,
       s.seq_scan, s.seq_tup_read, s.idx_scan, s.idx_tup_fetch,
       CASE WHEN s.locked_by_pid IS NULL THEN pg_relation_size(s.relid) END AS table_bytes,
       CASE WHEN s.locked_by_pid IS NULL THEN pg_total_relation_size(s.relid) END AS total_bytes,
       s.reloptions AS options, s.locked_by_pid, s.tables_total
FROM chosen s
ORDER BY total_bytes DESC NULLS LAST, s.schemaname, s.relname
"""


def indexes(major: int, limit: int) -> str:
    """Per index: scans, size, and everything needed to tell constraint/duplicate/invalid indexes.

    An index that backs a primary key, unique or exclusion constraint (pg_constraint.conindid) or is
    unique is never "unused": it enforces correctness. indisvalid = false is a failed
    CREATE INDEX CONCURRENTLY: maintained on writes, never used for reads.
    last_idx_scan exists since PG16.
    https://www.postgresql.org/docs/current/catalog-pg-index.html
    https://www.postgresql.org/docs/current/sql-createindex.html#SQL-CREATEINDEX-CONCURRENTLY

    Set-based: the constraint of each index comes from one pass over pg_constraint (conindid has no
    catalog index, so a subquery per index would scan it once per index; a foreign key's conindid
    names the referenced table's index, hence the conrelid match); the `limit` largest
    indexes by relpages are sized exactly, except those whose index or table is under an ACCESS
    EXCLUSIVE lock (`locked_by_pid`; size, expressions and predicate NULL: pg_get_expr opens the
    table to name its columns).

    `definition` is always NULL here: INDEX_DEFINITIONS reads it after, for the indexes a finding
    may show only (pg_get_indexdef per never-scanned index was a third of this query's time in a new
    session at 2,000 indexes, half of them never scanned).
    """
    last_scan = "s.last_idx_scan" if major >= 16 else "NULL::timestamptz"
    return f"""WITH {TAG}
{_LOCKED},
constraints AS (
  SELECT DISTINCT ON (conindid, conrelid) conindid, conrelid, contype::text AS contype
  FROM pg_constraint WHERE conindid <> 0
  ORDER BY conindid, conrelid, contype
), candidates AS (
  SELECT s.*, ic.relam, coalesce(lk.pid, tk.pid) AS locked_by_pid
  FROM pg_stat_user_indexes s
  JOIN pg_class ic ON ic.oid = s.indexrelid
  LEFT JOIN locked lk ON lk.oid = s.indexrelid
  LEFT JOIN locked tk ON tk.oid = s.relid
  ORDER BY ic.relpages DESC, s.schemaname, s.indexrelname
  LIMIT {int(limit)}
)
SELECT s.schemaname AS schema, s.relname AS table, s.indexrelname AS index, s.idx_scan,
       {last_scan} AS last_idx_scan,
       CASE WHEN s.locked_by_pid IS NULL THEN pg_relation_size(s.indexrelid) END AS size_bytes,
       i.indisprimary AS is_primary, i.indisunique AS is_unique, i.indisvalid AS is_valid,
       i.indisexclusion AS is_exclusion,
       k.contype AS constraint_type,
       am.amname AS method,
       i.indnkeyatts AS key_columns,
       i.indkey::int2[]::int[] AS column_numbers,
       i.indclass::oid[]::bigint[] AS opclasses,
       i.indcollation::oid[]::bigint[] AS collations,
       i.indoption::int2[]::int[] AS options,
       CASE WHEN s.locked_by_pid IS NULL THEN pg_get_expr(i.indexprs, i.indrelid) END AS expressions,
       CASE WHEN s.locked_by_pid IS NULL THEN pg_get_expr(i.indpred, i.indrelid) END AS predicate,
       NULL::text AS definition,
       s.indexrelid::bigint AS oid, s.locked_by_pid
FROM candidates s
JOIN pg_index i ON i.indexrelid = s.indexrelid
JOIN pg_am am ON am.oid = s.relam
LEFT JOIN constraints k ON k.conindid = s.indexrelid AND k.conrelid = s.relid  -- not a foreign key's
ORDER BY size_bytes DESC NULLS LAST, s.schemaname, s.indexrelname
"""


# The definitions of the given indexes (those of indexes()'s rows that a finding may show).
INDEX_DEFINITIONS = """SELECT /* stackaudit */ indexrelid::bigint AS oid,
       pg_get_indexdef(indexrelid) AS definition
FROM pg_index WHERE indexrelid = ANY(%s::oid[])
"""


# Columns the installed pg_stat_statements view really has (total_time became total_exec_time in
# extension 1.8 / PG13, ERRATA row 10).
STATEMENTS_COLUMNS = """SELECT /* stackaudit */ attname FROM pg_attribute
WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped
"""


def statements(schema: str, columns: set[str], limit: int) -> str:
    """Top statements by total and by mean execution time, with plan time, rows and temp blocks.

    Query text is already normalised by the extension (constants become $1); we cut it at 300
    characters. Plan time is only tracked with pg_stat_statements.track_planning = on.
    https://www.postgresql.org/docs/current/pgstatstatements.html
    """
    exec_total = "total_exec_time" if "total_exec_time" in columns else "total_time"
    exec_mean = "mean_exec_time" if "mean_exec_time" in columns else "mean_time"
    plan_total = "total_plan_time" if "total_plan_time" in columns else "NULL::float8"
    plan_mean = "mean_plan_time" if "mean_plan_time" in columns else "NULL::float8"
    toplevel = "AND s.toplevel" if "toplevel" in columns else ""
    view = f'"{schema}".pg_stat_statements'
    return f"""WITH {TAG}
s AS (
  SELECT s.* FROM {view} s WHERE s.query NOT LIKE '%{TAG}%' {toplevel}
), ranked AS (
  SELECT s.*, rank() OVER (ORDER BY {exec_total} DESC) AS by_total,
         rank() OVER (ORDER BY {exec_mean} DESC) AS by_mean,
         rank() OVER (ORDER BY temp_blks_written DESC) AS by_temp
  FROM s
)
SELECT r.queryid::text AS queryid, d.datname AS database, u.rolname AS user,
       left(r.query, 300) AS query, r.calls, r.rows,
       r.{exec_total}::float8 AS total_exec_ms, r.{exec_mean}::float8 AS mean_exec_ms,
       {plan_total}::float8 AS total_plan_ms, {plan_mean}::float8 AS mean_plan_ms,
       r.temp_blks_written, r.shared_blks_hit, r.shared_blks_read
FROM ranked r
LEFT JOIN pg_database d ON d.oid = r.dbid
LEFT JOIN pg_roles u ON u.oid = r.userid
WHERE r.by_total <= {int(limit)} OR r.by_mean <= {int(limit)}
   OR (r.by_temp <= {int(limit)} AND r.temp_blks_written > 0)
ORDER BY r.{exec_total} DESC
"""


def statements_totals(schema: str, columns: set[str]) -> str:
    """Sums over every statement: the denominator of "share of total time"."""
    exec_total = "total_exec_time" if "total_exec_time" in columns else "total_time"
    return f"""SELECT {TAG}
       count(*) AS statements, coalesce(sum(calls), 0)::float8 AS calls,
       coalesce(sum({exec_total}), 0)::float8 AS total_exec_ms,
       coalesce(sum(temp_blks_written), 0)::float8 AS temp_blks_written
FROM "{schema}".pg_stat_statements
"""


# When pg_stat_statements was last reset and how many entries it evicted (pg_stat_statements_info,
# extension 1.9 / PG14+).
def statements_info(schema: str) -> str:
    return f"""SELECT {TAG}
       dealloc, stats_reset FROM "{schema}".pg_stat_statements_info
"""
