"""An encrypted on-disk keystore for one device's private key, used by the SDK.

The file is JSON::

    {"format": "anfu-device-keystore", "version": 1,
     "kdf": {"name": "argon2id", "time_cost": 2, "memory_kib": 19456, "parallelism": 1,
             "salt": <base64url>},
     "nonce": <base64url>, "ciphertext": <base64url>, "meta": {<str>: <str>}}

The key is Argon2id of the passphrase (argon2-cffi, 32 bytes); the ciphertext is AES-256-GCM
over the key's PKCS#8 DER. The associated data is the canonical JSON (sorted keys, no
spaces) of every member except ``ciphertext``, so the metadata, the KDF parameters and the
format version cannot be changed or swapped without the passphrase.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from argon2.exceptions import Argon2Error
from argon2.low_level import Type, hash_secret_raw
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from anfu.crypto._base import KeyFormatError
from anfu.crypto.jose import DeviceKey
from anfu.crypto.jwk import b64url_decode, b64url_encode

FORMAT = "anfu-device-keystore"
VERSION = 1
KDF_NAME = "argon2id"
FILE_MODE = 0o600
_KEY_BYTES = 32
_SALT_BYTES = 16
_NONCE_BYTES = 12
_TAG_BYTES = 16
# Upper bounds keep a planted keystore file from making the device spend minutes or
# gigabytes deriving a key; they are far above anything this module writes.
_MAX_TIME_COST = 64
_MAX_MEMORY_KIB = 1024 * 1024
_MAX_PARALLELISM = 16
_MAX_FILE_BYTES = 1024 * 1024


class KeystoreError(ValueError):
    """The keystore cannot be read or written: wrong passphrase, altered file, bad format."""


@dataclass(frozen=True, slots=True)
class Argon2Params:
    """Argon2id cost; the defaults are OWASP's second recommended configuration."""

    time_cost: int = 2
    memory_kib: int = 19456
    parallelism: int = 1

    def check(self) -> None:
        limits = (
            ("time_cost", self.time_cost, 1, _MAX_TIME_COST),
            ("memory_kib", self.memory_kib, 8 * self.parallelism, _MAX_MEMORY_KIB),
            ("parallelism", self.parallelism, 1, _MAX_PARALLELISM),
        )
        for name, value, low, high in limits:
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise KeystoreError(f"the Argon2id {name} must be an integer from {low} to {high}")


DEFAULT_KDF = Argon2Params()


def _derive_key(passphrase: bytes, salt: bytes, params: Argon2Params) -> bytes:
    try:
        return hash_secret_raw(
            passphrase,
            salt,
            time_cost=params.time_cost,
            memory_cost=params.memory_kib,
            parallelism=params.parallelism,
            hash_len=_KEY_BYTES,
            type=Type.ID,
        )
    except Argon2Error as exc:
        raise KeystoreError(f"cannot derive the keystore key: {exc}") from None


def _associated_data(document: dict[str, Any]) -> bytes:
    covered = {name: value for name, value in document.items() if name != "ciphertext"}
    return orjson.dumps(covered, option=orjson.OPT_SORT_KEYS)


def _check_passphrase(passphrase: bytes) -> None:
    if not isinstance(passphrase, bytes) or not passphrase:
        raise KeystoreError("the keystore passphrase must be non-empty bytes")


def _check_meta(meta: object) -> dict[str, str]:
    if not isinstance(meta, dict) or not all(
        isinstance(name, str) and isinstance(value, str) for name, value in meta.items()
    ):
        raise KeystoreError("the keystore meta must map strings to strings")
    return dict(meta)


