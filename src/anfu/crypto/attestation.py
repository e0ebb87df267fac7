"""Android Key Attestation: proof from the phone's secure hardware that a key lives there.

A key generated in the Android Keystore with an attestation challenge comes with a
certificate chain: the leaf certifies that very public key and carries the KeyDescription
extension (OID 1.3.6.1.4.1.11129.2.1.17) saying which challenge it was made for and where
the key lives (Software 0, TrustedEnvironment 1, StrongBox 2); the chain ends at a Google
(or, in tests, a configured) attestation root. ``verify_android_key`` checks all of it and
raises ``AttestationInvalid`` naming the failed check; it never returns a bare bool.

Checked: every certificate's validity at ``now``; each signature by the next certificate;
the top certificate is a configured root or is issued by one (roots compared by their
public key, as Google advises, since its roots were re-issued with the same key); the leaf's
key is the key being registered; the challenge; both security levels are hardware. Not
checked yet: the revocation list Google publishes, and the root of trust (locked
bootloader) in the hardware-enforced list.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any, Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from anfu.crypto._der import INTEGER, OCTET_STRING, SEQUENCE, DERError, fields, read_uint

KEY_DESCRIPTION_OID = x509.ObjectIdentifier("1.3.6.1.4.1.11129.2.1.17")
ANDROID_KEY = "android-key"
MAX_CHAIN = 8
SECURITY_LEVELS = {0: "software", 1: "trusted_environment", 2: "strongbox"}
HARDWARE_LEVELS = frozenset({1, 2})

AttestationCheck = Literal["malformed", "chain", "root", "expired", "key", "challenge",
                           "security_level"]


class AttestationInvalid(ValueError):
    """The attestation does not prove a hardware key; ``check`` names the failed check."""

    def __init__(self, check: AttestationCheck, detail: str) -> None:
        super().__init__(detail)
        self.check = check


ENUMERATED = 0x0A
# KeyDescription ::= SEQUENCE { attestationVersion INTEGER, attestationSecurityLevel
#   SecurityLevel, keyMintVersion INTEGER, keyMintSecurityLevel SecurityLevel,
#   attestationChallenge OCTET STRING, uniqueId OCTET STRING,
#   softwareEnforced AuthorizationList, hardwareEnforced AuthorizationList }
KEY_DESCRIPTION_LAYOUT = (INTEGER, ENUMERATED, INTEGER, ENUMERATED, OCTET_STRING,
                          OCTET_STRING, SEQUENCE, SEQUENCE)


@dataclass(frozen=True, slots=True)
class KeyDescription:
    """The part of Android's KeyDescription this module reads."""

    attestation_version: int
    attestation_security_level: int
    keymaster_security_level: int
    attestation_challenge: bytes


@dataclass(frozen=True, slots=True)
class AttestationRoot:
    """An accepted root, matched by its public key (SubjectPublicKeyInfo DER)."""

    certificate: x509.Certificate
    spki: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.spki).hexdigest()


@dataclass(frozen=True, slots=True)
class KeyAttestation:
    format: str
    security_level: str  # "trusted_environment" or "strongbox"
    attestation_version: int
    root_sha256: str


def _spki(cert: x509.Certificate) -> bytes:
    return cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)


def load_roots(paths: Iterable[Path]) -> tuple[AttestationRoot, ...]:
    """Every certificate in the given PEM files, as accepted roots."""
    roots: list[AttestationRoot] = []
    for path in paths:
        for cert in x509.load_pem_x509_certificates(path.read_bytes()):
            roots.append(AttestationRoot(cert, _spki(cert)))
    return tuple(roots)


def _parse_chain(chain: Sequence[bytes]) -> list[x509.Certificate]:
    if not 1 <= len(chain) <= MAX_CHAIN:
        raise AttestationInvalid("malformed", f"the chain has 1 to {MAX_CHAIN} certificates")
    try:
        return [x509.load_der_x509_certificate(der) for der in chain]
    except ValueError:
        raise AttestationInvalid("malformed", "a certificate of the chain is not DER X.509"
                                 ) from None


