"""The memory budget reads the one service classification (issue 18.2): a PostgreSQL from a derived
image is the server being tuned, not a co-tenant; a pgadmin or an exporter is not a database."""

from __future__ import annotations

import textwrap
from pathlib import Path

from stackaudit.config import Settings
from stackaudit.derive.memory import co_tenants
from stackaudit.facts import CollectContext, Facts
from stackaudit.facts import compose as compose_source

GIB = 2**30


def test_derived_postgres_is_the_server_and_its_neighbours_keep_their_kinds(tmp_path: Path) -> None:
    (tmp_path / "compose.yml").write_text(textwrap.dedent("""\
        services:
          db:
            image: pgautoupgrade/pgautoupgrade:16-alpine
          cache:
            build: ./redis
            command: ["redis-server", "--loadmodule", "/opt/rejson.so"]
          pgadmin:
            image: dpage/pgadmin4:8
          exporter:
            image: prometheuscommunity/postgres-exporter:v0.15.0
        """), encoding="utf-8")
    ctx = CollectContext(settings=Settings(project_dirs=(tmp_path,)), facts=Facts(), source="compose")
    facts = Facts(data={"compose": compose_source.collect(ctx)})
    kinds = {t.name: t.kind for t in co_tenants(facts, 16 * GIB)}
    assert kinds == {"cache": "redis", "pgadmin": "other", "exporter": "monitoring"}
