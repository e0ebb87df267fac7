"""Signature keys for all five wire algorithms: published vectors, round trips, refusals."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa

from anfu import crypto, sigwire
from anfu.crypto import PublicKeyCache
from tests.support import VECTORS

PEM = serialization.Encoding.PEM
SPKI = serialization.PublicFormat.SubjectPublicKeyInfo
PKCS8 = serialization.PrivateFormat.PKCS8


def load_vectors(name: str) -> Any:
    return json.loads((VECTORS / name).read_text())


ED25519 = load_vectors("rfc8032_ed25519_vectors.json")["vectors"]
SM3 = load_vectors("sm3_sm4_vectors.json")["sm3"]
WYCHEPROOF_PSS = json.loads(
    (Path(__file__).parent / "vectors" / "wycheproof_rsa_pss_2048_sha256_mgf1_32.json").read_text()
)
RSA_ALGS = {"rsa-sha256", "rsa-pss-sha256"}


@pytest.fixture(scope="module")
def keys() -> dict[str, crypto.PrivateKey]:
    """One generated key per algorithm (RSA generation is slow, so once per module)."""
    return {alg: crypto.generate_private_key(alg) for alg in crypto.ALGORITHMS}


def spki_pem(key: Any) -> str:
    return str(key.public_bytes(PEM, SPKI).decode())


def pkcs8_pem(key: Any) -> str:
    return str(key.private_bytes(PEM, PKCS8, serialization.NoEncryption()).decode())


def test_algorithm_names_match_the_wire_format() -> None:
    assert crypto.ALGORITHMS == sigwire.ALGORITHMS
    assert crypto.ALGORITHMS == (
        "ed25519", "ecdsa-p256-sha256", "rsa-sha256", "sm2-sm3", "rsa-pss-sha256"
    )


@pytest.mark.parametrize(
    "v", [v for v in ED25519 if v["scheme"] == "Ed25519Pure"], ids=lambda v: v["name"]
)
def test_rfc8032_ed25519_vectors(v: dict[str, Any]) -> None:
    public = ed25519.Ed25519PublicKey.from_public_bytes(bytes.fromhex(v["pk"]))
    private = ed25519.Ed25519PrivateKey.from_private_bytes(bytes.fromhex(v["sk"]))
    msg, sig = bytes.fromhex(v["msg"]), bytes.fromhex(v["sig"])
    key = crypto.load_public_key("ed25519", spki_pem(public))
    key.verify(sig, msg)
    assert crypto.load_private_key("ed25519", pkcs8_pem(private)).sign(msg) == sig
    bad = bytearray(sig)
    bad[0] ^= 0x01
    with pytest.raises(crypto.InvalidSignature):
        key.verify(bytes(bad), msg)
    with pytest.raises(crypto.InvalidSignature):
        key.verify(sig, msg + b"\x00")


@pytest.mark.parametrize(
    "v", [v for v in ED25519 if v["scheme"] != "Ed25519Pure"], ids=lambda v: v["name"]
)
def test_ed25519ctx_and_ph_signatures_are_not_pure_ed25519(v: dict[str, Any]) -> None:
    public = ed25519.Ed25519PublicKey.from_public_bytes(bytes.fromhex(v["pk"]))
    key = crypto.load_public_key("ed25519", spki_pem(public))
    with pytest.raises(crypto.InvalidSignature):
        key.verify(bytes.fromhex(v["sig"]), bytes.fromhex(v["msg"]))


@pytest.mark.parametrize("v", SM3, ids=lambda v: v["source"])
def test_sm3_vectors(v: dict[str, str]) -> None:
    assert crypto.sm3_hex(v["msg_ascii"].encode()) == v["digest"]


@pytest.mark.parametrize("alg", crypto.ALGORITHMS)
def test_round_trip_and_tampering(alg: str, keys: dict[str, crypto.PrivateKey]) -> None:
    key = keys[alg]
    assert key.alg == alg and key.public_key().alg == alg
    message = b"ANFU-SIG-V1\nPOST\n/v1/trades\n1750000000\nnonce\n..."
    signature = key.sign(message)
    public = crypto.load_public_key(alg, key.public_key().public_pem())
    public.verify(signature, message)
    with pytest.raises(crypto.InvalidSignature):
        public.verify(signature, message + b" ")
    for i in (0, len(signature) // 2, len(signature) - 1):
        bad = bytearray(signature)
        bad[i] ^= 0x40
        with pytest.raises(crypto.InvalidSignature):
            public.verify(bytes(bad), message)
    for junk in (b"", signature[:-1], signature + b"\x00", b"\x30\x06\x02\x01\x01\x02\x01\x01"):
        with pytest.raises(crypto.InvalidSignature):
            public.verify(junk, message)
    other = keys["sm2-sm3" if alg != "sm2-sm3" else "ed25519"].sign(message)
    with pytest.raises(crypto.InvalidSignature):
        public.verify(other, message)


@pytest.mark.parametrize("alg", crypto.ALGORITHMS)
def test_serialisation(alg: str, keys: dict[str, crypto.PrivateKey]) -> None:
    key = keys[alg]
    public = key.public_key()
    pem = public.public_pem()
    assert pem.startswith("-----BEGIN PUBLIC KEY-----\n")
    assert pem.endswith("-----END PUBLIC KEY-----\n")
    loaded = crypto.load_public_key(alg, pem.encode())  # bytes or str
    assert loaded == public and hash(loaded) == hash(public)
    der = base64.b64decode("".join(pem.splitlines()[1:-1]))
    assert public.fingerprint() == hashlib.sha256(der).hexdigest()
    plain = key.private_pem(None)
    assert plain.startswith("-----BEGIN PRIVATE KEY-----\n")
    assert crypto.load_private_key(alg, plain).public_key() == public
    encrypted = key.private_pem(b"hunter2")
    assert encrypted.startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----\n")
    assert crypto.load_private_key(alg, encrypted, b"hunter2").public_key() == public
    for password, match in ((b"hunter3", "password"), (None, "encrypted")):
        with pytest.raises(crypto.KeyFormatError, match=match):
            crypto.load_private_key(alg, encrypted, password)
    with pytest.raises(crypto.KeyFormatError, match="not encrypted"):
        crypto.load_private_key(alg, plain, b"hunter2")
    assert "PRIVATE" not in repr(key) and alg in repr(key)


@pytest.mark.parametrize(
    ("made_for", "loaded_as"),
    # An RSA key is an RSA key: what binds it to PKCS#1 v1.5 or PSS is its registration.
    [(a, b) for a in crypto.ALGORITHMS for b in crypto.ALGORITHMS
     if a != b and {a, b} != RSA_ALGS],
)
def test_key_of_another_type_is_refused(
    made_for: str, loaded_as: str, keys: dict[str, crypto.PrivateKey]
) -> None:
    key = keys[made_for]
    with pytest.raises(crypto.KeyFormatError):
        crypto.load_public_key(loaded_as, key.public_key().public_pem())
    with pytest.raises(crypto.KeyFormatError):
        crypto.load_private_key(loaded_as, key.private_pem(None))


def test_other_curves_and_key_types_are_refused() -> None:
    p384 = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(crypto.KeyFormatError, match="secp384r1"):
        crypto.load_public_key("ecdsa-p256-sha256", spki_pem(p384.public_key()))
    with pytest.raises(crypto.KeyFormatError, match="secp384r1"):
        crypto.load_private_key("ecdsa-p256-sha256", pkcs8_pem(p384))
    ed = ed448.Ed448PrivateKey.generate()
    for alg in crypto.ALGORITHMS:
        with pytest.raises(crypto.KeyFormatError):
            crypto.load_public_key(alg, spki_pem(ed.public_key()))
    with pytest.raises(crypto.KeyFormatError, match="unknown algorithm"):
        crypto.load_public_key("hmac-sha256", spki_pem(p384.public_key()))
    with pytest.raises(crypto.KeyFormatError, match="unknown algorithm"):
        crypto.generate_private_key("ES256")


def test_rsa_below_2048_bits_is_refused() -> None:
    weak = rsa.generate_private_key(65537, 1024)
    with pytest.raises(crypto.KeyFormatError, match="2048"):
        crypto.load_public_key("rsa-sha256", spki_pem(weak.public_key()))
    with pytest.raises(crypto.KeyFormatError, match="2048"):
        crypto.load_private_key("rsa-sha256", pkcs8_pem(weak))
    ok = rsa.generate_private_key(65537, 2048)
    assert crypto.load_public_key("rsa-sha256", spki_pem(ok.public_key())).alg == "rsa-sha256"


@pytest.mark.parametrize(
    "pem",
    [
        "",
        "not a key",
        "-----BEGIN PUBLIC KEY-----\n!!!!\n-----END PUBLIC KEY-----\n",
        "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n-----END PUBLIC KEY-----\n",  # truncated
    ],
)
def test_unreadable_public_keys_are_refused(pem: str) -> None:
    with pytest.raises(crypto.KeyFormatError):
        crypto.load_public_key("ed25519", pem)


def test_only_a_single_spki_pem_block_is_a_public_key(keys: dict[str, crypto.PrivateKey]) -> None:
    key = keys["rsa-sha256"]
    pem = key.public_key().public_pem()
    with pytest.raises(crypto.KeyFormatError, match="PUBLIC KEY"):
        crypto.load_public_key("rsa-sha256", key.private_pem(None))
    with pytest.raises(crypto.KeyFormatError):
        crypto.load_public_key("rsa-sha256", pem + pem)
    pkcs1 = (
        serialization.load_pem_public_key(pem.encode())
        .public_bytes(PEM, serialization.PublicFormat.PKCS1)
        .decode()
    )
    with pytest.raises(crypto.KeyFormatError, match="RSA PUBLIC KEY"):
        crypto.load_public_key("rsa-sha256", pkcs1)
    # Surrounding whitespace and CRLF line ends are fine.
    assert crypto.load_public_key("rsa-sha256", "\n " + pem.replace("\n", "\r\n"))


class TestPublicKeyCache:
    def test_parses_once_and_reloads_after_drop(self, keys: dict[str, crypto.PrivateKey]) -> None:
        cache, calls = PublicKeyCache(), []
        pem = keys["ed25519"].public_key().public_pem()

        def loader() -> crypto.PublicKey:
            calls.append(1)
            return crypto.load_public_key("ed25519", pem)

        first = cache.get("k1", loader)
        assert cache.get("k1", loader) is first and len(calls) == 1
        cache.drop("k1")
        cache.drop("k1")  # dropping an absent key is fine
        assert cache.get("k1", loader) == first and len(calls) == 2

    def test_concurrent_misses_load_once(self, keys: dict[str, crypto.PrivateKey]) -> None:
        cache, calls = PublicKeyCache(), []
        gate = threading.Event()

        def loader() -> crypto.PublicKey:
            calls.append(1)
            gate.wait(5)
            return keys["ed25519"].public_key()

        results: list[crypto.PublicKey] = []
        threads = [
            threading.Thread(target=lambda: results.append(cache.get("k", loader)))
            for _ in range(8)
        ]
        for t in threads:
            t.start()
        time.sleep(0.05)
        gate.set()
        for t in threads:
            t.join()
        assert len(calls) == 1 and len(results) == 8

    def test_drop_during_load_keeps_the_result_out(
        self,
        keys: dict[str, crypto.PrivateKey],
    ) -> None:
        cache = PublicKeyCache()

        def loader() -> crypto.PublicKey:
            cache.drop("k")  # revoked while its old row was being read
            return keys["ed25519"].public_key()

        cache.get("k", loader)
        assert len(cache) == 0

    def test_failed_load_is_not_cached(self) -> None:
        cache = PublicKeyCache()

        def broken() -> crypto.PublicKey:
            raise crypto.KeyFormatError("bad key")

        for _ in range(2):
            with pytest.raises(crypto.KeyFormatError):
                cache.get("k", broken)
        assert len(cache) == 0

    def test_is_bounded(self, keys: dict[str, crypto.PrivateKey]) -> None:
        cache = PublicKeyCache(max_entries=3)
        for i in range(10):
            cache.get(f"k{i}", keys["ed25519"].public_key)
        assert len(cache) == 3


# --- rsa-pss-sha256 ---


def pss_public_pem() -> str:
    numbers = rsa.RSAPublicNumbers(int(WYCHEPROOF_PSS["e"], 16), int(WYCHEPROOF_PSS["n"], 16))
    return spki_pem(numbers.public_key())


@pytest.mark.parametrize("t", WYCHEPROOF_PSS["tests"], ids=lambda t: f"tc{t['tcId']}")
def test_wycheproof_rsa_pss_sha256_vectors(t: dict[str, Any]) -> None:
    key = crypto.load_public_key("rsa-pss-sha256", pss_public_pem())
    msg, sig = bytes.fromhex(t["msg"]), bytes.fromhex(t["sig"])
    key.verify(sig, msg)
    with pytest.raises(crypto.InvalidSignature):
        key.verify(sig, msg + b"\x00")
    # The same key registered for PKCS#1 v1.5 refuses the PSS signature.
    with pytest.raises(crypto.InvalidSignature):
        crypto.load_public_key("rsa-sha256", pss_public_pem()).verify(sig, msg)


def test_rsa_pss_and_pkcs1_never_cross(keys: dict[str, crypto.PrivateKey]) -> None:
    pss, pkcs1 = keys["rsa-pss-sha256"], keys["rsa-sha256"]
    message = b"ANFU-SIG-V1\nPOST\n/v1/trades\n1750000000\nnonce\n..."
    pss_as_pkcs1 = crypto.load_public_key("rsa-sha256", pss.public_key().public_pem())
    with pytest.raises(crypto.InvalidSignature):
        pss_as_pkcs1.verify(pss.sign(message), message)
    pkcs1_as_pss = crypto.load_public_key("rsa-pss-sha256", pkcs1.public_key().public_pem())
    with pytest.raises(crypto.InvalidSignature):
        pkcs1_as_pss.verify(pkcs1.sign(message), message)


def test_rsa_pss_signature_uses_sha256_mgf1_and_a_32_byte_salt(
    keys: dict[str, crypto.PrivateKey],
) -> None:
    key = keys["rsa-pss-sha256"]
    message = b"salted"
    signature = key.sign(message)
    assert signature != key.sign(message)  # a fresh random salt every time
    raw = crypto.load_private_key("rsa-pss-sha256", key.private_pem(None))
    public = serialization.load_pem_public_key(raw.public_key().public_pem().encode())
    assert isinstance(public, rsa.RSAPublicKey)
    public.verify(signature, message,
                  padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), hashes.SHA256())
    # A PSS signature with another salt length is not an rsa-pss-sha256 signature.
    private = serialization.load_pem_private_key(key.private_pem(None).encode(), None)
    assert isinstance(private, rsa.RSAPrivateKey)
    other = private.sign(message, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=20),
                         hashes.SHA256())
    with pytest.raises(crypto.InvalidSignature):
        key.public_key().verify(other, message)
