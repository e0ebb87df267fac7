"""Ledger use cases. Each transfer has a client-chosen id: repeating the same request returns
the first result and moves nothing; the same id with another request is a conflict."""

from __future__ import annotations

from dataclasses import replace

from anfu.errors import Conflict, InsufficientFunds, InvalidRequest, InvalidState, NotFound
from anfu.ledger.model import AccountRef, Transfer, TransferKind
from anfu.ledger.ports import LedgerStore
from anfu.money import check_amount, check_currency


def _idempotent(store: LedgerStore, wanted: Transfer) -> Transfer | None:
    existing = store.find_transfer(wanted.id)
    if existing is None:
        return None
    if not existing.same_request(wanted):
        raise Conflict(f"transfer id {wanted.id!r} was already used for another transfer",
                       code="transfer_id_reused")
    return existing


def _insufficient(ref_or_id: object) -> InsufficientFunds:
    return InsufficientFunds(f"the available balance of {ref_or_id} does not cover this amount",
                             code="insufficient_funds")


def transfer(store: LedgerStore, *, transfer_id: str, debit: AccountRef, credit: AccountRef,
             amount: int, now: float, reference: str | None = None,
             description: str | None = None, pending: bool = False,
             timeout_at: float | None = None) -> Transfer:
    """Move ``amount`` from ``debit`` to ``credit`` at once, or hold it (``pending``)."""
    check_amount(amount)
    check_currency(debit.currency)
    if debit.currency != credit.currency:
        raise InvalidRequest("both accounts of a transfer must have the same currency",
                             code="currency_mismatch")
    if debit == credit:
        raise InvalidRequest("a transfer needs two different accounts", code="same_account")
    debit_id, credit_id = store.account_id(debit), store.account_id(credit)
    wanted = Transfer(
        id=transfer_id, kind=TransferKind.PENDING if pending else TransferKind.SINGLE,
        debit_account_id=debit_id, credit_account_id=credit_id, amount=amount,
        currency=debit.currency, created_at=now, timeout_at=timeout_at if pending else None,
        reference=reference, description=description)
    if not store.insert_transfer(wanted):  # the id is taken: a retry, or a conflict
        existing = _idempotent(store, wanted)
        assert existing is not None
        return existing
    # The row is written first (one statement instead of a lookup and an insert); if a
    # balance check below refuses, the unit of work rolls the row back with everything else.
    if pending:
        if store.apply(debit_id, debits_pending=amount, reserve=amount) is None:
            raise _insufficient(debit)
        store.apply(credit_id, credits_pending=amount)
    else:
        try:
            _post(store, transfer_id, debit_id, credit_id, amount, now, reserve=amount)
        except InsufficientFunds:
            raise _insufficient(debit) from None
    return wanted


def _post(store: LedgerStore, transfer_id: str, debit_id: int, credit_id: int, amount: int,
          now: float, *, reserve: int, release: int = 0) -> None:
    """Post ``amount`` (and release ``release`` of a hold on both sides), with entries."""
    debit_after = store.apply(debit_id, debits_posted=amount, debits_pending=-release,
                              reserve=reserve)
    if debit_after is None:
        raise _insufficient(f"account {debit_id}")
    credit_after = store.apply(credit_id, credits_posted=amount, credits_pending=-release)
    assert credit_after is not None
    if amount:
        store.add_entry(account_id=debit_id, transfer_id=transfer_id, amount=-amount,
                        balance_after=debit_after, created_at=now)
        store.add_entry(account_id=credit_id, transfer_id=transfer_id, amount=amount,
                        balance_after=credit_after, created_at=now)


def _open_hold(store: LedgerStore, pending_id: str) -> Transfer:
    hold = store.find_transfer(pending_id)
    if hold is None or hold.kind is not TransferKind.PENDING:
        raise NotFound(f"no pending transfer {pending_id!r}", code="pending_transfer_not_found")
    return hold


def _resolve(store: LedgerStore, *, transfer_id: str, pending_id: str, kind: TransferKind,
             amount: int | None, now: float) -> Transfer:
    hold = _open_hold(store, pending_id)
    posted = hold.amount if amount is None else amount
    if kind is TransferKind.POST and not 0 < posted <= hold.amount:
        raise InvalidRequest("a hold can be posted for at most its own amount",
                             code="invalid_amount")
    wanted = replace(hold, id=transfer_id, kind=kind, pending_id=pending_id, created_at=now,
                     timeout_at=None, amount=posted if kind is TransferKind.POST else hold.amount)
    if (existing := _idempotent(store, wanted)) is not None:
        return existing
    if store.find_resolution(pending_id) is not None:
        raise InvalidState(f"hold {pending_id!r} was already posted, voided or expired",
                           code="pending_transfer_resolved")
    _post(store, transfer_id, hold.debit_account_id, hold.credit_account_id,
          posted if kind is TransferKind.POST else 0, now, reserve=0, release=hold.amount)
    store.insert_transfer(wanted)
    return wanted


def post_pending(store: LedgerStore, *, transfer_id: str, pending_id: str, now: float,
                 amount: int | None = None) -> Transfer:
    """Settle a hold, fully or partly; the part not posted goes back to the debit account."""
    return _resolve(store, transfer_id=transfer_id, pending_id=pending_id,
                    kind=TransferKind.POST, amount=amount, now=now)


def void_pending(store: LedgerStore, *, transfer_id: str, pending_id: str,
                 now: float) -> Transfer:
    return _resolve(store, transfer_id=transfer_id, pending_id=pending_id,
                    kind=TransferKind.VOID, amount=None, now=now)


def expire_due_holds(store: LedgerStore, *, now: float, limit: int = 500) -> int:
    """Release holds whose timeout passed; safe to run from any number of workers."""
    count = 0
    for hold in store.due_holds(now, limit):
        _resolve(store, transfer_id=f"{hold.id}:expire", pending_id=hold.id,
                 kind=TransferKind.EXPIRE, amount=None, now=now)
        count += 1
    return count


def reverse(store: LedgerStore, *, transfer_id: str, original_id: str, now: float,
            description: str | None = None) -> Transfer:
    """Correct a posted transfer with a reversing one (history is never edited)."""
    original = store.find_transfer(original_id)
    if original is None or original.kind not in (TransferKind.SINGLE, TransferKind.POST):
        raise NotFound(f"no posted transfer {original_id!r}", code="transfer_not_found")
    wanted = Transfer(
        id=transfer_id, kind=TransferKind.SINGLE, debit_account_id=original.credit_account_id,
        credit_account_id=original.debit_account_id, amount=original.amount,
        currency=original.currency, created_at=now, reference=original.reference,
        description=description or f"reversal of {original_id}", reverses_id=original_id)
    if (existing := _idempotent(store, wanted)) is not None:
        return existing
    _post(store, transfer_id, wanted.debit_account_id, wanted.credit_account_id,
          wanted.amount, now, reserve=wanted.amount)
    store.insert_transfer(wanted)
    return wanted
