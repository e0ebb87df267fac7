"""SQL storage for bank operations and person-to-person transfers."""

from __future__ import annotations

from sqlalchemy import Connection, insert, select, update

from anfu.db.tables import bank_operations, p2p_transfers
from anfu.wallet.service import BankOperation


class SqlWalletStore:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def bank_op(self, op_id: str) -> BankOperation | None:
        row = self._conn.execute(select(
            bank_operations.c.op_id, bank_operations.c.user_id, bank_operations.c.kind,
            bank_operations.c.amount, bank_operations.c.currency, bank_operations.c.status,
            bank_operations.c.bank_reference, bank_operations.c.failure,
            bank_operations.c.created_at,
        ).where(bank_operations.c.op_id == op_id)).first()
        return None if row is None else BankOperation(**dict(row._mapping))

    def insert_bank_op(self, op: BankOperation) -> None:
        self._conn.execute(insert(bank_operations).values(
            op_id=op.op_id, user_id=op.user_id, kind=op.kind, amount=op.amount,
            currency=op.currency, status=op.status, created_at=op.created_at))

    def finish_bank_op(self, op_id: str, *, status: str, bank_reference: str | None,
                       bank_signature: str | None, failure: str | None) -> None:
        self._conn.execute(update(bank_operations).where(bank_operations.c.op_id == op_id)
                           .values(status=status, bank_reference=bank_reference,
                                   bank_signature=bank_signature, failure=failure))

    def insert_p2p(self, *, transfer_no: str, payer_id: str, payee_id: str, amount: int,
                   currency: str, memo: str | None, now: float) -> None:
        self._conn.execute(insert(p2p_transfers).values(
            transfer_no=transfer_no, payer_id=payer_id, payee_id=payee_id, amount=amount,
            currency=currency, memo=memo, created_at=now))
