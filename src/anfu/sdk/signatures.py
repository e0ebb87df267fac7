"""Checking what the platform signs: merchant-zone responses and notifications.

Both carry ``Anfu-Signature: key_id="…",alg="…",timestamp="…",nonce="…",signature="…"`` by
one of the platform keys published at ``GET /v1/platform/keys``; they differ only in the
first line of the signed bytes (the HTTP status for a response, ``POST`` for a notification)
and in the path (the request's for a response, the notify URL's for a notification).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from anfu import crypto, sigwire
from anfu.errors import AnfuError
from anfu.sdk.errors import NotificationSignatureError, SdkError

HEADER = "Anfu-Signature"
DEFAULT_MAX_SKEW_S = 300.0


@dataclass(frozen=True, slots=True)
class PlatformKey:
    key_id: str
    alg: str
    public_key: crypto.PublicKey
    not_before: float | None
    not_after: float | None


class PlatformKeys:
    """The platform's public keys, parsed once (loading a PEM costs more than a verify)."""

    def __init__(self, keys: Iterable[Mapping[str, Any]]) -> None:
        self.raw: list[dict[str, Any]] = [dict(k) for k in keys]
        self._by_id: dict[str, PlatformKey] = {}
        for entry in self.raw:
            # Receipt and log keys are published beside the response keys; only the latter
            # sign responses and notifications, so a receipt key's signature is no answer.
            if entry.get("purpose", "response") != "response":
                continue
            try:
                key_id, alg = str(entry["key_id"]), str(entry["alg"])
                public_key = crypto.load_public_key(alg, entry["public_key_pem"])
            except (KeyError, TypeError, ValueError, crypto.KeyFormatError) as exc:
                raise SdkError(f"platform key entry {entry.get('key_id')!r} is unusable:"
                               f" {exc}") from exc
            self._by_id[key_id] = PlatformKey(key_id, alg, public_key,
                                              _opt_float(entry.get("not_before")),
                                              _opt_float(entry.get("not_after")))

    def get(self, key_id: str) -> PlatformKey | None:
        return self._by_id.get(key_id)

    def key_ids(self) -> list[str]:
        return list(self._by_id)


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def as_platform_keys(keys: PlatformKeys | Sequence[Mapping[str, Any]]) -> PlatformKeys:
    return keys if isinstance(keys, PlatformKeys) else PlatformKeys(keys)


class SignatureCheckFailed(Exception):
    """Internal: one named check failed; callers turn it into their public error."""

    def __init__(self, check: str, detail: str) -> None:
        super().__init__(f"{check}: {detail}")
        self.check = check
        self.detail = detail


def header_value(headers: Mapping[str, str], name: str) -> str | None:
    """Case-insensitive lookup, so a plain dict of headers works as well as httpx's."""
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    return next((v for k, v in headers.items() if k.lower() == lowered), None)


def check_signature(header: str | None, signed_bytes: Callable[[str, str], bytes],
                    keys: PlatformKeys, *, now: float | None,
                    max_skew_s: float | None) -> str:
    """Verify one ``Anfu-Signature`` header; ``signed_bytes(timestamp, nonce)`` rebuilds
    the message. Returns the key id used; raises SignatureCheckFailed naming the check."""
    if not header:
        raise SignatureCheckFailed("signature_header_missing",
                                   f"there is no {HEADER} header")
    try:
        sig = sigwire.parse_signature_header(header)
    except AnfuError as exc:
        # sigwire's code names the part that is wrong (e.g. nonce_invalid).
        raise SignatureCheckFailed(exc.code, f"{HEADER} cannot be read: {exc.detail}") from exc
    timestamp = int(sig.timestamp)
    key = keys.get(sig.key_id)
    if key is None:
        raise SignatureCheckFailed("key_unknown", f"{sig.key_id!r} is not a platform key"
                                   f" (known: {', '.join(keys.key_ids()) or 'none'})")
    if sig.alg != key.alg:
        raise SignatureCheckFailed("algorithm_mismatch", f"platform key {key.key_id} is"
                                   f" {key.alg}, the header says {sig.alg}")
    if ((key.not_before is not None and timestamp < key.not_before)
            or (key.not_after is not None and timestamp > key.not_after)):
        raise SignatureCheckFailed("key_not_valid", f"platform key {key.key_id} was not"
                                   f" valid at timestamp {timestamp}")
    if max_skew_s is not None:
        skew = abs((time.time() if now is None else now) - timestamp)
        if skew > max_skew_s:
            raise SignatureCheckFailed("timestamp_skew", f"timestamp is {int(skew)} s from"
                                       f" the local clock (limit {max_skew_s:g} s); a replay,"
                                       " or one of the clocks is wrong")
    try:
        key.public_key.verify(sig.signature, signed_bytes(sig.timestamp, sig.nonce))
    except crypto.InvalidSignature as exc:
        raise SignatureCheckFailed("signature_invalid", "the signature does not match"
                                   " (status or method, path and query, timestamp, nonce,"
                                   " body)") from exc
    return key.key_id


def notification_path(path_qs: str) -> str:
    """Accept the notify URL's path and query, or the whole URL (then take its path+query)."""
    if "://" in path_qs:
        parts = urlsplit(path_qs)
        path_qs = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if not path_qs.startswith("/"):
        raise ValueError(f"path_qs must be the notify URL's path and query, starting with"
                         f" '/', not {path_qs!r}")
    return path_qs


def verify_notification(*, headers: Mapping[str, str], body: bytes, path_qs: str,
                        platform_keys: PlatformKeys | Sequence[Mapping[str, Any]],
                        max_skew_s: float = DEFAULT_MAX_SKEW_S,
                        now: float | None = None) -> dict[str, Any]:
    """Check a notification POSTed by the platform and return the event
    (``{id, type, created_at, data}``).

    ``body`` is the raw request body, unparsed; ``path_qs`` is the path and query of your
    notify URL exactly as it was requested (the whole URL is accepted too). Raises
    NotificationSignatureError whose ``check`` names what failed. Delivery is at least
    once: the same event ``id`` may arrive again, so act on each id once."""
    keys = as_platform_keys(platform_keys)
    path = notification_path(path_qs)
    try:
        check_signature(header_value(headers, HEADER),
                        lambda ts, nonce: sigwire.request_signing_bytes("POST", path, ts,
                                                                        nonce, body),
                        keys, now=now, max_skew_s=max_skew_s)
    except SignatureCheckFailed as exc:
        raise NotificationSignatureError(exc.check, exc.detail) from None
    return _event(body)


def _event(body: bytes) -> dict[str, Any]:
    try:
        event = json.loads(body)
    except ValueError as exc:
        raise NotificationSignatureError("body_invalid", f"the body is not JSON: {exc}") from exc
    if not isinstance(event, dict) or not {"id", "type", "data"} <= event.keys():
        raise NotificationSignatureError("body_invalid", "the body is not an event object"
                                         " with id, type and data")
    return event
