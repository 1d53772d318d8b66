"""SEC001/SEC002 end to end: real files with real permissions in a real git repository.

The env collector reads the files; git itself says what is tracked and ignored (secrets_git).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import stackaudit.rules.security  # noqa: F401 - registers the SEC rules
from stackaudit.config import Settings
from stackaudit.derive import derive
from stackaudit.facts import CollectContext, Facts
from stackaudit.facts import env as env_collector
from stackaudit.facts.secrets_git import git_status
from stackaudit.model import Severity
from stackaudit.rules import REGISTRY
from tests.services import RedisServer

pytestmark = pytest.mark.integration

SECRETS = (
    "DATABASE_URL=postgres://shop:Xq81vLm2pR7s@db/shop\nSECRET_KEY_BASE=9f2c4e1a7b3d5f6e8a0c2b4d6f8e0a1c\n"
)


def git(repo: Path, *args: str) -> None:
    subprocess.run(
        [
            "git",
            "-C",
            str(repo),
            "-c",
            "user.name=test",
            "-c",
            "user.email=test@example.com",
            "-c",
            "init.defaultBranch=main",
            *args,
        ],
        check=True,
        capture_output=True,
    )


def write(path: Path, text: str, mode: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A compose project in a git repository: .env ignored (600), .env.production not ignored (644),
    secrets.env committed, .env.example committed (a template)."""
    root = tmp_path / "shop"
    root.mkdir()
    git(root, "init", "-q")
    write(root / ".gitignore", ".env\n*.local\n", 0o644)
    write(root / ".env", SECRETS, 0o600)
    write(root / ".env.production", SECRETS, 0o644)
    write(root / "secrets.env", SECRETS, 0o640)
    write(root / ".env.example", "SECRET_KEY_BASE=changeme\n", 0o644)
    git(root, "add", ".gitignore", "secrets.env", ".env.example")
    git(root, "commit", "-q", "-m", "initial")
    return root


def collect_env(project_dir: Path) -> Facts:
    compose = {
        "projects": [
            {
                "name": "shop",
                "dir": str(project_dir),
                "files": [str(project_dir / "compose.yaml")],
                "services": {"web": {"name": "web", "env_files": [str(project_dir / "secrets.env")]}},
                "literal_secrets": [],
            }
        ]
    }
    facts = Facts(data={"compose": compose})
    ctx = CollectContext(settings=Settings(), facts=facts, source="env")
    facts.data["env"] = env_collector.collect(ctx)
    return facts


def findings(code: str, facts: Facts) -> dict[str, tuple[Severity, str]]:
    registered = REGISTRY[code]
    return {
        h.subject: (registered.severity if h.severity is None else h.severity, h.message)
        for h in registered.run(facts, Settings(), derive(facts))
    }


def test_git_status_asks_git(project: Path) -> None:
    assert git_status(project / ".env") == {
        "tracked": False,
        "ignored": True,
        "repo": str(project),
        "error": None,
    }
    assert git_status(project / "secrets.env")["tracked"] is True
    unignored = git_status(project / ".env.production")
    assert unignored["tracked"] is False and unignored["ignored"] is False
    # git's own matching: a nested .gitignore with a negation, which a home-made matcher gets wrong
    write(project / "deploy" / ".gitignore", "*.env\n!public.env\n", 0o644)
    write(project / "deploy" / "prod.env", SECRETS, 0o600)
    write(project / "deploy" / "public.env", "APP_NAME=shop\n", 0o644)
    assert git_status(project / "deploy" / "prod.env")["ignored"] is True
    assert git_status(project / "deploy" / "public.env")["ignored"] is False


def test_git_status_outside_a_repository(tmp_path: Path) -> None:
    path = write(tmp_path / "loose" / ".env", SECRETS, 0o600)
    assert git_status(path) == {"tracked": False, "ignored": False, "repo": None, "error": None}


def test_repository_of_another_user_is_reported_not_entered(project: Path) -> None:
    if os.geteuid() != 0:
        pytest.fail("this test needs root to give the repository to another user")
    subprocess.run(["chown", "-R", "65534:65534", str(project)], check=True)
    status = git_status(project / ".env")
    assert status["repo"] is None and "dubious ownership" in str(status["error"])


