"""ANFU-SIG-V1: the bytes that are signed and the headers that carry the signature.

Shared by the server and the SDKs, so it is pure: no cryptography here, only the exact
byte layout. Each signing string starts with the version label (domain separation), has
one field per line, and ends with a LF; no field may contain CR or LF, so the layout is
unambiguous.

Request (and notification: method POST, the notify URL's path and query)::

    ANFU-SIG-V1\\n<METHOD>\\n<path?query as sent>\\n<timestamp>\\n<nonce>\\n<hex sha256(body)>\\n

Response (``merchant_id`` and ``request_nonce`` from the request's Authorization header, or
``-`` for an unsigned request), so one merchant's signed answer never verifies as another's,
nor as the answer to another request::

    ANFU-SIG-V1\\n<status>\\n<request path?query>\\n<timestamp>\\n<nonce>\\n<merchant_id>\\n
    <request_nonce>\\n<hex sha256(body)>\\n
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from dataclasses import dataclass

from anfu.errors import AuthenticationFailed

SCHEME = "ANFU-SIG-V1"
AUTHORIZATION_HEADER = "Authorization"
SIGNATURE_HEADER = "Anfu-Signature"
# Kept in step with anfu.crypto.ALGORITHMS (a test checks); this module stays crypto-free.
ALGORITHMS: tuple[str, ...] = (
    "ed25519", "ecdsa-p256-sha256", "rsa-sha256", "sm2-sm3", "rsa-pss-sha256"
)

_REQUEST_PARAMS = ("merchant_id", "key_id", "alg", "timestamp", "nonce", "signature")
_RESPONSE_PARAMS = ("key_id", "alg", "timestamp", "nonce", "signature")
_MAX_HEADER = 4096
_NONCE = re.compile(r"[A-Za-z0-9_-]{16,64}")
_TIMESTAMP = re.compile(r"[0-9]{1,16}")
_ID = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]{1,128}")  # visible ASCII but " and \
_PARAM = re.compile(r'([a-z_]+)="([^"\\]*)"')
_METHOD = re.compile(r"[A-Z]{1,16}")


@dataclass(frozen=True, slots=True)
class RequestSignature:
    merchant_id: str
    key_id: str
    alg: str
    timestamp: str
    nonce: str
    signature: bytes


@dataclass(frozen=True, slots=True)
class ResponseSignature:
    key_id: str
    alg: str
    timestamp: str
    nonce: str
    signature: bytes


def new_nonce() -> str:
    """22 URL-safe characters (128 random bits)."""
    return secrets.token_urlsafe(16)


# --- signing strings ---------------------------------------------------------------------


def _line(value: str, what: str) -> str:
    if "\n" in value or "\r" in value:
        raise ValueError(f"{what} must not contain CR or LF")
    return value


def _signing_bytes(first: str, path_qs: str, timestamp: str, nonce: str, body: bytes,
                   bound: tuple[str, ...] = ()) -> bytes:
    if not path_qs.startswith("/"):
        raise ValueError("path_qs must be the request path (and query), starting with '/'")
    if not _TIMESTAMP.fullmatch(timestamp):
        raise ValueError("timestamp must be decimal digits")
    if not _NONCE.fullmatch(nonce):
        raise ValueError("nonce must be 16-64 characters of A-Z a-z 0-9 _ -")
    fields = (SCHEME, first, _line(path_qs, "path_qs"), timestamp, nonce,
              *(_line(value, "bound field") for value in bound))
    text = "\n".join((*fields, hashlib.sha256(body).hexdigest())) + "\n"
    return text.encode("utf-8")


def request_signing_bytes(
    method: str, path_qs: str, timestamp: str, nonce: str, body: bytes
) -> bytes:
    """What a merchant signs (and the platform, for notifications) for one HTTP request."""
    method = method.upper()
    if not _METHOD.fullmatch(method):
        raise ValueError("method must be an HTTP method name")
    return _signing_bytes(method, path_qs, timestamp, nonce, body)


def notification_signing_bytes(
    notify_path_qs: str, timestamp: str, nonce: str, body: bytes
) -> bytes:
    return request_signing_bytes("POST", notify_path_qs, timestamp, nonce, body)


UNSIGNED = "-"  # merchant id and request nonce of a response to an unsigned request


def response_signing_bytes(
    status: int, path_qs: str, timestamp: str, nonce: str, body: bytes, *,
    merchant_id: str = UNSIGNED, request_nonce: str = UNSIGNED,
) -> bytes:
    """What the platform signs for its answer to ``merchant_id``'s request (the one that
    carried ``request_nonce``) at ``path_qs``."""
    if type(status) is not int or not 100 <= status <= 599:
        raise ValueError("status must be an HTTP status code")
    if not (merchant_id == UNSIGNED or _ID.fullmatch(merchant_id)):
        raise ValueError("merchant_id must be visible ASCII without quotes or backslashes")
    if not (request_nonce == UNSIGNED or _NONCE.fullmatch(request_nonce)):
        raise ValueError("request_nonce must be 16-64 characters of A-Z a-z 0-9 _ -")
    return _signing_bytes(str(status), path_qs, timestamp, nonce, body,
                          (merchant_id, request_nonce))


def request_binding(authorization: str | None) -> tuple[str, str]:
    """(merchant_id, nonce) that a response to a request with this Authorization header is
    bound to: the header's own claims, or ``-`` twice when it is missing or unreadable (the
    answer is then an error that names no merchant)."""
    try:
        sig = parse_authorization(authorization)
    except AuthenticationFailed:
        return UNSIGNED, UNSIGNED
    return sig.merchant_id, sig.nonce


# --- headers -------------------------------------------------------------------------------


def _malformed(detail: str) -> AuthenticationFailed:
    return AuthenticationFailed(
        f"The signature header is malformed: {detail}. See the ANFU-SIG-V1 format.",
        code="signature_header_malformed",
    )


def _params(text: str, names: tuple[str, ...]) -> dict[str, str]:
    """The quoted name="value" pairs of ``text``: each of ``names`` exactly once, no other."""
    found: dict[str, str] = {}
    pos = 0
    while True:
        match = _PARAM.match(text, pos)
        if match is None:
            raise _malformed(f'expected name="value" at character {pos}')
        name, value = match.groups()
        if name not in names:
            raise _malformed(f"unknown parameter {name!r}")
        if name in found:
            raise _malformed(f"parameter {name!r} appears more than once")
        found[name] = value
        pos = match.end()
        if pos == len(text):
            break
        if text[pos] != ",":
            raise _malformed(f"expected ',' at character {pos}")
        pos += 1
        while pos < len(text) and text[pos] in " \t":
            pos += 1
    missing = [n for n in names if n not in found]
    if missing:
        raise _malformed(f"missing parameter(s) {', '.join(missing)}")
    return found


def _checked(found: dict[str, str]) -> tuple[str, str, str, bytes]:
    """(alg, timestamp, nonce, signature bytes), each validated."""
    for name in ("merchant_id", "key_id"):
        if name in found and not _ID.fullmatch(found[name]):
            raise _malformed(f"{name} must be 1-128 visible ASCII characters")
    if found["alg"] not in ALGORITHMS:
        raise AuthenticationFailed(
            f"Signature algorithm {found['alg']!r} is not supported; use one of "
            f"{', '.join(ALGORITHMS)}.",
            code="algorithm_unsupported",
        )
    if not _TIMESTAMP.fullmatch(found["timestamp"]):
        raise AuthenticationFailed(
            "The signature timestamp must be a Unix time written as decimal digits only.",
            code="timestamp_invalid",
        )
    if not _NONCE.fullmatch(found["nonce"]):
        raise AuthenticationFailed(
            "The signature nonce must be 16-64 characters of A-Z a-z 0-9 _ -.",
            code="nonce_invalid",
        )
    return found["alg"], found["timestamp"], found["nonce"], _b64decode(found["signature"])


def _b64decode(text: str) -> bytes:
    try:
        raw = base64.b64decode(text, validate=True)
    except ValueError:  # binascii.Error, or non-ASCII text
        raw = b""
    # Re-encoding rejects non-canonical spellings, so one signature has one header form.
    if not raw or len(text) > 2048 or base64.b64encode(raw).decode("ascii") != text:
        raise _malformed("signature must be standard base64 (with padding)")
    return raw


def _strip_scheme(header: str | None) -> str:
    if not header or not header.strip():
        raise AuthenticationFailed(
            "The request is not signed: send an Authorization header with the ANFU-SIG-V1 scheme.",
            code="signature_header_missing",
        )
    if len(header) > _MAX_HEADER:
        raise _malformed("the header is too long")
    scheme, _, rest = header.strip().partition(" ")
    if scheme != SCHEME:
        raise _malformed(f"the scheme must be {SCHEME}")
    return rest.lstrip(" ")


def parse_authorization(header: str | None) -> RequestSignature:
    """Parse ``Authorization: ANFU-SIG-V1 merchant_id="…",…``; AuthenticationFailed if bad."""
    found = _params(_strip_scheme(header), _REQUEST_PARAMS)
    alg, timestamp, nonce, signature = _checked(found)
    return RequestSignature(found["merchant_id"], found["key_id"], alg, timestamp, nonce, signature)


def parse_signature_header(header: str | None) -> ResponseSignature:
    """Parse ``Anfu-Signature: key_id="…",alg="…",…``; AuthenticationFailed if bad."""
    if not header or not header.strip():
        raise AuthenticationFailed(
            "The response is not signed: the Anfu-Signature header is missing.",
            code="signature_header_missing",
        )
    if len(header) > _MAX_HEADER:
        raise _malformed("the header is too long")
    found = _params(header.strip(), _RESPONSE_PARAMS)
    alg, timestamp, nonce, signature = _checked(found)
    return ResponseSignature(found["key_id"], alg, timestamp, nonce, signature)


def _format(values: dict[str, str]) -> str:
    text = ",".join(f'{name}="{value}"' for name, value in values.items())
    try:
        _params(text, tuple(values))
        _checked(values)
    except AuthenticationFailed as exc:
        raise ValueError(exc.detail) from None
    return text


def format_authorization(
    *, merchant_id: str, key_id: str, alg: str, timestamp: str, nonce: str, signature: bytes
) -> str:
    """The Authorization header value; ValueError if any part would not parse back."""
    sig = base64.b64encode(signature).decode("ascii")
    values = {
        "merchant_id": merchant_id,
        "key_id": key_id,
        "alg": alg,
        "timestamp": timestamp,
        "nonce": nonce,
        "signature": sig,
    }
    return f"{SCHEME} {_format(values)}"


def format_signature_header(
    *, key_id: str, alg: str, timestamp: str, nonce: str, signature: bytes
) -> str:
    """The Anfu-Signature header value; ValueError if any part would not parse back."""
    sig = base64.b64encode(signature).decode("ascii")
    values = {
        "key_id": key_id,
        "alg": alg,
        "timestamp": timestamp,
        "nonce": nonce,
        "signature": sig,
    }
    return _format(values)
