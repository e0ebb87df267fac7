"""The escrow trade of book ch. 7 through the real listeners: escrow and direct trades,
partial and full refunds, refunds after settlement, pay and confirm timeouts."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from anfu.sdk import ApiError
from tests.support import create_merchant, eventually, start_platform


def out_no() -> str:
    return "o" + secrets.token_hex(8)


def test_escrow_trade_end_to_end(shop_factory: Callable[..., Any],
                                 funded_customer: Callable[..., Any]) -> None:
    shop, buyer = shop_factory(fee_bps=60), funded_customer(100_000)
    trade = shop.create_trade(out_trade_no=out_no(), amount=2300, currency="CNY",
                              subject="BEST TRANSPORT parcel", mode="escrow")
    assert trade["status"] == "WAIT_BUYER_PAY"
    paid = buyer.pay(trade["trade_no"])
    assert paid["status"] == "WAIT_SELLER_SEND_GOODS"
    assert buyer.wallet()["balances"][0] == {"currency": "CNY", "balance": 100_000,
                                             "available": 97_700, "pending_out": 2300}
    with pytest.raises(ApiError) as early:
        buyer.confirm(trade["trade_no"])
    assert early.value.code == "trade_not_confirmable"
    assert shop.ship(trade["trade_no"])["status"] == "WAIT_BUYER_CONFIRM_GOODS"
    done = buyer.confirm(trade["trade_no"])
    assert done["status"] == "TRADE_FINISHED"
    assert (done["settled_amount"], done["fee_amount"]) == (2300, 14)  # 2300*0.6% = 13.8 -> 14
    assert shop.balance()["balances"][0]["balance"] == 2286
    assert buyer.balance("CNY") == 97_700
    # repeats answer with the trade and move nothing
    assert buyer.confirm(trade["trade_no"])["status"] == "TRADE_FINISHED"
    assert buyer.pay(trade["trade_no"])["status"] == "TRADE_FINISHED"
    assert shop.balance()["balances"][0]["balance"] == 2286
    found = shop.find_trade(trade["out_trade_no"])
    assert found["trade_no"] == trade["trade_no"] and found["refunds"] == []
    types = [e["type"] for e in shop.events(trade_no=trade["trade_no"])["events"]]
    assert types == ["trade.paid", "trade.shipped", "trade.finished"]


def test_direct_trade_settles_at_payment(shop_factory: Callable[..., Any],
                                         funded_customer: Callable[..., Any]) -> None:
    shop, buyer = shop_factory(fee_bps=100), funded_customer(10_000)
    trade = shop.create_trade(out_trade_no=out_no(), amount=1000, currency="CNY",
                              subject="coffee", mode="direct")
    paid = buyer.pay(trade["trade_no"])
    assert paid["status"] == "TRADE_SUCCESS"
    assert (paid["settled_amount"], paid["fee_amount"]) == (1000, 10)
    assert shop.balance()["balances"][0]["balance"] == 990
    assert buyer.balance("CNY") == 9000


def test_same_out_trade_no_same_body_returns_trade_other_body_conflicts(
        shop_factory: Callable[..., Any]) -> None:
    shop = shop_factory()
    no = out_no()
    first = shop.create_trade(out_trade_no=no, amount=500, currency="CNY", subject="x",
                              mode="escrow")
    again = shop.create_trade(out_trade_no=no, amount=500, currency="CNY", subject="x",
                              mode="escrow")
    assert again["trade_no"] == first["trade_no"]
    with pytest.raises(ApiError) as info:
        shop.create_trade(out_trade_no=no, amount=501, currency="CNY", subject="x",
                          mode="escrow")
    assert (info.value.status, info.value.code) == (409, "out_trade_no_reused")


def test_partial_then_full_refund_before_settlement(shop_factory: Callable[..., Any],
                                                    funded_customer: Callable[..., Any]
                                                    ) -> None:
    shop, buyer = shop_factory(fee_bps=60), funded_customer(10_000)
    trade = shop.create_trade(out_trade_no=out_no(), amount=5000, currency="CNY",
                              subject="shoes", mode="escrow")
    buyer.pay(trade["trade_no"])
    first = shop.refund(trade["trade_no"], "r1", 1200, reason="one shoe missing")
    assert first["refund"]["source"] == "escrow" and first["trade"]["refunded_amount"] == 1200
    assert shop.refund(trade["trade_no"], "r1", 1200, reason="one shoe missing")[
        "refund"]["refund_no"] == first["refund"]["refund_no"]  # same out_refund_no: same
    assert buyer.balance("CNY") == 6200
    with pytest.raises(ApiError) as over:
        shop.refund(trade["trade_no"], "r2", 3801)
    assert over.value.code == "refund_exceeds_paid"
    last = shop.refund(trade["trade_no"], "r2", 3800)
    assert last["trade"]["status"] == "TRADE_CLOSED"
    assert last["trade"]["close_reason"] == "fully_refunded"
    assert buyer.balance("CNY") == 10_000
    assert shop.balance()["balances"] in ([], [{"currency": "CNY", "balance": 0,
                                                "available": 0, "pending_out": 0}])
    types = [e["type"] for e in shop.events(trade_no=trade["trade_no"])["events"]]
    assert types == ["trade.paid", "refund.succeeded", "refund.succeeded", "trade.closed"]


def test_partial_refund_then_settlement_pays_the_rest(shop_factory: Callable[..., Any],
                                                      funded_customer: Callable[..., Any]
                                                      ) -> None:
    shop, buyer = shop_factory(fee_bps=60), funded_customer(10_000)
    trade = shop.create_trade(out_trade_no=out_no(), amount=5000, currency="CNY",
                              subject="shoes", mode="escrow")
    buyer.pay(trade["trade_no"])
    shop.refund(trade["trade_no"], "r1", 1000)
    shop.ship(trade["trade_no"])
    done = buyer.confirm(trade["trade_no"])
    assert (done["settled_amount"], done["fee_amount"]) == (4000, 24)
    assert shop.balance()["balances"][0]["balance"] == 3976


def test_refund_after_settlement_comes_from_merchant_and_fee(
        shop_factory: Callable[..., Any], funded_customer: Callable[..., Any]) -> None:
    shop, buyer = shop_factory(fee_bps=60), funded_customer(20_000)
    trade = shop.create_trade(out_trade_no=out_no(), amount=10_000, currency="CNY",
                              subject="phone case", mode="direct")
    buyer.pay(trade["trade_no"])
    assert shop.balance()["balances"][0]["balance"] == 9940
    result = shop.refund(trade["trade_no"], "r1", 5000)
    assert result["refund"]["source"] == "merchant"
    assert result["trade"]["fee_amount"] == 30
    assert shop.balance()["balances"][0]["balance"] == 9940 - 4970
    assert buyer.balance("CNY") == 15_000
    # the merchant withdraws nothing here, but a second trade's refund can exceed its balance
    other = shop.create_trade(out_trade_no=out_no(), amount=5000, currency="CNY",
                              subject="x", mode="direct")
    buyer.pay(other["trade_no"])
    shop.refund(other["trade_no"], "r1", 5000)
    shop.refund(trade["trade_no"], "r2", 5000)
    assert shop.balance()["balances"][0]["balance"] == 0
    assert buyer.balance("CNY") == 20_000


def test_refunds_after_settlement_never_exceed_what_was_paid(
        shop_factory: Callable[..., Any], funded_customer: Callable[..., Any],
        platform_urls: Any) -> None:
    # (A merchant short of money for a refund needs a payout first: that refusal is tested
    # at the service level, tests/unit/trades/test_refunds.py.)
    import httpx

    shop, buyer = shop_factory(fee_bps=0), funded_customer(10_000)
    a = shop.create_trade(out_trade_no=out_no(), amount=3000, currency="CNY", subject="a",
                          mode="direct")
    buyer.pay(a["trade_no"])
    b = shop.create_trade(out_trade_no=out_no(), amount=3000, currency="CNY", subject="b",
                          mode="direct")
    buyer.pay(b["trade_no"])
    shop.refund(a["trade_no"], "r1", 3000)
    assert httpx.get(f"{platform_urls.admin}/v1/ledger/check",
                     headers=platform_urls.admin_headers).json()["ok"]
    with pytest.raises(ApiError) as closed:
        shop.refund(a["trade_no"], "r2", 1)
    assert closed.value.code == "trade_not_refundable"  # fully refunded: closed
    shop.refund(b["trade_no"], "r1", 1000)
    with pytest.raises(ApiError) as over:
        shop.refund(b["trade_no"], "r2", 2001)
    assert over.value.code == "refund_exceeds_paid"
    shop.refund(b["trade_no"], "r2", 2000)
    assert shop.balance()["balances"][0]["balance"] == 0
    assert buyer.balance("CNY") == 10_000


def test_merchant_closes_unpaid_trade(shop_factory: Callable[..., Any],
                                      funded_customer: Callable[..., Any]) -> None:
    shop, buyer = shop_factory(), funded_customer(1000)
    trade = shop.create_trade(out_trade_no=out_no(), amount=100, currency="CNY", subject="x",
                              mode="escrow")
    assert shop.close(trade["trade_no"])["status"] == "TRADE_CLOSED"
    with pytest.raises(ApiError) as info:
        buyer.pay(trade["trade_no"])
    assert info.value.code == "trade_not_payable"


def test_insufficient_wallet_is_refused_and_changes_nothing(
        shop_factory: Callable[..., Any], funded_customer: Callable[..., Any]) -> None:
    shop, buyer = shop_factory(), funded_customer(100)
    trade = shop.create_trade(out_trade_no=out_no(), amount=101, currency="CNY", subject="x",
                              mode="escrow")
    with pytest.raises(ApiError) as info:
        buyer.pay(trade["trade_no"])
    assert (info.value.status, info.value.code) == (402, "insufficient_funds")
    assert shop.get_trade(trade["trade_no"])["status"] == "WAIT_BUYER_PAY"
    assert buyer.balance("CNY") == 100


def test_pay_timeout_closes_the_trade(shop_factory: Callable[..., Any],
                                      funded_customer: Callable[..., Any]) -> None:
    shop, buyer = shop_factory(), funded_customer(1000)
    trade = shop.create_trade(out_trade_no=out_no(), amount=100, currency="CNY", subject="x",
                              mode="escrow", pay_expire_s=1)
    closed = eventually(lambda: (t := shop.get_trade(trade["trade_no"]))["status"]
                        == "TRADE_CLOSED" and t, timeout=15)
    assert closed["close_reason"] == "pay_timeout"
    with pytest.raises(ApiError):
        buyer.pay(trade["trade_no"])
    assert [e["type"] for e in shop.events(trade_no=trade["trade_no"])["events"]] == [
        "trade.closed"]


def test_confirm_timeout_settles_and_survives_restart(tmp_path: Path,
                                                      funded_customer: Callable[..., Any]
                                                      ) -> None:
    from anfu.sdk import MerchantClient

    platform = start_platform(tmp_path / "timers", ANFU_CONFIRM_TIMEOUT_S="3")
    try:
        m = create_merchant(platform.admin, fee_bps=60)
        shop = MerchantClient(platform.merchant, m.merchant_id, m.key_id, m.alg,
                              m.private_key_pem)
        buyer = funded_customer(10_000, platform=platform)
        trade = shop.create_trade(out_trade_no=out_no(), amount=1000, currency="CNY",
                                  subject="x", mode="escrow")
        buyer.pay(trade["trade_no"])
        shop.ship(trade["trade_no"])
        platform.stop()  # the timer is persisted: it fires after the restart
        platform.restart()
        done = eventually(lambda: (t := shop.get_trade(trade["trade_no"]))["status"]
                          == "TRADE_FINISHED" and t, timeout=20)
        assert done["settled_amount"] == 1000
        assert shop.balance()["balances"][0]["balance"] == 994
        finished = [e for e in shop.events(trade_no=trade["trade_no"])["events"]
                    if e["type"] == "trade.finished"]
        assert len(finished) == 1  # fired once
    finally:
        platform.stop()
