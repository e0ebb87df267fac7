"""SMS verification codes as a state machine over a storage Protocol.

A challenge is issued for a phone, a purpose and, when it authorises money, the amount and
payee. Its code has ``CODE_DIGITS`` digits, lives ``CODE_TTL_S`` seconds, allows
``MAX_ATTEMPTS`` tries and is used once. Only a keyed hash is stored (``CodeHasher``), and the
hash covers the challenge id, phone, purpose, amount and payee, so a code sent to pay ¥23.00
to one shop cannot approve ¥2,300.00 to another (dynamic linking). The message names the
purpose and, for money, the amount and payee; it never carries anything reusable: no link,
no password, no long-lived token, only the one-time code.

Sending is limited per phone (``PHONE_SEND_LIMITS``) and per client address
(``ADDRESS_SEND_LIMITS``). Issuing and verifying are pure: the caller passes ``now``, hands
``IssuedCode.message`` to the SMS adapter and never logs it. The SQL implementation of
``CodeStore`` runs ``issue`` in one transaction, and ``take_attempt``/``consume`` as single
guarded updates, so parallel guesses cannot exceed the try limit nor use a code twice.
"""

from __future__ import annotations

import secrets
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Protocol

from anfu.crypto.otp import CodeHasher, InvalidOtp, new_numeric_code
from anfu.crypto.tokens import random_token
from anfu.errors import AnfuError, AuthenticationFailed, InvalidRequest
from anfu.identity.service import check_phone
from anfu.identity.throttle import address_bucket
from anfu.money import MINOR_UNITS, Money

CODE_DIGITS = 6
CODE_TTL_S = 5 * 60.0
MAX_ATTEMPTS = 5
PAYEE_MAX_CHARS = 32


@dataclass(frozen=True, slots=True)
class SendLimit:
    """At most ``count`` codes in any ``per_s`` seconds."""

    count: int
    per_s: float


# Per phone: one code a minute, 5 an hour, 10 a day. Enough for a person who mistypes or
# loses a message; too few to flood a phone or to buy more than 50 guesses a day.
PHONE_SEND_LIMITS: tuple[SendLimit, ...] = (
    SendLimit(1, 60.0), SendLimit(5, 3600.0), SendLimit(10, 86400.0),
)
# Per client address (IPv4 address or IPv6 /64): looser, because carrier-grade NAT puts many
# customers behind one address, yet bounded so one client cannot pump SMS to many numbers.
ADDRESS_SEND_LIMITS: tuple[SendLimit, ...] = (
    SendLimit(5, 60.0), SendLimit(30, 3600.0), SendLimit(100, 86400.0),
)


@dataclass(frozen=True, slots=True)
class CodePolicy:
    digits: int = CODE_DIGITS
    ttl_s: float = CODE_TTL_S
    max_attempts: int = MAX_ATTEMPTS
    phone_limits: tuple[SendLimit, ...] = PHONE_SEND_LIMITS
    address_limits: tuple[SendLimit, ...] = ADDRESS_SEND_LIMITS


DEFAULT_POLICY = CodePolicy()


class Purpose(StrEnum):
    LOGIN = "login"
    REGISTER = "register"
    NEW_DEVICE = "new_device"
    RESET_PASSWORD = "reset_password"  # noqa: S105 (a purpose name, not a password)
    CHANGE_PHONE = "change_phone"
    STEP_UP = "step_up"
    PAY = "pay"
    TRANSFER = "transfer"
    WITHDRAW = "withdraw"
    TOPUP = "topup"


_ACTION: dict[Purpose, str] = {
    Purpose.LOGIN: "to sign in",
    Purpose.REGISTER: "to create your anfu account",
    Purpose.NEW_DEVICE: "to sign in on a new device",
    Purpose.RESET_PASSWORD: "to reset your password",
    Purpose.CHANGE_PHONE: "to change your phone number",
    Purpose.STEP_UP: "to confirm a change to your account security",
    Purpose.PAY: "to pay {amount} to {payee}",
    Purpose.TRANSFER: "to transfer {amount} to {payee}",
    Purpose.WITHDRAW: "to withdraw {amount} to {payee}",
    Purpose.TOPUP: "to add {amount} from {payee}",
}
MONEY_PURPOSES = frozenset({Purpose.PAY, Purpose.TRANSFER, Purpose.WITHDRAW, Purpose.TOPUP})
_SYMBOLS = {"CNY": "¥", "EUR": "€", "GBP": "£", "USD": "US$", "HKD": "HK$"}


class SmsCodeRejected(AuthenticationFailed):
    """The code is wrong (``sms_code_invalid``), expired or used (``sms_code_expired``), or
    its tries are spent (``sms_code_exhausted``)."""

    code = "sms_code_invalid"


def wrong_code(tries_left: int) -> SmsCodeRejected:
    """The answer to a wrong code, with the tries left."""
    hint = f"{tries_left} tries left" if tries_left else "no tries left; request a new one"
    return SmsCodeRejected(f"the code is not correct; {hint}", tries_left=tries_left)


