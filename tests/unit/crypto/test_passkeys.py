"""Passkey ceremonies through ``anfu.crypto.passkeys`` with a software authenticator."""

from __future__ import annotations

import copy
import json
import types
from typing import Any

import cbor2
import pytest

from anfu.crypto import (
    PasskeyInvalid,
    RegisteredPasskey,
    authentication_options,
    credential_id_of,
    registration_options,
    verify_authentication,
    verify_registration,
)
from tests.softauthn import EDDSA, ES256, AuthenticatorRefused, SoftAuthenticator, b64url, unb64url

RP_ID = "pay.example"
ORIGIN = "https://pay.example"
ORIGINS = [ORIGIN, "http://localhost:8000"]
CHALLENGE = bytes(range(32))
OTHER_CHALLENGE = bytes(range(1, 33))
USER_HANDLE = b"user-handle-0001"


def creation_options(challenge: bytes = CHALLENGE, exclude: tuple[bytes, ...] = ()
                     ) -> dict[str, Any]:
    return registration_options(
        rp_id=RP_ID, rp_name="anfu", user_handle=USER_HANDLE, user_name="+8613800000000",
        display_name="Li Lei", challenge=challenge, exclude_credential_ids=exclude)


def request_options(challenge: bytes = CHALLENGE, allow: tuple[bytes, ...] = ()
                    ) -> dict[str, Any]:
    return authentication_options(rp_id=RP_ID, challenge=challenge, allow_credential_ids=allow)


def register(device: SoftAuthenticator, **create_kwargs: Any) -> RegisteredPasskey:
    credential = device.create(creation_options(), ORIGIN, **create_kwargs)
    return verify_registration(credential, challenge=CHALLENGE, rp_id=RP_ID, origins=ORIGINS)


def assert_check(check: str, credential: Any, **kwargs: Any) -> PasskeyInvalid:
    """Run the matching verifier and insist on exactly ``check``."""
    params = {"challenge": CHALLENGE, "rp_id": RP_ID, "origins": ORIGINS, **kwargs}
    verify: Any = verify_authentication if "public_key" in params else verify_registration
    with pytest.raises(PasskeyInvalid) as caught:
        verify(credential, **params)
    assert caught.value.check == check, str(caught.value)
    assert str(caught.value)
    return caught.value


@pytest.fixture
def device() -> SoftAuthenticator:
    return SoftAuthenticator()


@pytest.fixture
def passkey(device: SoftAuthenticator) -> RegisteredPasskey:
    return register(device)


# -- options ------------------------------------------------------------------------------------


def test_creation_options_follow_our_policy() -> None:
    options = creation_options(exclude=(b"\x01\x02", b"\x03"))
    assert options["rp"] == {"id": RP_ID, "name": "anfu"}
    assert options["user"] == {"id": b64url(USER_HANDLE), "name": "+8613800000000",
                               "displayName": "Li Lei"}
    assert options["challenge"] == b64url(CHALLENGE)
    assert [param["alg"] for param in options["pubKeyCredParams"]] == [-7, -8, -257]
    assert options["authenticatorSelection"]["userVerification"] == "required"
    assert options["authenticatorSelection"]["residentKey"] == "preferred"
    assert options["attestation"] == "none"
    assert options["timeout"] == 120_000
    assert [item["id"] for item in options["excludeCredentials"]] == ["AQI", "Aw"]
    json.dumps(options)  # JSON-ready as returned


def test_request_options_require_user_verification() -> None:
    options = request_options(allow=(b"\xff\xfe",))
    assert options == {"challenge": b64url(CHALLENGE), "timeout": 120_000, "rpId": RP_ID,
                       "allowCredentials": [{"id": "__4", "type": "public-key"}],
                       "userVerification": "required"}


@pytest.mark.parametrize("challenge", [b"", b"short"])
def test_options_refuse_a_missing_or_weak_challenge(challenge: bytes) -> None:
    with pytest.raises(ValueError, match="challenge"):
        creation_options(challenge=challenge)
    with pytest.raises(ValueError, match="challenge"):
        request_options(challenge=challenge)


