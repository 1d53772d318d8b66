"""Redaction hides the secret where it stands, never the names around it (issue 18, item 4).

A password equal to a common word or to the service's own name is reported weak (SEC003) and hidden
in its fields, flags and URLs, while every path, project and service name stays readable; strong
secrets still never reach any output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from stackaudit import redact

STRONG = {"env": "Strong-Canary-Pw-8e1f", "cli": "Strong-Cli-Canary-42aa", "url": "Url-Canary-Pw-7d3b"}


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DOCKER_HOST": "unix:///nonexistent/docker.sock"}
    return subprocess.run([sys.executable, "-m", "stackaudit", *args], capture_output=True, text=True,
                          env=env, timeout=120)


@pytest.fixture
def nextcloud(tmp_path: Path) -> Path:
    """A project whose database password is the app's own name, next to strong secrets."""
    root = tmp_path / "nextcloud-postgres"
    root.mkdir()
    (root / "compose.yaml").write_text(f"""services:
  nextcloud:
    image: nextcloud:29.0.4
    environment:
      POSTGRES_PASSWORD: ${{POSTGRES_PASSWORD:?set it}}
      REDIS_HOST_PASSWORD: ${{REDIS_PASSWORD:?set it}}
      EXTERNAL_URL: https://admin:{STRONG['url']}@backup.example/nextcloud
  postgres:
    image: postgres:16.4
    environment:
      POSTGRES_USER: nextcloud
      POSTGRES_PASSWORD: ${{POSTGRES_PASSWORD:?set it}}
  redis:
    image: redis:7.4
    command: ["redis-server", "--requirepass", "nextcloud"]
    healthcheck:
      test: ["CMD-SHELL", "redis-cli -a {STRONG['cli']} ping"]
""")
    (root / ".env").write_text(f"POSTGRES_PASSWORD=nextcloud\nREDIS_PASSWORD={STRONG['env']}\n")
    (root / ".env").chmod(0o644)
    return root


def test_weak_password_equal_to_a_name_is_reported_not_scrubbed_from_names(nextcloud: Path,
                                                                          tmp_path: Path) -> None:
    outputs = []
    for fmt in ("json", "md", "terminal"):
        result = run("audit", "-p", str(nextcloud), "--sources", "compose,env", "--format", fmt)
        assert result.returncode in (0, 1), result.stderr
        outputs += [result.stdout, result.stderr]
    snapshot = tmp_path / "facts.json"
    collected = run("collect", "-p", str(nextcloud), "--sources", "compose,env", "--out", str(snapshot))
    assert collected.returncode == 0, collected.stderr
    outputs.append(snapshot.read_text())
    everything = "\n".join(outputs)
    for where, secret in STRONG.items():
        assert secret not in everything, f"the {where} canary leaked"
    assert "***-postgres" not in everything and "/***" not in everything and "***/" not in everything
    report = json.loads(outputs[0])
    subjects = {(f["code"], f["subject"]) for f in report["findings"]}
    assert ("SEC003", f"{nextcloud}/.env POSTGRES_PASSWORD") in subjects
    weak = next(f for f in report["findings"] if f["subject"] == f"{nextcloud}/.env POSTGRES_PASSWORD")
    assert "guessable (the service's or image's own name)" in weak["message"]
    assert ("SEC001", f"{nextcloud}/.env") in subjects  # 0644 and holds secrets
    sec001 = next(f for f in report["findings"] if f["code"] == "SEC001")
    assert "(POSTGRES_PASSWORD, REDIS_PASSWORD)" in sec001["message"]
    # the weak password is hidden where it stands: in the command flag and in the snapshot's fields
    facts = json.loads(snapshot.read_text())
    services = facts["data"]["compose"]["projects"][0]["services"]
    assert services["redis"]["command"] == ["redis-server", "--requirepass", "***"]
    assert services["postgres"]["environment"]["POSTGRES_USER"] == "nextcloud"  # a name, shown


def test_scrub_keeps_noted_names_and_short_or_word_values() -> None:
    redact.forget_all()
    redact.note_names(["/srv/gitea-db", "gitea-db"])
    for value in ("gitea-db", "immich", "Immich2024", "Xq81vLm2pR7s"):
        redact.remember(value)
    text = redact.scrub("/srv/gitea-db/compose.yaml: gitea-db uses immich (Immich2024) and Xq81vLm2pR7s")
    assert text == "/srv/gitea-db/compose.yaml: gitea-db uses immich (Immich2024) and ***"
    redact.forget_all()


def test_flags_and_urls_are_redacted_in_free_text_even_when_weak() -> None:
    assert redact.scrub('sh -c "redis-server --requirepass redis --port 6380"') == (
        'sh -c "redis-server --requirepass *** --port 6380"')
    assert redact.scrub("redis-cli -h cache -a changeme ping") == "redis-cli -h cache -a *** ping"
    assert redact.scrub("postgres://app:postgres@db/app") == "postgres://app:***@db/app"


def test_a_bad_env_line_is_reported_without_its_value(tmp_path: Path) -> None:
    root = tmp_path / "shop"
    root.mkdir()
    (root / "compose.yaml").write_text("services:\n  app:\n    image: nginx:1.27\n")
    (root / ".env").write_text('API_TOKEN="Leak-Canary-Tok-91ab\nBAD\'KEY=Leak-Canary-2-77cc\n')
    result = run("audit", "-p", str(root), "--sources", "compose,env", "--format", "json")
    report = json.loads(result.stdout)  # still valid JSON
    assert "Leak-Canary" not in result.stdout + result.stderr
    whys = [e["why"] for e in report["collection_errors"]]
    assert "unterminated quoted value of API_TOKEN: the \" is never closed" in whys


def test_dotenv_errors_of_compose_go_lose_their_values() -> None:
    message = 'failed to read .env: line 3: unterminated quoted value "s3cret-Value\nNEXT=x'
    assert redact.without_dotenv_values(message) == (
        "failed to read .env: line 3: unterminated quoted value (the value is not shown)")
    assert "s3cret" not in redact.without_dotenv_values(
        'line 1: unexpected character "\'" in variable name "A\'=s3cret"')
