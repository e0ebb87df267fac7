"""Strict DER and PEM for the key structures pyca/cryptography cannot read (SM2 keys).

Only the handful of shapes SM2 keys need is supported. Parsing is strict DER: definite,
minimal lengths, minimal INTEGERs, no trailing bytes, so one key has exactly one encoding
and its fingerprint is stable.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import NoReturn

from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

INTEGER, BIT_STRING, OCTET_STRING, NULL, OID, SEQUENCE = 0x02, 0x03, 0x04, 0x05, 0x06, 0x30
CTX0, CTX1 = 0xA0, 0xA1


class DERError(ValueError):
    """The bytes are not the strict DER structure expected."""


def tlv(tag: int, value: bytes) -> bytes:
    n = len(value)
    if n < 0x80:
        return bytes((tag, n)) + value
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(size))) + size + value


def seq(*items: bytes) -> bytes:
    return tlv(SEQUENCE, b"".join(items))


def uint(n: int) -> bytes:
    if n < 0:
        raise ValueError("only non-negative INTEGERs are encoded here")
    return tlv(INTEGER, n.to_bytes(n.bit_length() // 8 + 1, "big"))


def oid(dotted: str) -> bytes:
    arcs = [int(a) for a in dotted.split(".")]
    body = bytearray()
    for arc in [arcs[0] * 40 + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        body += bytes(reversed(chunk))
    return tlv(OID, bytes(body))


def _header(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, value start, value end) of the element at ``pos``."""
    if pos + 2 > len(data):
        raise DERError("truncated element")
    tag, first = data[pos], data[pos + 1]
    if tag & 0x1F == 0x1F:
        raise DERError("high tag numbers are not used in key structures")
    pos += 2
    length = first
    if first & 0x80:
        n = first & 0x7F
        if n == 0 or n > 4 or pos + n > len(data):
            raise DERError("indefinite, oversized or truncated length")
        length = int.from_bytes(data[pos : pos + n], "big")
        if data[pos] == 0 or length < 0x80:
            raise DERError("length is not minimally encoded")
        pos += n
    if pos + length > len(data):
        raise DERError("truncated element")
    return tag, pos, pos + length


def elements(data: bytes) -> list[tuple[int, bytes]]:
    """Split the contents of a constructed value into (tag, value) pairs."""
    out: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(data):
        tag, start, end = _header(data, pos)
        out.append((tag, data[start:end]))
        pos = end
    return out


def unwrap(data: bytes, tag: int) -> bytes:
    """The value of the one element that makes up all of ``data``."""
    found, start, end = _header(data, 0)
    if found != tag:
        raise DERError(f"expected tag 0x{tag:02x}, found 0x{found:02x}")
    if end != len(data):
        raise DERError("trailing bytes after the element")
    return data[start:end]


def fields(data: bytes, *tags: int) -> list[bytes]:
    """The values of a SEQUENCE (all of ``data``) whose children have exactly ``tags``."""
    children = elements(unwrap(data, SEQUENCE))
    if [t for t, _ in children] != list(tags):
        raise DERError("unexpected SEQUENCE layout")
    return [v for _, v in children]


def read_uint(value: bytes) -> int:
    if not value or value[0] & 0x80:
        raise DERError("INTEGER is empty or negative")
    if len(value) > 1 and value[0] == 0 and not value[1] & 0x80:
        raise DERError("INTEGER is not minimally encoded")
    return int.from_bytes(value, "big")


def read_bits(value: bytes) -> bytes:
    if not value or value[0] != 0:
        raise DERError("BIT STRING with unused bits")
    return value[1:]


# --- PEM -----------------------------------------------------------------------------------

_PEM = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----\r?\n([A-Za-z0-9+/=\r\n]*?)\r?\n?-----END \1-----")


_MAX_PEM_CHARS = 65536  # an 8192-bit RSA key is under 2 KiB of PEM


def pem_decode(pem: bytes | str, labels: Collection[str]) -> tuple[str, bytes]:
    """(label, DER) of the single PEM block in ``pem``; its label must be one of ``labels``."""
    text = pem.decode("ascii", "replace") if isinstance(pem, bytes) else pem
    text = text.strip()
    if len(text) > _MAX_PEM_CHARS:
        raise DERError("the PEM text is too long for a key")
    match = _PEM.fullmatch(text)
    if match is None:
        raise DERError("not a single PEM block (or it has headers, which are not supported)")
    label = match.group(1)
    if label not in labels:
        raise DERError(f"PEM label is {label!r}; expected {' or '.join(sorted(labels))}")
    try:
        der = base64.b64decode("".join(match.group(2).split()), validate=True)
    except binascii.Error as exc:
        raise DERError("PEM body is not valid base64") from exc
    return label, der


