"""The contract with a mobile network operator for SIM-based login (book ch. 6.6.6).

An app on the phone obtains a short-lived *network token* from the operator over the phone's
own data connection; only the SIM that holds the number can get one. The platform asks the
operator whether the token belongs to the phone number the user claims
(``verify_network_token``), and when that number's SIM last changed (``last_sim_change``: a
recent change is the signature of SIM-swap fraud, a risk signal).

Every reply is signed by the operator. ``CarrierAdapter`` believes a reply only after its
signature verifies under the operator's key and the reply names this very request: the phone
number, the SHA-256 of the token, and a fresh random nonce the adapter sent. So a reply cannot
be forged, altered, or replayed for another number, token or call.

Verification raises, never returns a bool: a token that does not prove the number raises
``NetworkTokenRefused`` (an ``AuthenticationFailed`` whose ``code`` names why).
"""

from __future__ import annotations

import abc
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, get_args

from anfu import crypto, errors

Clock = Callable[[], float]
"""Unix seconds, injected so that tests move time instead of sleeping."""

VerdictStatus = Literal["match", "mismatch", "expired", "used", "unknown"]
"""``match``: the token was issued to this number and is spent now. ``mismatch``: it was
issued to another number. ``expired`` / ``used``: too old, or presented before. ``unknown``:
the operator never issued it (or forgot it long ago)."""

VERSION = "ANFU-CARRIER-V1"
PHONE = re.compile(r"^\+?[0-9]{6,15}$")  # the same rule as the identity service
MAX_TOKEN_CHARS = 2048

_REFUSALS: dict[str, tuple[str, str]] = {
    "mismatch": ("network_token_wrong_phone",
                 "the network token was issued to another phone number; log in with the"
                 " number of the SIM in this phone, or with password and SMS code"),
    "expired": ("network_token_expired",
                "the network token has expired; ask the app for a new one"),
    "used": ("network_token_used",
             "the network token was already used; each token proves the number once"),
    "unknown": ("network_token_unknown",
                "the operator did not issue this network token; ask the app for a new one"),
}


def canonical_time(when: datetime) -> str:
    """The one text form a time takes in signed bytes: UTC, microseconds, ``Z``."""
    if when.tzinfo is None:
        raise ValueError("times must carry a time zone (use datetime.now(UTC) or similar)")
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def token_digest(token: str) -> str:
    """Replies name a token by its SHA-256, so the token itself is not echoed or logged."""
    return hashlib.sha256(token.encode()).hexdigest()


def key_id(key: crypto.PublicKey) -> str:
    return key.fingerprint()[:16]


class CarrierUnavailable(errors.UpstreamFailed):
    """No usable answer from the operator (timeout, outage): nothing is known about the
    token or the SIM. Fall back to another method, or retry with a new token."""

    code = "carrier_unavailable"
    title = "The mobile operator did not answer"


class CarrierReplyInvalid(CarrierUnavailable):
    """A reply arrived but is not believable: bad signature, unknown key, or it answers
    another request. Treated as no answer, and worth an alert: someone may be on the path."""

    code = "carrier_reply_invalid"


class NetworkTokenRefused(errors.AuthenticationFailed):
    """The operator says the token does not prove the number; ``verdict`` is its signed
    reply (kept as an attribute, not in ``extra``, so it never reaches an HTTP body)."""

    code = "network_token_refused"

    def __init__(self, detail: str, *, code: str, verdict: CarrierVerdict) -> None:
        super().__init__(detail, code=code)
        self.verdict = verdict


@dataclass(frozen=True, slots=True)
class CarrierVerdict:
    """The operator's signed answer to "does this token belong to this number?"."""

    phone: str
    token_digest: str
    nonce: str
    status: VerdictStatus
    checked_at: datetime
    carrier_reference: str
    alg: str
    key_id: str
    signature: bytes

    @property
    def matched(self) -> bool:
        return self.status == "match"

    def signed_bytes(self) -> bytes:
        return (f"{VERSION}\nverify-token\n{self.alg}\n{self.key_id}\n{self.phone}\n"
                f"{self.token_digest}\n{self.nonce}\n{self.status}\n"
                f"{canonical_time(self.checked_at)}\n{self.carrier_reference}\n").encode()


