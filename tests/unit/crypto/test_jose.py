"""DPoP proofs (RFC 9449): the RFC's examples, every refusal, htu normalisation, device keys."""

from __future__ import annotations

import hashlib
import re
import time
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from anfu.crypto import (
    DeviceKey,
    DpopInvalid,
    KeyFormatError,
    verify_dpop,
)
from anfu.crypto.jose import (
    JoseAlg,
    b64url_decode,
    b64url_encode,
    clear_key_cache,
    normalise_htu,
)
from anfu.errors import AuthenticationFailed


def unwrap(text: str) -> str:
    """Undo RFC 8792 '\\' line wrapping, as the RFC prints its examples."""
    return re.sub(r"\\\n\s*", "", text.strip())


# RFC 9449 examples, transcribed from the RFC text. Figure 5 (§5) is the encoded form of
# the proof decoded in Figure 4 (§4.2); Figure 7 is the refresh request's proof; Figure 13
# (§7.1) carries ath for the access token of Figure 6. §6.1 gives the key's thumbprint.
RFC9449_FIGURE_5 = unwrap(r"""
eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6Ik\
 VDIiwieCI6Imw4dEZyaHgtMzR0VjNoUklDUkRZOXpDa0RscEJoRjQyVVFVZldWQVdCR\
 nMiLCJ5IjoiOVZFNGpmX09rX282NHpiVFRsY3VOSmFqSG10NnY5VERWclUwQ2R2R1JE\
 QSIsImNydiI6IlAtMjU2In19.eyJqdGkiOiItQndDM0VTYzZhY2MybFRjIiwiaHRtIj\
 oiUE9TVCIsImh0dSI6Imh0dHBzOi8vc2VydmVyLmV4YW1wbGUuY29tL3Rva2VuIiwia\
 WF0IjoxNTYyMjYyNjE2fQ.2-GxA6T8lP4vfrg8v-FdWP0A0zdrj8igiMLvqRMUvwnQg\
 4PtFLbdLXiOSsX0x7NVY-FNyJK70nfbV37xRZT3Lg
""")
RFC9449_FIGURE_7 = unwrap(r"""
eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6Ik\
 VDIiwieCI6Imw4dEZyaHgtMzR0VjNoUklDUkRZOXpDa0RscEJoRjQyVVFVZldWQVdCR\
 nMiLCJ5IjoiOVZFNGpmX09rX282NHpiVFRsY3VOSmFqSG10NnY5VERWclUwQ2R2R1JE\
 QSIsImNydiI6IlAtMjU2In19.eyJqdGkiOiItQndDM0VTYzZhY2MybFRjIiwiaHRtIj\
 oiUE9TVCIsImh0dSI6Imh0dHBzOi8vc2VydmVyLmV4YW1wbGUuY29tL3Rva2VuIiwia\
 WF0IjoxNTYyMjY1Mjk2fQ.pAqut2IRDm_De6PR93SYmGBPXpwrAk90e8cP2hjiaG5Qs\
 GSuKDYW7_X620BxqhvYC8ynrrvZLTk41mSRroapUA
""")
RFC9449_FIGURE_13 = unwrap(r"""
eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6Ik\
 VDIiwieCI6Imw4dEZyaHgtMzR0VjNoUklDUkRZOXpDa0RscEJoRjQyVVFVZldWQVdCR\
 nMiLCJ5IjoiOVZFNGpmX09rX282NHpiVFRsY3VOSmFqSG10NnY5VERWclUwQ2R2R1JE\
 QSIsImNydiI6IlAtMjU2In19.eyJqdGkiOiJlMWozVl9iS2ljOC1MQUVCIiwiaHRtIj\
 oiR0VUIiwiaHR1IjoiaHR0cHM6Ly9yZXNvdXJjZS5leGFtcGxlLm9yZy9wcm90ZWN0Z\
 WRyZXNvdXJjZSIsImlhdCI6MTU2MjI2MjYxOCwiYXRoIjoiZlVIeU8ycjJaM0RaNTNF\
 c05yV0JiMHhXWG9hTnk1OUlpS0NBcWtzbVFFbyJ9.2oW9RP35yRqzhrtNP86L-Ey71E\
 OptxRimPPToA1plemAgR6pxHF8y6-yqyVnmcw6Fy1dqd-jfxSYoMxhAJpLjA
""")
RFC9449_ACCESS_TOKEN = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"
RFC9449_JKT = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"
TOKEN_URL = "https://server.example.com/token"

