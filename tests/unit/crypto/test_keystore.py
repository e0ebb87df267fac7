"""The encrypted device keystore: round trips, refusals of every change, file permissions."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import orjson
import pytest
from argon2.low_level import Type, hash_secret_raw
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from anfu.crypto import DeviceKey, KeystoreError, load_device_keystore, save_device_keystore
from anfu.crypto.jwk import b64url_decode, b64url_encode
from anfu.crypto.keystore import Argon2Params

PASSPHRASE = b"correct horse battery staple"
META = {"device_id": "d_123", "user_id": "u_9", "label": "张三的手机"}
# The cheapest legal cost, so the many refusal tests stay fast; the defaults are tested once.
FAST = Argon2Params(time_cost=1, memory_kib=64, parallelism=1)


@pytest.fixture(scope="module")
def key() -> DeviceKey:
    return DeviceKey.generate("ES256")


@pytest.fixture
def path(tmp_path: Path, key: DeviceKey) -> Path:
    target = tmp_path / "device.keystore"
    save_device_keystore(target, key, PASSPHRASE, META, kdf=FAST)
    return target


def read(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = orjson.loads(path.read_bytes())
    return document


def write(path: Path, document: dict[str, Any]) -> None:
    path.write_bytes(orjson.dumps(document))


@pytest.mark.parametrize("alg", ["ES256", "EdDSA"])
def test_round_trip_with_the_default_cost(tmp_path: Path, alg: str) -> None:
    original = DeviceKey.generate(alg)  # type: ignore[arg-type]
    target = tmp_path / "k.json"
    save_device_keystore(target, original, PASSPHRASE, META)
    loaded, meta = load_device_keystore(target, PASSPHRASE)
    assert loaded.public == original.public and loaded.alg == alg
    assert loaded.to_pkcs8_der() == original.to_pkcs8_der()
    assert meta == META
    document = read(target)
    assert set(document) == {"format", "version", "kdf", "nonce", "ciphertext", "meta"}
    assert (document["format"], document["version"]) == ("anfu-device-keystore", 1)
    kdf = document["kdf"]
    assert (kdf["name"], kdf["time_cost"], kdf["memory_kib"], kdf["parallelism"]) == (
        "argon2id", 2, 19456, 1)
    assert len(b64url_decode(kdf["salt"])) == 16
    assert len(b64url_decode(document["nonce"])) == 12
    assert original.to_pkcs8_der().hex() not in target.read_text()


def test_the_format_is_argon2id_then_aes_gcm_over_the_other_members(path: Path,
                                                                    key: DeviceKey) -> None:
    """Decrypt with the libraries directly, as the module docstring describes the format."""
    document = read(path)
    kdf = document["kdf"]
    secret = hash_secret_raw(PASSPHRASE, b64url_decode(kdf["salt"]), time_cost=kdf["time_cost"],
                             memory_cost=kdf["memory_kib"], parallelism=kdf["parallelism"],
                             hash_len=32, type=Type.ID)
    covered = {name: value for name, value in document.items() if name != "ciphertext"}
    plain = AESGCM(secret).decrypt(b64url_decode(document["nonce"]),
                                   b64url_decode(document["ciphertext"]),
                                   orjson.dumps(covered, option=orjson.OPT_SORT_KEYS))
    assert plain == key.to_pkcs8_der()


def test_each_save_uses_a_new_salt_and_nonce(tmp_path: Path, key: DeviceKey) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    save_device_keystore(first, key, PASSPHRASE, META, kdf=FAST)
    save_device_keystore(second, key, PASSPHRASE, META, kdf=FAST)
    a, b = read(first), read(second)
    assert a["kdf"]["salt"] != b["kdf"]["salt"] and a["nonce"] != b["nonce"]
    assert a["ciphertext"] != b["ciphertext"]


def test_wrong_passphrase(path: Path) -> None:
    with pytest.raises(KeystoreError, match="passphrase is wrong, or the file was altered"):
        load_device_keystore(path, b"not the passphrase")
    with pytest.raises(KeystoreError, match="non-empty bytes"):
        load_device_keystore(path, b"")


def flip_last(text: str) -> str:
    raw = bytearray(b64url_decode(text))
    raw[-1] ^= 1
    return b64url_encode(bytes(raw))


@pytest.mark.parametrize(
    "tamper",
    [
        lambda d: d["meta"].update(device_id="d_666"),
        lambda d: d["meta"].update(extra="x"),
        lambda d: d.update(meta={}),
        lambda d: d.update(ciphertext=flip_last(d["ciphertext"])),
        lambda d: d.update(nonce=flip_last(d["nonce"])),
        lambda d: d["kdf"].update(salt=flip_last(d["kdf"]["salt"])),
        lambda d: d["kdf"].update(time_cost=2),
        lambda d: d["kdf"].update(memory_kib=128),
    ],
    ids=["meta-value", "meta-added", "meta-removed", "ciphertext", "nonce", "salt",
         "time-cost", "memory"],
)
def test_any_change_is_refused(path: Path, tamper: Any) -> None:
    document = read(path)
    tamper(document)
    write(path, document)
    with pytest.raises(KeystoreError, match="passphrase is wrong, or the file was altered"):
        load_device_keystore(path, PASSPHRASE)


def test_meta_cannot_be_swapped_between_keystores(tmp_path: Path, key: DeviceKey) -> None:
    mine, theirs = tmp_path / "mine", tmp_path / "theirs"
    save_device_keystore(mine, key, PASSPHRASE, {"device_id": "d_1"}, kdf=FAST)
    save_device_keystore(theirs, key, PASSPHRASE, {"device_id": "d_2"}, kdf=FAST)
    document = read(mine)
    document["meta"] = read(theirs)["meta"]
    write(mine, document)
    with pytest.raises(KeystoreError, match="altered"):
        load_device_keystore(mine, PASSPHRASE)


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (lambda d: d.update(format="other"), "not an anfu device keystore"),
        (lambda d: d.update(version=2), "version 2 is not supported"),
        (lambda d: d.update(extra=1), "members must be exactly"),
        (lambda d: d.pop("nonce"), "members must be exactly"),
        (lambda d: d["kdf"].update(name="scrypt"), "kdf must be argon2id"),
        (lambda d: d["kdf"].update(memory_kib=10**9), "memory_kib must be an integer"),
        (lambda d: d["kdf"].update(time_cost=10**6), "time_cost must be an integer"),
        (lambda d: d["kdf"].update(parallelism=0), "memory_kib|parallelism"),
        (lambda d: d["kdf"].update(time_cost="2"), "'time_cost' is missing or not an integer"),
        (lambda d: d["kdf"].update(time_cost=True), "'time_cost' is missing or not an integer"),
        (lambda d: d.update(nonce=d["nonce"] + "=="), "'nonce' is not base64url"),
        (lambda d: d.update(nonce=b64url_encode(bytes(8))), "'nonce' has a wrong length"),
        (lambda d: d.update(ciphertext=""), "'ciphertext' has a wrong length"),
        (lambda d: d.update(meta={"n": 1}), "meta must map strings to strings"),
    ],
)
def test_malformed_keystores_are_refused_before_decrypting(path: Path, tamper: Any,
                                                           message: str) -> None:
    document = read(path)
    tamper(document)
    write(path, document)
    with pytest.raises(KeystoreError, match=message):
        load_device_keystore(path, PASSPHRASE)


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "not JSON"), (b"{", "not JSON"), (b"[]", "not an anfu device keystore"),
     (b" " * (1024 * 1024 + 1), "too large")],
)
def test_files_that_are_not_keystores(tmp_path: Path, content: bytes, message: str) -> None:
    target = tmp_path / "k"
    target.write_bytes(content)
    with pytest.raises(KeystoreError, match=message):
        load_device_keystore(target, PASSPHRASE)


def test_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(KeystoreError, match="cannot read the keystore"):
        load_device_keystore(tmp_path / "absent", PASSPHRASE)


def test_a_keystore_holding_no_key_is_refused(path: Path) -> None:
    """Encrypted correctly, but the plaintext is not a key: refused with a KeystoreError."""
    document = read(path)
    kdf = document["kdf"]
    secret = hash_secret_raw(PASSPHRASE, b64url_decode(kdf["salt"]), time_cost=kdf["time_cost"],
                             memory_cost=kdf["memory_kib"], parallelism=kdf["parallelism"],
                             hash_len=32, type=Type.ID)
    covered = {name: value for name, value in document.items() if name != "ciphertext"}
    document["ciphertext"] = b64url_encode(AESGCM(secret).encrypt(
        b64url_decode(document["nonce"]), b"not a key",
        orjson.dumps(covered, option=orjson.OPT_SORT_KEYS)))
    write(path, document)
    with pytest.raises(KeystoreError, match="holds no usable device key"):
        load_device_keystore(path, PASSPHRASE)


def test_the_file_is_private_even_when_replacing_a_readable_one(tmp_path: Path,
                                                                key: DeviceKey) -> None:
    target = tmp_path / "k"
    target.write_text("old")
    target.chmod(0o644)
    old_umask = os.umask(0)
    try:
        save_device_keystore(target, key, PASSPHRASE, META, kdf=FAST)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k"]  # no temporary file left
    assert load_device_keystore(target, PASSPHRASE)[1] == META


def test_a_failed_save_keeps_the_old_keystore(path: Path, key: DeviceKey,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    before = path.read_bytes()

    def fail(*_: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(KeystoreError, match="No space left on device"):
        save_device_keystore(path, DeviceKey.generate("EdDSA"), PASSPHRASE, {}, kdf=FAST)
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_save_refuses_bad_arguments(tmp_path: Path, key: DeviceKey) -> None:
    target = tmp_path / "k"
    with pytest.raises(KeystoreError, match="non-empty bytes"):
        save_device_keystore(target, key, b"", META, kdf=FAST)
    with pytest.raises(KeystoreError, match="strings to strings"):
        save_device_keystore(target, key, PASSPHRASE, {"n": 1}, kdf=FAST)  # type: ignore[dict-item]
    with pytest.raises(KeystoreError, match="time_cost"):
        save_device_keystore(target, key, PASSPHRASE, META, kdf=Argon2Params(time_cost=0))
    with pytest.raises(KeystoreError, match="cannot write the keystore"):
        save_device_keystore(tmp_path / "absent" / "k", key, PASSPHRASE, META, kdf=FAST)
    assert not target.exists()