@dataclass(frozen=True, slots=True)
class SimChangeReply:
    """The operator's signed answer to "when did this number's SIM last change?";
    ``changed_at`` is None when the operator has no SIM change on record."""

    phone: str
    nonce: str
    changed_at: datetime | None
    checked_at: datetime
    alg: str
    key_id: str
    signature: bytes

    def signed_bytes(self) -> bytes:
        changed = "-" if self.changed_at is None else canonical_time(self.changed_at)
        return (f"{VERSION}\nsim-change\n{self.alg}\n{self.key_id}\n{self.phone}\n"
                f"{self.nonce}\n{changed}\n{canonical_time(self.checked_at)}\n").encode()


class CarrierAdapter(abc.ABC):
    """Implementations send the request to the operator (``_verify_token``,
    ``_sim_change``) and return its signed reply unchanged; this class decides whether to
    believe it."""

    name: str = "carrier"

    def __init__(self, carrier_public_key: crypto.PublicKey) -> None:
        self._carrier_key = carrier_public_key
        self._carrier_key_id = key_id(carrier_public_key)

    async def verify_network_token(self, *, token: str, phone: str) -> CarrierVerdict:
        """Return the operator's ``match`` verdict, or raise ``NetworkTokenRefused``."""
        check_phone(phone)
        if not token or len(token) > MAX_TOKEN_CHARS:
            raise errors.InvalidRequest(f"a network token is 1 to {MAX_TOKEN_CHARS}"
                                        " characters", code="network_token_malformed")
        nonce = crypto.random_token(16)
        verdict = await self._verify_token(token=token, phone=phone, nonce=nonce)
        self._check_signature(verdict.alg, verdict.key_id, verdict.signature,
                              verdict.signed_bytes())
        if (verdict.phone, verdict.token_digest, verdict.nonce) != (
                phone, token_digest(token), nonce):
            raise CarrierReplyInvalid("the operator's reply answers another request")
        if verdict.status not in get_args(VerdictStatus):
            raise CarrierReplyInvalid(f"the operator's reply has an unknown status"
                                      f" {verdict.status!r}")
        if verdict.status != "match":
            code, detail = _REFUSALS[verdict.status]
            raise NetworkTokenRefused(detail, code=code, verdict=verdict)
        return verdict

    async def last_sim_change(self, phone: str) -> datetime | None:
        """When the SIM behind ``phone`` last changed, or None if the operator has none on
        record. Callers weigh it as risk (a change hours ago is suspicious), not as proof."""
        check_phone(phone)
        nonce = crypto.random_token(16)
        reply = await self._sim_change(phone=phone, nonce=nonce)
        self._check_signature(reply.alg, reply.key_id, reply.signature, reply.signed_bytes())
        if (reply.phone, reply.nonce) != (phone, nonce):
            raise CarrierReplyInvalid("the operator's reply answers another request")
        return reply.changed_at

    def _check_signature(self, alg: str, reply_key_id: str, signature: bytes,
                         signed: bytes) -> None:
        if (alg, reply_key_id) != (self._carrier_key.alg, self._carrier_key_id):
            raise CarrierReplyInvalid(
                f"the operator's reply is signed with {alg} key {reply_key_id}; the platform"
                f" trusts {self._carrier_key.alg} key {self._carrier_key_id}. If the operator"
                " rotated its key, configure the new public key")
        try:
            self._carrier_key.verify(signature, signed)
        except crypto.InvalidSignature as exc:
            raise CarrierReplyInvalid("the operator's reply signature did not verify") from exc

    @abc.abstractmethod
    async def _verify_token(self, *, token: str, phone: str, nonce: str) -> CarrierVerdict:
        """Ask the operator whether ``token`` belongs to ``phone``; echo ``nonce``."""

    @abc.abstractmethod
    async def _sim_change(self, *, phone: str, nonce: str) -> SimChangeReply:
        """Ask the operator for the last SIM change of ``phone``; echo ``nonce``."""


def check_phone(phone: str) -> str:
    if not PHONE.match(phone):
        raise errors.InvalidRequest("phone must be 6-15 digits, optionally with a leading +",
                                    code="invalid_phone")
    return phone
