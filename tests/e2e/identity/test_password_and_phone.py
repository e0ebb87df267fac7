"""Password reset (SMS code, plus the second factor when one is enrolled; every session
ends), changing the phone number (the code goes to the new phone), the password policy at
sign-up, and the Argon2 hash upgraded at login when its cost is raised."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.e2e.identity.wire import (
    answer,
    bearer,
    login_with_sms,
    me,
    network_token,
    new_phone_number,
    other_code,
    problem,
    send_network_token,
    sign_up,
    sms_code_for,
    sms_texts,
    start_login,
    totp_customer,
)
from tests.support import PASSWORD, RunningPlatform, new_customer, start_platform

NEW_PASSWORD = "velvet lantern orbit quietly"
DAY_S = 24 * 3600


def start_reset(p: RunningPlatform, phone: str) -> dict[str, Any]:
    reply = httpx.post(f"{p.mobile}/v1/password-resets", json={"phone": phone})
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    assert (body["kind"], body["operation"]) == ("reset", "password.reset")
    return body


def set_new_password(p: RunningPlatform, challenge_id: str,
                     password: str = NEW_PASSWORD) -> httpx.Response:
    return httpx.post(f"{p.mobile}/v1/password-resets/{challenge_id}",
                      json={"new_password": password})


def test_reset_without_second_factor_takes_the_sms_code_and_ends_every_session(
        platform: RunningPlatform) -> None:
    client = new_customer(platform, bind_device=False)
    phone, user_id = client.phone, client.user_id
    on_sim = send_network_token(platform, phone, network_token(platform, phone)).json()
    old_tokens = [client.access_token, on_sim["access_token"]]

    reset = start_reset(platform, phone)
    assert reset["methods"] == ["sms"]
    code = sms_code_for(platform, reset, phone)
    assert "to reset your password" in sms_texts(platform, phone)[0]
    satisfied = answer(platform, reset, "sms", code=code)
    assert satisfied.status_code == 200, satisfied.text
    assert satisfied.json() == {"challenge_id": reset["challenge_id"], "satisfied": True,
                                "next": f"/v1/password-resets/{reset['challenge_id']}"}
    done = set_new_password(platform, reset["challenge_id"])
    assert done.status_code == 204, done.text
    problem(set_new_password(platform, reset["challenge_id"]), 401, "challenge_expired")

    for token in old_tokens:
        problem(me(platform, token), 401, "session_revoked")
    problem(httpx.post(f"{platform.mobile}/v1/sessions/refresh",
                       json={"refresh_token": client.refresh_token}), 401, "session_revoked")
    problem(start_login(platform, phone, PASSWORD), 401, "invalid_credentials")
    session = login_with_sms(platform, phone, NEW_PASSWORD)
    mine = me(platform, session.token).json()
    assert abs(mine["recently_reset_until"] - (time.time() + DAY_S)) < 120
    signals = httpx.get(f"{platform.admin}/v1/users/{user_id}/signals",
                        headers=platform.admin_headers).json()
    assert signals["recently_reset"] is True


def test_reset_with_totp_enrolled_needs_the_sms_code_and_the_totp_code(
        platform: RunningPlatform) -> None:
    customer = totp_customer(platform)
    old_token = customer.client.access_token
    assert old_token is not None
    reset = start_reset(platform, customer.phone)
    assert reset["methods"] == ["sms"]  # the account's factors are named after the SMS code
    code = sms_code_for(platform, reset, customer.phone)
    after_sms = problem(answer(platform, reset, "sms", code=code), 401, "step_up_required")
    assert after_sms["methods"] == ["totp", "recovery_code"]
    problem(set_new_password(platform, reset["challenge_id"]), 401, "reset_incomplete")

    satisfied = answer(platform, reset, "totp", code=customer.app.code())
    assert satisfied.status_code == 200 and satisfied.json()["satisfied"], satisfied.text
    assert set_new_password(platform, reset["challenge_id"]).status_code == 204
    problem(me(platform, old_token), 401, "session_revoked")
    problem(start_login(platform, customer.phone, PASSWORD), 401, "invalid_credentials")
    # The new password opens a login that still needs all three factors.
    login = problem(start_login(platform, customer.phone, NEW_PASSWORD), 401, "step_up_required")
    assert login["methods"] == ["sms", "totp", "recovery_code"]


def test_phone_change_sends_the_code_to_the_new_phone(platform: RunningPlatform) -> None:
    client = new_customer(platform, bind_device=False)
    old_phone, fresh_phone = client.phone, new_phone_number()
    # The current password is asked again: a session alone does not move the number.
    unproved = httpx.post(f"{platform.mobile}/v1/me/phone", json={"new_phone": fresh_phone},
                          headers=bearer(client.access_token))
    problem(unproved, 422, "validation_failed")
    started = httpx.post(f"{platform.mobile}/v1/me/phone", headers=bearer(client.access_token),
                         json={"new_phone": fresh_phone, "current_password": PASSWORD})
    assert started.status_code == 202, started.text
    [to_new] = sms_texts(platform, fresh_phone)
    assert "to change your phone number" in to_new
    assert not any("phone number" in t for t in sms_texts(platform, old_phone))
    code = platform.sms_code(fresh_phone)

    def confirm(phone: str, code: str) -> httpx.Response:
        return httpx.post(f"{platform.mobile}/v1/me/phone/confirm",
                          headers=bearer(client.access_token),
                          json={"new_phone": phone, "code": code,
                                "sms_challenge_id": started.json()["sms_challenge_id"]})

    # The code proves only the number it was sent to.
    problem(confirm(new_phone_number(), code), 401, "sms_code_invalid")
    problem(confirm(fresh_phone, other_code(code)), 401, "sms_code_invalid")
    confirmed = confirm(fresh_phone, code)
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json() == {"user_id": client.user_id, "phone": fresh_phone}
    problem(confirm(fresh_phone, code), 401, "sms_code_expired")  # used once

    session = login_with_sms(platform, fresh_phone)
    assert session.user_id == client.user_id
    problem(start_login(platform, old_phone), 401, "invalid_credentials")


@pytest.mark.parametrize(("password", "code"), [
    ("short1", "password_too_short"),
    ("password123", "password_too_common"),
    ("P@ssw0rd2024!", "password_too_common"),  # leetspeak and a suffix undone
    ("abcdefgh1", "password_too_weak"),
])
def test_sign_up_refuses_a_weak_password(platform: RunningPlatform, password: str,
                                         code: str) -> None:
    reply = httpx.post(f"{platform.mobile}/v1/users",
                       json={"phone": new_phone_number(), "password": password})
    problem(reply, 400, code)
    assert password not in reply.text


def test_sign_up_refuses_a_password_built_on_the_phone_number(
        platform: RunningPlatform) -> None:
    phone = new_phone_number()
    reply = httpx.post(f"{platform.mobile}/v1/users",
                       json={"phone": phone, "password": f"{phone}ab"})
    problem(reply, 400, "password_too_weak")


def test_sign_up_takes_a_good_passphrase(platform: RunningPlatform) -> None:
    phone, _ = sign_up(platform, password=NEW_PASSWORD)
    problem(start_login(platform, phone, NEW_PASSWORD), 401, "step_up_required")


def stored_hash(p: RunningPlatform, user_id: str) -> str:
    engine = create_engine(p.env["ANFU_DATABASE_URL"])
    try:
        with engine.connect() as conn:
            return str(conn.execute(text("SELECT password_hash FROM users WHERE user_id = :u"),
                                    {"u": user_id}).scalar_one())
    finally:
        engine.dispose()


def test_login_rehashes_the_password_when_the_argon2_cost_rose(tmp_path: Path) -> None:
    cheap = start_platform(tmp_path / "identity-argon2", ANFU_ARGON2_MEMORY_KIB="8192",
                           ANFU_ARGON2_TIME_COST="1", ANFU_ARGON2_PARALLELISM="1")
    try:
        phone, user_id = sign_up(cheap)
        assert "$m=8192,t=1,p=1$" in stored_hash(cheap, user_id)
        cheap.env.update(ANFU_ARGON2_MEMORY_KIB="16384", ANFU_ARGON2_TIME_COST="2")
        cheap.restart()

        problem(start_login(cheap, phone, "not the password at all"), 401, "invalid_credentials")
        assert "$m=8192,t=1,p=1$" in stored_hash(cheap, user_id)  # only a right one rehashes
        problem(start_login(cheap, phone), 401, "step_up_required")
        upgraded = stored_hash(cheap, user_id)
        assert upgraded.startswith("$argon2id$") and "$m=16384,t=2,p=1$" in upgraded
        problem(start_login(cheap, phone), 401, "step_up_required")  # and it still verifies
        assert stored_hash(cheap, user_id) == upgraded
    finally:
        cheap.stop()
