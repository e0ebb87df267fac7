"""What the ledger needs from storage. ``db/ledger_store.py`` implements it in SQL."""

from __future__ import annotations

from typing import Protocol

from anfu.ledger.model import AccountRef, Transfer


class LedgerStore(Protocol):
    def account_id(self, ref: AccountRef) -> int:
        """The id of the account, created (empty) on first use."""

    def find_transfer(self, transfer_id: str) -> Transfer | None: ...

    def find_resolution(self, pending_id: str) -> Transfer | None:
        """The post/void/expire transfer that resolved a hold, if any."""

    def insert_transfer(self, transfer: Transfer) -> bool:
        """Insert unless a transfer with this id exists; report whether it was inserted."""

    def apply(self, account_id: int, *, debits_posted: int = 0, credits_posted: int = 0,
              debits_pending: int = 0, credits_pending: int = 0,
              reserve: int = 0) -> int | None:
        """Add the deltas to the account. When ``reserve`` > 0 and the account may not be
        overdrawn, apply only if its available balance covers ``reserve``. Returns the
        posted balance after the change, or None if it was refused."""

    def add_entry(self, *, account_id: int, transfer_id: str, amount: int,
                  balance_after: int, created_at: float) -> None:
        """Append a posted entry (+credit/-debit) with the account's balance after it."""

    def due_holds(self, now: float, limit: int) -> list[Transfer]:
        """Pending transfers whose timeout passed and that no transfer resolved yet."""
