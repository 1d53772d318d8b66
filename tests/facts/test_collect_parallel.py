"""Sources run side by side, each after the sources it reads; the result is in ALL_SOURCES order.

The scheduler is tested with stand-in collectors (events instead of sleeps: nothing depends on
speed); then two real audits of the same stack give the same JSON apart from the timestamps.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import stackaudit.facts as facts_pkg
from stackaudit.config import ALL_SOURCES, Settings
from stackaudit.facts import LATER, CollectContext, Facts, after, collect

Collector = Callable[[CollectContext], dict[str, Any] | None]
EXAMPLE = Path(__file__).parents[2] / "stackaudit" / "examples" / "reference-stack"
GUARD = 30  # seconds an event may take before the test gives up (a hang, not a speed check)


def use(monkeypatch: pytest.MonkeyPatch, collectors: dict[str, Collector]) -> None:
    monkeypatch.setattr(facts_pkg, "_collector_for", collectors.get)


def test_each_source_starts_after_what_it_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, set[str]] = {}

    def recorder(source: str) -> Collector:
        def run(ctx: CollectContext) -> dict[str, Any]:
            seen[source] = set(ctx.facts.data)
            return {"name": source}
        return run

    use(monkeypatch, {s: recorder(s) for s in ALL_SOURCES})
    facts = collect(Settings())
    assert list(facts.data) == list(ALL_SOURCES)
    for source in ALL_SOURCES:
        assert set(after(source)) <= seen[source], source
    assert {"host", "compose"} <= set(after("app")) and "app" in after("redis")
    assert "postgres" not in after("app")  # its live cross-check is derived, not collected


def test_independent_sources_really_run_at_the_same_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """tls and monitoring each wait for the other to have started: run one after the other, the
    first would give up waiting."""
    started = {"tls": threading.Event(), "monitoring": threading.Event()}
    met: dict[str, bool] = {}

    def meet(me: str, other: str) -> Collector:
        def run(ctx: CollectContext) -> dict[str, Any]:
            started[me].set()
            met[me] = started[other].wait(GUARD)
            return {}
        return run

    use(monkeypatch, {"tls": meet("tls", "monitoring"), "monitoring": meet("monitoring", "tls")})
    collect(Settings(sources=("tls", "monitoring")))
    assert met == {"tls": True, "monitoring": True}


def test_a_server_bound_source_is_running_before_the_other_modules_import(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """postgres comes after host and docker in ALL_SOURCES, yet it is imported first (every module
    is, in the collecting thread) and already runs when their modules import: each stand-in import
    waits for it (it would wait in vain had postgres been started after them)."""
    postgres_runs = threading.Event()
    imports: list[str] = []
    running_at_import: dict[str, bool] = {}

    def postgres(ctx: CollectContext) -> dict[str, Any]:
        postgres_runs.set()
        return {}

    def importing(source: str) -> Collector | None:
        if source not in imports:  # the first call imports; the collector's own call finds it
            imports.append(source)
            assert threading.current_thread() is threading.main_thread()
        if source != "postgres":
            running_at_import[source] = postgres_runs.wait(GUARD)
        return postgres if source == "postgres" else (lambda ctx: {})

    monkeypatch.setattr(facts_pkg, "_collector_for", importing)
    facts = collect(Settings(sources=("host", "docker", "postgres", "backups")))
    assert imports[0] == "postgres" and sorted(imports) == ["backups", "docker", "host", "postgres"]
    assert running_at_import == {"host": True, "docker": True, "backups": True}
    assert list(facts.data) == ["host", "docker", "postgres", "backups"]


def test_order_of_facts_errors_and_progress_does_not_depend_on_who_finishes_first(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """monitoring (earlier in ALL_SOURCES) finishes only after tls and backups have finished."""
    finished = {"tls": threading.Event(), "backups": threading.Event()}

    def slow_monitoring(ctx: CollectContext) -> dict[str, Any]:
        assert finished["tls"].wait(GUARD) and finished["backups"].wait(GUARD)
        ctx.error("prometheus", "refused")
        return {"m": 1}

    def quick(source: str, fails: bool) -> Collector:
        def run(ctx: CollectContext) -> dict[str, Any] | None:
            ctx.error(f"{source} part", "unreadable")
            finished[source].set()
            return None if fails else {source: 1}
        return run

    events: list[tuple[str, str, bool]] = []

    def progress(source: str, state: str) -> None:
        events.append((source, state, threading.current_thread() is threading.main_thread()))

    use(monkeypatch, {"monitoring": slow_monitoring, "tls": quick("tls", fails=True),
                      "backups": quick("backups", fails=False)})
    facts = collect(Settings(sources=("monitoring", "tls", "backups")), progress)
    assert list(facts.data) == ["monitoring", "backups"]
    assert [(e.source, e.where) for e in facts.errors] == [
        ("monitoring", "prometheus"), ("tls", "tls part"), ("backups", "backups part")]
    assert all(main for _, _, main in events)
    for source in ("monitoring", "tls", "backups"):  # one start, then one end, each
        states = [state for s, state, _ in events if s == source]
        assert states == ["start", "failed" if source == "tls" else "done"], (source, states)


def test_a_source_nobody_declared_waits_for_every_source_before_it() -> None:
    assert after("host") == () and after("docker") == ()
    assert after("no-such-source") == ALL_SOURCES
    for source in ALL_SOURCES:  # only earlier sources: the order can never wait in a circle
        waits = (*after(source), *LATER.get(source, ()))
        assert all(ALL_SOURCES.index(s) < ALL_SOURCES.index(source) for s in waits), source


def test_postgres_runs_beside_docker_and_waits_for_the_stack_only_where_it_reads_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """docker finishes only once postgres has started (run one after the other, docker would give up
    waiting); ctx.wait_for then hands postgres the docker and compose facts."""
    started = threading.Event()
    seen: dict[str, Any] = {}

    def docker(ctx: CollectContext) -> dict[str, Any]:
        seen["postgres had started"] = started.wait(GUARD)
        return {"containers": []}

    def postgres(ctx: CollectContext) -> dict[str, Any]:
        started.set()
        ctx.wait_for("docker", "compose")
        seen["then it saw"] = set(ctx.facts.data)
        return {}

    use(monkeypatch, {"docker": docker, "compose": lambda ctx: {"projects": []}, "postgres": postgres})
    facts = collect(Settings(sources=("docker", "compose", "postgres")))
    assert seen == {"postgres had started": True, "then it saw": {"docker", "compose"}}
    assert list(facts.data) == ["docker", "compose", "postgres"]
    alone = CollectContext(settings=Settings(), facts=Facts())
    alone.wait_for("docker")  # a collector run on its own (collect_source) never waits


@pytest.mark.integration
def test_two_audits_of_the_same_stack_give_the_same_json(tmp_path: Path) -> None:
    """Files, an unreachable Docker, PostgreSQL and Redis: several sources fail side by side.
    (Not monitoring: it also finds Prometheus processes on the host, which come and go here.)"""
    project = tmp_path / "stack"
    shutil.copytree(EXAMPLE, project)
    (project / ".env.example").rename(project / ".env")
    env = {**os.environ, "DOCKER_HOST": "unix:///nonexistent/docker.sock", "HOME": str(tmp_path),
           "STACKAUDIT_STATE_DIR": str(tmp_path / "state")}
    args = [sys.executable, "-m", "stackaudit", "audit", "-p", str(project), "--format", "json",
            "--sources", "docker,compose,env,postgres,app,redis,tls,backups",
            "--pg", "postgresql://nobody@127.0.0.1:1/none?connect_timeout=2", "--redis", "redis://127.0.0.1:1/0"]

    def audit() -> dict[str, Any]:
        result = subprocess.run(args, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
        assert result.returncode in (0, 1), result.stderr
        lines = [line for line in result.stderr.splitlines() if line.strip().startswith(("✓", "✗"))]
        assert len(lines) == 8 and len(set(lines)) == 8, result.stderr  # each source shown once
        report: dict[str, Any] = json.loads(result.stdout)
        report.pop("generated_at")
        report["facts"].pop("collected_at", None)
        return report

    first, second = audit(), audit()
    assert first["collection_errors"] and first["findings"]
    assert [e["source"] for e in first["collection_errors"]] == sorted(
        (e["source"] for e in first["collection_errors"]), key=ALL_SOURCES.index)
    assert json.dumps(first, sort_keys=False) == json.dumps(second, sort_keys=False)


def test_collect_source_alone_still_fills_the_callers_facts(monkeypatch: pytest.MonkeyPatch) -> None:
    use(monkeypatch, {"tls": lambda ctx: {"ok": True}})
    ctx = CollectContext(settings=Settings(), facts=Facts())
    assert facts_pkg.collect_source(ctx, "tls") and ctx.facts.data == {"tls": {"ok": True}}
