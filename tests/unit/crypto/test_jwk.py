"""Device public keys as JWKs: RFC 8037 vectors, strict parsing, signatures, device messages."""

from __future__ import annotations

import base64
import dataclasses
import json
import threading
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, utils

from anfu.crypto import DeviceKey, InvalidSignature, JwkInvalid, device_message, parse_public_jwk
from anfu.crypto.jwk import b64url_decode, b64url_encode, clear_key_cache
from tests.support import VECTORS

# RFC 8037 Appendix A (transcribed from the RFC text; the same values appear in many JOSE
# libraries' test suites). A.1 private key, A.2 its public JWK, A.3 the RFC 7638 thumbprint
# of A.2, A.4 the JWS of "Example of Ed25519 signing" with header {"alg":"EdDSA"}.
RFC8037_D = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"
RFC8037_X = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
RFC8037_JWK = {"kty": "OKP", "crv": "Ed25519", "x": RFC8037_X}
RFC8037_THUMBPRINT = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
RFC8037_SIGNING_INPUT = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc"
RFC8037_SIGNATURE = (
    "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg"
)
PKCS8 = serialization.PrivateFormat.PKCS8
DER = serialization.Encoding.DER


def rfc8037_key() -> DeviceKey:
    seed = b64url_decode(RFC8037_D)
    der = ed25519.Ed25519PrivateKey.from_private_bytes(seed).private_bytes(
        DER, PKCS8, serialization.NoEncryption()
    )
    return DeviceKey.from_pkcs8_der(der)


def ec_jwk() -> dict[str, str]:
    return DeviceKey.generate("ES256").public.jwk


def test_rfc8037_key_is_rfc8032_test_1() -> None:
    """Cross-check the transcription: RFC 8037's key is RFC 8032 §7.1 TEST 1."""
    vectors = json.loads((VECTORS / "rfc8032_ed25519_vectors.json").read_text())["vectors"]
    test_1 = next(v for v in vectors if v["name"] == "TEST 1")
    assert b64url_encode(bytes.fromhex(test_1["sk"])) == RFC8037_D
    assert b64url_encode(bytes.fromhex(test_1["pk"])) == RFC8037_X


def test_rfc8037_a3_thumbprint() -> None:
    key = parse_public_jwk(RFC8037_JWK)
    assert key.alg == "EdDSA"
    assert key.jkt == RFC8037_THUMBPRINT
    assert key.canonical_jwk == b'{"crv":"Ed25519","kty":"OKP","x":"' + RFC8037_X.encode() + b'"}'
    assert rfc8037_key().public == key


def test_rfc8037_a4_signature() -> None:
    message = RFC8037_SIGNING_INPUT.encode()
    signature = b64url_decode(RFC8037_SIGNATURE)
    assert rfc8037_key().sign(message) == signature  # Ed25519 is deterministic
    key = parse_public_jwk(RFC8037_JWK)
    key.verify(signature, message)
    with pytest.raises(InvalidSignature):
        key.verify(signature, message + b"x")
    with pytest.raises(InvalidSignature):
        key.verify(bytes([signature[0] ^ 1]) + signature[1:], message)


@pytest.mark.parametrize("alg", ["ES256", "EdDSA"])
def test_keys_round_trip_through_their_jwk(alg: str) -> None:
    device = DeviceKey.generate(alg)  # type: ignore[arg-type]
    key = parse_public_jwk(device.public.jwk)
    assert key == device.public and hash(key) == hash(device.public)
    assert key.alg == alg
    assert set(key.jwk) == ({"kty", "crv", "x", "y"} if alg == "ES256" else {"kty", "crv", "x"})
    assert len(key.jkt) == 43
    message = b"pay 100 CNY"
    key.verify(device.sign(message), message)


def test_es256_signatures_are_raw_r_and_s() -> None:
    """Check the r||s layout against pyca directly, independent of the module's verifier."""
    device = DeviceKey.generate("ES256")
    private = serialization.load_der_private_key(device.to_pkcs8_der(), None)
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    signature = device.sign(b"message")
    assert len(signature) == 64
    der = utils.encode_dss_signature(
        int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    )
    private.public_key().verify(der, b"message", ec.ECDSA(hashes.SHA256()))


def test_public_keys_are_frozen_and_jwk_is_a_copy() -> None:
    key = parse_public_jwk(RFC8037_JWK)
    with pytest.raises(dataclasses.FrozenInstanceError):
        key.alg = "ES256"  # type: ignore[misc]
    key.jwk["x"] = "changed"
    assert key.jwk["x"] == RFC8037_X