NOW = 1_750_000_000.0
URL = "https://api.anfu.example/v1/trades/tr_1/pay"
TOKEN = "v1.eyJzdWIiOiJ1XzEifQ.mac"
ALGS: list[JoseAlg] = ["ES256", "EdDSA"]
DROP = object()


@pytest.fixture(scope="module", params=ALGS)
def device(request: pytest.FixtureRequest) -> DeviceKey:
    return DeviceKey.generate(request.param)


def forge(key: DeviceKey, header: dict[str, Any] | None = None,
          claims: dict[str, Any] | None = None) -> str:
    """A proof signed by ``key`` whose header and claims differ from a good one as given."""
    good_header = {"typ": "dpop+jwt", "alg": key.alg, "jwk": key.public.jwk}
    good_claims = {"jti": "j-1", "htm": "POST", "htu": URL, "iat": int(NOW),
                   "ath": b64url_encode(hashlib.sha256(TOKEN.encode()).digest())}
    parts = []
    for good, changes in ((good_header, header), (good_claims, claims)):
        merged = {**good, **(changes or {})}
        parts.append(b64url_encode(orjson.dumps(
            {name: value for name, value in merged.items() if value is not DROP})))
    signing_input = ".".join(parts)
    return f"{signing_input}.{b64url_encode(key.sign(signing_input.encode()))}"


def check(proof: str, **overrides: Any) -> str:
    """Verify with sensible request values; return the failed check's name, or 'ok'."""
    arguments: dict[str, Any] = {"method": "POST", "url": URL, "now": NOW,
                                 "access_token": TOKEN, **overrides}
    try:
        verify_dpop(proof, **arguments)
    except DpopInvalid as exc:
        return exc.check
    return "ok"


@pytest.mark.parametrize(("proof", "iat"), [(RFC9449_FIGURE_5, 1562262616),
                                            (RFC9449_FIGURE_7, 1562265296)])
def test_rfc9449_token_request_proofs(proof: str, iat: int) -> None:
    result = verify_dpop(proof, method="POST", url=TOKEN_URL, now=iat)
    assert (result.jti, result.htm, result.htu, result.iat) == (
        "-BwC3ESc6acc2lTc", "POST", TOKEN_URL, iat)
    assert result.jkt == result.key.jkt == RFC9449_JKT
    assert result.key.alg == "ES256"
    assert check(proof, url=TOKEN_URL, now=iat + 61, access_token=None) == "iat"
    assert check(proof, url=TOKEN_URL, now=iat, method="GET", access_token=None) == "htm"


def test_rfc9449_resource_request_proof_with_ath() -> None:
    url = "https://resource.example.org/protectedresource"
    result = verify_dpop(RFC9449_FIGURE_13, method="GET", url=url, now=1562262618,
                         access_token=RFC9449_ACCESS_TOKEN, expected_jkt=RFC9449_JKT)
    assert result.jti == "e1j3V_bKic8-LAEB"
    common = {"method": "GET", "url": url, "now": 1562262618}
    assert check(RFC9449_FIGURE_13, **common, access_token=TOKEN) == "ath"
    assert check(RFC9449_FIGURE_13, **common, access_token=RFC9449_ACCESS_TOKEN,
                 expected_jkt=DeviceKey.generate("ES256").public.jkt) == "key_mismatch"
    assert check(RFC9449_FIGURE_5, url=TOKEN_URL, now=1562262616,
                 access_token=RFC9449_ACCESS_TOKEN) == "ath"


def test_proofs_made_by_device_keys_verify(device: DeviceKey) -> None:
    proof = device.dpop_proof("POST", URL + "?amount=1#top", access_token=TOKEN, now=NOW)
    result = verify_dpop(proof, method="POST", url=URL, now=NOW, access_token=TOKEN,
                         expected_jkt=device.public.jkt)
    assert (result.htm, result.htu, result.iat, result.key) == ("POST", URL, int(NOW),
                                                                 device.public)
    assert result.jkt == device.public.jkt
    assert len(result.jti) >= 22  # 128 random bits in base64url
    header = orjson.loads(b64url_decode(proof.split(".")[0]))
    assert header == {"typ": "dpop+jwt", "alg": device.alg, "jwk": device.public.jwk}
    claims = orjson.loads(b64url_decode(proof.split(".")[1]))
    assert set(claims) == {"jti", "htm", "htu", "iat", "ath"} and type(claims["iat"]) is int
    without_token = device.dpop_proof("GET", URL, now=NOW, jti="fixed")
    assert "ath" not in orjson.loads(b64url_decode(without_token.split(".")[1]))
    assert verify_dpop(without_token, method="GET", url=URL, now=NOW).jti == "fixed"
    jtis = {verify_dpop(device.dpop_proof("GET", URL), method="GET", url=URL,
                        now=time.time()).jti for _ in range(20)}
    assert len(jtis) == 20


