"""Every listener over TLS (``ANFU_TLS=1``): TLS 1.3 negotiated, 1.2 allowed, 1.1 refused;
checked with httpx, Python's ssl module and the real ``openssl s_client``; the pins at
``/pki/pins`` are those of the certificates the listeners present (RFC 7469 recipe run by
openssl)."""

from __future__ import annotations

import base64
import hashlib
import socket
import ssl
import warnings
from urllib.parse import urlsplit

import httpx
import pytest

from tests.e2e.tls.conftest import TlsPlatform, needs_openssl, openssl

ZONES = ("mobile", "merchant", "admin")


def _addr(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port


def _url(p: TlsPlatform, zone: str) -> str:
    return str(getattr(p.running, zone))


def _client_context(*, max_version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with warnings.catch_warnings():  # TLS 1.0/1.1 are deprecated: that is the point
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        if max_version is not None:
            ctx.maximum_version = max_version
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")  # let this client offer old protocols at all
    return ctx


def _handshake(url: str, ctx: ssl.SSLContext) -> str | None:
    with socket.create_connection(_addr(url), timeout=10) as sock, \
            ctx.wrap_socket(sock) as tls:
        return tls.version()


@pytest.mark.parametrize("zone", ZONES)
def test_each_zone_answers_over_tls13_with_a_certificate_from_the_platform_root(
        tls_platform: TlsPlatform, zone: str) -> None:
    ctx = ssl.create_default_context(cafile=str(tls_platform.root))  # the root alone
    with httpx.Client(verify=ctx, timeout=10) as client:
        reply = client.get(f"{_url(tls_platform, zone)}/healthz")
        assert reply.status_code == 200
        assert reply.json() == {"status": "ok", "zone": zone}
        ssl_object = reply.extensions["network_stream"].get_extra_info("ssl_object")
        assert ssl_object.version() == "TLSv1.3"
        assert ssl_object.cipher()[0].startswith("TLS_")  # a TLS 1.3 AEAD suite


def test_a_client_that_does_not_trust_the_platform_ca_is_refused(
        tls_platform: TlsPlatform) -> None:
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{tls_platform.running.mobile}/healthz", timeout=10)  # system CAs only


@pytest.mark.parametrize("zone", ZONES)
def test_tls12_is_allowed_and_tls11_is_refused(tls_platform: TlsPlatform, zone: str) -> None:
    url = _url(tls_platform, zone)
    assert _handshake(url, _client_context(max_version=ssl.TLSVersion.TLSv1_2)) == "TLSv1.2"
    for old in (ssl.TLSVersion.TLSv1_1, ssl.TLSVersion.TLSv1):
        with pytest.raises((ssl.SSLError, ConnectionError)):
            _handshake(url, _client_context(max_version=old))


def test_tls12_offers_only_forward_secret_aead_suites(tls_platform: TlsPlatform) -> None:
    weak = _client_context(max_version=ssl.TLSVersion.TLSv1_2)
    weak.set_ciphers("AES128-SHA:AES256-SHA:AES128-GCM-SHA256:@SECLEVEL=0")  # RSA kx, no PFS
    with pytest.raises((ssl.SSLError, ConnectionError)):
        _handshake(tls_platform.running.mobile, weak)


@needs_openssl
@pytest.mark.parametrize("zone", ZONES)
def test_openssl_s_client_verifies_tls13_and_cannot_use_tls11(tls_platform: TlsPlatform,
                                                              zone: str) -> None:
    host, port = _addr(_url(tls_platform, zone))
    good = openssl("s_client", "-connect", f"{host}:{port}", "-tls1_3", "-CAfile",
                   str(tls_platform.root), "-verify_return_error", "-brief")
    out = (good.stdout + good.stderr).decode()
    assert good.returncode == 0, out
    assert "Protocol version: TLSv1.3" in out
    assert "Verification: OK" in out
    old = openssl("s_client", "-connect", f"{host}:{port}", "-tls1_1",
                  "-cipher", "DEFAULT@SECLEVEL=0", "-CAfile", str(tls_platform.root),
                  "-verify_return_error", "-brief")
    assert old.returncode != 0
    assert "TLSv1.1" not in old.stdout.decode() + old.stderr.decode().replace(
        "-tls1_1", "")


def _openssl_pin(pem: bytes) -> str:
    """RFC 7469's recipe: the SPKI of the certificate, SHA-256, base64."""
    spki = openssl("x509", "-pubkey", "-noout", stdin=pem)
    der = openssl("pkey", "-pubin", "-outform", "DER", stdin=spki.stdout)
    assert der.returncode == 0, der.stderr.decode()
    return base64.b64encode(hashlib.sha256(der.stdout).digest()).decode()


@needs_openssl
@pytest.mark.parametrize("zone", ["mobile", "merchant"])
def test_pins_are_those_of_the_server_certificate_and_the_ca(tls_platform: TlsPlatform,
                                                             zone: str) -> None:
    url = _url(tls_platform, zone)
    ctx = ssl.create_default_context(cafile=str(tls_platform.root))
    reply = httpx.get(f"{url}/pki/pins", verify=ctx, timeout=10)  # no client certificate
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["max_age"] > 0
    by_name: dict[str, list[str]] = {}
    for pin in body["pins"]:
        assert pin["not_after"] > 0
        by_name.setdefault(pin["name"], []).append(pin["pin_sha256"])
    assert set(by_name) == {"server", "issuing", "root"}
    with socket.create_connection(_addr(url), timeout=10) as sock, \
            ctx.wrap_socket(sock, server_hostname="127.0.0.1") as tls:
        presented = tls.getpeercert(binary_form=True)
    assert presented is not None
    assert by_name["server"] == [_openssl_pin(ssl.DER_cert_to_PEM_cert(presented).encode())]
    assert _openssl_pin(tls_platform.root.read_bytes()) in by_name["root"]
    assert len(by_name["issuing"]) >= 1
