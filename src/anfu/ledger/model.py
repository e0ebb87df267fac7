"""Ledger state. Every account's balance is ``credits_posted - debits_posted``; every
transfer debits one account and credits another by the same amount, so for each currency
the balances of all accounts sum to zero. Holds (pending transfers) reserve money on the
debit side until they are posted, voided or expire."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class OwnerType(enum.StrEnum):
    CUSTOMER = "customer"
    MERCHANT = "merchant"
    PLATFORM = "platform"
    BANK = "bank"


class AccountKind(enum.StrEnum):
    WALLET = "wallet"            # a customer's money held by the platform
    SETTLEMENT = "settlement"    # a merchant's settled money
    ESCROW = "escrow"            # money paid for trades not yet settled
    FEE_REVENUE = "fee_revenue"  # the platform's fees
    CLEARING = "clearing"        # the outside world (a bank); goes negative as money enters


# Which kinds may never be overdrawn (debits beyond credits). Clearing is the only one that
# may go negative: it mirrors money that entered the platform from outside.
NO_OVERDRAFT = {
    AccountKind.WALLET: True,
    AccountKind.SETTLEMENT: True,
    AccountKind.ESCROW: True,
    AccountKind.FEE_REVENUE: True,
    AccountKind.CLEARING: False,
}

PLATFORM_OWNER = "anfu"


class TransferKind(enum.StrEnum):
    SINGLE = "single"    # posted at once
    PENDING = "pending"  # a hold: reserves the amount
    POST = "post"        # settles a hold (up to its amount; the rest is released)
    VOID = "void"        # releases a hold
    EXPIRE = "expire"    # releases a hold whose timeout passed


@dataclass(frozen=True, slots=True)
class AccountRef:
    owner_type: OwnerType
    owner_id: str
    kind: AccountKind
    currency: str

    @classmethod
    def wallet(cls, user_id: str, currency: str) -> AccountRef:
        return cls(OwnerType.CUSTOMER, user_id, AccountKind.WALLET, currency)

    @classmethod
    def settlement(cls, merchant_id: str, currency: str) -> AccountRef:
        return cls(OwnerType.MERCHANT, merchant_id, AccountKind.SETTLEMENT, currency)

    @classmethod
    def escrow(cls, currency: str) -> AccountRef:
        return cls(OwnerType.PLATFORM, PLATFORM_OWNER, AccountKind.ESCROW, currency)

    @classmethod
    def fee_revenue(cls, currency: str) -> AccountRef:
        return cls(OwnerType.PLATFORM, PLATFORM_OWNER, AccountKind.FEE_REVENUE, currency)

    @classmethod
    def clearing(cls, bank: str, currency: str) -> AccountRef:
        return cls(OwnerType.BANK, bank, AccountKind.CLEARING, currency)

    @property
    def no_overdraft(self) -> bool:
        return NO_OVERDRAFT[self.kind]


@dataclass(frozen=True, slots=True)
class Transfer:
    id: str
    kind: TransferKind
    debit_account_id: int
    credit_account_id: int
    amount: int
    currency: str
    created_at: float
    pending_id: str | None = None
    timeout_at: float | None = None
    reference: str | None = None
    description: str | None = None
    reverses_id: str | None = None

    def same_request(self, other: Transfer) -> bool:
        """Whether a repeated id carries the same request (then it is a harmless retry)."""
        return (self.kind, self.debit_account_id, self.credit_account_id, self.amount,
                self.currency, self.pending_id, self.reverses_id) == (
            other.kind, other.debit_account_id, other.credit_account_id, other.amount,
            other.currency, other.pending_id, other.reverses_id)


@dataclass(frozen=True, slots=True)
class Balance:
    account_id: int
    currency: str
    posted: int      # credits_posted - debits_posted
    pending_out: int  # debits_pending: reserved by holds
    pending_in: int   # credits_pending

    @property
    def available(self) -> int:
        return self.posted - self.pending_out

    def public(self) -> dict[str, int | str]:
        return {"currency": self.currency, "balance": self.posted,
                "available": self.available, "pending_out": self.pending_out}
