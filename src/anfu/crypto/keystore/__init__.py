"""Where private keys live.

``device``: the SDK's encrypted file for one phone's key. The platform's own keys (CA, OCSP,
receipt, log and response signing) live behind one interface with two back ends: encrypted
PKCS#8 files and PKCS#11 tokens; ``open_platform_keystore`` picks one from the settings.
"""

from __future__ import annotations

from pathlib import Path

from anfu.crypto.keystore.device import (
    Argon2Params,
    KeystoreError,
    load_device_keystore,
    save_device_keystore,
)
from anfu.crypto.keystore.files import FileKeyStore, FileSigner
from anfu.crypto.keystore.platform import (
    PLATFORM_ALGS,
    KeyNotExportable,
    KeyNotFound,
    PlatformKeyError,
    PlatformKeyStore,
    Signer,
)


class AlgorithmNotSupported(PlatformKeyError):
    """The keystore (a PKCS#11 token) cannot make or use keys of this algorithm."""


def open_platform_keystore(*, backend: str, folder: Path, passphrase: bytes,
                           pkcs11_module: str, pkcs11_token: str,
                           pkcs11_pin: bytes | None) -> PlatformKeyStore:
    """``file``: encrypted PKCS#8 files in ``folder`` under ``passphrase``; ``pkcs11``: the
    token labelled ``pkcs11_token`` in the module ``pkcs11_module``, logged in with the PIN
    (opened on first use)."""
    if backend == "file":
        return FileKeyStore(folder, passphrase)
    if backend == "pkcs11":
        from anfu.crypto.keystore.pkcs11 import Pkcs11KeyStore

        if not pkcs11_pin:
            raise PlatformKeyError("ANFU_KEYSTORE=pkcs11 needs the token's user PIN in"
                                   " ANFU_PKCS11_PIN")
        return Pkcs11KeyStore(pkcs11_module, pkcs11_token, pkcs11_pin.decode("utf-8"))
    raise PlatformKeyError(f"unknown keystore {backend!r} (ANFU_KEYSTORE): file or pkcs11")


def keystore_supports(store: PlatformKeyStore, alg: str) -> bool:
    """Whether ``store`` can make ``alg`` keys (a token may lack a mechanism)."""
    supports = getattr(store, "supports", None)
    return bool(supports(alg)) if supports is not None else alg in PLATFORM_ALGS


def close_keystore(store: PlatformKeyStore) -> None:
    """Release the store's session (PKCS#11: before a fork and at shutdown)."""
    close = getattr(store, "close", None)
    if close is not None:
        close()


__all__ = [
    "PLATFORM_ALGS",
    "AlgorithmNotSupported",
    "Argon2Params",
    "FileKeyStore",
    "FileSigner",
    "KeyNotExportable",
    "KeyNotFound",
    "KeystoreError",
    "PlatformKeyError",
    "PlatformKeyStore",
    "Signer",
    "close_keystore",
    "keystore_supports",
    "load_device_keystore",
    "open_platform_keystore",
    "save_device_keystore",
]
