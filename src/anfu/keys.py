"""The platform's own keys under ``ANFU_HOME/keys``: the Ed25519 key that signs merchant-zone
responses and notifications. Created on first start, encrypted at rest (PKCS#8) with the key
passphrase; published with validity at ``GET /v1/platform/keys``. Rotation adds a key and
keeps the old ones published until they expire."""

from __future__ import annotations

import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from anfu import crypto
from anfu.config import Settings

KEY_LIFETIME_S = 2 * 365 * 24 * 3600


def _write_private(path: Path, data: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(data)


def data_key(settings: Settings) -> bytes:
    """The key that seals TOTP secrets and keys SMS code hashes: ``ANFU_DATA_KEY``, or
    (outside production) made once and kept in ``ANFU_HOME/secrets.json``. It is separate
    from the access-token secret, so rotating that one never locks anyone out of a factor."""
    if settings.data_key is not None:
        return settings.data_key.get_secret_value().encode()
    return _stored_secrets(settings)["data_key"].encode()


def _stored_secrets(settings: Settings) -> dict[str, str]:
    path = settings.home / "secrets.json"
    settings.home.mkdir(parents=True, exist_ok=True)
    stored: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    wanted = {"token_secret": 32, "key_passphrase": 24, "data_key": 32}
    missing = {name: secrets.token_urlsafe(size) for name, size in wanted.items()
               if name not in stored}
    if missing:
        stored.update(missing)
        _write_private(path, json.dumps(stored))
    return stored


def dev_secrets(settings: Settings) -> tuple[bytes, bytes]:
    """(token_secret, key_passphrase): from settings, or (outside production) made once and
    kept in ``ANFU_HOME/secrets.json`` with mode 0600."""
    if settings.token_secret is not None and settings.key_passphrase is not None:
        return (settings.token_secret.get_secret_value().encode(),
                settings.key_passphrase.get_secret_value().encode())
    stored = _stored_secrets(settings)
    token = (settings.token_secret.get_secret_value() if settings.token_secret
             else stored["token_secret"])
    passphrase = (settings.key_passphrase.get_secret_value() if settings.key_passphrase
                  else stored["key_passphrase"])
    return token.encode(), passphrase.encode()


@dataclass(frozen=True)
class PublishedKey:
    key_id: str
    alg: str
    public_key_pem: str
    not_before: float
    not_after: float

    def public(self) -> dict[str, Any]:
        return {"key_id": self.key_id, "alg": self.alg, "public_key_pem": self.public_key_pem,
                "not_before": self.not_before, "not_after": self.not_after}


class PlatformKeys:
    def __init__(self, folder: Path, passphrase: bytes) -> None:
        self._folder = folder
        self._passphrase = passphrase
        folder.mkdir(parents=True, exist_ok=True)
        self._index = folder / "platform-keys.json"
        if not self._index.exists():
            self.rotate()
        self._load()

    def _load(self) -> None:
        meta = json.loads(self._index.read_text())
        self.published = [PublishedKey(**k) for k in meta["keys"]]
        self.current = self.published[-1]
        pem = (self._folder / f"{self.current.key_id}.pem").read_bytes()
        self.signing_key = crypto.load_private_key("ed25519", pem, password=self._passphrase)

    def rotate(self, now: float | None = None) -> PublishedKey:
        now = float(int(time.time() if now is None else now))  # whole seconds, as signed
        key = crypto.generate_private_key("ed25519")
        key_id = "pk" + secrets.token_hex(6)
        _write_private(self._folder / f"{key_id}.pem", key.private_pem(self._passphrase))
        keys = json.loads(self._index.read_text())["keys"] if self._index.exists() else []
        entry = PublishedKey(key_id, "ed25519", key.public_key().public_pem(), now,
                             now + KEY_LIFETIME_S)
        keys = [k for k in keys if k["not_after"] > now] + [entry.public()]
        tmp = self._index.with_suffix(".tmp")
        tmp.write_text(json.dumps({"keys": keys}, indent=2))
        tmp.replace(self._index)
        if hasattr(self, "current"):
            self._load()
        return entry
