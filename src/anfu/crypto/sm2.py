"""SM2 signatures with SM3 (GB/T 32918.2-2016), wire name ``sm2-sm3``.

pyca/cryptography cannot load the SM2 curve, so keys are read and written here in the forms
``openssl`` 3 uses: SubjectPublicKeyInfo with id-ecPublicKey and curve 1.2.156.10197.1.301,
PKCS#8 (optionally PBES2-encrypted) around an RFC 5915 ECPrivateKey. Signatures are DER
``SEQUENCE { r INTEGER, s INTEGER }``. The distinguishing ID defaults to the GB/T 35276
value ``1234567812345678``. The arithmetic lives in ``_sm2_backends``.
"""

from __future__ import annotations

import secrets

from anfu.crypto._base import InvalidSignature, KeyFormatError, PrivateKey, PublicKey
from anfu.crypto._der import (
    INTEGER,
    DERError,
    decrypt_pkcs8,
    encrypt_pkcs8,
    fields,
    pem_decode,
    pem_encode,
    read_sm2_pkcs8,
    read_sm2_spki,
    read_uint,
    seq,
    sm2_pkcs8,
    sm2_spki,
    uint,
)
from anfu.crypto._sm2_backends import N, default_backend

ALG = "sm2-sm3"
DEFAULT_UID = b"1234567812345678"
# Recommended curve parameters, GB/T 32918.5-2017.
P = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF
A = P - 3
B = 0x28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93
_MAX_UID = 8191  # the ID length is encoded in 16 bits, as a count of bits


def _check_point(point: bytes) -> None:
    if len(point) != 65 or point[0] != 0x04:
        raise KeyFormatError("an SM2 public key must be an uncompressed point (65 bytes)")
    x, y = int.from_bytes(point[1:33], "big"), int.from_bytes(point[33:], "big")
    # The cofactor is 1, so every affine point on the curve is a valid public key.
    if x >= P or y >= P or (y * y - (x * x * x + A * x + B)) % P:
        raise KeyFormatError("the SM2 public key is not a point on the SM2 curve")


def _check_uid(uid: bytes) -> None:
    if not 0 < len(uid) <= _MAX_UID:
        raise ValueError(f"the SM2 distinguishing ID must be 1..{_MAX_UID} bytes")


def decode_signature(signature: bytes) -> tuple[int, int]:
    """(r, s) from a strict DER signature, each in [1, n-1]; else InvalidSignature."""
    try:
        r_der, s_der = fields(signature, INTEGER, INTEGER)
        r, s = read_uint(r_der), read_uint(s_der)
    except DERError:
        raise InvalidSignature("the SM2 signature is not a DER SEQUENCE of two INTEGERs") from None
    if not (0 < r < N and 0 < s < N):
        raise InvalidSignature("the SM2 signature values are out of range")
    return r, s


class SM2PublicKey(PublicKey):
    __slots__ = ("_spki", "_verify", "alg", "point", "uid")

    def __init__(self, point: bytes, *, uid: bytes = DEFAULT_UID) -> None:
        _check_point(point)
        _check_uid(uid)
        self.alg, self.point, self.uid = ALG, point, uid
        self._spki = sm2_spki(point)
        self._verify = default_backend().verifier(point, uid)

    @classmethod
    def from_der(cls, der: bytes, *, uid: bytes = DEFAULT_UID) -> SM2PublicKey:
        try:
            point = read_sm2_spki(der)
        except DERError as exc:
            raise KeyFormatError(f"cannot read the SM2 public key: {exc}") from None
        return cls(point, uid=uid)

    @classmethod
    def from_pem(cls, pem: bytes | str, *, uid: bytes = DEFAULT_UID) -> SM2PublicKey:
        try:
            _, der = pem_decode(pem, {"PUBLIC KEY"})
        except DERError as exc:
            raise KeyFormatError(f"cannot read the public key PEM: {exc}") from None
        return cls.from_der(der, uid=uid)

    def verify(self, signature: bytes, message: bytes) -> None:
        r, s = decode_signature(signature)
        if not self._verify(r, s, message):
            raise InvalidSignature("the SM2 signature does not match the message and key")

    def spki_der(self) -> bytes:
        return self._spki


class SM2PrivateKey(PrivateKey):
    __slots__ = ("_public", "_scalar", "_sign", "alg")

    def __init__(self, scalar: bytes, *, uid: bytes = DEFAULT_UID) -> None:
        # SM2 signing divides by (1 + d), so d = n - 1 is excluded as well as 0.
        if len(scalar) != 32 or not 0 < int.from_bytes(scalar, "big") < N - 1:
            raise KeyFormatError("the SM2 private scalar is out of range")
        backend = default_backend()
        self.alg, self._scalar = ALG, scalar
        self._public = SM2PublicKey(backend.public_point(scalar), uid=uid)
        self._sign = backend.signer(scalar, self._public.point, uid)

    @classmethod
    def generate(cls, *, uid: bytes = DEFAULT_UID) -> SM2PrivateKey:
        return cls((secrets.randbelow(N - 2) + 1).to_bytes(32, "big"), uid=uid)

    @classmethod
    def from_der(
        cls, der: bytes, password: bytes | None = None, *, uid: bytes = DEFAULT_UID
    ) -> SM2PrivateKey:
        """From PKCS#8 DER; ``password`` given means ``der`` is EncryptedPrivateKeyInfo."""
        try:
            plain = der if password is None else decrypt_pkcs8(der, password)
        except DERError as exc:
            raise KeyFormatError(f"cannot read the SM2 private key: {exc}") from None
        try:
            scalar, point = read_sm2_pkcs8(plain)
        except DERError as exc:
            # A wrong password passes the padding check about once in 256 tries.
            why = "wrong password, or the key file is damaged" if password else str(exc)
            raise KeyFormatError(f"cannot read the SM2 private key: {why}") from None
        key = cls(scalar, uid=uid)
        if point is not None and point != key._public.point:
            raise KeyFormatError("the SM2 private key's embedded public key does not match it")
        return key

    @classmethod
    def from_pem(
        cls, pem: bytes | str, password: bytes | None = None, *, uid: bytes = DEFAULT_UID
    ) -> SM2PrivateKey:
        try:
            label, der = pem_decode(pem, {"PRIVATE KEY", "ENCRYPTED PRIVATE KEY"})
        except DERError as exc:
            raise KeyFormatError(f"cannot read the private key PEM: {exc}") from None
        encrypted = label == "ENCRYPTED PRIVATE KEY"
        if encrypted and password is None:
            raise KeyFormatError("the private key is encrypted; give its password")
        if not encrypted and password is not None:
            raise KeyFormatError("a password was given but the private key is not encrypted")
        return cls.from_der(der, password, uid=uid)

    def sign(self, message: bytes) -> bytes:
        r, s = self._sign(message)
        return seq(uint(r), uint(s))

    def public_key(self) -> SM2PublicKey:
        return self._public

    def private_pem(self, password: bytes | None) -> str:
        der = sm2_pkcs8(self._scalar, self._public.point)
        if password is None:
            return pem_encode("PRIVATE KEY", der)
        if not password:
            raise ValueError("the password must not be empty")
        return pem_encode("ENCRYPTED PRIVATE KEY", encrypt_pkcs8(der, password))
