"""The inventory as Ansible reads it: groups through children, --limit, no secret kept."""

from __future__ import annotations

from pathlib import Path

import pytest

from stackaudit.fleet.inventory import FleetError, read_inventory

INVENTORY = """\
[web]
web1 ansible_host=127.0.0.2 stackaudit_metrics_port=9999 stackaudit_pg_dsn=postgres://u:CANARY-7f3@x/db
web2
[db]
db1 stackaudit_sources=host,postgres
[prod:children]
web
db
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "hosts.ini"
    path.write_text(text)
    return path


def test_hosts_with_their_groups_through_children_and_public_variables_only(tmp_path: Path) -> None:
    hosts = {h.name: h for h in read_inventory(write(tmp_path, INVENTORY))}
    assert sorted(hosts) == ["db1", "web1", "web2"]
    assert hosts["web1"].groups == ("prod", "web")
    assert hosts["db1"].groups == ("db", "prod")
    assert hosts["web1"].address == "127.0.0.2" and hosts["web2"].address == "web2"
    assert hosts["web1"].variables["stackaudit_metrics_port"] == 9999
    assert "CANARY-7f3" not in repr(hosts)


def test_limit_selects_as_ansible_does(tmp_path: Path) -> None:
    assert [h.name for h in read_inventory(write(tmp_path, INVENTORY), limit="web:!web2")] == ["web1"]


def test_an_inventory_ansible_cannot_read_is_a_plain_error(tmp_path: Path) -> None:
    with pytest.raises(FleetError, match="ansible-inventory"):
        read_inventory(tmp_path / "missing.yml")
