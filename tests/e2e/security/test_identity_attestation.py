"""Attack tests of device binding (issue 16 item 7): a software key declared
``key_storage: "hardware"`` reached level 3. Now only a verified Android Key Attestation
makes a key hardware-bound; the test Keystore's root is the platform's accepted root."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest

from anfu.crypto.jose import DeviceKey
from tests.e2e.identity.wire import (
    Json,
    Phone,
    bearer,
    device_body,
    login_on_device,
    login_with_sms,
    problem,
    sign_up,
    start_identity_platform,
)
from tests.softattest import SOFTWARE, STRONGBOX, SoftKeystore
from tests.support import RunningPlatform


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    running = start_identity_platform(tmp_path_factory.mktemp("identity_attestation"))
    yield running
    running.stop()


def fresh_phone(platform: RunningPlatform) -> Phone:
    number, _ = sign_up(platform)
    return login_with_sms(platform, number)


def register(phone: Phone, key: DeviceKey, attestation: Json | None) -> Any:
    body = device_body(key)  # claims key_storage "hardware"
    if attestation is not None:
        body["attestation"] = attestation
    headers = {**bearer(phone.token),
               "DPoP": key.dpop_proof("POST", phone.url("/v1/devices"))}
    return phone.call("POST", "/v1/devices", body, headers=headers)


def level_of_login(platform: RunningPlatform, phone: Phone, key: DeviceKey,
                   device_id: str) -> tuple[list[str], int]:
    again = login_on_device(platform, phone.number, phone.user_id, key, device_id)
    return again.tokens["amr"], again.tokens["acr"]


@pytest.mark.parametrize("level", [1, STRONGBOX])
def test_an_attested_key_is_hardware_bound_and_logs_in_at_level_3(
        platform: RunningPlatform, level: int) -> None:
    phone, key = fresh_phone(platform), DeviceKey.generate("ES256")
    reply = register(phone, key, phone.attestation(key, level=level))
    assert reply.status_code == 201, reply.text
    device = reply.json()
    assert device["hardware_bound"] is True
    assert device["attestation"] == ("strongbox" if level == STRONGBOX
                                     else "trusted_environment")
    assert level_of_login(platform, phone, key, device["device_id"]) == (["hwk", "pwd"], 3)


def test_a_hardware_claim_without_a_chain_is_a_software_key(platform: RunningPlatform) -> None:
    phone, key = fresh_phone(platform), DeviceKey.generate("ES256")
    reply = register(phone, key, None)
    assert reply.status_code == 201, reply.text
    device = reply.json()
    assert (device["key_storage"], device["hardware_bound"], device["attestation"]) == (
        "hardware", False, None)
    assert level_of_login(platform, phone, key, device["device_id"]) == (["pwd", "swk"], 2)


@pytest.mark.parametrize(("forged", "code"), [
    ({"challenge": b"a challenge the platform never issued"}, "attestation_challenge"),
    ({"keystore": SoftKeystore("rogue")}, "attestation_root"),
    ({"certified_key": DeviceKey.generate("ES256")}, "attestation_key"),
    ({"level": SOFTWARE}, "attestation_security_level"),
    ({"not_after": dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)}, "attestation_expired"),
])
def test_a_bad_attestation_is_refused_with_the_failed_check(
        platform: RunningPlatform, forged: dict[str, Any], code: str) -> None:
    phone, key = fresh_phone(platform), DeviceKey.generate("ES256")
    body = problem(register(phone, key, phone.attestation(key, **forged)), 400, code)
    assert "register without an attestation" in body["detail"]
    assert phone.call("GET", "/v1/devices").json()["devices"] == []


def test_an_attestation_challenge_is_used_once_and_by_its_session_only(
        platform: RunningPlatform) -> None:
    phone, key = fresh_phone(platform), DeviceKey.generate("ES256")
    attestation = phone.attestation(key)
    other = fresh_phone(platform)
    problem(register(other, key, attestation), 401, "challenge_expired")
    registered = register(phone, key, attestation)
    assert registered.status_code == 201, registered.text
    phone.key, phone.device_id = key, registered.json()["device_id"]
    phone.tokens = {**phone.tokens, "token_type": "DPoP"}  # the session is now bound
    second_key = DeviceKey.generate("ES256")
    body = device_body(second_key)
    body["attestation"] = {**phone.attestation(second_key),
                           "challenge_id": attestation["challenge_id"]}
    headers = {**phone.auth("POST", "/v1/devices"),
               "Device-Key-Proof": second_key.dpop_proof("POST", phone.url("/v1/devices"))}
    problem(phone.call("POST", "/v1/devices", body, headers=headers), 401, "challenge_expired")
    # and it is no challenge anyone can answer
    answered = phone.call("POST", f"/v1/auth/challenges/{attestation['challenge_id']}",
                          {"method": "password", "password": "x"})
    problem(answered, 401, "challenge_expired")


def test_the_sdk_sends_the_keystores_attestation(platform: RunningPlatform) -> None:
    from tests.softattest import shared_keystore
    from tests.support import new_customer

    attested = new_customer(platform)  # binds with the test Keystore's attestation
    claimed = new_customer(platform, bind_device=False)
    device = claimed.bind_device("claims hardware", key_storage="hardware")
    assert device["hardware_bound"] is False
    assert attested.devices()[0]["hardware_bound"] is True
    assert shared_keystore().root_pem().startswith(b"-----BEGIN CERTIFICATE-----")
