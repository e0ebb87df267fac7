"""The contract with a bank (the outside world's money).

A bank call moves real money, so every call carries the platform's ``reference`` and a bank
must treat a repeated reference as the same operation (it answers with the first result).
Replies are signed by the bank; ``BankAdapter`` verifies the signature before the platform
believes the answer."""

from __future__ import annotations

import abc
from dataclasses import dataclass

from anfu import crypto


class BankUnavailable(Exception):
    """No answer (timeout, outage): the outcome is unknown; retry with the same reference."""


class BankDeclined(Exception):
    """The bank refused the operation (with its reason)."""


class BankReplyMismatch(Exception):
    """A validly signed reply that answers another operation than the one asked for (another
    reference, kind, amount or currency): nothing is believed, the operation waits for
    reconciliation with the bank. ``field`` names the first fact that differs."""

    def __init__(self, field: str, asked: object, answered: object) -> None:
        super().__init__(f"the bank answered {field}={answered!r} for {field}={asked!r}")
        self.field = field


@dataclass(frozen=True, slots=True)
class BankReply:
    reference: str
    operation: str       # charge | payout
    amount: int
    currency: str
    status: str          # succeeded | declined
    bank_reference: str
    reason: str
    signature: bytes

    def signed_bytes(self) -> bytes:
        return (f"ANFU-BANK-V1\n{self.operation}\n{self.reference}\n{self.amount}\n"
                f"{self.currency}\n{self.status}\n{self.bank_reference}\n{self.reason}\n"
                ).encode()


class BankAdapter(abc.ABC):
    """``charge`` takes money from the customer's bank account into the platform (top-up);
    ``payout`` sends money from the platform to it (withdrawal). Neither may be called
    before the platform recorded what it is about to do."""

    name: str = "bank"

    def __init__(self, bank_public_key: crypto.PublicKey) -> None:
        self._bank_key = bank_public_key

    async def charge(self, *, reference: str, account: str, amount: int,
                     currency: str) -> BankReply:
        reply = await self._call("charge", reference, account, amount, currency)
        return self._checked(reply, ("charge", reference, amount, currency))

    async def payout(self, *, reference: str, account: str, amount: int,
                     currency: str) -> BankReply:
        reply = await self._call("payout", reference, account, amount, currency)
        return self._checked(reply, ("payout", reference, amount, currency))

    def _checked(self, reply: BankReply, asked: tuple[str, str, int, str]) -> BankReply:
        try:
            self._bank_key.verify(reply.signature, reply.signed_bytes())
        except crypto.InvalidSignature as exc:
            raise BankUnavailable("the bank's reply signature did not verify") from exc
        answered = (reply.operation, reply.reference, reply.amount, reply.currency)
        for field, want, got in zip(("operation", "reference", "amount", "currency"), asked,
                                    answered, strict=True):
            if want != got:
                raise BankReplyMismatch(field, want, got)
        if reply.status != "succeeded":
            raise BankDeclined(reply.reason or "declined")
        return reply

    async def statement_entry(self, *, operation: str, reference: str) -> BankReply | None:
        """The bank's own record of the operation with this reference (its statement, as a
        reconciliation file would give it), signature checked; None if it has none."""
        entry = await self._lookup(operation, reference)
        if entry is not None:
            try:
                self._bank_key.verify(entry.signature, entry.signed_bytes())
            except crypto.InvalidSignature as exc:
                raise BankUnavailable("the bank's statement signature did not verify") from exc
        return entry

    @abc.abstractmethod
    async def _lookup(self, operation: str, reference: str) -> BankReply | None:
        """Fetch the bank's signed record of one operation."""

    @abc.abstractmethod
    async def _call(self, operation: str, reference: str, account: str, amount: int,
                    currency: str) -> BankReply:
        """Send one operation to the bank and return its signed reply."""
