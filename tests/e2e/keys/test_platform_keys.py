"""Platform keys through real platform processes: keys on a SoftHSM2 token
(ANFU_KEYSTORE=pkcs11) signing merchant responses and notifications, rotation from the CLI
while the platform runs, and a home made before the keystore keeping its published key."""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from anfu import crypto
from anfu.crypto import platform_sig
from anfu.keys import KEY_LIFETIME_S
from anfu.sdk import MerchantClient, verify_notification
from anfu.sigwire import parse_signature_header, response_signing_bytes
from tests.e2e.keys.softhsm import AVAILABLE, MISSING, Token, make_token, needs_softhsm
from tests.support import (
    ROOT,
    NotifyReceiver,
    RunningPlatform,
    create_merchant,
    eventually,
    new_customer,
    start_platform,
)

PURPOSES = {"response": "ed25519", "receipt": "ed25519", "log": "ecdsa-p256-sha256"}


def anfu(platform: RunningPlatform, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "anfu.cli", *args], env=platform.env,
                          cwd=ROOT, capture_output=True, text=True, timeout=120)


def keys_of(url: str) -> list[dict[str, Any]]:
    reply = httpx.get(f"{url}/v1/platform/keys", timeout=10)
    assert reply.status_code == 200, reply.text
    keys: list[dict[str, Any]] = reply.json()["keys"]
    return keys


def shop(platform: RunningPlatform, notify_url: str | None = None) -> MerchantClient:
    m = create_merchant(platform.admin, notify_url=notify_url)
    return MerchantClient(platform.merchant, m.merchant_id, m.key_id, m.alg, m.private_key_pem)


def response_key_id(reply: httpx.Response) -> str:
    return parse_signature_header(reply.headers["anfu-signature"]).key_id


@pytest.fixture(scope="module")
def token_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    if not AVAILABLE:
        pytest.skip(MISSING)
    token: Token = make_token(tmp_path_factory.mktemp("softhsm"))
    running = start_platform(tmp_path_factory.mktemp("keys_pkcs11"), **token.env())
    yield running
    running.stop()


@needs_softhsm
def test_keys_on_a_token_are_published_on_both_zones(token_platform: RunningPlatform) -> None:
    merchant_zone, mobile_zone = keys_of(token_platform.merchant), keys_of(token_platform.mobile)
    assert merchant_zone == mobile_zone
    assert {k["purpose"]: k["alg"] for k in merchant_zone} == PURPOSES
    for key in merchant_zone:
        assert key["not_after"] - key["not_before"] == KEY_LIFETIME_S
        platform_sig.spki_der(key["public_key_pem"])  # a readable public key
    # No private key went to files: the file keystore folder stays empty.
    folder = token_platform.home / "keys" / "platform"
    assert not folder.exists() or not any(folder.iterdir())
    listed = anfu(token_platform, "keys", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)["keys"]
    assert {r["backend"] for r in rows} == {"pkcs11"}
    assert {r["key_id"] for r in rows if r["current"]} == {k["key_id"] for k in merchant_zone}


@needs_softhsm
def test_token_keys_sign_merchant_responses_and_notifications(
        token_platform: RunningPlatform) -> None:
    receiver = NotifyReceiver().start()
    try:
        merchant = shop(token_platform, notify_url=receiver.url)
        keys = merchant.platform_keys()  # fetched, and its own signature checked
        [response_key] = [k for k in keys if k["purpose"] == "response"]
        trade = merchant.create_trade(out_trade_no="k" + secrets.token_hex(6), amount=300,
                                      currency="CNY", subject="keys on a token",
                                      mode="escrow")  # the SDK checks the response signature
        raw = httpx.get(f"{token_platform.merchant}/v1/platform/keys", timeout=10)
        assert response_key_id(raw) == response_key["key_id"]
        buyer = new_customer(token_platform, amount=1_000)
        buyer.pay(trade["trade_no"])
        posts = eventually(lambda: [r for r in receiver.received if b"trade.paid" in r.body],
                           timeout=30)
        event = verify_notification(headers=posts[0].headers, body=posts[0].body,
                                    path_qs=posts[0].path, platform_keys=keys)
        assert event["type"] == "trade.paid"
    finally:
        receiver.stop()


