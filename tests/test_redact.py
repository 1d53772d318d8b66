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


def test_secrets_are_judged_by_value_not_only_by_name() -> None:
    secrets = [("POSTGRES_PASSWORD", "Xq81vLm2pR7s"), ("SMTP_PASS", "x9"), ("DB_PW", "abc"),
               ("GITHUB_TOKEN", "ghp_abc"), ("APP_KEY", "base64:Zm9vYmFyYmF6cXV4MTIzNDU2"),
               ("STRIPE_KEY", "sk_live_51Hq8vLm2pR7sXq81"), ("POSTGRES_PASSWORD", "true"),
               ("DATABASE_URL", "postgres://app:hunter22@db/app"), ("GPG_PASSPHRASE", "correct horse")]
    for key, value in secrets:
        assert redact.holds_secret(key, value), (key, value)
    not_secrets = [("POSTGRES_PASSWORD_FILE", "/run/secrets/pg"), ("DB_PASSWORD", "/run/secrets/db_password"),
                   ("MYSQL_ALLOW_EMPTY_PASSWORD", "yes"), ("MYSQL_RANDOM_ROOT_PASSWORD", "true"),
                   ("GF_AUTH_ANONYMOUS_ORG_ROLE", "Admin"), ("GF_AUTH_ANONYMOUS_ENABLED", "true"),
                   ("PRIMARY_KEY", "id"), ("SORT_KEY", "created_at"), ("SSL_KEY_FILE", "/etc/ssl/k.pem"),
                   ("GF_SECURITY_ADMIN_PASSWORD__FILE", "/run/secrets/gf"), ("POSTGRES_PASSWORD", ""),
                   ("DATABASE_URL", "postgres://app:@db/app"), ("REDIS_URL", "redis://cache:6379/0"),
                   ("OAUTH_CLIENT_ID", "shop-web"), ("PASSWORD_MIN_LENGTH", "12")]
    for key, value in not_secrets:
        assert not redact.holds_secret(key, value), (key, value)


def test_weak_reasons_name_the_guess_without_repeating_the_value() -> None:
    names = ["nextcloud", "postgres:16.4", "shop"]
    assert redact.weak_reason("changeit") == "a well-known default or placeholder"
    assert redact.weak_reason("Nextcloud", names) == "the service's or image's own name"
    assert redact.weak_reason("shop_password!", names) == (
        "common words or the service's name, with a few digits, symbols or letters around them")
    assert redact.weak_reason("nextcloud-db-pass", names) == redact.weak_reason("shopdb2024", names)
    assert redact.weak_reason("shopdb2024", names) is not None
    assert redact.weak_reason("Summer2024") == "a single word with digits or symbols around it"
    assert redact.weak_reason("Xq8!vL2") == "shorter than 8 characters"
    for strong in ("Xq81vLm2pR7s", "correct-horse-battery-staple", "Kx93-redis-pass"):
        assert redact.weak_reason(strong, names) is None, strong
