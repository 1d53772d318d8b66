"""`stackaudit fleet collect`: every inventory host's redacted snapshot, through Ansible.

The folder it fills (the contract the fleet report reads):

    DIR/                     0700
      .fleet-key             0600, 32 random bytes in hex: the key of the secret fingerprints
      <inventory_hostname>/  0700
        <UTC time>.json      0600, what `stackaudit collect --out` wrote, e.g. 20261203T142400Z.json
        last-error.json      the last failure: host, failed_at, stage, reason (kept after a success;
                             the report compares its time with the newest snapshot's). The stage
                             "metrics" comes after a good snapshot: the report audits it
        groups.json          the host's inventory groups, written by every collect of the host
        .incoming/           where Ansible fetches a snapshot before it is moved into place
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stackaudit.fleet import runner
from stackaudit.fleet.inventory import FleetError, InventoryHost, read_inventory
from stackaudit.fleet.snapshots import GROUPS, LAST_ERROR, TIME_FORMAT
from stackaudit.fleet.wheelhouse import wheelhouse
from stackaudit.fsutil import atomic_write, fsync_dir
from stackaudit.redact import scrub

KEY_FILE = ".fleet-key"
INCOMING = ".incoming"
ERROR_FILE = LAST_ERROR
GROUPS_FILE = GROUPS
SNAPSHOT_TIME = TIME_FORMAT  # the report reads the names this writes
# "metrics": the role stackaudit_metrics failed after the snapshot was fetched (the snapshot is kept)
STAGES = ("unreachable", "install", "collect", "fetch", "metrics")
METRICS_MODE = "stackaudit_metrics_mode"  # set on a host: the playbook applies stackaudit_metrics


@dataclass(frozen=True)
class HostResult:
    host: str
    status: str  # "collected" | "failed"
    snapshot: Path | None = None  # also of a host that failed at "metrics"
    stage: str | None = None  # of a failure: one of STAGES
    reason: str | None = None


@dataclass(frozen=True)
class CollectOptions:
    inventory: Path
    out: Path
    limit: str | None = None
    forks: int | None = None
    ansible_options: Sequence[str] = ()  # passed to ansible-playbook as they are (vault)
    cache: Path | None = None  # of the wheelhouse; None: the user's cache folder


def exit_code(results: Sequence[HostResult]) -> int:
    """0 every host collected, 1 some failed, 2 none collected."""
    collected = sum(r.status == "collected" for r in results)
    if collected == len(results):
        return 0
    return 1 if collected else 2


def collect(options: CollectOptions, on_result: Callable[[HostResult], None] = lambda _: None
            ) -> list[HostResult]:
    """Collect every host the inventory (and --limit) names; each result goes to `on_result` as it
    comes. A host that fails never stops the others; a run Ansible cannot start is a FleetError."""
    hosts = read_inventory(options.inventory, options.limit, options.ansible_options)
    out = prepare(options.out, hosts)
    house = wheelhouse(options.cache)
    run = runner.PlaybookRun(
        inventory=options.inventory, playbook="collect.yml", limit=options.limit, forks=options.forks,
        options=options.ansible_options,
        extra_vars={"stackaudit_out": str(out), "stackaudit_build": house.build,
                    "stackaudit_wheelhouse": str(house.tar), "stackaudit_fleet_key_file": str(out / KEY_FILE),
                    "stackaudit_controller_python": "{}.{}".format(*sys.version_info[:2])})
    tally = Tally(out, {h.name for h in hosts}, {h.name for h in hosts if METRICS_MODE in h.variables},
                  on_result)
    for event in runner.events(run):
        tally.take(event)
    tally.finish()
    return [tally.results[h.name] for h in hosts]


@dataclass
class Tally:
    """Every host's result as the events come. A host that also runs the role stackaudit_metrics is
    done when that role is: its snapshot is put in place at the fetch and kept when the role fails
    (the host then failed at the stage "metrics", with a good snapshot)."""

    out: Path
    known: set[str]
    with_metrics: set[str]
    on_result: Callable[[HostResult], None]
    results: dict[str, HostResult] = field(default_factory=dict)
    waiting: dict[str, HostResult] = field(default_factory=dict)  # fetched; the metrics role runs

    def take(self, event: dict[str, Any]) -> None:
        host = str(event.get("host") or "")
        if host not in self.known or (host in self.results and not self._late_metrics_failure(event)):
            return  # a second failure of a host (its cleanup) says nothing new
        if event.get("event") == "metrics-done":
            if host in self.waiting:
                self._done(self.waiting.pop(host))
            return
        result = result_of(event, self.out)
        if result is None:
            return
        fetched = self.waiting.pop(host, None) or self.results.get(host)
        if result.status == "failed" and fetched is not None:
            result = replace(result, snapshot=fetched.snapshot)
        if result.status == "collected" and host in self.with_metrics:
            self.waiting[host] = result
        else:
            self._done(result)

    def _late_metrics_failure(self, event: dict[str, Any]) -> bool:
        """The metrics role failed on a host whose variable the inventory listing did not show (set
        where only the play sees it): its result turns from collected to failed."""
        host = str(event.get("host"))
        return (event.get("event") == "failed" and event.get("stage") == "metrics"
                and self.results[host].status == "collected")

    def _done(self, result: HostResult) -> None:
        if result.status == "failed":
            write_error(self.out, result)
        self.results[result.host] = result
        self.on_result(result)

    def finish(self) -> None:
        for result in list(self.waiting.values()):  # the role did not run after all: the collect stands
            self._done(result)
        self.waiting.clear()
        for host in sorted(self.known - set(self.results)):
            self._done(HostResult(host, "failed", stage="collect",
                                  reason="Ansible gave no result for the host"))


def prepare(out: Path, hosts: Iterable[InventoryHost]) -> Path:
    """DIR and a folder per host (0700), the fleet key, and every host's groups.json."""
    out = out.resolve()
    private_dir(out)
    fleet_key(out)
    for host in hosts:
        private_dir(out / host.name)
        private_dir(out / host.name / INCOMING)
        write_json(out / host.name / GROUPS_FILE, {"host": host.name, "groups": sorted(host.groups)})
    return out