class SendLimited(AnfuError):
    """Too many codes for this phone or address; ``extra["retry_after_s"]`` says when to retry.
    The HTTP edge should answer 429 with a ``Retry-After`` header."""

    code = "sms_send_limited"
    title = "Too many codes requested"


@dataclass(frozen=True, slots=True)
class SmsChallenge:
    challenge_id: str
    phone: str
    purpose: Purpose
    code_hash: str = field(repr=False)
    client_address: str
    created_at: float
    expires_at: float
    amount_minor: int | None = None
    currency: str | None = None
    payee: str | None = None
    attempts: int = 0
    used_at: float | None = None


@dataclass(frozen=True, slots=True)
class IssuedCode:
    """What the caller sends. ``code`` and ``message`` are secrets: never log or store them."""

    challenge: SmsChallenge
    code: str = field(repr=False)
    message: str = field(repr=False)

    @property
    def challenge_id(self) -> str:
        return self.challenge.challenge_id

    @property
    def expires_at(self) -> float:
        return self.challenge.expires_at


class CodeStore(Protocol):
    def insert_challenge(self, challenge: SmsChallenge) -> None: ...

    def challenge(self, challenge_id: str) -> SmsChallenge | None: ...

    def take_attempt(self, challenge_id: str, max_attempts: int) -> int | None:
        """Count one try atomically; the new count, or None if ``max_attempts`` were used."""

    def consume(self, challenge_id: str, now: float) -> bool:
        """Mark the challenge used; False if it already was (a second, concurrent use)."""

    def recent_sends(self, key: str, since: float) -> Sequence[float]:
        """When codes were sent for ``key`` at or after ``since``, oldest first."""

    def record_send(self, key: str, at: float) -> None: ...


def format_amount(money: Money) -> str:
    """``¥1,234.56`` for CNY; other currencies by symbol or code (``1,234.56 JPY``)."""
    digits = MINOR_UNITS[money.currency]
    units, minor = divmod(abs(money.minor_units), 10**digits)
    text = f"{units:,}" + (f".{minor:0{digits}d}" if digits else "")
    sign = "-" if money.minor_units < 0 else ""
    symbol = _SYMBOLS.get(money.currency)
    return f"{sign}{symbol}{text}" if symbol else f"{sign}{text} {money.currency}"


def clean_payee(payee: str) -> str:
    """The payee as it may appear in an SMS: no control, format or bidi characters (which
    could reorder the text), whitespace collapsed, at most ``PAYEE_MAX_CHARS`` characters."""
    kept = "".join(" " if ch.isspace() else ch for ch in payee
                   if ch.isspace() or not unicodedata.category(ch).startswith("C"))
    text = " ".join(kept.split())
    if not text:
        raise InvalidRequest("the payee name is empty", code="invalid_payee")
    return text if len(text) <= PAYEE_MAX_CHARS else text[:PAYEE_MAX_CHARS - 1] + "…"


@dataclass(frozen=True, slots=True)
class _Context:
    purpose: Purpose
    amount: Money | None
    payee: str | None


def _context(purpose: Purpose | str, amount: Money | None, payee: str | None) -> _Context:
    try:
        kind = Purpose(purpose)
    except ValueError:
        raise InvalidRequest(f"unknown code purpose {purpose!r}",
                             code="invalid_purpose") from None
    if kind in MONEY_PURPOSES:
        if amount is None or payee is None or amount.minor_units <= 0:
            raise InvalidRequest(f"a {kind.value} code needs a positive amount and a payee",
                                 code="invalid_request")
        return _Context(kind, amount, clean_payee(payee))
    if amount is not None or payee is not None:
        raise InvalidRequest(f"a {kind.value} code carries no amount or payee",
                             code="invalid_request")
    return _Context(kind, None, None)


def _binding(challenge_id: str, phone: str, ctx: _Context) -> bytes:
    """Length-prefixed fields, so no two different tuples give the same bytes."""
    fields = ["anfu-sms-code-v1", challenge_id, phone, ctx.purpose.value,
              ctx.amount.currency if ctx.amount else "",
              str(ctx.amount.minor_units) if ctx.amount else "", ctx.payee or ""]
    return b"".join(b"%d:%s" % (len(f.encode()), f.encode()) for f in fields)


def message_text(code: str, ctx: _Context) -> str:
    action = _ACTION[ctx.purpose]
    if ctx.amount is not None:
        action = action.format(amount=format_amount(ctx.amount), payee=ctx.payee)
    return f"anfu: {code} is your code {action}. Never share it."


def _new_challenge_id() -> str:
    return "smc_" + random_token(16)