def test_sec001_and_sec002_on_real_files(project: Path) -> None:
    facts = collect_env(project)
    files: dict[str, Any] = {Path(f["path"]).name: f for f in facts["env"]["files"]}
    assert files[".env"]["git"]["ignored"] is True and files["secrets.env"]["git"]["tracked"] is True

    sec001 = findings("SEC001", facts)
    assert set(sec001) == {str(project / ".env.production"), str(project / "secrets.env")}
    assert sec001[str(project / ".env.production")][0] == Severity.HIGH  # 0644: every user
    assert sec001[str(project / "secrets.env")][0] == Severity.MEDIUM  # 0640: the group
    assert "0644" in sec001[str(project / ".env.production")][1]

    sec002 = findings("SEC002", facts)
    assert set(sec002) == {str(project / ".env.production"), str(project / "secrets.env")}
    assert (
        sec002[str(project / "secrets.env")][0] == Severity.HIGH
        and "tracked" in sec002[str(project / "secrets.env")][1]
    )
    assert sec002[str(project / ".env.production")][0] == Severity.MEDIUM

    # The template is committed and world-readable by design, with a placeholder: no finding at all.
    assert not any(".env.example" in s for s in {**sec001, **sec002, **findings("SEC003", facts)})


def test_fixing_the_files_silences_the_rules(project: Path) -> None:
    (project / ".env.production").chmod(0o600)
    (project / "secrets.env").chmod(0o600)
    (project / ".gitignore").write_text(".env\n.env.production\nsecrets.env\n")
    git(project, "rm", "-q", "--cached", "secrets.env")
    facts = collect_env(project)
    assert findings("SEC001", facts) == {}
    assert findings("SEC002", facts) == {}


# --- SEC005 end to end: a real Redis with and without requirepass -----------------------------------


def test_sec005_real_redis_with_and_without_password(redis_factory: Callable[..., RedisServer]) -> None:
    from stackaudit.facts import redis as redis_collector

    def sec005_for(url: str) -> dict[str, tuple[Severity, str]]:
        facts = Facts()
        ctx = CollectContext(settings=Settings(redis_url=url), facts=facts, source="redis")
        facts.data["redis"] = redis_collector.collect(ctx)
        return findings("SEC005", facts)

    open_redis = redis_factory()
    hits = sec005_for(open_redis.url)
    assert len(hits) == 1 and "without a password" in next(iter(hits.values()))[1]

    protected = redis_factory(password="Kx93-redis-pass")
    assert sec005_for(protected.url) == {}


# --- the compose corpus through the real compose collector ------------------------------------------

REPO = Path(__file__).resolve().parents[2]


def audit_files(project_dir: Path) -> dict[str, set[str]]:
    from stackaudit.facts import collect
    from stackaudit.rules import evaluate

    settings = Settings(project_dirs=(project_dir,), sources=("compose", "env"), select=("SEC",))
    found, _ = evaluate(collect(settings), settings)
    by_code: dict[str, set[str]] = {}
    for finding in found:
        by_code.setdefault(finding.code, set()).add(finding.subject)
    return by_code


def test_reference_stack_errata_16_and_exposures() -> None:
    found = audit_files(REPO / "stackaudit" / "examples" / "reference-stack")
    # ERRATA 16: FORCE_SSL/ASSUME_SSL false behind cloudflared is reported for the web app only
    assert found["SEC007"] == {"reference-stack/web"}
    assert found["SEC004"] == {"reference-stack/db"}  # "5432:5432"
    assert "reference-stack/cadvisor" in found["SEC008"]  # INFO: an expected agent
    assert found["SEC009"] == {"reference-stack/db", "reference-stack/redis"}  # postgres:18, redis:8


def test_rails_corpus_without_a_proxy_has_no_ssl_finding() -> None:
    found = audit_files(REPO / "tests" / "facts" / "compose_corpus" / "rails_stack")
    assert "SEC007" not in found  # the app is published directly on 3000: no TLS proxy in evidence
    assert "rails_stack/grafana GF_SECURITY_ADMIN_PASSWORD" in found["SEC003"]
    assert found["SEC004"] == {"rails_stack/db"}  # "5432:5432"; redis has no published port


# --- secrets judged by value, and private keys (issue 18, items 3 and 7) ----------------------------------