def test_failures_are_authentication_errors_naming_the_check(device: DeviceKey) -> None:
    with pytest.raises(DpopInvalid) as caught:
        verify_dpop(forge(device, {"typ": "JWT"}), method="POST", url=URL, now=NOW)
    assert isinstance(caught.value, AuthenticationFailed)
    assert caught.value.check == "typ" and caught.value.extra == {"check": "typ"}
    assert caught.value.code == "invalid_dpop_proof"
    assert "dpop+jwt" in caught.value.detail


def test_malformed_proofs(device: DeviceKey) -> None:
    good = forge(device)
    header, payload, signature = good.split(".")
    not_json = b64url_encode(b"{nope")
    signed_garbage = f"{header}.{not_json}"
    cases: list[Any] = [
        good.encode(), good + "A" * 8192, good.replace("e", "é", 1), f"{header}.{payload}",
        f"{good}.{signature}", f"{header}..{signature}", f"{header}.{payload}.",
        f"{header}=.{payload}.{signature}", f"{not_json}.{payload}.{signature}",
        f"{b64url_encode(b'[1]')}.{payload}.{signature}",
        f"{signed_garbage}.{b64url_encode(device.sign(signed_garbage.encode()))}",
        forge(device, {"crit": ["exp"]}), f"{header}.{payload}.{signature[:-1]}+",
    ]
    for proof in cases:
        assert check(proof) == "malformed", proof


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ({"typ": DROP}, "typ"), ({"typ": "JWT"}, "typ"), ({"typ": "application/dpop+jwt"}, "typ"),
        ({"alg": "none"}, "alg"), ({"alg": "HS256"}, "alg"), ({"alg": "RS256"}, "alg"),
        ({"alg": DROP}, "alg"), ({"jwk": DROP}, "jwk"), ({"jwk": "key"}, "jwk"),
        ({"jwk": {"kty": "oct", "k": "c2VjcmV0"}}, "jwk"),
    ],
)
def test_header_checks(device: DeviceKey, header: dict[str, Any], expected: str) -> None:
    assert check(forge(device, header)) == expected


def test_private_jwk_in_header_is_refused(device: DeviceKey) -> None:
    assert check(forge(device, {"jwk": {**device.public.jwk, "d": "AAAA"}})) == "jwk"


def test_alg_must_match_the_jwk(device: DeviceKey) -> None:
    other_alg = "EdDSA" if device.alg == "ES256" else "ES256"
    assert check(forge(device, {"alg": other_alg})) == "alg"


def test_signature_checks(device: DeviceKey) -> None:
    good = forge(device)
    header, payload, signature = good.split(".")
    raw = b64url_decode(signature)
    other = DeviceKey.generate(device.alg)
    other_payload = forge(device, claims={"htm": "GET"}).split(".")[1]
    cases = [
        f"{header}.{payload}.{b64url_encode(bytes([raw[0] ^ 1]) + raw[1:])}",
        f"{header}.{payload}.{b64url_encode(raw[:-1])}",
        f"{header}.{payload}.{b64url_encode(other.sign(f'{header}.{payload}'.encode()))}",
        f"{header}.{other_payload}.{signature}",
        forge(device, {"jwk": other.public.jwk}),
    ]
    for proof in cases:
        assert check(proof) == "signature"


