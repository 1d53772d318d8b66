"""Compose layouts as self-hosters run them (written after the Immich, Nextcloud, Mastodon,
Paperless-ngx and WordPress examples), audited from their files through the CLI: exactly these
findings, with these severities. What the projects do on purpose stays quiet or moderate: a Redis
without a password on the compose network only (MEDIUM, not HIGH), an app image on a moving tag
(no SEC009: that rule is for datastores), unpublished datastores (no SEC004), Mastodon's pools
(no APP001). A false alarm here is a regression as much as a miss."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.cli_runner import invoke

STACKS = Path(__file__).parent / "real_stacks"

EXPECTED = {
    "immich": {
        ("high", "SEC001", "<dir>/.env"),  # DB_PASSWORD in a 0644 file
        ("high", "SEC003", "<dir>/.env DB_PASSWORD"),  # "postgres", the example's own value
        ("medium", "SEC005", "redis redis"),  # valkey, on the compose network only
    },
    "nextcloud": {
        ("medium", "SEC003", "nextcloud/app MYSQL_PASSWORD"),  # literal in compose.yaml, image has _FILE
        ("medium", "SEC003", "nextcloud/db MYSQL_PASSWORD"),
        ("medium", "SEC003", "nextcloud/db MYSQL_ROOT_PASSWORD"),
        ("medium", "SEC005", "redis redis"),
        ("medium", "SEC009", "nextcloud/redis"),  # redis:alpine follows new majors
        ("low", "SEC009", "nextcloud/db"),  # mariadb:10.11, a bare major
    },
    "mastodon": {
        ("high", "SEC003", "<dir>/.env.production DB_PASS"),  # empty
        ("high", "SEC005", "mastodon/db"),  # trust, on an internal network: HIGH, not CRITICAL
        ("medium", "SEC005", "redis redis"),
        ("low", "SEC009", "mastodon/db"),
        ("low", "SEC009", "mastodon/redis"),
    },
    "paperless": {
        ("high", "SEC001", "<dir>/docker-compose.env"),
        ("high", "SEC003", "<dir>/docker-compose.env PAPERLESS_SECRET_KEY"),  # change-me
        ("high", "SEC003", "paperless/db POSTGRES_PASSWORD"),  # "paperless", the service's own name
        ("medium", "SEC005", "redis broker"),
        ("low", "SEC009", "paperless/broker"),
        ("low", "SEC009", "paperless/db"),
    },
    "wordpress": {
        ("high", "APP006", "wordpress/wordpress"),  # 50 FPM children x 128M in 512M
        ("high", "SEC003", "wordpress/db MYSQL_PASSWORD"),
        ("high", "SEC003", "wordpress/wordpress WORDPRESS_DB_PASSWORD"),
        ("medium", "SEC003", "wordpress/db MYSQL_ROOT_PASSWORD"),
        ("low", "SEC009", "wordpress/db"),
    },
}
SECRETS = ("hunter2-root-canary", "hunter2-nc-canary", "0f1e2d3c4b5a6978", "1a2b3c4d5e6f7a8b")


@pytest.mark.parametrize("stack", sorted(EXPECTED))
def test_a_real_stack_gets_exactly_its_findings_and_no_secret_leaves(stack: str, tmp_path: Path) -> None:
    project = tmp_path / stack
    shutil.copytree(STACKS / stack, project)
    for env_file in [*project.glob(".env*"), *project.glob("*.env")]:
        env_file.chmod(0o600 if stack == "mastodon" else 0o644)  # as each project's docs leave it
    result = invoke("audit", "--sources", "compose,env", "--project-dir", str(project), "--format", "json",
                    "--fail-on", "critical")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    found = {(f["severity"], f["code"], f["subject"].replace(str(project), "<dir>"))
             for f in report["findings"]}
    assert found == EXPECTED[stack]
    assert report["collection_errors"] == []
    assert not [s for s in SECRETS if s in result.stdout + result.stderr]
