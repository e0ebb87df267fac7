"""The admin zone's bearer token: made at random, kept only as a SHA-256 digest, checked by
comparing digests in constant time. The token carries 256 random bits, so a fast hash is
enough (nothing to guess from the digest); comparing digests rather than the tokens also
keeps the comparison's length fixed whatever a caller sends."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from anfu.errors import AuthenticationFailed

_PREFIX = "anfu_op_"  # recognisable in a secret scanner, never valid elsewhere
_MAX_CHARS = 512


class OperatorTokenMissing(AuthenticationFailed):
    code = "operator_token_missing"


class OperatorTokenInvalid(AuthenticationFailed):
    code = "operator_token_invalid"


def new_operator_token() -> str:
    return _PREFIX + secrets.token_urlsafe(32)


def operator_token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_operator_token(authorization: str | None, digest: str) -> None:
    """Raise unless ``authorization`` is ``Bearer <the token whose digest is digest>``."""
    if not authorization:
        raise OperatorTokenMissing("the admin zone needs Authorization: Bearer <operator"
                                   " token> (printed once at first start; `anfu admin token"
                                   " --rotate` makes a new one)",
                                   www_authenticate='Bearer realm="anfu-admin"')
    scheme, _, given = authorization.partition(" ")
    given = given.strip()
    valid = scheme.lower() == "bearer" and 0 < len(given) <= _MAX_CHARS
    if not hmac.compare_digest(operator_token_digest(given if valid else ""), digest) \
            or not valid:
        raise OperatorTokenInvalid("the operator token is wrong", www_authenticate=(
            'Bearer realm="anfu-admin", error="invalid_token"'))
