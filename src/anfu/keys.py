"""The platform's own signing keys, as key rings over the platform keystore.

A ``KeyRing`` is one purpose's keys: ``response`` (merchant-zone responses and notifications,
Ed25519), ``receipt`` (receipts, Ed25519) and ``log`` (signed tree heads, ECDSA P-256 as in
Certificate Transparency). Private keys live in ``platform.keystore`` (encrypted PKCS#8 files
under ``ANFU_HOME/keys/platform``, or a PKCS#11 token); each ring keeps an index file under
``ANFU_HOME/keys`` listing its published keys with their validity. The newest key signs;
rotation adds a key and keeps the older ones published, so what they signed keeps verifying
until they expire. The index is replaced atomically and every process re-reads it when it
changes (looked at no more than once a second), so a rotation reaches all workers without a
restart. All rings are published at ``GET /v1/platform/keys``.

Homes made before the keystore existed kept the response key as ``keys/<key_id>.pem`` beside
``keys/platform-keys.json``: that index is still the response ring's, and its key is moved
into the file keystore on first start (on a PKCS#11 token, a fresh key is made there and the
old one stays published until it expires).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from anfu.config import Settings
from anfu.crypto import platform_sig, sha256_hex
from anfu.crypto.keystore import (
    KeyNotFound,
    PlatformKeyError,
    PlatformKeyStore,
    Signer,
    keystore_supports,
    open_platform_keystore,
)
from anfu.crypto.keystore.files import fsync_dir

log = logging.getLogger("anfu.keys")

KEY_LIFETIME_S = 2 * 365 * 24 * 3600
RENEW_WARNING_S = 30 * 24 * 3600
RELOAD_CHECK_S = 1.0
PURPOSES = ("response", "receipt", "log")


@dataclass(frozen=True)
class RingSpec:
    purpose: str
    index_name: str
    alg: str
    key_prefix: str
    # Used instead of ``alg`` on a keystore that cannot make ``alg`` keys (a PKCS#11 token
    # without CKM_EDDSA): ECDSA P-256, which every verifier of ours accepts by name.
    fallback_alg: str | None


RINGS = {
    "response": RingSpec("response", "platform-keys.json", "ed25519", "pk",
                         "ecdsa-p256-sha256"),
    "receipt": RingSpec("receipt", "receipt-keys.json", "ed25519", "rk", "ecdsa-p256-sha256"),
    "log": RingSpec("log", "log-keys.json", "ecdsa-p256-sha256", "lk", None),
}


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
    purpose: str
    public_key_pem: str
    not_before: float
    not_after: float

    def public(self) -> dict[str, Any]:
        return {"key_id": self.key_id, "alg": self.alg, "purpose": self.purpose,
                "public_key_pem": self.public_key_pem, "not_before": self.not_before,
                "not_after": self.not_after}

    @classmethod
    def from_index(cls, entry: dict[str, Any], purpose: str) -> PublishedKey:
        return cls(key_id=str(entry["key_id"]), alg=str(entry["alg"]),
                   purpose=str(entry.get("purpose", purpose)),
                   public_key_pem=str(entry["public_key_pem"]),
                   not_before=float(entry["not_before"]), not_after=float(entry["not_after"]))


@dataclass(frozen=True)
class _View:
    """One reading of the index: swapped whole, so readers never see half a rotation."""
    published: tuple[PublishedKey, ...]
    by_id: dict[str, PublishedKey]
    current: Signer
    stamp: tuple[int, int, int]


def _stamp(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return st.st_ino, st.st_mtime_ns, st.st_size


class KeyRing:
    """One purpose's keys: ``current`` signs, ``published`` verifies (see the module notes).

    ``legacy_folder``: where a home made before the keystore kept ``<key_id>.pem`` files
    (encrypted under ``legacy_passphrase``); such a key is taken into the keystore when it
    is first needed."""

    def __init__(self, store: PlatformKeyStore, index_path: Path, purpose: str, alg: str, *,
                 key_prefix: str | None = None, fallback_alg: str | None = None,
                 legacy_folder: Path | None = None, legacy_passphrase: bytes | None = None,
                 lifetime_s: float = KEY_LIFETIME_S, clock: Callable[[], float] = time.time,
                 reload_s: float = RELOAD_CHECK_S) -> None:
        self.store = store
        self.index_path = index_path
        self.purpose = purpose
        self.alg = alg
        self._prefix = key_prefix or purpose[:2]
        self._fallback = fallback_alg
        self._legacy_folder = legacy_folder
        self._legacy_passphrase = legacy_passphrase
        self._lifetime = lifetime_s
        self._clock = clock
        self._reload_s = reload_s
        self._next_check = 0.0
        self._reloading = threading.Lock()
        self._rotating = threading.Lock()
        index_path.parent.mkdir(parents=True, exist_ok=True)
        with self._exclusive():
            self._ensure_usable(self._clock())
            self._state = self._read()
        current = self._state.by_id[self._state.current.key_id]
        if current.not_after - self._clock() < RENEW_WARNING_S:
            log.warning("the %s key %s expires at %d: run `anfu keys rotate --purpose %s`",
                        purpose, current.key_id, current.not_after, purpose)

    def __repr__(self) -> str:
        return f"KeyRing({self.purpose!r}, {str(self.index_path)!r})"

    # -- what callers use ------------------------------------------------------------------
    @property
    def current(self) -> Signer:
        """The key that signs now (``key_id``, ``alg``, ``sign``). Take it once per
        signature, so that the key id and the signature always match across a rotation."""
        return self._view().current

    @property
    def signing_key(self) -> Signer:
        return self._view().current

    @property
    def published(self) -> list[PublishedKey]:
        """Every key of this ring that has not expired at the last rotation, oldest first."""
        return list(self._view().published)

    def public_key(self, key_id: str) -> PublishedKey | None:
        """The published key ``key_id`` of this ring (the current or an older one)."""
        return self._view().by_id.get(key_id)

    def rotate(self, now: float | None = None) -> PublishedKey:
        """Make a new key the current one. Older keys stay published until their
        ``not_after`` (those already past it are dropped, their private halves deleted)."""
        now = float(int(self._clock() if now is None else now))  # whole seconds, as signed
        with self._exclusive():
            entry = self._rotate_locked(now)
            self._state = self._read()
        return entry

    def reload(self) -> None:
        """Read the index again now (``current`` and ``published`` do so on their own when
        it changes, at most once a second)."""
        with self._reloading:
            self._state = self._read()

    # -- index -----------------------------------------------------------------------------
    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        """Threads of this process and other processes take turns to change the ring."""
        with self._rotating, open(self.index_path.with_suffix(".lock"), "a") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def _entries(self) -> list[PublishedKey]:
        if not self.index_path.exists():
            return []
        try:
            meta = json.loads(self.index_path.read_text())
            return [PublishedKey.from_index(k, self.purpose) for k in meta["keys"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise PlatformKeyError(f"the key index {self.index_path} cannot be read: {exc}"
                                   ) from exc

    def _write(self, entries: list[PublishedKey]) -> None:
        data = json.dumps({"purpose": self.purpose, "alg": self.alg,
                           "keys": [k.public() for k in entries]}, indent=2)
        tmp = self.index_path.with_name(f".{self.index_path.name}.{os.getpid()}.tmp")
        with open(tmp, "w") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(self.index_path)
        fsync_dir(self.index_path.parent)

    def _read(self) -> _View:
        stamp = _stamp(self.index_path)
        entries = self._entries()
        if not entries:
            raise PlatformKeyError(f"the key index {self.index_path} lists no key")
        signer = self.store.load(entries[-1].key_id)
        return _View(tuple(entries), {k.key_id: k for k in entries}, signer, stamp)

    def _view(self) -> _View:
        now = time.monotonic()
        if now >= self._next_check and self._reloading.acquire(blocking=False):
            try:
                self._next_check = now + self._reload_s
                state = self._state
                if _stamp(self.index_path) != state.stamp:
                    self._state = self._read()
                    log.info("%s keys reloaded: current key %s", self.purpose,
                             self._state.current.key_id)
            except (OSError, PlatformKeyError) as exc:
                log.warning("%s key index not reloaded, keeping key %s: %s", self.purpose,
                            self._state.current.key_id, exc)
            finally:
                self._reloading.release()
        return self._state

    def _ensure_usable(self, now: float) -> None:
        """With the lock held: an index whose newest key can sign. Makes the first key,
        replaces an expired one, takes a legacy key file into the keystore, or (key gone,
        e.g. another token) rotates to a new key while the old ones stay published."""
        entries = self._entries()
        if not entries:
            self._rotate_locked(float(int(now)))
            return
        current = entries[-1]
        if current.not_after <= now:
            log.warning("the %s key %s expired at %d: a new key is made", self.purpose,
                        current.key_id, current.not_after)
            self._rotate_locked(float(int(now)))
            return
        if self.store.exists(current.key_id):
            return
        legacy = (self._legacy_folder / f"{current.key_id}.pem"
                  if self._legacy_folder is not None else None)
        importer = getattr(self.store, "import_pkcs8", None)
        if legacy is not None and legacy.exists() and importer is not None:
            importer(current.key_id, legacy.read_bytes(), self._legacy_passphrase)
            log.info("%s key %s moved from %s into the %s keystore", self.purpose,
                     current.key_id, legacy, self.store.backend)
            return
        log.warning("the %s key %s is not in the %s keystore: a new key is made; the old"
                    " one stays published until it expires", self.purpose, current.key_id,
                    self.store.backend)
        self._rotate_locked(float(int(now)))

    def _rotate_locked(self, now: float) -> PublishedKey:
        alg = self.alg
        if not keystore_supports(self.store, alg):
            if self._fallback is None:
                raise PlatformKeyError(f"the {self.store.backend} keystore cannot make {alg}"
                                       f" keys for the {self.purpose} ring")
            log.warning("the %s keystore cannot make %s keys: the %s ring uses %s",
                        self.store.backend, alg, self.purpose, self._fallback)
            alg = self._fallback
        key_id = self._prefix + secrets.token_hex(6)
        signer = self.store.create(key_id, alg)
        entry = PublishedKey(key_id=key_id, alg=alg, purpose=self.purpose,
                             public_key_pem=platform_sig.public_key_pem(signer),
                             not_before=now, not_after=now + self._lifetime)
        kept: list[PublishedKey] = []
        expired: list[PublishedKey] = []
        for k in self._entries():
            (kept if k.not_after > now else expired).append(k)
        self._write([*kept, entry])
        for k in expired:  # past not_after: nothing they sign may be accepted any more
            with contextlib.suppress(KeyNotFound):
                self.store.delete(k.key_id)
        return entry


# Before key rings, the response keys were ``PlatformKeys``.
PlatformKeys = KeyRing


@dataclass(frozen=True)
class PlatformRings:
    response: KeyRing
    receipt: KeyRing
    log: KeyRing

    def by_purpose(self, purpose: str) -> KeyRing:
        ring: KeyRing = getattr(self, purpose)
        return ring


def open_keystore(settings: Settings, passphrase: bytes) -> PlatformKeyStore:
    """The platform keystore the settings name (``ANFU_KEYSTORE``)."""
    pin = settings.pkcs11_pin.get_secret_value().encode() if settings.pkcs11_pin else None
    return open_platform_keystore(backend=settings.keystore,
                                  folder=settings.home / "keys" / "platform",
                                  passphrase=passphrase, pkcs11_module=settings.pkcs11_module,
                                  pkcs11_token=settings.pkcs11_token, pkcs11_pin=pin)


def open_rings(store: PlatformKeyStore, folder: Path, *, passphrase: bytes,
               clock: Callable[[], float] = time.time) -> PlatformRings:
    """The response, receipt and log rings, their index files in ``folder``
    (``ANFU_HOME/keys``); the first start makes their first keys."""
    def ring(spec: RingSpec) -> KeyRing:
        return KeyRing(store, folder / spec.index_name, spec.purpose, spec.alg,
                       key_prefix=spec.key_prefix, fallback_alg=spec.fallback_alg,
                       legacy_folder=folder if spec.purpose == "response" else None,
                       legacy_passphrase=passphrase, clock=clock)

    return PlatformRings(ring(RINGS["response"]), ring(RINGS["receipt"]), ring(RINGS["log"]))


def published_keys(*rings: KeyRing) -> list[dict[str, Any]]:
    """What ``GET /v1/platform/keys`` lists: every ring's published keys, with purpose."""
    return [k.public() for ring in rings for k in ring.published]


def rotation_log_body(ring: KeyRing, entry: PublishedKey,
                      previous: PublishedKey | None) -> dict[str, Any]:
    """The body of the transparency-log entry announcing ``entry``: ``key.rotated`` after a
    rotation, ``key.published`` (``previous`` None) for a key the log has not seen yet."""
    return {"purpose": ring.purpose, "key_id": entry.key_id, "alg": entry.alg,
            "public_key_pem": entry.public_key_pem,
            "spki_sha256": sha256_hex(platform_sig.spki_der(entry.public_key_pem)),
            "not_before": int(entry.not_before), "not_after": int(entry.not_after),
            "previous_key_id": previous.key_id if previous else None,
            "backend": ring.store.backend}