def private_dir(path: Path) -> None:
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.chmod(0o700)
    except OSError as error:
        raise FleetError(f"cannot create {path}: {error.strerror or error}") from None


def fleet_key(out: Path) -> Path:
    """DIR/.fleet-key, made on the first collect (O_EXCL: two first collects keep one key)."""
    path = out / KEY_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_hex(32) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    fsync_dir(out)
    return path


def result_of(event: dict[str, Any], out: Path) -> HostResult | None:
    """A callback event as a host's result; a fetched snapshot is moved into place first."""
    host = str(event.get("host") or "")
    if event.get("event") == "failed" and host:
        stage = str(event.get("stage"))
        return HostResult(host, "failed", stage=stage if stage in STAGES else "collect",
                          reason=scrub(str(event.get("reason") or "no reason given")))
    if event.get("event") == "collected" and host:
        try:
            return HostResult(host, "collected", snapshot=place_snapshot(out, host))
        except (OSError, ValueError) as error:
            return HostResult(host, "failed", stage="fetch", reason=scrub(f"the fetched snapshot: {error}"))
    return None


def place_snapshot(out: Path, host: str) -> Path:
    """Move the fetched snapshot to DIR/<host>/<collected_at as UTC>.json, 0600."""
    incoming = out / host / INCOMING / "snapshot.json"
    payload = json.loads(incoming.read_text(encoding="utf-8"))
    if not isinstance(payload, dict) or "schema_version" not in payload:
        raise ValueError("it is not a stackaudit facts file")
    target = out / host / snapshot_name(str(payload.get("collected_at") or ""))
    incoming.chmod(0o600)
    os.replace(incoming, target)
    fsync_dir(target.parent)
    return target


def snapshot_name(collected_at: str, now: datetime | None = None) -> str:
    """`2026-12-03T14:24:00+00:00` -> `20261203T142400Z.json` (sortable, no colons); the
    controller's time for a snapshot that does not say when it was taken."""
    try:
        when = datetime.fromisoformat(collected_at)
        when = when.replace(tzinfo=UTC) if when.tzinfo is None else when
    except ValueError:
        when = now or datetime.now(UTC)
    return when.astimezone(UTC).strftime(SNAPSHOT_TIME) + ".json"


def write_error(out: Path, result: HostResult, now: datetime | None = None) -> None:
    failed_at = (now or datetime.now(UTC)).isoformat(timespec="seconds")
    write_json(out / result.host / ERROR_FILE, {"host": result.host, "failed_at": failed_at,
                                                 "stage": result.stage, "reason": scrub(result.reason or "")})


def write_json(path: Path, data: dict[str, Any]) -> None:
    atomic_write(path, (json.dumps(data, indent=2) + "\n").encode("utf-8"), mode=0o600)
