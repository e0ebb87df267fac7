"""SM2 with SM3: published examples, strict formats, and both directions with `openssl` 3."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from anfu import crypto
from anfu.crypto import _der, _sm2_backends, sm2
from anfu.crypto.sm2 import SM2PrivateKey, SM2PublicKey

# GB/T 32918.5-2017 Annex A / GM/T 0003.5-2012 Annex A (the recommended curve), as also used
# by OpenSSL's test/sm2_internal_test.c.
D = bytes.fromhex("3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8")
POINT = bytes.fromhex(
    "04"
    "09F9DF311E5421A150DD7D161E4BC5C672179FAD1833FC076BB08FF356F35020"
    "CCEA490CE26775A52DC6EA718CC1AA600AED05FBF35E084A6632F6072DA9AD13"
)
K = bytes.fromhex("59276E27D506861A16680F3AD9C02DCCEF3CC1FA3CDBE4CE6D54B80DEAC1BC21")
Z_A = bytes.fromhex("B2E14C5C79C6DF5B85F4FE7ED8DB7A262B9DA7E07CCB0EA9F4747B8CCDA8A4F3")
R = 0xF5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3
S = 0xB1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA
MESSAGE = b"message digest"
N = _sm2_backends.N

BACKENDS = {b.name: b for b in _sm2_backends.available_backends()}


def der_sig(r: int, s: int) -> bytes:
    return _der.seq(_der.uint(r), _der.uint(s))


@pytest.fixture(params=sorted(BACKENDS), autouse=True)
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Run every test here once per SM2 implementation available on this machine."""
    monkeypatch.setattr(sm2, "default_backend", lambda: BACKENDS[request.param])
    yield request.param


def test_an_implementation_is_available_and_preferred_is_openssl_when_it_has_sm2() -> None:
    assert BACKENDS
    assert _sm2_backends.default_backend().name == next(iter(BACKENDS))


def test_published_example_verifies() -> None:
    key = SM2PublicKey(POINT)
    key.verify(der_sig(R, S), MESSAGE)
    with pytest.raises(crypto.InvalidSignature):
        key.verify(der_sig(R, S), MESSAGE + b".")
    with pytest.raises(crypto.InvalidSignature):
        key.verify(der_sig(R, S + 1), MESSAGE)
    with pytest.raises(crypto.InvalidSignature):  # another distinguishing ID, another Z_A
        SM2PublicKey(POINT, uid=b"ALICE123@YAHOO.COM").verify(der_sig(R, S), MESSAGE)


def test_published_example_private_key_gives_the_published_public_key() -> None:
    assert SM2PrivateKey(D).public_key().point == POINT


def test_published_example_signs_exactly_with_the_published_k(backend: str) -> None:
    if backend != "gmalglib":
        pytest.skip("only gmalglib lets the caller choose k")
    from gmalglib.sm2 import SM2

    engine = SM2(sk=D, rnd_fn=lambda n: K[::-1])  # gmalglib reads random bytes little-endian
    assert engine.get_entity_info() == Z_A
    assert engine.sign(MESSAGE) == R.to_bytes(32, "big") + S.to_bytes(32, "big")


def test_round_trip_and_tampering() -> None:
    key = SM2PrivateKey.generate()
    signature = key.sign(b"pay 100")
    key.public_key().verify(signature, b"pay 100")
    for bad_message in (b"pay 1000", b"", b"pay 100\x00"):
        with pytest.raises(crypto.InvalidSignature):
            key.public_key().verify(signature, bad_message)
    flipped = bytearray(signature)
    flipped[-1] ^= 1
    with pytest.raises(crypto.InvalidSignature):
        key.public_key().verify(bytes(flipped), b"pay 100")
    with pytest.raises(crypto.InvalidSignature):
        SM2PrivateKey.generate().public_key().verify(signature, b"pay 100")