def _write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so a crash leaves the old file or the new one, never half.

    The temporary file is created 0600 in the same directory (so ``os.replace`` is a rename
    on one file system), flushed to disk, renamed over ``path``, and the directory synced.
    """
    directory = path.parent
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), FILE_MODE)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    directory_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(directory_fd)
    finally:
        os.close(directory_fd)


def save_device_keystore(
    path: Path,
    key: DeviceKey,
    passphrase: bytes,
    meta: dict[str, str],
    *,
    kdf: Argon2Params = DEFAULT_KDF,
) -> None:
    """Encrypt ``key`` under ``passphrase`` and write it, with ``meta``, to ``path`` (0600)."""
    _check_passphrase(passphrase)
    kdf.check()
    salt, nonce = secrets.token_bytes(_SALT_BYTES), secrets.token_bytes(_NONCE_BYTES)
    document: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "kdf": {
            "name": KDF_NAME,
            "time_cost": kdf.time_cost,
            "memory_kib": kdf.memory_kib,
            "parallelism": kdf.parallelism,
            "salt": b64url_encode(salt),
        },
        "nonce": b64url_encode(nonce),
        "meta": _check_meta(meta),
    }
    aead = AESGCM(_derive_key(passphrase, salt, kdf))
    ciphertext = aead.encrypt(nonce, key.to_pkcs8_der(), _associated_data(document))
    document["ciphertext"] = b64url_encode(ciphertext)
    try:
        _write_atomically(path, orjson.dumps(document, option=orjson.OPT_INDENT_2))
    except OSError as exc:
        raise KeystoreError(f"cannot write the keystore {path}: {exc.strerror or exc}") from exc


_KIND_NAMES = {int: "an integer", str: "a string", dict: "an object"}


def _member(mapping: dict[str, Any], name: str, kind: type) -> Any:
    value = mapping.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise KeystoreError(f"the keystore member {name!r} is missing or not {_KIND_NAMES[kind]}")
    return value


def _bytes_member(mapping: dict[str, Any], name: str, minimum: int, maximum: int) -> bytes:
    try:
        raw = b64url_decode(_member(mapping, name, str))
    except ValueError as exc:
        raise KeystoreError(f"the keystore member {name!r} is {exc}") from None
    if not minimum <= len(raw) <= maximum:
        raise KeystoreError(f"the keystore member {name!r} has a wrong length ({len(raw)})")
    return raw


def _read_document(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            data = handle.read(_MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise KeystoreError(f"cannot read the keystore {path}: {exc.strerror or exc}") from exc
    if len(data) > _MAX_FILE_BYTES:
        raise KeystoreError(f"the keystore {path} is too large to be one")
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise KeystoreError(f"the keystore {path} is not JSON") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise KeystoreError(f"{path} is not an anfu device keystore")
    if document.get("version") != VERSION:
        raise KeystoreError(
            f"the keystore version {document.get('version')!r} is not supported; "
            f"this version of anfu reads version {VERSION}"
        )
    expected = {"format", "version", "kdf", "nonce", "ciphertext", "meta"}
    if set(document) != expected:
        raise KeystoreError(f"the keystore members must be exactly {', '.join(sorted(expected))}")
    return document


def load_device_keystore(path: Path, passphrase: bytes) -> tuple[DeviceKey, dict[str, str]]:
    """Decrypt the keystore at ``path``; KeystoreError on a wrong passphrase or any change."""
    _check_passphrase(passphrase)
    document = _read_document(path)
    kdf_document = _member(document, "kdf", dict)
    if kdf_document.get("name") != KDF_NAME or len(kdf_document) != 5:
        raise KeystoreError(f"the keystore kdf must be {KDF_NAME} with time_cost, "
                            "memory_kib, parallelism and salt")
    params = Argon2Params(
        time_cost=_member(kdf_document, "time_cost", int),
        memory_kib=_member(kdf_document, "memory_kib", int),
        parallelism=_member(kdf_document, "parallelism", int),
    )
    params.check()
    salt = _bytes_member(kdf_document, "salt", _SALT_BYTES, 64)
    nonce = _bytes_member(document, "nonce", _NONCE_BYTES, _NONCE_BYTES)
    ciphertext = _bytes_member(document, "ciphertext", _TAG_BYTES + 1, _MAX_FILE_BYTES)
    meta = _check_meta(document["meta"])
    aead = AESGCM(_derive_key(passphrase, salt, params))
    try:
        der = aead.decrypt(nonce, ciphertext, _associated_data(document))
    except InvalidTag:
        raise KeystoreError(
            "cannot open the keystore: the passphrase is wrong, or the file was altered"
        ) from None
    try:
        return DeviceKey.from_pkcs8_der(der), meta
    except KeyFormatError as exc:
        raise KeystoreError(f"the keystore holds no usable device key: {exc}") from None
