"""RSA blind signatures, RFC 9474 (RSABSSA-SHA384-{PSS,PSSZERO}-{Randomized,Deterministic}).

The client ``prepare``s and ``blind``s a message; the signer ``blind_sign``s the blinded
message without learning it; the client ``finalize``s (unblinds and checks) the result into
an ordinary RSASSA-PSS signature (SHA-384, MGF1-SHA-384) that anyone can ``verify``.

pyca/cryptography has no raw RSA operation, so RSASP1 and the blinding are written here
with Python integers; the key material, PEM handling and the final PSS verification are
pyca's. Python integers are not constant-time, so the two secret-dependent steps are
masked: the inverse of the blind r is computed as (r*u)^-1 * u for a fresh random u (the
extended-Euclid timing depends on r*u, not r), and RSASP1 signs m*v^e and multiplies by
v^-1 (base blinding), with a final s^e == m check so a faulty CRT result never leaves
the signer.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature as _PycaInvalidSignature
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from anfu.crypto._base import InvalidSignature, KeyFormatError
from anfu.crypto.signatures import pkcs8_pem

MIN_BITS = 2048
MAX_BITS = 8192
GENERATED_BITS = 3072
PREFIX_LEN = 32
_HASH_LEN = 48  # SHA-384


class BlindRsaError(ValueError):
    """A protocol input was refused; the message names which RFC 9474 check failed."""


@dataclass(frozen=True, slots=True)
class Variant:
    """One named RFC 9474 variant: PSS salt length and whether Prepare adds a prefix."""

    name: str
    salt_len: int
    randomized: bool


RSABSSA_SHA384_PSS_RANDOMIZED = Variant("RSABSSA-SHA384-PSS-Randomized", _HASH_LEN, True)
RSABSSA_SHA384_PSSZERO_RANDOMIZED = Variant("RSABSSA-SHA384-PSSZERO-Randomized", 0, True)
RSABSSA_SHA384_PSS_DETERMINISTIC = Variant("RSABSSA-SHA384-PSS-Deterministic", _HASH_LEN, False)
RSABSSA_SHA384_PSSZERO_DETERMINISTIC = Variant("RSABSSA-SHA384-PSSZERO-Deterministic", 0, False)
VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        RSABSSA_SHA384_PSS_RANDOMIZED,
        RSABSSA_SHA384_PSSZERO_RANDOMIZED,
        RSABSSA_SHA384_PSS_DETERMINISTIC,
        RSABSSA_SHA384_PSSZERO_DETERMINISTIC,
    )
}


def _check_size(bits: int) -> None:
    if not MIN_BITS <= bits <= MAX_BITS:
        raise KeyFormatError(
            f"RSA keys must have {MIN_BITS} to {MAX_BITS} bits; this one has {bits}"
        )


class BlindRsaPublicKey:
    """The signer's public key (n, e)."""

    __slots__ = ("_key", "e", "k_len", "n")

    def __init__(self, key: rsa.RSAPublicKey) -> None:
        _check_size(key.key_size)
        numbers = key.public_numbers()
        self._key, self.n, self.e = key, numbers.n, numbers.e
        self.k_len = (self.n.bit_length() + 7) // 8

    @classmethod
    def from_numbers(cls, n: int, e: int) -> BlindRsaPublicKey:
        try:
            return cls(rsa.RSAPublicNumbers(e, n).public_key())
        except ValueError as exc:
            raise KeyFormatError(f"not an RSA public key: {exc}") from None

    @classmethod
    def from_pem(cls, pem: bytes | str) -> BlindRsaPublicKey:
        data = pem.encode() if isinstance(pem, str) else pem
        try:
            key = serialization.load_pem_public_key(data)
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise KeyFormatError(f"cannot read the public key: {exc}") from None
        if not isinstance(key, rsa.RSAPublicKey):
            raise KeyFormatError("blind RSA needs an RSA public key")
        return cls(key)

    def public_pem(self) -> str:
        return self._key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode("ascii")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BlindRsaPublicKey):
            return NotImplemented
        return (self.n, self.e) == (other.n, other.e)

    def __hash__(self) -> int:
        return hash((self.n, self.e))

    def __repr__(self) -> str:
        return f"<BlindRsaPublicKey {self.n.bit_length()} bits>"


