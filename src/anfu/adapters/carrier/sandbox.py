"""SandboxCarrier: a stand-in for a mobile operator's number-verification and SIM-swap
services, for development and tests.

``issue_token`` plays the operator's side of the phone's data connection: it hands out the
network token the app would receive for the SIM holding that number. A token lives
``token_ttl_s`` seconds on the injected clock and is spent by its first presentation,
whatever the verdict, so one captured token cannot be used to try several numbers. Spent and
expired tokens are remembered for one more lifetime (answered ``used`` / ``expired``), then
forgotten (``unknown``), which bounds memory. ``set_sim_changed`` records a SIM change.

Calls wait ``latency_ms`` (through the injected ``sleep``) and a ``failure_rate`` share of
them raise ``CarrierUnavailable``. Every reply is signed with the sandbox's own Ed25519 key,
as a real operator's gateway would sign. Tokens come from the seeded generator so runs
repeat: the sandbox is not a security boundary. Thread-safe (one lock, no await under it).
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from anfu import crypto
from anfu.adapters.carrier.base import (
    CarrierAdapter,
    CarrierUnavailable,
    CarrierVerdict,
    Clock,
    SimChangeReply,
    VerdictStatus,
    check_phone,
    key_id,
    token_digest,
)

Sleep = Callable[[float], Awaitable[None]]


@dataclass(slots=True)
class _Token:
    phone: str
    expires_at: float
    spent: bool = False


class SandboxCarrier(CarrierAdapter):
    name = "sandbox"

    def __init__(self, *, latency_ms: int = 30, failure_rate: float = 0.0,
                 token_ttl_s: float = 120.0, seed: int | None = None,
                 clock: Clock = time.time, sleep: Sleep = asyncio.sleep) -> None:
        if latency_ms < 0 or token_ttl_s <= 0:
            raise ValueError("latency_ms must be >= 0 and token_ttl_s > 0")
        if not 0.0 <= failure_rate <= 1.0:
            raise ValueError("failure_rate must be between 0 and 1")
        self._key = crypto.generate_private_key("ed25519")
        super().__init__(self._key.public_key())
        self._key_id = key_id(self._key.public_key())
        self._latency_s = latency_ms / 1000.0
        self._failure_rate = failure_rate
        self._ttl_s = token_ttl_s
        self._random = random.Random(seed)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens: dict[str, _Token] = {}
        self._sim_changes: dict[str, datetime] = {}

    @property
    def public_key(self) -> crypto.PublicKey:
        """The key a platform configures to trust this operator."""
        return self._key.public_key()

    def issue_token(self, phone: str) -> str:
        """A fresh network token proving ``phone``, as the operator gives the app."""
        check_phone(phone)
        with self._lock:
            now = self._clock()
            self._forget_old(now)
            token = f"sbxnt_{self._random.getrandbits(128):032x}"
            self._tokens[token] = _Token(phone=phone, expires_at=now + self._ttl_s)
        return token

    def set_sim_changed(self, phone: str, when: datetime | None) -> None:
        """Record that ``phone`` got a new SIM at ``when`` (None: no change on record)."""
        check_phone(phone)
        if when is not None and when.tzinfo is None:
            raise ValueError("when must carry a time zone (e.g. datetime(..., tzinfo=UTC))")
        with self._lock:
            if when is None:
                self._sim_changes.pop(phone, None)
            else:
                self._sim_changes[phone] = when.astimezone(UTC)

    async def _verify_token(self, *, token: str, phone: str, nonce: str) -> CarrierVerdict:
        await self._answer_delay()
        with self._lock:
            now = self._clock()
            status = self._spend(token, phone, now)
            reference = f"SBXNV{self._random.getrandbits(64):016x}"
        unsigned = CarrierVerdict(
            phone=phone, token_digest=token_digest(token), nonce=nonce, status=status,
            checked_at=datetime.fromtimestamp(now, tz=UTC), carrier_reference=reference,
            alg=self._key.alg, key_id=self._key_id, signature=b"")
        return replace(unsigned, signature=self._key.sign(unsigned.signed_bytes()))

    async def _sim_change(self, *, phone: str, nonce: str) -> SimChangeReply:
        await self._answer_delay()
        with self._lock:
            now = self._clock()
            changed_at = self._sim_changes.get(phone)
        unsigned = SimChangeReply(
            phone=phone, nonce=nonce, changed_at=changed_at,
            checked_at=datetime.fromtimestamp(now, tz=UTC), alg=self._key.alg,
            key_id=self._key_id, signature=b"")
        return replace(unsigned, signature=self._key.sign(unsigned.signed_bytes()))

    async def _answer_delay(self) -> None:
        with self._lock:
            delay = self._latency_s * self._random.uniform(0.5, 1.5)
            failed = self._random.random() < self._failure_rate
        if delay:
            await self._sleep(delay)
        if failed:
            raise CarrierUnavailable("sandbox carrier: simulated outage; fall back to another"
                                     " login method or retry with a new token")

    def _spend(self, token: str, phone: str, now: float) -> VerdictStatus:
        record = self._tokens.get(token)
        if record is None:
            return "unknown"
        if record.spent:
            return "used"
        record.spent = True
        if now >= record.expires_at:
            return "expired"
        return "match" if record.phone == phone else "mismatch"

    def _forget_old(self, now: float) -> None:
        # Keep a token one more lifetime after it expires, so a late retry hears "used" or
        # "expired" rather than "unknown"; after that it is dropped to bound memory.
        # Tokens sit in issue order, so the stale ones are at the front.
        horizon = now - self._ttl_s
        while self._tokens:
            oldest = next(iter(self._tokens))
            if self._tokens[oldest].expires_at > horizon:
                break
            del self._tokens[oldest]