@pytest.mark.parametrize(
    ("claims", "expected"),
    [
        ({"jti": DROP}, "jti"), ({"jti": ""}, "jti"), ({"jti": "x" * 257}, "jti"),
        ({"jti": 7}, "jti"), ({"jti": "x" * 256}, "ok"),
        ({"htm": "GET"}, "htm"), ({"htm": "post"}, "htm"), ({"htm": DROP}, "htm"),
        ({"htu": "https://api.anfu.example/v1/trades/tr_2/pay"}, "htu"),
        ({"htu": "https://evil.example/v1/trades/tr_1/pay"}, "htu"), ({"htu": DROP}, "htu"),
        ({"htu": ["https://api.anfu.example/v1/trades/tr_1/pay"]}, "htu"),
        ({"iat": int(NOW) - 61}, "iat"), ({"iat": int(NOW) - 60}, "ok"),
        ({"iat": int(NOW) + 6}, "iat"), ({"iat": int(NOW) + 5}, "ok"),
        ({"iat": NOW - 0.5}, "ok"), ({"iat": str(int(NOW))}, "iat"), ({"iat": True}, "iat"),
        ({"iat": DROP}, "iat"), ({"iat": None}, "iat"),
        ({"ath": DROP}, "ath"), ({"ath": b64url_encode(b"\0" * 32)}, "ath"), ({"ath": 1}, "ath"),
        ({"ath": "é"}, "ath"),
    ],
)
def test_claim_checks(device: DeviceKey, claims: dict[str, Any], expected: str) -> None:
    assert check(forge(device, claims=claims)) == expected


def test_window_and_token_are_the_callers(device: DeviceKey) -> None:
    old = forge(device, claims={"iat": int(NOW) - 200})
    assert check(old) == "iat"
    assert check(old, max_age_s=300) == "ok"
    assert check(forge(device, claims={"iat": int(NOW) + 20}), max_skew_s=30) == "ok"
    assert check(forge(device, claims={"ath": DROP}), access_token=None) == "ok"
    assert check(forge(device), access_token="another-token") == "ath"
    assert check(forge(device), access_token="tökén") == "ath"


def test_key_binding(device: DeviceKey) -> None:
    assert check(forge(device), expected_jkt=device.public.jkt) == "ok"
    other = DeviceKey.generate(device.alg).public.jkt
    assert check(forge(device), expected_jkt=other) == "key_mismatch"


def test_the_first_failed_check_is_reported(device: DeviceKey) -> None:
    assert check(forge(device, {"typ": "JWT", "alg": "none"})) == "typ"
    bad_signature = forge(device, claims={"htm": "GET"})[:-4] + "AAAA"
    assert check(bad_signature) == "signature"
    assert check(forge(device, claims={"jti": "", "htm": "GET"})) == "jti"
    assert check(forge(device, claims={"htu": "https://x.example/", "iat": 0})) == "htu"
    assert check(forge(device, claims={"iat": 0, "ath": DROP})) == "iat"
    assert check(forge(device, claims={"ath": DROP}),
                 expected_jkt=DeviceKey.generate("ES256").public.jkt) == "ath"


def test_long_headers_are_checked_without_the_cache(device: DeviceKey) -> None:
    jwk = {**device.public.jwk, "kid": "k" * 2000}
    assert check(forge(device, {"jwk": jwk})) == "ok"
    assert check(forge(device, {"jwk": jwk, "typ": "JWT"})) == "typ"
    assert check(forge(device, {"jwk": {**jwk, "d": "AAAA"}})) == "jwk"


def test_cached_headers_still_need_a_valid_signature(device: DeviceKey) -> None:
    clear_key_cache()
    good = forge(device)
    assert check(good) == "ok"
    assert check(good[:-4] + "AAAA") == "signature"
    assert check(forge(device, {"typ": "JWT"})) == "typ"
    assert check(forge(device, {"typ": "JWT"})) == "typ"  # failures are not cached


def test_errors_quote_sent_values_briefly(device: DeviceKey) -> None:
    with pytest.raises(DpopInvalid) as caught:
        verify_dpop(forge(device, claims={"htu": "https://x.example/\n" + "a" * 5000}),
                    method="POST", url=URL, now=NOW)
    assert caught.value.check == "htu"
    assert len(caught.value.detail) < 200 and "\n" not in caught.value.detail


@pytest.mark.parametrize("url", ["/v1/pay", "https://evil@api.anfu.example/v1/pay",
                                 "https://api.anfu.example:99999/v1/pay", "https:///v1/pay"])
def test_a_bad_request_url_fails_the_htu_check(device: DeviceKey, url: str) -> None:
    """The Host header is the sender's: a bad one is refused, never an internal error."""
    with pytest.raises(DpopInvalid, match="not an absolute http") as caught:
        verify_dpop(forge(device, claims={"htu": url}), method="POST", url=url, now=NOW)
    assert caught.value.check == "htu"
    assert check(forge(device, {"typ": "JWT"}), url=url) == "typ"  # still in its turn