@pytest.mark.parametrize("handle", [b"", bytes(65)])
def test_creation_options_refuse_a_bad_user_handle(handle: bytes) -> None:
    with pytest.raises(ValueError, match="user_handle"):
        registration_options(rp_id=RP_ID, rp_name="anfu", user_handle=handle, user_name="u",
                             display_name="", challenge=CHALLENGE, exclude_credential_ids=[])


@pytest.mark.parametrize("origins", [ORIGIN, [], [ORIGIN + "/"]])
def test_verification_refuses_origins_that_could_never_match(
        device: SoftAuthenticator, origins: Any) -> None:
    credential = device.create(creation_options(), ORIGIN)
    with pytest.raises(ValueError, match="origin"):
        verify_registration(credential, challenge=CHALLENGE, rp_id=RP_ID, origins=origins)


# -- round trips --------------------------------------------------------------------------------


def test_registration_round_trip(device: SoftAuthenticator) -> None:
    credential = device.create(creation_options(), ORIGIN)
    passkey = verify_registration(credential, challenge=CHALLENGE, rp_id=RP_ID, origins=ORIGINS)
    assert passkey.credential_id == credential_id_of(credential)
    assert passkey.credential_id in device.credentials
    assert passkey.public_key == device.credentials[passkey.credential_id].cose_public_key()
    assert passkey.sign_count == 0
    assert passkey.aaguid == "00000000-0000-0000-0000-000000000000"
    assert passkey.user_verified is True
    assert passkey.backed_up is False
    assert passkey.transports == ("internal",)


def test_registration_reports_a_synced_passkey_and_its_model() -> None:
    device = SoftAuthenticator(aaguid=bytes.fromhex("ea9b8d664d011d213ce4b6b48cb575d4"),
                               backed_up=True)
    passkey = register(device)
    assert passkey.backed_up is True
    assert passkey.aaguid == "ea9b8d66-4d01-1d21-3ce4-b6b48cb575d4"


def test_registration_accepts_any_mapping(device: SoftAuthenticator) -> None:
    credential = device.create(creation_options(), ORIGIN)
    frozen = types.MappingProxyType({**credential,
                                     "response": types.MappingProxyType(credential["response"])})
    passkey = verify_registration(frozen, challenge=CHALLENGE, rp_id=RP_ID, origins=ORIGINS)
    assert passkey.credential_id == unb64url(credential["rawId"])


@pytest.mark.parametrize("algorithm", [ES256, EDDSA])
def test_authentication_round_trip(algorithm: int) -> None:
    device = SoftAuthenticator()
    passkey = register(device, algorithm=algorithm)
    count = passkey.sign_count
    for _ in range(3):
        assertion = device.get(request_options(allow=(passkey.credential_id,)), ORIGIN)
        assert credential_id_of(assertion) == passkey.credential_id
        verified = verify_authentication(assertion, challenge=CHALLENGE, rp_id=RP_ID,
                                         origins=ORIGINS, public_key=passkey.public_key,
                                         sign_count=count)
        assert verified.credential_id == passkey.credential_id
        assert verified.new_sign_count == count + 1
        assert verified.user_verified is True
        assert verified.backed_up is False
        assert verified.user_handle == USER_HANDLE
        count = verified.new_sign_count


def test_discoverable_sign_in_on_localhost_over_http() -> None:
    device = SoftAuthenticator()
    options = registration_options(
        rp_id="localhost", rp_name="anfu", user_handle=USER_HANDLE, user_name="u",
        display_name="u", challenge=CHALLENGE, exclude_credential_ids=[])
    origin = "http://localhost:8000"  # the port is part of the origin; no trailing slash
    passkey = verify_registration(device.create(options, origin), challenge=CHALLENGE,
                                  rp_id="localhost", origins=ORIGINS)
    request = authentication_options(rp_id="localhost", challenge=OTHER_CHALLENGE,
                                     allow_credential_ids=[])
    verified = verify_authentication(device.get(request, origin), challenge=OTHER_CHALLENGE,
                                     rp_id="localhost", origins=ORIGINS,
                                     public_key=passkey.public_key, sign_count=0)
    assert verified.user_handle == USER_HANDLE


