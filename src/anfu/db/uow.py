"""The SQL unit of work: repositories over one connection inside the writer's transaction."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import Connection, insert, select, text, update

from anfu.db.ledger_store import AccountIdCache, SqlLedgerStore
from anfu.db.tables import events, idempotency_keys, jobs, refunds, trades
from anfu.trades.model import CloseReason, Refund, Trade, TradeMode, TradeStatus


def new_id(prefix: str) -> str:
    """Unguessable ids (a trade number is shown in QR codes and links)."""
    return prefix + secrets.token_hex(10)


_TRADE_COLUMNS = [c.name for c in trades.columns]
_SELECT_TRADE = text("SELECT * FROM trades WHERE trade_no = :t")
_SELECT_TRADE_OUT = text("SELECT * FROM trades WHERE merchant_id = :m AND out_trade_no = :o")


def trade_from_row(row: Any) -> Trade:
    m = dict(row._mapping)
    m["mode"] = TradeMode(m["mode"])
    m["status"] = TradeStatus(m["status"])
    m["close_reason"] = CloseReason(m["close_reason"]) if m["close_reason"] else None
    m["hold_posted"] = bool(m["hold_posted"])
    return Trade(**m)


def refund_from_row(row: Any) -> Refund:
    return Refund(**dict(row._mapping))


def _db_value(value: Any) -> Any:
    return value.value if hasattr(value, "value") else value


class SqlTradeStore:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def get(self, trade_no: str) -> Trade | None:
        row = self._conn.execute(_SELECT_TRADE, {"t": trade_no}).first()
        return None if row is None else trade_from_row(row)

    def by_out_trade_no(self, merchant_id: str, out_trade_no: str) -> Trade | None:
        row = self._conn.execute(_SELECT_TRADE_OUT, {"m": merchant_id, "o": out_trade_no}).first()
        return None if row is None else trade_from_row(row)

    def insert(self, trade: Trade) -> None:
        values = {name: _db_value(getattr(trade, name)) for name in _TRADE_COLUMNS}
        self._conn.execute(insert(trades).values(**values))
        trade.changed.clear()

    def save(self, trade: Trade) -> None:
        if not trade.changed:
            return
        values = {name: _db_value(getattr(trade, name)) for name in trade.changed}
        self._conn.execute(update(trades).where(trades.c.trade_no == trade.trade_no)
                           .values(**values))
        trade.changed.clear()

    def refund(self, trade_no: str, out_refund_no: str) -> Refund | None:
        row = self._conn.execute(select(refunds).where(
            refunds.c.trade_no == trade_no, refunds.c.out_refund_no == out_refund_no)).first()
        return None if row is None else refund_from_row(row)

    def insert_refund(self, refund: Refund) -> None:
        self._conn.execute(insert(refunds).values(
            refund_no=refund.refund_no, trade_no=refund.trade_no,
            out_refund_no=refund.out_refund_no, request_hash=refund.request_hash,
            amount=refund.amount, currency=refund.currency, reason=refund.reason,
            source=refund.source, status=refund.status, created_at=refund.created_at))


class SqlOutbox:
    def __init__(self, conn: Connection, now: float) -> None:
        self._conn = conn
        self._now = now

    def add(self, *, merchant_id: str, trade_no: str | None, type: str,
            data: dict[str, Any], notify_url: str | None) -> str:
        event_id = new_id("evt_")
        self._conn.execute(insert(events).values(
            id=event_id, merchant_id=merchant_id, trade_no=trade_no, type=type,
            data=orjson.dumps(data).decode(), created_at=self._now, notify_url=notify_url,
            delivery_status="pending" if notify_url else "none", attempts=0,
            next_attempt_at=self._now if notify_url else None))
        return event_id


class SqlJobStore:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def schedule(self, *, kind: str, ref: str, run_at: float) -> None:
        exists = self._conn.execute(select(jobs.c.id).where(
            jobs.c.kind == kind, jobs.c.ref == ref)).first()
        if exists is None:
            self._conn.execute(insert(jobs).values(kind=kind, ref=ref, run_at=run_at,
                                                   status="pending"))

    def due(self, now: float, limit: int) -> list[tuple[int, str, str]]:
        rows = self._conn.execute(select(jobs.c.id, jobs.c.kind, jobs.c.ref).where(
            jobs.c.status == "pending", jobs.c.run_at <= now,
        ).order_by(jobs.c.run_at).limit(limit)).all()
        return [(r.id, r.kind, r.ref) for r in rows]

    def finish(self, job_id: int, result: str, now: float) -> bool:
        done = self._conn.execute(update(jobs).where(
            jobs.c.id == job_id, jobs.c.status == "pending",
        ).values(status="done", done_at=now, result=result))
        return done.rowcount == 1


class SqlIdempotency:
    def __init__(self, conn: Connection, now: float, ttl_s: float) -> None:
        self._conn = conn
        self._now = now
        self._ttl = ttl_s

    def find(self, scope: str, key: str) -> tuple[str, int, str] | None:
        row = self._conn.execute(select(
            idempotency_keys.c.request_hash, idempotency_keys.c.status_code,
            idempotency_keys.c.response_body, idempotency_keys.c.expires_at,
        ).where(idempotency_keys.c.scope == scope, idempotency_keys.c.key == key)).first()
        if row is None or row.expires_at < self._now:
            return None
        return row.request_hash, row.status_code, row.response_body

    def save(self, scope: str, key: str, request_hash: str, status_code: int,
             body: str) -> None:
        self._conn.execute(idempotency_keys.delete().where(
            idempotency_keys.c.scope == scope, idempotency_keys.c.key == key,
            idempotency_keys.c.expires_at < self._now))
        self._conn.execute(insert(idempotency_keys).values(
            scope=scope, key=key, request_hash=request_hash, status_code=status_code,
            response_body=body, expires_at=self._now + self._ttl))


@dataclass
class SqlUnitOfWork:
    conn: Connection
    now: float
    account_ids: AccountIdCache
    idempotency_ttl_s: float = 48 * 3600
    _cache: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.ledger = SqlLedgerStore(self.conn, self.account_ids)
        self.trades = SqlTradeStore(self.conn)
        self.outbox = SqlOutbox(self.conn, self.now)
        self.jobs = SqlJobStore(self.conn)
        self.idempotency = SqlIdempotency(self.conn, self.now, self.idempotency_ttl_s)

    def new_id(self, prefix: str) -> str:
        return new_id(prefix)

    def merchant_notify_url(self, merchant_id: str) -> str | None:
        key = f"notify:{merchant_id}"
        if key not in self._cache:
            self._cache[key] = self.conn.execute(text(
                "SELECT notify_url FROM merchants WHERE merchant_id = :m"),
                {"m": merchant_id}).scalar()
        url: str | None = self._cache[key]
        return url
