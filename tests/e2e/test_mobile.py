"""The mobile zone: sign-up, sessions, wallet, bank top-ups and withdrawals, transfers,
idempotency keys, and request validation (4xx problems, never a 500)."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from anfu.sdk import ApiError, WalletClient
from tests.support import RunningPlatform


def phone() -> str:
    return "1" + str(secrets.randbelow(10**10)).zfill(10)


def auth(client: Any, method: str, path: str) -> dict[str, str]:
    """The customer's headers for one raw request (a fresh DPoP proof for a bound phone)."""
    return client.auth_headers(method, path)  # type: ignore[no-any-return]


def test_signup_login_refresh_rotation_and_reuse(platform_urls: RunningPlatform) -> None:
    p = phone()
    c = WalletClient(platform_urls.mobile, sms_code=lambda _: platform_urls.sms_code(p))
    c.register(p, "correct horse battery")
    with pytest.raises(ApiError) as taken:
        c.register(p, "another password")
    assert (taken.value.status, taken.value.code) == (409, "phone_taken")
    with pytest.raises(ApiError) as wrong:
        c.login(p, "wrong password!")
    assert (wrong.value.status, wrong.value.code) == (401, "invalid_credentials")
    with pytest.raises(ApiError) as unknown:
        c.login(phone(), "wrong password!")
    assert unknown.value.code == "invalid_credentials"  # same answer: no account probing
    tokens = c.login(p, "correct horse battery")
    first_refresh = tokens["refresh_token"]
    c.refresh()
    assert c.wallet()["balances"] == []
    reused = httpx.post(f"{platform_urls.mobile}/v1/sessions/refresh",
                        json={"refresh_token": first_refresh})
    assert (reused.status_code, reused.json()["code"]) == (401, "refresh_token_reused")
    after = httpx.post(f"{platform_urls.mobile}/v1/sessions/refresh",
                       json={"refresh_token": c.refresh_token})
    assert after.json()["code"] == "session_revoked"  # the whole family died


def test_short_password_and_bad_phone_refused(platform_urls: RunningPlatform) -> None:
    reply = httpx.post(f"{platform_urls.mobile}/v1/users",
                       json={"phone": phone(), "password": "short"})
    assert (reply.status_code, reply.json()["code"]) == (400, "password_too_short")
    reply = httpx.post(f"{platform_urls.mobile}/v1/users",
                       json={"phone": "12ab567", "password": "long enough pw"})
    assert reply.json()["code"] == "invalid_phone"


def test_bearer_token_required_and_checked(platform_urls: RunningPlatform) -> None:
    url = f"{platform_urls.mobile}/v1/wallet"
    assert httpx.get(url).json()["code"] == "token_missing"
    reply = httpx.get(url, headers={"Authorization": "Bearer v1.abc.def"})
    assert (reply.status_code, reply.json()["code"]) == (401, "token_invalid")


def test_topup_withdraw_and_bank_decline(funded_customer: Callable[..., Any]) -> None:
    c = funded_customer(0)
    top = c.topup(10_000, "CNY")
    assert top["status"] == "succeeded" and top["bank_reference"].startswith("SBX")
    out = c.withdraw(2_500, "CNY")
    assert out["status"] == "succeeded"
    assert c.balance("CNY") == 7_500
    declined = c.withdraw(1_013, "CNY")  # the sandbox bank declines amounts ending in 13
    assert declined["status"] == "failed" and declined["failure"]
    assert c.balance("CNY") == 7_500  # the hold was released
    with pytest.raises(ApiError) as short:
        c.withdraw(7_501, "CNY")
    assert short.value.code == "insufficient_funds"
    assert c.topup(513, "CNY")["status"] == "failed"
    assert c.balance("CNY") == 7_500
    entries = c.statement("CNY")["entries"]
    assert [e["amount"] for e in entries] == [10_000, -2_500]
    assert entries[-1]["balance_after"] == 7_500