def test_optional_public_members_are_ignored_when_consistent() -> None:
    extra = {**RFC8037_JWK, "kid": "phone-1", "use": "sig", "alg": "EdDSA",
             "key_ops": ["verify"], "ext": True, "x5t#S256": "ignored"}
    assert parse_public_jwk(extra).jkt == RFC8037_THUMBPRINT


def with_x(jwk: dict[str, str], raw: bytes) -> dict[str, str]:
    return {**jwk, "x": b64url_encode(raw)}


@pytest.mark.parametrize(
    ("jwk", "message"),
    [
        ([], "JSON object"),
        ({**RFC8037_JWK, "d": RFC8037_D}, "private key material (d)"),
        ({**ec_jwk(), "d": RFC8037_D}, "private key material (d)"),
        ({**RFC8037_JWK, "k": "AAAA"}, "private key material (k)"),
        ({**RFC8037_JWK, "alg": "ES256"}, "alg 'ES256'"),
        ({**RFC8037_JWK, "use": "enc"}, "use 'enc'"),
        ({**RFC8037_JWK, "key_ops": ["sign"]}, "key_ops"),
        ({"kty": "RSA", "n": "AQAB", "e": "AQAB"}, "unsupported JWK kty 'RSA'"),
        ({**ec_jwk(), "crv": "P-384"}, "unsupported JWK kty 'EC' with crv 'P-384'"),
        ({**RFC8037_JWK, "crv": "Ed448"}, "crv 'Ed448'"),
        ({**RFC8037_JWK, "crv": "X25519"}, "crv 'X25519'"),
        ({"crv": "Ed25519", "x": RFC8037_X}, "kty None"),
        ({"kty": "OKP", "crv": "Ed25519"}, "base64url strings"),
        ({**RFC8037_JWK, "x": 12}, "base64url strings"),
        ({**ec_jwk(), "y": None}, "base64url strings"),
        ({**RFC8037_JWK, "x": RFC8037_X + "="}, "without padding"),
        ({**RFC8037_JWK, "x": RFC8037_X.replace("_", "/")}, "without padding"),
        ({**RFC8037_JWK, "x": RFC8037_X[:-1] + "p"}, "trailing bits"),
        (with_x(RFC8037_JWK, bytes(31)), "32 bytes, not 31"),
        (with_x(RFC8037_JWK, bytes(33)), "32 bytes, not 33"),
        (with_x(ec_jwk(), bytes(31) + b"\x01"), "not a point on P-256"),
        ({**ec_jwk(), "y": b64url_encode(b"\xff" * 32)}, "not a point on P-256"),
    ],
)
def test_bad_jwks_are_refused_with_a_reason(jwk: Any, message: str) -> None:
    with pytest.raises(JwkInvalid, match="^.*" + message.replace("(", r"\(").replace(")", r"\)")):
        parse_public_jwk(jwk)


@pytest.mark.parametrize(
    "text", ["QUJD\n", "QU JD", "QUJD.", "QUJDRA==", "QUJDRA=", "QUJD+A", "QUJD/A", "QUJDR",
             "QUJDRB", "QUJDRE", "QUJDQUL", "QUJDQUJ", "QUJDé", "\uff31\uff35\uff2a\uff24"],
)
def test_b64url_decoding_is_strict(text: str) -> None:
    with pytest.raises(ValueError, match="base64url"):
        b64url_decode(text)


@pytest.mark.parametrize("size", range(8))
def test_b64url_round_trips(size: int) -> None:
    data = bytes(range(250, 256))[:size] + b"\xfb\xff"[: size % 3]
    assert b64url_decode(b64url_encode(data)) == data
    assert b64url_decode("QUJDRA") == b"ABCD" and b64url_decode("-_-_") == b"\xfb\xff\xbf"


def test_jwk_invalid_is_a_value_error() -> None:
    assert issubclass(JwkInvalid, ValueError)


_P = 2**255 - 19


@pytest.mark.parametrize(
    ("encoded", "message"),
    [
        (bytes(32), "small order"),  # y = 0: a point of order 4
        ((1).to_bytes(32, "little"), "small order"),  # the identity
        ((_P - 1).to_bytes(32, "little"), "small order"),  # y = -1: order 2
        (_P.to_bytes(32, "little"), "not canonical"),  # y = p: a second spelling of y = 0
        ((2).to_bytes(32, "little"), "off the curve"),  # y = 2 has no x on the curve
        ((1 | 1 << 255).to_bytes(32, "little"), "small order"),  # x = 0 with the sign bit
    ],
)
def test_unsafe_ed25519_points_are_refused(encoded: bytes, message: str) -> None:
    with pytest.raises(JwkInvalid, match=message):
        parse_public_jwk(with_x(RFC8037_JWK, encoded))


