"""`stackaudit collect` with STACKAUDIT_FLEET_KEY: keyed fingerprints of the secrets it met, on real
files, with a canary value that must appear nowhere in the snapshot."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

import pytest

from stackaudit.facts import Facts, add_fingerprints
from stackaudit.facts.fingerprints import fleet_key
from tests.test_cli import run

CANARY = "Kq7vZ2xW9pLm4RtY8sNc"  # looks generated: remembered, scrubbed and fingerprinted
KEY = "ab" * 32


def project(tmp_path: Path, password: str = CANARY) -> Path:
    directory = tmp_path / "shop"
    directory.mkdir()
    (directory / ".env").write_text(f"POSTGRES_PASSWORD={password}\nAPP_NAME=shop\n", encoding="utf-8")
    (directory / "compose.yml").write_text(
        "services:\n  db:\n    image: postgres:16\n    environment:\n"
        "      POSTGRES_PASSWORD: ${POSTGRES_PASSWORD}\n"
        "  web:\n    image: shop/web:1.4\n    environment:\n"
        f"      DATABASE_URL: postgres://shop:{password}@db/shop\n", encoding="utf-8")
    return directory


def collect(directory: Path, key: str | None) -> tuple[str, dict[str, object]]:
    env = {"STACKAUDIT_FLEET_KEY": key} if key is not None else {}
    result = run("collect", "--sources", "compose,env", "-p", str(directory), env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout + result.stderr, json.loads(result.stdout)


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, object]]:
    return collect(project(tmp_path_factory.mktemp("fp")), KEY)


def test_every_place_gets_a_keyed_fingerprint_and_the_value_appears_nowhere(
        snapshot: tuple[str, dict[str, object]]) -> None:
    output, payload = snapshot
    assert CANARY not in output
    expected = hmac.new(bytes.fromhex(KEY), CANARY.encode(), hashlib.sha256).hexdigest()[:16]
    assert expected not in json.dumps(payload["data"])
    places = {e["where"]: e["fingerprint"] for e in payload["secret_fingerprints"]}  # type: ignore[attr-defined]
    env_file = next(w for w in places if w.startswith("env:"))
    assert env_file.endswith("/shop/.env:POSTGRES_PASSWORD")
    assert places[env_file] == expected
    assert places["compose:shop/db:POSTGRES_PASSWORD"] == expected
    assert places["compose:shop/web:DATABASE_URL"] == expected  # the URL's password, not the URL
    unkeyed = hashlib.sha256(CANARY.encode()).hexdigest()
    assert all(f not in unkeyed for f in places.values())
    assert not any("APP_NAME" in w for w in places)


def test_without_the_key_there_is_no_fingerprint_key(tmp_path: Path) -> None:
    output, payload = collect(project(tmp_path), None)
    assert "secret_fingerprints" not in payload
    assert CANARY not in output


def test_a_weak_password_is_not_fingerprinted(tmp_path: Path) -> None:
    _, payload = collect(project(tmp_path, "postgres"), KEY)
    assert payload["secret_fingerprints"] == []


def test_a_bad_key_is_a_collection_error_without_the_key(tmp_path: Path) -> None:
    facts = Facts()
    add_fingerprints(facts, {"STACKAUDIT_FLEET_KEY": "not-hex-secretish"})
    assert facts.secret_fingerprints is None
    assert [(e.source, e.why) for e in facts.errors] == [
        ("fleet", "STACKAUDIT_FLEET_KEY is not hexadecimal: no secret fingerprints")]
    with pytest.raises(ValueError, match="shorter than 16 bytes"):
        fleet_key({"STACKAUDIT_FLEET_KEY": "abcd"})
    assert fleet_key({}) is None


def test_fingerprints_survive_a_round_trip_and_old_snapshots_have_none() -> None:
    facts = Facts(secret_fingerprints=[{"where": "env:/a/.env:X", "fingerprint": "0123456789abcdef"}])
    again = Facts.from_json(json.loads(json.dumps(facts.to_json())))
    assert again.secret_fingerprints == facts.secret_fingerprints
    old = Facts().to_json()
    assert "secret_fingerprints" not in old
    assert Facts.from_json(old).secret_fingerprints is None
    odd = {**old, "secret_fingerprints": [{"where": 1}, "x", {"where": "w", "fingerprint": "f"}]}
    assert Facts.from_json(odd).secret_fingerprints == [{"where": "w", "fingerprint": "f"}]


def test_a_compose_secrets_file_is_fingerprinted_never_stored(tmp_path: Path) -> None:
    directory = tmp_path / "vault"
    (directory / "secrets").mkdir(parents=True)
    (directory / "secrets" / "db_password.txt").write_text(CANARY + "\n", encoding="utf-8")
    (directory / "compose.yml").write_text(
        "services:\n  db:\n    image: postgres:16\n    secrets: [db_password]\n    environment:\n"
        "      POSTGRES_PASSWORD_FILE: /run/secrets/db_password\n"
        "secrets:\n  db_password:\n    file: ./secrets/db_password.txt\n", encoding="utf-8")
    output, payload = collect(directory, KEY)
    assert CANARY not in output
    places = {e["where"]: e["fingerprint"] for e in payload["secret_fingerprints"]}  # type: ignore[attr-defined]
    expected = hmac.new(bytes.fromhex(KEY), CANARY.encode(), hashlib.sha256).hexdigest()[:16]
    assert places == {f"compose:{directory}/secrets/db_password.txt:db_password": expected}


def test_dsn_passwords_given_on_the_command_line_are_fingerprinted(tmp_path: Path) -> None:
    result = run("collect", "--sources", "postgres,redis", "--pg", f"postgresql://app:{CANARY}@127.0.0.1:1/app",
                 "--redis", f"redis://:{CANARY}@127.0.0.1:1/0", env={"STACKAUDIT_FLEET_KEY": KEY})
    assert result.returncode == 2  # nothing answers on port 1
    assert CANARY not in result.stdout + result.stderr
    places = {e["where"] for e in json.loads(result.stdout)["secret_fingerprints"]}
    assert places == {"postgres:--pg", "redis:--redis"}
