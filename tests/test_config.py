"""Settings: defaults, config file, environment, per-subject thresholds."""

from __future__ import annotations

from pathlib import Path

import pytest

from stackaudit.config import ConfigError, Settings, load_settings, parse_code_list, parse_sources
from stackaudit.model import Severity
from stackaudit.rules import is_selected


def test_thresholds_fall_back_to_defaults_and_honour_per_subject_overrides(tmp_path: Path) -> None:
    (tmp_path / "stackaudit.toml").write_text(
        '[thresholds.SYS001]\nhigh_percent = 70\n[thresholds.SYS001."/data"]\nhigh_percent = 90\n'
        '[ignore]\ncodes = ["sys004"]\n[disk]\npaths = ["/srv/backups"]\n')
    settings = load_settings(project_dirs=(tmp_path,), environ={})
    assert settings.threshold("SYS001", "high_percent") == 70
    assert settings.threshold("SYS001", "high_percent", "/data") == 90
    assert settings.threshold("SYS001", "critical_percent", "/data") == 85
    assert settings.ignore == ("SYS004",)
    assert settings.disk_paths == (Path("/srv/backups"),)


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    settings = load_settings(project_dirs=(tmp_path,), environ={
        "STACKAUDIT_FAIL_ON": "critical", "STACKAUDIT_STATE_DIR": str(tmp_path / "s"),
        "STACKAUDIT_SOURCES": "host,compose"})
    assert settings.fail_on == Severity.CRITICAL
    assert settings.state_dir == tmp_path / "s"
    assert settings.sources == ("host", "compose")


def test_unknown_threshold_code_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[thresholds.NOPE001]\nx = 1\n")
    with pytest.raises(ConfigError, match="NOPE001"):
        load_settings(config_file=path, environ={})


def test_select_and_ignore_work_like_ruff() -> None:
    assert is_selected("PG201", parse_code_list("PG,SYS001"), parse_code_list("PG2"))is False
    assert is_selected("PG101", parse_code_list("PG,SYS001"), parse_code_list("PG2"))
    assert is_selected("SYS001", parse_code_list("PG,SYS001"), ())
    assert not is_selected("SYS002", parse_code_list("PG,SYS001"), ())
    assert is_selected("DKR001", (), ())


def test_sources_are_validated() -> None:
    assert parse_sources("host, compose") == ("host", "compose")
    with pytest.raises(ConfigError, match="nosuch"):
        parse_sources("host,nosuch")


def test_with_overrides_keeps_values_that_were_not_given() -> None:
    settings = Settings(pg_dsn="postgresql://a@b/c").with_overrides(pg_dsn=None, redis_url="redis://x")
    assert settings.pg_dsn == "postgresql://a@b/c" and settings.redis_url == "redis://x"


def test_timeout_comes_from_the_file_or_the_environment(tmp_path: Path) -> None:
    (tmp_path / "stackaudit.toml").write_text("[targets]\ntimeout_seconds = 3\n")
    assert load_settings(project_dirs=(tmp_path,), environ={}).timeout_seconds == 3
    settings = load_settings(project_dirs=(tmp_path,), environ={"STACKAUDIT_TIMEOUT": "1.5"})
    assert settings.timeout_seconds == 1.5
    with pytest.raises(ConfigError, match="STACKAUDIT_TIMEOUT"):
        load_settings(environ={"STACKAUDIT_TIMEOUT": "soon"})
