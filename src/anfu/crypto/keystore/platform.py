"""The interface to the platform's own private keys: CA, OCSP, receipt, log and response
signing keys. Two back ends implement it (``files``: encrypted PKCS#8 under
``ANFU_HOME/keys/platform``; ``pkcs11``: a PKCS#11 token such as an HSM or SoftHSM2), chosen
by ``ANFU_KEYSTORE``. Callers see only ``Signer``: a key that signs and shows its public half;
whether its private half can ever leave the store is the back end's business."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificateIssuerPublicKeyTypes,
)

# The algorithms a platform key may have, named as everywhere else in anfu.crypto.
PLATFORM_ALGS = ("ecdsa-p256-sha256", "ecdsa-p384-sha384", "ed25519", "rsa-sha256")


class PlatformKeyError(ValueError):
    """A platform key is missing, cannot be created, or cannot be used as asked."""


class KeyNotFound(PlatformKeyError):
    pass


class KeyNotExportable(PlatformKeyError):
    pass


@runtime_checkable
class Signer(Protocol):
    """One platform private key. ``sign`` returns what X.509 and our own signed formats
    carry: a DER ECDSA signature, a raw 64-byte Ed25519 signature, or an RSA PKCS#1 v1.5
    signature over SHA-256."""

    @property
    def key_id(self) -> str: ...

    @property
    def alg(self) -> str: ...

    @property
    def backend(self) -> str: ...

    def public_key(self) -> CertificateIssuerPublicKeyTypes: ...

    def sign(self, data: bytes) -> bytes: ...

    def private_key(self) -> CertificateIssuerPrivateKeyTypes | None:
        """The key as a pyca/cryptography object when the back end holds it in memory
        (files), so that builders can sign directly; None for a PKCS#11 key."""
        ...


class PlatformKeyStore(Protocol):
    @property
    def backend(self) -> str: ...

    def create(self, key_id: str, alg: str) -> Signer:
        """Generate a new key named ``key_id`` (refuses an existing name)."""
        ...

    def load(self, key_id: str) -> Signer:
        """The key named ``key_id``; raises KeyNotFound."""
        ...

    def exists(self, key_id: str) -> bool: ...

    def delete(self, key_id: str) -> None:
        """Remove the private key (e.g. the root CA key, once exported to offline storage)."""
        ...

    def export_pkcs8(self, key_id: str, passphrase: bytes) -> bytes:
        """The private key as encrypted PKCS#8 PEM; raises KeyNotExportable on a token."""
        ...
