"""Signed, durable, retried notifications through the real worker and a real receiver."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from anfu.sdk import NotificationSignatureError, verify_notification
from tests.support import NotifyReceiver, eventually


def test_notification_fails_three_times_then_succeeds(shop_factory: Callable[..., Any],
                                                      funded_customer: Callable[..., Any],
                                                      receiver: NotifyReceiver) -> None:
    receiver.fail_first = 3
    shop, buyer = shop_factory(notify_url=receiver.url), funded_customer(10_000)
    trade = shop.create_trade(out_trade_no="n" + secrets.token_hex(6), amount=500,
                              currency="CNY", subject="x", mode="escrow")
    buyer.pay(trade["trade_no"])

    def delivered() -> Any:
        events = shop.events(trade_no=trade["trade_no"])["events"]
        return events and events[0]["delivery_status"] == "delivered" and events[0]

    event = eventually(delivered, timeout=30)
    assert event["type"] == "trade.paid" and event["attempts"] == 4
    assert [a["outcome"] for a in event["attempt_log"]] == ["retry", "retry", "retry",
                                                           "delivered"]
    assert [a["status_code"] for a in event["attempt_log"]] == [500, 500, 500, 200]
    posts = [r for r in receiver.received if b'"trade.paid"' in r.body]
    assert len(posts) == 4
    keys = shop.platform_keys()
    for post in posts:  # every attempt is signed over POST, the notify path and query, body
        verified = verify_notification(headers=post.headers, body=post.body,
                                       path_qs=post.path, platform_keys=keys)
        assert verified["id"] == event["id"]
        assert verified["data"]["trade"]["status"] == "WAIT_SELLER_SEND_GOODS"
    with pytest.raises(NotificationSignatureError):
        verify_notification(headers=posts[0].headers, body=posts[0].body.replace(b"500", b"1"),
                            path_qs=posts[0].path, platform_keys=keys)


def test_notifications_are_ordered_per_trade(shop_factory: Callable[..., Any],
                                             funded_customer: Callable[..., Any],
                                             receiver: NotifyReceiver) -> None:
    receiver.fail_first = 1
    shop, buyer = shop_factory(), funded_customer(10_000)
    trade = shop.create_trade(out_trade_no="n" + secrets.token_hex(6), amount=500,
                              currency="CNY", subject="x", mode="escrow",
                              notify_url=receiver.url)
    buyer.pay(trade["trade_no"])
    shop.ship(trade["trade_no"])
    buyer.confirm(trade["trade_no"])
    eventually(lambda: all(e["delivery_status"] == "delivered" for e in shop.events(
        trade_no=trade["trade_no"])["events"]), timeout=30)
    firsts: list[str] = []
    for event in receiver.events():
        if event["data"]["trade"]["trade_no"] == trade["trade_no"] and (
                event["type"] not in firsts):
            firsts.append(event["type"])
    assert firsts == ["trade.paid", "trade.shipped", "trade.finished"]
    # a later event never went out before an earlier one was delivered
    seen = [e["type"] for e in receiver.events()
            if e["data"]["trade"]["trade_no"] == trade["trade_no"]]
    assert seen == ["trade.paid", "trade.paid", "trade.shipped", "trade.shipped",
                    "trade.finished", "trade.finished"]


def test_redeliver_sends_again(shop_factory: Callable[..., Any],
                               funded_customer: Callable[..., Any],
                               receiver: NotifyReceiver) -> None:
    shop, buyer = shop_factory(notify_url=receiver.url), funded_customer(10_000)
    trade = shop.create_trade(out_trade_no="n" + secrets.token_hex(6), amount=500,
                              currency="CNY", subject="x", mode="escrow")
    buyer.pay(trade["trade_no"])
    event = eventually(lambda: (e := shop.events(trade_no=trade["trade_no"])["events"])
                       and e[0]["delivery_status"] == "delivered" and e[0], timeout=20)
    count = len(receiver.received)
    again = shop.redeliver(event["id"])
    assert again["delivery_status"] == "pending"
    eventually(lambda: len(receiver.received) > count, timeout=20)


def test_events_without_notify_url_are_listed_not_sent(shop_factory: Callable[..., Any],
                                                       funded_customer: Callable[..., Any],
                                                       platform_urls: Any) -> None:
    shop, buyer = shop_factory(), funded_customer(10_000)
    trade = shop.create_trade(out_trade_no="n" + secrets.token_hex(6), amount=500,
                              currency="CNY", subject="x", mode="escrow")
    buyer.pay(trade["trade_no"])
    events = shop.events(trade_no=trade["trade_no"])["events"]
    assert [(e["type"], e["delivery_status"]) for e in events] == [("trade.paid", "none")]
    metrics = httpx.get(f"{platform_urls.admin}/metrics", headers=platform_urls.admin_headers).text
    assert "anfu_notify_attempts_total" in metrics


def test_pending_notifications_survive_a_restart(tmp_path: Any,
                                                 funded_customer: Callable[..., Any],
                                                 receiver: NotifyReceiver) -> None:
    from anfu.sdk import MerchantClient
    from tests.support import create_merchant, start_platform

    platform = start_platform(tmp_path / "notify", ANFU_NOTIFY_SCHEDULE="2,2,2")
    try:
        receiver.fail_first = 1
        m = create_merchant(platform.admin, notify_url=receiver.url)
        shop = MerchantClient(platform.merchant, m.merchant_id, m.key_id, m.alg,
                              m.private_key_pem)
        buyer = funded_customer(10_000, platform=platform)
        trade = shop.create_trade(out_trade_no="r" + secrets.token_hex(6), amount=500,
                                  currency="CNY", subject="x", mode="escrow")
        buyer.pay(trade["trade_no"])
        eventually(lambda: receiver.received, timeout=20)  # first attempt refused
        platform.stop()  # the retry is due while the platform is down
        platform.restart()
        event = eventually(lambda: (e := shop.events(trade_no=trade["trade_no"])["events"])
                           and e[0]["delivery_status"] == "delivered" and e[0], timeout=30)
        assert [a["outcome"] for a in event["attempt_log"]] == ["retry", "delivered"]
    finally:
        platform.stop()
