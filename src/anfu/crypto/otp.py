"""One-time passwords: TOTP (RFC 6238) and HOTP (RFC 4226) on ``pyotp``, enrolment QR codes
(``segno``), recovery codes, keyed hashes of short codes (SMS), and ``SecretBox`` to keep
TOTP secrets encrypted at rest (AES-256-GCM).

Verification raises ``InvalidOtp`` (or ``InvalidCiphertext``); it never returns a bool. Codes
are compared in constant time, every candidate of a window is computed and compared (no early
exit), and typed input is normalised first: spaces are dropped, only ASCII digits count.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import os
import secrets
from collections.abc import Callable, Sequence
from typing import Literal

import pyotp
import segno
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from anfu.crypto.tokens import sha256_hex
from anfu.errors import AuthenticationFailed

Algorithm = Literal["sha1", "sha256", "sha512"]
RandBytes = Callable[[int], bytes]

TOTP_DIGITS = 6
TOTP_PERIOD_S = 30
TOTP_SECRET_BYTES = 20  # 160 bits: RFC 4226 section 4 recommends 160; base32 gives 32 chars
MIN_SECRET_BYTES = 16  # RFC 4226 requirement R6: at least 128 bits
_DIGESTS = {"sha1": hashlib.sha1, "sha256": hashlib.sha256, "sha512": hashlib.sha512}


class InvalidOtp(AuthenticationFailed):
    """A one-time code (TOTP, HOTP, SMS or recovery code) does not match, or was used before."""

    code = "otp_invalid"


class InvalidCiphertext(Exception):
    """A sealed secret was altered, sealed under another key or context, or is malformed."""


# ---------------------------------------------------------------------------------------------
# HOTP / TOTP
# ---------------------------------------------------------------------------------------------


def new_totp_secret(*, randbytes: RandBytes = secrets.token_bytes) -> str:
    """A fresh 160-bit secret in unpadded base32 (32 characters), as authenticator apps expect."""
    return base64.b32encode(randbytes(TOTP_SECRET_BYTES)).decode("ascii")


def _hotp(secret: str, digits: int, algorithm: Algorithm) -> pyotp.HOTP:
    if algorithm not in _DIGESTS:
        raise ValueError(f"unknown OTP algorithm {algorithm!r}: use sha1, sha256 or sha512")
    try:
        raw = base64.b32decode(secret + "=" * (-len(secret) % 8), casefold=True)
    except ValueError:  # binascii.Error is a ValueError
        raise ValueError("the OTP secret is not base32") from None
    if len(raw) < MIN_SECRET_BYTES:
        raise ValueError("the OTP secret must carry at least 128 bits (RFC 4226, R6)")
    try:
        return pyotp.HOTP(secret, digits=digits, digest=_DIGESTS[algorithm])
    except (ValueError, TypeError) as exc:  # binascii.Error is a ValueError
        raise ValueError(f"the OTP secret is not usable: {exc}") from None


def _typed(code: str, digits: int) -> str | None:
    """The code as typed, without spaces; None unless it is exactly ``digits`` ASCII digits."""
    if not isinstance(code, str) or len(code) > 4 * digits:
        return None
    compact = code.replace(" ", "").replace("-", "")
    if len(compact) != digits or not (compact.isascii() and compact.isdigit()):
        return None
    return compact


def hotp_code(secret: str, counter: int, *, digits: int = TOTP_DIGITS,
              algorithm: Algorithm = "sha1") -> str:
    """The RFC 4226 code for ``counter``."""
    if counter < 0:
        raise ValueError("the HOTP counter must not be negative")
    return _hotp(secret, digits, algorithm).at(counter)


def totp_step(at: float, *, period: int = TOTP_PERIOD_S) -> int:
    """The RFC 6238 time step ``T = floor((at - T0) / X)`` with ``T0 = 0``."""
    return int(at // period)


def totp_code(secret: str, *, at: float, digits: int = TOTP_DIGITS,
              period: int = TOTP_PERIOD_S, algorithm: Algorithm = "sha1") -> str:
    """The RFC 6238 code at Unix time ``at`` (what an authenticator app shows)."""
    return hotp_code(secret, totp_step(at, period=period), digits=digits, algorithm=algorithm)


def _match(hotp: pyotp.HOTP, typed: str | None, counters: range) -> int | None:
    """The first counter in ``counters`` whose code equals ``typed``; every one is compared."""
    matched: int | None = None
    candidate = typed if typed is not None else "\0" * hotp.digits
    for counter in counters:
        if counter < 0:
            continue
        equal = hmac.compare_digest(hotp.at(counter).encode(), candidate.encode())
        if equal and matched is None:
            matched = counter
    return matched if typed is not None else None


def verify_totp(secret: str, code: str, *, at: float, window: int = 1,
                last_step: int | None = None, digits: int = TOTP_DIGITS,
                period: int = TOTP_PERIOD_S, algorithm: Algorithm = "sha1") -> int:
    """The time step the code belongs to, searching ``window`` steps either side of ``at``.

    Store the returned step and pass it back as ``last_step`` next time: a code of that step or
    an earlier one is refused (RFC 6238 section 5.2: a code is accepted once). Raises
    ``InvalidOtp`` for a wrong, malformed or reused code.
    """
    if window < 0:
        raise ValueError("window must not be negative")
    hotp = _hotp(secret, digits, algorithm)
    current = totp_step(at, period=period)
    step = _match(hotp, _typed(code, digits), range(current - window, current + window + 1))
    if step is None:
        raise InvalidOtp("the authenticator code is not correct")
    if last_step is not None and step <= last_step:
        raise InvalidOtp("this authenticator code was already used; wait for the next one",
                         code="otp_reused")
    return step


def verify_hotp(secret: str, code: str, *, counter: int, look_ahead: int = 0,
                digits: int = TOTP_DIGITS, algorithm: Algorithm = "sha1") -> int:
    """The counter (``counter`` … ``counter + look_ahead``) the code belongs to; store it + 1."""
    if counter < 0 or look_ahead < 0:
        raise ValueError("counter and look_ahead must not be negative")
    hotp = _hotp(secret, digits, algorithm)
    matched = _match(hotp, _typed(code, digits), range(counter, counter + look_ahead + 1))
    if matched is None:
        raise InvalidOtp("the one-time code is not correct")
    return matched


def totp_uri(secret: str, account: str, issuer: str = "anfu") -> str:
    """The ``otpauth://totp/<issuer>:<account>?secret=…&issuer=…`` enrolment URI (Key URI
    Format); SHA-1, 6 digits and 30 s are left implicit, as every authenticator app assumes."""
    if not account or ":" in issuer or not issuer:
        raise ValueError("account must not be empty and issuer must be non-empty without ':'")
    _hotp(secret, TOTP_DIGITS, "sha1")
    return pyotp.TOTP(secret).provisioning_uri(name=account, issuer_name=issuer)


def _qr(uri: str) -> segno.QRCode:
    return segno.make_qr(uri, error="m")


def totp_qr_png(uri: str, *, scale: int = 6) -> bytes:
    """The enrolment URI as a PNG QR code (with the standard 4-module quiet zone)."""
    out = io.BytesIO()
    _qr(uri).save(out, kind="png", scale=scale)
    return out.getvalue()


def totp_qr_svg(uri: str, *, scale: int = 6) -> str:
    """The enrolment URI as a standalone SVG document (no XML declaration)."""
    out = io.BytesIO()
    _qr(uri).save(out, kind="svg", scale=scale, xmldecl=False, title="anfu authenticator")
    return out.getvalue().decode("utf-8")


# ---------------------------------------------------------------------------------------------
# Recovery codes
# ---------------------------------------------------------------------------------------------

# Crockford's base32 in lower case: no i, l, o, u, so nothing is confused when read aloud or
# copied by hand; on input O reads as 0 and I/L as 1. 16 symbols carry 80 bits.
_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"
_CROCKFORD_INPUT = str.maketrans({"o": "0", "i": "1", "l": "1"})
RECOVERY_SYMBOLS = 16
_RECOVERY_LABEL = b"anfu recovery code v1\0"
_RECOVERY_PREFIX = "rc1"


def _recovery_code(randbytes: RandBytes) -> str:
    value = int.from_bytes(randbytes(RECOVERY_SYMBOLS * 5 // 8), "big")
    symbols = "".join(_CROCKFORD[(value >> (5 * i)) & 31] for i in range(RECOVERY_SYMBOLS))
    return "-".join(symbols[i:i + 4] for i in range(0, RECOVERY_SYMBOLS, 4))


def new_recovery_codes(n: int = 10, *, randbytes: RandBytes = secrets.token_bytes) -> list[str]:
    """``n`` distinct single-use codes like ``k7qm-3xv9-hd2p-8wne`` (80 bits each)."""
    if n < 1:
        raise ValueError("n must be positive")
    codes: list[str] = []
    while len(codes) < n:
        code = _recovery_code(randbytes)
        if code not in codes:
            codes.append(code)
    return codes


def _normal_recovery(code: str) -> str | None:
    if not isinstance(code, str) or len(code) > 64:
        return None
    compact = "".join(code.split()).replace("-", "").lower().translate(_CROCKFORD_INPUT)
    if len(compact) != RECOVERY_SYMBOLS or any(c not in _CROCKFORD for c in compact):
        return None
    return compact


def _recovery_digest(salt: bytes, normal: str) -> str:
    return sha256_hex(_RECOVERY_LABEL + salt + normal.encode("ascii"))


def hash_recovery_code(code: str, *, randbytes: RandBytes = secrets.token_bytes) -> str:
    """``rc1$<salt hex>$<sha256 hex>`` of the normalised code. A fast salted hash suffices:
    the code carries 80 random bits, so guessing it offline is out of reach."""
    normal = _normal_recovery(code)
    if normal is None:
        raise ValueError("not a recovery code")
    salt = randbytes(16)
    return f"{_RECOVERY_PREFIX}${salt.hex()}${_recovery_digest(salt, normal)}"


def verify_recovery_code(code: str, hashes: Sequence[str | None]) -> int:
    """The index in ``hashes`` of the stored hash matching ``code``; ``None`` entries are
    spent codes and never match. Raises ``InvalidOtp`` when none matches."""
    normal = _normal_recovery(code)
    matched: int | None = None
    for index, stored in enumerate(hashes):
        parts = stored.split("$") if stored else []
        if len(parts) != 3 or parts[0] != _RECOVERY_PREFIX:
            continue
        try:
            salt = bytes.fromhex(parts[1])
        except ValueError:
            continue
        expected = _recovery_digest(salt, normal or "")
        if hmac.compare_digest(expected, parts[2]) and matched is None and normal is not None:
            matched = index
    if matched is None:
        raise InvalidOtp("the recovery code is not correct or was already used",
                         code="recovery_code_invalid")
    return matched


# ---------------------------------------------------------------------------------------------
# Short numeric codes (SMS) and their keyed hashes
# ---------------------------------------------------------------------------------------------


def new_numeric_code(digits: int = 6, *,
                     randbelow: Callable[[int], int] = secrets.randbelow) -> str:
    """A uniformly random code of ``digits`` ASCII digits (leading zeros kept)."""
    if not 4 <= digits <= 10:
        raise ValueError("digits must be between 4 and 10")
    return str(randbelow(10**digits)).zfill(digits)


class CodeHasher:
    """HMAC-SHA256 of a short code and what it was issued for (``binding``). A 6-digit code has
    only 10^6 values, so a plain hash is reversed instantly; a key held outside the database
    keeps a database leak from revealing live codes. ``binding`` ties the code to its
    purpose, so a code sent for one payment cannot approve another."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("the code hashing key must be at least 32 bytes")
        self._key = hmac.digest(key, b"anfu one-time code v1", "sha256")

    def __repr__(self) -> str:
        return "CodeHasher(key=<redacted>)"

    def hash(self, code: str, *, binding: bytes) -> str:
        return hmac.new(self._key, binding + b"\n" + code.encode("ascii"), "sha256").hexdigest()

    def verify(self, code: str, *, binding: bytes, expected: str, digits: int = 6) -> None:
        """Return if ``code`` (spaces allowed) hashes to ``expected``; raise InvalidOtp."""
        typed = _typed(code, digits)
        actual = self.hash(typed if typed is not None else "", binding=binding)
        if not hmac.compare_digest(actual, expected) or typed is None:
            raise InvalidOtp("the verification code is not correct")


