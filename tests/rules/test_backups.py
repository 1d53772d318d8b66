"""BAK001 / BAK002 on facts snapshots (pure)."""

from __future__ import annotations

from typing import Any

from stackaudit.config import Settings
from stackaudit.facts import Facts
from stackaudit.model import Finding, Severity
from stackaudit.rules import evaluate


def db(name: str, **overrides: Any) -> dict[str, Any]:
    base = {"database": name, "backups": 3, "verified_backups": 3, "newest_status": "ok",
            "newest_error": None, "newest_verified_age_hours": 5.0, "last_drill_ok": True,
            "last_drill_error": None, "last_ok_drill_age_days": 3.0}
    return {**base, **overrides}


def findings(databases: list[dict[str, Any]], postgres: dict[str, Any] | None = None,
             settings: Settings | None = None) -> list[Finding]:
    data: dict[str, Any] = {"backups": {"dest": "/srv/backups", "databases": databases, "summary": {}}}
    if postgres is not None:
        data["postgres"] = postgres
    found, _ = evaluate(Facts(data=data), settings or Settings(select=("BAK",)))
    return found


def codes(found: list[Finding]) -> list[tuple[str, str]]:
    return [(f.code, f.subject) for f in found]


def test_bak001_silent_and_bak002_silent_when_fresh_and_drilled() -> None:
    assert findings([db("shop")]) == []  # neither BAK001 nor BAK002


def test_bak001_fires_on_stale_backup() -> None:
    [finding] = findings([db("shop", newest_verified_age_hours=49.5)])
    assert (finding.code, finding.subject, finding.severity) == ("BAK001", "shop", Severity.HIGH)
    assert "49.5 hours old (limit 26 hours)" in finding.message


def test_bak001_fires_and_explains_failed_newest_attempt() -> None:
    [finding] = findings([db("shop", newest_verified_age_hours=30.0, newest_status="failed",
                             newest_error="writing x failed: No space left on device")])
    assert finding.code == "BAK001" and "No space left on device" in finding.message


def test_bak001_fires_critical_without_verified_backup() -> None:
    found = findings([db("shop", verified_backups=0, newest_verified_age_hours=None, newest_status="failed",
                         last_ok_drill_age_days=None, last_drill_ok=None)])
    assert codes(found) == [("BAK001", "shop")]  # BAK002 leaves unbacked databases to BAK001
    assert found[0].severity is Severity.CRITICAL


def test_bak001_fires_for_live_database_without_backup() -> None:
    postgres = {"databases": [{"name": "shop"}, {"name": "crm"}, {"name": "template1"}, "postgres"]}
    found = findings([db("shop")], postgres)
    assert codes(found) == [("BAK001", "crm")]
    assert "no verified backup in /srv/backups" in found[0].message


def test_bak001_silent_with_raised_threshold() -> None:
    settings = Settings(select=("BAK",), thresholds={"BAK001": {"max_age_hours": 60}})
    assert findings([db("shop", newest_verified_age_hours=49.5)], settings=settings) == []


def test_bak002_fires_when_drill_too_old() -> None:
    [finding] = findings([db("shop", last_ok_drill_age_days=40.0)])
    assert (finding.code, finding.severity) == ("BAK002", Severity.MEDIUM)
    assert "40 days ago (limit 35 days)" in finding.message


def test_bak002_fires_when_never_restored_and_last_drill_failed() -> None:
    [finding] = findings([db("shop", last_ok_drill_age_days=None, last_drill_ok=False,
                             last_drill_error="pg_restore failed: invalid distance")])
    assert (finding.code, finding.severity) == ("BAK002", Severity.HIGH)
    assert "has ever been restored successfully" in finding.message and "invalid distance" in finding.message


def test_bak002_silent_for_recent_drill_and_for_database_without_backup() -> None:
    found = findings([db("shop", last_ok_drill_age_days=34.0),
                      db("crm", verified_backups=0, newest_verified_age_hours=None,
                         last_ok_drill_age_days=None)])
    assert "BAK002" not in {f.code for f in found}
