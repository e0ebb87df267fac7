"""Trade use cases. Each runs inside one unit of work: ledger transfers, the trade's new
state, its outbox event and its timers commit together or not at all.

Money flow (all transfer ids derive from the trade, so a retried step cannot move twice):
- pay (escrow): hold buyer wallet -> platform escrow (pending transfer ``<trade>:hold``);
- pay (direct): buyer wallet -> escrow, then settle at once;
- settle: post the hold, then escrow -> merchant (net of fee) and escrow -> fee revenue;
- refund before settlement: void the hold (full refund) or post it and pay escrow -> buyer;
- refund after settlement: merchant -> buyer, and the fee on the refunded part goes back
  from fee revenue, so the fee always equals fee_for(settled amount - refunds since)."""

from __future__ import annotations

from dataclasses import dataclass

from anfu.errors import Conflict, Forbidden, InsufficientFunds, InvalidRequest, NotFound
from anfu.ledger import service as ledger
from anfu.ledger.model import AccountRef
from anfu.money import check_amount, check_currency, fee_for
from anfu.trades.model import (
    PAID_UNSETTLED,
    REFUNDABLE,
    SETTLED,
    CloseReason,
    Refund,
    Trade,
    TradeMode,
    TradeStatus,
)
from anfu.uow import UnitOfWork

PAY_TIMEOUT_JOB = "trade.pay_timeout"
CONFIRM_TIMEOUT_JOB = "trade.confirm_timeout"


@dataclass(frozen=True, slots=True)
class TradeRequest:
    out_trade_no: str
    amount: int
    currency: str
    subject: str
    mode: TradeMode
    notify_url: str | None
    pay_expire_s: int | None
    request_hash: str


@dataclass(frozen=True, slots=True)
class MerchantTerms:
    merchant_id: str
    fee_bps: int
    notify_url: str | None


@dataclass(frozen=True, slots=True)
class TradeTimers:
    pay_timeout_s: int
    confirm_timeout_s: int
    max_pay_timeout_s: int


def _event(uow: UnitOfWork, trade: Trade, type_: str, refund: Refund | None = None) -> None:
    data = {"trade": trade.public()}
    if refund is not None:
        data["refund"] = refund.public()
    uow.outbox.add(merchant_id=trade.merchant_id, trade_no=trade.trade_no, type=type_,
                   data=data, notify_url=trade.notify_url)


def load(uow: UnitOfWork, trade_no: str, *, merchant_id: str | None = None) -> Trade:
    trade = uow.trades.get(trade_no)
    if trade is None or (merchant_id is not None and trade.merchant_id != merchant_id):
        raise NotFound(f"no trade {trade_no}", code="trade_not_found")
    return trade


def create_trade(uow: UnitOfWork, *, merchant: MerchantTerms, request: TradeRequest,
                 timers: TradeTimers, max_amount: int) -> tuple[Trade, bool]:
    """Returns (trade, created). The same out_trade_no with the same body returns the first
    trade; with another body it is a conflict."""
    check_currency(request.currency)
    check_amount(request.amount, limit=max_amount)
    existing = uow.trades.by_out_trade_no(merchant.merchant_id, request.out_trade_no)
    if existing is not None:
        if existing.request_hash != request.request_hash:
            raise Conflict(f"out_trade_no {request.out_trade_no!r} was already used with"
                           " another request", code="out_trade_no_reused",
                           trade_no=existing.trade_no)
        return existing, False
    expire_s = timers.pay_timeout_s if request.pay_expire_s is None else request.pay_expire_s
    if not 0 < expire_s <= timers.max_pay_timeout_s:
        raise InvalidRequest(f"pay_expire_s must be between 1 and {timers.max_pay_timeout_s}",
                             code="invalid_pay_expire")
    trade = Trade(
        trade_no=uow.new_id("T"), merchant_id=merchant.merchant_id,
        out_trade_no=request.out_trade_no, request_hash=request.request_hash,
        amount=request.amount, currency=request.currency, subject=request.subject,
        # As with Alipay, the notify URL is fixed when the trade is made: the trade's own,
        # else the merchant's default at that moment.
        mode=request.mode, notify_url=request.notify_url or merchant.notify_url,
        status=TradeStatus.WAIT_BUYER_PAY,
        fee_bps=merchant.fee_bps, created_at=uow.now, pay_expire_at=uow.now + expire_s)
    uow.trades.insert(trade)
    uow.jobs.schedule(kind=PAY_TIMEOUT_JOB, ref=trade.trade_no, run_at=trade.pay_expire_at)
    return trade, True


