"""Fleet directories for the report tests and the benchmark: real snapshots (a files-only collect of
the reference stack, with the reference host's PostgreSQL facts) written in the layout of
`stackaudit fleet collect`, varied per host."""

from __future__ import annotations

import copy
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stackaudit import redact
from stackaudit.config import Settings
from stackaudit.facts import Facts, collect
from stackaudit.facts.fingerprints import fingerprints
from stackaudit.fleet.snapshots import TIME_FORMAT

EXAMPLE = Path(__file__).parents[2] / "stackaudit" / "examples" / "reference-stack"


def reference_snapshot(tmp: Path) -> dict[str, Any]:
    """`stackaudit collect --sources compose,env` of the reference stack, plus PostgreSQL facts
    shaped like the reference host's (tests/report/report_facts.py)."""
    from tests.report.report_facts import RAW  # the agreed facts shapes

    project = tmp / "stack"
    shutil.copytree(EXAMPLE, project)
    (project / ".env.example").rename(project / ".env")
    facts = collect(Settings(project_dirs=(project,), sources=("compose", "env")))
    redact.forget_all()
    payload = facts.to_json()
    payload["data"]["postgres"] = copy.deepcopy(RAW["postgres"])
    payload["data"]["postgres"]["server_version"] = "18.0"
    payload["data"]["host"] = copy.deepcopy(RAW["host"])
    return payload


def stamp(when: datetime) -> str:
    return when.astimezone(UTC).strftime(TIME_FORMAT)


def write_host(directory: Path, name: str, payload: dict[str, Any] | None, groups: list[str] | None = None,
               when: datetime | None = None, error: dict[str, Any] | None = None) -> Path:
    """DIR/<name>/<time>.json (+ groups.json, last-error.json) as fleet collect writes them."""
    folder = directory / name
    folder.mkdir(parents=True, exist_ok=True)
    if groups is not None:
        (folder / "groups.json").write_text(json.dumps({"host": name, "groups": sorted(groups)}))
    if error is not None:
        (folder / "last-error.json").write_text(json.dumps({"host": name, **error}))
    path = folder / f"{stamp(when or datetime.now(UTC))}.json"
    if payload is not None:
        path.write_text(json.dumps(payload), encoding="utf-8")
    return path


def variant(base: dict[str, Any], pg_version: str | None = None, web_tag: str | None = None,
            work_mem: str | None = None, load: float | None = None) -> dict[str, Any]:
    """The base snapshot with another PostgreSQL version, web image tag, chosen work_mem, or load."""
    payload = copy.deepcopy(base)
    data = payload["data"]
    if pg_version is not None:
        data["postgres"]["server_version"] = pg_version
    if work_mem is not None:
        data["postgres"]["settings"]["work_mem"].update(value=work_mem, setting=work_mem,
                                                        source="configuration file")
    if web_tag is not None:
        for project in data["compose"]["projects"]:
            web = project["services"]["web"]
            web["image"] = f"{web['image_repository']}:{web_tag}"
            web["image_tag"] = web_tag
    if load is not None:
        data["host"]["load_average"] = [load, load, load]
    return payload


def with_secrets(payload: dict[str, Any], key: bytes, places: dict[str, str]) -> dict[str, Any]:
    """The snapshot with the fingerprints `collect` makes of these secrets under this key."""
    facts = Facts.from_json(payload)
    facts.secret_fingerprints = fingerprints(key, places)
    return facts.to_json()


def with_mysql(payload: dict[str, Any], version: str = "10.11.6-MariaDB", flavor: str = "mariadb",
               origins: dict[str, str] | None = None, **variables: str) -> dict[str, Any]:
    """The snapshot with one MariaDB/MySQL server of the collector's shape (tests/rules/test_mysql.py),
    its version and variables (with their origins: facts/mysql.py read_origins) changed."""
    from tests.rules.test_mysql import instance  # the agreed facts shape

    server = instance(version=version, flavor=flavor)
    server["variables"].update(variables)
    server["origins"].update(origins or {})
    copied = copy.deepcopy(payload)
    copied["data"]["mysql"] = {"instances": [server]}
    return copied
