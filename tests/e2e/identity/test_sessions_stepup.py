"""Sessions and step-up through the real mobile zone: refresh-token rotation and reuse,
logout, the session list, and the auth policy's levels (1 read, 2 move money, 3 above the
high-value limit or to a first-time payee), with freshness tested on a platform whose
level-3 proofs last seconds, not minutes."""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from anfu.identity.assurance import DEFAULT_POLICY_PATH
from anfu.sdk import MerchantClient
from tests.e2e.identity.wire import (
    Json,
    Phone,
    answer,
    audit_events,
    login_with_sim,
    login_with_sms,
    new_bound_phone,
    problem,
    satisfy_step_up,
    send_sms,
    sign_up,
    start_identity_platform,
)
from tests.softauthn import SoftAuthenticator
from tests.support import PASSWORD, RunningPlatform, create_merchant

LEVEL_3_MAX_AGE_S = 5.0


@pytest.fixture(scope="module")
def quick_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    """The built-in policy, except that level-3 proofs count for a few seconds only."""
    home = tmp_path_factory.mktemp("quick_level_3")
    policy = DEFAULT_POLICY_PATH.read_text(encoding="utf-8")
    assert "3 = 300 }" in policy
    (home / "auth_policy.toml").write_text(
        policy.replace("3 = 300 }", f"3 = {LEVEL_3_MAX_AGE_S:g} }}"), encoding="utf-8")
    running = start_identity_platform(home, ANFU_AUTH_POLICY=str(home / "auth_policy.toml"))
    yield running
    running.stop()


def step_up_asked(reply: httpx.Response) -> Json:
    body = problem(reply, 401, "step_up_required")
    assert reply.headers["WWW-Authenticate"] == (
        'DPoP error="insufficient_user_authentication",'
        f' acr_values="{body["required_acr"]}"')
    return body


def funded_phone(platform: RunningPlatform, amount: int, **report: Any) -> Phone:
    phone = new_bound_phone(platform, **report)
    topup = phone.call("POST", "/v1/topups", {"amount": amount, "currency": "CNY"}, money=True)
    assert topup.status_code == 201, topup.text
    return phone


def new_bound_phone_of(platform: RunningPlatform, number: str) -> Phone:
    """Another phone of an existing customer: SMS login, then its own key bound."""
    phone = login_with_sms(platform, number)
    phone.bind()
    return phone


def shop_named(platform: RunningPlatform, name: str) -> MerchantClient:
    m = create_merchant(platform.admin, name=name)
    return MerchantClient(platform.merchant, m.merchant_id, m.key_id, m.alg, m.private_key_pem)


def trade_of(shop: MerchantClient, amount: int) -> str:
    trade = shop.create_trade(out_trade_no="o" + secrets.token_hex(8), amount=amount,
                              currency="CNY", subject="tea", mode="direct")
    return str(trade["trade_no"])


def pay(phone: Phone, trade_no: str) -> httpx.Response:
    return phone.call("POST", f"/v1/trades/{trade_no}/pay")


# --- sessions ---------------------------------------------------------------------------
def test_refresh_rotates_and_a_reused_refresh_token_revokes_the_session(
        platform: RunningPlatform) -> None:
    number, _ = sign_up(platform)
    phone = login_with_sms(platform, number)
    old_refresh = phone.tokens["refresh_token"]

    assert phone.refresh().status_code == 201
    assert phone.tokens["refresh_token"] != old_refresh
    assert phone.call("GET", "/v1/wallet").status_code == 200

    reused = httpx.post(phone.url("/v1/sessions/refresh"), json={"refresh_token": old_refresh})
    problem(reused, 401, "refresh_token_reused")
    problem(phone.call("GET", "/v1/wallet"), 401, "session_revoked")
    problem(phone.refresh(), 401, "session_revoked")
    events = audit_events(platform, phone.user_id, "identity:session:refresh_reused")
    assert [e["session_id"] for e in events] == [phone.tokens["session_id"]]


def test_logout_ends_this_session_only(platform: RunningPlatform) -> None:
    number, _ = sign_up(platform)
    leaving, staying = login_with_sms(platform, number), new_bound_phone_of(platform, number)

    assert leaving.call("DELETE", "/v1/sessions/current").status_code == 204
    problem(leaving.call("GET", "/v1/wallet"), 401, "session_revoked")
    problem(leaving.refresh(), 401, "session_revoked")
    assert staying.call("GET", "/v1/wallet").status_code == 200
    events = audit_events(platform, leaving.user_id, "identity:session:logout")
    assert [(e["session_id"], e["detail"]["everywhere"]) for e in events] == [
        (leaving.tokens["session_id"], False)]


