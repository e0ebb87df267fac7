"""PLACEHOLDER written by the lead so that the app imports while helper PKI works.
Helper PKI: overwrite this whole file with the real module (design §3 contract)."""

from __future__ import annotations

from typing import Any

from anfu.errors import AuthenticationFailed


def current_device_certificate(conn: Any, device_id: str, now: float) -> Any:
    return None


def verify_certificate(conn: Any, cert_der: bytes, *, profile: str, now: float) -> Any:
    raise AuthenticationFailed("the platform CA is not ready", code="certificate_unknown")