def pem_encode(label: str, der: bytes) -> str:
    body = base64.b64encode(der).decode("ascii")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return f"-----BEGIN {label}-----\n" + "\n".join(lines) + f"\n-----END {label}-----\n"


# --- SM2 keys: the forms OpenSSL 3 writes (RFC 5480 SPKI, RFC 5915 key inside PKCS#8) -----

ID_EC_PUBLIC_KEY = oid("1.2.840.10045.2.1")
SM2_CURVE = oid("1.2.156.10197.1.301")
_SM2_ALGORITHM = seq(ID_EC_PUBLIC_KEY, SM2_CURVE)


def sm2_spki(point: bytes) -> bytes:
    return seq(_SM2_ALGORITHM, tlv(BIT_STRING, b"\x00" + point))


def sm2_pkcs8(scalar: bytes, point: bytes | None) -> bytes:
    ec_key = [uint(1), tlv(OCTET_STRING, scalar)]
    if point is not None:
        ec_key.append(tlv(CTX1, tlv(BIT_STRING, b"\x00" + point)))
    return seq(uint(0), _SM2_ALGORITHM, tlv(OCTET_STRING, seq(*ec_key)))


def algorithm_identifier(value: bytes) -> tuple[bytes, bytes]:
    """(OID element, parameters element or b"") from an AlgorithmIdentifier's contents."""
    parts = elements(value)
    if not 1 <= len(parts) <= 2 or parts[0][0] != OID:
        raise DERError("malformed AlgorithmIdentifier")
    return tlv(*parts[0]), tlv(*parts[1]) if len(parts) == 2 else b""


def spki_algorithm(der: bytes) -> tuple[bytes, bytes]:
    """(algorithm OID element, parameters element or b"") of a SubjectPublicKeyInfo."""
    return algorithm_identifier(fields(der, SEQUENCE, BIT_STRING)[0])


def read_sm2_spki(der: bytes) -> bytes:
    """The encoded public point of an SM2 SubjectPublicKeyInfo."""
    algorithm, key = fields(der, SEQUENCE, BIT_STRING)
    if tlv(SEQUENCE, algorithm) != _SM2_ALGORITHM:
        raise DERError("not an SM2 public key (id-ecPublicKey with the SM2 curve)")
    return read_bits(key)


def read_sm2_pkcs8(der: bytes) -> tuple[bytes, bytes | None]:
    """(private scalar as 32 bytes, public point if the key carries one) of SM2 PKCS#8."""
    version, algorithm, inner = fields(der, INTEGER, SEQUENCE, OCTET_STRING)
    if read_uint(version) != 0:
        raise DERError("unsupported PKCS#8 version")
    if tlv(SEQUENCE, algorithm) != _SM2_ALGORITHM:
        raise DERError("not an SM2 private key (id-ecPublicKey with the SM2 curve)")
    parts = elements(unwrap(inner, SEQUENCE))
    tags = [t for t, _ in parts]
    if tags[:2] != [INTEGER, OCTET_STRING] or read_uint(parts[0][1]) != 1:
        raise DERError("malformed ECPrivateKey")
    point: bytes | None = None
    for tag, value in parts[2:]:
        if tag == CTX0 and value == SM2_CURVE:
            continue
        if tag == CTX1 and point is None:
            point = read_bits(unwrap(value, BIT_STRING))
            continue
        raise DERError("unexpected field in ECPrivateKey")
    scalar = parts[1][1]
    if not 1 <= len(scalar) <= 32:
        raise DERError("SM2 private scalar must be at most 32 bytes")
    return scalar.rjust(32, b"\x00"), point


# --- PKCS#8 encryption: PBES2 with PBKDF2-HMAC-SHA256 and AES-256-CBC, as OpenSSL 3 writes --

