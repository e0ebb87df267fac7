"""The identity API on the wire, for the end-to-end tests of this package: sign-up, the login
challenge and its answers, the sandbox outbox and carrier, the admin audit trail, and an
authenticator app that computes TOTP codes from the enrolment secret."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from anfu.crypto.otp import TOTP_PERIOD_S, totp_code
from anfu.sdk import WalletClient
from tests.support import PASSWORD, RunningPlatform, new_customer, start_platform

# The SMS gateway keeps 1 code a minute per phone by default; tests that are not about that
# limit send several codes to one phone within a minute.
LIFTED_PHONE_LIMITS = "100000/60"
# Keycloak's quick-login check: two failures of one secret closer than 1 s lock it. Tests
# that deliberately fail more than once (and are not about the lock) wait this long between.
PAST_QUICK_CHECK_S = 1.1


def start_identity_platform(home: Path, **overrides: str) -> RunningPlatform:
    """A platform of the test module's own: these tests fail secrets on purpose, and every
    failure from 127.0.0.1 counts against that one address's throttle."""
    return start_platform(home, **{"ANFU_SMS_PHONE_LIMITS": LIFTED_PHONE_LIMITS, **overrides})


def new_phone() -> str:
    return "1" + str(secrets.randbelow(10**10)).zfill(10)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def problem(reply: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The problem+json body of ``reply``, after checking its status and ``code``."""
    assert reply.headers["content-type"].startswith("application/problem+json"), reply.text
    body: dict[str, Any] = reply.json()
    assert (reply.status_code, body["code"]) == (status, code), reply.text
    return body


def sign_up(p: RunningPlatform, phone: str | None = None,
            password: str = PASSWORD) -> tuple[str, str]:
    """A new account (no session); returns (phone, user_id)."""
    phone = phone or new_phone()
    reply = httpx.post(f"{p.mobile}/v1/users", json={"phone": phone, "password": password})
    assert reply.status_code == 201, reply.text
    return phone, reply.json()["user_id"]


def start_login(p: RunningPlatform, phone: str, password: str = PASSWORD) -> httpx.Response:
    return httpx.post(f"{p.mobile}/v1/sessions", json={"phone": phone, "password": password})


def login_challenge(p: RunningPlatform, phone: str, password: str = PASSWORD) -> dict[str, Any]:
    """The challenge a right password opens (401 step_up_required, kind login)."""
    body = problem(start_login(p, phone, password), 401, "step_up_required")
    assert body["kind"] == "login"
    return body


def send_sms(p: RunningPlatform, challenge_id: str) -> httpx.Response:
    return httpx.post(f"{p.mobile}/v1/auth/challenges/{challenge_id}/sms")


def sms_code_for(p: RunningPlatform, challenge_id: str, phone: str) -> str:
    """Ask for the challenge's SMS code and read it from the sandbox outbox."""
    reply = send_sms(p, challenge_id)
    assert reply.status_code == 202, reply.text
    return p.sms_code(phone)


def answer(p: RunningPlatform, challenge_id: str, method: str,
           **fields: str) -> httpx.Response:
    return httpx.post(f"{p.mobile}/v1/auth/challenges/{challenge_id}",
                      json={"method": method, **fields})


def other_code(code: str) -> str:
    """A code of the same shape that is certainly not ``code``."""
    return str((int(code) + 1) % 10 ** len(code)).zfill(len(code))


def sms_login(p: RunningPlatform, phone: str, password: str = PASSWORD) -> dict[str, Any]:
    """Password and SMS code on a new device; returns the 201 tokens."""
    challenge = login_challenge(p, phone, password)
    code = sms_code_for(p, challenge["challenge_id"], phone)
    reply = answer(p, challenge["challenge_id"], "sms", code=code)
    assert reply.status_code == 201, reply.text
    return dict(reply.json())


def network_token(p: RunningPlatform, phone: str) -> str:
    """What the sandbox operator hands the app on the SIM holding ``phone``."""
    reply = httpx.post(f"{p.mobile}/sandbox/carrier/network-token", json={"phone": phone})
    assert reply.status_code == 200, reply.text
    return str(reply.json()["network_token"])


def sim_login(p: RunningPlatform, phone: str, token: str) -> httpx.Response:
    return httpx.post(f"{p.mobile}/v1/sessions/sim",
                      json={"phone": phone, "network_token": token})


def me(p: RunningPlatform, access_token: str) -> httpx.Response:
    return httpx.get(f"{p.mobile}/v1/me", headers=bearer(access_token))


def audit_events(p: RunningPlatform, user_id: str, name: str) -> list[dict[str, Any]]:
    reply = httpx.get(f"{p.admin}/v1/audit", params={"user_id": user_id, "name": name})
    assert reply.status_code == 200, reply.text
    return list(reply.json()["events"])


def unlock(p: RunningPlatform, user_id: str) -> None:
    reply = httpx.post(f"{p.admin}/v1/users/{user_id}/unlock")
    assert reply.status_code == 200, reply.text


def sms_texts(p: RunningPlatform, phone: str) -> list[str]:
    return [m["text"] for m in p.sms_messages(phone)]


@dataclass
class AuthenticatorApp:
    """The customer's authenticator app: TOTP codes from the enrolment secret. The platform
    takes each 30-second step once and only a later one after it, within one step of its
    clock, so ``code`` hands out increasing steps and waits when none is usable."""

    secret: str
    last_step: int = -1

    def code(self) -> str:
        while True:
            now = time.time()
            current = int(now // TOTP_PERIOD_S)
            step = max(self.last_step + 1, current - 1)
            if step == current - 1 and now % TOTP_PERIOD_S > TOTP_PERIOD_S - 10:
                step = current  # the previous step leaves the window soon: a slow test
            if step <= current + 1:
                break
            time.sleep(TOTP_PERIOD_S - now % TOTP_PERIOD_S + 0.05)
        self.last_step = step
        return totp_code(self.secret, at=step * TOTP_PERIOD_S)

    def wrong_code(self) -> str:
        """A code that matches no step near now."""
        current = int(time.time() // TOTP_PERIOD_S)
        near = {totp_code(self.secret, at=(current + d) * TOTP_PERIOD_S) for d in range(-2, 3)}
        return next(c for c in (f"{n:06d}" for n in range(10**6)) if c not in near)


@dataclass
class TotpCustomer:
    """A customer with an authenticator app enrolled and the recovery codes it gave."""

    client: WalletClient  # logged in with password and SMS code: a Bearer session
    phone: str
    user_id: str
    app: AuthenticatorApp
    recovery_codes: list[str]


def enrolment(client: WalletClient) -> dict[str, Any]:
    reply = httpx.post(f"{client.base_url}/v1/factors/totp",
                       headers=client.auth_headers("POST", "/v1/factors/totp"))
    assert reply.status_code == 201, reply.text
    return dict(reply.json())


def confirm_totp(client: WalletClient, code: str) -> httpx.Response:
    return httpx.post(f"{client.base_url}/v1/factors/totp/confirm", json={"code": code},
                      headers=client.auth_headers("POST", "/v1/factors/totp/confirm"))


def totp_customer(p: RunningPlatform) -> TotpCustomer:
    client = new_customer(p, bind_device=False)
    app = AuthenticatorApp(enrolment(client)["secret"])
    reply = confirm_totp(client, app.code())
    assert reply.status_code == 200, reply.text
    return TotpCustomer(client, client.phone, client.user_id, app,
                        list(reply.json()["recovery_codes"]))


def login_to_second_factor(p: RunningPlatform, phone: str) -> dict[str, Any]:
    """A TOTP customer's login with password and SMS code answered: the 401 that asks for
    the authenticator code (or a recovery code)."""
    challenge = login_challenge(p, phone)
    code = sms_code_for(p, challenge["challenge_id"], phone)
    return problem(answer(p, challenge["challenge_id"], "sms", code=code), 401,
                   "step_up_required")