class BlindRsaPrivateKey:
    """The signer's private key. Its repr shows no secret."""

    __slots__ = ("_dp", "_dq", "_key", "_p", "_public", "_q", "_qinv")

    def __init__(self, key: rsa.RSAPrivateKey) -> None:
        self._public = BlindRsaPublicKey(key.public_key())
        numbers = key.private_numbers()
        self._key = key
        self._p, self._q = numbers.p, numbers.q
        self._dp, self._dq, self._qinv = numbers.dmp1, numbers.dmq1, numbers.iqmp

    @classmethod
    def generate(cls, bits: int = GENERATED_BITS) -> BlindRsaPrivateKey:
        return cls(rsa.generate_private_key(65537, bits))

    @classmethod
    def from_numbers(cls, p: int, q: int, e: int, d: int) -> BlindRsaPrivateKey:
        try:
            numbers = rsa.RSAPrivateNumbers(
                p, q, d, rsa.rsa_crt_dmp1(d, p), rsa.rsa_crt_dmq1(d, q),
                rsa.rsa_crt_iqmp(p, q), rsa.RSAPublicNumbers(e, p * q),
            )
            return cls(numbers.private_key())
        except ValueError as exc:
            raise KeyFormatError(f"not an RSA private key: {exc}") from None

    @classmethod
    def from_pem(cls, pem: bytes | str, password: bytes | None = None) -> BlindRsaPrivateKey:
        data = pem.encode() if isinstance(pem, str) else pem
        try:
            key = serialization.load_pem_private_key(data, password)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise KeyFormatError(
                "cannot read the private key: wrong password, or the key is damaged"
            ) from None
        if not isinstance(key, rsa.RSAPrivateKey):
            raise KeyFormatError("blind RSA needs an RSA private key")
        return cls(key)

    def public_key(self) -> BlindRsaPublicKey:
        return self._public

    def private_pem(self, password: bytes | None = None) -> str:
        return pkcs8_pem(self._key, password)

    def _rsasp1(self, m: int) -> int:
        """m^d mod n by CRT, on a base-blinded m; checked by s^e == m."""
        pk = self._public
        n, e = pk.n, pk.e
        v = _random_below(n)
        blinded = m * pow(v, e, n) % n
        s1 = pow(blinded, self._dp, self._p)
        s2 = pow(blinded, self._dq, self._q)
        h = self._qinv * (s1 - s2) % self._p
        s = (s2 + h * self._q) * _masked_inverse(v, n) % n
        if pow(s, e, n) != m:
            raise BlindRsaError("signing failure: the RSASP1 result does not verify")
        return s

    def __repr__(self) -> str:
        return f"<BlindRsaPrivateKey {self._public.n.bit_length()} bits>"


@dataclass(frozen=True, slots=True)
class BlindingResult:
    """What ``blind`` returns: send ``blinded_msg``; keep ``inv`` secret for ``finalize``."""

    blinded_msg: bytes
    inv: int

    def __repr__(self) -> str:
        return f"<BlindingResult {len(self.blinded_msg)} bytes>"


def _random_below(n: int) -> int:
    """A uniform integer in [1, n)."""
    return 1 + secrets.randbelow(n - 1)


def _masked_inverse(r: int, n: int) -> int:
    """r^-1 mod n, inverting r*u for a random u so the inversion's timing does not follow r.

    No separate gcd check on r (it would be an unmasked Euclid on r): a non-invertible r
    (or u) makes r*u non-invertible, which raises here. For an RSA modulus this happens
    with negligible probability."""
    u = _random_below(n)
    try:
        return pow(r * u % n, -1, n) * u % n
    except ValueError:
        raise BlindRsaError("invalid blind: r has no inverse modulo n") from None


def _fresh_blind(n: int) -> tuple[int, int]:
    """A random blind r and its inverse; on "invalid blind", retry (RFC 9474 4.2)."""
    for _ in range(2):
        r = _random_below(n)
        try:
            return r, _masked_inverse(r, n)
        except BlindRsaError:
            continue
    r = _random_below(n)
    return r, _masked_inverse(r, n)


def _mgf1_sha384(seed: bytes, length: int) -> bytes:
    out = bytearray()
    counter = 0
    while len(out) < length:
        out += hashlib.sha384(seed + counter.to_bytes(4, "big")).digest()
        counter += 1
    return bytes(out[:length])


