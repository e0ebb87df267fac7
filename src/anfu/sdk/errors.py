"""Errors the SDK raises, and the one place that turns an RFC 9457 problem into ApiError."""

from __future__ import annotations

import json
from typing import Any

import httpx


class SdkError(Exception):
    """Base of every error raised by ``anfu.sdk``."""


class ApiError(SdkError):
    """The platform answered with an error (``application/problem+json``).

    ``code`` is the platform's stable machine-readable code (e.g. ``trade_not_found``,
    ``insufficient_funds``); branch on it, not on ``detail``, which is for people."""

    def __init__(self, status: int, code: str, detail: str, body: dict[str, Any]) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail
        self.body = body


class ResponseSignatureError(SdkError):
    """A merchant-zone response is unsigned, or its ``Anfu-Signature`` does not verify.

    The response must not be trusted: its body may have been changed on the way. ``status``
    is the HTTP status that came back (useful when a proxy, not the platform, answered)."""

    def __init__(self, detail: str, *, status: int | None = None) -> None:
        super().__init__(detail if status is None else f"{detail} (HTTP {status})")
        self.detail = detail
        self.status = status


class NotificationSignatureError(SdkError):
    """A notification failed verification; ``check`` names the check that failed:
    ``signature_header_missing``, ``signature_header_malformed`` (or, more precisely,
    ``algorithm_unsupported``, ``timestamp_invalid``, ``nonce_invalid``), ``key_unknown``,
    ``algorithm_mismatch``, ``key_not_valid``, ``timestamp_skew``, ``signature_invalid``
    or ``body_invalid``. Answer such a request with a 4xx and do not act on it."""

    def __init__(self, check: str, detail: str) -> None:
        super().__init__(f"{check}: {detail}")
        self.check = check
        self.detail = detail


def raise_for_problem(response: httpx.Response) -> None:
    """Raise ApiError for a 4xx/5xx answer; problem+json fields are kept in ``body``."""
    if response.status_code < 400:
        return
    body: dict[str, Any]
    try:
        parsed = json.loads(response.content) if response.content else {}
        body = parsed if isinstance(parsed, dict) else {"value": parsed}
    except ValueError:
        # Not JSON: something in front of the platform (a proxy) answered.
        body = {"detail": response.text[:500]}
    code = str(body.get("code") or f"http_{response.status_code}")
    detail = str(body.get("detail") or body.get("title") or response.reason_phrase)
    raise ApiError(response.status_code, code, detail, body)


def json_object(response: httpx.Response) -> dict[str, Any]:
    """The body of a 2xx answer as a dict (``{}`` for an empty body, e.g. 204)."""
    if not response.content:
        return {}
    try:
        parsed = json.loads(response.content)
    except ValueError as exc:
        raise SdkError(f"HTTP {response.status_code} answer is not JSON: "
                       f"{response.text[:200]!r}") from exc
    if not isinstance(parsed, dict):
        raise SdkError(f"HTTP {response.status_code} answer is not a JSON object")
    return parsed
