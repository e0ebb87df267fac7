"""The key interfaces and errors shared by every signature algorithm."""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod

from anfu.crypto._der import pem_encode


class InvalidSignature(Exception):
    """The signature does not match the message and key, or is not a well-formed signature."""


class KeyFormatError(ValueError):
    """A key could not be read, or it is not the kind of key the algorithm needs."""


class PublicKey(ABC):
    """A parsed public key bound to one wire algorithm name (``alg``)."""

    __slots__ = ()
    alg: str

    @abstractmethod
    def verify(self, signature: bytes, message: bytes) -> None:
        """Return if ``signature`` is valid for ``message``; raise InvalidSignature otherwise."""

    @abstractmethod
    def spki_der(self) -> bytes:
        """The canonical DER SubjectPublicKeyInfo."""

    def public_pem(self) -> str:
        return pem_encode("PUBLIC KEY", self.spki_der())

    def fingerprint(self) -> str:
        """Lowercase hex SHA-256 of the DER SubjectPublicKeyInfo."""
        return hashlib.sha256(self.spki_der()).hexdigest()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PublicKey):
            return NotImplemented
        return (self.alg, self.spki_der()) == (other.alg, other.spki_der())

    def __hash__(self) -> int:
        return hash((self.alg, self.spki_der()))

    def __repr__(self) -> str:
        return f"<PublicKey {self.alg} {self.fingerprint()[:16]}>"


class PrivateKey(ABC):
    """A private key bound to one wire algorithm name (``alg``). Its repr shows no secret."""

    __slots__ = ()
    alg: str

    @abstractmethod
    def sign(self, message: bytes) -> bytes: ...

    @abstractmethod
    def public_key(self) -> PublicKey: ...

    @abstractmethod
    def private_pem(self, password: bytes | None) -> str:
        """PKCS#8 PEM, encrypted under ``password`` when one is given."""

    def __repr__(self) -> str:
        return f"<PrivateKey {self.alg} {self.public_key().fingerprint()[:16]}>"
