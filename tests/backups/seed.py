"""A seeded database for the backup tests: several schemas, odd names, a 200k-row table."""

from __future__ import annotations

from pathlib import Path

import psycopg

BIG_ROWS = 200_000

SEED_SQL = f"""
CREATE SCHEMA sales;
CREATE SCHEMA "Audit Log";
CREATE TABLE sales.customers (id serial PRIMARY KEY, name text NOT NULL);
INSERT INTO sales.customers (name) SELECT 'customer ' || g FROM generate_series(1, 500) g;
CREATE TABLE sales.orders (id bigserial PRIMARY KEY, customer_id int REFERENCES sales.customers,
                           total numeric(10, 2), note text);
INSERT INTO sales.orders (customer_id, total, note)
  SELECT 1 + g % 500, (g % 1000) / 7.0, md5(g::text) FROM generate_series(1, {BIG_ROWS}) g;
CREATE INDEX ON sales.orders (customer_id);
CREATE TABLE "Audit Log"."Events" (at timestamptz DEFAULT now(), what text);
INSERT INTO "Audit Log"."Events" (what) SELECT 'event ' || g FROM generate_series(1, 1234) g;
CREATE TABLE public.empty_table (x int);
CREATE VIEW sales.big_orders AS SELECT * FROM sales.orders WHERE total > 100;
ANALYZE;
"""

EXPECTED_COUNTS = {
    "sales.customers": 500,
    "sales.orders": BIG_ROWS,
    "Audit Log.Events": 1234,
    "public.empty_table": 0,
}


def seed(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(SEED_SQL)


def database_of(dsn: str) -> str:
    return dsn.rsplit("/", 1)[1]


def server_dsn(dsn: str) -> str:
    """The same server, maintenance database."""
    return dsn.rsplit("/", 1)[0] + "/postgres"


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
