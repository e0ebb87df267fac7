"""A software stand-in for the Android Keystore's attestation, for tests: a root and an
intermediate of its own, and leaf certificates that certify a device key with the
KeyDescription extension (OID 1.3.6.1.4.1.11129.2.1.17). Platforms under test trust its root
through ``ANFU_ATTESTATION_ROOTS``; every knob a test needs to forge a bad attestation
(challenge, security level, validity, key, root) is a keyword."""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

from anfu.crypto._der import OCTET_STRING, SEQUENCE, tlv, uint
from anfu.crypto.attestation import KEY_DESCRIPTION_OID, spki_of_jwk
from anfu.crypto.jose import DeviceKey

TRUSTED_ENVIRONMENT, STRONGBOX, SOFTWARE = 1, 2, 0
ENUMERATED = 0x0A
DAY = dt.timedelta(days=1)


def key_description(challenge: bytes, level: int, *, version: int = 200) -> bytes:
    """A KeyDescription DER: both security levels ``level``, empty authorization lists."""
    return tlv(SEQUENCE, b"".join([
        uint(version), tlv(ENUMERATED, bytes([level])), uint(version),
        tlv(ENUMERATED, bytes([level])), tlv(OCTET_STRING, challenge), tlv(OCTET_STRING, b""),
        tlv(SEQUENCE, b""), tlv(SEQUENCE, b"")]))


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class SoftKeystore:
    """One attestation root → intermediate; ``attest`` makes a leaf for a device key."""

    name: str = "anfu test attestation"
    root_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    intermediate_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))

    def __post_init__(self) -> None:
        start = _now() - DAY
        self.root = (x509.CertificateBuilder().subject_name(_name(self.name + " root"))
                     .issuer_name(_name(self.name + " root"))
                     .public_key(self.root_key.public_key()).serial_number(1)
                     .not_valid_before(start).not_valid_after(start + 3650 * DAY)
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
                     .sign(self.root_key, hashes.SHA256()))
        self.intermediate = (
            x509.CertificateBuilder().subject_name(_name(self.name + " intermediate"))
            .issuer_name(self.root.subject).public_key(self.intermediate_key.public_key())
            .serial_number(2).not_valid_before(start).not_valid_after(start + 3650 * DAY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(self.root_key, hashes.SHA256()))

    def root_pem(self) -> bytes:
        return self.root.public_bytes(serialization.Encoding.PEM)

    def write_root(self, path: Path) -> Path:
        path.write_bytes(self.root_pem())
        return path

    def attest(self, key: DeviceKey, challenge: bytes, *, level: int = TRUSTED_ENVIRONMENT,
               not_after: dt.datetime | None = None,
               certified_key: DeviceKey | None = None) -> list[str]:
        """The chain (leaf first, base64 DER) a phone would send for ``key``."""
        spki = spki_of_jwk((certified_key or key).public.jwk)
        public = serialization.load_der_public_key(spki)
        assert isinstance(public, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey)
        start = _now() - DAY
        leaf = (x509.CertificateBuilder().subject_name(_name("Android Keystore Key"))
                .issuer_name(self.intermediate.subject).public_key(public)
                .serial_number(x509.random_serial_number()).not_valid_before(start)
                .not_valid_after(not_after or start + 365 * DAY)
                .add_extension(x509.UnrecognizedExtension(
                    KEY_DESCRIPTION_OID, key_description(challenge, level)), False)
                .sign(self.intermediate_key, hashes.SHA256()))
        return [base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode()
                for c in (leaf, self.intermediate, self.root)]


_SHARED: SoftKeystore | None = None


def shared_keystore() -> SoftKeystore:
    """The one test keystore of this test process, whose root every test platform trusts."""
    global _SHARED
    if _SHARED is None:
        _SHARED = SoftKeystore()
    return _SHARED
