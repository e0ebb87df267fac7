"""SandboxBank: a stand-in for a real bank, for development and tests. It answers after a
configurable latency, refuses a configurable share of operations, always declines amounts
ending in ``13`` minor units (so tests can force a decline), is idempotent by reference, and
signs every reply with its own Ed25519 key as a real bank's gateway would. Amounts ending in
``77`` minor units meet a faulty gateway: a validly signed reply that names another amount,
as a bank-side bug would, so tests can show the platform believes no such answer."""

from __future__ import annotations

import asyncio
import random
import secrets
from dataclasses import replace

from anfu import crypto
from anfu.adapters.bank.base import BankAdapter, BankReply, BankUnavailable

DECLINE_SUFFIX = 13
MISREPORT_SUFFIX = 77


class SandboxBank(BankAdapter):
    name = "sandbox"

    def __init__(self, *, latency_ms: int = 20, failure_rate: float = 0.0,
                 outage_rate: float = 0.0, seed: int | None = None) -> None:
        self._key = crypto.generate_private_key("ed25519")
        super().__init__(self._key.public_key())
        self._latency_s = latency_ms / 1000.0
        self._failure_rate = failure_rate
        self._outage_rate = outage_rate
        self._random = random.Random(seed)
        self._answers: dict[tuple[str, str], BankReply] = {}

    async def _lookup(self, operation: str, reference: str) -> BankReply | None:
        return self._answers.get((operation, reference))

    async def _call(self, operation: str, reference: str, account: str, amount: int,
                    currency: str) -> BankReply:
        if self._latency_s:
            await asyncio.sleep(self._latency_s * self._random.uniform(0.5, 1.5))
        known = self._answers.get((operation, reference))
        if known is not None:
            return known
        if self._random.random() < self._outage_rate:
            raise BankUnavailable("sandbox bank: simulated outage")
        declined = amount % 100 == DECLINE_SUFFIX or self._random.random() < self._failure_rate
        unsigned = BankReply(
            reference=reference, operation=operation,
            amount=amount + 100 if amount % 100 == MISREPORT_SUFFIX else amount,
            currency=currency,
            status="declined" if declined else "succeeded",
            bank_reference="SBX" + secrets.token_hex(8),
            reason="insufficient funds at the bank" if declined else "", signature=b"")
        reply = replace(unsigned, signature=self._key.sign(unsigned.signed_bytes()))
        self._answers[(operation, reference)] = reply
        return reply
