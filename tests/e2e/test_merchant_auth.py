"""Every check of a signed merchant request, each refused with 401 and a code naming it;
a refused request writes nothing. Keys in all four algorithms, rotation and revocation
(through the admin API and the CLI)."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from anfu import crypto
from anfu.sdk import ApiError, MerchantClient
from anfu.sigwire import format_authorization, new_nonce, request_signing_bytes
from tests.support import ROOT, MerchantIdentity, RunningPlatform


def signed_post(url: str, path: str, body: dict[str, Any], *, merchant_id: str, key_id: str,
                alg: str, key: crypto.PrivateKey, timestamp: int | None = None,
                nonce: str | None = None, sign_path: str | None = None,
                tamper: bool = False) -> httpx.Response:
    raw = json.dumps(body).encode()
    ts = str(int(time.time()) if timestamp is None else timestamp)
    nonce = nonce or new_nonce()
    signature = key.sign(request_signing_bytes("POST", sign_path or path, ts, nonce, raw))
    if tamper:
        signature = bytes([signature[0] ^ 1]) + signature[1:]
    header = format_authorization(merchant_id=merchant_id, key_id=key_id, alg=alg,
                                  timestamp=ts, nonce=nonce, signature=signature)
    return httpx.post(url + path, content=raw, headers={"Authorization": header,
                                                         "Content-Type": "application/json"})


@pytest.fixture
def merchant(make_merchant: Callable[..., MerchantIdentity]) -> tuple[MerchantIdentity,
                                                                     crypto.PrivateKey]:
    m = make_merchant()
    return m, crypto.load_private_key(m.alg, m.private_key_pem)


def trade_body(out: str) -> dict[str, Any]:
    return {"out_trade_no": out, "amount": 100, "currency": "CNY", "subject": "x",
            "mode": "escrow"}


def assert_refused(reply: httpx.Response, code: str) -> None:
    assert reply.status_code == 401, reply.text
    assert reply.headers["content-type"] == "application/problem+json"
    assert reply.json()["code"] == code
    assert "anfu-signature" in reply.headers  # refusals are signed too


def assert_not_created(platform_urls: RunningPlatform, m: MerchantIdentity,
                       key: crypto.PrivateKey, out: str) -> None:
    client = MerchantClient(platform_urls.merchant, m.merchant_id, m.key_id, m.alg,
                            m.private_key_pem)
    with pytest.raises(ApiError) as info:
        client.find_trade(out)
    assert info.value.code == "trade_not_found"


def test_each_check_is_named(platform_urls: RunningPlatform,
                             merchant: tuple[MerchantIdentity, crypto.PrivateKey]) -> None:
    m, key = merchant
    url = platform_urls.merchant
    ids = {"merchant_id": m.merchant_id, "key_id": m.key_id, "alg": m.alg, "key": key}
    cases = [
        ("unknown-merchant", {**ids, "merchant_id": "mnobody"}, {}, "merchant_unknown"),
        ("unknown-key", {**ids, "key_id": "knothing"}, {}, "key_unknown"),
        ("bad-signature", ids, {"tamper": True}, "signature_invalid"),
        ("wrong-path", ids, {"sign_path": "/v1/trades?x=1"}, "signature_invalid"),
        ("old", ids, {"timestamp": int(time.time()) - 310}, "timestamp_skew"),
        ("future", ids, {"timestamp": int(time.time()) + 310}, "timestamp_skew"),
        ("alg", {**ids, "alg": "rsa-sha256"}, {}, "algorithm_mismatch"),
    ]
    for out, who, how, code in cases:
        assert_refused(signed_post(url, "/v1/trades", trade_body(out), **who, **how), code)
        assert_not_created(platform_urls, m, key, out)
    reply = httpx.post(url + "/v1/trades", json=trade_body("no-header"))
    assert_refused(reply, "signature_header_missing")
    reply = httpx.post(url + "/v1/trades", json=trade_body("junk"),
                       headers={"Authorization": "ANFU-SIG-V1 merchant_id=1"})
    assert_refused(reply, "signature_header_malformed")
    assert_not_created(platform_urls, m, key, "junk")


def test_replayed_nonce_is_refused(platform_urls: RunningPlatform,
                                   merchant: tuple[MerchantIdentity, crypto.PrivateKey]) -> None:
    m, key = merchant
    ids = {"merchant_id": m.merchant_id, "key_id": m.key_id, "alg": m.alg, "key": key}
    nonce = new_nonce()
    first = signed_post(platform_urls.merchant, "/v1/trades", trade_body("replay-1"), **ids,
                        nonce=nonce)
    assert first.status_code == 201
    again = signed_post(platform_urls.merchant, "/v1/trades", trade_body("replay-2"), **ids,
                        nonce=nonce)
    assert_refused(again, "nonce_replayed")
    assert_not_created(platform_urls, m, key, "replay-2")


@pytest.mark.parametrize("alg", ["ed25519", "ecdsa-p256-sha256", "rsa-sha256", "sm2-sm3"])
def test_every_algorithm_signs_trades(alg: str, shop_factory: Callable[..., Any]) -> None:
    shop = shop_factory(alg=alg)
    trade = shop.create_trade(out_trade_no=f"alg-{alg}-{time.time_ns()}", amount=100,
                              currency="CNY", subject="x", mode="escrow")
    assert shop.get_trade(trade["trade_no"])["status"] == "WAIT_BUYER_PAY"


def test_rotation_and_revocation_via_admin(platform_urls: RunningPlatform,
                                           merchant: tuple[MerchantIdentity,
                                                           crypto.PrivateKey]) -> None:
    m, _ = merchant
    new_key = crypto.generate_private_key("ecdsa-p256-sha256")
    added = httpx.post(f"{platform_urls.admin}/v1/merchants/{m.merchant_id}/keys",
                       headers=platform_urls.admin_headers, json={
        "alg": "ecdsa-p256-sha256", "public_key_pem": new_key.public_key().public_pem()})
    assert added.status_code == 201
    new_id = added.json()["key_id"]
    old = MerchantClient(platform_urls.merchant, m.merchant_id, m.key_id, m.alg,
                         m.private_key_pem)
    new = MerchantClient(platform_urls.merchant, m.merchant_id, new_id, "ecdsa-p256-sha256",
                         new_key.private_pem(None))
    assert old.balance()["merchant_id"] == new.balance()["merchant_id"]
    revoked = httpx.post(f"{platform_urls.admin}/v1/merchants/{m.merchant_id}/keys/"
                         f"{m.key_id}/revoke", headers=platform_urls.admin_headers)
    assert revoked.json()["status"] == "revoked"
    with pytest.raises(ApiError) as info:
        old.balance()
    assert (info.value.status, info.value.code) == (401, "key_revoked")
    assert new.balance()["merchant_id"] == m.merchant_id


def test_weak_or_mismatched_keys_are_refused_at_registration(
        platform_urls: RunningPlatform) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()
    pem = weak.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    reply = httpx.post(f"{platform_urls.admin}/v1/merchants",
                       headers=platform_urls.admin_headers, json={
        "name": "weak", "alg": "rsa-sha256", "public_key_pem": pem})
    assert (reply.status_code, reply.json()["code"]) == (400, "invalid_public_key")
    ed = crypto.generate_private_key("ed25519").public_key().public_pem()
    reply = httpx.post(f"{platform_urls.admin}/v1/merchants",
                       headers=platform_urls.admin_headers, json={
        "name": "mismatch", "alg": "sm2-sm3", "public_key_pem": ed})
    assert (reply.status_code, reply.json()["code"]) == (400, "invalid_public_key")


def test_cli_creates_lists_rotates_and_revokes(tmp_path: Path,
                                               platform_urls: RunningPlatform) -> None:
    env = platform_urls.env
    key = crypto.generate_private_key("sm2-sm3")
    pem = tmp_path / "merchant.pem"
    pem.write_text(key.public_key().public_pem())

    def cli(*args: str) -> Any:
        done = subprocess.run([sys.executable, "-m", "anfu.cli", *args], env=env, cwd=ROOT,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    created = cli("merchants", "create", "--name", "CLI Shop", "--alg", "sm2-sm3",
                  "--public-key", str(pem), "--fee-bps", "60")
    assert created["merchant_id"].startswith("m") and created["key_id"].startswith("k")
    shop = MerchantClient(platform_urls.merchant, created["merchant_id"], created["key_id"],
                          "sm2-sm3", key.private_pem(None))
    assert shop.balance()["balances"] == []
    listed = cli("merchants", "list")
    assert created["merchant_id"] in {m["merchant_id"] for m in listed}
    pem2 = tmp_path / "second.pem"
    key2 = crypto.generate_private_key("ed25519")
    pem2.write_text(key2.public_key().public_pem())
    added = cli("merchants", "add-key", created["merchant_id"], "--alg", "ed25519",
                "--public-key", str(pem2))
    cli("merchants", "revoke-key", created["merchant_id"], created["key_id"])
    with pytest.raises(ApiError) as info:
        shop.balance()
    assert info.value.code == "key_revoked"
    shop2 = MerchantClient(platform_urls.merchant, created["merchant_id"], added["key_id"],
                           "ed25519", key2.private_pem(None))
    assert shop2.balance()["merchant_id"] == created["merchant_id"]


def test_security_failures_are_logged_without_secrets(platform_urls: RunningPlatform,
                                                      merchant: tuple[MerchantIdentity,
                                                                      crypto.PrivateKey]
                                                      ) -> None:
    m, key = merchant
    reply = signed_post(platform_urls.merchant, "/v1/trades", trade_body("logged"),
                        merchant_id=m.merchant_id, key_id=m.key_id, alg=m.alg, key=key,
                        tamper=True)
    sent_signature = reply.request.headers["authorization"].split('signature="')[1][:40]
    logs = platform_urls.logs()
    assert '"code":"signature_invalid"' in logs
    assert sent_signature not in logs
    assert base64.b64encode(b"x")  # keep import used