def test_a_counter_that_stays_zero_is_accepted() -> None:
    device = SoftAuthenticator(counts_signatures=False)  # as synced passkeys behave
    passkey = register(device)
    for _ in range(2):
        verified = verify_authentication(device.get(request_options(), ORIGIN),
                                         challenge=CHALLENGE, rp_id=RP_ID, origins=ORIGINS,
                                         public_key=passkey.public_key, sign_count=0)
        assert verified.new_sign_count == 0


def test_the_authenticator_refuses_to_register_twice(
        device: SoftAuthenticator, passkey: RegisteredPasskey) -> None:
    with pytest.raises(AuthenticatorRefused, match="InvalidStateError"):
        device.create(creation_options(exclude=(passkey.credential_id,)), ORIGIN)


# -- each failed check --------------------------------------------------------------------------


def test_registration_wrong_challenge(device: SoftAuthenticator) -> None:
    credential = device.create(creation_options(), ORIGIN, challenge=OTHER_CHALLENGE)
    assert_check("challenge", credential)


def test_registration_wrong_origin(device: SoftAuthenticator) -> None:
    assert_check("origin", device.create(creation_options(), "https://pay.example.evil"))


def test_registration_wrong_rp_id(device: SoftAuthenticator) -> None:
    assert_check("rp_id", device.create(creation_options(), ORIGIN, rp_id="evil.example"))


def test_registration_without_user_verification(device: SoftAuthenticator) -> None:
    assert_check("user_verification",
                 device.create(creation_options(), ORIGIN, user_verified=False))


def test_registration_inside_a_foreign_frame(device: SoftAuthenticator) -> None:
    credential = device.create(creation_options(), ORIGIN)
    client_data = json.loads(unb64url(credential["response"]["clientDataJSON"]))
    client_data["crossOrigin"] = True
    credential["response"]["clientDataJSON"] = b64url(json.dumps(client_data).encode())
    assert_check("origin", credential)


def test_registration_with_an_unsupported_key(device: SoftAuthenticator) -> None:
    credential = device.create(creation_options(), ORIGIN)
    attestation = cbor2.loads(unb64url(credential["response"]["attestationObject"]))
    auth_data = attestation["authData"]
    cose = cbor2.loads(auth_data[55 + 32:])  # rpIdHash, flags, count, aaguid, length, id
    cose[3] = -35  # ES384: a real algorithm we do not accept
    attestation["authData"] = auth_data[:55 + 32] + cbor2.dumps(cose, canonical=True)
    credential["response"]["attestationObject"] = b64url(cbor2.dumps(attestation))
    assert_check("unsupported", credential)


def auth_kwargs(passkey: RegisteredPasskey, sign_count: int | None = None) -> dict[str, Any]:
    count = passkey.sign_count if sign_count is None else sign_count
    return {"public_key": passkey.public_key, "sign_count": count}


def test_assertion_wrong_challenge(device: SoftAuthenticator, passkey: RegisteredPasskey
                                   ) -> None:
    assertion = device.get(request_options(), ORIGIN, challenge=OTHER_CHALLENGE)
    assert_check("challenge", assertion, **auth_kwargs(passkey))


def test_assertion_wrong_origin(device: SoftAuthenticator, passkey: RegisteredPasskey) -> None:
    assertion = device.get(request_options(), "https://localhost:8000")
    assert_check("origin", assertion, **auth_kwargs(passkey))


def test_assertion_wrong_rp_id(device: SoftAuthenticator, passkey: RegisteredPasskey) -> None:
    assertion = device.get(request_options(), ORIGIN, rp_id="example")
    assert_check("rp_id", assertion, **auth_kwargs(passkey))


