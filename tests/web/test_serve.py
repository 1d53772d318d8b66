"""The dashboard over real HTTP (a `stackaudit serve` subprocess) and in-process for each page."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from stackaudit.config import Settings
from stackaudit.redact import remember
from stackaudit.web.app import create_app, safe_next
from tests.report.report_facts import CANARY, GIB
from tests.web.server import serve, wait_for_report, write_snapshot

TOKEN = "dashboard-token-7d1e0c9a"


def test_token_required_over_http(tmp_path: Path) -> None:
    with serve(tmp_path, "--facts", str(write_snapshot(tmp_path)), token=TOKEN) as served:
        url = served.url
        without = httpx.get(url + "/")
        assert without.status_code == 401 and "Access token" in without.text
        assert "prod-1" not in without.text  # the login page shows nothing of the audit
        assert httpx.get(url + "/api/status").status_code == 401
        bad = httpx.get(url + "/", headers={"Authorization": "Bearer wrong"})
        assert bad.status_code == 401
        good = {"Authorization": f"Bearer {TOKEN}"}
        wait_for_report(url, good)
        page = httpx.get(url + "/", headers=good)
        assert page.status_code == 200 and "prod-1" in page.text
        assert TOKEN not in page.text


def test_login_form_sets_a_cookie(tmp_path: Path) -> None:
    with serve(tmp_path, "--facts", str(write_snapshot(tmp_path)), token=TOKEN) as served, \
            httpx.Client(base_url=served.url) as client:
        wrong = client.post("/login", data={"token": "nope", "next": "/plan"})
        assert wrong.status_code == 401 and "not right" in wrong.text
        login = client.post("/login", data={"token": TOKEN, "next": "/plan"})
        assert login.status_code == 303 and login.headers["location"] == "/plan"
        cookie = login.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and TOKEN.lower() not in cookie
        assert client.get("/plan").status_code == 200


def test_refuses_a_public_address_without_a_token(tmp_path: Path) -> None:
    env_free = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "stackaudit", "serve", "--listen", "0.0.0.0:18999",
                           "--state-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=60, env=env_free)
    assert done.returncode == 2
    assert "refusing to listen on 0.0.0.0 without a token" in done.stderr
    assert "Traceback" not in done.stderr
    with pytest.raises(ValueError, match="needs a token"):
        create_app(Settings(state_dir=tmp_path), None, "0.0.0.0", audit_at_start=False)


def test_rerun_over_http_with_sources_host(tmp_path: Path) -> None:
    """A real (host-only) audit at start and on demand; POST needs the request header."""
    with serve(tmp_path, "--sources", "host") as served:
        url = served.url
        first = wait_for_report(url)
        assert httpx.post(url + "/api/audit").status_code == 403  # no X-Stackaudit-Request header
        started = httpx.post(url + "/api/audit", headers={"X-Stackaudit-Request": "1"})
        assert started.status_code == 202
        job_id = started.json()["job"]["id"]
        deadline = time.monotonic() + 60
        while (job := httpx.get(f"{url}/api/jobs/{job_id}").json()["job"])["state"] == "running":
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert job["state"] == "done" and job["progress"] == 1.0
        second = httpx.get(url + "/api/status").json()
        assert second["report"]["generated_at"] >= first["report"]["generated_at"]  # type: ignore[index]
        saved = served.state_dir / "dashboard" / "latest-facts.json"
        assert saved.is_file() and saved.stat().st_mode & 0o077 == 0
        assert httpx.get(url + "/", headers={"Host": "evil.example"}).status_code == 400  # DNS rebinding


# --- in process ------------------------------------------------------------------------------

@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    remember(CANARY)
    state = tmp_path / "state"
    journal = state / "journal"
    journal.mkdir(parents=True)
    (journal / "20250101T000000Z-clean-abc123.json").write_text(json.dumps({
        "version": 1, "id": "20250101T000000Z-clean-abc123", "kind": "clean",
        "started_at": "2025-01-01T00:00:00Z", "finished_at": "2025-01-01T00:01:00Z", "status": "done",
        "steps": [{"action": "remove-image", "id": "sha256:dead", "bytes": 2 * GIB, "note": CANARY}]}))
    (journal / "broken.json").write_text("{")
    from stackaudit.monitor.history import History
    with History.open(state) as db:
        db.record_check(1.7e9, 1.5, "critical", {"critical": 1}, {"host": True}, 0,
                        [("disk_used_bytes", "/", 160.0 * GIB)])
        db.record_check(1.7e9 + 86400, 1.2, "critical", {"critical": 1}, {"host": True}, 0,
                        [("disk_used_bytes", "/", 165.0 * GIB)])
    app = create_app(Settings(state_dir=state), None, "127.0.0.1", write_snapshot(tmp_path),
                     {"statements": [{"label": "q1", "before_ms": 50, "after_ms": 5}]}, audit_at_start=True)
    with TestClient(app, base_url="http://127.0.0.1:8714") as test_client:
        deadline = time.monotonic() + 30
        while test_client.get("/api/status").json()["report"] is None:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        yield test_client


def test_every_page_renders_without_secrets(client: TestClient) -> None:
    for path in ("/", "/findings/0", "/rules/SYS001", "/history", "/plan", "/report", "/login"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert CANARY not in response.text, path
        assert "script-src" in response.headers["content-security-policy"]
    assert client.get("/findings/999").status_code == 404
    assert client.get("/rules/NOPE1").status_code == 404


def test_finding_page_has_its_explain_page(client: TestClient) -> None:
    page = client.get("/findings/0").text
    assert "<h3>What it checks</h3>" in page and "<h3>Fix safety</h3>" in page
    assert "<dt>Recommendation</dt>" in page


def test_history_plan_and_journal(client: TestClient) -> None:
    history = client.get("/history").text
    assert "Disk use of / over time" in history and "Recent checks" in history and "<svg" in history
    plan = client.get("/plan").text
    assert "Now (today)" in plan and "remove-image" in plan and "2.0 GiB" in plan
    assert "unreadable" in plan  # a broken journal is named, not fatal
    assert "q1: before 50 ms, after 5 ms" in client.get("/report").text


def test_scripts_carry_the_nonce_of_their_response(client: TestClient) -> None:
    response = client.get("/")
    policy = response.headers["content-security-policy"]
    nonce = policy.split("'nonce-", 1)[1].split("'", 1)[0]
    assert f'<script nonce="{nonce}">' in response.text


def test_safe_next_stays_on_this_server() -> None:
    assert safe_next("/plan") == "/plan"
    for bad in ("//evil.example/", "https://evil.example/", "/\\evil", None, ""):
        assert safe_next(bad) == "/"
