"""``anfu run --workers 2``: two processes serve the same sockets and database; payments
from both are exact, and /metrics adds up what every process counted."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.support import admin_headers, create_merchant, start_platform


def mobile_requests(admin: str) -> float:
    text = httpx.get(f"{admin}/metrics", headers=admin_headers(admin)).text
    return sum(float(v) for v in re.findall(
        r'^anfu_http_requests_total\{[^}]*zone="mobile"[^}]*\} ([0-9.e+]+)$', text, re.M))


def test_two_worker_processes(tmp_path: Path, funded_customer: Callable[..., Any]) -> None:
    from anfu.sdk import MerchantClient

    platform = start_platform(tmp_path / "workers", ANFU_WORKERS="2")
    try:
        m = create_merchant(platform.admin)
        shop = MerchantClient(platform.merchant, m.merchant_id, m.key_id, m.alg,
                              m.private_key_pem)
        buyer = funded_customer(100_000, platform=platform)
        for n in range(10):
            trade = shop.create_trade(out_trade_no=f"w{n}-{secrets.token_hex(4)}", amount=100,
                                      currency="CNY", subject="x", mode="direct")
            assert buyer.pay(trade["trade_no"])["status"] == "TRADE_SUCCESS"
        assert buyer.balance("CNY") == 99_000
        assert shop.balance()["balances"][0]["balance"] == 10 * 99  # 0.6% fee, rounded
        assert httpx.get(f"{platform.admin}/v1/ledger/check",
                         headers=platform.admin_headers).json()["ok"]
        before = mobile_requests(platform.admin)
        for _ in range(40):  # a new connection each time: the kernel spreads them
            assert httpx.get(f"{platform.mobile}/healthz").status_code == 200
        assert mobile_requests(platform.admin) - before == 40
    finally:
        platform.stop()
