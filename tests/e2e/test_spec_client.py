"""Issue 2, "done when": a client written only from section 6 (``spec_client.py``, no project
code) can create, query, ship and refund trades through the real listeners and verify every
response signature. The customer side (paying) uses the project's WalletClient, which is not
under test here."""

from __future__ import annotations

import base64
import time
import uuid
from dataclasses import replace
from typing import Any

import httpx
import pytest

from tests.e2e.spec_client import (
    LABEL,
    SpecApiError,
    SpecMerchantClient,
    SpecResponse,
    SpecSignatureError,
    parse_params,
    verify_response,
)

AMOUNT = 1000


@pytest.fixture(params=["ed25519", "rsa-sha256"])
def spec(request: pytest.FixtureRequest, platform_urls: Any, make_merchant: Any) -> Any:
    merchant = make_merchant(alg=request.param)
    client = SpecMerchantClient(platform_urls.merchant, merchant.merchant_id, merchant.key_id,
                                merchant.alg, merchant.private_key_pem)
    yield client
    client.close_client()


def _new_trade(spec: SpecMerchantClient, mode: str = "escrow") -> dict[str, Any]:
    return spec.create_trade(out_trade_no=f"spec-{uuid.uuid4().hex}", amount=AMOUNT,
                             currency="CNY", subject="spec client trade", mode=mode)


def test_platform_keys_are_published_and_self_signed(spec: SpecMerchantClient) -> None:
    keys = spec.fetch_platform_keys()
    response_keys = [k for k in keys if k.get("purpose", "response") == "response"]
    assert response_keys and all(k["alg"] == "ed25519" for k in response_keys)
    for key in keys:
        assert {"key_id", "public_key_pem", "not_before", "not_after"} <= key.keys()


def test_escrow_trade_create_query_ship_refund(spec: SpecMerchantClient,
                                               funded_customer: Any) -> None:
    out_trade_no = f"spec-{uuid.uuid4().hex}"
    fields = {"out_trade_no": out_trade_no, "amount": AMOUNT, "currency": "CNY",
              "subject": "spec client trade", "mode": "escrow"}
    trade = spec.create_trade(**fields)
    assert spec.last_status == 201
    assert trade["status"] == "WAIT_BUYER_PAY"
    assert trade["out_trade_no"] == out_trade_no and trade["amount"] == AMOUNT
    trade_no = trade["trade_no"]

    # Same out_trade_no and body: the same trade, 200. Another body: 409.
    again = spec.create_trade(**fields)
    assert spec.last_status == 200 and again["trade_no"] == trade_no
    with pytest.raises(SpecApiError) as conflict:
        spec.create_trade(**{**fields, "amount": AMOUNT + 1})
    assert conflict.value.status == 409

    assert spec.get_trade(trade_no)["trade_no"] == trade_no
    assert spec.find_trade(out_trade_no)["trade_no"] == trade_no

    customer = funded_customer()
    paid = customer.pay(trade_no)
    assert paid["status"] == "WAIT_SELLER_SEND_GOODS"
    assert spec.get_trade(trade_no)["status"] == "WAIT_SELLER_SEND_GOODS"

    shipped = spec.ship(trade_no)
    assert shipped["status"] == "WAIT_BUYER_CONFIRM_GOODS"

    partial = spec.refund(trade_no, f"r-{uuid.uuid4().hex}", 300)
    assert spec.last_status == 201
    assert partial["refund"]["amount"] == 300
    assert partial["refund"]["trade_no"] == trade_no
    assert partial["trade"]["refunded_amount"] == 300
    assert partial["trade"]["status"] == "WAIT_BUYER_CONFIRM_GOODS"

    with pytest.raises(SpecApiError) as too_much:
        spec.refund(trade_no, f"r-{uuid.uuid4().hex}", AMOUNT)
    assert 400 <= too_much.value.status < 500

    full = spec.refund(trade_no, f"r-{uuid.uuid4().hex}", AMOUNT - 300)
    assert full["trade"]["refunded_amount"] == AMOUNT
    assert full["trade"]["status"] == "TRADE_CLOSED"

    final = spec.get_trade(trade_no)
    assert sorted(r["amount"] for r in final["refunds"]) == [300, AMOUNT - 300]
    # Every answer above, errors included, carried a verified signature.
    assert spec.verified_responses >= 12


