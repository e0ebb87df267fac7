"""The pure pieces of ``anfu.tls``, ``anfu.api.mtls`` and ``anfu.sdk.tls``."""

from __future__ import annotations

import ssl

import pytest

from anfu.api.mtls import client_certificate_pem, is_public
from anfu.sdk.tls import client_verify
from anfu.tls import _rfc4514, pem_certificates

CERT = "-----BEGIN CERTIFICATE-----\nQUJD\n-----END CERTIFICATE-----\n"


def test_subjects_are_rfc4514_most_specific_first() -> None:
    subject = ((("organizationName", "anfu"),), (("commonName", "m_1,2"),))
    assert _rfc4514(subject) == "CN=m_1\\,2,O=anfu"
    assert _rfc4514(()) is None


def test_a_bundle_splits_into_its_certificates() -> None:
    assert pem_certificates("junk\n" + CERT + CERT.replace("QUJD", "REVG")) == [
        CERT, CERT.replace("QUJD", "REVG")]
    assert pem_certificates(b"") == []


@pytest.mark.parametrize(("path", "public"), [
    ("/healthz", True), ("/pki/pins", True), ("/pki/crl/issuing-1.crl", True),
    ("/log/v1/get-sth", True), ("/v1/platform/keys", True), ("/openapi.json", True),
    ("/docs", True), ("/v1/balance", False), ("/v1/trades", False),
    ("/v1/certificates", False), ("/pkix", False), ("/v1/platform/keys/x", False)])
def test_which_merchant_routes_need_no_client_certificate(path: str, public: bool) -> None:
    assert is_public(path) is public


def test_the_client_certificate_is_read_from_the_asgi_extension() -> None:
    assert client_certificate_pem({"type": "http"}) is None
    assert client_certificate_pem({"extensions": {"tls": {"client_cert_chain": []}}}) is None
    assert client_certificate_pem(
        {"extensions": {"tls": {"client_cert_chain": [CERT, "x"]}}}) == CERT


def test_sdk_verify_options() -> None:
    assert client_verify() is True
    assert client_verify(False) is False
    ctx = ssl.create_default_context()
    assert client_verify(ctx) is ctx
    made = client_verify(False, None)
    assert made is False
    with pytest.raises(FileNotFoundError):
        client_verify("/nonexistent/root.pem")