def pay_trade(uow: UnitOfWork, *, trade_no: str, buyer_id: str) -> Trade:
    trade = load(uow, trade_no)
    if trade.buyer_id == buyer_id and trade.status is not TradeStatus.WAIT_BUYER_PAY:
        return trade  # already paid by this buyer: a retry, not a second payment
    trade.require(TradeStatus.WAIT_BUYER_PAY, action="pay")
    if uow.now >= trade.pay_expire_at:
        raise InvalidRequest(f"trade {trade_no} expired unpaid", code="trade_expired")
    wallet = AccountRef.wallet(buyer_id, trade.currency)
    escrow = AccountRef.escrow(trade.currency)
    hold_id = f"{trade.trade_no}:hold"
    try:
        ledger.transfer(uow.ledger, transfer_id=hold_id, debit=wallet, credit=escrow,
                        amount=trade.amount, now=uow.now, reference=trade.trade_no,
                        description=trade.subject[:200], pending=True)
    except InsufficientFunds as exc:
        raise InsufficientFunds("your wallet balance does not cover this trade",
                                code="insufficient_funds", needed=trade.amount,
                                currency=trade.currency) from exc
    trade.set(status=TradeStatus.WAIT_SELLER_SEND_GOODS, buyer_id=buyer_id,
              hold_transfer_id=hold_id, paid_at=uow.now)
    if trade.mode is TradeMode.DIRECT:
        _settle(uow, trade)
    else:
        uow.trades.save(trade)
    _event(uow, trade, "trade.paid")
    return trade


def ship_trade(uow: UnitOfWork, *, trade_no: str, merchant_id: str,
               confirm_timeout_s: int) -> Trade:
    trade = load(uow, trade_no, merchant_id=merchant_id)
    if trade.status is TradeStatus.WAIT_BUYER_CONFIRM_GOODS:
        return trade
    trade.require(TradeStatus.WAIT_SELLER_SEND_GOODS, action="ship")
    deadline = uow.now + confirm_timeout_s
    trade.set(status=TradeStatus.WAIT_BUYER_CONFIRM_GOODS, shipped_at=uow.now,
              confirm_deadline=deadline)
    uow.trades.save(trade)
    uow.jobs.schedule(kind=CONFIRM_TIMEOUT_JOB, ref=trade.trade_no, run_at=deadline)
    _event(uow, trade, "trade.shipped")
    return trade


def confirm_trade(uow: UnitOfWork, *, trade_no: str, buyer_id: str) -> Trade:
    trade = load(uow, trade_no)
    if trade.buyer_id != buyer_id:
        raise Forbidden("only the buyer can confirm receipt", code="not_the_buyer")
    if trade.status in SETTLED:
        return trade
    trade.require(TradeStatus.WAIT_BUYER_CONFIRM_GOODS, action="confirm")
    _settle(uow, trade)
    return trade


def close_trade(uow: UnitOfWork, *, trade_no: str, merchant_id: str) -> Trade:
    trade = load(uow, trade_no, merchant_id=merchant_id)
    if trade.status is TradeStatus.TRADE_CLOSED:
        return trade
    trade.require(TradeStatus.WAIT_BUYER_PAY, action="close")
    _close(uow, trade, CloseReason.MERCHANT_CLOSED)
    return trade


def _close(uow: UnitOfWork, trade: Trade, reason: CloseReason) -> None:
    trade.set(status=TradeStatus.TRADE_CLOSED, closed_at=uow.now, close_reason=reason)
    uow.trades.save(trade)
    _event(uow, trade, "trade.closed")


def _post_hold(uow: UnitOfWork, trade: Trade) -> None:
    if not trade.hold_posted and trade.hold_transfer_id is not None:
        ledger.post_pending(uow.ledger, transfer_id=f"{trade.trade_no}:post",
                            pending_id=trade.hold_transfer_id, now=uow.now)
        trade.set(hold_posted=True)


def _settle(uow: UnitOfWork, trade: Trade) -> None:
    """Pay the merchant what the buyer paid minus refunds so far, less the fee."""
    _post_hold(uow, trade)
    base = trade.amount - trade.refunded_amount
    fee = fee_for(base, trade.fee_bps)
    escrow = AccountRef.escrow(trade.currency)
    if base - fee > 0:
        ledger.transfer(uow.ledger, transfer_id=f"{trade.trade_no}:settle", debit=escrow,
                        credit=AccountRef.settlement(trade.merchant_id, trade.currency),
                        amount=base - fee, now=uow.now, reference=trade.trade_no,
                        description="settlement")
    if fee > 0:
        ledger.transfer(uow.ledger, transfer_id=f"{trade.trade_no}:fee", debit=escrow,
                        credit=AccountRef.fee_revenue(trade.currency), amount=fee,
                        now=uow.now, reference=trade.trade_no, description="merchant fee")
    final = TradeStatus.TRADE_SUCCESS if trade.mode is TradeMode.DIRECT else (
        TradeStatus.TRADE_FINISHED)
    trade.set(status=final, settled_amount=base, fee_amount=fee, finished_at=uow.now)
    uow.trades.save(trade)
    if trade.mode is TradeMode.ESCROW:
        _event(uow, trade, "trade.finished")


