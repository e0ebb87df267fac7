"""MerchantClient: the merchant zone, signed both ways.

Every request is signed with ANFU-SIG-V1 (ed25519, ecdsa-p256-sha256, rsa-sha256 or sm2-sm3)
and every response, errors included, must carry a valid ``Anfu-Signature`` by a platform key,
or ResponseSignatureError is raised before the body is looked at.

    client = MerchantClient("http://127.0.0.1:8001", merchant_id, key_id, "ed25519", pem)
    trade = client.create_trade(out_trade_no="order-1", amount=1999, currency="CNY",
                                subject="Tea", mode="escrow")
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any
from urllib.parse import quote, urlencode

import httpx

from anfu import crypto, sigwire
from anfu.sdk.errors import (
    NotificationSignatureError,
    ResponseSignatureError,
    json_object,
    raise_for_problem,
)
from anfu.sdk.signatures import (
    DEFAULT_MAX_SKEW_S,
    HEADER,
    PlatformKeys,
    SignatureCheckFailed,
    as_platform_keys,
    check_signature,
    header_value,
)
from anfu.sdk.signatures import verify_notification as _verify_notification
from anfu.sdk.tls import ClientCert, Verify, client_verify
from anfu.sdk.txn import poll_receipt

KEYS_PATH = "/v1/platform/keys"
Json = dict[str, Any]


def _seg(value: str) -> str:
    # Ids go into the path: quote everything so an id cannot change the route.
    return quote(value, safe="")


class MerchantClient:
    """A merchant's client for the merchant zone (default ``http://127.0.0.1:8001``).

    ``platform_keys``: pin the platform's keys (the ``keys`` list of ``/v1/platform/keys``,
    obtained out of band). Pinned keys are never replaced by what the network says. Without
    them the keys are fetched on first use and trusted if the answer is signed by one of
    them (trust on first use), and fetched once more when a response names an unknown key
    (rotation).

    ``clock`` gives the request timestamps and the reference for ``response_max_skew_s``
    (``None`` turns the response timestamp check off)."""

    def __init__(self, base_url: str, merchant_id: str, key_id: str, alg: str,
                 private_key_pem: str | bytes, *,
                 platform_keys: Sequence[Mapping[str, Any]] | None = None,
                 timeout: float = 10.0, transport: httpx.BaseTransport | None = None,
                 private_key_password: bytes | None = None,
                 clock: Callable[[], float] = time.time,
                 response_max_skew_s: float | None = DEFAULT_MAX_SKEW_S,
                 verify: Verify = True, cert: ClientCert | None = None) -> None:
        if alg not in crypto.ALGORITHMS:
            raise ValueError(f"unsupported algorithm {alg!r}; use one of"
                             f" {', '.join(crypto.ALGORITHMS)}")
        self.merchant_id = merchant_id
        self.key_id = key_id
        self.alg = alg
        self._key = crypto.load_private_key(alg, private_key_pem,
                                            password=private_key_password)
        self._clock = clock
        self._max_skew_s = response_max_skew_s
        self._pinned = platform_keys is not None
        self._keys: PlatformKeys | None = (PlatformKeys(platform_keys)
                                           if platform_keys is not None else None)
        self._keys_lock = threading.Lock()
        self._http = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout,
                                  transport=transport,
                                  verify=client_verify(verify, cert),  # TLS / mTLS
                                  headers={"Accept": "application/json",
                                           "User-Agent": "anfu-sdk-python"})

    # -- lifecycle (``close`` is the trade operation, hence ``disconnect``) --------------
    def disconnect(self) -> None:
        self._http.close()

    def __enter__(self) -> MerchantClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.disconnect()

    # -- trades -------------------------------------------------------------------------
    def create_trade(self, *, out_trade_no: str, amount: int, currency: str, subject: str,
                     mode: str = "escrow", notify_url: str | None = None,
                     pay_expire_s: int | None = None) -> Json:
        """Create a trade (``mode`` ``escrow`` or ``direct``). Repeating the same
        ``out_trade_no`` with the same fields returns the same trade; other fields: 409."""
        body: Json = {"out_trade_no": out_trade_no, "amount": amount, "currency": currency,
                      "subject": subject, "mode": mode}
        if notify_url is not None:
            body["notify_url"] = notify_url
        if pay_expire_s is not None:
            body["pay_expire_s"] = pay_expire_s
        return self._call("POST", "/v1/trades", body=body)

    def get_trade(self, trade_no: str) -> Json:
        """The trade with its ``refunds`` list."""
        return self._call("GET", f"/v1/trades/{_seg(trade_no)}")

    def find_trade(self, out_trade_no: str) -> Json:
        """The trade created with your ``out_trade_no`` (ApiError 404 if there is none)."""
        return self._call("GET", "/v1/trades", query={"out_trade_no": out_trade_no})

    def ship(self, trade_no: str) -> Json:
        return self._call("POST", f"/v1/trades/{_seg(trade_no)}/ship")

    def close(self, trade_no: str) -> Json:
        """Close an unpaid trade."""
        return self._call("POST", f"/v1/trades/{_seg(trade_no)}/close")

    def refund(self, trade_no: str, out_refund_no: str, amount: int,
               reason: str | None = None) -> Json:
        """Refund part or all of a paid trade; returns ``{"refund": …, "trade": …}``.
        ``out_refund_no`` is your id for the refund: repeating it repeats nothing."""
        body: Json = {"out_refund_no": out_refund_no, "amount": amount}
        if reason is not None:
            body["reason"] = reason
        return self._call("POST", f"/v1/trades/{_seg(trade_no)}/refunds", body=body)

    # -- money and events ---------------------------------------------------------------
    def balance(self) -> Json:
        return self._call("GET", "/v1/balance")

    def statement(self, currency: str = "CNY", *, cursor: int | str | None = None,
                  limit: int | None = None) -> Json:
        """One page of settlement entries; pass ``next_cursor`` back for the next page."""
        return self._call("GET", "/v1/statement",
                          query={"currency": currency, "cursor": cursor, "limit": limit})

    def events(self, *, cursor: int | str | None = None, limit: int | None = None,
               trade_no: str | None = None) -> Json:
        """Events with their delivery state and every attempt (``attempt_log``)."""
        return self._call("GET", "/v1/events",
                          query={"cursor": cursor, "limit": limit, "trade_no": trade_no})

    def redeliver(self, event_id: str) -> Json:
        return self._call("POST", f"/v1/events/{_seg(event_id)}/redeliver")

    def receipt(self, txn_id: str, *, wait_s: float = 10.0) -> Json:
        """The signed receipt bundle of one of your trades' payments or refunds (receipt with
        the transaction and its salt, signed tree head, inclusion proof); waits while the log
        sequences it. Check it with ``anfu.transparency.verify.verify_receipt_bundle`` or
        ``anfu verify receipt`` (the public log holds only the transaction's commitment)."""
        def fetch() -> Json | None:
            bundle = self._call("GET", f"/v1/receipts/{_seg(txn_id)}")
            return None if bundle.get("status") == "pending" else bundle

        return poll_receipt(fetch, txn_id, wait_s)

    # -- platform keys and notifications ------------------------------------------------
    def platform_keys(self) -> list[Json]:
        """Fetch ``/v1/platform/keys`` (verified; see the class notes on trust)."""
        return self._refresh_keys().raw

    def verify_notification(self, *, headers: Mapping[str, str], body: bytes, path_qs: str,
                            max_skew_s: float = DEFAULT_MAX_SKEW_S,
                            now: float | None = None) -> Json:
        """As ``anfu.sdk.verify_notification``, with this client's (cached) platform keys."""
        keys = self._current_keys()
        try:
            return _verify_notification(headers=headers, body=body, path_qs=path_qs,
                                        platform_keys=keys, max_skew_s=max_skew_s, now=now)
        except NotificationSignatureError as exc:
            if exc.check != "key_unknown" or self._pinned:
                raise
        return _verify_notification(headers=headers, body=body, path_qs=path_qs,
                                    platform_keys=self._refresh_keys(), max_skew_s=max_skew_s,
                                    now=now)

    # -- the wire -----------------------------------------------------------------------
    def _call(self, method: str, path: str, *, query: Mapping[str, Any] | None = None,
              body: Json | None = None) -> Json:
        response = self._send_signed(method, path, query, body)
        self._verify_response(response)
        raise_for_problem(response)
        return json_object(response)

    def _send_signed(self, method: str, path: str, query: Mapping[str, Any] | None,
                     body: Json | None) -> httpx.Response:
        params = {k: v for k, v in (query or {}).items() if v is not None}
        url = path + (f"?{urlencode(params)}" if params else "")
        content = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json"} if body is not None else {}
        request = self._http.build_request(method, url, content=content, headers=headers)
        # Sign the path and query as they will go on the wire, after httpx has encoded them.
        path_qs = request.url.raw_path.decode("ascii")
        request.headers["Authorization"] = self._authorization(method, path_qs, content)
        return self._http.send(request)

    def _authorization(self, method: str, path_qs: str, body: bytes) -> str:
        timestamp, nonce = str(int(self._clock())), sigwire.new_nonce()
        message = sigwire.request_signing_bytes(method, path_qs, timestamp, nonce, body)
        return sigwire.format_authorization(
            merchant_id=self.merchant_id, key_id=self.key_id, alg=self.alg,
            timestamp=timestamp, nonce=nonce, signature=self._key.sign(message))

    def _verify_response(self, response: httpx.Response,
                         keys: PlatformKeys | None = None) -> None:
        """Raise ResponseSignatureError unless ``response`` is signed by a platform key."""
        path_qs = response.request.url.raw_path.decode("ascii")
        status = response.status_code

        # Bound to this merchant and this request's nonce, as the client sent them: another
        # merchant's (or another request's) signed answer does not verify here.
        merchant_id, request_nonce = sigwire.request_binding(
            response.request.headers.get("authorization"))

        def signed_bytes(timestamp: str, nonce: str) -> bytes:
            return sigwire.response_signing_bytes(status, path_qs, timestamp, nonce,
                                                  response.content, merchant_id=merchant_id,
                                                  request_nonce=request_nonce)

        header = header_value(response.headers, HEADER)
        use = keys if keys is not None else self._current_keys()
        try:
            check_signature(header, signed_bytes, use, now=self._clock(),
                            max_skew_s=self._max_skew_s)
            return
        except SignatureCheckFailed as exc:
            # A key we have not seen: the platform may have rotated; look once more.
            if exc.check != "key_unknown" or self._pinned or keys is not None:
                raise ResponseSignatureError(f"response to {response.request.method}"
                                             f" {path_qs}: {exc}", status=status) from None
        try:
            check_signature(header, signed_bytes, self._refresh_keys(), now=self._clock(),
                            max_skew_s=self._max_skew_s)
        except SignatureCheckFailed as exc:
            raise ResponseSignatureError(f"response to {response.request.method} {path_qs}:"
                                         f" {exc}", status=status) from None

    def _current_keys(self) -> PlatformKeys:
        keys = self._keys
        return keys if keys is not None else self._refresh_keys()

    def _refresh_keys(self) -> PlatformKeys:
        with self._keys_lock:
            response = self._http.get(KEYS_PATH)
            if response.status_code != 200:
                # Even an error must be signed; with no keys yet there is nothing to check
                # it against, so it is reported as what it is: no usable key list.
                raise ResponseSignatureError(f"cannot fetch platform keys from {KEYS_PATH}",
                                             status=response.status_code)
            fetched = as_platform_keys(json_object(response).get("keys", []))
            # Pinned keys judge the answer; otherwise it must be signed by a key it lists.
            self._verify_response(response, keys=self._keys if self._pinned else fetched)
            if not self._pinned:
                self._keys = fetched
            return fetched
