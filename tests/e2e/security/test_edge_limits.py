"""Request bodies are bounded before anything reads them (issue 16, item 8): a 200 MiB
unauthenticated body used to be read and parsed in full before the signature check. And the
merchant zone checks the request signature over the raw body before it parses JSON."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from anfu import crypto
from anfu.sigwire import format_authorization, new_nonce, request_signing_bytes
from tests.support import MerchantIdentity, RunningPlatform

MIB = 1024 * 1024
LIMIT = 64 * 1024  # ANFU_MAX_BODY_BYTES's default (mobile and merchant zones)
ADMIN_LIMIT = 256 * 1024  # ANFU_ADMIN_MAX_BODY_BYTES's default


def chunks(total: int, size: int = 16 * 1024) -> Iterator[bytes]:
    """A body httpx sends chunked, without Content-Length."""
    sent = 0
    while sent < total:
        yield b"x" * min(size, total - sent)
        sent += size


def assert_too_large(reply: httpx.Response, limit: int) -> None:
    assert reply.status_code == 413, reply.text
    assert reply.headers["content-type"] == "application/problem+json"
    body = reply.json()
    assert body["code"] == "body_too_large" and body["max_body_bytes"] == limit
    assert str(limit) in body["detail"]


def routes(p: RunningPlatform) -> list[tuple[str, int]]:
    """An unauthenticated route that takes a body, on each zone."""
    return [(f"{p.mobile}/v1/users", LIMIT), (f"{p.merchant}/v1/trades", LIMIT),
            (f"{p.admin}/v1/merchants", ADMIN_LIMIT)]


def test_a_declared_oversize_body_is_refused_at_once_on_every_zone(
        platform_urls: RunningPlatform) -> None:
    for url, limit in routes(platform_urls):
        reply = httpx.post(url, content=b"{" + b" " * MIB, timeout=30,
                           headers={"Content-Type": "application/json"})
        assert_too_large(reply, limit)
        assert reply.headers.get("connection") == "close"  # the rest is not read
    merchant = httpx.post(f"{platform_urls.merchant}/v1/trades", content=b"x" * MIB)
    assert "anfu-signature" in merchant.headers  # merchant-zone refusals are signed too


def test_a_chunked_oversize_body_is_cut_off(platform_urls: RunningPlatform) -> None:
    for url, limit in routes(platform_urls):
        headers = {"Content-Type": "application/json"}
        if url.startswith(platform_urls.admin):
            headers.update(platform_urls.admin_headers)
        reply = httpx.post(url, content=chunks(MIB), headers=headers, timeout=30)
        assert "content-length" not in reply.request.headers
        assert_too_large(reply, limit)
    # Without the token the admin zone refuses before it reads a byte of the body.
    refused = httpx.post(f"{platform_urls.admin}/v1/merchants", content=chunks(MIB),
                         timeout=30)
    assert refused.status_code == 401 and refused.json()["code"] == "operator_token_missing"


def test_the_platform_is_fine_afterwards(platform_urls: RunningPlatform,
                                         make_merchant: Callable[..., MerchantIdentity],
                                         funded_customer: Callable[..., object]) -> None:
    for _ in range(3):
        for url, _limit in routes(platform_urls):
            httpx.post(url, content=chunks(2 * MIB), timeout=30)
    for url in (platform_urls.mobile, platform_urls.merchant, platform_urls.admin):
        assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
    make_merchant()  # a legitimate admin write and a sign-up go through
    funded_customer(100)


def test_a_body_at_the_limit_is_taken_one_byte_more_is_not(
        platform_urls: RunningPlatform) -> None:
    at_limit = b'{"pad": "' + b"p" * (LIMIT - 11) + b'"}'
    assert len(at_limit) == LIMIT
    for body in (at_limit, chunks(LIMIT)):
        reply = httpx.post(f"{platform_urls.mobile}/v1/users", content=body,
                           headers={"Content-Type": "application/json"})
        assert reply.status_code == 422, reply.text  # read and parsed: no phone, no password
    over = httpx.post(f"{platform_urls.mobile}/v1/users", content=at_limit + b" ")
    assert_too_large(over, LIMIT)


def signed(merchant: MerchantIdentity, path: str, raw: bytes, *,
           tamper: bool = False) -> dict[str, str]:
    key = crypto.load_private_key(merchant.alg, merchant.private_key_pem)
    ts, nonce = str(int(time.time())), new_nonce()
    signature = key.sign(request_signing_bytes("POST", path, ts, nonce, raw))
    if tamper:
        signature = bytes([signature[0] ^ 1]) + signature[1:]
    return {"Authorization": format_authorization(
        merchant_id=merchant.merchant_id, key_id=merchant.key_id, alg=merchant.alg,
        timestamp=ts, nonce=nonce, signature=signature), "Content-Type": "application/json"}


@pytest.mark.parametrize("path", ["/v1/trades", "/v1/trades/T1/refunds", "/v1/trades/T1/ship",
                                  "/v1/certificates"])
def test_the_signature_is_checked_before_the_body_is_parsed(
        platform_urls: RunningPlatform, make_merchant: Callable[..., MerchantIdentity],
        path: str) -> None:
    m = make_merchant()
    malformed = b'{"out_trade_no": "x", "amount": '  # not JSON
    bad = httpx.post(f"{platform_urls.merchant}{path}", content=malformed,
                     headers=signed(m, path, malformed, tamper=True))
    assert bad.status_code == 401, bad.text
    assert bad.json()["code"] == "signature_invalid"
    unsigned = httpx.post(f"{platform_urls.merchant}{path}", content=malformed,
                          headers={"Content-Type": "application/json"})
    assert unsigned.status_code == 401, unsigned.text
    # Signed correctly, the same body gets the parse error, as before.
    good = httpx.post(f"{platform_urls.merchant}{path}", content=malformed,
                      headers=signed(m, path, malformed))
    assert good.status_code == 422 and good.json()["code"] == "validation_failed", good.text
