"""Setting a journal aside: recorded in the journal, never deleting it; no server is touched."""

from __future__ import annotations

from pathlib import Path

import pytest

from stackaudit.config import Settings
from stackaudit.remediation.journal import KIND, ApplyError, Journal, list_journals
from stackaudit.remediation.rollback import rollback, set_aside
from tests.remediation.test_apply_live import cli


def test_set_aside_is_journalled_kept_and_skipped_by_rollback(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path)
    journal = Journal.start(tmp_path, KIND, meta={"plan": {"target": {}}})
    journal.record({"phase": "started"})

    result = set_aside(settings, journal.id, "host decommissioned")
    assert result.status == "set-aside" and journal.path.exists()
    [kept] = list_journals(tmp_path, KIND)
    assert kept.document["status"] == "set-aside" and kept.document["set_aside_from"] == "running"
    assert kept.steps[-1] == {**kept.steps[-1], "phase": "set-aside", "reason": "host decommissioned"}
    assert set_aside(settings, journal.id, None).status == "nothing"  # already: nothing recorded twice
    assert len(list_journals(tmp_path, KIND)[0].steps) == len(kept.steps)

    assert rollback(settings, None, True, None, None).status == "nothing"  # not recovered, not undone
    by_id = rollback(settings, journal.id, True, None, None)
    assert by_id.status == "nothing" and "set-aside" in by_id.message


def test_unknown_journal_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ApplyError, match="no journal nope"):
        set_aside(Settings(state_dir=tmp_path), "nope", None)
    ran = cli("rollback", "--set-aside", "nope", "--state-dir", str(tmp_path))
    assert ran.returncode == 2 and "no journal nope" in ran.stderr and "Traceback" not in ran.stderr
    both = cli("rollback", "x", "--set-aside", "y", "--format", "json", "--state-dir", str(tmp_path))
    assert both.returncode == 2 and "not both" in both.stderr and "Traceback" not in both.stderr
