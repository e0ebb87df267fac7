"""The merchant zone with ``ANFU_MERCHANT_MTLS=required``: a request needs a client
certificate from the platform CA whose subject is the merchant that signs the request;
a missing, revoked, foreign or mismatched certificate is refused, by httpx (the SDK) and by
``openssl s_client -cert -key``."""

from __future__ import annotations

import json
import ssl
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from anfu.sdk import ApiError, MerchantClient
from tests.e2e.tls.conftest import MerchantTls, TlsPlatform, needs_openssl, openssl
from tests.support import MerchantIdentity, eventually


def client(p: TlsPlatform, signer: MerchantIdentity, cert: MerchantTls | None) -> MerchantClient:
    return MerchantClient(p.running.merchant, signer.merchant_id, signer.key_id, signer.alg,
                          signer.private_key_pem, verify=p.root,
                          cert=(cert.cert, cert.key) if cert is not None else None)


def refusal(p: TlsPlatform, signer: MerchantIdentity, cert: MerchantTls | None) -> ApiError:
    with pytest.raises(ApiError) as caught:
        client(p, signer, cert).balance()
    return caught.value


def test_a_merchant_with_its_certificate_is_served(
        tls_platform: TlsPlatform, certified: Callable[..., MerchantTls]) -> None:
    mine = certified()
    shop = client(tls_platform, mine.identity, mine)
    assert shop.balance()["merchant_id"] == mine.identity.merchant_id
    trade = shop.create_trade(out_trade_no="tls-1", amount=1234, currency="CNY",
                              subject="over mutual TLS")
    assert trade["status"] == "WAIT_BUYER_PAY"
    assert shop.get_trade(trade["trade_no"])["amount"] == 1234


def test_without_a_client_certificate_the_problem_says_so(tls_platform: TlsPlatform) -> None:
    shop = tls_platform.merchant()
    err = refusal(tls_platform, shop, None)
    assert (err.status, err.code) == (401, "client_certificate_required")
    # a bare request learns the same, with the scheme to use
    ctx = ssl.create_default_context(cafile=str(tls_platform.root))
    reply = httpx.get(f"{tls_platform.running.merchant}/v1/balance", verify=ctx, timeout=10)
    assert reply.status_code == 401
    assert reply.headers["content-type"] == "application/problem+json"
    assert "mTLS" in reply.headers["www-authenticate"]
    assert "anfu-signature" in reply.headers  # signed like every merchant-zone answer


def test_public_routes_need_no_client_certificate(tls_platform: TlsPlatform) -> None:
    ctx = ssl.create_default_context(cafile=str(tls_platform.root))
    for path in ("/healthz", "/v1/platform/keys", "/openapi.json", "/pki/pins",
                 "/log/v1/get-sth"):
        reply = httpx.get(f"{tls_platform.running.merchant}{path}", verify=ctx, timeout=10)
        assert reply.status_code != 401, (path, reply.text)
        assert reply.json().get("code") != "client_certificate_required", path


def test_a_revoked_certificate_is_refused(tls_platform: TlsPlatform,
                                          certified: Callable[..., MerchantTls]) -> None:
    revoked = certified(tag="-revoked")
    tls_platform.revoke(revoked.serial)
    err = refusal(tls_platform, revoked.identity, revoked)
    assert (err.status, err.code) == (401, "certificate_revoked")


def test_a_certificate_revoked_while_in_use_is_refused_within_seconds(
        tls_platform: TlsPlatform, certified: Callable[..., MerchantTls]) -> None:
    mine = certified(tag="-later")
    shop = client(tls_platform, mine.identity, mine)
    shop.balance()
    tls_platform.revoke(mine.serial)

    def refused() -> bool:
        try:
            client(tls_platform, mine.identity, mine).balance()
        except ApiError as exc:
            return exc.code == "certificate_revoked"
        return False

    eventually(refused, timeout=10, interval=0.5)  # the check is cached at most 5 s


