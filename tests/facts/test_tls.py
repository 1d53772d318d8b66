"""The TLS collector against a real TLS server on 127.0.0.1 with certificates made by `openssl`.

A test CA signs a leaf certificate for localhost/127.0.0.1 that expires in 5 days or in 200 days;
the server is the standard library's ssl module in a thread.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest

import stackaudit.rules.security  # noqa: F401 - registers SEC006
from stackaudit.config import Settings
from stackaudit.derive import derive
from stackaudit.facts import CollectContext, Facts, SourceUnavailable, tls
from stackaudit.localpg import free_port
from stackaudit.model import Severity
from stackaudit.rules import REGISTRY

pytestmark = pytest.mark.integration


def openssl(*args: str | Path) -> str:
    done = subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, text=True)
    return done.stdout


@pytest.fixture(scope="module")
def test_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("ca")
    openssl(
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        folder / "ca.key",
        "-out",
        folder / "ca.pem",
        "-days",
        "400",
        "-subj",
        "/CN=stackaudit test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    )
    return folder


def leaf_certificate(ca: Path, days: int, names: str = "DNS:localhost,IP:127.0.0.1") -> tuple[Path, Path]:
    """A certificate for `names` (subjectAltName), signed by the test CA, valid for `days` days."""
    folder = ca / f"leaf-{days}-{names.replace(':', '_').replace(',', '_')}"
    folder.mkdir(exist_ok=True)
    key, csr, cert, ext = (folder / n for n in ("leaf.key", "leaf.csr", "leaf.pem", "ext.cnf"))
    ext.write_text(
        f"subjectAltName={names}\nbasicConstraints=CA:FALSE\n"
        "keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n"
        "authorityKeyIdentifier=keyid\nsubjectKeyIdentifier=hash\n"
    )
    openssl(
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        key,
        "-out",
        csr,
        "-subj",
        "/CN=localhost",
    )
    openssl(
        "x509",
        "-req",
        "-in",
        csr,
        "-CA",
        ca / "ca.pem",
        "-CAkey",
        ca / "ca.key",
        "-CAcreateserial",
        "-out",
        cert,
        "-days",
        str(days),
        "-extfile",
        ext,
    )
    return cert, key


@contextmanager
def tls_server(cert: Path, key: Path) -> Iterator[int]:
    """Accept TLS handshakes on 127.0.0.1 until the block ends; yields the port."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            try:
                conn.settimeout(5)
                with context.wrap_socket(conn, server_side=True):
                    pass
            except (OSError, ssl.SSLError):
                conn.close()  # the client rejected our certificate: expected in some tests

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


@pytest.fixture(scope="module")
def expiring_soon(test_ca: Path) -> Iterator[int]:
    with tls_server(*leaf_certificate(test_ca, 5)) as port:
        yield port


@pytest.fixture(scope="module")
def valid_long(test_ca: Path) -> Iterator[int]:
    with tls_server(*leaf_certificate(test_ca, 200)) as port:
        yield port


def check(port: int, cafile: Path | None = None, host: str = "localhost") -> dict[str, object]:
    return tls.check_certificate(tls.Target(host, port, "test"), 5.0, str(cafile) if cafile else None)


def sec006(
    certificates: list[dict[str, object]], settings: Settings | None = None
) -> list[tuple[str, Severity]]:
    registered = REGISTRY["SEC006"]
    facts = Facts(data={"tls": {"certificates": certificates}})
    return [
        (h.subject, registered.severity if h.severity is None else h.severity)
        for h in registered.run(facts, settings or Settings(), derive(facts))
    ]


def test_expiring_certificate_verified_against_the_test_ca(expiring_soon: int, test_ca: Path) -> None:
    result = check(expiring_soon, test_ca / "ca.pem")
    assert result["reachable"] and result["verified"] and result["verify_error"] is None
    assert result["subject_cn"] == "localhost" and result["issuer_cn"] == "stackaudit test CA"
    assert 4.9 < float(result["days_left"]) <= 5.0  # type: ignore[arg-type]
    assert sec006([result]) == [(f"localhost:{expiring_soon}", Severity.CRITICAL)]