def refund_trade(uow: UnitOfWork, *, trade_no: str, merchant_id: str, out_refund_no: str,
                 amount: int, reason: str | None, request_hash: str) -> tuple[Refund, Trade]:
    trade = load(uow, trade_no, merchant_id=merchant_id)
    existing = uow.trades.refund(trade_no, out_refund_no)
    if existing is not None:
        if existing.request_hash != request_hash:
            raise Conflict(f"out_refund_no {out_refund_no!r} was already used with another"
                           " request", code="out_refund_no_reused")
        return existing, trade
    check_amount(amount)
    trade.require(*REFUNDABLE, action="refund")
    if amount > trade.refundable:
        raise InvalidRequest(f"refund of {amount} exceeds the refundable {trade.refundable}",
                             code="refund_exceeds_paid", refundable=trade.refundable)
    refund_no = uow.new_id("R")
    buyer = AccountRef.wallet(trade.buyer_id or "", trade.currency)
    if trade.status in PAID_UNSETTLED:
        source = "escrow"
        _refund_from_escrow(uow, trade, refund_no, amount, buyer)
    else:
        source = "merchant"
        _refund_after_settlement(uow, trade, refund_no, amount, buyer)
    refund = Refund(refund_no=refund_no, trade_no=trade_no, out_refund_no=out_refund_no,
                    request_hash=request_hash, amount=amount, currency=trade.currency,
                    reason=reason, source=source, status="SUCCESS", created_at=uow.now)
    uow.trades.insert_refund(refund)
    trade.set(refunded_amount=trade.refunded_amount + amount)
    if trade.refunded_amount == trade.amount:
        trade.set(status=TradeStatus.TRADE_CLOSED, closed_at=uow.now,
                  close_reason=CloseReason.FULLY_REFUNDED)
    uow.trades.save(trade)
    _event(uow, trade, "refund.succeeded", refund)
    if trade.status is TradeStatus.TRADE_CLOSED:
        _event(uow, trade, "trade.closed")
    return refund, trade


def _refund_from_escrow(uow: UnitOfWork, trade: Trade, refund_no: str, amount: int,
                        buyer: AccountRef) -> None:
    assert trade.hold_transfer_id is not None
    if not trade.hold_posted and amount == trade.amount:
        ledger.void_pending(uow.ledger, transfer_id=f"{trade.trade_no}:void",
                            pending_id=trade.hold_transfer_id, now=uow.now)
        return
    _post_hold(uow, trade)
    ledger.transfer(uow.ledger, transfer_id=f"{refund_no}:refund",
                    debit=AccountRef.escrow(trade.currency), credit=buyer, amount=amount,
                    now=uow.now, reference=trade.trade_no, description="refund")


def _refund_after_settlement(uow: UnitOfWork, trade: Trade, refund_no: str, amount: int,
                             buyer: AccountRef) -> None:
    refunded_since = trade.refunded_amount - (trade.amount - trade.settled_amount)
    new_fee = fee_for(trade.settled_amount - refunded_since - amount, trade.fee_bps)
    fee_back = trade.fee_amount - new_fee
    from_merchant = amount - fee_back
    if from_merchant > 0:
        try:
            ledger.transfer(uow.ledger, transfer_id=f"{refund_no}:refund",
                            debit=AccountRef.settlement(trade.merchant_id, trade.currency),
                            credit=buyer, amount=from_merchant, now=uow.now,
                            reference=trade.trade_no, description="refund")
        except InsufficientFunds as exc:
            raise InsufficientFunds(
                "the merchant's settled balance does not cover this refund",
                code="merchant_balance_insufficient", needed=from_merchant) from exc
    if fee_back > 0:
        ledger.transfer(uow.ledger, transfer_id=f"{refund_no}:fee_back",
                        debit=AccountRef.fee_revenue(trade.currency), credit=buyer,
                        amount=fee_back, now=uow.now, reference=trade.trade_no,
                        description="fee returned on refund")
    trade.set(fee_amount=new_fee)


def run_timer(uow: UnitOfWork, *, kind: str, ref: str) -> str:
    """Fire one persisted timer; a timer whose trade moved on does nothing."""
    trade = uow.trades.get(ref)
    if trade is None:
        return "missing"
    if kind == PAY_TIMEOUT_JOB and trade.status is TradeStatus.WAIT_BUYER_PAY:
        _close(uow, trade, CloseReason.PAY_TIMEOUT)
        return "closed"
    if kind == CONFIRM_TIMEOUT_JOB and trade.status is TradeStatus.WAIT_BUYER_CONFIRM_GOODS:
        _settle(uow, trade)
        return "settled"
    return "noop"
