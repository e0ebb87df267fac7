"""Compact HMAC-SHA256 access tokens: ``v1.<base64url(JSON claims)>.<base64url(MAC)>``.

The MAC covers the ASCII text ``v1.<payload>`` exactly as it travels, so the claims are
parsed only after the MAC is known good, and the version cannot be swapped. The MAC key is
derived from the secret with a purpose label, so the same secret reused elsewhere never
yields a valid token. This runs on every mobile request: one HMAC, one JSON parse.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Callable
from typing import Any

import orjson

from anfu.errors import AuthenticationFailed

_VERSION = "v1"
_MAX_TOKEN_CHARS = 4096
_MIN_SECRET_BYTES = 32


class TokenInvalid(AuthenticationFailed):
    """The token is malformed, was not minted with this secret, or has been altered."""

    code = "token_invalid"


class TokenExpired(TokenInvalid):
    code = "token_expired"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def random_token(nbytes: int = 32) -> str:
    """A URL-safe random string carrying ``nbytes`` bytes of entropy."""
    return secrets.token_urlsafe(nbytes)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class TokenSigner:
    def __init__(self, secret: bytes, clock: Callable[[], float]) -> None:
        if len(secret) < _MIN_SECRET_BYTES:
            raise ValueError(f"the token secret must be at least {_MIN_SECRET_BYTES} bytes")
        self._key = hmac.digest(secret, b"anfu access token v1", "sha256")
        self._clock = clock

    def __repr__(self) -> str:
        return "TokenSigner(secret=<redacted>)"

    def _mac(self, signed: str) -> str:
        return _b64url(hmac.digest(self._key, signed.encode("ascii"), "sha256"))

    def mint(self, claims: dict[str, Any], ttl_s: int) -> str:
        """A token carrying ``claims`` plus ``iat`` and ``exp`` (integer seconds)."""
        if ttl_s <= 0:
            raise ValueError("ttl_s must be positive")
        if "iat" in claims or "exp" in claims:
            raise ValueError("iat and exp are set by mint; do not pass them")
        now = int(self._clock())
        payload = _b64url(orjson.dumps({**claims, "iat": now, "exp": now + ttl_s}))
        signed = f"{_VERSION}.{payload}"
        return f"{signed}.{self._mac(signed)}"

    def verify(self, token: str) -> dict[str, Any]:
        """The claims of a good, unexpired token; TokenInvalid or TokenExpired otherwise."""
        if not isinstance(token, str) or len(token) > _MAX_TOKEN_CHARS or not token.isascii():
            raise TokenInvalid("the access token is malformed; sign in again")
        signed, _, mac = token.rpartition(".")
        version, _, payload = signed.partition(".")
        if version != _VERSION or not payload or "." in payload:
            raise TokenInvalid("the access token is malformed; sign in again")
        # Comparing the encoded text also rejects non-canonical base64 spellings of the MAC.
        if not hmac.compare_digest(mac, self._mac(signed)):
            raise TokenInvalid("the access token is not valid; sign in again")
        try:
            claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            expires = claims["exp"]
        except (ValueError, TypeError, KeyError):
            raise TokenInvalid("the access token is malformed; sign in again") from None
        if not isinstance(claims, dict) or type(expires) is not int:
            raise TokenInvalid("the access token is malformed; sign in again")
        if self._clock() >= expires:
            raise TokenExpired("the access token has expired; refresh it or sign in again")
        return claims
