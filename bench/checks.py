"""After a pay run: was every paid trade paid exactly once, with its money and records?

Read straight from the database once the server has stopped. Each paid trade must have
exactly one hold (``<trade_no>:hold``, its amount, wallet -> escrow), exactly one
``trade.paid`` outbox event and one stored idempotent response; the wallets' pending debits
must equal the sum of the paid amounts; and the number of paid trades must match what wrk
saw answered (plus at most one in-flight request per connection cut off at the end of
each run)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import create_engine, text

PAID = "WAIT_SELLER_SEND_GOODS"


def _one(conn: Any, sql: str, **params: Any) -> int:
    return int(conn.execute(text(sql), params).scalar() or 0)


def paid_exactly_once(database_url: str, *, answered: int, in_flight_max: int,
                      amount: int, unsure: int = 0) -> dict[str, Any]:
    """``answered``: payments wrk saw answered 2xx, of which up to ``unsure`` may be the
    /healthz requests a thread sends when it runs out of trades."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            paid = _one(conn, "SELECT COUNT(*) FROM trades WHERE status = :s", s=PAID)
            unpaid_with_buyer = _one(conn, "SELECT COUNT(*) FROM trades WHERE status <> :s"
                                     " AND buyer_id IS NOT NULL", s=PAID)
            holds = _one(conn, "SELECT COUNT(*) FROM trades t JOIN transfers x"
                         " ON x.id = t.hold_transfer_id WHERE t.status = :s AND x.kind ="
                         " 'pending' AND x.amount = t.amount AND x.id = t.trade_no || :suffix",
                         s=PAID, suffix=":hold")
            all_holds = _one(conn, "SELECT COUNT(*) FROM transfers WHERE kind = 'pending'")
            events = _one(conn, "SELECT COUNT(*) FROM events WHERE type = 'trade.paid'")
            event_trades = _one(conn, "SELECT COUNT(DISTINCT trade_no) FROM events"
                                " WHERE type = 'trade.paid'")
            stored = _one(conn, "SELECT COUNT(*) FROM idempotency_keys WHERE key LIKE"
                          " 'bench-pay-%'")
            pending = _one(conn, "SELECT SUM(debits_pending) FROM accounts WHERE kind ="
                           " 'wallet'")
    finally:
        engine.dispose()
    problems = []
    if unpaid_with_buyer:
        problems.append(f"{unpaid_with_buyer} trades have a buyer but are not paid")
    if not holds == all_holds == paid:
        problems.append(f"{paid} paid trades but {holds} matching holds ({all_holds} holds)")
    if not events == event_trades == paid:
        problems.append(f"{paid} paid trades but {events} trade.paid events for"
                        f" {event_trades} trades")
    if stored != paid:
        problems.append(f"{paid} paid trades but {stored} stored idempotent responses")
    if pending != paid * amount:
        problems.append(f"wallets' pending debits {pending} != {paid} x {amount}")
    if not answered - unsure <= paid <= answered + in_flight_max:
        problems.append(f"wrk saw {answered} payments answered, the database has {paid}"
                        f" (at most {in_flight_max} may be cut off in flight)")
    return {"ok": not problems, "paid": paid, "answered": answered, "holds": holds,
            "events": events, "problems": problems}