def test_direct_trade_settles_at_payment(spec: SpecMerchantClient,
                                         funded_customer: Any) -> None:
    trade = _new_trade(spec, mode="direct")
    paid = funded_customer().pay(trade["trade_no"])
    assert paid["status"] == "TRADE_SUCCESS"
    assert spec.get_trade(trade["trade_no"])["status"] == "TRADE_SUCCESS"
    refunded = spec.refund(trade["trade_no"], f"r-{uuid.uuid4().hex}", 100)
    assert refunded["refund"]["amount"] == 100


def test_error_responses_are_signed_problems(spec: SpecMerchantClient) -> None:
    with pytest.raises(SpecApiError) as missing:
        spec.get_trade("T-does-not-exist")
    assert missing.value.status == 404
    assert {"type", "title", "status", "detail", "code"} <= missing.value.body.keys()


def test_tampered_response_fails_verification(spec: SpecMerchantClient) -> None:
    keys = spec.fetch_platform_keys()
    trade = _new_trade(spec)
    path = f"/v1/trades/{trade['trade_no']}"
    resp = spec.raw("GET", path)
    assert resp.status == 200
    verify_response(resp, keys)

    tampered_body = resp.body.replace(b'"amount":1000', b'"amount":1')
    if tampered_body == resp.body:  # the server may put spaces after colons
        tampered_body = resp.body.replace(b"1000", b"1", 1)
    assert tampered_body != resp.body
    with pytest.raises(SpecSignatureError):
        verify_response(replace(resp, body=tampered_body),
                        keys)
    with pytest.raises(SpecSignatureError):
        verify_response(replace(resp, status=404), keys)
    with pytest.raises(SpecSignatureError):
        verify_response(replace(resp, path_qs=path + "x"), keys)
    unsigned = httpx.Headers({k: v for k, v in resp.headers.items()
                              if k.lower() != "anfu-signature"})
    with pytest.raises(SpecSignatureError):
        verify_response(replace(resp, headers=unsigned), keys)
    with pytest.raises(SpecSignatureError):  # bound to this request's nonce
        verify_response(replace(resp, request_nonce=resp.request_nonce[::-1]), keys)
    with pytest.raises(SpecSignatureError):  # and to this merchant
        verify_response(replace(resp, merchant_id="m_someone_else"), keys)


def _send(spec: SpecMerchantClient, authorization: str, path: str) -> SpecResponse:
    reply = httpx.get(spec.base_url + path, headers={"Authorization": authorization})
    keys = spec.platform_keys or spec.fetch_platform_keys()
    try:
        claimed = parse_params(authorization.removeprefix(LABEL))
    except SpecSignatureError:
        claimed = {}
    bound = SpecResponse(reply.status_code, path, reply.headers, reply.content,
                         claimed.get("merchant_id", "-"), claimed.get("nonce", "-"))
    try:  # bound to what the header claims, when the platform could read it
        verify_response(bound, keys)
        return bound
    except SpecSignatureError:
        unbound = replace(bound, merchant_id="-", request_nonce="-")
        verify_response(unbound, keys)
        return unbound


def test_refused_requests_name_the_failed_check(spec: SpecMerchantClient) -> None:
    path = "/v1/balance"
    good = spec.authorization("GET", path, b"")
    assert _send(spec, good, path).status == 200
    # The same nonce again is a replay.
    replay = _send(spec, good, path)
    assert replay.status == 401 and replay.json()["code"] == "nonce_replayed"

    # A signature over another path does not verify for this one.
    wrong = spec.authorization("GET", "/v1/statement", b"")
    refused = _send(spec, wrong, path)
    assert refused.status == 401 and refused.json()["code"] == "signature_invalid"

    stale = spec.authorization("GET", path, b"", timestamp=str(int(time.time()) - 3600))
    skewed = _send(spec, stale, path)
    assert skewed.status == 401 and skewed.json()["code"] == "timestamp_skew"

    # A signature whose bytes are damaged is refused too.
    head, _, sig = spec.authorization("GET", path, b"").rpartition('signature="')
    raw = bytearray(base64.b64decode(sig.rstrip('"')))
    raw[0] ^= 1
    damaged = f'{head}signature="{base64.b64encode(bytes(raw)).decode()}"'
    assert _send(spec, damaged, path).status == 401
