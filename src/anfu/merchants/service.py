"""Merchant registry use cases and the signed-request check."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable

from anfu import crypto
from anfu.errors import AuthenticationFailed, InvalidRequest, NotFound
from anfu.merchants.model import Merchant, MerchantKey, VerifiedRequest
from anfu.merchants.ports import MerchantDirectory, MerchantStore
from anfu.notify.urls import parse_notify_url
from anfu.sigwire import parse_authorization, request_signing_bytes

_NAME = re.compile(r"^[^\x00-\x1f]{1,128}$")


def check_notify_url(url: str | None) -> str | None:
    """The form of a notify URL, as the worker's HTTP client reads it (``notify/urls.py``);
    raises ``NotifyUrlInvalid`` (422). Where it leads is checked before the write, where a
    name can be resolved without holding the writer (``notify.network.vet_notify_url``),
    and again by the worker when it connects."""
    return None if url is None else parse_notify_url(url).url


def _parse_key(alg: str, public_key_pem: str) -> crypto.PublicKey:
    if alg not in crypto.ALGORITHMS:
        raise InvalidRequest(f"unsupported algorithm {alg!r}; use one of"
                             f" {', '.join(crypto.ALGORITHMS)}", code="algorithm_unsupported")
    try:
        return crypto.load_public_key(alg, public_key_pem)
    except crypto.KeyFormatError as exc:
        raise InvalidRequest(f"public key refused: {exc}", code="invalid_public_key") from exc


def create_merchant(store: MerchantStore, *, name: str, alg: str, public_key_pem: str,
                    notify_url: str | None, fee_bps: int, now: float) -> tuple[Merchant,
                                                                               MerchantKey]:
    if not _NAME.match(name):
        raise InvalidRequest("name must be 1-128 printable characters", code="invalid_name")
    if not 0 <= fee_bps <= 10000:
        raise InvalidRequest("fee_bps must be between 0 and 10000", code="invalid_fee")
    merchant = Merchant(merchant_id="m" + secrets.token_hex(8), name=name,
                        notify_url=check_notify_url(notify_url), fee_bps=fee_bps,
                        status="active", created_at=now)
    key = _new_key(merchant.merchant_id, alg, public_key_pem, now)
    store.insert_merchant(merchant)
    store.insert_key(key)
    return merchant, key


def _new_key(merchant_id: str, alg: str, public_key_pem: str, now: float) -> MerchantKey:
    public_key = _parse_key(alg, public_key_pem)
    return MerchantKey(key_id="k" + secrets.token_hex(8), merchant_id=merchant_id, alg=alg,
                       public_key_pem=public_key.public_pem(),
                       fingerprint=public_key.fingerprint(), status="active", created_at=now)


def add_key(store: MerchantStore, *, merchant_id: str, alg: str, public_key_pem: str,
            now: float) -> MerchantKey:
    if store.merchant(merchant_id) is None:
        raise NotFound(f"no merchant {merchant_id}", code="merchant_not_found")
    key = _new_key(merchant_id, alg, public_key_pem, now)
    store.insert_key(key)
    return key


def revoke_key(store: MerchantStore, *, merchant_id: str, key_id: str, now: float,
               cache: crypto.PublicKeyCache | None = None) -> MerchantKey:
    key = store.key(key_id)
    if key is None or key.merchant_id != merchant_id:
        raise NotFound(f"merchant {merchant_id} has no key {key_id}", code="key_not_found")
    store.revoke_key(key_id, now)
    if cache is not None:
        cache.drop(key_id)
    revoked = store.key(key_id)
    assert revoked is not None
    return revoked


class RequestVerifier:
    """Checks an ``Authorization: ANFU-SIG-V1 …`` header. Each failure raises
    AuthenticationFailed whose code names the check; nothing is written here. The caller
    then remembers the nonce (``remember_nonce``) in shared storage."""

    def __init__(self, *, directory: MerchantDirectory, cache: crypto.PublicKeyCache,
                 clock: Callable[[], float], window_s: int) -> None:
        self._directory = directory
        self._cache = cache
        self._clock = clock
        self._window_s = window_s

    def verify(self, *, method: str, path_qs: str, authorization: str | None,
               body: bytes) -> VerifiedRequest:
        if not authorization:
            raise AuthenticationFailed("the request carries no Authorization header; sign it"
                                       " with ANFU-SIG-V1", code="signature_header_missing")
        sig = parse_authorization(authorization)
        merchant = self._directory.merchant(sig.merchant_id)
        if merchant is None or merchant.status != "active":
            raise AuthenticationFailed(f"unknown merchant {sig.merchant_id!r}",
                                       code="merchant_unknown")
        key = self._directory.key(sig.key_id)
        if key is None or key.merchant_id != merchant.merchant_id:
            raise AuthenticationFailed(f"merchant {merchant.merchant_id} has no key"
                                       f" {sig.key_id!r}", code="key_unknown")
        if key.status != "active":
            self._cache.drop(key.key_id)
            raise AuthenticationFailed(f"key {key.key_id} was revoked", code="key_revoked")
        if sig.alg != key.alg:
            raise AuthenticationFailed(f"key {key.key_id} is a {key.alg} key, not {sig.alg}",
                                       code="algorithm_mismatch")
        skew = abs(self._clock() - int(sig.timestamp))
        if skew > self._window_s:
            raise AuthenticationFailed(
                f"timestamp is {int(skew)} s from the server clock (limit {self._window_s} s);"
                " check the client's clock", code="timestamp_skew")
        public_key = self._cache.get(key.key_id,
                                     lambda: crypto.load_public_key(key.alg, key.public_key_pem))
        message = request_signing_bytes(method, path_qs, sig.timestamp, sig.nonce, body)
        try:
            public_key.verify(sig.signature, message)
        except crypto.InvalidSignature as exc:
            raise AuthenticationFailed(
                "the signature does not match the request (method, path and query as sent,"
                " timestamp, nonce, body hash)", code="signature_invalid") from exc
        return VerifiedRequest(merchant_id=merchant.merchant_id, key_id=key.key_id,
                               nonce=sig.nonce, timestamp=int(sig.timestamp))


def remember_nonce(store: MerchantStore, *, request: VerifiedRequest, window_s: int,
                   now: float) -> None:
    if not store.remember_nonce(request.merchant_id, request.nonce, now + 2 * window_s):
        raise AuthenticationFailed("this nonce was already used: the request is a replay",
                                   code="nonce_replayed")