def test_assertion_without_user_verification(device: SoftAuthenticator,
                                             passkey: RegisteredPasskey) -> None:
    assertion = device.get(request_options(), ORIGIN, user_verified=False)
    assert_check("user_verification", assertion, **auth_kwargs(passkey))


def test_assertion_with_an_altered_signature(device: SoftAuthenticator,
                                             passkey: RegisteredPasskey) -> None:
    assertion = device.get(request_options(), ORIGIN)
    signature = bytearray(unb64url(assertion["response"]["signature"]))
    signature[-1] ^= 0x01
    assertion["response"]["signature"] = b64url(bytes(signature))
    assert_check("signature", assertion, **auth_kwargs(passkey))


def test_assertion_signed_by_another_key(device: SoftAuthenticator,
                                         passkey: RegisteredPasskey) -> None:
    other = register(SoftAuthenticator())
    assertion = device.get(request_options(), ORIGIN)
    assert_check("signature", assertion, public_key=other.public_key, sign_count=0)


def test_assertion_with_an_altered_authenticator_data(device: SoftAuthenticator,
                                                      passkey: RegisteredPasskey) -> None:
    assertion = device.get(request_options(), ORIGIN)
    auth_data = bytearray(unb64url(assertion["response"]["authenticatorData"]))
    auth_data[-1] += 5  # a forged counter the signature does not cover
    assertion["response"]["authenticatorData"] = b64url(bytes(auth_data))
    assert_check("signature", assertion, **auth_kwargs(passkey))


@pytest.mark.parametrize(("stored", "sent"), [(7, 7), (7, 3), (7, 0), (0, 0)])
def test_assertion_whose_counter_does_not_move_forward(
        device: SoftAuthenticator, passkey: RegisteredPasskey, stored: int, sent: int) -> None:
    assertion = device.get(request_options(), ORIGIN, sign_count=sent)
    if stored == sent == 0:
        verify_authentication(assertion, challenge=CHALLENGE, rp_id=RP_ID, origins=ORIGINS,
                              **auth_kwargs(passkey, stored))
        return
    error = assert_check("sign_count", assertion, **auth_kwargs(passkey, stored))
    assert "cloned" in str(error)


def test_a_forged_assertion_is_a_signature_failure_not_a_clone_signal(
        device: SoftAuthenticator, passkey: RegisteredPasskey) -> None:
    assertion = device.get(request_options(), ORIGIN, sign_count=1)
    assertion["response"]["signature"] = b64url(b"\x30\x06\x02\x01\x01\x02\x01\x01")
    assert_check("signature", assertion, **auth_kwargs(passkey, 9))


def test_a_negative_stored_counter_is_a_programming_error(
        device: SoftAuthenticator, passkey: RegisteredPasskey) -> None:
    with pytest.raises(ValueError, match="sign count"):
        verify_authentication(device.get(request_options(), ORIGIN), challenge=CHALLENGE,
                              rp_id=RP_ID, origins=ORIGINS, public_key=passkey.public_key,
                              sign_count=-1)


def test_assertion_against_a_stored_key_of_unknown_type(
        device: SoftAuthenticator, passkey: RegisteredPasskey) -> None:
    unknown = cbor2.dumps({1: 99, 3: -7})
    assert_check("unsupported", device.get(request_options(), ORIGIN),
                 public_key=unknown, sign_count=0)


# -- malformed input ----------------------------------------------------------------------------


def _set(path: str, value: Any) -> Any:
    def mutate(credential: dict[str, Any]) -> Any:
        *parents, last = path.split(".")
        target = credential
        for key in parents:
            target = target[key]
        if value is KeyError:
            del target[last]
        else:
            target[last] = value
        return credential
    return mutate


