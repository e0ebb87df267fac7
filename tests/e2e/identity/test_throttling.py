"""Brute force against every typed secret (password, SMS code, TOTP code, recovery code)
hits Keycloak's throttle: failures of one secret less than a second apart are a script and
lock it for a minute; while locked even the right secret gets the wrong secret's answer; the
lock is audited and an operator can lift it. Sending SMS codes is limited per phone and per
client address (429 with Retry-After)."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.identity.wire import (
    PAST_QUICK_CHECK_S,
    TotpCustomer,
    answer,
    audit_events,
    login_challenge,
    login_to_second_factor,
    other_code,
    problem,
    send_sms,
    sign_up,
    sms_code_for,
    start_login,
    totp_customer,
    unlock,
)
from tests.support import PASSWORD, RunningPlatform, start_platform

LOCKED = "identity:account:locked"


def at_once(attempt: Callable[[], httpx.Response], times: int = 2) -> list[httpx.Response]:
    """The same wrong answer ``times`` times in parallel, as a guessing script sends them:
    well within the throttle's 1 s quick-login check."""
    with ThreadPoolExecutor(times) as pool:
        return list(pool.map(lambda _: attempt(), range(times)))


def first_lock(p: RunningPlatform, user_id: str, secret: str) -> dict[str, Any]:
    """The audit event of the first lock on ``secret`` (each quick failure while locked
    locks again, so more may follow)."""
    events = [e for e in audit_events(p, user_id, LOCKED) if e["detail"]["secret"] == secret]
    assert events, f"no {LOCKED} event for the {secret}"
    detail = events[0]["detail"]
    assert (detail["reason"], detail["failures"]) == ("quick_failures", 2)
    assert detail["wait_s"] == 60  # Keycloak's minimum quick-login wait
    return dict(events[0])


def test_quick_wrong_passwords_lock_and_the_right_one_gets_the_same_answer(
        platform: RunningPlatform) -> None:
    phone, user_id = sign_up(platform)
    wrong = at_once(lambda: start_login(platform, phone, "guess number one!"))
    while_locked = start_login(platform, phone, PASSWORD)
    assert problem(while_locked, 401, "invalid_credentials") == problem(
        wrong[0], 401, "invalid_credentials")
    assert while_locked.headers["www-authenticate"] == wrong[0].headers["www-authenticate"]
    first_lock(platform, user_id, "password")

    unlock(platform, user_id)
    assert [e["name"] for e in audit_events(platform, user_id, "identity:account:unlocked")]
    problem(start_login(platform, phone, PASSWORD), 401, "step_up_required")


def test_wrong_passwords_a_person_types_do_not_lock(platform: RunningPlatform) -> None:
    phone, user_id = sign_up(platform)
    problem(start_login(platform, phone, "guess number one!"), 401, "invalid_credentials")
    time.sleep(PAST_QUICK_CHECK_S)
    problem(start_login(platform, phone, "guess number two!"), 401, "invalid_credentials")
    problem(start_login(platform, phone, PASSWORD), 401, "step_up_required")
    assert audit_events(platform, user_id, LOCKED) == []


def test_quick_wrong_sms_codes_lock_and_the_right_one_is_refused(
        platform: RunningPlatform) -> None:
    phone, user_id = sign_up(platform)
    challenge = login_challenge(platform, phone)
    code = sms_code_for(platform, challenge, phone)
    for reply in at_once(lambda: answer(platform, challenge, "sms", code=other_code(code))):
        problem(reply, 401, "sms_code_invalid")
    problem(answer(platform, challenge, "sms", code=code), 401, "sms_code_invalid")
    first_lock(platform, user_id, "sms")

    unlock(platform, user_id)
    tokens = answer(platform, challenge, "sms", code=code)
    assert tokens.status_code == 201, tokens.text  # the refusal while locked spent no try


# A customer with an authenticator app answers the login's last step with its code or with a
# recovery code: the refusal of each, a wrong code and the right one.
SecondFactor = tuple[str, Callable[[TotpCustomer], str], Callable[[TotpCustomer], str]]
SECOND_FACTORS: dict[str, SecondFactor] = {
    "totp": ("totp_invalid", lambda c: c.app.wrong_code(), lambda c: c.app.code()),
    "recovery_code": ("recovery_code_invalid", lambda c: "0000-0000-0000-0000",
                      lambda c: c.recovery_codes[0]),
}


@pytest.mark.parametrize("method", list(SECOND_FACTORS))
def test_quick_wrong_second_factor_codes_lock_and_the_right_one_gets_the_same_answer(
        platform: RunningPlatform, method: str) -> None:
    refusal, wrong_code, right_code = SECOND_FACTORS[method]
    customer = totp_customer(platform)
    challenge = login_to_second_factor(platform, customer.phone)
    wrong = [problem(r, 401, refusal) for r in at_once(
        lambda: answer(platform, challenge, method, code=wrong_code(customer)))]
    right = right_code(customer)
    while_locked = answer(platform, challenge, method, code=right)
    assert problem(while_locked, 401, refusal) == wrong[0]
    first_lock(platform, customer.user_id, "totp")  # recovery codes share the TOTP lock

    unlock(platform, customer.user_id)
    tokens = answer(platform, challenge, method, code=right)
    assert tokens.status_code == 201, tokens.text


def send_limited(reply: httpx.Response) -> int:
    """The seconds a 429 ``sms_send_limited`` asks the client to wait."""
    body = problem(reply, 429, "sms_send_limited")
    retry_after = int(reply.headers["retry-after"])
    assert 0 < retry_after <= 60 and body["retry_after_s"] == retry_after
    return retry_after


def test_sms_codes_are_limited_per_phone_and_per_client_address(tmp_path: Path) -> None:
    # The default per-phone limit (one code a minute) and two codes a minute per address.
    limited = start_platform(tmp_path / "identity-sms-limits", ANFU_SMS_ADDRESS_LIMITS="2/60")
    try:
        first_phone, _ = sign_up(limited)
        challenge = login_challenge(limited, first_phone)
        assert send_sms(limited, challenge).status_code == 202
        send_limited(send_sms(limited, challenge))  # the same phone again
        assert len(limited.sms_messages(first_phone)) == 1

        second_phone, _ = sign_up(limited)
        challenge = login_challenge(limited, second_phone)
        assert send_sms(limited, challenge).status_code == 202

        third_phone, _ = sign_up(limited)  # never got a code: the address is the limit
        challenge = login_challenge(limited, third_phone)
        send_limited(send_sms(limited, challenge))
        assert limited.sms_messages(third_phone) == []
    finally:
        limited.stop()