@pytest.mark.parametrize(
    "signature",
    [
        b"",
        b"\x30\x00",
        der_sig(0, S),
        der_sig(R, 0),
        der_sig(N, S),
        der_sig(R, N),
        der_sig(R, S) + b"\x00",  # trailing byte
        b"\x30\x45\x02\x21\x00"
        + R.to_bytes(32, "big")
        + b"\x02\x20"
        + S.to_bytes(32, "big")
        + b"\x00",  # wrong outer length
        b"\x30\x47\x02\x21\x00"
        + R.to_bytes(32, "big")
        + b"\x02\x22\x00\x00"
        + S.to_bytes(32, "big"),  # s has a needless leading zero: not DER
        b"\x30\x81\x45" + der_sig(R, S)[2:],  # long-form length where short form fits
        R.to_bytes(32, "big") + S.to_bytes(32, "big"),  # raw r||s, not DER
    ],
)
def test_malformed_or_out_of_range_signatures_are_invalid(signature: bytes) -> None:
    with pytest.raises(crypto.InvalidSignature):
        SM2PublicKey(POINT).verify(signature, MESSAGE)


def test_pem_round_trip_is_the_standard_form() -> None:
    key = SM2PrivateKey.generate()
    pem = key.public_key().public_pem()
    assert pem.startswith("-----BEGIN PUBLIC KEY-----\n")
    loaded = crypto.load_public_key("sm2-sm3", pem)
    assert loaded == key.public_key()
    assert loaded.fingerprint() == hashlib.sha256(_der.sm2_spki(key.public_key().point)).hexdigest()
    again = crypto.load_private_key("sm2-sm3", key.private_pem(None))
    assert again.public_key() == key.public_key()
    encrypted = key.private_pem(b"correct horse")
    assert encrypted.startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----\n")
    assert crypto.load_private_key("sm2-sm3", encrypted, b"correct horse").public_key() == (
        key.public_key()
    )
    with pytest.raises(crypto.KeyFormatError, match="password"):
        crypto.load_private_key("sm2-sm3", encrypted, b"wrong")
    with pytest.raises(crypto.KeyFormatError, match="encrypted"):
        crypto.load_private_key("sm2-sm3", encrypted)
    with pytest.raises(crypto.KeyFormatError, match="not encrypted"):
        crypto.load_private_key("sm2-sm3", key.private_pem(None), b"pw")


def test_bad_public_keys_are_refused() -> None:
    off_curve = POINT[:-1] + bytes([POINT[-1] ^ 1])
    compressed = b"\x02" + POINT[1:33]
    for point in (off_curve, compressed, b"\x04" + b"\x00" * 64, POINT + b"\x00"):
        with pytest.raises(crypto.KeyFormatError):
            SM2PublicKey(point)
    good = _der.sm2_spki(POINT)
    p384 = _der.seq(
        _der.seq(_der.ID_EC_PUBLIC_KEY, _der.oid("1.3.132.0.34")),
        _der.tlv(_der.BIT_STRING, b"\x00" + POINT),
    )
    for der in (good + b"\x00", good[:-1], p384):
        with pytest.raises(crypto.KeyFormatError):
            SM2PublicKey.from_der(der)


def test_bad_private_keys_are_refused() -> None:
    for scalar in (b"\x00" * 32, (N - 1).to_bytes(32, "big"), N.to_bytes(32, "big")):
        with pytest.raises(crypto.KeyFormatError):
            SM2PrivateKey(scalar)
    other = SM2PrivateKey.generate().public_key().point
    mismatched = _der.sm2_pkcs8(D, other)
    with pytest.raises(crypto.KeyFormatError, match="does not match"):
        SM2PrivateKey.from_der(mismatched)
    SM2PrivateKey.from_der(_der.sm2_pkcs8(D, None))  # the public key is optional


def test_concurrent_verification_with_one_key() -> None:
    key = SM2PrivateKey.generate()
    public = SM2PublicKey.from_pem(key.public_key().public_pem())
    messages = [f"order {i}".encode() for i in range(40)]
    signatures = [key.sign(m) for m in messages]
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for m, s in zip(messages, signatures, strict=True):
                public.verify(s, m)
                with pytest.raises(crypto.InvalidSignature):
                    public.verify(s, m + b"!")
        except BaseException as exc:  # surfaced below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


# --- the real openssl 3 binary ------------------------------------------------------------

