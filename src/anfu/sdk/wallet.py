"""WalletClient: a customer's calls to the mobile zone.

    wallet = WalletClient("http://127.0.0.1:8000")
    wallet.login("13800000000", "correct horse battery")
    wallet.topup(10_000, "CNY")
    wallet.pay(trade_no)

Money moves (top-up, withdrawal, transfer) carry an ``Idempotency-Key``: pass your own to be
able to retry after a network error without moving the money twice; otherwise a fresh UUID
is used per call. An expired access token is refreshed once, automatically.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Mapping
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

from anfu.sdk.errors import ApiError, SdkError, json_object, raise_for_problem

Json = dict[str, Any]


def _seg(value: str) -> str:
    return quote(value, safe="")


class WalletClient:
    """The mobile zone (default ``http://127.0.0.1:8000``) as one logged-in customer."""

    def __init__(self, base_url: str, *, timeout: float = 10.0,
                 transport: httpx.BaseTransport | None = None,
                 access_token: str | None = None, refresh_token: str | None = None) -> None:
        self.access_token = access_token
        self.refresh_token = refresh_token
        self.user_id: str | None = None
        self.phone: str | None = None
        self.session_id: str | None = None
        # Refresh tokens rotate and a reused one revokes the session: only one refresh
        # may be in flight, and a caller that lost the race retries with the new token.
        self._refresh_lock = threading.Lock()
        self._http = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout,
                                  transport=transport,
                                  headers={"Accept": "application/json",
                                           "User-Agent": "anfu-sdk-python"})

    def __repr__(self) -> str:  # tokens are secrets: never in a repr or a log line
        return f"<WalletClient user_id={self.user_id!r} logged_in={self.access_token is not None}>"

    # -- lifecycle ----------------------------------------------------------------------
    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> WalletClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- account and session ------------------------------------------------------------
    def register(self, phone: str, password: str) -> Json:
        """Create an account; returns ``{user_id, phone, created_at}`` (does not log in)."""
        return self._public("POST", "/v1/users", {"phone": phone, "password": password})

    def login(self, phone: str, password: str) -> Json:
        """Open a session and keep its tokens in this client."""
        session = self._store(self._public("POST", "/v1/sessions",
                                           {"phone": phone, "password": password}))
        self.phone = phone
        return session

    def refresh(self) -> Json:
        """Rotate the refresh token and get a new access token."""
        if self.refresh_token is None:
            raise SdkError("no refresh token: log in first")
        return self._store(self._public("POST", "/v1/sessions/refresh",
                                        {"refresh_token": self.refresh_token}))

    def logout(self) -> None:
        """End this session on the platform and forget its tokens."""
        self._authed("DELETE", "/v1/sessions/current")
        self.access_token = self.refresh_token = self.session_id = None

    # -- wallet -------------------------------------------------------------------------
    def wallet(self) -> Json:
        """``{user_id, balances: [{currency, balance, available, pending_out}]}``."""
        return self._authed("GET", "/v1/wallet")

    def balance(self, currency: str = "CNY") -> int:
        """Convenience: the available balance in one currency (0 if there is none)."""
        for row in self.wallet().get("balances", []):
            if row.get("currency") == currency:
                return int(row["available"])
        return 0

    def statement(self, currency: str = "CNY", *, cursor: int | str | None = None,
                  limit: int | None = None) -> Json:
        """One page of entries; pass ``next_cursor`` back for the next page."""
        params = {k: v for k, v in {"currency": currency, "cursor": cursor,
                                    "limit": limit}.items() if v is not None}
        return self._authed("GET", "/v1/wallet/statement", params=params)

    def topup(self, amount: int, currency: str, idempotency_key: str | None = None) -> Json:
        """Add money from the bank; the bank operation with its ``status``."""
        return self._authed("POST", "/v1/topups", {"amount": amount, "currency": currency},
                            key=idempotency_key or str(uuid.uuid4()))

    def withdraw(self, amount: int, currency: str, idempotency_key: str | None = None) -> Json:
        """Send money to the bank."""
        return self._authed("POST", "/v1/withdrawals",
                            {"amount": amount, "currency": currency},
                            key=idempotency_key or str(uuid.uuid4()))

    def transfer(self, amount: int, currency: str, to_phone: str | None = None,
                 to_user_id: str | None = None, memo: str | None = None,
                 idempotency_key: str | None = None) -> Json:
        """Pay another customer, named by phone or by user id."""
        if (to_phone is None) == (to_user_id is None):
            raise ValueError("name the payee by exactly one of to_phone or to_user_id")
        body: Json = {"amount": amount, "currency": currency}
        if to_phone is not None:
            body["to_phone"] = to_phone
        if to_user_id is not None:
            body["to_user_id"] = to_user_id
        if memo is not None:
            body["memo"] = memo
        return self._authed("POST", "/v1/transfers", body,
                            key=idempotency_key or str(uuid.uuid4()))

    # -- trades -------------------------------------------------------------------------
    def get_trade(self, trade_no: str) -> Json:
        return self._authed("GET", f"/v1/trades/{_seg(trade_no)}")

    def pay(self, trade_no: str, idempotency_key: str | None = None) -> Json:
        """Pay a trade from the wallet; returns the trade (escrow: held until you confirm)."""
        return self._authed("POST", f"/v1/trades/{_seg(trade_no)}/pay", key=idempotency_key)

    def confirm(self, trade_no: str, idempotency_key: str | None = None) -> Json:
        """Confirm receipt of the goods: releases the escrowed money to the merchant."""
        return self._authed("POST", f"/v1/trades/{_seg(trade_no)}/confirm",
                            key=idempotency_key)

    # -- the wire -----------------------------------------------------------------------
    def _store(self, session: Json) -> Json:
        self.access_token = session["access_token"]
        self.refresh_token = session["refresh_token"]
        self.user_id = session.get("user_id", self.user_id)
        self.session_id = session.get("session_id", self.session_id)
        return session

    def _public(self, method: str, path: str, body: Json) -> Json:
        response = self._http.request(method, path, json=body)
        raise_for_problem(response)
        return json_object(response)

    def _authed(self, method: str, path: str, body: Json | None = None, *,
                key: str | None = None, params: Mapping[str, Any] | None = None) -> Json:
        token = self.access_token
        if token is None:
            raise SdkError("not logged in: call login() first")
        try:
            return self._send(method, path, body, key, params, token)
        except ApiError as exc:
            if exc.status != 401 or exc.code != "token_expired" or self.refresh_token is None:
                raise
        # The request was refused before it ran, so sending it again (same key) is safe.
        with self._refresh_lock:
            if self.access_token == token:  # nobody refreshed meanwhile
                self.refresh()
            fresh = self.access_token
        assert fresh is not None
        return self._send(method, path, body, key, params, fresh)

    def _send(self, method: str, path: str, body: Json | None, key: str | None,
              params: Mapping[str, Any] | None, token: str) -> Json:
        headers = {"Authorization": f"Bearer {token}"}
        if key is not None:
            headers["Idempotency-Key"] = key
        response = self._http.request(method, path, json=body, headers=headers,
                                      params=dict(params) if params else None)
        raise_for_problem(response)
        return json_object(response)