class SmsCodes:
    """Issues and verifies SMS codes. ``key`` (at least 32 bytes, from settings, never in the
    database) keys the code hashes; ``randbelow`` and ``new_id`` are injected for tests."""

    def __init__(self, store: CodeStore, *, key: bytes, policy: CodePolicy = DEFAULT_POLICY,
                 randbelow: Callable[[int], int] = secrets.randbelow,
                 new_id: Callable[[], str] = _new_challenge_id) -> None:
        self._store = store
        self._hasher = CodeHasher(key)
        self._policy = policy
        self._randbelow = randbelow
        self._new_id = new_id

    def __repr__(self) -> str:
        return "SmsCodes(key=<redacted>)"

    def _retry_after(self, key: str, limits: Sequence[SendLimit], now: float) -> float:
        """Seconds until ``key`` may send again under every limit (0 if it may now)."""
        wait = 0.0
        for limit in limits:
            sent = self._store.recent_sends(key, now - limit.per_s)
            if len(sent) >= limit.count:
                wait = max(wait, sent[-limit.count] + limit.per_s - now)
        return wait

    def issue(self, *, phone: str, purpose: Purpose | str, client_address: str, now: float,
              amount: Money | None = None, payee: str | None = None) -> IssuedCode:
        """A new challenge and its message; ``SendLimited`` when the phone or the address
        asked for too many codes."""
        check_phone(phone)
        ctx = _context(purpose, amount, payee)
        keys = ((f"phone:{phone}", self._policy.phone_limits),
                (f"addr:{address_bucket(client_address)}", self._policy.address_limits))
        wait = max(self._retry_after(key, limits, now) for key, limits in keys)
        if wait > 0:
            seconds = int(-(-wait // 1))
            raise SendLimited(f"too many codes were requested; try again in {seconds} s",
                              retry_after_s=seconds)
        code = new_numeric_code(self._policy.digits, randbelow=self._randbelow)
        challenge_id = self._new_id()
        challenge = SmsChallenge(
            challenge_id=challenge_id, phone=phone, purpose=ctx.purpose,
            code_hash=self._hasher.hash(code, binding=_binding(challenge_id, phone, ctx)),
            client_address=client_address, created_at=now, expires_at=now + self._policy.ttl_s,
            amount_minor=ctx.amount.minor_units if ctx.amount else None,
            currency=ctx.amount.currency if ctx.amount else None, payee=ctx.payee)
        self._store.insert_challenge(challenge)
        for key, _ in keys:
            self._store.record_send(key, now)
        return IssuedCode(challenge=challenge, code=code, message=message_text(code, ctx))

    def verify(self, *, challenge_id: str, code: str, phone: str, purpose: Purpose | str,
               now: float, amount: Money | None = None,
               payee: str | None = None) -> SmsChallenge:
        """The used challenge, if ``code`` is right for exactly this phone, purpose, amount and
        payee; ``SmsCodeRejected`` otherwise. A wrong context counts as a wrong code."""
        ctx = _context(purpose, amount, payee)
        challenge = self._store.challenge(challenge_id)
        if challenge is None or challenge.used_at is not None or now >= challenge.expires_at:
            raise SmsCodeRejected("this code has expired or was already used; request a new one",
                                  code="sms_code_expired")
        attempts = self._store.take_attempt(challenge_id, self._policy.max_attempts)
        if attempts is None:
            raise SmsCodeRejected("too many wrong codes; request a new one",
                                  code="sms_code_exhausted")
        try:
            self._hasher.verify(code, binding=_binding(challenge_id, phone, ctx),
                                expected=challenge.code_hash, digits=self._policy.digits)
        except InvalidOtp:
            raise wrong_code(self._policy.max_attempts - attempts) from None
        if not self._store.consume(challenge_id, now):
            raise SmsCodeRejected("this code has expired or was already used; request a new one",
                                  code="sms_code_expired")
        return replace(challenge, attempts=attempts, used_at=now)


class InMemoryCodeStore:
    """For tests and single-process tools only: codes must live where every instance sees
    them."""

    def __init__(self) -> None:
        self.challenges: dict[str, SmsChallenge] = {}
        self.sends: dict[str, list[float]] = {}

    def insert_challenge(self, challenge: SmsChallenge) -> None:
        if challenge.challenge_id in self.challenges:
            raise ValueError("duplicate challenge id")
        self.challenges[challenge.challenge_id] = challenge

    def challenge(self, challenge_id: str) -> SmsChallenge | None:
        return self.challenges.get(challenge_id)

    def take_attempt(self, challenge_id: str, max_attempts: int) -> int | None:
        found = self.challenges.get(challenge_id)
        if found is None or found.attempts >= max_attempts:
            return None
        self.challenges[challenge_id] = replace(found, attempts=found.attempts + 1)
        return found.attempts + 1

    def consume(self, challenge_id: str, now: float) -> bool:
        found = self.challenges.get(challenge_id)
        if found is None or found.used_at is not None:
            return False
        self.challenges[challenge_id] = replace(found, used_at=now)
        return True

    def recent_sends(self, key: str, since: float) -> Sequence[float]:
        return [at for at in self.sends.get(key, []) if at >= since]

    def record_send(self, key: str, at: float) -> None:
        self.sends.setdefault(key, []).append(at)
