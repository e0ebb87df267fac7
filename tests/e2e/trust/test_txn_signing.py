"""Transaction signing (book 3.6) through the real mobile zone: a phone with a device
certificate signs every payment, transfer and withdrawal; the platform refuses a signature
over anything else, keeps the evidence, and uses each challenge once."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from anfu.identity.txn_signing import TxnFacts, TxnOperation
from anfu.sdk import ApiError, WalletClient
from anfu.sdk.txn import signature_header
from tests.support import (
    PASSWORD,
    RunningPlatform,
    create_merchant,
    new_customer,
    start_platform,
)

Json = dict[str, Any]
POLICY_ALWAYS = """
[assurance]
max_age_s = { 1 = 2592000, 2 = 43200, 3 = 300 }
[operations]
"wallet.read" = 1
"trade.read" = 1
"trade.pay" = 1
"trade.confirm" = 1
"transfer.create" = 1
"topup.create" = 1
"withdrawal.create" = 1
"device.add" = 1
"device.revoke" = 1
"device.list" = 1
"certificate.issue" = 2
"session.step_up" = 1
"session.logout" = 1
"session.list" = 1
[transaction_signing]
mode = "always"
threshold = { default = 0, CNY = 1000 }
"""


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    running = start_platform(tmp_path_factory.mktemp("txn_signing"))
    yield running
    running.stop()


def certified(platform: RunningPlatform, amount: int = 100_000) -> WalletClient:
    client: WalletClient = new_customer(platform, amount=amount)
    client.request_certificate()
    return client


def shop_trade(platform: RunningPlatform, amount: int, name: str = "Lotus Tea House") -> Json:
    from anfu.sdk import MerchantClient

    m = create_merchant(platform.admin, name=name)
    shop = MerchantClient(platform.merchant, m.merchant_id, m.key_id, m.alg,
                          m.private_key_pem)
    trade = shop.create_trade(out_trade_no="o" + secrets.token_hex(6), amount=amount,
                              currency="CNY", subject="tea", mode="direct")
    return {**trade, "merchant_name": name}


def raw_pay(client: WalletClient, trade_no: str, signature: str | None = None) -> httpx.Response:
    """A payment as a phone sends it, at level 3 (a first payment to a new merchant)."""
    if client.acr != 3:
        client.raise_assurance(3)
        client.acr = 3
    path = f"/v1/trades/{trade_no}/pay"
    headers = client.auth_headers("POST", path)
    if signature is not None:
        headers["Anfu-Txn-Signature"] = signature
    return httpx.post(client.base_url + path, headers=headers, timeout=10)


def problem(reply: httpx.Response, status: int, code: str) -> Json:
    assert reply.status_code == status, reply.text
    body: Json = reply.json()
    assert body["code"] == code, body
    return body


def payment_facts(trade: Json, amount: int | None = None) -> TxnFacts:
    return TxnFacts(TxnOperation.PAYMENT, trade["trade_no"], amount or trade["amount"],
                    "CNY", trade["merchant_id"], trade["merchant_name"])


def test_a_certified_phone_signs_the_payment_it_shows(platform: RunningPlatform) -> None:
    buyer = certified(platform)
    trade = shop_trade(platform, 600)
    asked = problem(raw_pay(buyer, trade["trade_no"]), 401, "txn_signature_required")
    assert asked["transaction"] == payment_facts(trade).public()
    lines = asked["signing_string"].split("\n")
    assert lines[:8] == ["ANFU-TXN-V1", "payment", trade["trade_no"], "600", "CNY",
                         trade["merchant_id"], "Lotus Tea House", asked["challenge"]]
    assert asked["max_attempts"] == 5
    assert buyer.device_key is not None
    header = signature_header(buyer.device_key, payment_facts(trade), asked["challenge"])
    paid = raw_pay(buyer, trade["trade_no"], header)
    assert paid.status_code == 200, paid.text
    assert paid.json()["status"] == "TRADE_SUCCESS"
    assert len(paid.headers["Anfu-Txn-Challenge"]) >= 40  # the next one, ready to sign
    evidence = httpx.get(f"{platform.admin}/v1/txn-evidence/{trade['trade_no']}",
                         headers=platform.admin_headers).json()
    assert evidence["verified"] is True and evidence["operation"] == "payment"
    assert base64.b64decode(evidence["signed_bytes"]).startswith(b"ANFU-TXN-V1\npayment\n")
    assert evidence["certificate_serial"] and evidence["device_id"] == buyer.device_id


def test_the_sdk_signs_payments_transfers_and_withdrawals(platform: RunningPlatform) -> None:
    shown: list[Json] = []
    buyer = certified(platform)
    buyer.approve_transaction = lambda facts: shown.append(facts) or True
    payee = new_customer(platform)
    trade = shop_trade(platform, 700)
    assert buyer.pay(trade["trade_no"])["status"] == "TRADE_SUCCESS"
    sent = buyer.transfer(300, "CNY", to_user_id=payee.user_id, memo="lunch")
    assert sent["status"] == "SUCCESS"
    out = buyer.withdraw(200, "CNY")
    assert out["status"] == "succeeded"
    assert [f["operation"] for f in shown] == ["payment", "transfer", "withdrawal"]
    assert shown[1]["payee_id"] == payee.user_id and shown[1]["txn_id"] == sent["transfer_no"]
    assert shown[2]["payee_name"] == "your bank account" and shown[2]["txn_id"] == out["id"]
    assert buyer.balance("CNY") == 100_000 - 700 - 300 - 200


def test_a_declined_transaction_moves_nothing(platform: RunningPlatform) -> None:
    buyer = certified(platform)
    buyer.approve_transaction = lambda facts: False
    trade = shop_trade(platform, 900)
    with pytest.raises(Exception, match="declined"):
        buyer.pay(trade["trade_no"])
    assert buyer.balance("CNY") == 100_000


def test_a_signature_over_another_amount_or_payee_is_refused(platform: RunningPlatform) -> None:
    buyer = certified(platform)
    trade = shop_trade(platform, 600)
    assert buyer.device_key is not None
    asked = problem(raw_pay(buyer, trade["trade_no"]), 401, "txn_signature_required")
    for forged in (payment_facts(trade, amount=6),
                   TxnFacts(TxnOperation.PAYMENT, trade["trade_no"], 600, "CNY",
                            trade["merchant_id"], "Someone Else")):
        header = signature_header(buyer.device_key, forged, asked["challenge"])
        refused = problem(raw_pay(buyer, trade["trade_no"], header), 401,
                          "txn_signature_invalid")
        assert refused["remaining_attempts"] in (4, 3)
    # The challenge was bound to this trade: using it for another one burns it.
    other = shop_trade(platform, 601)
    header = signature_header(buyer.device_key, payment_facts(other), asked["challenge"])
    problem(raw_pay(buyer, other["trade_no"], header), 401, "txn_facts_changed")
    header = signature_header(buyer.device_key, payment_facts(trade), asked["challenge"])
    problem(raw_pay(buyer, trade["trade_no"], header), 401, "txn_challenge_locked")
    assert buyer.balance("CNY") == 100_000


def test_five_failures_lock_the_challenge(platform: RunningPlatform) -> None:
    buyer = certified(platform)
    trade = shop_trade(platform, 600)
    assert buyer.device_key is not None
    asked = problem(raw_pay(buyer, trade["trade_no"]), 401, "txn_signature_required")
    wrong = signature_header(buyer.device_key, payment_facts(trade, amount=1),
                             asked["challenge"])
    for left in (4, 3, 2, 1, 0):
        refused = problem(raw_pay(buyer, trade["trade_no"], wrong), 401,
                          "txn_signature_invalid")
        assert refused["remaining_attempts"] == left
    right = signature_header(buyer.device_key, payment_facts(trade), asked["challenge"])
    problem(raw_pay(buyer, trade["trade_no"], right), 401, "txn_challenge_locked")


def test_a_challenge_is_used_once_and_chains_to_the_next(platform: RunningPlatform) -> None:
    buyer = certified(platform)
    assert buyer.device_key is not None
    path = "/v1/txn-challenges"
    fresh = httpx.post(buyer.base_url + path, headers=buyer.auth_headers("POST", path)).json()
    first, second = shop_trade(platform, 100), shop_trade(platform, 200)
    header = signature_header(buyer.device_key, payment_facts(first), fresh["challenge"])
    paid = raw_pay(buyer, first["trade_no"], header)
    assert paid.status_code == 200, paid.text
    again = signature_header(buyer.device_key, payment_facts(second), fresh["challenge"])
    problem(raw_pay(buyer, second["trade_no"], again), 401, "txn_challenge_used")
    following = paid.headers["Anfu-Txn-Challenge"]
    header = signature_header(buyer.device_key, payment_facts(second), following)
    assert raw_pay(buyer, second["trade_no"], header).status_code == 200
    # A retry of the first payment with its used challenge answers as before.
    assert raw_pay(buyer, first["trade_no"],
                   signature_header(buyer.device_key, payment_facts(first),
                                    fresh["challenge"])).status_code == 200
    assert buyer.balance("CNY") == 100_000 - 300


def test_without_a_certificate_the_step_up_rules_apply(platform: RunningPlatform) -> None:
    buyer: WalletClient = new_customer(platform, amount=10_000)
    trade = shop_trade(platform, 500)
    assert buyer.pay(trade["trade_no"])["status"] == "TRADE_SUCCESS"


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    home = tmp_path_factory.mktemp("txn_always")
    policy = Path(home) / "policy.toml"
    policy.write_text(POLICY_ALWAYS)
    running = start_platform(home, ANFU_AUTH_POLICY=str(policy))
    yield running
    running.stop()


def test_always_mode_needs_a_certificate_above_the_threshold(strict: RunningPlatform) -> None:
    buyer: WalletClient = new_customer(strict, amount=10_000)
    small, large = shop_trade(strict, 1000), shop_trade(strict, 1001)
    assert buyer.pay(small["trade_no"])["status"] == "TRADE_SUCCESS"  # at the threshold
    with pytest.raises(ApiError) as refused:
        buyer.pay(large["trade_no"])
    assert refused.value.code == "certificate_required"
    buyer.request_certificate()
    assert buyer.pay(large["trade_no"])["status"] == "TRADE_SUCCESS"
    # A revoked certificate (the device is revoked) signs nothing more.
    other = shop_trade(strict, 2000)
    buyer.revoke_device(buyer.device_id or "")
    with pytest.raises(ApiError) as gone:
        buyer.pay(other["trade_no"])
    assert gone.value.code in ("session_revoked", "certificate_required")


def test_certificate_login(platform: RunningPlatform, tmp_path: Path) -> None:
    client = certified(platform)
    keystore = tmp_path / "device.json"
    client.save_keystore(keystore, b"keystore passphrase")
    phone = WalletClient.from_keystore(platform.mobile, keystore, b"keystore passphrase",
                                       password=lambda challenge: PASSWORD)
    session = phone.login_with_certificate()
    assert session["token_type"] == "DPoP"
    me = phone.me()
    assert {"x509", "hwk"} <= set(me["amr"]) and me["acr"] == 1
    assert phone.balance("CNY") == 100_000
    # Paying needs level 2: a step-up (password) and then the transaction signature.
    trade = shop_trade(platform, 300)
    assert phone.pay(trade["trade_no"])["status"] == "TRADE_SUCCESS"
    # A certificate that does not chain to the platform CA is refused.
    bogus = client.certificate_pem or ""
    body = bogus.replace(bogus.splitlines()[5], bogus.splitlines()[5][::-1])
    reply = httpx.post(platform.mobile + "/v1/sessions/certificate", json={"certificate": body})
    assert reply.status_code in (400, 401) and reply.json()["code"].startswith("certificate_")
