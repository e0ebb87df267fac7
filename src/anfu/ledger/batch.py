"""Batched transfers (TigerBeetle's ``create_transfers``): many single-phase or pending
transfers in one unit of work, each succeeding or failing on its own, in order.

The batch locks the balances it touches, applies the transfers in memory in request order
(so each overdraft check sees the transfers before it), and writes transfers, entries and
final balances with a few bulk statements. The same rules as ``service.transfer`` hold:
client-chosen ids, a repeated id with the same request returns the first result, with
another request it fails with ``transfer_id_reused``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from anfu.errors import AnfuError
from anfu.ledger.model import AccountRef, Transfer, TransferKind
from anfu.money import MAX_AMOUNT, MINOR_UNITS, check_amount


@dataclass(frozen=True, slots=True)
class TransferRequest:
    id: str
    debit: AccountRef
    credit: AccountRef
    amount: int
    pending: bool = False
    timeout_at: float | None = None
    reference: str | None = None
    description: str | None = None


@dataclass(frozen=True, slots=True)
class TransferResult:
    id: str
    code: str | None  # None: done (or already done by an identical request)
    transfer: Transfer | None = None

    @property
    def ok(self) -> bool:
        return self.code is None


@dataclass(slots=True)
class AccountState:
    debits_posted: int
    credits_posted: int
    debits_pending: int
    credits_pending: int
    no_overdraft: bool

    @property
    def available(self) -> int:
        return self.credits_posted - self.debits_posted - self.debits_pending


# (account_id, transfer_id, amount, balance_after, created_at): a plain tuple, since a
# batch makes two per transfer and binds them straight into a bulk insert.
Entry = tuple[int, str, int, int, float]


class LedgerBatchStore(Protocol):
    def account_id(self, ref: AccountRef) -> int: ...

    def find_transfers(self, ids: Sequence[str]) -> dict[str, Transfer]: ...

    def lock_accounts(self, account_ids: Sequence[int]) -> dict[int, AccountState]:
        """Current state of these accounts, locked until the transaction ends."""

    def write_batch(self, transfers: Sequence[Transfer], entries: Sequence[Entry],
                    accounts: dict[int, AccountState]) -> None:
        """Insert transfers and entries and store the accounts' new state."""


def _check(request: TransferRequest) -> str | None:
    amount = request.amount
    if type(amount) is not int or not 0 < amount <= MAX_AMOUNT:  # the common case, inline
        try:
            check_amount(amount)
        except AnfuError as exc:
            return exc.code
    if request.debit.currency not in MINOR_UNITS:
        return "unknown_currency"
    if request.debit.currency != request.credit.currency:
        return "currency_mismatch"
    if request.debit == request.credit:
        return "same_account"
    return None


def create_transfers(store: LedgerBatchStore, *, requests: Sequence[TransferRequest],
                     now: float) -> list[TransferResult]:
    wanted: dict[int, Transfer] = {}
    results: list[TransferResult | None] = [None] * len(requests)
    for n, request in enumerate(requests):
        code = _check(request)
        if code is not None:
            results[n] = TransferResult(request.id, code)
            continue
        wanted[n] = Transfer(
            id=request.id, kind=TransferKind.PENDING if request.pending else TransferKind.SINGLE,
            debit_account_id=store.account_id(request.debit),
            credit_account_id=store.account_id(request.credit), amount=request.amount,
            currency=request.debit.currency, created_at=now,
            timeout_at=request.timeout_at if request.pending else None,
            reference=request.reference, description=request.description)
    known = store.find_transfers([t.id for t in wanted.values()])
    touched = sorted({a for t in wanted.values()
                      for a in (t.debit_account_id, t.credit_account_id)})
    accounts = store.lock_accounts(touched)
    new: list[Transfer] = []
    entries: list[Entry] = []
    for n, transfer in wanted.items():
        first = known.get(transfer.id)
        if first is not None:
            same = first.same_request(transfer)
            results[n] = TransferResult(transfer.id, None if same else "transfer_id_reused",
                                        first if same else None)
            continue
        debit, credit = accounts[transfer.debit_account_id], accounts[
            transfer.credit_account_id]
        if debit.no_overdraft and debit.available < transfer.amount:
            results[n] = TransferResult(transfer.id, "insufficient_funds")
            continue
        if transfer.kind is TransferKind.PENDING:
            debit.debits_pending += transfer.amount
            credit.credits_pending += transfer.amount
        else:
            debit.debits_posted += transfer.amount
            credit.credits_posted += transfer.amount
            entries.append((transfer.debit_account_id, transfer.id, -transfer.amount,
                            debit.credits_posted - debit.debits_posted, now))
            entries.append((transfer.credit_account_id, transfer.id, transfer.amount,
                            credit.credits_posted - credit.debits_posted, now))
        known[transfer.id] = transfer
        new.append(transfer)
        results[n] = TransferResult(transfer.id, None, transfer)
    store.write_batch(new, entries, accounts)
    return [r for r in results if r is not None]
