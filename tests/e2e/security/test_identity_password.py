"""Attack tests of password change (issue 9 §3): ``PUT /v1/me/password`` changed the password
on a level-2 session without the current one and kept the other sessions, so a stolen
session could lock the owner out. Now it needs the current password (or a reset answered
just now), ends the other sessions, tells the other devices and is audited."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.identity.wire import (
    Phone,
    answer,
    answer_with_sms,
    audit_events,
    login_challenge,
    login_with_sms,
    new_bound_phone,
    problem,
    start_identity_platform,
)
from tests.support import PASSWORD, RunningPlatform

NEW_PASSWORD = "a brand new passphrase 2025"


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    running = start_identity_platform(tmp_path_factory.mktemp("identity_password"))
    yield running
    running.stop()


def change(phone: Phone, **body: str) -> httpx.Response:
    return phone.call("PUT", "/v1/me/password", {"new_password": NEW_PASSWORD, **body})


def test_a_session_alone_cannot_change_the_password(platform: RunningPlatform) -> None:
    phone = new_bound_phone(platform)
    problem(change(phone), 400, "current_password_required")
    problem(change(phone, current_password="not the password"),
            401, "invalid_credentials")
    assert audit_events(platform, phone.user_id, "identity:password:changed") == []
    assert login_with_sms(platform, phone.number, PASSWORD).tokens["acr"] == 2


def test_a_change_ends_the_other_sessions_and_tells_the_other_devices(
        platform: RunningPlatform) -> None:
    phone = new_bound_phone(platform)
    other = login_with_sms(platform, phone.number)
    other.bind()
    reply = change(phone, current_password=PASSWORD)
    assert reply.status_code == 204, reply.text

    assert phone.call("GET", "/v1/wallet").status_code == 200  # this session lives on
    problem(other.call("GET", "/v1/wallet"), 401, "session_revoked")
    events = audit_events(platform, phone.user_id, "identity:password:changed")
    assert [e["detail"]["sessions_ended"] for e in events] == [1]
    # the other phone hears of it at its next login
    again = login_with_sms(platform, phone.number, NEW_PASSWORD)
    assert again.tokens["acr"] == 2
    notices = platform_notices(platform, other)
    assert "password_changed" in [n["kind"] for n in notices]


def platform_notices(platform: RunningPlatform, phone: Phone) -> list[dict[str, object]]:
    """The notices of ``phone``'s device, read after logging in there with the new
    password and the device key."""
    assert phone.key is not None and phone.device_id is not None
    challenge = login_challenge(platform, phone.number, NEW_PASSWORD, device_id=phone.device_id)
    reply = answer(platform, challenge, "device", **phone.signed(challenge))
    assert reply.status_code == 201, reply.text
    back = Phone(platform, phone.number, dict(reply.json()), phone.key, phone.device_id)
    return list(back.call("GET", "/v1/devices/current/notices").json()["notices"])


def test_an_answered_reset_can_stand_in_for_the_current_password(
        platform: RunningPlatform) -> None:
    phone = new_bound_phone(platform)
    start = httpx.post(f"{platform.mobile}/v1/password-resets", json={"phone": phone.number})
    reset = start.json()
    first = answer_with_sms(platform, reset, phone.number)
    if first.status_code == 401:  # the bound device is the second factor
        body = problem(first, 401, "step_up_required")
        first = answer(platform, body, "device", **phone.signed(body))
    assert first.status_code == 200, first.text
    reply = change(phone, reset_challenge_id=reset["challenge_id"])
    assert reply.status_code == 204, reply.text
    problem(change(phone, reset_challenge_id=reset["challenge_id"]),
            401, "challenge_expired")  # spent with the change


def test_removing_a_factor_needs_the_password_again(platform: RunningPlatform) -> None:
    from tests.e2e.identity.wire import totp_customer

    customer = totp_customer(platform)
    path = "/v1/factors/totp"

    def remove(body: dict[str, str] | None) -> httpx.Response:
        return httpx.request("DELETE", customer.client.base_url + path, json=body,
                             headers=customer.client.auth_headers("DELETE", path))

    problem(remove(None), 422, "validation_failed")
    problem(remove({"current_password": "not the password"}), 401, "invalid_credentials")
    assert remove({"current_password": PASSWORD}).status_code == 204
    assert audit_events(platform, customer.user_id, "identity:totp:removed")
