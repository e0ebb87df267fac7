"""Device public keys as JWKs (RFC 7517/7518/8037): parse strictly, thumbprint, verify.

Exactly two key types are accepted: EC P-256 (JWS ``ES256``) and Ed25519 (JWS ``EdDSA``).
Signatures use the JWS raw layout (RFC 7518 §3.4, RFC 8037 §3.1): 64 bytes, ``r || s`` for
ES256. Parsed keys are cached by their canonical JWK JSON, because rebuilding the pyca key
costs more than the verification it is needed for, and a bound device sends the same JWK
with every request.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

import nacl.bindings as nacl_bindings
import nacl.exceptions as nacl_exceptions
import nacl.signing as nacl_signing
import orjson
from cryptography.exceptions import InvalidSignature as _PycaInvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from anfu.crypto._base import InvalidSignature, KeyFormatError

JoseAlg: TypeAlias = Literal["ES256", "EdDSA"]
JOSE_ALGS: tuple[JoseAlg, ...] = ("ES256", "EdDSA")
SIGNATURE_BYTES = 64
DEVICE_MESSAGE_LABEL = "ANFU-DEVICE-V1"
# Enough for every device of a busy instance; each entry is a few hundred bytes.
KEY_CACHE_SIZE = 4096

_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())
_COORDINATE_BYTES = 32
# Private members of every JWK key type IANA registers (RSA, EC, OKP, oct, AKP): a JWK
# carrying any of them is a private key, which must never travel to the server.
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k", "priv"})
_MAX_QUOTED_CHARS = 80
_NOT_B64URL = "not base64url without padding (use A-Z a-z 0-9 - _ and no '=')"
_URLSAFE_TO_STANDARD = bytes.maketrans(b"-_", b"+/")
_PADDING = {0: b"", 2: b"==", 3: b"="}
# The last character of unpadded base64url whose unused low bits are zero, by length % 4;
# any other last character is a second spelling of the same bytes.
_CANONICAL_LAST = {
    2: frozenset("AQgw"),
    3: frozenset("AEIMQUYcgkosw048"),
}


class JwkInvalid(KeyFormatError):
    """The JWK is not a well-formed public EC P-256 or Ed25519 key."""


def quoted(value: object) -> str:
    """A sender's value as error messages quote it: a repr (no raw control characters), short
    enough for a log line."""
    text = repr(value)
    return text if len(text) <= _MAX_QUOTED_CHARS else f"{text[: _MAX_QUOTED_CHARS - 3]}..."


def b64url_encode(data: bytes) -> str:
    """Base64url without padding (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Decode unpadded base64url, refusing padding, other alphabets and non-canonical text.

    Raises ValueError. Refusing second spellings keeps one byte string to one text, so
    nothing that compares the text (caches, replay stores) can be fooled by a respelling.
    """
    # Strict binascii after mapping "-_" to "+/" refuses every other character, so only the
    # standard alphabet's own "+/" and padding need refusing first. This runs three times
    # per DPoP proof: it is twice as fast as a regular expression plus urlsafe_b64decode.
    if "=" in text or "+" in text or "/" in text:
        raise ValueError(_NOT_B64URL)
    tail = len(text) % 4
    if tail == 1 or (tail and text[-1] not in _CANONICAL_LAST[tail]):
        raise ValueError("not a canonical base64url text (wrong length or trailing bits)")
    try:
        standard = text.encode("ascii").translate(_URLSAFE_TO_STANDARD) + _PADDING[tail]
        return binascii.a2b_base64(standard, strict_mode=True)
    except ValueError:  # binascii.Error and UnicodeEncodeError are ValueErrors
        raise ValueError(_NOT_B64URL) from None


# --- Ed25519 keys: libsodium (PyNaCl) -------------------------------------------------------
# OpenSSL accepts any 32 bytes as an Ed25519 public key, including points of small order,
# for which a signature made without the private key verifies on every message. A device
# registering such a key would let anyone sign for it, so libsodium's point check (on the
# curve, canonical, not of small order) runs once per new key, and its verifier (about twice
# as fast as OpenSSL's here, and strict about non-canonical signatures) checks each one.


def _check_ed25519_point(encoded: bytes) -> None:
    if not nacl_bindings.crypto_core_ed25519_is_valid_point(encoded):
        raise JwkInvalid("the Ed25519 key 'x' is not a safe curve point (off the curve, not"
                         " canonical, or of small order)")


def _ed25519_verifier(encoded: bytes) -> Callable[[bytes, bytes], None]:
    key = nacl_signing.VerifyKey(encoded)

    def verify(signature: bytes, message: bytes) -> None:
        try:
            key.verify(message, signature)
        except nacl_exceptions.BadSignatureError:
            raise _PycaInvalidSignature() from None

    return verify


@dataclass(frozen=True, slots=True)
class DevicePublicKey:
    """A device's public key, parsed once; build it with ``parse_public_jwk``.

    ``jkt`` is the RFC 7638 SHA-256 thumbprint. Two keys are equal when their public
    members are.
    """

    alg: JoseAlg
    jkt: str
    canonical_jwk: bytes
    """The RFC 7638 thumbprint input: the required public members, sorted, no spaces."""
    _verify: Callable[[bytes, bytes], None] = field(repr=False, compare=False)

    @property
    def jwk(self) -> dict[str, str]:
        """The public members (a new dict, safe to change)."""
        members: dict[str, str] = orjson.loads(self.canonical_jwk)
        return members

    def verify(self, signature: bytes, message: bytes) -> None:
        """Return if ``signature`` (JWS raw layout) signs ``message``; else InvalidSignature."""
        if len(signature) != SIGNATURE_BYTES:
            raise InvalidSignature(
                f"an {self.alg} signature is {SIGNATURE_BYTES} bytes; this one is "
                f"{len(signature)}"
            )
        try:
            self._verify(signature, message)
        except _PycaInvalidSignature:
            raise InvalidSignature(f"the {self.alg} signature does not match") from None

    def verify_device_challenge(
        self, signature: str, *, challenge: str, user_id: str, device_id: str, purpose: str
    ) -> None:
        """Check a base64url device signature over ``device_message(...)``; raise if bad."""
        try:
            raw = b64url_decode(signature)
        except ValueError as exc:
            raise InvalidSignature(f"the device signature is malformed: {exc}") from None
        self.verify(raw, device_message(challenge, user_id, device_id, purpose))


def device_message(challenge: str, user_id: str, device_id: str, purpose: str) -> bytes:
    """The bytes a device signs to answer a challenge, with a versioned domain label.

    Fields are newline-separated, so none may contain a newline: that keeps each message
    readable in one way only.
    """
    fields = (challenge, user_id, device_id, purpose)
    for name, value in zip(("challenge", "user_id", "device_id", "purpose"), fields, strict=True):
        if "\n" in value:
            raise ValueError(f"the device message field {name!r} must not contain a newline")
    return "".join(f"{line}\n" for line in (DEVICE_MESSAGE_LABEL, *fields)).encode("utf-8")


def _coordinate(jwk: dict[str, Any], name: str) -> bytes:
    value = jwk.get(name)
    if not isinstance(value, str):
        raise JwkInvalid(f"the JWK member {name!r} must be a base64url string")
    try:
        raw = b64url_decode(value)
    except ValueError as exc:
        raise JwkInvalid(f"the JWK member {name!r} is {exc}") from None
    if len(raw) != _COORDINATE_BYTES:
        raise JwkInvalid(
            f"the JWK member {name!r} must encode {_COORDINATE_BYTES} bytes, not {len(raw)}"
        )
    return raw


def _check_optional_members(jwk: dict[str, Any], alg: JoseAlg) -> None:
    """Registered optional members may be present, but must not contradict the key."""
    if "alg" in jwk and jwk["alg"] != alg:
        raise JwkInvalid(f"the JWK says alg {quoted(jwk['alg'])}, but this key type is for {alg}")
    if "use" in jwk and jwk["use"] != "sig":
        raise JwkInvalid(f"the JWK says use {quoted(jwk['use'])}; a device key must be for 'sig'")
    key_ops = jwk.get("key_ops", ["verify"])
    if not isinstance(key_ops, list) or "verify" not in key_ops:
        raise JwkInvalid("the JWK key_ops must be a list that includes 'verify'")


def _canonical(jwk: object) -> bytes:
    """Check the members' shape; return the RFC 7638 canonical JSON of the public key."""
    if not isinstance(jwk, dict):
        raise JwkInvalid("the JWK must be a JSON object")
    private = _PRIVATE_MEMBERS.intersection(jwk)
    if private:
        raise JwkInvalid(
            f"the JWK holds private key material ({', '.join(sorted(private))}); "
            "send only the public key"
        )
    kty, crv, x = jwk.get("kty"), jwk.get("crv"), jwk.get("x")
    alg: JoseAlg
    if kty == "EC" and crv == "P-256":
        alg, y = "ES256", jwk.get("y")
        members = {"crv": crv, "kty": kty, "x": x, "y": y}
    elif kty == "OKP" and crv == "Ed25519":
        alg, members = "EdDSA", {"crv": crv, "kty": kty, "x": x}
    else:
        raise JwkInvalid(
            f"unsupported JWK kty {quoted(kty)} with crv {quoted(crv)}; "
            "use EC with P-256 or OKP with Ed25519"
        )
    if len(jwk) != len(members):
        _check_optional_members(jwk, alg)
    if not all(isinstance(value, str) for value in members.values()):
        raise JwkInvalid("the JWK members x and y must be base64url strings")
    return orjson.dumps(members)


@functools.lru_cache(maxsize=KEY_CACHE_SIZE)
def _key_from_canonical(canonical: bytes) -> DevicePublicKey:
    # lru_cache is thread-safe; a racing miss only builds the same immutable key twice.
    # Errors are not cached, so each bad JWK is refused afresh and cannot evict good keys.
    jwk = orjson.loads(canonical)
    verify: Callable[[bytes, bytes], None]
    alg: JoseAlg
    if jwk["kty"] == "EC":
        x, y = _coordinate(jwk, "x"), _coordinate(jwk, "y")
        try:
            ec_key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b"\x04" + x + y)
        except ValueError:
            raise JwkInvalid("the EC key (x, y) is not a point on P-256") from None
        alg = "ES256"

        def verify(signature: bytes, message: bytes) -> None:
            r, s = signature[:32], signature[32:]
            der = encode_dss_signature(int.from_bytes(r, "big"), int.from_bytes(s, "big"))
            ec_key.verify(der, message, _ECDSA_SHA256)

    else:
        x = _coordinate(jwk, "x")
        _check_ed25519_point(x)
        verify = _ed25519_verifier(x)
        alg = "EdDSA"
    jkt = b64url_encode(hashlib.sha256(canonical).digest())
    return DevicePublicKey(alg=alg, jkt=jkt, canonical_jwk=canonical, _verify=verify)


def parse_public_jwk(jwk: object) -> DevicePublicKey:
    """Parse a public EC P-256 or Ed25519 JWK (a decoded JSON object); JwkInvalid if not one.

    Members other than the key's own are ignored (RFC 7517 §4), except private key members,
    which are refused, and ``alg``, ``use`` and ``key_ops``, which must agree with the key.
    """
    return _key_from_canonical(_canonical(jwk))


def clear_key_cache() -> None:
    """Forget every parsed key (tests, or after a mass revocation)."""
    _key_from_canonical.cache_clear()
