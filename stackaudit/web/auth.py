"""Who may see the dashboard: anyone on loopback, else only with the token.

The token arrives as `Authorization: Bearer <token>` (scripts) or once through the login form, which
sets an HttpOnly, SameSite=Strict cookie holding an HMAC of the token (never the token itself).
Without a token the dashboard only answers requests whose Host is a loopback name, so a web page
elsewhere cannot reach it through DNS rebinding.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os

COOKIE = "stackaudit_session"
TOKEN_ENV = "STACKAUDIT_TOKEN"
LOOPBACK_NAMES = ("localhost", "localhost.", "ip6-localhost")


def is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def token_from_env(given: str | None) -> str | None:
    token = given if given is not None else os.environ.get(TOKEN_ENV)
    return token.strip() if token and token.strip() else None


def session_value(token: str) -> str:
    return hmac.new(token.encode(), b"stackaudit-dashboard-session", hashlib.sha256).hexdigest()


def token_matches(token: str, offered: str | None) -> bool:
    return offered is not None and hmac.compare_digest(token.encode(), offered.strip().encode())


def bearer(header: str | None) -> str | None:
    if header and header[:7].lower() == "bearer ":
        return header[7:]
    return None


def host_of(host_header: str) -> str:
    """The host name of a Host header, without the port ("[::1]:8714" -> "::1")."""
    if host_header.startswith("["):
        return host_header[1:].split("]", 1)[0]
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header
