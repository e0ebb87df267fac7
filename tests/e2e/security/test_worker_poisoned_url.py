"""A stored notify URL the HTTP client refuses to parse (CR/LF, issue 16 item 4) used to
raise out of the worker's tick on every pass: no receipts, no timers, no seals ever again.
Through the real platform: the poisoned event is a failed attempt on its own retry schedule,
and everything else goes on."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from anfu.sdk import WalletClient
from tests.e2e.security.notify_support import (
    attempts_after,
    new_trade,
    shop_of,
    store_trade_notify_url,
)
from tests.support import NotifyReceiver, RunningPlatform, eventually, new_customer, start_platform


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    running = start_platform(tmp_path_factory.mktemp("poisoned"),
                             ANFU_LOG_STH_INTERVAL_S="0.2", ANFU_NOTIFY_SCHEDULE="1,1")
    yield running
    running.stop()


def test_a_crlf_url_in_the_database_does_not_stop_the_worker(
        platform: RunningPlatform, receiver: NotifyReceiver) -> None:
    shop = shop_of(platform)
    buyer: WalletClient = new_customer(platform, amount=10_000)
    poisoned = new_trade(shop, notify_url=receiver.url)
    store_trade_notify_url(platform, poisoned["trade_no"],
                           f"{receiver.url}\r\nX-Injected: 1")
    buyer.pay(poisoned["trade_no"])
    log = attempts_after(shop, poisoned["trade_no"], 1)
    assert (log[0]["error"], log[0]["status_code"]) == ("invalid_url", None)

    # Receipts are still issued (the transparency log duty goes on) ...
    payee: WalletClient = new_customer(platform)
    sent = buyer.transfer(300, "CNY", to_user_id=payee.user_id)
    assert buyer.verified_receipt(sent["transfer_no"])["receipt"]["kind"] == "transfer"
    # ... timers fire (a trade left unpaid is closed) ...
    unpaid = shop.create_trade(out_trade_no="u" + secrets.token_hex(6), amount=100,
                               currency="CNY", subject="x", mode="escrow", pay_expire_s=1)
    eventually(lambda: shop.get_trade(unpaid["trade_no"])["status"] == "TRADE_CLOSED",
               timeout=30)
    # ... other notifications are delivered ...
    healthy = new_trade(shop, notify_url=receiver.url)
    buyer.pay(healthy["trade_no"])
    eventually(lambda: shop.events(trade_no=healthy["trade_no"])["events"][0][
        "delivery_status"] == "delivered", timeout=30)
    # ... and the poisoned event runs its own schedule to the end, never sent.
    eventually(lambda: shop.events(trade_no=poisoned["trade_no"])["events"][0][
        "delivery_status"] == "failed", timeout=30)
    log = shop.events(trade_no=poisoned["trade_no"])["events"][0]["attempt_log"]
    assert [a["error"] for a in log] == ["invalid_url"] * 3
    assert all(b"X-Injected" not in r.body and "X-Injected" not in r.headers
               for r in receiver.received)
