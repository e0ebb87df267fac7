"""Attacks on the money path, replayed through the real listeners (issue 16 items 1, 2 and
10, issue 9 §3): one Idempotency-Key with two amounts, a bank whose answer names another
operation, a transfer racing the payee's sign-up, a revoked device certificate, and answers
that tell one party's facts to another."""

from __future__ import annotations

import secrets
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from anfu.sdk import ApiError, MerchantClient, WalletClient
from tests.e2e.identity.wire import login_with_sim
from tests.support import (
    RunningPlatform,
    admin_headers,
    create_merchant,
    new_customer,
    start_platform,
)

Json = dict[str, Any]


@pytest.fixture(scope="module")
def slow_bank(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    """A bank that takes its time, so that a second request arrives while the first one's
    bank call is in flight (the window the attack used)."""
    running = start_platform(tmp_path_factory.mktemp("slow_bank"), ANFU_BANK_LATENCY_MS="300")
    yield running
    running.stop()


def raw_move(client: WalletClient, path: str, body: Json, key: str) -> httpx.Response:
    headers = {**client.auth_headers("POST", path), "Idempotency-Key": key}
    return httpx.post(client.base_url + path, json=body, headers=headers, timeout=30)


def race(client: WalletClient, path: str, key: str, amounts: list[int]) -> list[httpx.Response]:
    """The same key sent with each amount at once (proofs made first: one DPoP jti each)."""
    prepared = [({**client.auth_headers("POST", path), "Idempotency-Key": key},
                 {"amount": a, "currency": "CNY"}) for a in amounts]
    with ThreadPoolExecutor(len(prepared)) as pool:
        return list(pool.map(lambda hb: httpx.post(client.base_url + path, json=hb[1],
                                                   headers=hb[0], timeout=30), prepared))


@pytest.mark.parametrize("path", ["/v1/withdrawals", "/v1/topups"])
def test_one_key_two_amounts_books_what_the_bank_did(slow_bank: RunningPlatform,
                                                     path: str) -> None:
    client = new_customer(slow_bank, amount=10_000_000)
    client.raise_assurance(3)
    start = client.balance("CNY")
    booked = 0
    for n in range(6):
        small, large = 1_100 + n, 999_900 + n
        replies = race(client, path, str(uuid.uuid4()), [small, large])
        codes = sorted(r.status_code for r in replies)
        # Racing or not, the second amount meets the first one's reservation or answer.
        assert codes == [201, 409], [r.text for r in replies]
        won = {r.json()["amount"] for r in replies if r.status_code == 201}
        assert len(won) == 1, won  # one key, one operation, one amount
        for r in replies:
            if r.status_code == 409:
                assert r.json()["code"] == "idempotency_key_reused"
                continue
            assert r.json()["status"] == "succeeded"
            # What the bank did (its own statement) is what the ledger booked.
            check = httpx.get(f"{slow_bank.admin}/v1/bank-operations/{r.json()['id']}",
                              headers=admin_headers(slow_bank.admin), timeout=10).json()
            assert check["reconciled"] is True, check
            assert check["bank"]["amount"] == r.json()["amount"]
        booked += won.pop()
    sign = -1 if path == "/v1/withdrawals" else 1
    assert client.balance("CNY") == start + sign * booked
    entries = client.statement("CNY", limit=500)["entries"]
    assert sum(e["amount"] for e in entries) == client.balance("CNY")


def test_a_key_reused_after_its_answer_is_refused_before_the_bank(
        platform_urls: RunningPlatform) -> None:
    client = new_customer(platform_urls, amount=50_000)
    client.raise_assurance(3)
    key = str(uuid.uuid4())
    first = raw_move(client, "/v1/withdrawals", {"amount": 1_000, "currency": "CNY"}, key)
    assert first.status_code == 201, first.text
    again = raw_move(client, "/v1/withdrawals", {"amount": 40_000, "currency": "CNY"}, key)
    assert (again.status_code, again.json()["code"]) == (409, "idempotency_key_reused")
    same = raw_move(client, "/v1/withdrawals", {"amount": 1_000, "currency": "CNY"}, key)
    assert same.status_code == 201 and same.headers["idempotent-replayed"] == "true"
    assert client.balance("CNY") == 49_000


def test_a_bank_reply_for_another_amount_books_nothing(platform_urls: RunningPlatform) -> None:
    """The sandbox gateway misreports amounts ending in 77: the signature is valid, the facts
    are not the operation's."""
    client = new_customer(platform_urls, amount=10_000)
    client.raise_assurance(3)
    key = str(uuid.uuid4())
    out = raw_move(client, "/v1/withdrawals", {"amount": 1_077, "currency": "CNY"}, key)
    assert (out.status_code, out.json()["code"]) == (502, "bank_reply_mismatch"), out.text
    held = out.json()["operation_id"]
    # Neither paid out nor returned: the hold waits for reconciliation.
    balances = {b["currency"]: b for b in client.wallet()["balances"]}
    assert balances["CNY"]["balance"] == 10_000 and balances["CNY"]["available"] == 8_923
    retry = raw_move(client, "/v1/withdrawals", {"amount": 1_077, "currency": "CNY"}, key)
    assert (retry.status_code, retry.json()["code"]) == (409, "bank_operation_in_review")
    top = raw_move(client, "/v1/topups", {"amount": 577, "currency": "CNY"}, str(uuid.uuid4()))
    assert (top.status_code, top.json()["code"]) == (502, "bank_reply_mismatch")
    assert client.balance("CNY") == 8_923  # available: the top-up was not credited
    check = httpx.get(f"{platform_urls.admin}/v1/bank-operations/{held}",
                      headers=admin_headers(platform_urls.admin), timeout=10).json()
    assert check["operation"]["status"] == "review" and check["reconciled"] is False
    assert check["bank"]["amount"] == 1_177  # what the faulty gateway said


def test_a_transfer_racing_the_payees_sign_up_never_skips_step_up(
        platform_urls: RunningPlatform) -> None:
    payer = new_customer(platform_urls, amount=1_000_000)
    sim = login_with_sim(platform_urls, payer.phone)  # one factor: the SIM
    replies: list[httpx.Response] = []
    for _ in range(3):  # a few sign-ups, each raced by a stream of transfers
        payee_phone = "1" + str(secrets.randbelow(10**10)).zfill(10)
        signed_up = threading.Event()

        def transfers(to: str = payee_phone, done: threading.Event = signed_up) -> None:
            after = 0
            while after < 15:
                replies.append(sim.call("POST", "/v1/transfers", {
                    "to_phone": to, "amount": 500, "currency": "CNY"}, money=True))
                after += done.is_set()

        streams = [threading.Thread(target=transfers) for _ in range(6)]
        for t in streams:
            t.start()
        created = httpx.post(platform_urls.mobile + "/v1/users", timeout=30,
                             json={"phone": payee_phone, "password": "correct horse battery"})
        signed_up.set()
        for t in streams:
            t.join()
        assert created.status_code == 201
    assert not [r.text for r in replies if r.status_code == 201]
    assert {r.json()["code"] for r in replies} <= {"payee_not_found", "step_up_required"}
    assert payer.balance("CNY") == 1_000_000


def test_an_unknown_payee_is_refused_before_any_policy_step(
        platform_urls: RunningPlatform) -> None:
    payer = new_customer(platform_urls, amount=1_000)
    reply = raw_move(payer, "/v1/transfers", {"to_phone": "19999999999", "amount": 10,
                                              "currency": "CNY"}, str(uuid.uuid4()))
    assert (reply.status_code, reply.json()["code"]) == (404, "payee_not_found")


REASONS = ("unspecified", "key_compromise", "ca_compromise", "affiliation_changed",
           "superseded", "cessation_of_operation", "privilege_withdrawn", "aa_compromise")


def shop(platform: RunningPlatform) -> MerchantClient:
    m = create_merchant(platform.admin, name="Lotus Tea House")
    return MerchantClient(platform.merchant, m.merchant_id, m.key_id, m.alg, m.private_key_pem)


@pytest.mark.parametrize("reason", REASONS)
def test_a_revoked_device_certificate_never_lowers_the_bar(platform_urls: RunningPlatform,
                                                          reason: str) -> None:
    buyer = new_customer(platform_urls, amount=50_000)
    issued = buyer.request_certificate()
    revoked = httpx.post(f"{platform_urls.admin}/v1/pki/certificates/{issued['serial']}/revoke",
                         json={"reason": reason}, headers=admin_headers(platform_urls.admin),
                         timeout=10)
    assert revoked.status_code == 200, revoked.text
    merchant = shop(platform_urls)
    trade = merchant.create_trade(out_trade_no="o" + secrets.token_hex(6), amount=2_000,
                                  currency="CNY", subject="tea", mode="direct")
    buyer.raise_assurance(3)
    path = f"/v1/trades/{trade['trade_no']}/pay"
    forged = {**buyer.auth_headers("POST", path),
              "Anfu-Txn-Signature": "challenge=x, timestamp=1, signature=AAAA"}
    reply = httpx.post(buyer.base_url + path, headers=forged, timeout=10)
    assert (reply.status_code, reply.json()["code"]) == (403, "device_certificate_revoked")
    assert reply.json()["reason"] == reason
    with pytest.raises(ApiError) as refused:
        buyer.withdraw(1_000, "CNY")
    assert refused.value.code == "device_certificate_revoked"
    assert buyer.balance("CNY") == 50_000
    buyer.request_certificate()  # a new certificate restores the signed path
    assert buyer.pay(trade["trade_no"])["status"] in ("TRADE_SUCCESS", "WAIT_BUYER_CONFIRM")


def test_a_customer_reading_another_customers_trade_sees_no_buyer(
        platform_urls: RunningPlatform) -> None:
    buyer, other = new_customer(platform_urls, amount=5_000), new_customer(platform_urls)
    merchant = shop(platform_urls)
    trade = merchant.create_trade(out_trade_no="o" + secrets.token_hex(6), amount=300,
                                  currency="CNY", subject="tea", mode="direct")
    buyer.pay(trade["trade_no"])
    assert buyer.get_trade(trade["trade_no"])["buyer_id"] == buyer.user_id
    assert other.get_trade(trade["trade_no"])["buyer_id"] is None
