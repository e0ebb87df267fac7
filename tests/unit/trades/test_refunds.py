"""Refunds after settlement come from the merchant's balance; when a payout has left it
short, the refund is refused and nothing moves."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from anfu.db.ledger_store import balances_of
from anfu.db.merchant_store import SqlMerchantStore
from anfu.errors import InsufficientFunds
from anfu.ledger import service as ledger
from anfu.ledger.model import AccountRef
from anfu.merchants.model import Merchant
from anfu.trades import service as trades
from anfu.trades.model import TradeMode
from tests.dbharness import Harness, open_harness

TERMS = trades.MerchantTerms("mshop", 60, None)
TIMERS = trades.TradeTimers(900, 864000, 86400)
BANK = AccountRef.clearing("sandbox", "CNY")


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = open_harness(tmp_path)
    harness.write(lambda uow: SqlMerchantStore(uow.conn).insert_merchant(
        Merchant("mshop", "Shop", None, 60, "active", 0.0)))
    yield harness
    harness.close()


def balance(h: Harness, owner_type: str, owner: str, kind: str) -> int:
    rows = h.read(lambda c: balances_of(c, owner_type, owner, kind))
    return rows[0].posted if rows else 0


def test_refund_after_payout_is_refused_when_the_merchant_is_short(h: Harness) -> None:
    h.write(lambda uow: ledger.transfer(uow.ledger, transfer_id="fund", debit=BANK,
                                        credit=AccountRef.wallet("buyer", "CNY"),
                                        amount=10_000, now=uow.now))
    trade = h.write(lambda uow: trades.create_trade(uow, merchant=TERMS, request=trades
                    .TradeRequest("o1", 10_000, "CNY", "phone", TradeMode.DIRECT, None, None,
                                  "h1"), timers=TIMERS, max_amount=10**12)[0])
    h.write(lambda uow: trades.pay_trade(uow, trade_no=trade.trade_no, buyer_id="buyer"))
    assert balance(h, "merchant", "mshop", "settlement") == 9_940
    # the merchant is paid out to its bank, keeping 1,000
    h.write(lambda uow: ledger.transfer(uow.ledger, transfer_id="payout",
                                        debit=AccountRef.settlement("mshop", "CNY"),
                                        credit=BANK, amount=8_940, now=uow.now))
    with pytest.raises(InsufficientFunds) as info:
        h.write(lambda uow: trades.refund_trade(
            uow, trade_no=trade.trade_no, merchant_id="mshop", out_refund_no="r1",
            amount=5_000, reason=None, request_hash="r"))
    assert info.value.code == "merchant_balance_insufficient"
    assert balance(h, "merchant", "mshop", "settlement") == 1_000
    assert balance(h, "customer", "buyer", "wallet") == 0
    again = h.write(lambda uow: trades.load(uow, trade.trade_no))
    assert again.refunded_amount == 0
    # a refund the balance covers goes through (the fee on it comes back from revenue)
    h.write(lambda uow: trades.refund_trade(
        uow, trade_no=trade.trade_no, merchant_id="mshop", out_refund_no="r2", amount=1_000,
        reason=None, request_hash="r2"))
    assert balance(h, "customer", "buyer", "wallet") == 1_000
    assert balance(h, "merchant", "mshop", "settlement") == 6
    assert h.invariants().ok
