"""The ANFU-SIG-V1 signing strings and headers."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest

from anfu import sigwire
from anfu.errors import AuthenticationFailed

NONCE = "n0nce_0123456789-ab"
SIG = bytes(range(64))
SIG_B64 = base64.b64encode(SIG).decode()
BODY = b'{"amount":1000}'
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_request_signing_bytes_are_exact() -> None:
    got = sigwire.request_signing_bytes("post", "/v1/trades?x=1&y=%20", "1750000000", NONCE, BODY)
    want = (
        "ANFU-SIG-V1\nPOST\n/v1/trades?x=1&y=%20\n1750000000\n"
        + NONCE
        + "\n"
        + hashlib.sha256(BODY).hexdigest()
        + "\n"
    ).encode()
    assert got == want
    empty = sigwire.request_signing_bytes("GET", "/v1/trades/T1", "1750000000", NONCE, b"")
    assert empty.endswith(f"\n{EMPTY_SHA256}\n".encode())


def test_response_and_notification_signing_bytes() -> None:
    got = sigwire.response_signing_bytes(201, "/v1/trades", "1750000001", NONCE, BODY,
                                         merchant_id="m_1", request_nonce=NONCE[::-1])
    assert (
        got
        == (
            f"ANFU-SIG-V1\n201\n/v1/trades\n1750000001\n{NONCE}\nm_1\n{NONCE[::-1]}\n"
            f"{hashlib.sha256(BODY).hexdigest()}\n"
        ).encode()
    )
    unsigned = sigwire.response_signing_bytes(200, "/v1/platform/keys", "1", NONCE, BODY)
    assert f"\n{NONCE}\n-\n-\n".encode() in unsigned
    with pytest.raises(ValueError):
        sigwire.response_signing_bytes(200, "/", "1", NONCE, b"", merchant_id="a\nb")
    assert sigwire.notification_signing_bytes("/notify?shop=1", "1", NONCE, BODY) == (
        sigwire.request_signing_bytes("POST", "/notify?shop=1", "1", NONCE, BODY)
    )


@pytest.mark.parametrize(
    "args",
    [
        ("POST", "/a\nb", "1", NONCE),
        ("POST", "/a\rb", "1", NONCE),
        ("POST", "a", "1", NONCE),
        ("PO ST", "/a", "1", NONCE),
        ("", "/a", "1", NONCE),
        ("POST", "/a", "1.5", NONCE),
        ("POST", "/a", "", NONCE),
        ("POST", "/a", "1", "short"),
        ("POST", "/a", "1", NONCE + "\n"),
    ],
)
def test_signing_bytes_refuse_ambiguous_fields(args: tuple[str, str, str, str]) -> None:
    with pytest.raises(ValueError):
        sigwire.request_signing_bytes(*args, b"")


@pytest.mark.parametrize("status", [99, 600, True, "200"])
def test_response_status_must_be_a_status_code(status: object) -> None:
    with pytest.raises(ValueError):
        sigwire.response_signing_bytes(status, "/", "1", NONCE, b"")  # type: ignore[arg-type]


def authorization(**override: str) -> str:
    params = {
        "merchant_id": "m_100",
        "key_id": "key-1",
        "alg": "ed25519",
        "timestamp": "1750000000",
        "nonce": NONCE,
        "signature": SIG_B64,
    }
    params.update(override)
    return "ANFU-SIG-V1 " + ",".join(f'{k}="{v}"' for k, v in params.items())


def test_authorization_round_trip() -> None:
    header = sigwire.format_authorization(
        merchant_id="m_100",
        key_id="key-1",
        alg="ed25519",
        timestamp="1750000000",
        nonce=NONCE,
        signature=SIG,
    )
    assert header == authorization()
    parsed = sigwire.parse_authorization(header)
    assert parsed == sigwire.RequestSignature("m_100", "key-1", "ed25519", "1750000000", NONCE, SIG)
    # Parameters in any order, optional whitespace after commas.
    spaced = (
        'ANFU-SIG-V1 signature="' + SIG_B64 + '", nonce="' + NONCE + '",\ttimestamp='
        '"1750000000", alg="ed25519", key_id="key-1", merchant_id="m_100"'
    )
    assert sigwire.parse_authorization(spaced) == parsed


def test_signature_header_round_trip() -> None:
    header = sigwire.format_signature_header(
        key_id="pk1", alg="ed25519", timestamp="17", nonce=NONCE, signature=SIG
    )
    assert header == (
        f'key_id="pk1",alg="ed25519",timestamp="17",nonce="{NONCE}",signature="{SIG_B64}"'
    )
    assert sigwire.parse_signature_header(header) == sigwire.ResponseSignature(
        "pk1", "ed25519", "17", NONCE, SIG
    )


def code_of(header: str | None, parse: object = sigwire.parse_authorization) -> str:
    with pytest.raises(AuthenticationFailed) as info:
        parse(header)  # type: ignore[operator]
    return info.value.code


@pytest.mark.parametrize("header", [None, "", "   "])
def test_missing(header: str | None) -> None:
    assert code_of(header) == "signature_header_missing"
    assert code_of(header, sigwire.parse_signature_header) == "signature_header_missing"


BASE = authorization()


@pytest.mark.parametrize(
    ("header", "part"),
    [
        ("Bearer abc", "scheme"),
        ("anfu-sig-v1 " + BASE[12:], "scheme"),
        ("ANFU-SIG-V1", 'name="value"'),
        (BASE.replace(',nonce="' + NONCE + '"', ""), "missing parameter(s) nonce"),
        (BASE + ',nonce="' + NONCE + '"', "'nonce' appears more than once"),
        (BASE + ',extra="1"', "unknown parameter 'extra'"),
        (BASE + ",", 'name="value"'),
        (BASE.replace('key_id="key-1"', "key_id=key-1"), 'name="value"'),
        (BASE.replace('",alg', '" ;alg'), "expected ','"),
        (BASE.replace('",alg', '" , alg'), "expected ','"),
        (BASE.replace('key_id="key-1"', 'key_id = "key-1"'), 'name="value"'),
        (BASE.replace('key_id="key-1"', 'key_id="key\\"1"'), 'name="value"'),
        (authorization(key_id=""), "key_id"),
        (authorization(merchant_id="m 1"), "merchant_id"),
        (authorization(signature=""), "base64"),
        (authorization(signature="not base64!"), "base64"),
        (authorization(signature=SIG_B64.rstrip("=")), "base64"),  # padding is required
        (authorization(signature=base64.urlsafe_b64encode(b"\xfb\xff" * 8).decode()), "base64"),
        (authorization(signature="AB=="), "base64"),  # non-canonical: spare bits set
        (authorization(signature="é" + SIG_B64[1:]), "base64"),
        ("x" * 5000, "too long"),
    ],
)
def test_malformed(header: str, part: str) -> None:
    with pytest.raises(AuthenticationFailed) as info:
        sigwire.parse_authorization(header)
    assert info.value.code == "signature_header_malformed"
    assert part in info.value.detail


@pytest.mark.parametrize(
    ("override", "code"),
    [
        ({"timestamp": "17500000.00"}, "timestamp_invalid"),
        ({"timestamp": "-1"}, "timestamp_invalid"),
        ({"timestamp": ""}, "timestamp_invalid"),
        ({"timestamp": "1" * 17}, "timestamp_invalid"),
        ({"nonce": "a" * 15}, "nonce_invalid"),
        ({"nonce": "a" * 65}, "nonce_invalid"),
        ({"nonce": "a" * 15 + "+"}, "nonce_invalid"),
        ({"nonce": "a" * 15 + "é"}, "nonce_invalid"),
        ({"alg": "hmac-sha256"}, "algorithm_unsupported"),
        ({"alg": "ED25519"}, "algorithm_unsupported"),
        ({"alg": ""}, "algorithm_unsupported"),
    ],
)
def test_invalid_values(override: dict[str, str], code: str) -> None:
    assert code_of(authorization(**override)) == code
    response = (
        authorization(**override).removeprefix("ANFU-SIG-V1 ").replace('merchant_id="m_100",', "")
    )
    assert code_of(response, sigwire.parse_signature_header) == code


def test_signature_header_is_strict_too() -> None:
    good = sigwire.format_signature_header(
        key_id="pk1", alg="ed25519", timestamp="17", nonce=NONCE, signature=SIG
    )
    for bad in (good + ',merchant_id="m"', "ANFU-SIG-V1 " + good, good.replace(",alg", ";alg")):
        assert code_of(bad, sigwire.parse_signature_header) == "signature_header_malformed"


def test_format_refuses_what_would_not_parse() -> None:
    with pytest.raises(ValueError):
        sigwire.format_authorization(
            merchant_id='m"1', key_id="k", alg="ed25519", timestamp="1", nonce=NONCE, signature=SIG
        )
    with pytest.raises(ValueError):
        sigwire.format_signature_header(
            key_id="k", alg="ed25519", timestamp="1", nonce="bad nonce", signature=SIG
        )
    with pytest.raises(ValueError):
        sigwire.format_signature_header(
            key_id="k", alg="ed25519", timestamp="1", nonce=NONCE, signature=b""
        )


def test_new_nonce() -> None:
    nonces = {sigwire.new_nonce() for _ in range(100)}
    assert len(nonces) == 100
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{22,64}", n) for n in nonces)
    assert all(
        sigwire.parse_signature_header(
            sigwire.format_signature_header(
                key_id="k", alg="ed25519", timestamp="1", nonce=n, signature=SIG
            )
        ).nonce
        == n
        for n in nonces
    )
