"""Logging in on a new device with password and SMS code, the SMS code's rules (wrong, used,
exhausted, what the message says), and SIM login with the operator's network token."""

from __future__ import annotations

import re
import time

import httpx

from tests.e2e.identity.wire import (
    PAST_QUICK_CHECK_S,
    answer,
    bearer,
    login_challenge,
    me,
    network_token,
    new_phone_number,
    other_code,
    problem,
    send_network_token,
    send_sms,
    sign_up,
    sms_code_for,
    sms_texts,
    start_login,
)
from tests.support import PASSWORD, RunningPlatform


def test_password_then_sms_code_logs_in_on_a_new_device(platform: RunningPlatform) -> None:
    phone, user_id = sign_up(platform)
    reply = start_login(platform, phone)
    challenge = problem(reply, 401, "step_up_required")
    assert 'error="insufficient_user_authentication"' in reply.headers["www-authenticate"]
    assert 'acr_values="2"' in reply.headers["www-authenticate"]
    assert (challenge["kind"], challenge["methods"]) == ("login", ["sms"])
    assert (challenge["proved"], challenge["required_acr"]) == (["pwd"], 2)

    sent = send_sms(platform, challenge)
    assert sent.status_code == 202, sent.text
    assert sent.json()["sent_to"].endswith(phone[-4:])
    assert phone not in sent.json()["sent_to"]  # masked
    tokens = answer(platform, challenge, "sms", code=platform.sms_code(phone))
    assert tokens.status_code == 201, tokens.text
    session = tokens.json()
    assert (session["user_id"], session["token_type"]) == (user_id, "Bearer")
    assert (session["acr"], session["amr"]) == (2, ["pwd", "sms"])
    mine = me(platform, session["access_token"])
    assert (mine.status_code, mine.json()["user_id"]) == (200, user_id)


def test_wrong_password_and_unknown_phone_get_the_same_answer(
        platform: RunningPlatform) -> None:
    phone, _ = sign_up(platform)
    wrong = problem(start_login(platform, phone, "not the password at all"), 401,
                    "invalid_credentials")
    unknown = problem(start_login(platform, new_phone_number(), PASSWORD), 401,
                      "invalid_credentials")
    assert wrong == unknown  # nothing tells whether the phone has an account


def test_wrong_sms_code_is_refused_with_the_tries_left(platform: RunningPlatform) -> None:
    phone, _ = sign_up(platform)
    challenge = login_challenge(platform, phone)
    code = sms_code_for(platform, challenge, phone)
    wrong = problem(answer(platform, challenge, "sms", code=other_code(code)),
                    401, "sms_code_invalid")
    assert wrong["tries_left"] == 4
    right = answer(platform, challenge, "sms", code=code)
    assert right.status_code == 201, right.text  # a wrong try does not spend the code


def test_used_sms_code_is_refused_on_second_use(platform: RunningPlatform) -> None:
    phone, _ = sign_up(platform)
    challenge = login_challenge(platform, phone)
    code = sms_code_for(platform, challenge, phone)
    assert answer(platform, challenge, "sms", code=code).status_code == 201
    problem(answer(platform, challenge, "sms", code=code), 401, "challenge_expired")
    # A new login gets a new code: the old one does not answer it.
    again = login_challenge(platform, phone)
    fresh = sms_code_for(platform, again, phone)
    if fresh != code:  # one chance in a million that the new code is the old one
        problem(answer(platform, again, "sms", code=code), 401, "sms_code_invalid")


def test_five_wrong_sms_codes_exhaust_the_code(platform: RunningPlatform) -> None:
    phone, _ = sign_up(platform)
    challenge = login_challenge(platform, phone)
    code = sms_code_for(platform, challenge, phone)
    tries_left = []
    for attempt in range(5):
        if attempt:
            time.sleep(PAST_QUICK_CHECK_S)  # a person mistyping, not the throttle's script
        body = problem(answer(platform, challenge, "sms",
                              code=other_code(code)), 401, "sms_code_invalid")
        tries_left.append(body["tries_left"])
    assert tries_left == [4, 3, 2, 1, 0]
    time.sleep(PAST_QUICK_CHECK_S)
    problem(answer(platform, challenge, "sms", code=code), 401, "sms_code_exhausted")


def test_sms_names_its_purpose_and_carries_nothing_but_the_code(
        platform: RunningPlatform) -> None:
    phone, user_id = sign_up(platform)
    challenge = login_challenge(platform, phone)
    code = sms_code_for(platform, challenge, phone)
    [text] = sms_texts(platform, phone)
    assert "to sign in on a new device" in text
    assert re.findall(r"\d+", text) == [code]  # no other number: not the phone, no amount
    for secret in (PASSWORD, challenge["challenge_id"], challenge["nonce"], user_id):
        assert secret not in text
    assert not re.search(r"https?:|www\.|://", text)  # no link to click


def test_sim_network_token_logs_in_with_one_factor(platform: RunningPlatform) -> None:
    phone, user_id = sign_up(platform)
    reply = send_network_token(platform, phone, network_token(platform, phone))
    assert reply.status_code == 201, reply.text
    session = reply.json()
    assert (session["user_id"], session["acr"], session["amr"]) == (user_id, 1, ["sim"])
    assert platform.sms_messages(phone) == []  # no SMS code was needed
    wallet = httpx.get(f"{platform.mobile}/v1/wallet",
                       headers=bearer(session["access_token"]))
    assert wallet.status_code == 200, wallet.text  # level 1 reads the wallet
    enrol = httpx.post(f"{platform.mobile}/v1/factors/totp",
                       headers=bearer(session["access_token"]))
    assert problem(enrol, 401, "step_up_required")["current_acr"] == 1  # adding a factor: 2


def test_network_token_is_spent_by_its_first_use(platform: RunningPlatform) -> None:
    phone, _ = sign_up(platform)
    token = network_token(platform, phone)
    assert send_network_token(platform, phone, token).status_code == 201
    problem(send_network_token(platform, phone, token), 401, "network_token_used")


def test_network_token_of_another_phone_is_refused(platform: RunningPlatform) -> None:
    phone, _ = sign_up(platform)
    someone_else, _ = sign_up(platform)
    problem(send_network_token(platform, phone, network_token(platform, someone_else)), 401,
            "network_token_wrong_phone")
