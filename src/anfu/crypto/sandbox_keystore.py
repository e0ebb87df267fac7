"""SandboxKeystore: a software stand-in for a phone's hardware Keystore (the Android Keystore's
key attestation), for development, the demo and tests, clearly not a real one. It holds an
attestation root and intermediate of its own and makes leaf certificates that certify a device
key with the KeyDescription extension (OID 1.3.6.1.4.1.11129.2.1.17), as a real TEE would. A
platform trusts its root only when told to: through ``ANFU_ATTESTATION_ROOTS``, or with the
sandbox routes on (development), where ``ANFU_HOME/sandbox/keystore`` holds it."""

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
ROOT_FILE, KEYS_FILE = "attestation-root.pem", "attestation-keys.pem"


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


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@dataclass
class SandboxKeystore:
    """One attestation root → intermediate; ``attest`` makes a leaf for a device key."""

    name: str = "anfu sandbox attestation"
    root_key: ec.EllipticCurvePrivateKey = field(default_factory=_new_key)
    intermediate_key: ec.EllipticCurvePrivateKey = field(default_factory=_new_key)

    def __post_init__(self) -> None:
        start = _now() - DAY
        root_name = _name(self.name + " root")
        self.root = (x509.CertificateBuilder().subject_name(root_name).issuer_name(root_name)
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

    @classmethod
    def in_folder(cls, folder: Path) -> SandboxKeystore:
        """The keystore kept in ``folder`` (made on first use). Its keys are in the clear:
        a sandbox party's, never the platform's."""
        keys_path = folder / KEYS_FILE
        if keys_path.exists():
            pems = keys_path.read_bytes().split(b"\n\n")
            keys = [serialization.load_pem_private_key(p, None) for p in pems[:2]]
            assert all(isinstance(k, ec.EllipticCurvePrivateKey) for k in keys)
            found = cls(root_key=keys[0], intermediate_key=keys[1])  # type: ignore[arg-type]
        else:
            folder.mkdir(parents=True, exist_ok=True)
            found = cls()
            pems = [k.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).strip()
                    for k in (found.root_key, found.intermediate_key)]
            keys_path.touch(0o600)
            keys_path.write_bytes(b"\n\n".join(pems) + b"\n")
        found.write_root(folder / ROOT_FILE)
        return found

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


def sandbox_keystore_folder(home: Path) -> Path:
    return home / "sandbox" / "keystore"