_PBES2, _PBKDF2 = oid("1.2.840.113549.1.5.13"), oid("1.2.840.113549.1.5.12")
_PRFS: dict[bytes, type[hashes.SHA256] | type[hashes.SHA1]] = {
    oid("1.2.840.113549.2.9"): hashes.SHA256,
    oid("1.2.840.113549.2.7"): hashes.SHA1,
}
_HMAC_SHA256 = seq(oid("1.2.840.113549.2.9"), tlv(NULL, b""))
_AES_CBC = {oid(f"2.16.840.1.101.3.4.1.{n}"): size for n, size in ((2, 16), (22, 24), (42, 32))}
_AES256_CBC = oid("2.16.840.1.101.3.4.1.42")
# OWASP's 2023 figure for PBKDF2-HMAC-SHA256; key files are read once at start-up.
PBKDF2_ITERATIONS = 600_000
_MAX_ITERATIONS = 10_000_000


@dataclass(frozen=True, slots=True)
class _Pbes2:
    salt: bytes
    iterations: int
    prf: type[hashes.SHA256] | type[hashes.SHA1]
    key_size: int
    iv: bytes


def _cbc_key(password: bytes, p: _Pbes2) -> bytes:
    kdf = PBKDF2HMAC(p.prf(), p.key_size, p.salt, p.iterations)
    return kdf.derive(password)


def encrypt_pkcs8(plain: bytes, password: bytes) -> bytes:
    p = _Pbes2(os.urandom(16), PBKDF2_ITERATIONS, hashes.SHA256, 32, os.urandom(16))
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plain) + padder.finalize()
    encryptor = Cipher(algorithms.AES(_cbc_key(password, p)), modes.CBC(p.iv)).encryptor()
    body = encryptor.update(padded) + encryptor.finalize()
    kdf = seq(_PBKDF2, seq(tlv(OCTET_STRING, p.salt), uint(p.iterations), _HMAC_SHA256))
    scheme = seq(_AES256_CBC, tlv(OCTET_STRING, p.iv))
    return seq(seq(_PBES2, seq(kdf, scheme)), tlv(OCTET_STRING, body))


def _read_pbes2(params: bytes) -> _Pbes2:
    kdf, scheme = fields(params, SEQUENCE, SEQUENCE)
    kdf_oid, kdf_params = algorithm_identifier(kdf)
    if kdf_oid != _PBKDF2:
        raise DERError("only PBKDF2 is supported as the PBES2 key derivation")
    pbkdf2 = elements(unwrap(kdf_params, SEQUENCE))
    if len(pbkdf2) not in (2, 3) or [t for t, _ in pbkdf2[:2]] != [OCTET_STRING, INTEGER]:
        raise DERError("malformed PBKDF2 parameters")
    prf: type[hashes.SHA256] | type[hashes.SHA1] = hashes.SHA1  # RFC 8018 default
    if len(pbkdf2) == 3:
        prf_id = fields(tlv(*pbkdf2[2]), OID, NULL)[0]
        prf = _PRFS.get(tlv(OID, prf_id)) or _unsupported("PBKDF2 PRF")
    iterations = read_uint(pbkdf2[1][1])
    if not 1 <= iterations <= _MAX_ITERATIONS:
        raise DERError("PBKDF2 iteration count out of range")
    cipher_id, iv = fields(tlv(SEQUENCE, scheme), OID, OCTET_STRING)
    key_size = _AES_CBC.get(tlv(OID, cipher_id)) or _unsupported("PBES2 cipher")
    if len(iv) != 16:
        raise DERError("AES-CBC needs a 16-byte IV")
    return _Pbes2(pbkdf2[0][1], iterations, prf, key_size, iv)


def _unsupported(what: str) -> NoReturn:
    raise DERError(f"unsupported {what}; re-encrypt with PBKDF2-HMAC-SHA256 and AES-256-CBC")


def decrypt_pkcs8(der: bytes, password: bytes) -> bytes:
    algorithm, body = fields(der, SEQUENCE, OCTET_STRING)
    scheme, params = algorithm_identifier(algorithm)
    if scheme != _PBES2:
        raise DERError("only PBES2-encrypted PKCS#8 is supported")
    p = _read_pbes2(params)
    if not body or len(body) % 16:
        raise DERError("encrypted body is not whole AES blocks")
    decryptor = Cipher(algorithms.AES(_cbc_key(password, p)), modes.CBC(p.iv)).decryptor()
    padded = decryptor.update(body) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    try:
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError as exc:
        raise DERError("wrong password, or the key file is damaged") from exc
