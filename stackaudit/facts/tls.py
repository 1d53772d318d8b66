"""TLS certificates of the domains the stack serves, fetched over the network (source "tls").

Domains come from the settings (`--domain`, `[targets] domains`) and from the stack itself: traefik
`Host(...)` router rules, caddy-docker-proxy `caddy` labels, nginx-proxy VIRTUAL_HOST/LETSENCRYPT_HOST.
Each is checked with the standard library: a verified handshake first (system trust store, host
name checked), and when verification fails the certificate is fetched again without it, so the
report still shows its dates next to why it is not trusted. The validity dates are read from the
DER certificate by a small parser (the stdlib decodes a peer certificate only when it verified).
"""

from __future__ import annotations

import re
import socket
import ssl
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from stackaudit.facts import CollectContext, Facts, SourceUnavailable

MAX_TIMEOUT_SECONDS = 5.0  # per domain; an unreachable one must not hold the audit for long
_HOST_RULE = re.compile(r"Host(?:SNI)?\(([^)]*)\)")
_BACKQUOTED = re.compile(r"[`\"']([^`\"']+)[`\"']")
_CN_OID = bytes.fromhex("550403")  # 2.5.4.3 commonName


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    source: str

    @property
    def domain(self) -> str:
        return self.host if self.port == 443 else f"{self.host}:{self.port}"


def collect(ctx: CollectContext) -> dict[str, Any]:
    targets = discover(ctx.settings.tls_domains, ctx.facts)
    if not targets:
        raise SourceUnavailable("no domain to check: none given (--domain, [targets] domains) and none "
                                "found in traefik/caddy labels or VIRTUAL_HOST of the stack")
    timeout = min(ctx.settings.timeout_seconds, MAX_TIMEOUT_SECONDS)
    with ThreadPoolExecutor(max_workers=min(8, len(targets))) as pool:
        certificates = list(pool.map(lambda t: check_certificate(t, timeout), targets))
    return {"summary": summarise(certificates), "certificates": certificates}


def summarise(certificates: list[dict[str, Any]]) -> dict[str, Any]:
    days = [c["days_left"] for c in certificates if c.get("days_left") is not None]
    return {
        "domains": len(certificates),
        "reachable": sum(1 for c in certificates if c["reachable"]),
        "unreachable": sum(1 for c in certificates if not c["reachable"]),
        "min_days_left": round(min(days), 1) if days else None,
    }


# --- discovery -----------------------------------------------------------------------------------

def parse_target(text: str, source: str) -> Target | None:
    """"example.com", "example.com:8443", "https://example.com/x" -> Target; None if unusable."""
    text = text.strip()
    if not text:
        return None
    parts = urlsplit(text if "//" in text else f"//{text}")
    try:
        port = parts.port or 443
    except ValueError:
        return None
    host = (parts.hostname or "").rstrip(".")
    if not host or "*" in host or "{" in host:
        return None
    return Target(host, port, source)


def discover(given: tuple[str, ...], facts: Facts) -> list[Target]:
    found: dict[tuple[str, int], Target] = {}
    candidates = [(d, "settings") for d in given] + list(_stack_domains(facts))
    for text, source in candidates:
        target = parse_target(text, source)
        if target is not None and (target.host, target.port) not in found:
            found[(target.host, target.port)] = target
    return list(found.values())


def _stack_domains(facts: Facts) -> Iterator[tuple[str, str]]:
    for project in facts.get("compose").get("projects", []):
        for service in project.get("services", {}).values():
            where = f"service {service.get('name')}"
            yield from domains_from_labels(service.get("labels") or {}, where)
            yield from _domains_from_env(service.get("environment") or {}, where)
    for container in facts.get("docker").get("containers", []):
        yield from domains_from_labels(container.get("labels") or {}, f"container {container.get('name')}")


def domains_from_labels(labels: dict[str, Any] | list[Any], where: str) -> Iterator[tuple[str, str]]:
    for key, value in label_items(labels):
        if key.startswith("traefik.") and key.endswith(".rule"):
            for rule_args in _HOST_RULE.findall(value):
                for host in _BACKQUOTED.findall(rule_args):
                    yield host, f"traefik label {key} on {where}"
        elif key == "caddy" or re.fullmatch(r"caddy_\d+", key):
            for host in re.split(r"[\s,]+", value):
                if host and not host.startswith(("http://", ":")):
                    yield host, f"caddy label on {where}"


def label_items(labels: dict[str, Any] | list[Any]) -> list[tuple[str, str]]:
    """Labels as (key, value) pairs, from a mapping or a compose list of "key=value"."""
    if isinstance(labels, dict):
        return [(str(k), str(v if v is not None else "")) for k, v in labels.items()]
    pairs = [str(item).partition("=") for item in labels]
    return [(key, value) for key, _, value in pairs]


def _domains_from_env(environment: dict[str, Any], where: str) -> Iterator[tuple[str, str]]:
    for key in ("VIRTUAL_HOST", "LETSENCRYPT_HOST"):
        for host in str(environment.get(key) or "").split(","):
            if host.strip() and host.strip() != "***":
                yield host.strip(), f"{key} of {where}"


