"""The identity API on the wire, for the end-to-end tests of this package: sign-up, the login
challenge and its answers (SMS code, device signature, password, TOTP, recovery code, passkey),
SIM login, a phone app holding a session and maybe a bound device key (DPoP), step-up, the
sandbox outbox and carrier, the admin audit trail, and an authenticator app that computes TOTP
codes from the enrolment secret. Raw httpx, so a test sees exactly what crosses the wire; the
SDK (``anfu.sdk.WalletClient``) is used where the test is about the SDK."""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from anfu.crypto.jose import DeviceKey, JoseAlg
from anfu.crypto.otp import TOTP_PERIOD_S, totp_code
from anfu.sdk import WalletClient
from tests.softattest import shared_keystore
from tests.support import PASSWORD, RunningPlatform, new_customer, start_platform

Json = dict[str, Any]

# The SMS gateway keeps 1 code a minute per phone by default; tests that are not about that
# limit send several codes to one phone (or log one customer in from several phones) within
# a minute.
LIFTED_PHONE_LIMITS = "100000/60"
# Keycloak's quick-login check: two failures of one secret closer than 1 s lock it. Tests
# that deliberately fail more than once (and are not about the lock) wait this long between.
PAST_QUICK_CHECK_S = 1.1


def start_identity_platform(home: Path, **overrides: str) -> RunningPlatform:
    """A platform of the test module's own: these tests fail secrets on purpose, and every
    failure from 127.0.0.1 counts against that one address's throttle."""
    return start_platform(home, **{"ANFU_SMS_PHONE_LIMITS": LIFTED_PHONE_LIMITS, **overrides})


def new_phone_number() -> str:
    return "1" + str(secrets.randbelow(10**10)).zfill(10)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def problem(reply: httpx.Response, status: int, code: str) -> Json:
    """The problem+json body of ``reply``, after checking its status and ``code``."""
    assert reply.headers["content-type"].startswith("application/problem+json"), reply.text
    body: Json = reply.json()
    assert (reply.status_code, body["code"]) == (status, code), reply.text
    return body


def sign_up(platform: RunningPlatform, number: str | None = None,
            password: str = PASSWORD) -> tuple[str, str]:
    """A new account (no session); returns (phone number, user_id)."""
    number = number or new_phone_number()
    reply = httpx.post(f"{platform.mobile}/v1/users",
                       json={"phone": number, "password": password})
    assert reply.status_code == 201, reply.text
    return number, reply.json()["user_id"]


def start_login(platform: RunningPlatform, number: str, password: str = PASSWORD,
                device_id: str | None = None) -> httpx.Response:
    """The login's first step as sent: the password (and the device a bound phone names)."""
    body: Json = {"phone": number, "password": password}
    if device_id is not None:
        body["device_id"] = device_id
    return httpx.post(f"{platform.mobile}/v1/sessions", json=body)


def login_challenge(platform: RunningPlatform, number: str, password: str = PASSWORD,
                    device_id: str | None = None) -> Json:
    """The challenge a right password opens (401 step_up_required, kind login)."""
    body = problem(start_login(platform, number, password, device_id), 401, "step_up_required")
    assert body["kind"] == "login"
    return body


def answer(platform: RunningPlatform, challenge: Json, method: str,
           **fields: Any) -> httpx.Response:
    """Answer a login, step-up or reset challenge by one ``method``."""
    return httpx.post(f"{platform.mobile}/v1/auth/challenges/{challenge['challenge_id']}",
                      json={"method": method, **fields})


def send_sms(platform: RunningPlatform, challenge: Json) -> httpx.Response:
    return httpx.post(f"{platform.mobile}/v1/auth/challenges/{challenge['challenge_id']}/sms")


def sms_code_for(platform: RunningPlatform, challenge: Json, number: str) -> str:
    """Ask for the challenge's SMS code and read it from the sandbox outbox."""
    reply = send_sms(platform, challenge)
    assert reply.status_code == 202, reply.text
    return platform.sms_code(number)


def answer_with_sms(platform: RunningPlatform, challenge: Json,
                    number: str) -> httpx.Response:
    return answer(platform, challenge, "sms", code=sms_code_for(platform, challenge, number))


def other_code(code: str) -> str:
    """A code of the same shape that is certainly not ``code``."""
    return str((int(code) + 1) % 10 ** len(code)).zfill(len(code))


def network_token(platform: RunningPlatform, number: str) -> str:
    """What the sandbox operator hands the app on the SIM holding ``number``."""
    reply = httpx.post(f"{platform.mobile}/sandbox/carrier/network-token",
                       json={"phone": number})
    assert reply.status_code == 200, reply.text
    return str(reply.json()["network_token"])


