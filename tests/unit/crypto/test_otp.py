"""TOTP/HOTP against RFC 6238 / RFC 4226, enrolment QR codes, recovery codes, SecretBox."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from typing import Any, cast
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from anfu.crypto.otp import (
    Algorithm,
    CodeHasher,
    InvalidCiphertext,
    InvalidOtp,
    SecretBox,
    hash_recovery_code,
    hotp_code,
    new_numeric_code,
    new_recovery_codes,
    new_totp_secret,
    totp_code,
    totp_qr_png,
    totp_qr_svg,
    totp_step,
    totp_uri,
    verify_hotp,
    verify_recovery_code,
    verify_totp,
)
from anfu.errors import AuthenticationFailed
from tests.support import VECTORS

SECRET = base64.b32encode(b"12345678901234567890").decode()  # the RFC 4226 / 6238 seed
AT = 1_750_000_000.0  # a fixed moment, in the middle of step 58_333_333


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((VECTORS / name).read_text())
    return data


def b32(ascii_seed: str) -> str:
    return base64.b32encode(ascii_seed.encode()).decode()


def counting_bytes() -> Any:
    state = {"n": 0}

    def randbytes(n: int) -> bytes:
        state["n"] += 1
        return bytes((state["n"] + i) % 256 for i in range(n))

    return randbytes


# --- published vectors ---------------------------------------------------------------------


def totp_vectors() -> list[Any]:
    data = load("rfc6238_totp_vectors.json")
    assert data["T0"] == 0 and data["X"] == 30 and data["digits"] == 8
    seeds = data["secrets_ascii"]
    # RFC 6238's prose names only the 20-byte seed, but its SHA-256 and SHA-512 table values
    # come from the 32- and 64-byte seeds of the reference code (Appendix A), a known erratum.
    assert [len(seeds[m]) for m in ("SHA1", "SHA256", "SHA512")] == [20, 32, 64]
    return [pytest.param(v, seeds[v["mode"]], id=f"{v['mode']}-{v['time']}")
            for v in data["vectors"]]


@pytest.mark.parametrize(("vector", "seed"), totp_vectors())
def test_rfc6238_vectors(vector: dict[str, Any], seed: str) -> None:
    secret, algorithm = b32(seed), cast(Algorithm, vector["mode"].lower())
    at = float(vector["time"])
    assert totp_step(at) == int(vector["T_hex"], 16)
    assert totp_code(secret, at=at, digits=8, algorithm=algorithm) == vector["totp"]
    assert verify_totp(secret, vector["totp"], at=at, window=0, digits=8,
                       algorithm=algorithm) == int(vector["T_hex"], 16)


def test_rfc4226_vectors() -> None:
    data = load("rfc4226_hotp_vectors.json")
    secret = b32(data["secret_ascii"])
    assert secret == SECRET and data["digits"] == 6
    for vector in data["vectors"]:
        assert hotp_code(secret, vector["count"]) == vector["hotp"]
        # The ten codes are distinct, so a look-ahead over all of them finds each one's own.
        assert verify_hotp(secret, vector["hotp"], counter=0, look_ahead=9) == vector["count"]
    with pytest.raises(InvalidOtp):
        verify_hotp(secret, data["vectors"][0]["hotp"], counter=1, look_ahead=8)


@pytest.mark.skipif(shutil.which("oathtool") is None, reason="oathtool is not installed")
@pytest.mark.parametrize("algorithm", ["sha1", "sha256", "sha512"])
def test_codes_agree_with_oathtool(algorithm: str) -> None:
    alg = cast(Algorithm, algorithm)
    secret = new_totp_secret()
    out = subprocess.run(
        ["oathtool", f"--totp={algorithm}", "-b", "--now", f"@{int(AT)}", secret],
        check=True, capture_output=True, text=True).stdout.strip()
    assert re.fullmatch(r"[0-9]{6}", out)
    assert out == totp_code(secret, at=AT, algorithm=alg)
    assert verify_totp(secret, out, at=AT, algorithm=alg) == totp_step(AT)
    hotp = subprocess.run(["oathtool", "-b", "-c", "7", secret], check=True,
                          capture_output=True, text=True).stdout.strip()
    assert hotp == hotp_code(secret, 7)


# --- TOTP behaviour ------------------------------------------------------------------------


def test_window_accepts_one_step_either_side_only() -> None:
    step = totp_step(AT)
    for offset in (-1, 0, 1):
        code = totp_code(SECRET, at=AT + 30 * offset)
        assert verify_totp(SECRET, code, at=AT) == step + offset
    for offset in (-2, 2):
        with pytest.raises(InvalidOtp):
            verify_totp(SECRET, totp_code(SECRET, at=AT + 30 * offset), at=AT)
    with pytest.raises(InvalidOtp):
        verify_totp(SECRET, totp_code(SECRET, at=AT - 30), at=AT, window=0)
    assert verify_totp(SECRET, totp_code(SECRET, at=AT - 60), at=AT, window=2) == step - 2


def test_a_code_is_accepted_once() -> None:
    code = totp_code(SECRET, at=AT)
    used = verify_totp(SECRET, code, at=AT)
    with pytest.raises(InvalidOtp) as info:
        verify_totp(SECRET, code, at=AT + 5, last_step=used)
    assert info.value.code == "otp_reused"
    # A code of an earlier step, still inside the window, is refused after a later one.
    earlier = totp_code(SECRET, at=AT - 30)
    with pytest.raises(InvalidOtp):
        verify_totp(SECRET, earlier, at=AT, last_step=used)
    later = totp_code(SECRET, at=AT + 30)
    assert verify_totp(SECRET, later, at=AT + 30, last_step=used) == used + 1


@pytest.mark.parametrize("typed", ["", "12345", "1234567", "12a456", "١٢٣٤٥٦", "0" * 100])
def test_malformed_codes_are_refused(typed: str) -> None:
    with pytest.raises(InvalidOtp) as info:
        verify_totp(SECRET, typed, at=AT)
    assert isinstance(info.value, AuthenticationFailed) and info.value.code == "otp_invalid"


def test_spaces_in_a_typed_code_are_ignored() -> None:
    code = totp_code(SECRET, at=AT)
    assert verify_totp(SECRET, f" {code[:3]} {code[3:]} ", at=AT) == totp_step(AT)


def test_wrong_code_is_refused() -> None:
    code = totp_code(SECRET, at=AT)
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    with pytest.raises(InvalidOtp):
        verify_totp(SECRET, wrong, at=AT, window=0)


def test_unusable_secrets_and_arguments() -> None:
    for bad in ("not base32!", "JBSWY3DP"):  # malformed; 40 bits is too short
        with pytest.raises(ValueError):
            verify_totp(bad, "123456", at=AT)
    with pytest.raises(ValueError):
        verify_totp(SECRET, "123456", at=AT, window=-1)
    with pytest.raises(ValueError):
        totp_code(SECRET, at=AT, algorithm="md5")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        hotp_code(SECRET, -1)


def test_new_secret_is_160_bit_base32() -> None:
    secret = new_totp_secret()
    assert re.fullmatch(r"[A-Z2-7]{32}", secret)
    assert len(base64.b32decode(secret)) == 20
    assert new_totp_secret() != secret
    fixed = new_totp_secret(randbytes=lambda n: b"\x00" * n)
    assert fixed == "A" * 32


def test_enrolment_uri() -> None:
    secret = new_totp_secret()
    uri = totp_uri(secret, "+86 138 0013 8000")
    parts = urlsplit(uri)
    assert (parts.scheme, parts.netloc) == ("otpauth", "totp")
    assert unquote(parts.path) == "/anfu:+86 138 0013 8000"
    query = parse_qs(parts.query)
    assert query["secret"] == [secret] and query["issuer"] == ["anfu"]
    assert "anfu-test:" in totp_uri(secret, "u", issuer="anfu-test")
    for account, issuer in (("", "anfu"), ("u", "a:b"), ("u", "")):
        with pytest.raises(ValueError):
            totp_uri(secret, account, issuer)
    with pytest.raises(ValueError):
        totp_uri("JBSWY3DP", "u")


def test_qr_outputs() -> None:
    uri = totp_uri(new_totp_secret(), "13800138000")
    png = totp_qr_png(uri)
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and png[12:16] == b"IHDR"
    svg = totp_qr_svg(uri)
    assert svg.lstrip().startswith("<svg")
    root = ET.fromstring(svg)
    assert root.tag in ("svg", "{http://www.w3.org/2000/svg}svg")
    assert secret_free(svg, uri)


def secret_free(svg: str, uri: str) -> bool:
    """The SVG draws the URI; it does not carry it as text."""
    secret = parse_qs(urlsplit(uri).query)["secret"][0]
    return secret not in svg


# --- recovery codes ------------------------------------------------------------------------


def test_recovery_codes_are_distinct_and_readable() -> None:
    codes = new_recovery_codes()
    assert len(codes) == 10 and len(set(codes)) == 10
    for code in codes:
        # Crockford base32 without i, l, o, u; 16 symbols carry 80 bits (>= 50 required).
        assert re.fullmatch(r"([0-9a-hjkmnp-tv-z]{4}-){3}[0-9a-hjkmnp-tv-z]{4}", code)
    assert len(new_recovery_codes(3)) == 3
    with pytest.raises(ValueError):
        new_recovery_codes(0)


def test_recovery_codes_verify_by_index() -> None:
    codes = new_recovery_codes(5)
    hashes: list[str | None] = [hash_recovery_code(c) for c in codes]
    assert all(h is not None and h.startswith("rc1$") for h in hashes)
    assert not any(c.replace("-", "") in (h or "") for c in codes for h in hashes)
    assert verify_recovery_code(codes[3], hashes) == 3
    # Typed without dashes, in capitals, with O for 0 and I/L for 1: still the same code.
    typed = codes[1].replace("-", " ").upper().replace("0", "O").replace("1", "l")
    assert verify_recovery_code(typed, hashes) == 1
    hashes[3] = None  # spent
    with pytest.raises(InvalidOtp) as info:
        verify_recovery_code(codes[3], hashes)
    assert info.value.code == "recovery_code_invalid"
    for wrong in (new_recovery_codes(1)[0], "", "not-a-code", "u" * 16):
        with pytest.raises(InvalidOtp):
            verify_recovery_code(wrong, hashes)


def test_recovery_hashes_are_salted() -> None:
    code = new_recovery_codes(1)[0]
    first, second = hash_recovery_code(code), hash_recovery_code(code)
    assert first != second
    assert verify_recovery_code(code, ["garbage", "rc1$zz$00", second]) == 2
    with pytest.raises(ValueError):
        hash_recovery_code("too short")


def test_recovery_codes_use_the_injected_randomness() -> None:
    assert new_recovery_codes(2, randbytes=counting_bytes()) == new_recovery_codes(
        2, randbytes=counting_bytes())
    zero = new_recovery_codes(1, randbytes=lambda n: b"\x00" * n)
    assert zero == ["0000-0000-0000-0000"]


# --- short codes (SMS) ---------------------------------------------------------------------


def test_numeric_codes() -> None:
    assert new_numeric_code(randbelow=lambda n: 42) == "000042"
    assert re.fullmatch(r"[0-9]{6}", new_numeric_code())
    assert len(new_numeric_code(8)) == 8
    with pytest.raises(ValueError):
        new_numeric_code(3)


def test_code_hasher_binds_the_code_to_its_purpose() -> None:
    hasher = CodeHasher(b"k" * 32)
    stored = hasher.hash("123456", binding=b"pay 23.00 to A")
    assert re.fullmatch(r"[0-9a-f]{64}", stored)
    hasher.verify("123 456", binding=b"pay 23.00 to A", expected=stored)
    for code, binding in (("123457", b"pay 23.00 to A"), ("123456", b"pay 2300.00 to B"),
                          ("12345", b"pay 23.00 to A")):
        with pytest.raises(InvalidOtp):
            hasher.verify(code, binding=binding, expected=stored)
    with pytest.raises(InvalidOtp):
        CodeHasher(b"j" * 32).verify("123456", binding=b"pay 23.00 to A", expected=stored)
    assert repr(hasher) == "CodeHasher(key=<redacted>)"
    with pytest.raises(ValueError):
        CodeHasher(b"short")


# --- SecretBox -----------------------------------------------------------------------------

KEY = bytes(range(32))


def test_secret_box_round_trip() -> None:
    box = SecretBox(KEY)
    sealed = box.seal(b"JBSWY3DPEHPK3PXP", context=b"totp:u_1")
    assert sealed[0] == 1 and len(sealed) == 1 + 12 + 16 + 16
    assert b"JBSWY3DP" not in sealed
    assert box.open(sealed, context=b"totp:u_1") == b"JBSWY3DPEHPK3PXP"
    assert SecretBox(KEY).open(sealed, context=b"totp:u_1") == b"JBSWY3DPEHPK3PXP"
    again = box.seal(b"JBSWY3DPEHPK3PXP", context=b"totp:u_1")
    assert again[1:13] != sealed[1:13]  # a fresh nonce each time
    assert box.open(box.seal(b"", context=b""), context=b"") == b""


def test_secret_box_refuses_tampering_and_the_wrong_context_or_key() -> None:
    box = SecretBox(KEY)
    sealed = box.seal(b"secret", context=b"totp:u_1")
    for i in range(len(sealed)):
        altered = bytearray(sealed)
        altered[i] ^= 0x01
        with pytest.raises(InvalidCiphertext):
            box.open(bytes(altered), context=b"totp:u_1")
    for bad in (b"", sealed[:28], sealed[:-1], sealed + b"\x00"):
        with pytest.raises(InvalidCiphertext):
            box.open(bad, context=b"totp:u_1")
    with pytest.raises(InvalidCiphertext):
        box.open(sealed, context=b"totp:u_2")
    with pytest.raises(InvalidCiphertext):
        SecretBox(bytes(32)).open(sealed, context=b"totp:u_1")


def test_secret_box_key_rules() -> None:
    with pytest.raises(ValueError):
        SecretBox(b"x" * 31)
    assert repr(SecretBox(KEY)) == "SecretBox(key=<redacted>)"
