"""Attack tests of step-up (issue 16 items 5 and 10a), through the real mobile zone.

Item 5: KWD 900,000.000 was paid on a level-2 session while USD 600 needed level 3, because a
currency without a high-value limit had no amount rule. Item 10a: approving ¥1.00 to one
shop raised the whole session, so ¥499.99 went to a first-time payee with no new challenge.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from anfu.identity.assurance import DEFAULT_POLICY_PATH
from anfu.sdk import MerchantClient
from tests.e2e.identity.wire import (
    Json,
    Phone,
    new_bound_phone,
    problem,
    satisfy_step_up,
    start_identity_platform,
)
from tests.support import RunningPlatform, create_merchant


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    running = start_identity_platform(tmp_path_factory.mktemp("identity_step_up"))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def repeat_payee_platform(tmp_path_factory: pytest.TempPathFactory
                          ) -> Iterator[RunningPlatform]:
    """The built-in policy except that a first-time payee needs level 2 only, so that only
    the amount rule can ask for level 3."""
    home = tmp_path_factory.mktemp("identity_amount_rule")
    policy = DEFAULT_POLICY_PATH.read_text(encoding="utf-8")
    assert "first_time_payee_level = 3" in policy
    (home / "policy.toml").write_text(policy.replace("first_time_payee_level = 3",
                                                     "first_time_payee_level = 2"))
    running = start_identity_platform(home, ANFU_AUTH_POLICY=str(home / "policy.toml"))
    yield running
    running.stop()


def shop(platform: RunningPlatform, name: str) -> MerchantClient:
    m = create_merchant(platform.admin, name=name)
    return MerchantClient(platform.merchant, m.merchant_id, m.key_id, m.alg, m.private_key_pem)


def trade(merchant: MerchantClient, amount: int, currency: str = "CNY") -> str:
    made = merchant.create_trade(out_trade_no="o" + secrets.token_hex(8), amount=amount,
                                 currency=currency, subject="tea", mode="direct")
    return str(made["trade_no"])


def funded(platform: RunningPlatform, amount: int, currency: str) -> Phone:
    phone = new_bound_phone(platform)  # password + SMS login: level 2, no hardware proof
    topup = phone.call("POST", "/v1/topups", {"amount": amount, "currency": currency},
                       money=True)
    assert topup.status_code == 201, topup.text
    return phone


def pay(phone: Phone, trade_no: str, key: str | None = None) -> httpx.Response:
    headers = phone.auth("POST", f"/v1/trades/{trade_no}/pay")
    headers["Idempotency-Key"] = key or str(uuid.uuid4())
    return phone.call("POST", f"/v1/trades/{trade_no}/pay", headers=headers)


def step_up_asked(reply: httpx.Response) -> Json:
    return problem(reply, 401, "step_up_required")


def test_a_currency_without_a_limit_needs_level_3_for_any_amount(
        repeat_payee_platform: RunningPlatform) -> None:
    platform = repeat_payee_platform
    phone = funded(platform, 900_000_000, "KWD")  # KWD 900,000.000
    assert phone.tokens["acr"] == 2
    kwd = step_up_asked(pay(phone, trade(shop(platform, "Gulf Gold"), 900_000_000, "KWD")))
    assert (kwd["required_acr"], kwd["current_acr"]) == (3, 2)
    assert (kwd["amount"], kwd["currency"]) == (900_000_000, "KWD")
    small = step_up_asked(pay(phone, trade(shop(platform, "Gulf Tea"), 1, "KWD")))
    assert small["required_acr"] == 3  # deny by default: any amount

    # A listed currency keeps its limit: CNY below ¥500 pays on level 2.
    cny = funded(platform, 10_000, "CNY")
    assert pay(cny, trade(shop(platform, "Tea Corner"), 2_000)).status_code == 200


def test_a_step_up_approves_its_own_amount_and_payee_only(platform: RunningPlatform) -> None:
    phone = funded(platform, 100_000, "CNY")
    one_yuan = trade(shop(platform, "Shop A"), 100)
    big = trade(shop(platform, "Shop B"), 49_999)

    asked = step_up_asked(pay(phone, one_yuan))
    assert (asked["required_acr"], asked["amount"], asked["payee"]) == (3, 100, "Shop A")
    approved = satisfy_step_up(phone, asked)
    assert approved["grant"] == {"operation": "trade.pay", "amount": 100, "currency": "CNY",
                                 "payee": "Shop A", "single_use": True}
    assert pay(phone, one_yuan).status_code == 200

    # ¥499.99 to a first-time payee: a new challenge, naming that amount and payee.
    again = step_up_asked(pay(phone, big))
    assert (again["required_acr"], again["amount"], again["payee"]) == (3, 49_999, "Shop B")
    assert again["challenge_id"] != asked["challenge_id"]
    # The session itself was not raised: a read still shows level 2.
    assert phone.call("GET", "/v1/me").json()["acr"] == 2


def test_one_grant_pays_once_even_in_parallel(platform: RunningPlatform) -> None:
    phone = funded(platform, 200_000, "CNY")
    shop_a = shop(platform, "Twin Shop")
    # the same amount and payee, each above the ¥500 limit (level 3 even once paid before)
    first, second = trade(shop_a, 60_000), trade(shop_a, 60_000)
    satisfy_step_up(phone, step_up_asked(pay(phone, first)))

    with ThreadPoolExecutor(2) as pool:
        replies = list(pool.map(lambda t: pay(phone, t), (first, second)))
    statuses = sorted(r.status_code for r in replies)
    assert statuses[0] == 200 and statuses[1] in (401, 409), [r.text for r in replies]
    loser = next(r for r in replies if r.status_code != 200)
    assert loser.json()["code"] in ("step_up_required", "step_up_grant_used")
    paid = [t for t, r in zip((first, second), replies, strict=True) if r.status_code == 200]
    unpaid = next(t for t in (first, second) if t not in paid)
    # the refused payment moved nothing and asks for its own approval
    assert step_up_asked(pay(phone, unpaid))["amount"] == 60_000
    balance = phone.call("GET", "/v1/wallet").json()["balances"][0]
    assert balance["available"] == 200_000 - 60_000, balance