# ---------------------------------------------------------------------------------------------
# Secrets at rest
# ---------------------------------------------------------------------------------------------

_BOX_VERSION = b"\x01"
_BOX_AAD_LABEL = b"anfu secret box v1\0"
_NONCE_BYTES = 12


class SecretBox:
    """AES-256-GCM with a random 96-bit nonce per message: ``0x01 | nonce | ciphertext+tag``.

    ``context`` (say ``b"totp:" + user_id``) is authenticated as associated data, so a sealed
    secret copied to another row or purpose does not open. The AES key is derived from ``key``
    with a purpose label, so the same master secret reused elsewhere yields another key.
    With random 96-bit nonces one key must seal fewer than 2^32 messages (NIST SP 800-38D
    section 8.3); each seal here is one TOTP enrolment, far below that. Nonces always come from
    the OS, never from an injected source, because a repeated nonce breaks GCM.
    """

    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("the secret box key must be at least 32 bytes")
        self._aead = AESGCM(hmac.digest(key, b"anfu secret box v1", "sha256"))

    def __repr__(self) -> str:
        return "SecretBox(key=<redacted>)"

    def seal(self, plaintext: bytes, *, context: bytes) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plaintext, _BOX_AAD_LABEL + context)
        return _BOX_VERSION + nonce + sealed

    def open(self, sealed: bytes, *, context: bytes) -> bytes:
        """The plaintext; ``InvalidCiphertext`` if the box was altered or the key or context
        differ."""
        if len(sealed) < 1 + _NONCE_BYTES + 16 or sealed[:1] != _BOX_VERSION:
            raise InvalidCiphertext("the sealed secret is malformed or of an unknown version")
        nonce, body = sealed[1:1 + _NONCE_BYTES], sealed[1 + _NONCE_BYTES:]
        try:
            return self._aead.decrypt(nonce, body, _BOX_AAD_LABEL + context)
        except InvalidTag:
            raise InvalidCiphertext(
                "the sealed secret does not open: altered, or another key or context") from None