def test_openssl_alone_would_accept_forgeries_for_a_small_order_key() -> None:
    """Why small-order keys are refused: with one, signatures need no private key.

    For the key y = 0 (order 4), a signature (R, S = 0) with R in the same small subgroup
    verifies whenever R + [k]A = 0, which one of the four such R meets for every message.
    """
    public = ed25519.Ed25519PublicKey.from_public_bytes(bytes(32))
    small_order_r = [(1).to_bytes(32, "little"), bytes(32), bytes(31) + b"\x80",
                     (_P - 1).to_bytes(32, "little")]
    forged = 0
    for i in range(40):
        for r in small_order_r:
            try:
                public.verify(r + bytes(32), f"message {i}".encode())
            except Exception:
                continue
            forged += 1
            break
    assert forged >= 20


def test_parsed_keys_are_cached_by_their_canonical_jwk() -> None:
    clear_key_cache()
    first = parse_public_jwk(RFC8037_JWK)
    assert parse_public_jwk({"x": RFC8037_X, "crv": "Ed25519", "kty": "OKP", "kid": "k"}) is first
    clear_key_cache()
    assert parse_public_jwk(RFC8037_JWK) is not first


def test_private_members_are_refused_even_for_a_cached_key() -> None:
    parse_public_jwk(RFC8037_JWK)
    with pytest.raises(JwkInvalid, match="private"):
        parse_public_jwk({**RFC8037_JWK, "d": RFC8037_D})


def test_the_cache_is_safe_across_threads() -> None:
    jwks = [DeviceKey.generate("ES256" if i % 2 else "EdDSA").public.jwk for i in range(8)]
    results: list[str] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(50):
                results.extend(parse_public_jwk(jwk).jkt for jwk in jwks)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(results) == 4 * 50 * 8 and len(set(results)) == 8


@pytest.mark.parametrize("alg", ["ES256", "EdDSA"])
def test_signatures_of_the_wrong_length_are_refused(alg: str) -> None:
    device = DeviceKey.generate(alg)  # type: ignore[arg-type]
    signature = device.sign(b"m")
    for bad in (signature[:-1], signature + b"\x00", b""):
        with pytest.raises(InvalidSignature, match="64 bytes"):
            device.public.verify(bad, b"m")
    with pytest.raises(InvalidSignature, match="does not match"):
        device.public.verify(bytes(64), b"m")


def test_device_message_layout() -> None:
    assert device_message("c-1", "u_1", "d_1", "login") == b"ANFU-DEVICE-V1\nc-1\nu_1\nd_1\nlogin\n"
    assert device_message("挑战", "u", "d", "p") == "ANFU-DEVICE-V1\n挑战\nu\nd\np\n".encode()


@pytest.mark.parametrize("field", ["challenge", "user_id", "device_id", "purpose"])
def test_device_message_fields_may_not_hold_newlines(field: str) -> None:
    fields = {"challenge": "c", "user_id": "u", "device_id": "d", "purpose": "p", field: "a\nb"}
    with pytest.raises(ValueError, match=field):
        device_message(**fields)


@pytest.mark.parametrize("alg", ["ES256", "EdDSA"])
def test_device_challenge_signatures(alg: str) -> None:
    device = DeviceKey.generate(alg)  # type: ignore[arg-type]
    fields = {"challenge": "Zm9v", "user_id": "u_1", "device_id": "d_1", "purpose": "step-up"}
    signature = device.sign_device_challenge(**fields)
    assert "=" not in signature and len(b64url_decode(signature)) == 64
    device.public.verify(b64url_decode(signature), device_message(**fields))
    device.public.verify_device_challenge(signature, **fields)
    for changed in ({"purpose": "login"}, {"user_id": "u_2"}, {"device_id": "d_2"},
                    {"challenge": "YmFy"}):
        with pytest.raises(InvalidSignature):
            device.public.verify_device_challenge(signature, **{**fields, **changed})
    with pytest.raises(InvalidSignature):
        DeviceKey.generate(alg).public.verify_device_challenge(  # type: ignore[arg-type]
            signature, **fields
        )
    padded = base64.urlsafe_b64encode(b64url_decode(signature)).decode()
    with pytest.raises(InvalidSignature, match="malformed"):
        device.public.verify_device_challenge(padded, **fields)
