"""facts/mysql.py: discovery (URL, stack, ~/.my.cnf) without a server; the reads against a real MariaDB."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stackaudit.config import Settings
from stackaudit.facts import CollectContext, Facts, collect
from stackaudit.facts.mysql import (
    discover,
    mounted_config,
    my_cnf_targets,
    parse_url,
    read_origins,
    redo_capacity_bytes,
)
from tests.mysql_server import ROOT_PASSWORD, MariaDBServer


def test_parse_url_reads_user_password_port_database_and_socket() -> None:
    target = parse_url("mysql://app:s%40cret@db.internal:3307/shop?unix_socket=/run/m.sock")
    assert (target.user, target.password, target.host, target.port, target.database) == (
        "app", "s@cret", "db.internal", 3307, "shop")
    assert target.unix_socket == "/run/m.sock"
    assert "s@cret" not in target.label


def test_parse_url_refuses_another_scheme() -> None:
    with pytest.raises(ValueError, match="mysql:// or mariadb://"):
        parse_url("postgres://u@h/db")


def test_stack_service_credentials_and_published_port() -> None:
    compose = {"projects": [{"name": "cloud", "services": {
        "db": {"name": "db", "image": "mariadb:10.11", "image_repository": "mariadb",
               "ports": [{"target": 3306, "published": "13306"}]},
        "app": {"name": "app", "image": "nextcloud", "image_repository": "nextcloud"}}}]}
    ctx = CollectContext(Settings(), Facts(data={"compose": compose}))
    ctx.private["compose_env"] = {"cloud": {"db": {"MARIADB_ROOT_PASSWORD": "rootpw123",
                                                   "MARIADB_DATABASE": "nextcloud"}}}
    [target] = discover(ctx, home=Path("/nonexistent"))
    assert (target.host, target.port, target.user, target.password, target.database) == (
        "127.0.0.1", 13306, "root", "rootpw123", "nextcloud")
    assert (target.project, target.service) == ("cloud", "db")


def test_my_cnf_client_section(tmp_path: Path) -> None:
    (tmp_path / ".my.cnf").write_text("[client]\nuser=backup\npassword='pw-from-cnf'\nport=3310\n")
    [target] = my_cnf_targets(tmp_path)
    assert (target.user, target.password, target.port) == ("backup", "pw-from-cnf", 3310)


def test_redo_capacity_by_version() -> None:
    assert redo_capacity_bytes({"innodb_redo_log_capacity": "104857600"}) == 104857600  # MySQL 8.0.30+
    assert redo_capacity_bytes({"innodb_log_file_size": "100663296"}) == 100663296  # MariaDB: one file
    assert redo_capacity_bytes({"innodb_log_file_size": "50331648",
                                "innodb_log_files_in_group": "2"}) == 100663296  # MySQL 5.7 / 8.0 early


def test_a_bad_url_is_a_collection_error_not_a_traceback() -> None:
    facts = collect(Settings(sources=("mysql",), mysql_url="http://x"))
    assert not facts.has("mysql")
    assert "mysql:// or mariadb://" in facts.why_missing("mysql")


@pytest.mark.integration
def test_wrong_password_says_access_denied_without_the_password(mariadb: MariaDBServer) -> None:
    facts = collect(Settings(sources=("mysql",), mysql_url=mariadb.url(password="wrong-pw-123")))
    assert "access denied" in facts.why_missing("mysql")
    assert "wrong-pw-123" not in json.dumps(facts.to_json())


@pytest.mark.integration
def test_reads_a_live_mariadb(mariadb: MariaDBServer) -> None:
    mariadb.execute(
        # other tests' statements must not push ours out of the top digests
        "TRUNCATE TABLE performance_schema.events_statements_summary_by_digest",
        "DROP DATABASE IF EXISTS facts_shop", "CREATE DATABASE facts_shop",
        "CREATE TABLE facts_shop.orders (id INT PRIMARY KEY AUTO_INCREMENT, customer INT, note TEXT, "
        "KEY by_customer (customer), KEY by_customer_note (customer, note(10)), KEY never_used (note(20)))",
        "INSERT INTO facts_shop.orders (customer, note) VALUES (1, 'a'), (2, 'b'), (3, 'c')",
        "SELECT customer, COUNT(*) FROM facts_shop.orders FORCE INDEX (by_customer) WHERE customer > 0 "
        "GROUP BY customer",
        "SELECT * FROM facts_shop.orders FORCE INDEX (by_customer_note) WHERE customer = 1",
        "DROP USER IF EXISTS 'nopass'@'%'", "CREATE USER 'nopass'@'%'",
        # a temp table with a TEXT column goes to disk on MariaDB 10.11 (Aria): a spill
        "SELECT note, COUNT(*) FROM facts_shop.orders GROUP BY note ORDER BY RAND()",
    )
    facts = collect(Settings(sources=("mysql",), mysql_url=mariadb.url()))
    assert facts.has("mysql"), facts.why_missing("mysql")
    [inst] = facts["mysql"]["instances"]
    assert inst["flavor"] == "mariadb" and inst["version_tuple"][:2] == [10, 11]
    assert inst["variables"]["performance_schema"] == "ON"
    assert inst["origins"]["performance_schema"] == "command-line"  # --performance-schema=ON
    assert inst["performance_schema"] is True
    assert inst["uptime_seconds"] >= 0 and inst["window_seconds"] > 0
    assert "Questions" in inst["rates"]
    unused = {(i["table_name"], i["index_name"]) for i in inst["unused_indexes"]
              if i["schema_name"] == "facts_shop"}
    assert ("orders", "never_used") in unused and ("orders", "by_customer") not in unused
    redundant = {i["index_name"]: i["covered_by"] for i in inst["redundant_indexes"]
                 if i["schema_name"] == "facts_shop"}
    assert redundant.get("by_customer") == "by_customer_note"
    accounts = {(a["user"], a["host"]): a for a in inst["accounts"]}
    assert accounts[("nopass", "%")]["no_password"] is True
    assert accounts[("root", "127.0.0.1")]["no_password"] is False
    # MariaDB 10.4+ ships it locked with an empty password: it cannot log in, MY601 must not list it
    assert accounts[("mariadb.sys", "localhost")]["locked"] is True
    assert accounts[("mariadb.sys", "localhost")]["no_password"] is False
    assert any(d["query"] and "facts_shop" in d["query"] for d in inst["digests"])
    assert inst["derived"]["tmp_disk_tables"] >= 1
    assert inst["binlog"]["enabled"] is True and inst["binlog"]["files"] >= 1
    assert any(s["name"] == "facts_shop" and s["tables"] == 1 for s in inst["schemas"])
    assert inst["derived"]["redo_capacity_bytes"] and inst["derived"]["buffer_pool_pages_total"] > 0
    assert ROOT_PASSWORD not in json.dumps(facts.to_json())


def test_mounted_config_says_which_file_and_line_sets_a_variable(tmp_path: Path) -> None:
    (tmp_path / "my.cnf").write_text("[mysqld]\ninnodb_buffer_pool_size = 1G\nmax-connections=100\n")
    confd = tmp_path / "conf.d"
    confd.mkdir()
    (confd / "50-tuned.cnf").write_text("# ours\n[mariadb-10.11]\nmax_connections = 300\n[client]\nport=1\n")
    service = {"volumes": [
        {"type": "bind", "source": str(confd), "target": "/etc/mysql/conf.d"},
        {"type": "bind", "source": str(tmp_path / "my.cnf"), "target": "/etc/mysql/my.cnf"},
        {"type": "volume", "source": "data", "target": "/var/lib/mysql"}]}
    assert mounted_config(service) == {"innodb_buffer_pool_size": f"{tmp_path / 'my.cnf'}:2",
                                       "max_connections": f"{confd / '50-tuned.cnf'}:3"}


def test_a_target_never_shows_its_password() -> None:
    target = parse_url("mysql://app:pw-never-shown@db:3306/x")
    assert "pw-never-shown" not in repr(target) and "pw-never-shown" not in target.label


def test_the_target_comes_from_the_config_file_or_the_environment(tmp_path: Path) -> None:
    from stackaudit.config import load_settings

    config = tmp_path / "stackaudit.toml"
    config.write_text('[targets]\nmysql = "mysql://audit@db:3306/"\n')
    assert load_settings(config, environ={}).mysql_url == "mysql://audit@db:3306/"
    from_env = load_settings(config, environ={"STACKAUDIT_MYSQL_URL": "mysql://env@db/"})
    assert from_env.mysql_url == "mysql://env@db/"


class CannedReader:
    """Stands in for a server that is not packaged here (MySQL 8): the rows its catalog returns."""

    def __init__(self, rows: list[dict[str, object]]) -> None:
        self.rows_returned, self.queries = rows, []  # type: ignore[var-annotated]

    def rows(self, name: str, sql: str, args: tuple[object, ...] = ()) -> list[dict[str, object]]:
        self.queries.append(sql)
        return self.rows_returned


def test_mysql8_origins_come_from_variables_info_with_the_file() -> None:
    reader = CannedReader([{"name": "INNODB_BUFFER_POOL_SIZE", "origin": "EXPLICIT", "path": "/etc/my.cnf"},
                           {"name": "max_connections", "origin": "PERSISTED", "path": ""}])
    origins = read_origins(reader, "mysql")  # type: ignore[arg-type]
    assert origins == {"innodb_buffer_pool_size": "explicit /etc/my.cnf", "max_connections": "persisted"}
    assert "performance_schema.variables_info" in reader.queries[0]
    read_origins(reader, "mariadb")  # type: ignore[arg-type]
    assert "information_schema.SYSTEM_VARIABLES" in reader.queries[1]
