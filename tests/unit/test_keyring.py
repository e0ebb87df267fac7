"""Key rings: first key, rotation without downtime (old keys keep verifying), expiry,
every process seeing a rotation, homes made before the keystore, a token without Ed25519."""

from __future__ import annotations

import json
import multiprocessing
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from anfu import crypto
from anfu.crypto import InvalidSignature, platform_sig
from anfu.crypto.keystore import FileKeyStore, KeyNotFound, PlatformKeyError, Signer
from anfu.crypto.keystore.pkcs11 import Pkcs11KeyStore
from anfu.keys import KEY_LIFETIME_S, KeyRing, PublishedKey, open_rings, published_keys
from tests.e2e.keys.softhsm import Token, in_process_token, needs_softhsm

PASS = b"ring passphrase"
T0 = 1_800_000_000.0


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> FileKeyStore:
    return FileKeyStore(tmp_path / "keys" / "platform", PASS)


def ring(store: object, tmp_path: Path, clock: Clock, **kw: object) -> KeyRing:
    return KeyRing(store, tmp_path / "keys" / "test-keys.json", "receipt",  # type: ignore[arg-type]
                   "ed25519", key_prefix="rk", clock=clock, **kw)  # type: ignore[arg-type]


def signs_for(signer: Signer, key: PublishedKey) -> None:
    message = b"ANFU-TEST\n" + signer.key_id.encode()
    platform_sig.verify(key.alg, key.public_key_pem, message, signer.sign(message))


def test_first_key_is_made_and_published(store: FileKeyStore, tmp_path: Path) -> None:
    keys = ring(store, tmp_path, Clock())
    [key] = keys.published
    assert key.key_id.startswith("rk") and key.purpose == "receipt" and key.alg == "ed25519"
    assert (key.not_before, key.not_after) == (T0, T0 + KEY_LIFETIME_S)
    assert keys.current.key_id == key.key_id == keys.signing_key.key_id
    assert keys.public_key(key.key_id) == key and keys.public_key("nope") is None
    signs_for(keys.current, key)
    index = json.loads((tmp_path / "keys" / "test-keys.json").read_text())
    assert index["purpose"] == "receipt" and index["keys"] == [key.public()]
    assert ring(store, tmp_path, Clock()).current.key_id == key.key_id  # made once


def test_rotation_keeps_old_keys_verifying_until_they_expire(store: FileKeyStore,
                                                             tmp_path: Path) -> None:
    clock = Clock()
    keys = ring(store, tmp_path, clock)
    first = keys.current
    old_signature = first.sign(b"signed before the rotation")
    clock.now += 100
    second = keys.rotate()
    assert keys.current.key_id == second.key_id != first.key_id
    assert [k.key_id for k in keys.published] == [first.key_id, second.key_id]
    old = keys.public_key(first.key_id)
    assert old is not None
    platform_sig.verify(old.alg, old.public_key_pem, b"signed before the rotation",
                        old_signature)
    signs_for(keys.current, second)
    # Past the first key's not_after, the next rotation drops it (and its private half).
    clock.now = T0 + KEY_LIFETIME_S + 1
    third = keys.rotate()
    assert [k.key_id for k in keys.published] == [second.key_id, third.key_id]
    assert not store.exists(first.key_id)
    assert store.exists(second.key_id)


def test_other_processes_see_a_rotation(store: FileKeyStore, tmp_path: Path) -> None:
    clock = Clock()
    here = ring(store, tmp_path, clock, reload_s=0.0)
    # "Another process": its own ring (and keystore object) on the same files.
    there = ring(FileKeyStore(tmp_path / "keys" / "platform", PASS), tmp_path, clock,
                 reload_s=0.0)
    assert here.current.key_id == there.current.key_id
    rotated = there.rotate()
    assert here.current.key_id == rotated.key_id
    assert [k.key_id for k in here.published] == [k.key_id for k in there.published]
    signs_for(here.current, rotated)


def test_reload_is_checked_at_most_once_per_interval(store: FileKeyStore,
                                                     tmp_path: Path) -> None:
    here = ring(store, tmp_path, Clock(), reload_s=3600.0)
    first = here.current.key_id
    ring(store, tmp_path, Clock()).rotate()
    assert here.current.key_id == first  # not looked at yet
    here.reload()
    assert here.current.key_id != first


def _rotate_in_child(folder: str) -> None:
    home = Path(folder)
    KeyRing(FileKeyStore(home / "keys" / "platform", PASS), home / "keys" / "test-keys.json",
            "receipt", "ed25519").rotate()


def test_concurrent_rotations_in_processes_lose_no_key(store: FileKeyStore,
                                                       tmp_path: Path) -> None:
    keys = ring(store, tmp_path, Clock(time.time()), reload_s=0.0)
    ctx = multiprocessing.get_context("fork")
    children = [ctx.Process(target=_rotate_in_child, args=(str(tmp_path),)) for _ in range(4)]
    for child in children:
        child.start()
    for child in children:
        child.join(30)
        assert child.exitcode == 0
    assert len(keys.published) == 5
    assert len({k.key_id for k in keys.published}) == 5
    for key in keys.published:
        assert store.exists(key.key_id)


def write_legacy_home(keys_folder: Path, passphrase: bytes) -> tuple[PublishedKey, bytes]:
    """A home as the code before key rings left it: ``platform-keys.json`` and
    ``<key_id>.pem`` (PKCS#8, encrypted with the key passphrase)."""
    keys_folder.mkdir(parents=True)
    key = crypto.generate_private_key("ed25519")
    entry = {"key_id": "pk0123456789ab", "alg": "ed25519",
             "public_key_pem": key.public_key().public_pem(), "not_before": T0,
             "not_after": T0 + KEY_LIFETIME_S}
    (keys_folder / "pk0123456789ab.pem").write_text(key.private_pem(passphrase))
    (keys_folder / "platform-keys.json").write_text(json.dumps({"keys": [entry]}))
    return PublishedKey(purpose="response", **entry), key.sign(b"old signature")  # type: ignore[arg-type]