def keygen(path: Path, mode: int, kind: str = "rsa") -> Path:
    """A real private key: openssl for PEM, ssh-keygen for OpenSSH keys."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "ssh":
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    else:
        subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                        "-out", str(path)], check=True, capture_output=True)
    path.chmod(mode)
    return path


def certificate(path: Path, key: Path, mode: int) -> Path:
    subprocess.run(["openssl", "req", "-new", "-x509", "-key", str(key), "-subj", "/CN=shop.example",
                    "-days", "30", "-out", str(path)], check=True, capture_output=True)
    path.chmod(mode)
    return path


@pytest.fixture
def keys_project(tmp_path: Path) -> Path:
    """Keys with modes 600/640/644 in a git repository; one committed, a certificate that is public."""
    root = tmp_path / "shop"
    root.mkdir()
    git(root, "init", "-q")
    write(root / ".gitignore", "certs/\n", 0o644)
    keygen(root / "certs" / "server.key", 0o600)  # ignored, private to its owner: fine
    keygen(root / "certs" / "shared.key", 0o640)  # ignored, but the group reads it
    keygen(root / "deploy" / "id_ed25519", 0o644, kind="ssh")  # readable by all, not ignored
    keygen(root / "tls" / "site.pem", 0o600)
    certificate(root / "tls" / "fullchain.pem", root / "tls" / "site.pem", 0o644)  # public material
    git(root, "add", ".gitignore", "tls/site.pem", "tls/fullchain.pem")
    git(root, "commit", "-q", "-m", "tls")
    return root


def test_private_keys_fire_sec001_and_sec002_by_path_never_content(keys_project: Path) -> None:
    facts = collect_env(keys_project)
    kinds = {Path(k["path"]).name: k["private_key"] for k in facts["env"]["key_files"]}
    assert kinds == {"server.key": "PKCS#8", "shared.key": "PKCS#8", "id_ed25519": "OpenSSH",
                     "site.pem": "PKCS#8"}  # fullchain.pem holds certificates only; id_ed25519.pub is public
    sec001 = findings("SEC001", facts)
    assert set(sec001) == {str(keys_project / "certs" / "shared.key"),
                           str(keys_project / "deploy" / "id_ed25519")}
    assert sec001[str(keys_project / "deploy" / "id_ed25519")][0] == Severity.HIGH
    assert "a private key (OpenSSH)" in sec001[str(keys_project / "deploy" / "id_ed25519")][1]
    assert sec001[str(keys_project / "certs" / "shared.key")][0] == Severity.MEDIUM
    sec002 = findings("SEC002", facts)
    assert sec002[str(keys_project / "tls" / "site.pem")][0] == Severity.HIGH  # committed
    assert sec002[str(keys_project / "deploy" / "id_ed25519")][0] == Severity.MEDIUM  # not ignored
    assert set(sec002) == {str(keys_project / "tls" / "site.pem"),
                           str(keys_project / "deploy" / "id_ed25519")}
    dumped = json.dumps(facts.data) + json.dumps([f"{v}" for v in {**sec001, **sec002}.values()])
    for key in ("certs/server.key", "tls/site.pem"):
        body = (keys_project / key).read_text().splitlines()[1]
        assert body not in dumped


def test_private_keys_silent_when_private_and_ignored(keys_project: Path) -> None:
    for name in ("certs/shared.key", "deploy/id_ed25519"):
        (keys_project / name).chmod(0o600)
    (keys_project / ".gitignore").write_text("certs/\ndeploy/\ntls/site.pem\n")
    git(keys_project, "rm", "-q", "--cached", "tls/site.pem")
    facts = collect_env(keys_project)
    assert len(facts["env"]["key_files"]) == 4
    assert findings("SEC001", facts) == {} and findings("SEC002", facts) == {}


ENV_WITHOUT_SECRETS = (
    "COMPOSE_PROJECT_NAME=shop\nPOSTGRES_PASSWORD_FILE=/run/secrets/pg\nMYSQL_ROOT_PASSWORD_FILE=/run/secrets/root\n"
    "DB_PASSWORD=/run/secrets/db_password\nMYSQL_ALLOW_EMPTY_PASSWORD=yes\nMYSQL_RANDOM_ROOT_PASSWORD=true\n"
    "GF_AUTH_ANONYMOUS_ORG_ROLE=Admin\nPRIMARY_KEY=id\nRAILS_ENV=production\n"
)


def test_sec001_silent_for_an_env_file_without_secret_values(tmp_path: Path) -> None:
    root = tmp_path / "shop"
    write(root / ".env", ENV_WITHOUT_SECRETS, 0o644)
    facts = collect_env(root)
    env = next(f for f in facts["env"]["files"] if f["path"].endswith("/.env"))
    assert env["secret_keys"] == [] and env["weak_values"] == []
    assert findings("SEC001", facts) == {} and findings("SEC003", facts) == {}


def test_sec001_names_the_secret_keys_and_sec003_the_weak_ones(tmp_path: Path) -> None:
    root = tmp_path / "shop"
    write(root / ".env", ENV_WITHOUT_SECRETS + "SMTP_PASS=Vq7#mR2x!kP9\nAPI_TOKEN=changeme\n"
          "SHOP_DB_PW=shop2024\nSTRIPE_KEY=sk_live_51Hq8vLm2pR7sXq81\n", 0o640)
    facts = collect_env(root)
    ((_, (severity, message)),) = findings("SEC001", facts).items()
    assert severity == Severity.MEDIUM
    assert "secrets (SMTP_PASS, API_TOKEN, SHOP_DB_PW, STRIPE_KEY)" in message
    assert "Vq7#mR2x" not in message and "sk_live" not in message
    weak = {s.rsplit(" ", 1)[1]: m for s, (_, m) in findings("SEC003", facts).items()}
    assert set(weak) == {"API_TOKEN", "SHOP_DB_PW"}
    assert "a well-known default or placeholder" in weak["API_TOKEN"]
    assert "the service's name, with a few digits" in weak["SHOP_DB_PW"]  # the project is called shop


# --- SEC010 from a real compose project with a mounted grafana.ini ---------------------------------------

GRAFANA_INI = """; upstream defaults, edited
[security]
admin_password = Gr4f-Canary-Pw-61c0
secret_key = SW2YcwTIb9zpOOhoPsMm

