"""Signature keys by wire algorithm name: load, generate, sign, verify, cache.

``ed25519``, ``ecdsa-p256-sha256`` (DER signatures), ``rsa-sha256`` (RSASSA-PKCS1-v1_5) and
``rsa-pss-sha256`` (RSASSA-PSS, SHA-256, MGF1-SHA-256, 32-byte salt) use pyca/cryptography;
``sm2-sm3`` uses ``anfu.crypto.sm2``. A key is always checked against the algorithm it is
registered for, so a signature can never be checked with an algorithm the key's owner did
not choose.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from typing import TypeAlias

from cryptography.exceptions import InvalidSignature as _PycaInvalidSignature
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from anfu.crypto import _der, sm2
from anfu.crypto._base import InvalidSignature, KeyFormatError, PrivateKey, PublicKey

ALGORITHMS: tuple[str, ...] = (
    "ed25519", "ecdsa-p256-sha256", "rsa-sha256", "sm2-sm3", "rsa-pss-sha256"
)
MIN_RSA_BITS = 2048
# Bounds the cost of one verification an outsider can make us do with a key they upload.
MAX_RSA_BITS = 8192
GENERATED_RSA_BITS = 3072

_PycaPublic: TypeAlias = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey | rsa.RSAPublicKey
_PycaPrivate: TypeAlias = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
_ECDSA = ec.ECDSA(hashes.SHA256())
_PKCS1 = padding.PKCS1v15()
_SHA256 = hashes.SHA256()
# rsa-pss-sha256: the salt length is fixed, so a verifier accepts exactly one encoding.
_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)


def _require_known(alg: str) -> None:
    if alg not in ALGORITHMS:
        raise KeyFormatError(f"unknown algorithm {alg!r}; use one of {', '.join(ALGORITHMS)}")


def _describe(key: object) -> str:
    if isinstance(key, ed25519.Ed25519PublicKey | ed25519.Ed25519PrivateKey):
        return "an Ed25519 key"
    if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        return f"an EC key on {key.curve.name}"
    if isinstance(key, rsa.RSAPublicKey | rsa.RSAPrivateKey):
        return f"a {key.key_size}-bit RSA key"
    return f"a key of type {type(key).__name__.removeprefix('_')}"


def _check_type(alg: str, key: object) -> None:
    """Raise KeyFormatError unless ``key`` is the kind of key ``alg`` needs."""
    if alg == "ed25519":
        ok = isinstance(key, ed25519.Ed25519PublicKey | ed25519.Ed25519PrivateKey)
    elif alg == "ecdsa-p256-sha256":
        ok = isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey) and (
            isinstance(key.curve, ec.SECP256R1)
        )
    else:
        ok = isinstance(key, rsa.RSAPublicKey | rsa.RSAPrivateKey)
        size = key.key_size if isinstance(key, rsa.RSAPublicKey | rsa.RSAPrivateKey) else 0
        if ok and not MIN_RSA_BITS <= size <= MAX_RSA_BITS:
            raise KeyFormatError(
                f"RSA keys must have {MIN_RSA_BITS} to {MAX_RSA_BITS} bits; this one has {size}"
            )
    if not ok:
        raise KeyFormatError(
            f"algorithm {alg!r} needs another kind of key; this is {_describe(key)}"
        )


class _PycaPublicKey(PublicKey):
    __slots__ = ("_key", "_spki", "_verify", "alg")

    def __init__(self, alg: str, key: _PycaPublic) -> None:
        _check_type(alg, key)
        self.alg, self._key = alg, key
        self._spki = key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        # Bind the padding and hash once: this runs for every signed request.
        self._verify: Callable[[bytes, bytes], None]
        if isinstance(key, ed25519.Ed25519PublicKey):
            self._verify = key.verify
        elif isinstance(key, ec.EllipticCurvePublicKey):
            self._verify = lambda sig, msg: key.verify(sig, msg, _ECDSA)
        elif alg == "rsa-pss-sha256":
            self._verify = lambda sig, msg: key.verify(sig, msg, _PSS, _SHA256)
        else:
            self._verify = lambda sig, msg: key.verify(sig, msg, _PKCS1, _SHA256)

    def verify(self, signature: bytes, message: bytes) -> None:
        try:
            self._verify(signature, message)
        except (_PycaInvalidSignature, ValueError):
            raise InvalidSignature(f"the {self.alg} signature does not match") from None

    def spki_der(self) -> bytes:
        return self._spki


class _PycaPrivateKey(PrivateKey):
    __slots__ = ("_key", "_public", "alg")

    def __init__(self, alg: str, key: _PycaPrivate) -> None:
        _check_type(alg, key)
        self.alg, self._key = alg, key
        self._public = _PycaPublicKey(alg, key.public_key())

    def sign(self, message: bytes) -> bytes:
        key = self._key
        if isinstance(key, ed25519.Ed25519PrivateKey):
            return key.sign(message)
        if isinstance(key, ec.EllipticCurvePrivateKey):
            return key.sign(message, _ECDSA)
        return key.sign(message, _PSS if self.alg == "rsa-pss-sha256" else _PKCS1, _SHA256)

    def public_key(self) -> PublicKey:
        return self._public

    def private_pem(self, password: bytes | None) -> str:
        return pkcs8_pem(self._key, password)


def pkcs8_pem(key: _PycaPrivate, password: bytes | None) -> str:
    """PKCS#8 PEM of a pyca private key, encrypted when a password is given."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.NoEncryption() if password is None
        else serialization.BestAvailableEncryption(password))
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             encryption).decode("ascii")


