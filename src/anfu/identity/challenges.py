"""Authentication challenges: one login, password reset or step-up in progress.

A challenge says what must be proved (``Requirement``: methods that must all appear, methods
of which one must appear, and a minimum assurance level), collects proofs as the client
answers, and completes once, when the proofs satisfy it. Its ``nonce`` (256 random bits) is
what a device key or a passkey signs; device answers are taken only within
``DEVICE_ANSWER_S`` of issue, and the challenge itself expires after ``CHALLENGE_TTL_S``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

import orjson

from anfu.crypto.tokens import random_token
from anfu.errors import AuthenticationFailed
from anfu.identity.assurance import AuthPolicy, level_of

CHALLENGE_TTL_S = 300.0
DEVICE_ANSWER_S = 120.0


class ChallengeKind(StrEnum):
    LOGIN = "login"
    STEP_UP = "step_up"
    RESET = "reset"
    # What a phone's Keystore attests a new key with (api/devices.py): never answered here.
    DEVICE_ATTESTATION = "device_attest"

    @property
    def answerable(self) -> bool:
        """Whether the challenge routes take answers (and send SMS codes) for it."""
        return self is not ChallengeKind.DEVICE_ATTESTATION


@dataclass(frozen=True, slots=True)
class Requirement:
    all_of: tuple[str, ...] = ()
    any_of: tuple[str, ...] = ()
    acr: int = 1

    def met_by(self, proofs: Mapping[str, float], policy: AuthPolicy, now: float) -> bool:
        amr = set(proofs)
        if not set(self.all_of) <= amr:
            return False
        if self.any_of and not amr & set(self.any_of):
            return False
        if self.all_of or self.any_of:
            return level_of(amr) >= self.acr
        return policy.acr(proofs, now) >= self.acr

    def to_json(self) -> str:
        return orjson.dumps({"all": list(self.all_of), "any": list(self.any_of)}).decode()

    @classmethod
    def from_row(cls, text: str, acr: int) -> Requirement:
        data = orjson.loads(text)
        return cls(tuple(data.get("all", ())), tuple(data.get("any", ())), acr)


@dataclass(frozen=True, slots=True)
class AuthChallenge:
    challenge_id: str
    kind: ChallengeKind
    user_id: str | None
    operation: str
    requirement: Requirement
    nonce: str
    client_address: str
    created_at: float
    expires_at: float
    proofs: dict[str, float] = field(default_factory=dict)
    session_id: str | None = None
    device_id: str | None = None
    amount: int | None = None
    currency: str | None = None
    payee: str | None = None
    sms_challenge_id: str | None = None
    completed_at: float | None = None
    payee_id: str | None = None  # the payee's id (merchant, customer, bank) behind its name
    phone: str | None = None  # a reset's phone, whether or not it has an account

    def check_open(self, now: float) -> None:
        if self.completed_at is not None or now >= self.expires_at:
            raise AuthenticationFailed("this challenge has expired or was already completed;"
                                       " start again", code="challenge_expired")

    def check_device_window(self, now: float) -> None:
        if now - self.created_at > DEVICE_ANSWER_S:
            raise AuthenticationFailed(
                f"a device must answer within {int(DEVICE_ANSWER_S)} s of the challenge;"
                " start again", code="challenge_expired")

    def with_proofs(self, amr: Iterable[str], now: float) -> AuthChallenge:
        return replace(self, proofs={**self.proofs, **dict.fromkeys(amr, now)})

    def satisfied(self, policy: AuthPolicy, now: float) -> bool:
        return self.requirement.met_by(self.proofs, policy, now)

    def public(self) -> dict[str, Any]:
        out: dict[str, Any] = {"challenge_id": self.challenge_id, "kind": self.kind.value,
                               "operation": self.operation,
                               "required_acr": self.requirement.acr,
                               "proved": sorted(self.proofs), "nonce": self.nonce,
                               "expires_at": self.expires_at}
        if self.amount is not None:
            out.update(amount=self.amount, currency=self.currency, payee=self.payee)
        return out


def new_challenge(kind: ChallengeKind, *, user_id: str | None, operation: str,
                  requirement: Requirement, client_address: str, now: float,
                  proofs: Mapping[str, float] | None = None, session_id: str | None = None,
                  device_id: str | None = None, amount: int | None = None,
                  currency: str | None = None, payee: str | None = None,
                  payee_id: str | None = None, phone: str | None = None) -> AuthChallenge:
    return AuthChallenge(
        challenge_id="ach_" + random_token(18), kind=kind, user_id=user_id,
        operation=operation, requirement=requirement, nonce=random_token(32),
        client_address=client_address, created_at=now, expires_at=now + CHALLENGE_TTL_S,
        proofs=dict(proofs or {}), session_id=session_id, device_id=device_id,
        amount=amount, currency=currency, payee=payee, payee_id=payee_id, phone=phone)


def login_requirement(*, known_device: bool, totp_enrolled: bool) -> Requirement:
    """A known device: password and its key. A new device: password and an SMS code, plus
    the TOTP code (or one of its recovery codes) when the customer enrolled one (book ch.
    6.5: a stolen password and a new phone must not be enough)."""
    if known_device:
        return Requirement(all_of=("pwd",), any_of=("swk", "hwk"), acr=2)
    return Requirement(all_of=("pwd", "sms"), any_of=("otp", "rec") if totp_enrolled else (),
                       acr=2)


def reset_requirement(second_factors: Iterable[str]) -> Requirement:
    """A password reset: the SMS code, and one more enrolled factor if there is one."""
    return Requirement(all_of=("sms",), any_of=tuple(second_factors), acr=1)