@pytest.mark.parametrize(
    ("claimed", "actual"),
    [
        ("https://API.Anfu.Example/v1/x", "https://api.anfu.example/v1/x"),
        ("HTTPS://api.anfu.example/v1/x", "https://api.anfu.example/v1/x"),
        ("https://api.anfu.example:443/v1/x", "https://api.anfu.example/v1/x"),
        ("http://api.anfu.example:80/v1/x", "http://api.anfu.example/v1/x"),
        ("https://api.anfu.example:8443/v1/x", "https://api.anfu.example:8443/v1/x"),
        ("https://api.anfu.example/v1/x?a=1#frag", "https://api.anfu.example/v1/x?b=2"),
        ("https://api.anfu.example", "https://api.anfu.example/"),
        ("https://api.anfu.example/%7Euser/%41", "https://api.anfu.example/~user/A"),
        ("https://api.anfu.example/a%2fb", "https://api.anfu.example/a%2Fb"),
        ("https://[::1]:8443/v1/x", "https://[::1]:8443/v1/x"),
    ],
)
def test_htu_matches_after_normalisation(device: DeviceKey, claimed: str, actual: str) -> None:
    assert normalise_htu(claimed) == normalise_htu(actual) is not None
    assert check(forge(device, claims={"htu": claimed}), url=actual) == "ok"


@pytest.mark.parametrize(
    ("claimed", "actual"),
    [
        ("https://api.anfu.example:8443/v1/x", "https://api.anfu.example/v1/x"),
        ("https://api.anfu.example:443/v1/x", "http://api.anfu.example:443/v1/x"),
        ("http://api.anfu.example/v1/x", "https://api.anfu.example/v1/x"),
        ("https://api.anfu.example/V1/x", "https://api.anfu.example/v1/x"),
        ("https://api.anfu.example/v1/x/", "https://api.anfu.example/v1/x"),
        ("https://api.anfu.example/a%2Fb", "https://api.anfu.example/a/b"),
        ("https://api.anfu.example.evil/v1/x", "https://api.anfu.example/v1/x"),
        ("https://user@api.anfu.example/v1/x", "https://api.anfu.example/v1/x"),
        ("ftp://api.anfu.example/v1/x", "https://api.anfu.example/v1/x"),
        ("https://api.anfu.example:99999/v1/x", "https://api.anfu.example/v1/x"),
        ("https://api.anfu.ex\tample/v1/x", "https://api.anfu.example/v1/x"),
        ("/v1/x", "https://api.anfu.example/v1/x"),
        ("", "https://api.anfu.example/v1/x"),
    ],
)
def test_htu_mismatches(device: DeviceKey, claimed: str, actual: str) -> None:
    assert normalise_htu(claimed) != normalise_htu(actual)
    assert check(forge(device, claims={"htu": claimed}), url=actual) == "htu"


def test_device_key_generation_and_pkcs8_round_trip(device: DeviceKey) -> None:
    der = device.to_pkcs8_der()
    again = DeviceKey.from_pkcs8_der(der)
    assert again.alg == device.alg and again.public == device.public
    proof = again.dpop_proof("POST", URL, now=NOW)
    assert verify_dpop(proof, method="POST", url=URL, now=NOW).jkt == device.public.jkt
    with pytest.raises(ValueError, match="unknown device key alg"):
        DeviceKey.generate("RS256")  # type: ignore[arg-type]


def test_device_key_repr_shows_no_secret(device: DeviceKey) -> None:
    text = repr(device)
    assert text == f"DeviceKey(alg={device.alg!r}, jkt={device.public.jkt!r})"
    der = device.to_pkcs8_der()
    for secret in (der.hex(), b64url_encode(der), b64url_encode(der[-32:]), der[-32:].hex()):
        assert secret not in text
    assert not hasattr(device, "__dict__")


def pkcs8(key: Any) -> bytes:
    return bytes(key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))


@pytest.mark.parametrize(
    "der",
    [
        b"", b"\x30\x03\x02\x01\x00", pkcs8(ec.generate_private_key(ec.SECP384R1())),
        pkcs8(rsa.generate_private_key(65537, 2048)),
    ],
    ids=["empty", "garbage", "p384", "rsa"],
)
def test_other_keys_are_not_device_keys(der: bytes) -> None:
    with pytest.raises(KeyFormatError):
        DeviceKey.from_pkcs8_der(der)