def _is_sm2_spki(der: bytes) -> bool:
    try:
        return _der.spki_algorithm(der) == (_der.ID_EC_PUBLIC_KEY, _der.SM2_CURVE)
    except _der.DERError:
        raise KeyFormatError("the public key is not a DER SubjectPublicKeyInfo") from None


def load_public_key(alg: str, pem: bytes | str) -> PublicKey:
    """Parse a PEM SubjectPublicKeyInfo for ``alg``; KeyFormatError if it is not one."""
    _require_known(alg)
    try:
        _, der = _der.pem_decode(pem, {"PUBLIC KEY"})
    except _der.DERError as exc:
        raise KeyFormatError(f"cannot read the public key PEM: {exc}") from None
    if _is_sm2_spki(der):
        if alg != sm2.ALG:
            raise KeyFormatError(f"this is an SM2 key, but the algorithm is {alg!r}")
        return sm2.SM2PublicKey.from_der(der)
    try:
        key = serialization.load_der_public_key(der)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise KeyFormatError(f"cannot read the public key: {exc}") from None
    if alg == sm2.ALG:
        raise KeyFormatError(f"algorithm 'sm2-sm3' needs an SM2 key; this is {_describe(key)}")
    if not isinstance(key, _PycaPublic):
        raise KeyFormatError(
            f"algorithm {alg!r} needs another kind of key; this is {_describe(key)}"
        )
    return _PycaPublicKey(alg, key)


def load_private_key(alg: str, pem: bytes | str, password: bytes | None = None) -> PrivateKey:
    """Parse a PKCS#8 PEM private key for ``alg`` (encrypted ones need ``password``)."""
    _require_known(alg)
    if alg == sm2.ALG:
        return sm2.SM2PrivateKey.from_pem(pem, password)
    try:
        label, der = _der.pem_decode(pem, {"PRIVATE KEY", "ENCRYPTED PRIVATE KEY"})
    except _der.DERError as exc:
        raise KeyFormatError(f"cannot read the private key PEM: {exc}") from None
    if label == "ENCRYPTED PRIVATE KEY" and password is None:
        raise KeyFormatError("the private key is encrypted; give its password")
    if label == "PRIVATE KEY" and password is not None:
        raise KeyFormatError("a password was given but the private key is not encrypted")
    try:
        key = serialization.load_der_private_key(der, password)
    except UnsupportedAlgorithm:
        raise KeyFormatError(
            f"this key type is not supported for {alg!r} (an SM2 key needs 'sm2-sm3')"
        ) from None
    except (ValueError, TypeError):
        raise KeyFormatError(
            "cannot read the private key: wrong password, or the key is damaged"
        ) from None
    if not isinstance(key, _PycaPrivate):
        raise KeyFormatError(
            f"algorithm {alg!r} needs another kind of key; this is {_describe(key)}"
        )
    return _PycaPrivateKey(alg, key)


def generate_private_key(alg: str) -> PrivateKey:
    _require_known(alg)
    if alg == "ed25519":
        return _PycaPrivateKey(alg, ed25519.Ed25519PrivateKey.generate())
    if alg == "ecdsa-p256-sha256":
        return _PycaPrivateKey(alg, ec.generate_private_key(ec.SECP256R1()))
    if alg in ("rsa-sha256", "rsa-pss-sha256"):
        return _PycaPrivateKey(alg, rsa.generate_private_key(65537, GENERATED_RSA_BITS))
    return sm2.SM2PrivateKey.generate()


def sm3_hex(data: bytes) -> str:
    """Lowercase hex SM3 digest (GB/T 32905-2016)."""
    digest = hashes.Hash(hashes.SM3())
    digest.update(data)
    return digest.finalize().hex()


class PublicKeyCache:
    """Parsed public keys by key id: each key is parsed once, and dropped on revocation.

    Concurrent misses for one id wait for a single ``loader`` call. A ``drop`` while that
    call runs keeps its result out of the cache, so a revoked key is never re-inserted by a
    load that began before the revocation.
    """

    def __init__(self, max_entries: int = 4096) -> None:
        self._max = max_entries
        self._entries: OrderedDict[str, Future[PublicKey]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key_id: str, loader: Callable[[], PublicKey]) -> PublicKey:
        entry = self._entries.get(key_id)
        if entry is not None and entry.done() and entry.exception() is None:
            return entry.result()
        with self._lock:
            entry = self._entries.get(key_id)
            owner = entry is None
            if entry is None:
                entry = self._entries[key_id] = Future()
                while len(self._entries) > self._max:
                    self._entries.popitem(last=False)
        if not owner:
            return entry.result()
        try:
            key = loader()
        except BaseException as exc:
            # Out of the cache first, so the next caller retries instead of seeing this error.
            self._discard(key_id, entry)
            entry.set_exception(exc)
            raise
        entry.set_result(key)
        return key

    def _discard(self, key_id: str, entry: Future[PublicKey]) -> None:
        with self._lock:
            if self._entries.get(key_id) is entry:
                del self._entries[key_id]

    def drop(self, key_id: str) -> None:
        with self._lock:
            self._entries.pop(key_id, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