def test_long_valid_certificate_is_silent(valid_long: int, test_ca: Path) -> None:
    result = check(valid_long, test_ca / "ca.pem")
    assert result["verified"] and 199 < float(result["days_left"]) <= 200  # type: ignore[arg-type]
    assert sec006([result]) == []
    # the threshold is a setting: at 365 days this certificate is "expiring"
    assert sec006([result], Settings(thresholds={"SEC006": {"days": 365}})) == [
        (f"localhost:{valid_long}", Severity.HIGH)
    ]


def test_untrusted_certificate_still_reports_its_dates(expiring_soon: int) -> None:
    result = check(expiring_soon)  # the system trust store does not know the test CA
    assert result["reachable"] and not result["verified"]
    assert "unable to get local issuer certificate" in str(result["verify_error"])
    assert result["days_left"] is not None and float(result["days_left"]) < 5.1  # type: ignore[arg-type]


def test_host_name_mismatch_is_a_verify_error(test_ca: Path) -> None:
    cert, key = leaf_certificate(test_ca, 200, names="DNS:elsewhere.example")
    with tls_server(cert, key) as port:
        result = check(port, test_ca / "ca.pem")
    assert result["reachable"] and not result["verified"]
    assert "hostname mismatch" in str(result["verify_error"]).lower()


def test_unreachable_domain_is_an_info_finding() -> None:
    closed = check(free_port())
    assert closed["reachable"] is False and closed["error"] == "connection refused"
    unknown = tls.check_certificate(tls.Target("no-such-host.invalid", 443, "test"), 5.0)
    assert unknown["reachable"] is False and "does not resolve" in str(unknown["error"])
    assert [sev for _, sev in sec006([closed, unknown])] == [Severity.INFO, Severity.INFO]


def test_der_dates_match_openssl(test_ca: Path) -> None:
    cert, _ = leaf_certificate(test_ca, 200)
    der = ssl.PEM_cert_to_DER_cert(cert.read_text())
    not_before, not_after, issuer, subject = tls.parse_der_certificate(der)
    end = openssl("x509", "-in", cert, "-noout", "-enddate").strip().split("=", 1)[1]
    assert not_after == datetime.strptime(end, "%b %d %H:%M:%S %Y %Z").replace(tzinfo=UTC)
    assert not_before < datetime.now(UTC) < not_after
    assert (issuer, subject) == ("stackaudit test CA", "localhost")


TRAEFIK_RULE = "Host(`www.shop.invalid`) || Host(`api.shop.invalid`)"


def test_collect_checks_given_and_discovered_domains(expiring_soon: int) -> None:
    facts = Facts(
        data={
            "compose": {
                "projects": [
                    {
                        "name": "shop",
                        "services": {
                            "web": {
                                "name": "web",
                                "environment": {"VIRTUAL_HOST": "shop.invalid"},
                                "labels": {"traefik.http.routers.web.rule": TRAEFIK_RULE},
                            }
                        },
                    }
                ]
            }
        }
    )
    ctx = CollectContext(
        settings=Settings(tls_domains=(f"localhost:{expiring_soon}",), timeout_seconds=3),
        facts=facts,
        source="tls",
    )
    data = tls.collect(ctx)
    by_domain = {c["domain"]: c for c in data["certificates"]}
    assert set(by_domain) == {
        f"localhost:{expiring_soon}",
        "www.shop.invalid",
        "api.shop.invalid",
        "shop.invalid",
    }
    assert by_domain[f"localhost:{expiring_soon}"]["source"] == "settings"
    assert "traefik label" in by_domain["www.shop.invalid"]["source"]
    assert data["summary"]["reachable"] == 1 and data["summary"]["unreachable"] == 3
    assert 4.9 < data["summary"]["min_days_left"] <= 5.0


def test_collect_without_domains_is_unavailable() -> None:
    ctx = CollectContext(settings=Settings(), facts=Facts(), source="tls")
    with pytest.raises(SourceUnavailable, match="no domain to check"):
        tls.collect(ctx)


def test_parse_target_forms() -> None:
    assert tls.parse_target("https://shop.example/path", "x") == tls.Target("shop.example", 443, "x")
    assert tls.parse_target("shop.example:8443", "x") == tls.Target("shop.example", 8443, "x")
    assert tls.parse_target("*.shop.example", "x") is None
    assert tls.parse_target("shop.example:notaport", "x") is None