# --- checking ------------------------------------------------------------------------------------

def check_certificate(target: Target, timeout: float, cafile: str | None = None,
                      now: datetime | None = None) -> dict[str, Any]:
    """Connect, verify, read the certificate dates; never raises."""
    now = now or datetime.now(UTC)
    result: dict[str, Any] = {
        "domain": target.domain, "host": target.host, "port": target.port, "source": target.source,
        "reachable": False, "error": None, "verified": False, "verify_error": None,
        "subject_cn": None, "issuer_cn": None, "not_before": None, "not_after": None, "days_left": None,
        "checked_at": now.isoformat(timespec="seconds"),
    }
    verified_context = ssl.create_default_context(cafile=cafile)
    try:
        der = fetch_certificate(target, verified_context, timeout)
        result["verified"] = True
    except ssl.SSLCertVerificationError as exc:
        result["verify_error"] = exc.verify_message or str(exc)
        try:
            der = fetch_certificate(target, _unverified_context(), timeout)
        except (OSError, ssl.SSLError) as again:
            result["error"] = _describe(again)
            return result
    except (OSError, ssl.SSLError) as exc:
        result["error"] = _describe(exc)
        return result
    result["reachable"] = True
    try:
        result.update(certificate_fields(der, now))
    except ValueError as exc:
        result["error"] = f"cannot read the certificate: {exc}"
    return result


def fetch_certificate(target: Target, context: ssl.SSLContext, timeout: float) -> bytes:
    with socket.create_connection((target.host, target.port), timeout=timeout) as sock, \
            context.wrap_socket(sock, server_hostname=target.host) as tls:
        der = tls.getpeercert(binary_form=True)
    if not der:
        raise ssl.SSLError("the server sent no certificate")
    return der


def _unverified_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _describe(exc: BaseException) -> str:
    if isinstance(exc, socket.gaierror):
        return f"name does not resolve: {exc.strerror or exc}"
    if isinstance(exc, TimeoutError | socket.timeout):
        return "connection timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return f"{exc.__class__.__name__}: {exc}"


def certificate_fields(der: bytes, now: datetime) -> dict[str, Any]:
    not_before, not_after, issuer, subject = parse_der_certificate(der)
    return {
        "subject_cn": subject, "issuer_cn": issuer,
        "not_before": not_before.isoformat(), "not_after": not_after.isoformat(),
        "days_left": round((not_after - now).total_seconds() / 86400, 2),
    }


# --- a minimal DER reader: just enough of X.509 for validity and common names ------------------

def _element(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, content start, content end) of the DER element at pos."""
    if pos + 2 > len(data):
        raise ValueError("truncated DER")
    tag, first = data[pos], data[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        length = int.from_bytes(data[pos:pos + count], "big")
        pos += count
    if pos + length > len(data):
        raise ValueError("truncated DER")
    return tag, pos, pos + length


def _children(data: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    out = []
    while start < end:
        tag, c_start, c_end = _element(data, start)
        out.append((tag, c_start, c_end))
        start = c_end
    return out


def parse_der_certificate(der: bytes) -> tuple[datetime, datetime, str | None, str | None]:
    """(not_before, not_after, issuer CN, subject CN) of an X.509 certificate (RFC 5280 4.1)."""
    _, cert_start, cert_end = _element(der, 0)
    _, tbs_start, tbs_end = _children(der, cert_start, cert_end)[0]
    fields = _children(der, tbs_start, tbs_end)
    if fields and fields[0][0] == 0xA0:  # explicit [0] version
        fields = fields[1:]
    # serialNumber, signature, issuer, validity, subject
    issuer, validity, subject = fields[2], fields[3], fields[4]
    times = _children(der, validity[1], validity[2])
    return (_der_time(der, times[0]), _der_time(der, times[1]),
            _common_name(der, issuer), _common_name(der, subject))


def _der_time(der: bytes, element: tuple[int, int, int]) -> datetime:
    tag, start, end = element
    text = der[start:end].decode("ascii")
    if tag == 0x17:  # UTCTime YYMMDDHHMMSSZ: years 50-99 are 19xx (RFC 5280 4.1.2.5.1)
        year = int(text[:2])
        text = f"{1900 + year if year >= 50 else 2000 + year}{text[2:]}"
    elif tag != 0x18:
        raise ValueError(f"unexpected time tag {tag:#x}")
    return datetime.strptime(text.rstrip("Z"), "%Y%m%d%H%M%S").replace(tzinfo=UTC)


def _common_name(der: bytes, name: tuple[int, int, int]) -> str | None:
    for _, set_start, set_end in _children(der, name[1], name[2]):
        for _, seq_start, seq_end in _children(der, set_start, set_end):
            parts = _children(der, seq_start, seq_end)
            if len(parts) == 2 and der[parts[0][1]:parts[0][2]] == _CN_OID:
                return der[parts[1][1]:parts[1][2]].decode("utf-8", "replace")
    return None
