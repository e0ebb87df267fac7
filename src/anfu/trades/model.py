"""Trade state machine, with Alipay's guaranteed-trade status names.

escrow: WAIT_BUYER_PAY -pay-> WAIT_SELLER_SEND_GOODS -ship-> WAIT_BUYER_CONFIRM_GOODS
        -confirm or confirm timeout-> TRADE_FINISHED
direct: WAIT_BUYER_PAY -pay-> TRADE_SUCCESS
TRADE_CLOSED: unpaid past the pay timeout, closed by the merchant before payment, or fully
refunded."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from anfu.errors import InvalidState


class TradeStatus(enum.StrEnum):
    WAIT_BUYER_PAY = "WAIT_BUYER_PAY"
    WAIT_SELLER_SEND_GOODS = "WAIT_SELLER_SEND_GOODS"
    WAIT_BUYER_CONFIRM_GOODS = "WAIT_BUYER_CONFIRM_GOODS"
    TRADE_FINISHED = "TRADE_FINISHED"
    TRADE_SUCCESS = "TRADE_SUCCESS"
    TRADE_CLOSED = "TRADE_CLOSED"


class TradeMode(enum.StrEnum):
    ESCROW = "escrow"
    DIRECT = "direct"


PAID_UNSETTLED = (TradeStatus.WAIT_SELLER_SEND_GOODS, TradeStatus.WAIT_BUYER_CONFIRM_GOODS)
SETTLED = (TradeStatus.TRADE_FINISHED, TradeStatus.TRADE_SUCCESS)
REFUNDABLE = PAID_UNSETTLED + SETTLED


_ABLE = {"ship": "shippable", "close": "closable"}


class CloseReason(enum.StrEnum):
    PAY_TIMEOUT = "pay_timeout"
    MERCHANT_CLOSED = "merchant_closed"
    FULLY_REFUNDED = "fully_refunded"


@dataclass(slots=True)
class Trade:
    trade_no: str
    merchant_id: str
    out_trade_no: str
    request_hash: str
    amount: int
    currency: str
    subject: str
    mode: TradeMode
    notify_url: str | None
    status: TradeStatus
    fee_bps: int
    created_at: float
    pay_expire_at: float
    buyer_id: str | None = None
    hold_transfer_id: str | None = None
    hold_posted: bool = False
    refunded_amount: int = 0
    settled_amount: int = 0
    fee_amount: int = 0
    paid_at: float | None = None
    shipped_at: float | None = None
    confirm_deadline: float | None = None
    finished_at: float | None = None
    closed_at: float | None = None
    close_reason: CloseReason | None = None
    changed: set[str] = field(default_factory=set, repr=False, compare=False)

    def require(self, *allowed: TradeStatus, action: str) -> None:
        if self.status not in allowed:
            raise InvalidState(
                f"cannot {action} trade {self.trade_no}: its status is {self.status.value}",
                code=f"trade_not_{_ABLE.get(action, action + 'able')}",
                trade_status=self.status.value)

    def set(self, **values: Any) -> None:
        for name, value in values.items():
            setattr(self, name, value)
        self.changed.update(values)

    @property
    def refundable(self) -> int:
        return self.amount - self.refunded_amount if self.status in REFUNDABLE else 0

    def public(self) -> dict[str, Any]:
        """The trade as shown to merchants and buyers (and in notification data)."""
        return {
            "trade_no": self.trade_no, "out_trade_no": self.out_trade_no,
            "merchant_id": self.merchant_id, "amount": self.amount, "currency": self.currency,
            "subject": self.subject, "mode": self.mode.value, "status": self.status.value,
            "buyer_id": self.buyer_id, "refunded_amount": self.refunded_amount,
            "settled_amount": self.settled_amount, "fee_amount": self.fee_amount,
            "created_at": self.created_at, "pay_expire_at": self.pay_expire_at,
            "paid_at": self.paid_at, "shipped_at": self.shipped_at,
            "confirm_deadline": self.confirm_deadline, "finished_at": self.finished_at,
            "closed_at": self.closed_at,
            "close_reason": self.close_reason.value if self.close_reason else None,
        }


@dataclass(frozen=True, slots=True)
class Refund:
    refund_no: str
    trade_no: str
    out_refund_no: str
    request_hash: str
    amount: int
    currency: str
    reason: str | None
    source: str  # "escrow" before settlement, "merchant" after
    status: str
    created_at: float

    def public(self) -> dict[str, Any]:
        return {"refund_no": self.refund_no, "trade_no": self.trade_no,
                "out_refund_no": self.out_refund_no, "amount": self.amount,
                "currency": self.currency, "reason": self.reason, "source": self.source,
                "status": self.status, "created_at": self.created_at}