def send_network_token(platform: RunningPlatform, number: str, token: str) -> httpx.Response:
    """The SIM login as sent: one factor, the operator's network token."""
    return httpx.post(f"{platform.mobile}/v1/sessions/sim",
                      json={"phone": number, "network_token": token})


def me(platform: RunningPlatform, access_token: str) -> httpx.Response:
    return httpx.get(f"{platform.mobile}/v1/me", headers=bearer(access_token))


def audit_events(platform: RunningPlatform, user_id: str, name: str) -> list[Json]:
    reply = httpx.get(f"{platform.admin}/v1/audit",
                      headers=platform.admin_headers, params={"user_id": user_id, "name": name})
    assert reply.status_code == 200, reply.text
    return list(reply.json()["events"])


def unlock(platform: RunningPlatform, user_id: str) -> None:
    reply = httpx.post(f"{platform.admin}/v1/users/{user_id}/unlock",
                       headers=platform.admin_headers)
    assert reply.status_code == 200, reply.text


def sms_texts(platform: RunningPlatform, number: str) -> list[str]:
    return [m["text"] for m in platform.sms_messages(number)]


# --- a phone app and its device key -------------------------------------------------------
def device_signature(key: DeviceKey, challenge: Json, user_id: str, device_id: str) -> Json:
    """The fields of a ``device`` answer: ``key``'s signature over the challenge."""
    return {"device_id": device_id,
            "signature": key.sign_device_challenge(challenge["nonce"], user_id, device_id,
                                                   challenge["operation"])}


def device_body(key: DeviceKey, *, name: str = "test phone", key_storage: str = "hardware",
                rooted: bool = False, emulator: bool = False) -> Json:
    """A device registration: ``key``'s public half and what the app reports of its phone."""
    return {"name": name, "public_jwk": dict(key.public.jwk), "app_id": "dev.anfu.wallet",
            "app_version": "1.0.0", "app_cert_sha256": hashlib.sha256(b"anfu").hexdigest(),
            "os": "android 15", "rooted": rooted, "emulator": emulator,
            "key_storage": key_storage}


@dataclass
class Phone:
    """One phone app holding one session of ``number`` (and maybe a bound device key)."""

    platform: RunningPlatform
    number: str
    tokens: Json
    key: DeviceKey | None = None
    device_id: str | None = None

    @property
    def user_id(self) -> str:
        return str(self.tokens["user_id"])

    @property
    def token(self) -> str:
        return str(self.tokens["access_token"])

    @property
    def bound(self) -> bool:
        return self.tokens.get("token_type") == "DPoP"

    def url(self, path: str) -> str:
        return self.platform.mobile + path

    def auth(self, method: str, path: str) -> dict[str, str]:
        """What an honest app sends: Bearer, or DPoP and a fresh proof once bound."""
        if not self.bound:
            return bearer(self.token)
        assert self.key is not None
        return {"Authorization": f"DPoP {self.token}",
                "DPoP": self.key.dpop_proof(method, self.url(path), access_token=self.token)}

    def call(self, method: str, path: str, body: Json | None = None, *,
             headers: dict[str, str] | None = None, money: bool = False) -> httpx.Response:
        """``headers`` replaces the honest ones (a test forging or replaying them)."""
        sent = dict(headers if headers is not None else self.auth(method, path))
        if money:
            sent["Idempotency-Key"] = str(uuid.uuid4())
        return httpx.request(method, self.url(path), json=body, headers=sent, timeout=10)

    def attestation(self, key: DeviceKey, **forged: Any) -> Json:
        """The test Keystore's attestation of ``key`` for a fresh platform challenge
        (``forged`` passes a bad challenge, level, validity or key to the Keystore)."""
        reply = self.call("POST", "/v1/devices/attestation-challenge")
        assert reply.status_code == 201, reply.text
        issued = reply.json()
        challenge = forged.pop("challenge", issued["challenge"].encode("ascii"))
        keystore = forged.pop("keystore", shared_keystore())
        return {"format": "android-key", "challenge_id": issued["challenge_id"],
                "certificate_chain": keystore.attest(key, challenge, **forged)}

    def bind(self, key: DeviceKey | None = None, *, attested: bool | None = None,
             **report: Any) -> Json:
        """Register a new device key, proving possession with a DPoP proof by it; a key
        reported as kept in hardware comes with the test Keystore's attestation unless
        ``attested`` is False."""
        key = key or DeviceKey.generate("ES256")
        body = device_body(key, **report)
        if attested if attested is not None else body["key_storage"] == "hardware":
            body["attestation"] = self.attestation(key)
        headers = {**bearer(self.token), "DPoP": key.dpop_proof("POST", self.url("/v1/devices"))}
        reply = self.call("POST", "/v1/devices", body, headers=headers)
        assert reply.status_code == 201, reply.text
        device = dict(reply.json())
        assert device["session_bound"] is True
        self.key, self.device_id = key, device["device_id"]
        self.tokens = {**self.tokens, "token_type": "DPoP"}
        return device

    def signed(self, challenge: Json) -> Json:
        """This phone's ``device`` answer to ``challenge``: its key's signature."""
        assert self.key is not None and self.device_id is not None, "no device key is bound"
        return device_signature(self.key, challenge, self.user_id, self.device_id)

    def refresh(self, *, proof_key: DeviceKey | None = None) -> httpx.Response:
        key = proof_key or self.key
        headers = {}
        if self.bound and key is not None:
            headers["DPoP"] = key.dpop_proof("POST", self.url("/v1/sessions/refresh"))
        reply = httpx.post(self.url("/v1/sessions/refresh"), headers=headers,
                           json={"refresh_token": self.tokens["refresh_token"]})
        if reply.status_code == 201:
            self.tokens = dict(reply.json())
        return reply


