"""The platform keystore: both back ends (encrypted PKCS#8 files; PKCS#11 on a throw-away
SoftHSM2 token) behind one interface, and ``platform_sig`` checking what they sign."""

from __future__ import annotations

import os
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path

import pkcs11
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from anfu.crypto import InvalidSignature, platform_sig
from anfu.crypto.keystore import (
    PLATFORM_ALGS,
    FileKeyStore,
    KeyNotExportable,
    KeyNotFound,
    PlatformKeyError,
    PlatformKeyStore,
    Signer,
    open_platform_keystore,
)
from anfu.crypto.keystore.pkcs11 import Pkcs11KeyStore
from tests.e2e.keys.softhsm import Token, in_process_token, needs_softhsm

MESSAGE = b"ANFU-TEST-V1\nsome bytes to sign\n"


@pytest.fixture(scope="module")
def token(tmp_path_factory: pytest.TempPathFactory) -> Token:
    return in_process_token(tmp_path_factory.mktemp("softhsm"))


@pytest.fixture(params=["file", pytest.param("pkcs11", marks=needs_softhsm)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PlatformKeyStore]:
    if request.param == "file":
        yield open_platform_keystore(backend="file", folder=tmp_path / "keys",
                                     passphrase=b"test passphrase", pkcs11_module="",
                                     pkcs11_token="", pkcs11_pin=None)
        return
    token: Token = request.getfixturevalue("token")
    opened = open_platform_keystore(backend="pkcs11", folder=tmp_path, passphrase=b"",
                                    pkcs11_module=token.module, pkcs11_token=token.label,
                                    pkcs11_pin=token.pin.encode())
    yield opened
    opened.close()  # type: ignore[attr-defined]


def new_id() -> str:
    return "t-" + secrets.token_hex(6)


def check(signer: Signer, message: bytes = MESSAGE) -> None:
    platform_sig.verify(signer.alg, platform_sig.public_key_pem(signer), message,
                        platform_sig.sign(signer, message))


@pytest.mark.parametrize("alg", PLATFORM_ALGS)
def test_create_sign_verify_load(store: PlatformKeyStore, alg: str) -> None:
    key_id = new_id()
    signer = store.create(key_id, alg)
    assert (signer.key_id, signer.alg, signer.backend) == (key_id, alg, store.backend)
    check(signer)
    loaded = store.load(key_id)
    assert platform_sig.public_key_pem(loaded) == platform_sig.public_key_pem(signer)
    check(loaded)
    signature = loaded.sign(MESSAGE)
    if alg.startswith("ecdsa"):
        assert signature[0] == 0x30  # DER SEQUENCE, as X.509 and our formats carry
    elif alg == "ed25519":
        assert len(signature) == 64
    with pytest.raises(InvalidSignature, match="does not match"):
        platform_sig.verify(alg, platform_sig.public_key_pem(signer), MESSAGE + b"x",
                            signature)


def test_exists_delete_and_refusals(store: PlatformKeyStore) -> None:
    key_id = new_id()
    assert not store.exists(key_id)
    with pytest.raises(KeyNotFound):
        store.load(key_id)
    store.create(key_id, "ecdsa-p256-sha256")
    assert store.exists(key_id)
    with pytest.raises(PlatformKeyError, match="already exists"):
        store.create(key_id, "ed25519")
    with pytest.raises(PlatformKeyError, match="unknown platform key algorithm"):
        store.create(new_id(), "dsa-sha1")
    with pytest.raises(PlatformKeyError, match="key id"):
        store.create("../escape", "ed25519")
    store.delete(key_id)
    assert not store.exists(key_id)
    with pytest.raises(KeyNotFound):
        store.load(key_id)
    with pytest.raises(KeyNotFound):
        store.delete(key_id)


def test_file_keys_are_encrypted_and_exportable(tmp_path: Path) -> None:
    store = FileKeyStore(tmp_path, b"right")
    signer = store.create("k1", "ed25519")
    path = tmp_path / "k1.p8.pem"
    assert path.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert path.stat().st_mode & 0o777 == 0o600
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    exported = store.export_pkcs8("k1", b"offline")
    key = serialization.load_pem_private_key(exported, password=b"offline")
    assert isinstance(key, ed25519.Ed25519PrivateKey)
    assert signer.private_key() is not None
    with pytest.raises(PlatformKeyError, match="ANFU_KEY_PASSPHRASE"):
        FileKeyStore(tmp_path, b"wrong").load("k1")
    with pytest.raises(PlatformKeyError, match="passphrase"):
        FileKeyStore(tmp_path, b"")


def test_file_store_imports_a_pkcs8_key(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.BestAvailableEncryption(b"old"))
    store = FileKeyStore(tmp_path, b"new")
    signer = store.import_pkcs8("imported", pem, b"old")
    assert signer.alg == "ecdsa-p256-sha256"
    check(FileKeyStore(tmp_path, b"new").load("imported"))  # stored under the new passphrase


@needs_softhsm
def test_pkcs11_private_keys_never_leave_the_token(token: Token) -> None:
    store = Pkcs11KeyStore(token.module, token.label, token.pin)
    try:
        key_id = new_id()
        signer = store.create(key_id, "ed25519")
        assert signer.private_key() is None
        with pytest.raises(KeyNotExportable, match="cannot leave"):
            store.export_pkcs8(key_id, b"x")
        with store_session(store) as logged_in:  # ask the token how it holds the key
            private = logged_in.get_key(pkcs11.ObjectClass.PRIVATE_KEY, label=key_id)
            assert private[pkcs11.Attribute.SENSITIVE] is True
            assert private[pkcs11.Attribute.EXTRACTABLE] is False
            assert private[pkcs11.Attribute.NEVER_EXTRACTABLE] is True
            assert private[pkcs11.Attribute.LOCAL] is True  # generated on the token
            assert private[pkcs11.Attribute.ID] == key_id.encode()
            with pytest.raises(pkcs11.exceptions.PKCS11Error):
                private[pkcs11.Attribute.VALUE]
        store.delete(key_id)
    finally:
        store.close()


class store_session:
    """The store's own logged-in session (a second login would be refused)."""

    def __init__(self, store: Pkcs11KeyStore) -> None:
        self.store = store

    def __enter__(self) -> pkcs11.Session:
        from anfu.crypto.keystore import pkcs11 as backend

        backend._LOCK.acquire()
        session: pkcs11.Session = self.store._open().session
        return session

    def __exit__(self, *exc: object) -> None:
        from anfu.crypto.keystore import pkcs11 as backend

        backend._LOCK.release()


@needs_softhsm
def test_pkcs11_errors_name_the_setting(token: Token) -> None:
    with pytest.raises(PlatformKeyError, match="refused the PIN"):
        Pkcs11KeyStore(token.module, token.label, "0000").exists("x")
    with pytest.raises(PlatformKeyError, match="no PKCS#11 token labelled 'nope'"):
        Pkcs11KeyStore(token.module, "nope", token.pin).exists("x")
    with pytest.raises(PlatformKeyError, match="cannot load PKCS#11 module"):
        Pkcs11KeyStore("/nonexistent/libp11.so", token.label, token.pin).exists("x")
    with pytest.raises(PlatformKeyError, match="PIN"):
        open_platform_keystore(backend="pkcs11", folder=Path("."), passphrase=b"",
                               pkcs11_module=token.module, pkcs11_token=token.label,
                               pkcs11_pin=None)
    with pytest.raises(PlatformKeyError, match="unknown keystore"):
        open_platform_keystore(backend="hsm", folder=Path("."), passphrase=b"x",
                               pkcs11_module="", pkcs11_token="", pkcs11_pin=None)


@needs_softhsm
def test_pkcs11_signs_from_many_threads_and_stores_share_the_login(token: Token) -> None:
    one = Pkcs11KeyStore(token.module, token.label, token.pin)
    two = Pkcs11KeyStore(token.module, token.label, token.pin)
    key_id = new_id()
    signer = one.create(key_id, "ecdsa-p256-sha256")
    pem = platform_sig.public_key_pem(signer)
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(50):
                message = f"{n}:{i}".encode()
                platform_sig.verify(signer.alg, pem, message, signer.sign(message))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with pytest.raises(PlatformKeyError, match="refused the PIN"):  # even while logged in
        Pkcs11KeyStore(token.module, token.label, "0000").exists("x")
    one.close()  # the other store stays logged in
    check(two.load(key_id))
    two.delete(key_id)
    two.close()


@needs_softhsm
def test_pkcs11_store_works_in_a_forked_child(token: Token) -> None:
    store = Pkcs11KeyStore(token.module, token.label, token.pin)
    signer = store.create(new_id(), "ed25519")
    check(signer)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            check(store.load(signer.key_id), b"from the child")
            code = 0
        finally:
            os.write(write, bytes([code]))
            os._exit(code)
    os.close(write)
    assert os.read(read, 1) == b"\x00"
    os.waitpid(pid, 0)
    check(signer, b"the parent still signs")
    store.delete(signer.key_id)
    store.close()


def test_platform_sig_refuses_what_it_cannot_check() -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo
                                        ).decode()
    signature = key.sign(MESSAGE)
    platform_sig.verify("ed25519", pem, MESSAGE, signature)
    with pytest.raises(InvalidSignature, match="not a ecdsa-p256-sha256 key"):
        platform_sig.verify("ecdsa-p256-sha256", pem, MESSAGE, signature)
    with pytest.raises(InvalidSignature, match="unknown platform key algorithm"):
        platform_sig.verify("sm2-sm3", pem, MESSAGE, signature)
    with pytest.raises(InvalidSignature, match="cannot be read"):
        platform_sig.verify("ed25519", "not a pem", MESSAGE, signature)
    with pytest.raises(InvalidSignature, match="does not match"):
        platform_sig.verify("ed25519", pem, MESSAGE, signature[:-1] + bytes([signature[-1] ^ 1]))
    with pytest.raises(InvalidSignature, match="does not match"):
        platform_sig.verify("ed25519", pem, MESSAGE, b"short")