def _emsa_pss_encode(msg: bytes, em_bits: int, salt: bytes) -> bytes:
    """EMSA-PSS-ENCODE (RFC 8017 9.1.1) with SHA-384 and MGF1-SHA-384."""
    em_len = (em_bits + 7) // 8
    m_hash = hashlib.sha384(msg).digest()
    if em_len < _HASH_LEN + len(salt) + 2:
        raise BlindRsaError("encoding error: the key is too small for this salt")
    h = hashlib.sha384(b"\x00" * 8 + m_hash + salt).digest()
    db = b"\x00" * (em_len - len(salt) - _HASH_LEN - 2) + b"\x01" + salt
    masked = bytearray(a ^ b for a, b in zip(db, _mgf1_sha384(h, len(db)), strict=True))
    masked[0] &= 0xFF >> (8 * em_len - em_bits)
    return bytes(masked) + h + b"\xbc"


def prepare(variant: Variant, msg: bytes, *, msg_prefix: bytes | None = None) -> bytes:
    """PrepareRandomize (32 random bytes before ``msg``) or PrepareIdentity.

    ``msg_prefix`` fixes the prefix (test vectors only)."""
    if not variant.randomized:
        if msg_prefix:
            raise BlindRsaError(f"{variant.name} takes no message prefix")
        return msg
    prefix = secrets.token_bytes(PREFIX_LEN) if msg_prefix is None else msg_prefix
    if len(prefix) != PREFIX_LEN:
        raise BlindRsaError(f"the message prefix must be {PREFIX_LEN} bytes")
    return prefix + msg


def blind(public_key: BlindRsaPublicKey, variant: Variant, prepared_msg: bytes, *,
          salt: bytes | None = None, r: int | None = None) -> BlindingResult:
    """Blind (RFC 9474 4.2). ``salt`` and ``r`` are drawn at random unless given (vectors)."""
    n, e = public_key.n, public_key.e
    if salt is None:
        salt = secrets.token_bytes(variant.salt_len)
    if len(salt) != variant.salt_len:
        raise BlindRsaError(f"{variant.name} needs a {variant.salt_len}-byte salt")
    encoded = _emsa_pss_encode(prepared_msg, n.bit_length() - 1, salt)
    m = int.from_bytes(encoded, "big")
    if r is None:
        r, inv = _fresh_blind(n)
    elif not 1 <= r < n:
        raise BlindRsaError("invalid blind: r must be in [1, n)")
    else:
        inv = _masked_inverse(r, n)
    z = m * pow(r, e, n) % n
    return BlindingResult(z.to_bytes(public_key.k_len, "big"), inv)


def blind_sign(private_key: BlindRsaPrivateKey, blinded_msg: bytes) -> bytes:
    """BlindSign (RFC 9474 4.3): RSASP1 on the blinded message, checked before release."""
    pk = private_key.public_key()
    if len(blinded_msg) != pk.k_len:
        raise BlindRsaError(f"unexpected input size: the blinded message must be {pk.k_len} bytes")
    m = int.from_bytes(blinded_msg, "big")
    if m >= pk.n:
        raise BlindRsaError("message representative out of range")
    return private_key._rsasp1(m).to_bytes(pk.k_len, "big")


def verify(public_key: BlindRsaPublicKey, variant: Variant, prepared_msg: bytes,
           signature: bytes) -> None:
    """RSASSA-PSS-VERIFY with the variant's parameters; raise InvalidSignature if it fails."""
    if len(signature) != public_key.k_len:
        raise InvalidSignature(f"the {variant.name} signature has the wrong length")
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=variant.salt_len)
    try:
        public_key._key.verify(signature, prepared_msg, pss, hashes.SHA384())
    except (_PycaInvalidSignature, ValueError):
        raise InvalidSignature(f"the {variant.name} signature does not match") from None


def finalize(public_key: BlindRsaPublicKey, variant: Variant, prepared_msg: bytes,
             blind_sig: bytes, inv: int) -> bytes:
    """Finalize (RFC 9474 4.4): unblind, then verify; InvalidSignature if the signer cheated."""
    if len(blind_sig) != public_key.k_len:
        raise BlindRsaError(
            f"unexpected input size: the blind signature must be {public_key.k_len} bytes"
        )
    z = int.from_bytes(blind_sig, "big")
    if z >= public_key.n:
        raise InvalidSignature(f"the {variant.name} blind signature is out of range")
    sig = (z * inv % public_key.n).to_bytes(public_key.k_len, "big")
    verify(public_key, variant, prepared_msg, sig)
    return sig