def _check_chain(certs: list[x509.Certificate], roots: Sequence[AttestationRoot],
                 now: float) -> AttestationRoot:
    moment = dt.datetime.fromtimestamp(now, dt.UTC)
    for cert in certs:
        if not cert.not_valid_before_utc <= moment <= cert.not_valid_after_utc:
            raise AttestationInvalid("expired", "a certificate of the chain is not valid now"
                                     f" ({cert.subject.rfc4514_string()})")
    for child, parent in pairwise(certs):
        try:
            child.verify_directly_issued_by(parent)
        except (ValueError, TypeError, InvalidSignature):
            raise AttestationInvalid("chain", "a certificate is not signed by the next one"
                                     " in the chain") from None
    top = certs[-1]
    top_spki = _spki(top)
    for root in roots:
        if hmac.compare_digest(root.spki, top_spki):
            return root
    for root in roots:
        try:
            top.verify_directly_issued_by(root.certificate)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return root
    raise AttestationInvalid("root", "the chain does not end at an accepted attestation root")


def _key_description(leaf: x509.Certificate) -> KeyDescription:
    try:
        ext = leaf.extensions.get_extension_for_oid(KEY_DESCRIPTION_OID)
    except x509.ExtensionNotFound:
        raise AttestationInvalid("malformed", "the leaf has no key description extension"
                                 ) from None
    value = ext.value
    raw = value.value if isinstance(value, x509.UnrecognizedExtension) else b""
    try:
        version, level, _, km_level, challenge, *_ = fields(raw, *KEY_DESCRIPTION_LAYOUT)
        return KeyDescription(read_uint(version), read_uint(level), read_uint(km_level),
                              challenge)
    except DERError:
        raise AttestationInvalid("malformed", "the key description is not valid DER") from None


def verify_android_key(chain: Sequence[bytes], *, challenge: bytes, public_key_spki: bytes,
                       roots: Sequence[AttestationRoot], now: float) -> KeyAttestation:
    """The attestation of the key ``public_key_spki`` made for ``challenge``, leaf first."""
    if not roots:
        raise AttestationInvalid("root", "this platform accepts no attestation roots")
    certs = _parse_chain(chain)
    root = _check_chain(certs, roots, now)
    leaf = certs[0]
    if not hmac.compare_digest(_spki(leaf), public_key_spki):
        raise AttestationInvalid("key", "the attested key is not the key being registered")
    description = _key_description(leaf)
    if not hmac.compare_digest(description.attestation_challenge, challenge):
        raise AttestationInvalid("challenge", "the attestation was made for another challenge")
    levels = (description.attestation_security_level, description.keymaster_security_level)
    if not all(level in HARDWARE_LEVELS for level in levels):
        raise AttestationInvalid("security_level", "the key is not kept in a trusted"
                                 f" environment or StrongBox (levels {levels})")
    return KeyAttestation(format=ANDROID_KEY, security_level=SECURITY_LEVELS[levels[1]],
                          attestation_version=description.attestation_version,
                          root_sha256=root.sha256)


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def spki_of_jwk(jwk: Mapping[str, Any]) -> bytes:
    """The SubjectPublicKeyInfo DER of a device's public JWK (EC P-256 or Ed25519), which is
    what an attestation leaf certifies."""
    key: ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
    try:
        if jwk.get("kty") == "EC" and jwk.get("crv") == "P-256":
            numbers = ec.EllipticCurvePublicNumbers(
                int.from_bytes(_b64url(str(jwk["x"])), "big"),
                int.from_bytes(_b64url(str(jwk["y"])), "big"), ec.SECP256R1())
            key = numbers.public_key()
        elif jwk.get("kty") == "OKP" and jwk.get("crv") == "Ed25519":
            key = ed25519.Ed25519PublicKey.from_public_bytes(_b64url(str(jwk["x"])))
        else:
            raise AttestationInvalid("key", "only EC P-256 and Ed25519 keys are attested")
    except (KeyError, ValueError, binascii.Error) as exc:
        if isinstance(exc, AttestationInvalid):
            raise
        raise AttestationInvalid("key", "the device key is not a valid public JWK") from None
    return key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)
