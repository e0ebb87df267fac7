"""The embedded platform keystore: each key one PKCS#8 PEM file, encrypted with the key
passphrase (``BestAvailableEncryption``), mode 0600, under one folder."""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificateIssuerPublicKeyTypes,
)

from anfu.crypto.keystore.platform import (
    PLATFORM_ALGS,
    KeyNotFound,
    PlatformKeyError,
)

_KEY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
FILE_MODE = 0o600


def check_key_id(key_id: str) -> str:
    if not _KEY_ID.match(key_id):
        raise PlatformKeyError(f"key id {key_id!r}: letters, digits, '.', '_' and '-' only,"
                               " at most 64")
    return key_id


def new_private_key(alg: str) -> CertificateIssuerPrivateKeyTypes:
    if alg == "ecdsa-p256-sha256":
        return ec.generate_private_key(ec.SECP256R1())
    if alg == "ecdsa-p384-sha384":
        return ec.generate_private_key(ec.SECP384R1())
    if alg == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if alg == "rsa-sha256":
        return rsa.generate_private_key(public_exponent=65537, key_size=3072)
    raise PlatformKeyError(f"unknown platform key algorithm {alg!r}; one of"
                           f" {', '.join(PLATFORM_ALGS)}")


def alg_of(key: CertificateIssuerPrivateKeyTypes) -> str:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if isinstance(key.curve, ec.SECP256R1):
            return "ecdsa-p256-sha256"
        if isinstance(key.curve, ec.SECP384R1):
            return "ecdsa-p384-sha384"
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "ed25519"
    if isinstance(key, rsa.RSAPrivateKey):
        return "rsa-sha256"
    raise PlatformKeyError("this key type cannot be a platform key")


def sign_with(key: CertificateIssuerPrivateKeyTypes, data: bytes) -> bytes:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        digest: hashes.HashAlgorithm = (hashes.SHA384() if isinstance(key.curve, ec.SECP384R1)
                                        else hashes.SHA256())
        return key.sign(data, ec.ECDSA(digest))
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(data)
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    raise PlatformKeyError("this key type cannot sign here")


def fsync_dir(folder: Path) -> None:
    """Make a rename or a new file in ``folder`` durable (the directory entry itself)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FileSigner:
    """A platform key held in memory, loaded from its encrypted file."""

    backend = "file"

    def __init__(self, key_id: str, key: CertificateIssuerPrivateKeyTypes) -> None:
        self._key_id = key_id
        self._key = key
        self._alg = alg_of(key)

    @property
    def key_id(self) -> str:
        return self._key_id

    @property
    def alg(self) -> str:
        return self._alg

    def public_key(self) -> CertificateIssuerPublicKeyTypes:
        return self._key.public_key()

    def sign(self, data: bytes) -> bytes:
        return sign_with(self._key, data)

    def private_key(self) -> CertificateIssuerPrivateKeyTypes | None:
        return self._key

    def __repr__(self) -> str:
        return f"FileSigner({self._key_id!r}, {self._alg!r})"


class FileKeyStore:
    backend = "file"

    def __init__(self, folder: Path, passphrase: bytes) -> None:
        if not passphrase:
            raise PlatformKeyError("the file keystore needs a key passphrase")
        self._folder = folder
        self._passphrase = passphrase
        # Decrypting a PKCS#8 file costs a key derivation: each key is read once.
        self._cache: dict[str, FileSigner] = {}
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)

    def __repr__(self) -> str:
        return f"FileKeyStore({str(self._folder)!r})"

    def _path(self, key_id: str) -> Path:
        return self._folder / f"{check_key_id(key_id)}.p8.pem"

    def exists(self, key_id: str) -> bool:
        return self._path(key_id).exists()

    def supports(self, alg: str) -> bool:
        return alg in PLATFORM_ALGS

    def create(self, key_id: str, alg: str) -> FileSigner:
        key = new_private_key(alg)
        self._store(key_id, key)
        signer = FileSigner(key_id, key)
        self._cache[key_id] = signer
        return signer

    def import_pkcs8(self, key_id: str, pem: bytes, password: bytes | None) -> FileSigner:
        """Take in an existing PKCS#8 PEM key (e.g. one of the keys anfu kept beside its old
        index file), stored again under this keystore's passphrase."""
        try:
            key = serialization.load_pem_private_key(pem, password=password)
        except (ValueError, TypeError) as exc:
            raise PlatformKeyError(f"key {key_id!r} to import cannot be read: {exc}") from exc
        if not isinstance(key, (ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey,
                                rsa.RSAPrivateKey)):
            raise PlatformKeyError(f"key {key_id!r} to import has an unsupported type")
        alg_of(key)
        self._store(key_id, key)
        return self.load(key_id)

    def _store(self, key_id: str, key: CertificateIssuerPrivateKeyTypes) -> None:
        """Write the encrypted key to a temporary file, then link it under its name: the
        name appears complete or not at all, and an existing key is never overwritten."""
        path = self._path(key_id)
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.BestAvailableEncryption(self._passphrase))
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(pem)
                fh.flush()
                os.fsync(fh.fileno())
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise PlatformKeyError(f"a platform key {key_id!r} already exists") from None
        finally:
            tmp.unlink(missing_ok=True)
        fsync_dir(self._folder)

    def close(self) -> None:
        """Nothing to release (the PKCS#11 store closes its session here)."""

    def load(self, key_id: str) -> FileSigner:
        path = self._path(key_id)
        cached = self._cache.get(key_id)
        if cached is not None and path.exists():  # another process may have deleted it
            return cached
        try:
            pem = path.read_bytes()
        except FileNotFoundError:
            raise KeyNotFound(f"no platform key {key_id!r} in {self._folder}") from None
        try:
            key = serialization.load_pem_private_key(pem, password=self._passphrase)
        except (ValueError, TypeError) as exc:
            raise PlatformKeyError(f"platform key {key_id!r} cannot be read (wrong"
                                   " ANFU_KEY_PASSPHRASE?)") from exc
        if not isinstance(key, (ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey,
                                rsa.RSAPrivateKey)):
            raise PlatformKeyError(f"platform key {key_id!r} has an unsupported type")
        signer = FileSigner(key_id, key)
        self._cache[key_id] = signer
        return signer

    def delete(self, key_id: str) -> None:
        path = self._path(key_id)
        if not path.exists():
            raise KeyNotFound(f"no platform key {key_id!r} in {self._folder}")
        path.unlink()
        self._cache.pop(key_id, None)
        fsync_dir(self._folder)

    def export_pkcs8(self, key_id: str, passphrase: bytes) -> bytes:
        key = self.load(key_id).private_key()
        assert key is not None
        return key.private_bytes(serialization.Encoding.PEM,
                                 serialization.PrivateFormat.PKCS8,
                                 serialization.BestAvailableEncryption(passphrase))
