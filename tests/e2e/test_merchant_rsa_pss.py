"""A merchant registered with an rsa-pss-sha256 key (RSASSA-PSS, SHA-256, MGF1-SHA-256,
32-byte salt) signs requests the merchant zone accepts; a PKCS#1 v1.5 signature by the same
RSA key is refused, whichever algorithm it claims."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from anfu import crypto
from anfu.sdk import ApiError, MerchantClient
from anfu.sigwire import format_authorization, new_nonce, request_signing_bytes
from tests.support import MerchantIdentity, RunningPlatform

ALG = "rsa-pss-sha256"


def post_signed(url: str, path: str, body: dict[str, Any], m: MerchantIdentity, alg: str,
                sign: Callable[[bytes], bytes]) -> httpx.Response:
    raw = json.dumps(body).encode()
    ts, nonce = str(int(time.time())), new_nonce()
    signature = sign(request_signing_bytes("POST", path, ts, nonce, raw))
    header = format_authorization(merchant_id=m.merchant_id, key_id=m.key_id, alg=alg,
                                  timestamp=ts, nonce=nonce, signature=signature)
    return httpx.post(url + path, content=raw, headers={"Authorization": header,
                                                         "Content-Type": "application/json"})


def trade_body(out: str) -> dict[str, Any]:
    return {"out_trade_no": out, "amount": 100, "currency": "CNY", "subject": "x",
            "mode": "escrow"}


def pkcs1_signer(m: MerchantIdentity) -> Callable[[bytes], bytes]:
    key = serialization.load_pem_private_key(m.private_key_pem.encode(), None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return lambda data: key.sign(data, padding.PKCS1v15(), hashes.SHA256())


def test_sdk_merchant_with_rsa_pss_key_creates_and_reads_trades(
        shop_factory: Callable[..., Any]) -> None:
    shop = shop_factory(alg=ALG)
    out = f"pss-{time.time_ns()}"
    trade = shop.create_trade(out_trade_no=out, amount=100, currency="CNY", subject="x",
                              mode="escrow")
    assert shop.get_trade(trade["trade_no"])["status"] == "WAIT_BUYER_PAY"
    assert shop.find_trade(out)["trade_no"] == trade["trade_no"]


def test_pss_signatures_pass_and_pkcs1_by_the_same_key_is_refused(
        platform_urls: RunningPlatform, make_merchant: Callable[..., MerchantIdentity]) -> None:
    m = make_merchant(alg=ALG)
    key = crypto.load_private_key(ALG, m.private_key_pem)
    url = platform_urls.merchant
    ok = post_signed(url, "/v1/trades", trade_body(f"raw-{time.time_ns()}"), m, ALG, key.sign)
    assert ok.status_code == 201, ok.text
    run = time.time_ns()
    for alg, code in ((ALG, "signature_invalid"), ("rsa-sha256", "algorithm_mismatch")):
        refused = post_signed(url, "/v1/trades", trade_body(f"pkcs1-{alg}-{run}"), m, alg,
                              pkcs1_signer(m))
        assert refused.status_code == 401, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["code"] == code
    shop = MerchantClient(url, m.merchant_id, m.key_id, ALG, m.private_key_pem)
    for alg in (ALG, "rsa-sha256"):  # a refused request wrote nothing
        with pytest.raises(ApiError) as info:
            shop.find_trade(f"pkcs1-{alg}-{run}")
        assert info.value.code == "trade_not_found"


def test_admin_adds_an_rsa_pss_key_to_a_merchant(
        platform_urls: RunningPlatform, make_merchant: Callable[..., MerchantIdentity]) -> None:
    m = make_merchant(alg="ed25519")
    new_key = crypto.generate_private_key(ALG)
    added = httpx.post(f"{platform_urls.admin}/v1/merchants/{m.merchant_id}/keys",
                       headers=platform_urls.admin_headers, json={
        "alg": ALG, "public_key_pem": new_key.public_key().public_pem()})
    assert added.status_code == 201, added.text
    shop = MerchantClient(platform_urls.merchant, m.merchant_id, added.json()["key_id"], ALG,
                          new_key.private_pem(None))
    assert shop.balance()["merchant_id"] == m.merchant_id