def test_idempotency_key_replays_and_conflicts(funded_customer: Callable[..., Any],
                                               platform_urls: RunningPlatform) -> None:
    a, b = funded_customer(10_000), funded_customer(0)
    a.raise_assurance(3)  # a first-time payee needs level 3; raw requests cannot step up
    key = str(uuid.uuid4())
    body = {"to_phone": b.phone, "amount": 700, "currency": "CNY"}
    url = f"{platform_urls.mobile}/v1/transfers"
    first = httpx.post(url, json=body, headers={**auth(a, "POST", "/v1/transfers"),
                                                "Idempotency-Key": key})
    again = httpx.post(url, json=body, headers={**auth(a, "POST", "/v1/transfers"),
                                                "Idempotency-Key": key})
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json() and again.headers["idempotent-replayed"] == "true"
    other = httpx.post(url, json={**body, "amount": 701},
                       headers={**auth(a, "POST", "/v1/transfers"), "Idempotency-Key": key})
    assert (other.status_code, other.json()["code"]) == (409, "idempotency_key_reused")
    missing = httpx.post(url, json=body, headers=auth(a, "POST", "/v1/transfers"))
    assert (missing.status_code, missing.json()["code"]) == (400, "idempotency_key_required")
    assert a.balance("CNY") == 9_300 and b.balance("CNY") == 700
    top_key = str(uuid.uuid4())
    a.topup(100, "CNY", idempotency_key=top_key)
    a.topup(100, "CNY", idempotency_key=top_key)
    assert a.balance("CNY") == 9_400


def test_transfer_errors(funded_customer: Callable[..., Any]) -> None:
    a = funded_customer(1_000)
    with pytest.raises(ApiError) as nobody:
        a.transfer(100, "CNY", to_phone="19999999999")
    assert nobody.value.code == "payee_not_found"
    with pytest.raises(ApiError) as me:
        a.transfer(100, "CNY", to_phone=a.phone)
    assert me.value.code == "same_account"
    assert a.balance("CNY") == 1_000


BAD_BODIES = [
    ({"amount": 100, "currency": "CNY", "extra": 1}, 422, "validation_failed"),
    ({"amount": "100", "currency": "CNY"}, 422, "validation_failed"),
    ({"amount": 1.5, "currency": "CNY"}, 422, "validation_failed"),
    ({"amount": 0, "currency": "CNY"}, 422, "validation_failed"),
    ({"amount": -5, "currency": "CNY"}, 422, "validation_failed"),
    ({"amount": 10**13, "currency": "CNY"}, 422, "validation_failed"),
    ({"amount": 100, "currency": "XXX"}, 400, "unknown_currency"),
    ({"amount": 100, "currency": "cny"}, 422, "validation_failed"),
    ({"amount": 100}, 422, "validation_failed"),
    ([1, 2], 422, "validation_failed"),
]


@pytest.mark.parametrize(("body", "status", "code"), BAD_BODIES)
def test_bad_bodies_get_problems_and_change_nothing(body: Any, status: int, code: str,
                                                    funded_customer: Callable[..., Any],
                                                    platform_urls: RunningPlatform) -> None:
    c = funded_customer(1_000)
    reply = httpx.post(f"{platform_urls.mobile}/v1/topups", json=body,
                       headers={**auth(c, "POST", "/v1/topups"),
                                "Idempotency-Key": str(uuid.uuid4())})
    assert (reply.status_code, reply.json()["code"]) == (status, code), reply.text
    assert reply.headers["content-type"] == "application/problem+json"
    assert c.balance("CNY") == 1_000