@needs_softhsm
def test_rotation_from_the_cli_reaches_the_running_platform(
        token_platform: RunningPlatform) -> None:
    merchant = shop(token_platform)
    merchant.platform_keys()
    before = {k["purpose"]: k for k in keys_of(token_platform.merchant)}
    old_signature_reply = httpx.get(f"{token_platform.merchant}/v1/platform/keys", timeout=10)

    rotated = anfu(token_platform, "keys", "rotate", "--purpose", "response")
    assert rotated.returncode == 0, rotated.stderr
    new = json.loads(rotated.stdout)
    assert new["purpose"] == "response" and new["key_id"] != before["response"]["key_id"]

    def signed_with_new_key() -> bool:
        reply = httpx.get(f"{token_platform.merchant}/v1/platform/keys", timeout=10)
        return response_key_id(reply) == new["key_id"]

    eventually(signed_with_new_key, timeout=10)
    published = keys_of(token_platform.merchant)
    ids = [k["key_id"] for k in published if k["purpose"] == "response"]
    assert ids == [before["response"]["key_id"], new["key_id"]]  # the old key stays
    assert keys_of(token_platform.mobile) == published
    # A response signed before the rotation still verifies with the published old key.
    header = parse_signature_header(old_signature_reply.headers["anfu-signature"])
    platform_sig.verify(before["response"]["alg"], before["response"]["public_key_pem"],
                        response_signing_bytes(200, "/v1/platform/keys", header.timestamp,
                                               header.nonce, old_signature_reply.content),
                        header.signature)
    # A client that knew only the old keys learns the new one and carries on.
    trade = merchant.create_trade(out_trade_no="r" + secrets.token_hex(6), amount=100,
                                  currency="CNY", subject="after rotation", mode="escrow")
    assert trade["status"] == "WAIT_BUYER_PAY"
    # The other rings did not move.
    after = {k["key_id"] for k in published if k["purpose"] != "response"}
    assert after == {before["receipt"]["key_id"], before["log"]["key_id"]}
    # The rotation is in the transparency log.
    entry = eventually(lambda: rotation_entry(token_platform.mobile, new["key_id"]), timeout=30)
    assert entry["purpose"] == "response" and entry["backend"] == "pkcs11"
    assert entry["previous_key_id"] == before["response"]["key_id"]
    assert entry["public_key_pem"] == new["public_key_pem"]


def rotation_entry(url: str, key_id: str) -> dict[str, Any] | None:
    size = httpx.get(f"{url}/log/v1/get-sth", timeout=10).json()["tree_size"]
    if not size:
        return None
    start = max(0, size - 1000)
    reply = httpx.get(f"{url}/log/v1/get-entries", params={"start": start, "end": size - 1},
                      timeout=10)
    assert reply.status_code == 200, reply.text
    for row in reply.json()["entries"]:
        if row["kind"] != "key.rotated":
            continue
        label, _, text = base64.b64decode(row["leaf_input"]).partition(b"\n")
        assert label == b"ANFU-LOG-V1"
        body = json.loads(text)["body"]
        if body.get("key_id") == key_id:
            return dict(body)
    return None


@needs_softhsm
def test_rotate_refuses_an_unknown_purpose(token_platform: RunningPlatform) -> None:
    refused = anfu(token_platform, "keys", "rotate", "--purpose", "banana")
    assert refused.returncode == 2 and "purpose_unknown" in refused.stderr


def test_a_home_from_before_the_keystore_keeps_its_published_key(tmp_path: Path) -> None:
    """Homes made by earlier versions: keys/platform-keys.json and keys/<key_id>.pem."""
    home = tmp_path / "oldhome"
    keys = home / "keys"
    keys.mkdir(parents=True)
    passphrase = "an old passphrase"
    (home / "secrets.json").write_text(json.dumps({
        "token_secret": secrets.token_urlsafe(32), "key_passphrase": passphrase,
        "data_key": secrets.token_urlsafe(32)}))
    key = crypto.generate_private_key("ed25519")
    made = float(int(time.time()) - 86_400)
    entry = {"key_id": "pk00aa11bb22cc", "alg": "ed25519",
             "public_key_pem": key.public_key().public_pem(), "not_before": made,
             "not_after": made + KEY_LIFETIME_S}
    (keys / "pk00aa11bb22cc.pem").write_text(key.private_pem(passphrase.encode()))
    (keys / "platform-keys.json").write_text(json.dumps({"keys": [entry]}))

    running = start_platform(home)
    try:
        published = keys_of(running.merchant)
        [response] = [k for k in published if k["purpose"] == "response"]
        assert response == {**entry, "purpose": "response"}
        reply = httpx.get(f"{running.merchant}/v1/platform/keys", timeout=10)
        assert response_key_id(reply) == entry["key_id"]
        # A merchant that pinned the old key out of band still verifies every response.
        m = create_merchant(running.admin)
        pinned = MerchantClient(running.merchant, m.merchant_id, m.key_id, m.alg,
                                m.private_key_pem, platform_keys=[entry])
        pinned.create_trade(out_trade_no="o" + secrets.token_hex(6), amount=100,
                            currency="CNY", subject="old home", mode="escrow")
    finally:
        running.stop()
    assert (keys / "platform" / "pk00aa11bb22cc.p8.pem").exists()


@needs_softhsm
def test_softhsm_init_makes_a_token_the_platform_can_use(tmp_path: Path) -> None:
    made = subprocess.run([sys.executable, "-m", "anfu.cli", "keys", "softhsm-init",
                           "--folder", str(tmp_path / "hsm"), "--label", "dev",
                           "--pin", "2468", "--so-pin", "1357"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    conf = tmp_path / "hsm" / "softhsm2.conf"
    assert f"export SOFTHSM2_CONF={conf}" in made.stdout
    running = start_platform(tmp_path / "home", SOFTHSM2_CONF=str(conf), ANFU_KEYSTORE="pkcs11",
                             ANFU_PKCS11_TOKEN="dev", ANFU_PKCS11_PIN="2468")
    try:
        assert {k["purpose"] for k in keys_of(running.mobile)} == set(PURPOSES)
    finally:
        running.stop()
