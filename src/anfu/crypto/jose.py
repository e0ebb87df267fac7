"""Sender-constrained tokens (DPoP, RFC 9449) and device keys that sign for them.

``verify_dpop`` checks one DPoP proof JWT as RFC 9449 §4.3 asks, except the ``jti`` replay
check: replay windows are shared state, so the caller stores the returned ``jti`` where
every instance sees it. ``DeviceKey`` is the private side used by the mobile SDK and tests.
The JWK and signature layer lives in ``anfu.crypto.jwk``; its public names are re-exported
here.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias
from urllib.parse import urlsplit

import orjson
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from anfu.crypto._base import InvalidSignature, KeyFormatError
from anfu.crypto.jwk import (
    JOSE_ALGS,
    DevicePublicKey,
    JoseAlg,
    JwkInvalid,
    b64url_decode,
    b64url_encode,
    device_message,
    parse_public_jwk,
    quoted,
)
from anfu.crypto.jwk import clear_key_cache as _clear_parsed_keys
from anfu.errors import AuthenticationFailed

__all__ = [
    "JOSE_ALGS",
    "DeviceKey",
    "DevicePublicKey",
    "DpopCheck",
    "DpopInvalid",
    "DpopProof",
    "JoseAlg",
    "JwkInvalid",
    "b64url_decode",
    "b64url_encode",
    "clear_key_cache",
    "device_message",
    "normalise_htu",
    "parse_public_jwk",
    "verify_dpop",
]

DPOP_TYP = "dpop+jwt"
MAX_PROOF_CHARS = 8192
MAX_JTI_CHARS = 256
_JTI_BYTES = 16  # 128 bits; RFC 9449 §4.2 asks for at least 96
_DEFAULT_PORTS = {"http": 80, "https": 443}
_VISIBLE_ASCII = re.compile(r"[\x21-\x7e]+")
_PERCENT_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_MAX_CACHED_HEADER = 1024  # bounds the header cache's memory; real ones are ~200 characters

DpopCheck: TypeAlias = Literal[
    "malformed", "typ", "alg", "jwk", "signature", "htm", "htu", "iat", "jti", "ath",
    "key_mismatch",
]


class DpopInvalid(AuthenticationFailed):
    """The DPoP proof failed one check; ``check`` names which (stable, for metrics)."""

    code = "invalid_dpop_proof"  # the OAuth error code RFC 9449 §5 and §7.1 define

    def __init__(self, check: DpopCheck, detail: str) -> None:
        super().__init__(detail, check=check)
        self.check: DpopCheck = check


@dataclass(frozen=True, slots=True)
class DpopProof:
    """A proof that passed every check. Store ``jti`` (per ``jkt``) to refuse replays."""

    jkt: str
    jti: str
    iat: float
    htm: str
    htu: str
    key: DevicePublicKey


def _decode_segment(text: str, what: str) -> bytes:
    try:
        return b64url_decode(text)
    except ValueError as exc:
        raise DpopInvalid("malformed", f"the DPoP proof {what} is {exc}") from None


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise DpopInvalid("malformed", f"the DPoP proof {what} is not JSON") from None
    if not isinstance(value, dict):
        raise DpopInvalid("malformed", f"the DPoP proof {what} is not a JSON object")
    return value


def _normalise_percent(match: re.Match[str]) -> str:
    char = chr(int(match.group()[1:], 16))
    return char if char in _UNRESERVED else match.group().upper()


@functools.lru_cache(maxsize=256)
def normalise_htu(url: str) -> tuple[str, str, int | None, str] | None:
    """(scheme, host, port, path) for comparing HTTP URIs, or None if ``url`` is not one.

    Follows RFC 9449 §4.3 item 9 with the normalisations RFC 3986 §6.2.2-6.2.3 describe:
    scheme and host lowercased, default port dropped, empty path made "/", percent-escapes
    uppercased and unreserved characters decoded. Query and fragment are ignored. Cached,
    because a server sees the same few URLs again and again.
    """
    if not _VISIBLE_ASCII.fullmatch(url):
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme, host = parts.scheme.lower(), parts.hostname
    if scheme not in _DEFAULT_PORTS or not host or "@" in parts.netloc:
        return None
    if port == _DEFAULT_PORTS[scheme]:
        port = None
    path = parts.path or "/"
    if "%" in path:
        path = _PERCENT_ESCAPE.sub(_normalise_percent, path)
    return scheme, host, port, path


def _check_header(encoded: str) -> DevicePublicKey:
    """The key a proof header carries, once the header passes its checks (typ, alg, jwk)."""
    header = _json_object(_decode_segment(encoded, "header"), "header")
    if "crit" in header:
        raise DpopInvalid("malformed", "the DPoP proof header lists critical extensions "
                          "(crit), which this server does not support")
    if header.get("typ") != DPOP_TYP:
        raise DpopInvalid("typ", f"the DPoP proof header typ must be {DPOP_TYP!r}")
    alg = header.get("alg")
    if alg not in JOSE_ALGS:
        raise DpopInvalid("alg", f"the DPoP proof alg {quoted(alg)} is not accepted; use "
                          f"one of {', '.join(JOSE_ALGS)}")
    try:
        key = parse_public_jwk(header.get("jwk"))
    except JwkInvalid as exc:
        raise DpopInvalid("jwk", f"the DPoP proof jwk is not usable: {exc}") from None
    if key.alg != alg:
        raise DpopInvalid("alg", f"the DPoP proof says alg {quoted(alg)}, but its jwk is a "
                          f"{key.alg} key")
    return key


# A device sends the very same header text with every proof, and the header's checks depend
# on that text alone, so their result is cached by it: on a busy server, decoding and parsing
# it again costs more than all the other checks but the signature. Failures are not cached.
_checked_header = functools.lru_cache(maxsize=1024)(_check_header)


def clear_key_cache() -> None:
    """Forget every parsed key and checked proof header (tests, or a mass revocation)."""
    _checked_header.cache_clear()
    _clear_parsed_keys()


def _access_token_hash(access_token: str) -> str:
    return b64url_encode(hashlib.sha256(access_token.encode("ascii")).digest())


def verify_dpop(
    proof: str,
    *,
    method: str,
    url: str,
    now: float,
    access_token: str | None = None,
    expected_jkt: str | None = None,
    max_age_s: float = 60,
    max_skew_s: float = 5,
) -> DpopProof:
    """Check a DPoP proof for the request ``method url``; DpopInvalid names the failed check.

    ``now`` is the caller's clock (seconds). The proof may be at most ``max_age_s`` old and
    at most ``max_skew_s`` in the future. With ``access_token``, the proof must carry its
    hash (``ath``); with ``expected_jkt``, it must be signed by the key the token is bound to.
    """
    # Part of the request URL comes from the Host header, so a bad one is the sender's
    # doing: it fails the htu check (a 401), in its turn, rather than raising a 500.
    expected_url = normalise_htu(url)
    if not isinstance(proof, str) or len(proof) > MAX_PROOF_CHARS or not proof.isascii():
        raise DpopInvalid("malformed", f"the DPoP proof must be ASCII text of at most "
                          f"{MAX_PROOF_CHARS} characters")
    segments = proof.split(".")
    if len(segments) != 3 or not all(segments):
        raise DpopInvalid("malformed", "the DPoP proof must be one compact JWS: three "
                          "non-empty base64url parts joined by '.'")
    payload = _decode_segment(segments[1], "payload")
    signature = _decode_segment(segments[2], "signature")
    header = segments[0]
    key = _checked_header(header) if len(header) <= _MAX_CACHED_HEADER else _check_header(header)
    signing_input = proof[: len(segments[0]) + 1 + len(segments[1])].encode("ascii")
    try:
        key.verify(signature, signing_input)
    except InvalidSignature as exc:
        raise DpopInvalid("signature", f"the DPoP proof signature is not valid: {exc}") from None

    claims = _json_object(payload, "payload")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not 1 <= len(jti) <= MAX_JTI_CHARS:
        raise DpopInvalid("jti", f"the DPoP proof jti must be a string of 1 to "
                          f"{MAX_JTI_CHARS} characters")
    htm = claims.get("htm")
    if htm != method:
        raise DpopInvalid("htm", f"the DPoP proof was made for method {quoted(htm)}, but "
                          f"this request is {method}")
    htu = claims.get("htu")
    if expected_url is None:
        raise DpopInvalid("htu", f"this request's URL {quoted(url)} is not an absolute "
                          "http(s) URL, so no DPoP proof can match it")
    # An identical string needs no normalising: the common case, and the cheap one.
    if htu != url and (not isinstance(htu, str) or normalise_htu(htu) != expected_url):
        raise DpopInvalid("htu", f"the DPoP proof was made for URL {quoted(htu)}, but this "
                          f"request is to {url}")
    iat = claims.get("iat")
    if isinstance(iat, bool) or not isinstance(iat, int | float):
        raise DpopInvalid("iat", "the DPoP proof iat must be a number of seconds")
    if not now - max_age_s <= iat <= now + max_skew_s:
        raise DpopInvalid("iat", f"the DPoP proof was made at {iat:.0f}, outside the accepted "
                          f"window ({max_age_s:g} s old to {max_skew_s:g} s ahead of {now:.0f}); "
                          "check the device clock and make a fresh proof")
    if access_token is not None:
        ath = claims.get("ath")
        if not isinstance(ath, str) or not ath.isascii():
            raise DpopInvalid("ath", "the DPoP proof has no valid ath claim for the access token")
        try:
            expected_ath = _access_token_hash(access_token)
        except UnicodeEncodeError:
            raise DpopInvalid("ath", "the access token is not ASCII") from None
        if not hmac.compare_digest(ath, expected_ath):
            raise DpopInvalid("ath", "the DPoP proof ath does not match the access token")
    if expected_jkt is not None and not hmac.compare_digest(
        key.jkt.encode(), expected_jkt.encode()
    ):
        raise DpopInvalid("key_mismatch", "the DPoP proof is signed by another key than "
                          "the one the access token is bound to")
    return DpopProof(jkt=key.jkt, jti=jti, iat=iat, htm=htm, htu=htu, key=key)


_PrivateKey: TypeAlias = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())


def _public_jwk_of(key: _PrivateKey) -> dict[str, str]:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        raw = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return {"kty": "OKP", "crv": "Ed25519", "x": b64url_encode(raw)}
    numbers = key.public_key().public_numbers()
    return {
        "kty": "EC",
        "crv": "P-256",
        "x": b64url_encode(numbers.x.to_bytes(32, "big")),
        "y": b64url_encode(numbers.y.to_bytes(32, "big")),
    }


class DeviceKey:
    """A device's private signing key (ES256 or EdDSA). Its repr shows no secret.

    Build one with ``generate`` or ``from_pkcs8_der``.
    """

    __slots__ = ("_key", "_public")

    def __init__(self, key: _PrivateKey) -> None:
        if not isinstance(key, _PrivateKey):
            raise KeyFormatError("a device key must be an EC P-256 or Ed25519 private key")
        if isinstance(key, ec.EllipticCurvePrivateKey) and not isinstance(
            key.curve, ec.SECP256R1
        ):
            raise KeyFormatError(f"a device EC key must be on P-256, not {key.curve.name}")
        self._key = key
        self._public = parse_public_jwk(_public_jwk_of(key))

    @classmethod
    def generate(cls, alg: JoseAlg) -> DeviceKey:
        if alg == "ES256":
            return cls(ec.generate_private_key(ec.SECP256R1()))
        if alg == "EdDSA":
            return cls(ed25519.Ed25519PrivateKey.generate())
        raise ValueError(f"unknown device key alg {alg!r}; use one of {', '.join(JOSE_ALGS)}")

    @classmethod
    def from_pkcs8_der(cls, der: bytes) -> DeviceKey:
        """Load an unencrypted PKCS#8 DER key; the alg follows from the key type."""
        try:
            key = serialization.load_der_private_key(der, password=None)
        except (ValueError, TypeError):
            raise KeyFormatError("cannot read the device key: not an unencrypted PKCS#8 "
                                 "DER private key") from None
        except UnsupportedAlgorithm:
            raise KeyFormatError("the device key is of an unsupported type") from None
        if not isinstance(key, _PrivateKey):
            raise KeyFormatError("a device key must be an EC P-256 or Ed25519 private key")
        return cls(key)

    def to_pkcs8_der(self) -> bytes:
        """The unencrypted PKCS#8 DER key: a secret, so encrypt it before storing it."""
        return self._key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @property
    def alg(self) -> JoseAlg:
        return self._public.alg

    @property
    def public(self) -> DevicePublicKey:
        return self._public

    def sign(self, message: bytes) -> bytes:
        """A signature in the JWS raw layout: 64 bytes (``r || s`` for ES256)."""
        if isinstance(self._key, ed25519.Ed25519PrivateKey):
            return self._key.sign(message)
        r, s = decode_dss_signature(self._key.sign(message, _ECDSA_SHA256))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    def sign_device_challenge(
        self, challenge: str, user_id: str, device_id: str, purpose: str
    ) -> str:
        """The base64url signature over ``device_message(challenge, user_id, ...)``."""
        return b64url_encode(self.sign(device_message(challenge, user_id, device_id, purpose)))

    def dpop_proof(
        self,
        method: str,
        url: str,
        *,
        access_token: str | None = None,
        now: float | None = None,
        jti: str | None = None,
    ) -> str:
        """A DPoP proof JWT for one request; query and fragment are dropped from ``url``."""
        header = {"typ": DPOP_TYP, "alg": self.alg, "jwk": self._public.jwk}
        claims: dict[str, Any] = {
            "jti": secrets.token_urlsafe(_JTI_BYTES) if jti is None else jti,
            "htm": method,
            "htu": url.partition("#")[0].partition("?")[0],
            "iat": int(time.time() if now is None else now),
        }
        if access_token is not None:
            claims["ath"] = _access_token_hash(access_token)
        encoded = (b64url_encode(orjson.dumps(part)) for part in (header, claims))
        signing_input = ".".join(encoded)
        return f"{signing_input}.{b64url_encode(self.sign(signing_input.encode('ascii')))}"

    def __repr__(self) -> str:
        return f"DeviceKey(alg={self.alg!r}, jkt={self._public.jkt!r})"
