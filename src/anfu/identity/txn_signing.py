"""Transaction signing (book 3.6 "mobile signature"; PSD2's dynamic linking).

Before money moves, the customer's phone signs exactly what will happen — the operation,
the transaction, the amount, the payee as the customer saw it — together with a single-use
server challenge and the time of signing, with the key of its valid, unrevoked device
certificate. The platform recomputes these bytes from the request it is about to carry out,
so a signature made for another amount or another payee never verifies, and it keeps the
bytes and the signature as evidence the customer cannot later deny.

The signed bytes (UTF-8, each line ending in ``\\n``)::

    ANFU-TXN-V1
    <operation>          payment | transfer | withdrawal
    <txn id>             trade_no, transfer id or withdrawal id
    <amount>             minor units, decimal digits
    <currency>           ISO 4217
    <payee id>
    <payee display name>
    <challenge>          the server's single-use challenge
    <timestamp>          when the device signed, Unix seconds

A challenge lives ``CHALLENGE_TTL_S``, is used once, and dies after ``MAX_ATTEMPTS`` failed
signatures. One issued for a known transaction is bound to its facts: any change of amount or
payee invalidates it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from anfu.crypto.tokens import sha256_hex
from anfu.errors import AuthenticationFailed, Forbidden, InvalidRequest
from anfu.money import Money

PREFIX = "ANFU-TXN-V1"
CHALLENGE_TTL_S = 300.0
MAX_ATTEMPTS = 5
CLOCK_SKEW_S = 60.0
_NAME_MAX = 128


class TxnOperation(StrEnum):
    PAYMENT = "payment"
    TRANSFER = "transfer"
    WITHDRAWAL = "withdrawal"


# The policy operation each signed operation guards.
POLICY_OPERATION = {TxnOperation.PAYMENT: "trade.pay",
                    TxnOperation.TRANSFER: "transfer.create",
                    TxnOperation.WITHDRAWAL: "withdrawal.create"}


class SigningMode(StrEnum):
    OFF = "off"
    # Sessions on a device that holds a valid certificate sign; others rely on step-up
    # (whose SMS codes are themselves bound to amount and payee).
    CERTIFIED = "certified"
    # Every money move above the threshold needs a certificate signature.
    ALWAYS = "always"


def _line(value: str, what: str) -> str:
    if "\n" in value or "\r" in value:
        raise InvalidRequest(f"{what} cannot contain a line break", code="invalid_request")
    return value


@dataclass(frozen=True, slots=True)
class TxnFacts:
    """What the customer approves: the same fields the phone shows and signs."""

    operation: TxnOperation
    txn_id: str
    amount: int
    currency: str
    payee_id: str
    payee_name: str

    def signing_bytes(self, challenge: str, timestamp: int) -> bytes:
        lines = (PREFIX, self.operation.value, _line(self.txn_id, "txn id"), str(self.amount),
                 self.currency, _line(self.payee_id, "payee id"),
                 _line(self.payee_name[:_NAME_MAX], "payee name"), _line(challenge, "challenge"),
                 str(timestamp))
        return "".join(f"{line}\n" for line in lines).encode("utf-8")

    def digest(self) -> str:
        """Binds a challenge to these facts without storing them twice."""
        return sha256_hex(self.signing_bytes("", 0))

    def public(self) -> dict[str, object]:
        return {"operation": self.operation.value, "txn_id": self.txn_id,
                "amount": self.amount, "currency": self.currency, "payee_id": self.payee_id,
                "payee_name": self.payee_name[:_NAME_MAX]}


@dataclass(frozen=True, slots=True)
class TxnChallenge:
    challenge: str
    user_id: str
    device_id: str
    issued_at: float
    expires_at: float
    facts_digest: str | None = None
    attempts: int = 0
    used_at: float | None = None

    def check_usable(self, *, user_id: str, device_id: str, now: float) -> None:
        if self.user_id != user_id or self.device_id != device_id:
            raise AuthenticationFailed("this transaction challenge was issued to another"
                                       " device", code="txn_challenge_unknown")
        if self.used_at is not None:
            raise AuthenticationFailed("this transaction challenge was already used; ask for"
                                       " a new one", code="txn_challenge_used")
        if self.attempts >= MAX_ATTEMPTS:
            raise AuthenticationFailed(f"{MAX_ATTEMPTS} signatures failed for this challenge;"
                                       " ask for a new one", code="txn_challenge_locked")
        if now >= self.expires_at:
            raise AuthenticationFailed("this transaction challenge expired (they live"
                                       f" {int(CHALLENGE_TTL_S)} s); ask for a new one",
                                       code="txn_challenge_expired")

    def check_facts(self, facts: TxnFacts) -> None:
        if self.facts_digest is not None and self.facts_digest != facts.digest():
            raise AuthenticationFailed("the transaction changed (amount, payee or id) since"
                                       " this challenge was issued for it; sign again with a"
                                       " new challenge", code="txn_facts_changed")

    def check_timestamp(self, timestamp: int, now: float) -> None:
        if not (self.issued_at - CLOCK_SKEW_S <= timestamp <= now + CLOCK_SKEW_S):
            raise AuthenticationFailed("the signing timestamp is outside the challenge's life"
                                       " (or the device clock is wrong)",
                                       code="txn_timestamp_invalid")

    def remaining_attempts(self) -> int:
        return max(0, MAX_ATTEMPTS - self.attempts)


@dataclass(frozen=True, slots=True)
class TxnSigningPolicy:
    """From the ``[transaction_signing]`` table of the auth policy."""

    mode: SigningMode = SigningMode.CERTIFIED
    # Minor units per currency; "default" applies to the rest. 0 = every amount.
    thresholds: Mapping[str, int] = field(default_factory=lambda: {"default": 0})

    def threshold(self, currency: str) -> int:
        """Deny by default: a currency neither listed nor covered by "default" has no free
        amount (every move in it is signed)."""
        value = self.thresholds.get(currency, self.thresholds.get("default"))
        return 0 if value is None else int(value)

    def needed(self, amount: Money, *, has_certificate: bool, bound_device: bool) -> bool:
        """Whether this money move must be signed. Raises Forbidden when it must be and the
        session cannot (mode "always" without a certified device)."""
        if self.mode is SigningMode.OFF:
            return False
        if amount.minor_units <= self.threshold(amount.currency):
            return False
        if has_certificate:
            return True
        if self.mode is SigningMode.ALWAYS:
            where = ("this device has no valid certificate: ask for one with POST"
                     " /v1/devices/current/certificate" if bound_device else
                     "this session is not on a bound device: log in on the phone")
            raise Forbidden("money moves must be signed by a device certificate; " + where,
                            code="certificate_required")
        return False

    def describe(self) -> dict[str, object]:
        return {"mode": self.mode.value, "thresholds": dict(self.thresholds),
                "challenge_ttl_s": CHALLENGE_TTL_S, "max_attempts": MAX_ATTEMPTS}


def parse_policy(table: Mapping[str, object]) -> TxnSigningPolicy:
    mode = SigningMode(str(table.get("mode", SigningMode.CERTIFIED.value)))
    raw = table.get("threshold", {"default": 0})
    if isinstance(raw, int):
        raw = {"default": raw}
    if not isinstance(raw, Mapping):
        raise ValueError("[transaction_signing] threshold: a number or {CUR = minor units}")
    thresholds = {str(k): int(v) for k, v in raw.items()}
    if any(v < 0 for v in thresholds.values()):
        raise ValueError("[transaction_signing] thresholds cannot be negative")
    return TxnSigningPolicy(mode=mode, thresholds=thresholds)


@dataclass(frozen=True, slots=True)
class TxnSignatureHeader:
    """``Anfu-Txn-Signature: challenge=<c>, timestamp=<t>, signature=<base64url>``."""

    challenge: str
    timestamp: int
    signature: str

    @classmethod
    def parse(cls, value: str) -> TxnSignatureHeader:
        parts: dict[str, str] = {}
        for item in value.split(","):
            name, sep, val = item.strip().partition("=")
            if sep:
                parts[name.strip().lower()] = val.strip().strip('"')
        try:
            challenge, signature = parts["challenge"], parts["signature"]
            timestamp = int(parts["timestamp"])
        except (KeyError, ValueError):
            raise AuthenticationFailed(
                "Anfu-Txn-Signature must be: challenge=<challenge>, timestamp=<unix seconds>,"
                " signature=<base64url>", code="txn_signature_malformed") from None
        if not (0 < len(challenge) <= 64 and 0 < len(signature) <= 256):
            raise AuthenticationFailed("Anfu-Txn-Signature: challenge or signature too long",
                                       code="txn_signature_malformed")
        return cls(challenge, timestamp, signature)

    def render(self) -> str:
        return (f"challenge={self.challenge}, timestamp={self.timestamp},"
                f" signature={self.signature}")


@dataclass(frozen=True, slots=True)
class TxnEvidence:
    """What is kept after a signed transaction: enough to prove it to a third party."""

    txn_id: str
    operation: TxnOperation
    user_id: str
    device_id: str
    certificate_serial: str
    challenge: str
    signed_bytes: bytes
    signature: bytes
    alg: str
    signed_at: int

    def signature_sha256(self) -> str:
        return sha256_hex(self.signature)
