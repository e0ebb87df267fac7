"""What each money move writes to the transparency log, in its own transaction.

Payments, refunds, transfers and withdrawals are receipt kinds: the sequencer issues the
customer a signed receipt for each once it has a log index. Top-ups are logged too, without a
receipt. ``device_signature_sha256`` ties the entry to the phone's transaction signature
(the evidence itself stays in ``txn_evidence``)."""

from __future__ import annotations

from typing import Any

from anfu.db.log_store import SqlLogStore
from anfu.db.uow import SqlUnitOfWork
from anfu.identity.txn_signing import TxnEvidence
from anfu.trades.model import Refund, Trade
from anfu.wallet.service import BankOperation


def _signature(evidence: TxnEvidence | None) -> dict[str, Any]:
    if evidence is None:
        return {"device_signature_sha256": None, "device_id": None,
                "certificate_serial": None}
    return {"device_signature_sha256": evidence.signature_sha256(),
            "device_id": evidence.device_id,
            "certificate_serial": evidence.certificate_serial}


def log_payment(uow: SqlUnitOfWork, trade: Trade, merchant_name: str,
                evidence: TxnEvidence | None) -> None:
    SqlLogStore(uow.conn).enqueue("payment", {
        "txn_id": trade.trade_no, "user_id": trade.buyer_id, "merchant_id": trade.merchant_id,
        "amount": trade.amount, "currency": trade.currency, "payee_id": trade.merchant_id,
        "payee_name": merchant_name, "mode": trade.mode.value,
        "ledger_transfer_ids": [trade.hold_transfer_id], **_signature(evidence)}, uow.now)


def log_refund(uow: SqlUnitOfWork, refund: Refund, trade: Trade) -> None:
    SqlLogStore(uow.conn).enqueue("refund", {
        "txn_id": refund.refund_no, "trade_no": trade.trade_no, "user_id": trade.buyer_id,
        "merchant_id": trade.merchant_id, "amount": refund.amount,
        "currency": refund.currency, "payee_id": trade.buyer_id, "payee_name": "wallet",
        "source": refund.source, "ledger_transfer_ids": [f"{refund.refund_no}:refund"],
        **_signature(None)}, uow.now)


def log_transfer(uow: SqlUnitOfWork, transfer: dict[str, Any], payee_name: str,
                 evidence: TxnEvidence | None) -> None:
    SqlLogStore(uow.conn).enqueue("transfer", {
        "txn_id": transfer["transfer_no"], "user_id": transfer["from_user_id"],
        "merchant_id": None, "amount": transfer["amount"], "currency": transfer["currency"],
        "payee_id": transfer["to_user_id"], "payee_name": payee_name,
        "ledger_transfer_ids": [f"{transfer['transfer_no']}:p2p"], **_signature(evidence)},
        uow.now)


def log_bank_op(uow: SqlUnitOfWork, op: BankOperation, payee_id: str, payee_name: str,
                evidence: TxnEvidence | None) -> None:
    if op.status != "succeeded":
        return
    kind = "withdrawal" if op.kind == "withdrawal" else "topup"
    transfers = ([f"{op.op_id}:hold", f"{op.op_id}:post"] if kind == "withdrawal"
                 else [f"{op.op_id}:credit"])
    SqlLogStore(uow.conn).enqueue(kind, {
        "txn_id": op.op_id, "user_id": op.user_id, "merchant_id": None, "amount": op.amount,
        "currency": op.currency, "payee_id": payee_id, "payee_name": payee_name,
        "bank_reference": op.bank_reference, "ledger_transfer_ids": transfers,
        **_signature(evidence)}, uow.now)