def test_logout_everywhere_ends_every_session_of_the_account_only(
        platform: RunningPlatform) -> None:
    number, _ = sign_up(platform)
    sessions = [login_with_sms(platform, number), new_bound_phone_of(platform, number),
                login_with_sim(platform, number)]
    other_number, _ = sign_up(platform)
    someone_else = login_with_sms(platform, other_number)

    assert sessions[1].call("DELETE", "/v1/sessions").status_code == 204
    for phone in sessions:
        problem(phone.call("GET", "/v1/wallet"), 401, "session_revoked")
    assert someone_else.call("GET", "/v1/wallet").status_code == 200
    events = audit_events(platform, sessions[0].user_id, "identity:session:logout")
    assert [(e["session_id"], e["detail"]["everywhere"]) for e in events] == [
        (sessions[1].tokens["session_id"], True)]


def test_the_session_list_shows_live_sessions_and_marks_this_one(
        platform: RunningPlatform) -> None:
    number, _ = sign_up(platform)
    plain, bound = login_with_sms(platform, number), new_bound_phone_of(platform, number)
    ended = login_with_sim(platform, number)
    assert ended.call("DELETE", "/v1/sessions/current").status_code == 204

    listed = bound.call("GET", "/v1/sessions")
    assert listed.status_code == 200, listed.text
    assert [(s["session_id"], s["device_id"], s["current"])
            for s in listed.json()["sessions"]] == [
        (plain.tokens["session_id"], None, False),
        (bound.tokens["session_id"], bound.device_id, True)]


# --- step-up: level 1 and 2 -------------------------------------------------------------
def test_a_sim_session_reads_the_wallet_and_steps_up_with_the_password_to_top_up(
        platform: RunningPlatform) -> None:
    number, _ = sign_up(platform)
    phone = login_with_sim(platform, number)
    assert (phone.tokens["acr"], phone.tokens["amr"]) == (1, ["sim"])
    assert phone.call("GET", "/v1/wallet").status_code == 200  # level 1

    key = {"Idempotency-Key": "topup-1"}
    body = {"amount": 5000, "currency": "CNY"}
    challenge = step_up_asked(phone.call("POST", "/v1/topups", body,
                                         headers={**phone.auth("POST", "/v1/topups"), **key}))
    assert {k: challenge[k] for k in ("kind", "operation", "required_acr", "current_acr",
                                      "proved", "methods")} == {
        "kind": "step_up", "operation": "topup.create", "required_acr": 2, "current_acr": 1,
        "proved": ["sim"], "methods": ["password"]}  # the SIM already proves possession
    wrong = answer(platform, challenge, "password", password="not it at all")
    problem(wrong, 401, "invalid_credentials")

    stepped = answer(platform, challenge, "password", password=PASSWORD)
    assert stepped.status_code == 200, stepped.text
    assert (stepped.json()["acr"], stepped.json()["amr"]) == (2, ["pwd", "sim"])
    problem(answer(platform, challenge, "password", password=PASSWORD), 401, "challenge_expired")
    retried = phone.call("POST", "/v1/topups", body,
                         headers={**phone.auth("POST", "/v1/topups"), **key})
    assert retried.status_code == 201, retried.text

    asked = audit_events(platform, phone.user_id, "identity:session:step_up_required")
    assert [(e["session_id"], e["detail"]["operation"], e["detail"]["required_acr"],
             e["detail"]["current_acr"]) for e in asked] == [
        (phone.tokens["session_id"], "topup.create", 2, 1)]
    done = audit_events(platform, phone.user_id, "identity:session:stepped_up")
    assert [(e["detail"]["operation"], e["detail"]["amr"]) for e in done] == [
        ("topup.create", ["pwd", "sim"])]


# --- step-up: level 3 -------------------------------------------------------------------
def test_raising_the_high_value_limit_needs_level_3_itself(platform: RunningPlatform) -> None:
    phone = funded_phone(platform, 200_000)
    assert phone.tokens["acr"] == 2
    over_limit = step_up_asked(phone.call("POST", "/v1/withdrawals",
                                          {"amount": 60_000, "currency": "CNY"}, money=True))
    assert {k: over_limit[k] for k in ("operation", "required_acr", "amount", "currency",
                                       "payee", "methods")} == {
        "operation": "withdrawal.create", "required_acr": 3, "amount": 60_000,
        "currency": "CNY", "payee": "your bank account", "methods": ["device"]}

    limits = {"currency": "CNY", "high_value_minor": 100_000}
    challenge = step_up_asked(phone.call("PUT", "/v1/me/limits", limits))
    assert (challenge["operation"], challenge["required_acr"]) == ("limits.change", 3)
    assert challenge["methods"] == ["device"]
    stepped = answer(platform, challenge, "device", **phone.signed(challenge))
    assert (stepped.status_code, stepped.json()["acr"]) == (200, 3), stepped.text
    changed = phone.call("PUT", "/v1/me/limits", limits)
    assert changed.status_code == 200, changed.text
    assert changed.json()["high_value_limits"] == {"CNY": 100_000}

    # A one-factor session of the same customer shows the new limit: 600.00 now needs
    # level 2 only, more than 1000.00 still level 3.
    sim = login_with_sim(platform, phone.number)
    for amount, level in ((60_000, 2), (100_001, 3)):
        asked = step_up_asked(sim.call("POST", "/v1/withdrawals",
                                       {"amount": amount, "currency": "CNY"}, money=True))
        assert asked["required_acr"] == level