def test_a_home_from_before_the_keystore_keeps_its_key(tmp_path: Path) -> None:
    folder = tmp_path / "keys"
    legacy, old_signature = write_legacy_home(folder, PASS)
    store = FileKeyStore(folder / "platform", PASS)
    rings = open_rings(store, folder, passphrase=PASS, clock=Clock(T0 + 10))
    assert rings.response.current.key_id == legacy.key_id  # the same key signs on
    assert rings.response.published == [legacy]
    signs_for(rings.response.current, legacy)
    platform_sig.verify("ed25519", legacy.public_key_pem, b"old signature", old_signature)
    assert store.exists(legacy.key_id)  # moved into the keystore
    assert {k["purpose"] for k in published_keys(rings.response, rings.receipt,
                                                 rings.log)} == {"response", "receipt", "log"}
    assert rings.log.current.alg == "ecdsa-p256-sha256"
    assert rings.receipt.current.alg == "ed25519"
    again = open_rings(FileKeyStore(folder / "platform", PASS), folder, passphrase=PASS)
    assert again.response.current.key_id == legacy.key_id


def test_a_lost_key_is_replaced_and_the_old_one_stays_published(store: FileKeyStore,
                                                                tmp_path: Path) -> None:
    keys = ring(store, tmp_path, Clock())
    lost = keys.current.key_id
    store.delete(lost)
    again = ring(FileKeyStore(tmp_path / "keys" / "platform", PASS), tmp_path, Clock())
    assert again.current.key_id != lost
    assert [k.key_id for k in again.published] == [lost, again.current.key_id]


def test_an_expired_key_is_replaced_at_start(store: FileKeyStore, tmp_path: Path) -> None:
    old = ring(store, tmp_path, Clock()).current.key_id
    later = ring(store, tmp_path, Clock(T0 + KEY_LIFETIME_S))
    assert later.current.key_id != old
    assert [k.key_id for k in later.published] == [later.current.key_id]


def test_a_broken_index_is_an_error_that_names_it(store: FileKeyStore,
                                                  tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir(parents=True, exist_ok=True)
    (tmp_path / "keys" / "test-keys.json").write_text("{not json")
    with pytest.raises(PlatformKeyError, match=r"test-keys\.json cannot be read"):
        ring(store, tmp_path, Clock())


class NoEd25519:
    """A keystore like a token without CKM_EDDSA."""

    backend = "pkcs11"

    def __init__(self, inner: FileKeyStore) -> None:
        self.inner = inner

    def supports(self, alg: str) -> bool:
        return alg != "ed25519"

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


def test_without_ed25519_a_ring_falls_back_to_p256(store: FileKeyStore,
                                                   tmp_path: Path) -> None:
    keys = ring(NoEd25519(store), tmp_path, Clock(), fallback_alg="ecdsa-p256-sha256")
    assert keys.current.alg == "ecdsa-p256-sha256" == keys.published[0].alg
    signs_for(keys.current, keys.published[0])
    with pytest.raises(PlatformKeyError, match="cannot make ed25519"):
        KeyRing(NoEd25519(store), tmp_path / "other.json", "x", "ed25519")  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def token(tmp_path_factory: pytest.TempPathFactory) -> Token:
    return in_process_token(tmp_path_factory.mktemp("softhsm"))


@pytest.fixture
def token_store(token: Token) -> Iterator[Pkcs11KeyStore]:
    store = Pkcs11KeyStore(token.module, token.label, token.pin)
    yield store
    store.close()


@needs_softhsm
def test_rings_on_a_token(token_store: Pkcs11KeyStore, tmp_path: Path) -> None:
    rings = open_rings(token_store, tmp_path / "keys", passphrase=PASS, clock=Clock())
    for keys, alg in ((rings.response, "ed25519"), (rings.receipt, "ed25519"),
                      (rings.log, "ecdsa-p256-sha256")):
        assert keys.current.backend == "pkcs11" and keys.current.alg == alg
        assert keys.current.private_key() is None
        signs_for(keys.current, keys.published[-1])
    old = rings.log.current
    rotated = rings.log.rotate(T0 + 5)
    assert rings.log.current.key_id == rotated.key_id and token_store.exists(old.key_id)
    signs_for(rings.log.current, rotated)


@needs_softhsm
def test_a_legacy_home_moved_to_a_token_gets_a_token_key(token_store: Pkcs11KeyStore,
                                                         tmp_path: Path) -> None:
    legacy, old_signature = write_legacy_home(tmp_path / "keys", PASS)
    rings = open_rings(token_store, tmp_path / "keys", passphrase=PASS, clock=Clock(T0 + 60))
    current = rings.response.current
    assert current.key_id != legacy.key_id and current.backend == "pkcs11"
    assert [k.key_id for k in rings.response.published] == [legacy.key_id, current.key_id]
    published_old = rings.response.public_key(legacy.key_id)
    assert published_old is not None
    platform_sig.verify("ed25519", published_old.public_key_pem, b"old signature",
                        old_signature)
    with pytest.raises(InvalidSignature):
        platform_sig.verify("ed25519", published_old.public_key_pem, b"old signature",
                            current.sign(b"old signature"))
    with pytest.raises(KeyNotFound):
        token_store.load(legacy.key_id)