MALFORMED_REGISTRATIONS = {
    "not an object": lambda credential: [credential],
    "a JSON string": json.dumps,
    "no response": _set("response", KeyError),
    "response not an object": _set("response", "x"),
    "no clientDataJSON": _set("response.clientDataJSON", KeyError),
    "clientDataJSON not JSON": _set("response.clientDataJSON", b64url(b"{not json")),
    "clientDataJSON a list": _set("response.clientDataJSON", b64url(b"[]")),
    "attestationObject garbage": _set("response.attestationObject", b64url(b"\xff\x00junk")),
    "attestationObject not base64url": _set("response.attestationObject", "***"),
    "id differs from rawId": _set("id", b64url(b"another")),
    "wrong type": _set("type", "password"),
    "rawId a number": _set("rawId", 12),
}


@pytest.mark.parametrize("mutate", MALFORMED_REGISTRATIONS.values(),
                         ids=MALFORMED_REGISTRATIONS.keys())
def test_malformed_registration(device: SoftAuthenticator, mutate: Any) -> None:
    assert_check("malformed", mutate(device.create(creation_options(), ORIGIN)))


MALFORMED_ASSERTIONS = {
    "no signature": _set("response.signature", KeyError),
    "no authenticatorData": _set("response.authenticatorData", KeyError),
    "short authenticatorData": _set("response.authenticatorData", b64url(b"\x00" * 10)),
    "userHandle a number": _set("response.userHandle", 5),
    "userHandle not base64url": _set("response.userHandle", "a+b/"),
    "assertion type for registration": _set("response.clientDataJSON", b64url(
        b'{"type":"webauthn.create","challenge":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",'
        b'"origin":"https://pay.example"}')),
}


@pytest.mark.parametrize("mutate", MALFORMED_ASSERTIONS.values(),
                         ids=MALFORMED_ASSERTIONS.keys())
def test_malformed_assertion(device: SoftAuthenticator, passkey: RegisteredPasskey,
                             mutate: Any) -> None:
    assertion = mutate(device.get(request_options(), ORIGIN))
    assert_check("malformed", assertion, **auth_kwargs(passkey))


def test_an_assertion_is_not_a_registration(device: SoftAuthenticator,
                                            passkey: RegisteredPasskey) -> None:
    assert_check("malformed", device.get(request_options(), ORIGIN))


def test_no_library_exception_escapes(device: SoftAuthenticator,
                                      passkey: RegisteredPasskey) -> None:
    """Truncate every binary field at every length: only PasskeyInvalid may come out."""
    registration = device.create(creation_options(), ORIGIN)
    assertion = device.get(request_options(), ORIGIN)
    cases = [(registration, "clientDataJSON"), (registration, "attestationObject"),
             (assertion, "clientDataJSON"), (assertion, "authenticatorData"),
             (assertion, "signature")]
    for original, field in cases:
        raw = unb64url(original["response"][field])
        for cut in range(0, len(raw), 3):
            credential = copy.deepcopy(original)
            credential["response"][field] = b64url(raw[:cut])
            kwargs = auth_kwargs(passkey, 0) if original is assertion else {}
            with pytest.raises(PasskeyInvalid):
                (verify_authentication if kwargs else verify_registration)(
                    credential, challenge=CHALLENGE, rp_id=RP_ID, origins=ORIGINS, **kwargs)


# -- credential_id_of ---------------------------------------------------------------------------


def test_credential_id_of_reads_raw_id_or_id() -> None:
    assert credential_id_of({"rawId": "AQID", "id": "AQID"}) == b"\x01\x02\x03"
    assert credential_id_of({"id": "AQID"}) == b"\x01\x02\x03"


@pytest.mark.parametrize("credential", [
    {}, {"rawId": ""}, {"rawId": "AQ=="}, {"rawId": "A+/"}, {"rawId": 5},
    {"rawId": "AQID", "id": "AQIE"}, {"rawId": "A"}, {"rawId": "A" * 1400}, ["AQID"],
])
def test_credential_id_of_refuses_malformed_ids(credential: Any) -> None:
    with pytest.raises(PasskeyInvalid) as caught:
        credential_id_of(credential)
    assert caught.value.check == "malformed"
