"""Device binding and DPoP through the real mobile zone: registering a device key (proof of
possession), logging in with password and the device's signature, sender-constrained tokens
(RFC 9449: every refusal names its check), refreshing a bound session, revoking a lost phone,
security notices, and the SDK's keystore."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from anfu.crypto.jose import DeviceKey, JoseAlg
from anfu.crypto.keystore import KeystoreError
from anfu.sdk import WalletClient
from tests.e2e.identity.wire import (
    Phone,
    answer,
    answer_with_sms,
    audit_events,
    device_body,
    device_signature,
    login_challenge,
    login_on_device,
    login_with_sim,
    login_with_sms,
    new_bound_phone,
    new_phone_number,
    problem,
    sign_up,
)
from tests.softattest import shared_keystore
from tests.support import PASSWORD, RunningPlatform


def notice_kinds(phone: Phone) -> list[str]:
    reply = phone.call("GET", "/v1/devices/current/notices")
    assert reply.status_code == 200, reply.text
    return [n["kind"] for n in reply.json()["notices"]]


# --- registering a device ---------------------------------------------------------------
def test_device_registration_needs_a_dpop_proof_signed_by_the_new_key(
        platform: RunningPlatform) -> None:
    number, _ = sign_up(platform)
    phone = login_with_sms(platform, number)
    new_key, other_key = DeviceKey.generate("ES256"), DeviceKey.generate("ES256")
    bearer = {"Authorization": f"Bearer {phone.token}"}

    missing = phone.call("POST", "/v1/devices", device_body(new_key), headers=bearer)
    problem(missing, 401, "dpop_required")
    by_other = phone.call("POST", "/v1/devices", device_body(new_key), headers={
        **bearer, "DPoP": other_key.dpop_proof("POST", phone.url("/v1/devices"))})
    problem(by_other, 401, "dpop_key_mismatch")
    assert phone.call("GET", "/v1/devices").json()["devices"] == []

    device = phone.bind(new_key)
    assert (device["jkt"], device["alg"]) == (new_key.public.jkt, "ES256")
    listed = phone.call("GET", "/v1/devices").json()["devices"]  # now with DPoP
    assert [(d["device_id"], d["current"]) for d in listed] == [(phone.device_id, True)]
    events = audit_events(platform, phone.user_id, "identity:device:added")
    assert [e["detail"]["new_device_id"] for e in events] == [phone.device_id]


@pytest.mark.parametrize("alg", ["ES256", "EdDSA"])
def test_login_on_a_bound_device_is_password_and_device_signature_without_sms(
        platform: RunningPlatform, alg: JoseAlg) -> None:
    first = new_bound_phone(platform, alg=alg)
    assert first.key is not None and first.device_id is not None
    sms_before = len(platform.sms_messages(first.number))

    again = login_on_device(platform, first.number, first.user_id, first.key,
                            first.device_id)

    assert len(platform.sms_messages(first.number)) == sms_before
    assert (again.tokens["token_type"], again.tokens["acr"]) == ("DPoP", 3)
    assert again.tokens["amr"] == ["hwk", "pwd"]
    devices = again.call("GET", "/v1/devices").json()["devices"]
    assert [(d["alg"], d["current"]) for d in devices] == [(alg, True)]


def test_a_bad_device_signature_is_refused_and_audited(platform: RunningPlatform) -> None:
    phone = new_bound_phone(platform)
    assert phone.key is not None and phone.device_id is not None
    challenge = login_challenge(platform, phone.number, device_id=phone.device_id)

    by_another_key = device_signature(DeviceKey.generate("ES256"), challenge, phone.user_id,
                                      phone.device_id)
    for_another_operation = device_signature(phone.key, {**challenge, "operation": "trade.pay"},
                                             phone.user_id, phone.device_id)
    for forged in (by_another_key, for_another_operation):
        problem(answer(platform, challenge, "device", **forged), 401, "device_signature_invalid")

    events = audit_events(platform, phone.user_id, "identity:device:signature_failed")
    assert [e["device_id"] for e in events] == [phone.device_id] * 2
    # the challenge stays open for the real device
    right = device_signature(phone.key, challenge, phone.user_id, phone.device_id)
    assert answer(platform, challenge, "device", **right).status_code == 201


# --- DPoP on every request --------------------------------------------------------------
def test_a_bound_token_presented_as_bearer_or_without_proof_needs_dpop(
        platform: RunningPlatform) -> None:
    phone = new_bound_phone(platform)
    as_bearer = phone.call("GET", "/v1/wallet",
                           headers={"Authorization": f"Bearer {phone.token}"})
    problem(as_bearer, 401, "dpop_required")
    no_proof = phone.call("GET", "/v1/wallet", headers={"Authorization": f"DPoP {phone.token}"})
    problem(no_proof, 401, "dpop_required")
    assert phone.call("GET", "/v1/wallet").status_code == 200


def test_a_stolen_token_with_a_proof_by_another_key_is_refused(
        platform: RunningPlatform) -> None:
    phone = new_bound_phone(platform)
    thief = DeviceKey.generate("ES256")
    stolen = phone.call("GET", "/v1/wallet", headers={
        "Authorization": f"DPoP {phone.token}",
        "DPoP": thief.dpop_proof("GET", phone.url("/v1/wallet"), access_token=phone.token)})
    problem(stolen, 401, "dpop_key_mismatch")


def test_a_replayed_dpop_proof_is_refused(platform: RunningPlatform) -> None:
    phone = new_bound_phone(platform)
    assert phone.key is not None
    headers = phone.auth("GET", "/v1/wallet")
    assert phone.call("GET", "/v1/wallet", headers=headers).status_code == 200
    problem(phone.call("GET", "/v1/wallet", headers=headers), 401, "dpop_jti_replayed")
    # a new proof that reuses the jti (another iat, another request) is a replay too
    jti = phone.key.dpop_proof("GET", phone.url("/v1/me"), access_token=phone.token,
                               jti="once-only")
    assert phone.call("GET", "/v1/me", headers={**headers, "DPoP": jti}).status_code == 200
    again = phone.key.dpop_proof("GET", phone.url("/v1/devices"), access_token=phone.token,
                                 jti="once-only", now=time.time() - 1)
    problem(phone.call("GET", "/v1/devices", headers={**headers, "DPoP": again}), 401,
            "dpop_jti_replayed")


ProofMaker = Callable[[DeviceKey, Phone], str]
WRONG_PROOFS: dict[str, tuple[ProofMaker, str]] = {
    "made for POST": (lambda k, p: k.dpop_proof("POST", p.url("/v1/wallet"),
                                                access_token=p.token), "dpop_htm"),
    "made for another path": (lambda k, p: k.dpop_proof("GET", p.url("/v1/me"),
                                                        access_token=p.token), "dpop_htu"),
    "made for another host": (lambda k, p: k.dpop_proof(
        "GET", "https://wallet.example/v1/wallet", access_token=p.token), "dpop_htu"),
    "two minutes old": (lambda k, p: k.dpop_proof("GET", p.url("/v1/wallet"),
                                                  access_token=p.token,
                                                  now=time.time() - 120), "dpop_iat"),
    "a minute ahead": (lambda k, p: k.dpop_proof("GET", p.url("/v1/wallet"),
                                                 access_token=p.token,
                                                 now=time.time() + 60), "dpop_iat"),
    "without the token hash": (lambda k, p: k.dpop_proof("GET", p.url("/v1/wallet")),
                               "dpop_ath"),
}


@pytest.mark.parametrize("case", list(WRONG_PROOFS))
def test_a_proof_for_another_request_or_time_names_the_failed_check(
        platform: RunningPlatform, case: str) -> None:
    phone = new_bound_phone(platform)
    assert phone.key is not None
    make, code = WRONG_PROOFS[case]
    reply = phone.call("GET", "/v1/wallet", headers={"Authorization": f"DPoP {phone.token}",
                                                     "DPoP": make(phone.key, phone)})
    problem(reply, 401, code)
    assert phone.call("GET", "/v1/wallet").status_code == 200


def test_refreshing_a_bound_session_needs_a_proof_by_its_key(
        platform: RunningPlatform) -> None:
    phone = new_bound_phone(platform)
    refresh_url = phone.url("/v1/sessions/refresh")
    body = {"refresh_token": phone.tokens["refresh_token"]}
    problem(httpx.post(refresh_url, json=body), 401, "dpop_required")
    by_other = phone.refresh(proof_key=DeviceKey.generate("EdDSA"))
    problem(by_other, 401, "dpop_key_mismatch")

    # the refused attempts did not use up the refresh token
    assert phone.key is not None
    proof = phone.key.dpop_proof("POST", refresh_url)
    refreshed = httpx.post(refresh_url, headers={"DPoP": proof}, json=body)
    assert refreshed.status_code == 201, refreshed.text
    assert refreshed.json()["token_type"] == "DPoP"
    phone.tokens = refreshed.json()
    assert phone.call("GET", "/v1/wallet").status_code == 200

    # its proof cannot be replayed, even with the next refresh token (left unused)
    replayed = httpx.post(refresh_url, headers={"DPoP": proof},
                          json={"refresh_token": phone.tokens["refresh_token"]})
    problem(replayed, 401, "dpop_jti_replayed")
    assert phone.refresh().status_code == 201


# --- several devices: notices, revoking -------------------------------------------------
def test_other_devices_are_told_of_a_new_device_login_and_of_a_device_added(
        platform: RunningPlatform) -> None:
    first = new_bound_phone(platform)
    assert first.key is not None and first.device_id is not None
    login_on_device(platform, first.number, first.user_id, first.key, first.device_id)
    assert notice_kinds(first) == []  # a login on a known device tells nobody

    second = login_with_sms(platform, first.number)
    assert notice_kinds(first) == ["new_sign_in"]
    second.bind(name="Work phone")
    assert notice_kinds(first) == ["new_sign_in", "device_added"]
    notices = first.call("GET", "/v1/devices/current/notices").json()["notices"]
    assert "Work phone" in notices[1]["text"]
    assert notice_kinds(second) == []  # not told about itself
    later = first.call("GET", f"/v1/devices/current/notices?after={notices[-1]['id']}")
    assert later.json()["notices"] == []
    login_with_sim(platform, first.number)
    assert notice_kinds(first) == ["new_sign_in", "device_added", "new_sign_in"]


def test_revoking_a_lost_phone_ends_its_sessions_and_its_key_no_longer_logs_in(
        platform: RunningPlatform) -> None:
    lost = new_bound_phone(platform)
    assert lost.key is not None and lost.device_id is not None
    lost_again = login_on_device(platform, lost.number, lost.user_id, lost.key,
                                 lost.device_id)
    kept = login_with_sms(platform, lost.number)
    kept.bind(name="new phone")

    assert kept.call("DELETE", f"/v1/devices/{lost.device_id}").status_code == 204

    for session in (lost, lost_again):
        problem(session.call("GET", "/v1/wallet"), 401, "session_revoked")
    challenge = login_challenge(platform, lost.number, device_id=lost.device_id)
    assert challenge["methods"] == ["sms"]  # an unknown device: the new-device path
    by_lost_key = device_signature(lost.key, challenge, lost.user_id, lost.device_id)
    problem(answer(platform, challenge, "device", **by_lost_key), 401, "device_unknown")
    by_sms = answer_with_sms(platform, challenge, lost.number)
    assert by_sms.status_code == 201, by_sms.text
    assert (by_sms.json()["token_type"], by_sms.json()["amr"]) == ("Bearer", ["pwd", "sms"])

    active = kept.call("GET", "/v1/devices").json()["devices"]
    assert [d["device_id"] for d in active] == [kept.device_id]
    every = kept.call("GET", "/v1/devices?include_revoked=true").json()["devices"]
    assert {d["device_id"]: d["revoked_at"] is not None for d in every} == {
        lost.device_id: True, kept.device_id: False}
    events = audit_events(platform, lost.user_id, "identity:device:revoked")
    assert [(e["detail"]["revoked_device_id"], e["detail"]["sessions_ended"])
            for e in events] == [(lost.device_id, 2)]


def test_devices_are_listed_and_renamed_by_their_owner_only(platform: RunningPlatform) -> None:
    phone = new_bound_phone(platform, name="Old name")
    stranger = new_bound_phone(platform)
    path = f"/v1/devices/{phone.device_id}"

    renamed = phone.call("PATCH", path, {"name": "  Mum's \t phone "})
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["name"] == "Mum's phone"
    listed = phone.call("GET", "/v1/devices").json()["devices"]
    assert [(d["name"], d["key_storage"], d["hardware_bound"]) for d in listed] == [
        ("Mum's phone", "hardware", True)]
    problem(phone.call("PATCH", path, {"name": "   "}), 400, "invalid_device_name")

    problem(stranger.call("PATCH", path, {"name": "mine now"}), 404, "device_not_found")
    problem(stranger.call("DELETE", path), 404, "device_not_found")
    assert phone.call("GET", "/v1/wallet").status_code == 200


@pytest.mark.parametrize(("rooted", "emulator"), [(True, False), (False, True)],
                         ids=["rooted", "emulator"])
def test_a_rooted_or_emulated_device_is_not_hardware_bound(
        platform: RunningPlatform, rooted: bool, emulator: bool) -> None:
    phone = new_bound_phone(platform, key_storage="hardware", rooted=rooted,
                            emulator=emulator)
    assert phone.key is not None and phone.device_id is not None
    device = phone.call("GET", "/v1/devices").json()["devices"][0]
    assert (device["key_storage"], device["hardware_bound"]) == ("hardware", False)
    assert (device["rooted"], device["emulator"]) == (rooted, emulator)

    again = login_on_device(platform, phone.number, phone.user_id, phone.key, phone.device_id)
    assert (again.tokens["amr"], again.tokens["acr"]) == (["pwd", "swk"], 2)


# --- the SDK ----------------------------------------------------------------------------
def test_sdk_keystore_round_trip_logs_in_with_the_device_key(platform: RunningPlatform,
                                                             tmp_path: Path) -> None:
    number, keystore, passphrase = new_phone_number(), tmp_path / "device.json", b"open sesame"
    with WalletClient(platform.mobile,
                      sms_code=lambda challenge: platform.sms_code(number)) as setup:
        setup.register(number, PASSWORD)
        setup.login(number, PASSWORD)
        setup.bind_device("my phone", key_storage="hardware", keystore=keystore,
                          passphrase=passphrase, attest=shared_keystore().attest)
    sms_before = len(platform.sms_messages(number))

    with WalletClient.from_keystore(platform.mobile, keystore, passphrase) as phone:
        assert (phone.device_id, phone.user_id) == (setup.device_id, setup.user_id)
        session = phone.login(number, PASSWORD)  # no SMS source: the key must do
        assert (session["token_type"], session["amr"]) == ("DPoP", ["hwk", "pwd"])
        assert phone.wallet()["user_id"] == setup.user_id
        assert [d["current"] for d in phone.devices()] == [True]
    assert len(platform.sms_messages(number)) == sms_before
    with pytest.raises(KeystoreError):
        WalletClient.from_keystore(platform.mobile, keystore, b"wrong passphrase")