def login_with_sms(platform: RunningPlatform, number: str, password: str = PASSWORD) -> Phone:
    """A new phone: password and the SMS code; an unbound (Bearer) session."""
    challenge = login_challenge(platform, number, password)
    assert challenge["methods"] == ["sms"], challenge
    reply = answer_with_sms(platform, challenge, number)
    assert reply.status_code == 201, reply.text
    return Phone(platform, number, dict(reply.json()))


def login_on_device(platform: RunningPlatform, number: str, user_id: str, key: DeviceKey,
                    device_id: str) -> Phone:
    """A bound phone: password and its key's signature (over the user id the app kept
    with the key); a DPoP-bound session."""
    challenge = login_challenge(platform, number, device_id=device_id)
    assert challenge["methods"] == ["device"], challenge
    reply = answer(platform, challenge, "device",
                   **device_signature(key, challenge, user_id, device_id))
    assert reply.status_code == 201, reply.text
    return Phone(platform, number, dict(reply.json()), key, device_id)


def login_with_sim(platform: RunningPlatform, number: str) -> Phone:
    """One factor: the (sandbox) operator's network token for the SIM holding ``number``."""
    reply = send_network_token(platform, number, network_token(platform, number))
    assert reply.status_code == 201, reply.text
    return Phone(platform, number, dict(reply.json()))


def new_bound_phone(platform: RunningPlatform, *, alg: JoseAlg = "ES256",
                    **report: Any) -> Phone:
    """A new customer, logged in with password and SMS on a phone whose key is then bound."""
    number, _ = sign_up(platform)
    phone = login_with_sms(platform, number)
    phone.bind(DeviceKey.generate(alg), **report)
    return phone


def satisfy_step_up(phone: Phone, challenge: Json) -> Json:
    """Answer a step-up challenge the way the app does (device key, else password, else the
    SMS code) until it is satisfied; the platform's 200 answer."""
    platform = phone.platform
    for _ in range(4):
        methods = challenge["methods"]
        if "device" in methods and phone.key is not None:
            reply = answer(platform, challenge, "device", **phone.signed(challenge))
        elif "password" in methods:
            reply = answer(platform, challenge, "password", password=PASSWORD)
        elif "sms" in methods:
            reply = answer_with_sms(platform, challenge, phone.number)
        else:
            raise AssertionError(f"no method this phone has is offered: {challenge}")
        if reply.status_code == 200:
            return dict(reply.json())
        challenge = problem(reply, 401, "step_up_required")
    raise AssertionError(f"the step-up was not satisfied: {challenge}")


# --- the authenticator app (TOTP) and recovery codes --------------------------------------
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


def enrolment(client: WalletClient) -> Json:
    reply = httpx.post(f"{client.base_url}/v1/factors/totp",
                       headers=client.auth_headers("POST", "/v1/factors/totp"))
    assert reply.status_code == 201, reply.text
    return dict(reply.json())


def confirm_totp(client: WalletClient, code: str) -> httpx.Response:
    return httpx.post(f"{client.base_url}/v1/factors/totp/confirm", json={"code": code},
                      headers=client.auth_headers("POST", "/v1/factors/totp/confirm"))


def totp_customer(platform: RunningPlatform) -> TotpCustomer:
    client = new_customer(platform, bind_device=False)
    app = AuthenticatorApp(enrolment(client)["secret"])
    reply = confirm_totp(client, app.code())
    assert reply.status_code == 200, reply.text
    return TotpCustomer(client, client.phone, client.user_id, app,
                        list(reply.json()["recovery_codes"]))


def login_to_second_factor(platform: RunningPlatform, number: str) -> Json:
    """A TOTP customer's login with password and SMS code answered: the 401 that asks for
    the authenticator code (or a recovery code)."""
    challenge = login_challenge(platform, number)
    return problem(answer_with_sms(platform, challenge, number), 401, "step_up_required")