def test_another_merchants_certificate_is_a_mismatch(
        tls_platform: TlsPlatform, certified: Callable[..., MerchantTls]) -> None:
    theirs = certified()
    me = tls_platform.merchant()
    err = refusal(tls_platform, me, theirs)
    assert (err.status, err.code) == (403, "client_certificate_mismatch")
    assert theirs.identity.merchant_id in err.detail and me.merchant_id in err.detail


def test_a_certificate_from_another_ca_fails_the_handshake(
        tls_platform: TlsPlatform, tmp_path: Path) -> None:
    key = tmp_path / "self.key.pem"
    cert = tmp_path / "self.crt.pem"
    done = openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                   "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1",
                   "-subj", "/CN=intruder")
    assert done.returncode == 0, done.stderr.decode()
    shop = tls_platform.merchant()
    with pytest.raises((httpx.TransportError, ssl.SSLError)):
        MerchantClient(tls_platform.running.merchant, shop.merchant_id, shop.key_id, shop.alg,
                       shop.private_key_pem, verify=tls_platform.root,
                       cert=(cert, key)).balance()


def test_a_server_certificate_of_our_ca_is_not_a_client_certificate(
        tls_platform: TlsPlatform, tmp_path: Path) -> None:
    """Our CA, but the server profile (EKU serverAuth only): the TLS layer's purpose check
    refuses it before the app sees it."""
    from tests.e2e.tls.conftest import new_key_and_csr

    key, csr = new_key_and_csr(tmp_path, "svc")
    reply = tls_platform.admin("POST", "/v1/pki/certificates", json={
        "profile": "server", "subject_id": "svc.example", "csr": csr})
    assert reply.status_code == 201, reply.text
    cert = tmp_path / "svc.crt.pem"
    cert.write_text(reply.json()["certificate"])
    shop = tls_platform.merchant()
    with pytest.raises((httpx.TransportError, ssl.SSLError)):
        client(tls_platform, shop, MerchantTls(shop, cert, key, "")).balance()


def test_refusals_are_counted_in_the_security_metric(tls_platform: TlsPlatform) -> None:
    refusal(tls_platform, tls_platform.merchant(), None)
    metrics = tls_platform.admin("GET", "/metrics").text
    line = next(x for x in metrics.splitlines() if x.startswith("anfu_security_failures_total")
                and 'code="client_certificate_required"' in x and 'zone="merchant"' in x)
    assert float(line.rsplit(" ", 1)[1]) >= 1
    logs = [json.loads(x) for x in tls_platform.running.logs().splitlines()
            if x.startswith("{") and "client_certificate_required" in x]
    assert logs and logs[-1]["level"] == "warning"


def _s_client(p: TlsPlatform, path: str, *extra: str) -> str:
    parts = urlsplit(p.running.merchant)
    request = (f"GET {path} HTTP/1.1\r\nHost: {parts.hostname}\r\n"
               "Connection: close\r\n\r\n").encode()
    done = openssl("s_client", "-connect", f"{parts.hostname}:{parts.port}", "-tls1_3",
                   "-CAfile", str(p.root), "-verify_return_error", "-quiet", "-ign_eof",
                   *extra, stdin=request)
    return done.stdout.decode(errors="replace")


@needs_openssl
def test_openssl_s_client_with_and_without_a_client_certificate(
        tls_platform: TlsPlatform, certified: Callable[..., MerchantTls]) -> None:
    mine = certified()
    without = _s_client(tls_platform, "/v1/balance")
    assert "401" in without.splitlines()[0] and "client_certificate_required" in without
    with_cert = _s_client(tls_platform, "/v1/balance", "-cert", str(mine.cert),
                          "-key", str(mine.key))
    # past the certificate check: now the request signature is what is missing
    assert "401" in with_cert.splitlines()[0], with_cert
    assert "client_certificate_required" not in with_cert
    assert '"code":"' in with_cert