[auth]
disable_login_form = true

[auth.anonymous]
enabled = true
; org_role = Viewer
org_role = Admin
"""


def audit_with_monitoring(project_dir: Path) -> tuple[Facts, dict[str, set[str]]]:
    from stackaudit.facts import collect
    from stackaudit.rules import evaluate

    settings = Settings(project_dirs=(project_dir,), sources=("compose", "env", "monitoring"),
                        select=("SEC",))
    facts = collect(settings)
    found, _ = evaluate(facts, settings)
    by_code: dict[str, set[str]] = {}
    for finding in found:
        by_code.setdefault(finding.code, set()).add(finding.message)
    return facts, by_code


def test_sec010_fires_from_a_mounted_grafana_ini(tmp_path: Path) -> None:
    root = tmp_path / "obs"
    write(root / "grafana" / "grafana.ini", GRAFANA_INI, 0o600)
    write(root / "compose.yaml", "services:\n  grafana:\n    image: grafana/grafana:12.1.0\n"
          "    ports: [\"3000:3000\"]\n    volumes:\n"
          "      - ./grafana/grafana.ini:/etc/grafana/grafana.ini:ro\n"
          "  loki:\n    image: grafana/loki:3.4.2\n    ports: [\"3100:3100\"]\n", 0o644)
    facts, found = audit_with_monitoring(root)
    (ini,) = facts["monitoring"]["grafana_ini"]
    assert ini["settings"] == {"auth.disable_login_form": "true", "auth.anonymous.enabled": "true",
                               "auth.anonymous.org_role": "Admin"}
    messages = " | ".join(sorted(found["SEC010"]))
    assert "Grafana obs/grafana lets anyone in without a login as Admin on all interfaces" in messages
    assert "login form disabled" in messages and "loki obs/loki answers on all interfaces" in messages
    assert "Gr4f-Canary-Pw-61c0" not in json.dumps(facts.to_json())


def test_sec010_silent_when_grafana_ini_keeps_logins(tmp_path: Path) -> None:
    root = tmp_path / "obs"
    write(root / "grafana" / "grafana.ini", "[auth.anonymous]\nenabled = false\norg_role = Admin\n", 0o600)
    write(root / "compose.yaml", "services:\n  grafana:\n    image: grafana/grafana:12.1.0\n"
          "    ports: [\"127.0.0.1:3000:3000\"]\n    volumes:\n      - ./grafana:/etc/grafana:ro\n", 0o644)
    facts, found = audit_with_monitoring(root)
    assert facts["monitoring"]["grafana_ini"][0]["settings"]["auth.anonymous.enabled"] == "false"
    assert "SEC010" not in found