def test_malformed_json_and_long_strings(funded_customer: Callable[..., Any],
                                         platform_urls: RunningPlatform,
                                         shop_factory: Callable[..., Any]) -> None:
    c = funded_customer(0)
    reply = httpx.post(f"{platform_urls.mobile}/v1/transfers", content=b"{not json",
                       headers={**auth(c, "POST", "/v1/transfers"), "Idempotency-Key": "k1",
                                "Content-Type": "application/json"})
    assert (reply.status_code, reply.json()["code"]) == (422, "validation_failed")
    shop = shop_factory()
    with pytest.raises(ApiError) as long_subject:
        shop.create_trade(out_trade_no="long", amount=1, currency="CNY", subject="x" * 257,
                          mode="escrow")
    assert long_subject.value.code == "validation_failed"
    with pytest.raises(ApiError) as bad_url:
        shop.create_trade(out_trade_no="url", amount=1, currency="CNY", subject="x",
                          mode="escrow", notify_url="ftp://example/x")
    assert bad_url.value.code == "invalid_notify_url"


def test_zones_are_separate_and_documented(platform_urls: RunningPlatform) -> None:
    for url, title in ((platform_urls.mobile, "mobile"), (platform_urls.merchant, "merchant"),
                       (platform_urls.admin, "admin")):
        operator = platform_urls.admin_headers if title == "admin" else None
        doc = httpx.get(f"{url}/openapi.json", headers=operator).json()
        assert title in doc["info"]["title"]
        assert httpx.get(f"{url}/healthz").json() == {"status": "ok", "zone": title}
    mobile = set(httpx.get(f"{platform_urls.mobile}/openapi.json").json()["paths"])
    merchant = set(httpx.get(f"{platform_urls.merchant}/openapi.json").json()["paths"])
    admin = set(httpx.get(f"{platform_urls.admin}/openapi.json",
                          headers=platform_urls.admin_headers).json()["paths"])
    assert "/v1/trades/{trade_no}/pay" in mobile and "/v1/trades/{trade_no}/pay" not in merchant
    assert "/v1/merchants" in admin and "/v1/merchants" not in merchant | mobile
    assert httpx.post(f"{platform_urls.mobile}/v1/merchants", json={}).status_code == 404
    assert httpx.get(f"{platform_urls.mobile}/metrics").status_code == 404
    assert "anfu_http_requests_total" in httpx.get(f"{platform_urls.admin}/metrics",
                                                   headers=platform_urls.admin_headers).text
    assert httpx.get(f"{platform_urls.admin}/v1/ledger/check",
                     headers=platform_urls.admin_headers).json()["ok"] is True


def test_password_guessing_locks_the_account_with_the_same_answer(
        platform_urls: RunningPlatform) -> None:
    c = WalletClient(platform_urls.mobile)
    p = phone()
    c.register(p, "correct horse battery")
    answers = []
    for guess in ("wrong one 1", "wrong one 2"):  # two failures within 1 s: Keycloak's
        reply = httpx.post(f"{platform_urls.mobile}/v1/sessions",  # quick-login check
                           json={"phone": p, "password": guess})
        answers.append((reply.status_code, reply.json()["code"], reply.json()["detail"]))
    locked = httpx.post(f"{platform_urls.mobile}/v1/sessions",
                        json={"phone": p, "password": "correct horse battery"})
    assert (locked.status_code, locked.json()["code"], locked.json()["detail"]) == answers[0]
    assert answers[0] == answers[1]
    assert "identity:account:locked" in platform_urls.logs()


def test_guessing_from_one_address_locks_the_address(tmp_path: Any) -> None:
    from tests.support import start_platform

    platform = start_platform(tmp_path / "throttle")
    try:
        c = WalletClient(platform.mobile)
        p = phone()
        c.register(p, "correct horse battery")
        with httpx.Client(base_url=platform.mobile) as http:
            for n in range(100):  # unknown phones: only the address is counted
                reply = http.post("/v1/sessions", json={"phone": phone(), "password": f"x{n}"})
                assert reply.json()["code"] == "invalid_credentials"
            refused = http.post("/v1/sessions",
                                json={"phone": p, "password": "correct horse battery"})
        assert (refused.status_code, refused.json()["code"]) == (401, "invalid_credentials")
    finally:
        platform.stop()