DISTID = "distid:1234567812345678"


def _openssl_has_sm2() -> bool:
    exe = shutil.which("openssl")
    if exe is None:
        return False
    result = subprocess.run([exe, "genpkey", "-algorithm", "SM2"], capture_output=True)
    return result.returncode == 0 and b"PRIVATE KEY" in result.stdout


needs_openssl = pytest.mark.skipif(not _openssl_has_sm2(), reason="openssl lacks SM2")


def openssl(*args: str, stdin: bytes | None = None) -> bytes:
    result = subprocess.run(["openssl", *args], input=stdin, capture_output=True)
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout


@needs_openssl
def test_openssl_key_and_signature_are_accepted(tmp_path: Path) -> None:
    key_pem = openssl("genpkey", "-algorithm", "SM2")
    (tmp_path / "key.pem").write_bytes(key_pem)
    pub_pem = openssl("pkey", "-in", str(tmp_path / "key.pem"), "-pubout")
    (tmp_path / "msg").write_bytes(b"openssl signed this \x00\xff")
    signature = openssl(
        "pkeyutl",
        "-sign",
        "-inkey",
        str(tmp_path / "key.pem"),
        "-rawin",
        "-digest",
        "sm3",
        "-pkeyopt",
        DISTID,
        "-in",
        str(tmp_path / "msg"),
    )
    public = crypto.load_public_key("sm2-sm3", pub_pem)
    public.verify(signature, b"openssl signed this \x00\xff")
    with pytest.raises(crypto.InvalidSignature):
        public.verify(signature, b"openssl signed this")
    assert public.public_pem().encode() == pub_pem  # the same standard form
    ours = crypto.load_private_key("sm2-sm3", key_pem)
    assert ours.public_key() == public
    assert ours.private_pem(None).encode() == key_pem


@needs_openssl
def test_our_key_and_signature_are_accepted_by_openssl(tmp_path: Path) -> None:
    key = crypto.generate_private_key("sm2-sm3")
    (tmp_path / "pub.pem").write_text(key.public_key().public_pem())
    (tmp_path / "msg").write_bytes(b"anfu signed this")
    (tmp_path / "sig").write_bytes(key.sign(b"anfu signed this"))
    verify = (
        "pkeyutl",
        "-verify",
        "-pubin",
        "-inkey",
        str(tmp_path / "pub.pem"),
        "-rawin",
        "-digest",
        "sm3",
        "-pkeyopt",
        DISTID,
        "-sigfile",
        str(tmp_path / "sig"),
    )
    assert b"Verified Successfully" in openssl(*verify, "-in", str(tmp_path / "msg"))
    (tmp_path / "msg").write_bytes(b"anfu signed that")
    result = subprocess.run(["openssl", *verify, "-in", str(tmp_path / "msg")], capture_output=True)
    assert result.returncode != 0
    # openssl reads our PKCS#8, plain and encrypted, and derives the same public key.
    (tmp_path / "key.pem").write_text(key.private_pem(None))
    (tmp_path / "enc.pem").write_text(key.private_pem(b"s3cret"))
    pub = openssl("pkey", "-in", str(tmp_path / "key.pem"), "-pubout").decode()
    assert pub == key.public_key().public_pem()
    plain = openssl("pkey", "-in", str(tmp_path / "enc.pem"), "-passin", "pass:s3cret")
    assert plain.decode() == key.private_pem(None)


@needs_openssl
def test_openssl_encrypted_pkcs8_is_read(tmp_path: Path) -> None:
    (tmp_path / "key.pem").write_bytes(openssl("genpkey", "-algorithm", "SM2"))
    encrypted = openssl(
        "pkcs8",
        "-topk8",
        "-in",
        str(tmp_path / "key.pem"),
        "-v2",
        "aes-256-cbc",
        "-passout",
        "pass:s3cret",
    )
    key = crypto.load_private_key("sm2-sm3", encrypted, b"s3cret")
    pub = openssl("pkey", "-in", str(tmp_path / "key.pem"), "-pubout").decode()
    assert key.public_key().public_pem() == pub
