"""Secrets never leave: keys, DSNs and remembered values."""

from __future__ import annotations

from stackaudit import redact


def test_secret_keys_are_recognised_but_auth_methods_are_not() -> None:
    for key in ("POSTGRES_PASSWORD", "SECRET_KEY_BASE", "api_token", "AWS_SECRET_ACCESS_KEY", "DB_PASSWD",
                "SENTRY_DSN", "STRIPE_API_KEY"):
        assert redact.is_secret_key(key), key
    for key in ("POSTGRES_USER", "RAILS_MAX_THREADS", "POSTGRES_HOST_AUTH_METHOD", "DB_POOL"):
        assert not redact.is_secret_key(key), key


def test_dsn_passwords_are_removed_in_both_forms() -> None:
    assert redact.redact_dsn("postgres://app:hunter22@db:5432/x") == "postgres://app:***@db:5432/x"
    assert redact.redact_dsn("host=db password='a b c' user=x") == "host=db password=*** user=x"
    assert redact.redact_dsn("redis://:s3cretpw@redis:6379/0") == "redis://:***@redis:6379/0"


def test_remembered_values_are_scrubbed_from_any_text() -> None:
    assert redact.redact_value("TUNNEL_TOKEN", "tok-abc-123") == "***"
    assert redact.scrub("connecting with tok-abc-123 failed") == "connecting with *** failed"
    assert redact.scrub_data({"a": ["x tok-abc-123"]}) == {"a": ["x ***"]}


def test_short_values_are_not_remembered_to_keep_text_readable() -> None:
    redact.remember("on")
    assert redact.scrub("turned on") == "turned on"


def test_url_without_password_keeps_the_rest() -> None:
    assert redact.url_without_password("s3://key:sekret99@host:9000/b") == "s3://key:***@host:9000/b"
    assert redact.url_without_password("https://example.org/x") == "https://example.org/x"


def test_weak_placeholder_values_are_not_scrubbed_from_prose() -> None:
    assert redact.redact_value("POSTGRES_PASSWORD", "postgres") == "***"
    assert redact.scrub("area-postgres: the postgres service") == "area-postgres: the postgres service"
