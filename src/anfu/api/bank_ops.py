"""Operators reconciling bank operations: the platform's record of a top-up or withdrawal
beside the bank's own record of it (its statement), and whether the two agree."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.responses import Response

from anfu.adapters.bank import BankUnavailable
from anfu.api.common import json_response
from anfu.bootstrap import Platform
from anfu.db.wallet_store import SqlWalletStore
from anfu.errors import NotFound, UpstreamFailed

_BANK_OPERATION = {"topup": "charge", "withdrawal": "payout"}


def build_admin_router(platform: Platform) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["bank operations"])

    @router.get("/bank-operations/{op_id}", summary="A bank operation beside the bank's own"
                " record of it")
    async def bank_operation(op_id: str) -> Response:
        op = platform.read(lambda conn: SqlWalletStore(conn).bank_op(op_id))
        if op is None:
            raise NotFound(f"no bank operation {op_id}", code="bank_operation_not_found")
        try:
            entry = await platform.bank.statement_entry(operation=_BANK_OPERATION[op.kind],
                                                        reference=op.op_id)
        except BankUnavailable as exc:
            raise UpstreamFailed(f"the bank's statement is not available ({exc})",
                                 code="bank_unavailable") from exc
        bank: dict[str, Any] | None = None if entry is None else {
            "amount": entry.amount, "currency": entry.currency, "status": entry.status,
            "bank_reference": entry.bank_reference}
        booked = op.status == "succeeded"
        reconciled = (entry is None and op.status in ("pending", "failed")) or (
            entry is not None and entry.amount == op.amount and entry.currency == op.currency
            and (entry.status == "succeeded") == booked
            and (not booked or entry.bank_reference == op.bank_reference))
        return json_response({"operation": op.public(), "bank": bank,
                              "reconciled": reconciled})

    return router
