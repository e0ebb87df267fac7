"""Sign and verify with the platform's own keys, by the algorithm name the key is published
under (``/v1/platform/keys``): ``ed25519`` (raw 64-byte signature), ``ecdsa-p256-sha256`` /
``ecdsa-p384-sha384`` (DER), ``rsa-sha256`` (RSASSA-PKCS1-v1_5). Pure: no platform needed,
so the log, receipts, the SDK and offline verifiers all check signatures the same way.

Verification raises ``anfu.crypto.InvalidSignature`` (naming what failed), never returns a
bool. Parsed public keys are cached by (alg, PEM): loading a PEM costs more than a verify.
"""

from __future__ import annotations

from functools import lru_cache

from cryptography.exceptions import InvalidSignature as _PycaInvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from anfu.crypto._base import InvalidSignature
from anfu.crypto.keystore.platform import PLATFORM_ALGS, Signer

MIN_RSA_BITS = 2048


def sign(signer: Signer, message: bytes) -> bytes:
    """The signature of ``message`` by a platform key (whatever keystore holds it)."""
    return signer.sign(message)


def public_key_pem(signer: Signer) -> str:
    """The signer's public key as SubjectPublicKeyInfo PEM, as published."""
    return signer.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def spki_der(public_key_pem: str) -> bytes:
    """The DER SubjectPublicKeyInfo of a published PEM public key."""
    key = serialization.load_pem_public_key(public_key_pem.encode("ascii"))
    return key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def _matches(alg: str, key: PublicKeyTypes) -> bool:
    if alg == "ed25519":
        return isinstance(key, ed25519.Ed25519PublicKey)
    if alg == "ecdsa-p256-sha256":
        return isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve,
                                                                          ec.SECP256R1)
    if alg == "ecdsa-p384-sha384":
        return isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve,
                                                                          ec.SECP384R1)
    return isinstance(key, rsa.RSAPublicKey) and key.key_size >= MIN_RSA_BITS


@lru_cache(maxsize=256)
def _load(alg: str, pem: str) -> PublicKeyTypes:
    if alg not in PLATFORM_ALGS:
        raise InvalidSignature(f"unknown platform key algorithm {alg!r}; one of"
                               f" {', '.join(PLATFORM_ALGS)}")
    try:
        key = serialization.load_pem_public_key(pem.encode("ascii"))
    except (ValueError, UnicodeError, TypeError) as exc:
        raise InvalidSignature(f"the {alg} public key cannot be read: {exc}") from None
    if not _matches(alg, key):
        raise InvalidSignature(f"the public key is not a {alg} key")
    return key


def verify(alg: str, public_key_pem: str, message: bytes, signature: bytes) -> None:
    """Return if ``signature`` is ``alg``'s signature of ``message`` under the key; raise
    InvalidSignature otherwise (also for an unknown alg or an unusable key)."""
    key = _load(alg, public_key_pem)
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, message)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            digest: hashes.HashAlgorithm = (hashes.SHA384() if alg == "ecdsa-p384-sha384"
                                            else hashes.SHA256())
            key.verify(signature, message, ec.ECDSA(digest))
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
        else:  # pragma: no cover - _load admits only the types above
            raise InvalidSignature(f"the public key is not a {alg} key")
    except (_PycaInvalidSignature, ValueError):
        raise InvalidSignature(f"the {alg} signature does not match") from None
