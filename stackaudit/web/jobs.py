"""The dashboard's audit: one background job at a time, its progress, and the last result on disk.

The last audited facts are saved (redacted, mode 0600) in `<state_dir>/dashboard/`, so a restarted
dashboard shows the last audit at once; re-evaluating saved facts gives the same findings
(`audit --facts`), so facts are what is kept, not rendered findings.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stackaudit.config import ALL_SOURCES, Settings
from stackaudit.facts import Facts, collect
from stackaudit.fsutil import atomic_write
from stackaudit.pipeline import audit, snapshot
from stackaudit.redact import scrub
from stackaudit.report import Report

SAVED_FACTS = Path("dashboard") / "latest-facts.json"


@dataclass
class Job:
    id: str
    started: float
    state: str = "running"  # "running" | "done" | "failed"
    step: str = "starting"
    done_steps: int = 0
    total_steps: int = 1
    finished: float | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "state": self.state, "step": self.step,
                "progress": round(min(1.0, self.done_steps / max(1, self.total_steps)), 3),
                "started": self.started, "finished": self.finished, "error": self.error}


@dataclass
class AuditRunner:
    """Runs audits in a daemon thread; the web handlers only read `report` and `job`."""

    settings: Settings
    facts_path: Path | None = None  # audit this snapshot instead of collecting (support, tests)
    report: Report | None = None
    job: Job | None = None
    jobs: dict[str, Job] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def saved_path(self) -> Path:
        return self.settings.state_dir / SAVED_FACTS

    def load_saved(self) -> bool:
        """The last audit's facts, re-evaluated; False when there are none (or they are unreadable)."""
        if not self.saved_path.is_file():
            return False
        try:
            self.report = audit(self.settings, Facts.load(self.saved_path))
        except Exception:  # noqa: BLE001 - a stale or broken file only means "no audit yet"
            return False
        return True

    def start(self) -> Job:
        """A new audit job, or the one already running (never two at once)."""
        with self._lock:
            if self.job is not None and self.job.state == "running":
                return self.job
            job = Job(id=secrets.token_hex(6), started=time.time(), total_steps=len(self._sources()) + 1)
            self.job = job
            self.jobs[job.id] = job
        threading.Thread(target=self._run, args=(job,), name=f"audit-{job.id}", daemon=True).start()
        return job

    def _sources(self) -> list[str]:
        return [] if self.facts_path else [s for s in ALL_SOURCES if self.settings.wants(s)]

    def _run(self, job: Job) -> None:
        try:
            facts = self._facts(job)
            job.step = "evaluating rules"
            report = audit(self.settings, facts)
            self._save(facts)
            self.report = report
            job.done_steps = job.total_steps
            job.step, job.state = "done", "done"
        except Exception as exc:  # noqa: BLE001 - shown to the user as the job's error, scrubbed
            job.state, job.error = "failed", scrub(f"{exc.__class__.__name__}: {exc}")
        finally:
            job.finished = time.time()

    def _facts(self, job: Job) -> Facts:
        if self.facts_path is not None:
            job.step = f"reading {self.facts_path.name}"
            return Facts.load(self.facts_path)

        def progress(source: str, state: str) -> None:
            if state == "start":
                job.step = f"collecting {source}"
            else:
                job.done_steps += 1
        return collect(self.settings, progress)

    def _save(self, facts: Facts) -> None:
        try:
            self.saved_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            data = json.dumps(snapshot(facts), default=str).encode("utf-8")
            atomic_write(self.saved_path, data, mode=0o600)
        except OSError:
            pass  # the dashboard still shows the report; only a restart loses it
