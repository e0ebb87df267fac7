"""A phone app's side of the identity API, on the wire, for the device, DPoP, session and
step-up tests: sign-up, the two-step login, device registration, requests signed with a DPoP
proof, and the admin zone's audit trail. Raw httpx, so a test sees exactly what crosses the
wire; the SDK (``anfu.sdk.WalletClient``) is used where the test is about the SDK."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from anfu.crypto.jose import DeviceKey, JoseAlg
from tests.support import PASSWORD, RunningPlatform, start_platform

# One code per phone per minute is the platform's default: these tests log the same
# customer in from several phones within seconds.
LIFTED_SMS_LIMITS = "100000/60"
Json = dict[str, Any]


def identity_platform(home: Path, **env: str) -> RunningPlatform:
    return start_platform(home, ANFU_SMS_PHONE_LIMITS=LIFTED_SMS_LIMITS, **env)


def new_phone_number() -> str:
    return "1" + str(secrets.randbelow(10**10)).zfill(10)


def problem_code(reply: httpx.Response) -> str:
    return str(reply.json().get("code"))


def refused_with(reply: httpx.Response) -> tuple[int, str]:
    return reply.status_code, problem_code(reply)


def sign_up(platform: RunningPlatform) -> str:
    number = new_phone_number()
    reply = httpx.post(f"{platform.mobile}/v1/users",
                       json={"phone": number, "password": PASSWORD})
    assert reply.status_code == 201, reply.text
    return number


def start_login(platform: RunningPlatform, number: str,
                device_id: str | None = None) -> Json:
    """The login's first step (password): the challenge of its second step."""
    body: Json = {"phone": number, "password": PASSWORD}
    if device_id is not None:
        body["device_id"] = device_id
    reply = httpx.post(f"{platform.mobile}/v1/sessions", json=body)
    assert reply.status_code == 401 and problem_code(reply) == "step_up_required", reply.text
    return dict(reply.json())


def answer(platform: RunningPlatform, challenge: Json, body: Json) -> httpx.Response:
    return httpx.post(f"{platform.mobile}/v1/auth/challenges/{challenge['challenge_id']}",
                      json=body)


def answer_with_sms(platform: RunningPlatform, number: str, challenge: Json) -> httpx.Response:
    sent = httpx.post(
        f"{platform.mobile}/v1/auth/challenges/{challenge['challenge_id']}/sms", json={})
    assert sent.status_code == 202, sent.text
    return answer(platform, challenge, {"method": "sms", "code": platform.sms_code(number)})


def device_signature(key: DeviceKey, challenge: Json, user_id: str, device_id: str) -> Json:
    return {"method": "device", "device_id": device_id,
            "signature": key.sign_device_challenge(challenge["nonce"], user_id, device_id,
                                                   challenge["operation"])}


def audit_events(platform: RunningPlatform, user_id: str, name: str) -> list[Json]:
    reply = httpx.get(f"{platform.admin}/v1/audit", params={"user_id": user_id, "name": name})
    reply.raise_for_status()
    return list(reply.json()["events"])


def device_body(key: DeviceKey, *, name: str = "test phone", key_storage: str = "hardware",
                rooted: bool = False, emulator: bool = False) -> Json:
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
            return {"Authorization": f"Bearer {self.token}"}
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

    def bind(self, key: DeviceKey | None = None, **report: Any) -> Json:
        """Register a new device key, proving possession with a DPoP proof by it."""
        key = key or DeviceKey.generate("ES256")
        headers = {"Authorization": f"Bearer {self.token}",
                   "DPoP": key.dpop_proof("POST", self.url("/v1/devices"))}
        reply = self.call("POST", "/v1/devices", device_body(key, **report), headers=headers)
        assert reply.status_code == 201, reply.text
        device = dict(reply.json())
        assert device["session_bound"] is True
        self.key, self.device_id = key, device["device_id"]
        self.tokens = {**self.tokens, "token_type": "DPoP"}
        return device

    def signed(self, challenge: Json) -> Json:
        """This phone's device answer to ``challenge``: its key's signature."""
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


def login_with_sms(platform: RunningPlatform, number: str) -> Phone:
    """A new phone: password and the SMS code; an unbound (Bearer) session."""
    challenge = start_login(platform, number)
    assert challenge["methods"] == ["sms"], challenge
    reply = answer_with_sms(platform, number, challenge)
    assert reply.status_code == 201, reply.text
    return Phone(platform, number, dict(reply.json()))


def login_on_device(platform: RunningPlatform, number: str, user_id: str, key: DeviceKey,
                    device_id: str) -> Phone:
    """A bound phone: password and its key's signature (over the user id the app kept
    with the key); a DPoP-bound session."""
    challenge = start_login(platform, number, device_id)
    assert challenge["methods"] == ["device"], challenge
    reply = answer(platform, challenge, device_signature(key, challenge, user_id, device_id))
    assert reply.status_code == 201, reply.text
    return Phone(platform, number, dict(reply.json()), key, device_id)


def login_with_sim(platform: RunningPlatform, number: str) -> Phone:
    """One factor: the (sandbox) operator's network token for the SIM holding ``number``."""
    token = httpx.post(f"{platform.mobile}/sandbox/carrier/network-token",
                       json={"phone": number})
    assert token.status_code == 200, token.text
    reply = httpx.post(f"{platform.mobile}/v1/sessions/sim",
                       json={"phone": number, "network_token": token.json()["network_token"]})
    assert reply.status_code == 201, reply.text
    return Phone(platform, number, dict(reply.json()))


def satisfy_step_up(phone: Phone, challenge: Json) -> Json:
    """Answer a step-up challenge the way the app does (device key, else password, else the
    SMS code) until it is satisfied; the platform's 200 answer."""
    platform = phone.platform
    for _ in range(4):
        methods = challenge["methods"]
        if "device" in methods and phone.key is not None:
            reply = answer(platform, challenge, phone.signed(challenge))
        elif "password" in methods:
            reply = answer(platform, challenge, {"method": "password", "password": PASSWORD})
        elif "sms" in methods:
            reply = answer_with_sms(platform, phone.number, challenge)
        else:
            raise AssertionError(f"no method this phone has is offered: {challenge}")
        if reply.status_code == 200:
            return dict(reply.json())
        assert problem_code(reply) == "step_up_required", reply.text
        challenge = reply.json()
    raise AssertionError(f"the step-up was not satisfied: {challenge}")


def new_bound_phone(platform: RunningPlatform, *, alg: JoseAlg = "ES256",
                    **report: Any) -> Phone:
    """A new customer, logged in with password and SMS on a phone whose key is then bound."""
    number = sign_up(platform)
    phone = login_with_sms(platform, number)
    phone.bind(DeviceKey.generate(alg), **report)
    return phone
