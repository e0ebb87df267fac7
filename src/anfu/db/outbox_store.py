"""Outbox storage: due events (one per trade at a time, so delivery is ordered per trade),
attempt bookkeeping, merchant-facing views and redelivery."""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import Connection, insert, select, text, update

from anfu.db.tables import delivery_attempts, events
from anfu.errors import NotFound

_DUE = text(
    "SELECT e.id, e.type, e.created_at, e.data, e.notify_url, e.attempts, e.next_attempt_at"
    " FROM events e WHERE e.delivery_status = 'pending' AND e.next_attempt_at <= :now"
    " AND NOT EXISTS (SELECT 1 FROM events p WHERE p.trade_no = e.trade_no AND p.seq < e.seq"
    " AND p.delivery_status = 'pending') ORDER BY e.seq LIMIT :lim")


def due_events(conn: Connection, *, now: float, limit: int) -> list[Any]:
    return list(conn.execute(_DUE, {"now": now, "lim": limit}).all())


def claim(conn: Connection, *, event_id: str, seen_next: float, lease_until: float) -> bool:
    """Lease an event for one attempt so that two workers never send it at once; a crash
    mid-attempt leaves the lease to expire and the event is sent again (at-least-once)."""
    done = conn.execute(update(events).where(
        events.c.id == event_id, events.c.delivery_status == "pending",
        events.c.next_attempt_at == seen_next,
    ).values(next_attempt_at=lease_until))
    return done.rowcount == 1


def record_attempt(conn: Connection, *, event_id: str, attempt: int, started_at: float,
                   duration_ms: int, status_code: int | None, error: str | None,
                   outcome: str, next_attempt_at: float | None, now: float) -> None:
    conn.execute(insert(delivery_attempts).values(
        event_id=event_id, attempt=attempt, started_at=started_at, duration_ms=duration_ms,
        status_code=status_code, error=error, outcome=outcome))
    conn.execute(update(events).where(events.c.id == event_id).values(
        attempts=attempt, delivery_status=outcome if outcome != "retry" else "pending",
        next_attempt_at=next_attempt_at,
        delivered_at=now if outcome == "delivered" else None))


def _view(row: Any, attempts: list[Any]) -> dict[str, Any]:
    return {"id": row.id, "type": row.type, "created_at": row.created_at,
            "trade_no": row.trade_no, "data": orjson.loads(row.data),
            "notify_url": row.notify_url, "delivery_status": row.delivery_status,
            "attempts": row.attempts, "next_attempt_at": row.next_attempt_at,
            "delivered_at": row.delivered_at,
            "attempt_log": [{"attempt": a.attempt, "started_at": a.started_at,
                             "duration_ms": a.duration_ms, "status_code": a.status_code,
                             "error": a.error, "outcome": a.outcome} for a in attempts]}


def _attempts(conn: Connection, ids: list[str]) -> dict[str, list[Any]]:
    by_event: dict[str, list[Any]] = {i: [] for i in ids}
    if ids:
        for a in conn.execute(select(delivery_attempts).where(
                delivery_attempts.c.event_id.in_(ids)).order_by(delivery_attempts.c.id)):
            by_event[a.event_id].append(a)
    return by_event


def events_page(conn: Connection, *, merchant_id: str, after: int, limit: int,
                trade_no: str | None) -> dict[str, Any]:
    query = select(events).where(events.c.merchant_id == merchant_id, events.c.seq > after)
    if trade_no is not None:
        query = query.where(events.c.trade_no == trade_no)
    rows = conn.execute(query.order_by(events.c.seq).limit(limit)).all()
    attempts = _attempts(conn, [r.id for r in rows])
    return {"events": [_view(r, attempts[r.id]) for r in rows],
            "next_cursor": rows[-1].seq if len(rows) == limit else None}


def event_view(conn: Connection, event_id: str) -> dict[str, Any]:
    row = conn.execute(select(events).where(events.c.id == event_id)).first()
    if row is None:
        raise NotFound(f"no event {event_id}", code="event_not_found")
    return _view(row, _attempts(conn, [event_id])[event_id])


def schedule_redelivery(conn: Connection, *, merchant_id: str, event_id: str,
                        now: float) -> None:
    row = conn.execute(select(events.c.merchant_id, events.c.notify_url).where(
        events.c.id == event_id)).first()
    if row is None or row.merchant_id != merchant_id:
        raise NotFound(f"no event {event_id}", code="event_not_found")
    if row.notify_url is None:
        from anfu.errors import InvalidState

        raise InvalidState("this event has no notify_url to deliver to",
                           code="event_has_no_notify_url")
    conn.execute(update(events).where(events.c.id == event_id).values(
        delivery_status="pending", next_attempt_at=now))
