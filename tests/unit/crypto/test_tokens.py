"""HMAC-SHA256 access tokens."""

from __future__ import annotations

import base64
import hmac
import re

import orjson
import pytest

from anfu.crypto import TokenExpired, TokenInvalid, TokenSigner, random_token, sha256_hex
from anfu.errors import AuthenticationFailed
from tests.clock import Clock

SECRET = b"s" * 32




@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def signer(clock: Clock) -> TokenSigner:
    return TokenSigner(SECRET, clock)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_mint_and_verify(signer: TokenSigner) -> None:
    token = signer.mint({"sub": "u_1", "sid": "s_9", "scopes": ["pay"]}, 900)
    assert re.fullmatch(r"v1\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}", token)
    claims = signer.verify(token)
    assert claims == {
        "sub": "u_1",
        "sid": "s_9",
        "scopes": ["pay"],
        "iat": 1_750_000_000,
        "exp": 1_750_000_900,
    }


def test_expiry_uses_the_injected_clock(signer: TokenSigner, clock: Clock) -> None:
    token = signer.mint({"sub": "u"}, 60)
    clock.now = 1_750_000_059.99
    signer.verify(token)
    clock.now = 1_750_000_060
    with pytest.raises(TokenExpired) as info:
        signer.verify(token)
    assert isinstance(info.value, TokenInvalid) and isinstance(info.value, AuthenticationFailed)
    assert info.value.code == "token_expired"


def test_other_secret_or_altered_token_is_invalid(signer: TokenSigner, clock: Clock) -> None:
    token = signer.mint({"sub": "u_1"}, 900)
    with pytest.raises(TokenInvalid) as info:
        TokenSigner(b"t" * 32, clock).verify(token)
    assert not isinstance(info.value, TokenExpired) and info.value.code == "token_invalid"
    _, payload, mac = token.split(".")
    forged = b64url(orjson.dumps({"sub": "admin", "iat": 1, "exp": 2**40}))
    for bad in (
        f"v2.{payload}.{mac}",
        f"v1.{forged}.{mac}",
        f"v1.{payload}.{mac[:-1]}",
        f"v1.{payload}.{mac}x",
        f"v1.{payload}A.{mac}",
    ):
        with pytest.raises(TokenInvalid):
            signer.verify(bad)


def test_mac_must_be_the_canonical_base64url_spelling(signer: TokenSigner) -> None:
    token = signer.mint({"sub": "u"}, 900)
    # 32 bytes take 43 base64url characters; the last one carries 2 spare bits. Setting them
    # gives another spelling of the same MAC bytes, which must not be accepted.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(token[-1])
    twin = token[:-1] + alphabet[last | 0b11]
    assert twin != token
    assert base64.urlsafe_b64decode(twin.split(".")[2] + "=") == base64.urlsafe_b64decode(
        token.split(".")[2] + "="
    )
    with pytest.raises(TokenInvalid):
        signer.verify(twin)


def signed(payload: bytes) -> str:
    """A correctly MACed token around an arbitrary payload, to test the claim checks."""
    key = hmac.digest(SECRET, b"anfu access token v1", "sha256")
    body = f"v1.{b64url(payload)}"
    return f"{body}.{b64url(hmac.digest(key, body.encode(), 'sha256'))}"


def test_the_test_helper_matches_mint(signer: TokenSigner) -> None:
    assert signer.verify(signed(b'{"sub":"u","exp":9999999999}'))["sub"] == "u"


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"[1, 2]",
        b'"text"',
        b"{}",
        b'{"exp": "9999999999"}',
        b'{"exp": true}',
        b'{"exp": 9999999999.5}',
    ],
)
def test_well_signed_but_bad_claims_are_invalid(signer: TokenSigner, payload: bytes) -> None:
    with pytest.raises(TokenInvalid):
        signer.verify(signed(payload))


@pytest.mark.parametrize(
    "token",
    [
        "",
        "v1",
        "v1..",
        "v1.abc",
        "v1.a.b.c",
        "v1.é.abc",
        "x" * 5000,
        "v1. .abc",
    ],
)
def test_malformed_tokens_are_invalid(signer: TokenSigner, token: str) -> None:
    with pytest.raises(TokenInvalid):
        signer.verify(token)


def test_misuse_is_refused(clock: Clock) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        TokenSigner(b"short", clock)
    signer = TokenSigner(SECRET, clock)
    with pytest.raises(ValueError):
        signer.mint({"sub": "u"}, 0)
    with pytest.raises(ValueError):
        signer.mint({"sub": "u", "exp": 2**40}, 60)
    assert "s" * 8 not in repr(signer)


def test_helpers() -> None:
    token = random_token()
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", token) and token != random_token()
    assert len(random_token(16)) == 22
    # FIPS 180-2 Appendix B.1
    assert sha256_hex(b"abc") == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )
