"""WalletClient: a customer's calls to the mobile zone.

    wallet = WalletClient("http://127.0.0.1:8000", sms_code=read_code_from_the_phone)
    wallet.login("13800000000", "correct horse battery")
    wallet.bind_device("My phone", keystore=Path("device.json"), passphrase=b"...")
    wallet.topup(10_000, "CNY")
    wallet.pay(trade_no)

Money moves (top-up, withdrawal, transfer) carry an ``Idempotency-Key``: pass your own to be
able to retry after a network error without moving the money twice; otherwise a fresh UUID
is used per call. An expired access token is refreshed once, automatically, and a
``step_up_required`` answer is met with the device key (or the code sources given) and the
call retried once with the same key. Authentication itself lives in ``mobile_auth``.
"""

from __future__ import annotations

import uuid
from types import TracebackType
from typing import Any

from anfu.sdk.errors import json_object, raise_for_problem
from anfu.sdk.mobile_auth import MobileSession, _seg
from anfu.sdk.txn import poll_receipt
from anfu.transparency.verify import verify_receipt_bundle

Json = dict[str, Any]


class WalletClient(MobileSession):
    """The mobile zone (default ``http://127.0.0.1:8000``) as one logged-in customer."""

    def __enter__(self) -> WalletClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

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

    # -- receipts -----------------------------------------------------------------------
    def platform_keys(self) -> list[Json]:
        """The platform's published public keys (save them to verify receipts offline)."""
        return list(self._public_get("/v1/platform/keys")["keys"])

    def receipt(self, txn_id: str, *, wait_s: float = 10.0) -> Json:
        """The signed receipt bundle of a payment, refund, transfer or withdrawal: the
        receipt, a signed tree head and the inclusion proof. Waits while it is being
        sequenced into the transparency log (about ANFU_LOG_STH_INTERVAL_S)."""
        path = f"/v1/receipts/{_seg(txn_id)}"

        def fetch() -> Json | None:
            response = self._http.request("GET", path, headers=self.auth_headers("GET", path))
            if response.status_code == 202:
                return None
            raise_for_problem(response)
            return json_object(response)

        return poll_receipt(fetch, txn_id, wait_s)

    def verified_receipt(self, txn_id: str, *, keys: list[Json] | None = None,
                         wait_s: float = 10.0) -> Json:
        """``receipt()``, checked here: the receipt's signature, its transaction and salt
        against the log entry's commitment, the tree head's signature and the inclusion
        proof, against ``keys`` (default: fetched now)."""
        bundle = self.receipt(txn_id, wait_s=wait_s)
        verify_receipt_bundle(bundle, keys if keys is not None else self.platform_keys())
        return bundle

    def _public_get(self, path: str) -> Json:
        response = self._http.get(path)
        raise_for_problem(response)
        return json_object(response)