def test_a_software_key_cannot_reach_level_3_without_a_passkey(
        platform: RunningPlatform) -> None:
    phone = funded_phone(platform, 200_000, key_storage="software")
    withdrawal = {"amount": 60_000, "currency": "CNY"}
    # Nothing this customer holds reaches level 3: no challenge nobody could answer, but a
    # refusal that says what would help.
    refused = phone.call("POST", "/v1/withdrawals", withdrawal, money=True)
    body = problem(refused, 403, "stronger_factor_required")
    assert (body["required_acr"], body["current_acr"]) == (3, 2)
    assert "passkey" in body["detail"]

    authenticator = SoftAuthenticator()
    origin = f"http://localhost:{httpx.URL(platform.mobile).port}"
    options = phone.call("POST", "/v1/factors/passkeys/options").json()
    registered = phone.call("POST", "/v1/factors/passkeys", {
        "challenge_id": options["challenge_id"],
        "credential": authenticator.create(options["options"], origin), "name": "laptop"})
    assert registered.status_code == 201, registered.text

    challenge = step_up_asked(phone.call("POST", "/v1/withdrawals", withdrawal, money=True))
    assert challenge["methods"] == ["passkey"]
    assertion = authenticator.get(challenge["passkey_options"], origin)
    stepped = answer(platform, challenge, "passkey", credential=assertion)
    assert (stepped.status_code, stepped.json()["acr"]) == (200, 3), stepped.text
    paid_out = phone.call("POST", "/v1/withdrawals", withdrawal, money=True)
    assert paid_out.status_code == 201, paid_out.text


def test_a_first_time_payee_needs_level_3_which_fades_after_its_max_age(
        quick_platform: RunningPlatform) -> None:
    platform = quick_platform
    known, also_new, later_new = (shop_named(platform, n) for n in
                                  ("Lotus Tea House", "Second Shop", "Third Shop"))
    first, second, to_also_new, to_later_new = (
        trade_of(shop, amount) for shop, amount in
        ((known, 2_000), (known, 1_500), (also_new, 1_000), (later_new, 1_000)))
    # Trades first: the login's proofs must still count for level 3 at the first payment.
    phone = funded_phone(platform, 100_000)

    challenge = step_up_asked(pay(phone, first))
    assert {k: challenge[k] for k in ("operation", "required_acr", "amount", "currency",
                                      "payee")} == {
        "operation": "trade.pay", "required_acr": 3, "amount": 2_000, "currency": "CNY",
        "payee": "Lotus Tea House"}
    assert "device" in challenge["methods"]  # the hardware-backed key answers it
    assert satisfy_step_up(phone, challenge)["acr"] == 3
    assert pay(phone, first).status_code == 200
    # The step-up approved that payment only (dynamic linking, issue 16 item 10a): another
    # first-time payee asks again, however fresh the proofs.
    again = step_up_asked(pay(phone, to_also_new))
    assert (again["payee"], again["amount"]) == ("Second Shop", 1_000)
    satisfy_step_up(phone, again)
    assert pay(phone, to_also_new).status_code == 200

    time.sleep(LEVEL_3_MAX_AGE_S + 0.5)
    repeat = pay(phone, second)  # a payee paid before: level 2 is enough
    assert repeat.status_code == 200, repeat.text
    stale = step_up_asked(pay(phone, to_later_new))
    assert (stale["required_acr"], stale["current_acr"]) == (3, 2)
    asked = audit_events(platform, phone.user_id, "identity:session:step_up_required")
    assert [e["detail"]["operation"] for e in asked] == ["trade.pay"] * 3


def test_the_sms_for_a_payment_step_up_names_amount_and_payee(
        quick_platform: RunningPlatform) -> None:
    platform = quick_platform
    phone = funded_phone(platform, 100_000)
    trade_no = trade_of(shop_named(platform, "Lotus Tea House"), 60_000)
    time.sleep(LEVEL_3_MAX_AGE_S + 0.5)  # the login's proofs no longer count for level 3

    challenge = step_up_asked(pay(phone, trade_no))
    assert "sms" in challenge["methods"], challenge
    sent = send_sms(platform, challenge)
    assert sent.status_code == 202, sent.text
    text = platform.sms_messages(phone.number)[0]["text"]
    assert re.search(r"\bto pay ¥600\.00 to Lotus Tea House\b", text), text

    by_sms = answer(platform, challenge, "sms", code=platform.sms_code(phone.number))
    satisfied = satisfy_step_up(phone, step_up_asked(by_sms))
    assert satisfied["acr"] == 3 and "sms" in satisfied["amr"]
    assert pay(phone, trade_no).status_code == 200
