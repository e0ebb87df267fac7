"""Helpers of the outbound-notification attack tests: edit a running platform's database the
way an attacker with a stored URL (or a rebinding DNS answer) would leave it, read attempt
logs, and run receivers that redirect."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from sqlalchemy import create_engine, text

from anfu.sdk import MerchantClient
from tests.support import RunningPlatform, create_merchant, eventually


def run_sql(platform: RunningPlatform, statement: str, **params: Any) -> None:
    engine = create_engine(platform.env["ANFU_DATABASE_URL"])
    try:
        with engine.begin() as conn:
            conn.execute(text(statement), params)
    finally:
        engine.dispose()


def store_trade_notify_url(platform: RunningPlatform, trade_no: str, url: str) -> None:
    """What the API no longer lets in: a URL written straight into the trade row, so the
    events made from now on carry it to the worker."""
    run_sql(platform, "UPDATE trades SET notify_url = :url WHERE trade_no = :t",
            url=url, t=trade_no)


def store_event_notify_url(platform: RunningPlatform, trade_no: str, url: str) -> None:
    run_sql(platform, "UPDATE events SET notify_url = :url WHERE trade_no = :t",
            url=url, t=trade_no)


def shop_of(platform: RunningPlatform, notify_url: str | None = None) -> MerchantClient:
    m = create_merchant(platform.admin, notify_url=notify_url)
    return MerchantClient(platform.merchant, m.merchant_id, m.key_id, m.alg,
                          m.private_key_pem)


def new_trade(shop: MerchantClient, **fields: Any) -> dict[str, Any]:
    return shop.create_trade(out_trade_no="s" + secrets.token_hex(6), amount=100,
                             currency="CNY", subject="x", mode="escrow", **fields)


def attempts_after(shop: MerchantClient, trade_no: str, count: int,
                   timeout: float = 20) -> list[dict[str, Any]]:
    """The attempt log of the trade's first event once it holds ``count`` attempts."""
    def enough() -> list[dict[str, Any]] | None:
        events = shop.events(trade_no=trade_no)["events"]
        log = events[0]["attempt_log"] if events else []
        return log if len(log) >= count else None

    found: list[dict[str, Any]] = eventually(enough, timeout=timeout)
    return found


class Redirector:
    """A notification endpoint that answers every POST with ``302 Location: target``."""

    def __init__(self, target: Callable[[], str]) -> None:
        self.posts = 0
        redirector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length", "0")))
                redirector.posts += 1
                self.send_response(302)
                self.send_header("Location", target())
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
