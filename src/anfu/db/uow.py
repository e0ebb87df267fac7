"""The SQL unit of work: repositories over one connection inside the writer's transaction."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection, insert, select

from anfu.db.ledger_store import AccountIdCache, SqlLedgerStore
from anfu.db.raw import Raw
from anfu.db.tables import jobs, refunds, trades
from anfu.trades.model import CloseReason, Refund, Trade, TradeMode, TradeStatus
from anfu.uow import IN_PROGRESS


def new_id(prefix: str) -> str:
    """Unguessable ids (a trade number is shown in QR codes and links)."""
    return prefix + secrets.token_hex(10)


_TRADE_COLUMNS = [c.name for c in trades.columns]
_SELECT_TRADE = "SELECT * FROM trades WHERE trade_no = :t"
_SELECT_TRADE_OUT = "SELECT * FROM trades WHERE merchant_id = :m AND out_trade_no = :o"
# Column names come from the schema, never from a request.
_INSERT_TRADE = (f"INSERT INTO trades ({', '.join(_TRADE_COLUMNS)}) VALUES"  # noqa: S608
                 f" ({', '.join(':' + c for c in _TRADE_COLUMNS)})")
_INSERT_EVENT = (
    "INSERT INTO events (id, merchant_id, trade_no, type, data, created_at, notify_url,"
    " delivery_status, attempts, next_attempt_at) VALUES (:id, :merchant_id, :trade_no,"
    " :type, :data, :created_at, :notify_url, :status, 0, :next)")
_FIND_IDEMPOTENCY = ("SELECT request_hash, status_code, response_body, expires_at"
                     " FROM idempotency_keys WHERE scope = :s AND key = :k")
_DROP_IDEMPOTENCY = "DELETE FROM idempotency_keys WHERE scope = :s AND key = :k"
_SAVE_IDEMPOTENCY = (
    "INSERT INTO idempotency_keys (scope, key, request_hash, status_code, response_body,"
    " expires_at) VALUES (:s, :k, :h, :c, :b, :e)")
_ANSWER_RESERVED = (
    "UPDATE idempotency_keys SET status_code = :c, response_body = :b, expires_at = :e"
    " WHERE scope = :s AND key = :k AND request_hash = :h AND status_code = 0")
_FIND_JOB = "SELECT id FROM jobs WHERE kind = :k AND ref = :r"
_NEW_JOB = ("INSERT INTO jobs (kind, ref, run_at, status) VALUES (:k, :r, :at, 'pending')")
_FINISH_JOB = ("UPDATE jobs SET status = 'done', done_at = :now, result = :res"
               " WHERE id = :id AND status = 'pending'")


def trade_from_row(row: Any) -> Trade:
    m = row if isinstance(row, dict) else dict(row._mapping)
    m["mode"] = TradeMode(m["mode"])
    m["status"] = TradeStatus(m["status"])
    m["close_reason"] = CloseReason(m["close_reason"]) if m["close_reason"] else None
    m["hold_posted"] = bool(m["hold_posted"])
    return Trade(**m)


def refund_from_row(row: Any) -> Refund:
    return Refund(**dict(row._mapping))


def _db_value(value: Any) -> Any:
    return value.value if hasattr(value, "value") else value


_UPDATE_CACHE: dict[tuple[str, ...], str] = {}


def _update_trade_sql(names: tuple[str, ...]) -> str:
    sql = _UPDATE_CACHE.get(names)
    if sql is None:
        unknown = set(names) - set(_TRADE_COLUMNS)
        if unknown:
            raise ValueError(f"not trade columns: {sorted(unknown)}")
        assignments = ", ".join(f"{name} = :{name}" for name in names)
        sql = f"UPDATE trades SET {assignments} WHERE trade_no = :_trade_no"  # noqa: S608
        _UPDATE_CACHE[names] = sql
    return sql


class SqlTradeStore:
    def __init__(self, conn: Connection, raw: Raw | None = None) -> None:
        self._conn = conn
        self._sql = raw or Raw(conn)

    def get(self, trade_no: str) -> Trade | None:
        row = self._sql.row(_SELECT_TRADE, {"t": trade_no})
        return None if row is None else trade_from_row(row)

    def by_out_trade_no(self, merchant_id: str, out_trade_no: str) -> Trade | None:
        row = self._sql.row(_SELECT_TRADE_OUT, {"m": merchant_id, "o": out_trade_no})
        return None if row is None else trade_from_row(row)

    def insert(self, trade: Trade) -> None:
        self._sql.run(_INSERT_TRADE, {name: _db_value(getattr(trade, name))
                                      for name in _TRADE_COLUMNS})
        trade.changed.clear()

    def save(self, trade: Trade) -> None:
        if not trade.changed:
            return
        names = sorted(trade.changed)
        values = {name: _db_value(getattr(trade, name)) for name in names}
        values["_trade_no"] = trade.trade_no
        self._sql.run(_update_trade_sql(tuple(names)), values)
        trade.changed.clear()

    def refund(self, trade_no: str, out_refund_no: str) -> Refund | None:
        row = self._conn.execute(select(refunds).where(
            refunds.c.trade_no == trade_no, refunds.c.out_refund_no == out_refund_no)).first()
        return None if row is None else refund_from_row(row)

    def refunds_of(self, trade_no: str) -> list[Refund]:
        rows = self._conn.execute(select(refunds).where(refunds.c.trade_no == trade_no)
                                  .order_by(refunds.c.created_at)).all()
        return [refund_from_row(r) for r in rows]

    def insert_refund(self, refund: Refund) -> None:
        self._conn.execute(insert(refunds).values(
            refund_no=refund.refund_no, trade_no=refund.trade_no,
            out_refund_no=refund.out_refund_no, request_hash=refund.request_hash,
            amount=refund.amount, currency=refund.currency, reason=refund.reason,
            source=refund.source, status=refund.status, created_at=refund.created_at))


class SqlOutbox:
    def __init__(self, raw: Raw, now: float) -> None:
        self._sql = raw
        self._now = now

    def add(self, *, merchant_id: str, trade_no: str | None, type: str,
            data: dict[str, Any], notify_url: str | None) -> str:
        event_id = new_id("evt_")
        self._sql.run(_INSERT_EVENT, {
            "id": event_id, "merchant_id": merchant_id, "trade_no": trade_no, "type": type,
            "data": orjson.dumps(data).decode(), "created_at": self._now,
            "notify_url": notify_url, "status": "pending" if notify_url else "none",
            "next": self._now if notify_url else None})
        return event_id


class SqlJobStore:
    def __init__(self, conn: Connection, raw: Raw | None = None) -> None:
        self._conn = conn
        self._sql = raw or Raw(conn)

    def schedule(self, *, kind: str, ref: str, run_at: float) -> None:
        if self._sql.value(_FIND_JOB, {"k": kind, "r": ref}) is None:
            self._sql.run(_NEW_JOB, {"k": kind, "r": ref, "at": run_at})

    def due(self, now: float, limit: int) -> list[tuple[int, str, str]]:
        rows = self._conn.execute(select(jobs.c.id, jobs.c.kind, jobs.c.ref).where(
            jobs.c.status == "pending", jobs.c.run_at <= now,
        ).order_by(jobs.c.run_at).limit(limit)).all()
        return [(r.id, r.kind, r.ref) for r in rows]

    def finish(self, job_id: int, result: str, now: float) -> bool:
        return self._sql.run(_FINISH_JOB, {"id": job_id, "res": result, "now": now}) == 1


class SqlIdempotency:
    def __init__(self, raw: Raw, now: float, ttl_s: float) -> None:
        self._sql = raw
        self._now = now
        self._ttl = ttl_s

    def find(self, scope: str, key: str) -> tuple[str, int, str] | None:
        row = self._sql.row(_FIND_IDEMPOTENCY, {"s": scope, "k": key})
        if row is None:
            return None
        if row["expires_at"] < self._now:  # kept past its TTL: forget it now
            self._sql.run(_DROP_IDEMPOTENCY, {"s": scope, "k": key})
            return None
        return row["request_hash"], row["status_code"], row["response_body"]

    def reserve(self, scope: str, key: str, request_hash: str) -> None:
        self._sql.run(_SAVE_IDEMPOTENCY, {"s": scope, "k": key, "h": request_hash,
                                          "c": IN_PROGRESS, "b": "",
                                          "e": self._now + self._ttl})

    def save(self, scope: str, key: str, request_hash: str, status_code: int,
             body: str) -> None:
        values = {"s": scope, "k": key, "h": request_hash, "c": status_code, "b": body,
                  "e": self._now + self._ttl}
        if self._sql.run(_ANSWER_RESERVED, values) == 0:
            self._sql.run(_SAVE_IDEMPOTENCY, values)


@dataclass
class SqlUnitOfWork:
    conn: Connection
    now: float
    account_ids: AccountIdCache
    idempotency_ttl_s: float = 48 * 3600

    def __post_init__(self) -> None:
        raw = Raw(self.conn)
        self.ledger = SqlLedgerStore(self.conn, self.account_ids, self.now, raw)
        self.trades = SqlTradeStore(self.conn, raw)
        self.outbox = SqlOutbox(raw, self.now)
        self.jobs = SqlJobStore(self.conn, raw)
        self.idempotency = SqlIdempotency(raw, self.now, self.idempotency_ttl_s)

    def new_id(self, prefix: str) -> str:
        return new_id(prefix)

