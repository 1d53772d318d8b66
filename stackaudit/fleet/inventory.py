"""The user's Ansible inventory, read through `ansible-inventory --list` so every inventory format,
plugin, group_vars file and `--limit` pattern works exactly as in their own Ansible runs.

Only what the controller needs is kept: the host's name, its groups and the non-secret stackaudit_*
variables. `stackaudit_pg_dsn` (often from ansible-vault) is never read here: Ansible hands it to the
target itself.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The host variables the controller may read (never stackaudit_pg_dsn or any other secret).
PUBLIC_VARIABLES = (
    "ansible_host", "stackaudit_project_dirs", "stackaudit_sources", "stackaudit_metrics_port",
    "stackaudit_metrics_mode", "stackaudit_metrics_address",  # fleet prometheus: how each is scraped
)
# Ansible's own groups, which say nothing about a host.
IMPLICIT_GROUPS = frozenset({"all", "ungrouped"})
INVENTORY_TIMEOUT_S = 120
# Ansible only warns about an inventory it cannot parse and goes on with an empty one; we stop.
STRICT_INVENTORY = {"ANSIBLE_NOCOLOR": "1", "ANSIBLE_INVENTORY_UNPARSED_FAILED": "True"}


class FleetError(Exception):
    """A fleet command cannot go on; the message is for the user."""


@dataclass(frozen=True)
class InventoryHost:
    name: str  # inventory_hostname: the snapshot folder's name
    groups: tuple[str, ...]  # every group the host is in, through children too, sorted
    variables: Mapping[str, Any] = field(default_factory=dict)  # PUBLIC_VARIABLES that are set

    @property
    def address(self) -> str:
        return str(self.variables.get("ansible_host") or self.name)


def ansible_program(name: str) -> str:
    """An Ansible command: the one installed beside this Python (the [fleet] extra), else PATH's."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise FleetError(f"{name} is not installed: pip install 'stackaudit[fleet]' brings ansible-core")
    return found


def read_inventory(inventory: Path, limit: str | None = None,
                   options: Sequence[str] = ()) -> list[InventoryHost]:
    """The inventory's hosts (those `limit` selects), sorted by name. `options` go to
    ansible-inventory as they are (--vault-password-file FILE, --ask-vault-pass)."""
    with tempfile.TemporaryDirectory(prefix="stackaudit-inventory-") as work:
        # --output, not stdout: Ansible logs what it displays (log_path), and the listing holds every
        # host variable, vaulted secrets decrypted.
        listed = Path(work) / "inventory.json"
        command = [ansible_program("ansible-inventory"), "-i", str(inventory), "--list",
                   "--output", str(listed), *options]
        if limit:
            command += ["--limit", limit]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=INVENTORY_TIMEOUT_S,
                                  env={**os.environ, **STRICT_INVENTORY}, check=False)
        except (OSError, subprocess.TimeoutExpired) as error:
            raise FleetError(f"could not run ansible-inventory on {inventory}: {error}") from None
        if done.returncode != 0:
            reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise FleetError(f"ansible-inventory could not read {inventory}: {reason}")
        try:
            listing = json.loads(listed.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            raise FleetError(f"ansible-inventory printed no JSON for {inventory}") from None
    hosts = hosts_of(listing)
    if not hosts:
        raise FleetError(f"no hosts in {inventory}" + (f" match --limit {limit}" if limit else ""))
    return hosts


def hosts_of(listing: Mapping[str, Any]) -> list[InventoryHost]:
    """The hosts of `ansible-inventory --list` output, each with its groups (through children)."""
    members: dict[str, set[str]] = {}
    for group, body in listing.items():
        if group == "_meta" or not isinstance(body, Mapping):
            continue
        for host in body.get("hosts") or ():
            members.setdefault(str(host), set()).add(group)
    parents: dict[str, set[str]] = {}
    for group, body in listing.items():
        if isinstance(body, Mapping):
            for child in body.get("children") or ():
                parents.setdefault(str(child), set()).add(group)
    hostvars = (listing.get("_meta") or {}).get("hostvars") or {}
    hosts = []
    for name in sorted(set(members) | set(hostvars)):
        groups = _with_ancestors(members.get(name, set()), parents) - IMPLICIT_GROUPS
        variables = hostvars.get(name) or {}
        public = {key: variables[key] for key in PUBLIC_VARIABLES if key in variables}
        hosts.append(InventoryHost(name=name, groups=tuple(sorted(groups)), variables=public))
    return hosts


def _with_ancestors(groups: set[str], parents: Mapping[str, set[str]]) -> set[str]:
    seen: set[str] = set()
    pending = list(groups)
    while pending:
        group = pending.pop()
        if group not in seen:
            seen.add(group)
            pending.extend(parents.get(group, ()))
    return seen
