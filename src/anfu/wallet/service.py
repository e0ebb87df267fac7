"""Wallet use cases. A bank call sits between two units of work: the first records the
operation (and, for a withdrawal, holds the money), the second books the bank's answer.
The bank sees the operation id as its reference, so a retry never moves money twice."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from anfu.errors import Conflict, InvalidRequest, NotFound
from anfu.ledger import service as ledger
from anfu.ledger.model import AccountRef
from anfu.money import check_amount, check_currency
from anfu.uow import UnitOfWork


@dataclass(frozen=True, slots=True)
class BankOperation:
    op_id: str
    user_id: str
    kind: str  # topup | withdrawal
    amount: int
    currency: str
    status: str  # pending | succeeded | failed | review (held for reconciliation)
    bank_reference: str | None
    failure: str | None
    created_at: float

    def public(self) -> dict[str, Any]:
        return {"id": self.op_id, "kind": self.kind, "amount": self.amount,
                "currency": self.currency, "status": self.status,
                "bank_reference": self.bank_reference, "failure": self.failure,
                "created_at": self.created_at}


class WalletStore(Protocol):
    def bank_op(self, op_id: str) -> BankOperation | None: ...

    def insert_bank_op(self, op: BankOperation) -> None: ...

    def finish_bank_op(self, op_id: str, *, status: str, bank_reference: str | None,
                       bank_signature: str | None, failure: str | None) -> None: ...

    def insert_p2p(self, *, transfer_no: str, payer_id: str, payee_id: str, amount: int,
                   currency: str, memo: str | None, now: float) -> None: ...


def begin_bank_op(uow: UnitOfWork, store: WalletStore, *, op_id: str, user_id: str,
                  kind: str, amount: int, currency: str, bank: str,
                  max_amount: int) -> BankOperation:
    check_currency(currency)
    check_amount(amount, limit=max_amount)
    existing = store.bank_op(op_id)
    if existing is not None:
        # The operation id comes from the Idempotency-Key: the key's request hash is checked
        # before this, but after that record's TTL only the operation itself remembers.
        if (existing.user_id, existing.kind, existing.amount, existing.currency) != (
                user_id, kind, amount, currency):
            raise Conflict("this Idempotency-Key was used for another bank operation",
                           code="idempotency_key_reused")
        return existing
    if kind == "withdrawal":
        ledger.transfer(uow.ledger, transfer_id=f"{op_id}:hold",
                        debit=AccountRef.wallet(user_id, currency),
                        credit=AccountRef.clearing(bank, currency), amount=amount,
                        now=uow.now, reference=op_id, description="withdrawal", pending=True)
    op = BankOperation(op_id=op_id, user_id=user_id, kind=kind, amount=amount,
                       currency=currency, status="pending", bank_reference=None, failure=None,
                       created_at=uow.now)
    store.insert_bank_op(op)
    return op


def finish_bank_op(uow: UnitOfWork, store: WalletStore, *, op_id: str, succeeded: bool,
                   bank: str, bank_reference: str | None = None,
                   bank_signature: str | None = None,
                   failure: str | None = None) -> BankOperation:
    op = store.bank_op(op_id)
    if op is None:
        raise NotFound(f"no bank operation {op_id}", code="bank_operation_not_found")
    if op.status != "pending":
        return op
    if op.kind == "topup" and succeeded:
        ledger.transfer(uow.ledger, transfer_id=f"{op_id}:credit",
                        debit=AccountRef.clearing(bank, op.currency),
                        credit=AccountRef.wallet(op.user_id, op.currency), amount=op.amount,
                        now=uow.now, reference=op_id, description="top-up")
    elif op.kind == "withdrawal":
        resolve = ledger.post_pending if succeeded else ledger.void_pending
        resolve(uow.ledger, transfer_id=f"{op_id}:{'post' if succeeded else 'void'}",
                pending_id=f"{op_id}:hold", now=uow.now)
    status = "succeeded" if succeeded else "failed"
    store.finish_bank_op(op_id, status=status, bank_reference=bank_reference,
                         bank_signature=bank_signature, failure=failure)
    found = store.bank_op(op_id)
    assert found is not None
    return found


def hold_for_reconciliation(store: WalletStore, *, op_id: str, reason: str) -> BankOperation:
    """The bank's answer did not match what was asked: book nothing. A withdrawal's hold
    stays in place (the money neither returns to the wallet nor leaves the platform's books)
    until an operator reconciles the operation with the bank."""
    op = store.bank_op(op_id)
    if op is None:
        raise NotFound(f"no bank operation {op_id}", code="bank_operation_not_found")
    if op.status == "pending":
        store.finish_bank_op(op_id, status="review", bank_reference=None, bank_signature=None,
                             failure=reason[:250])
    found = store.bank_op(op_id)
    assert found is not None
    return found


def transfer_p2p(uow: UnitOfWork, store: WalletStore, *, transfer_no: str, payer_id: str,
                 payee_id: str, amount: int, currency: str, memo: str | None,
                 max_amount: int) -> dict[str, Any]:
    check_currency(currency)
    check_amount(amount, limit=max_amount)
    if payer_id == payee_id:
        raise InvalidRequest("you cannot transfer to yourself", code="same_account")
    ledger.transfer(uow.ledger, transfer_id=f"{transfer_no}:p2p",
                    debit=AccountRef.wallet(payer_id, currency),
                    credit=AccountRef.wallet(payee_id, currency), amount=amount, now=uow.now,
                    reference=transfer_no, description=(memo or "transfer")[:200])
    store.insert_p2p(transfer_no=transfer_no, payer_id=payer_id, payee_id=payee_id,
                     amount=amount, currency=currency, memo=memo, now=uow.now)
    return {"transfer_no": transfer_no, "from_user_id": payer_id, "to_user_id": payee_id,
            "amount": amount, "currency": currency, "memo": memo, "created_at": uow.now,
            "status": "SUCCESS"}
