"""The background worker: delivers notifications and fires persisted timers. It keeps no
state of its own, so it survives restarts, and any number of workers may run: events are
leased before sending and a timer is marked done in the same transaction as its effect."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import Connection

from anfu.bootstrap import Platform
from anfu.db import outbox_store
from anfu.db.auth_store import SqlAuthStore
from anfu.db.log_store import SqlLogStore, transparency_log
from anfu.db.seal_store import SqlSealStore
from anfu.db.tables import idempotency_keys, nonces
from anfu.db.txn_store import SqlTxnStore
from anfu.db.uow import SqlUnitOfWork
from anfu.errors import Conflict
from anfu.keys import rotation_log_body
from anfu.ledger import service as ledger
from anfu.notify.model import after_attempt, event_body
from anfu.sigwire import format_signature_header, new_nonce, request_signing_bytes
from anfu.trades import service as trades

log = logging.getLogger("anfu.worker")
BATCH = 64
HOUSEKEEPING_S = 60.0
SEAL_INTERVAL_S = 5.0  # ledger batches sealed into the transparency log


def forget_expired(conn: Connection, now: float) -> int:
    """Drop nonces and DPoP proof ids past their replay window, idempotency records past
    their TTL, and day-old authentication challenges and SMS send records."""
    removed = conn.execute(nonces.delete().where(nonces.c.expires_at < now)).rowcount
    removed += conn.execute(idempotency_keys.delete().where(
        idempotency_keys.c.expires_at < now)).rowcount
    removed += SqlAuthStore(conn).forget_expired(now)
    removed += SqlTxnStore(conn).forget_expired(now)
    return int(removed)


class Worker:
    def __init__(self, platform: Platform, client: httpx.AsyncClient | None = None) -> None:
        self.platform = platform
        self.client = client or httpx.AsyncClient(timeout=platform.settings.notify_timeout_s,
                                                  follow_redirects=False)
        self._stopping = asyncio.Event()
        self._next_housekeeping = 0.0
        self._next_seal = 0.0
        # Sequencer and signed tree heads (the worker runs in process 0 only)
        self._log = transparency_log(platform)
        self._keys_announced = False

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        poll = self.platform.settings.worker_poll_s
        while not self._stopping.is_set():
            try:
                busy = await self.tick()
            except Exception:
                log.exception("worker tick failed")
                busy = False
            if not busy:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), poll)
        await self.client.aclose()

    async def tick(self) -> bool:
        timers = await self.fire_timers()
        sent = await self.deliver_due()
        await self.platform.write(lambda uow: ledger.expire_due_holds(uow.ledger, now=uow.now))
        if self.platform.clock() >= self._next_housekeeping:
            self._next_housekeeping = self.platform.clock() + HOUSEKEEPING_S
            await self.platform.write(lambda uow: forget_expired(uow.conn, uow.now))
        if self.platform.clock() >= self._next_seal:
            self._next_seal = self.platform.clock() + SEAL_INTERVAL_S
            await self.platform.write(
                lambda uow: SqlSealStore(uow.conn).seal_new_transfers(uow.now))
        if not self._keys_announced:
            await self.announce_keys()
            self._keys_announced = True
        await self._log.tick()  # sequence queued entries, sign a tree head when due
        return timers + sent > 0

    async def announce_keys(self) -> int:
        """Put every published platform key the log has not announced yet into it
        (``key.published``): the first keys of each ring, made at the first start, before
        there was a log. Rotations announce their own keys (``anfu keys rotate``)."""
        platform = self.platform
        rings = (platform.keys, platform.receipt_keys, platform.log_keys)

        def job(uow: SqlUnitOfWork) -> int:
            store = SqlLogStore(uow.conn)
            return sum(store.announce_key("key.published", key.key_id, ring.purpose,
                                          rotation_log_body(ring, key, None), uow.now)
                       for ring in rings for key in ring.published)

        return await platform.write(job)

    async def fire_timers(self) -> int:
        platform = self.platform
        due = platform.read(lambda conn: _due_jobs(platform, conn))
        for job_id, kind, ref in due:
            def run(uow: SqlUnitOfWork, job_id: int = job_id, kind: str = kind,
                    ref: str = ref) -> str:
                result = trades.run_timer(uow, kind=kind, ref=ref)
                if not uow.jobs.finish(job_id, result, uow.now):
                    raise Conflict("timer already fired", code="timer_already_fired")
                return result

            try:
                result: str | None = await platform.write(run)
            except Conflict:
                result = None  # another worker fired it; its effect stands, ours rolled back
            if result is not None:
                platform.metrics.timers.labels(kind, result).inc()
                log.info("timer %s for %s: %s", kind, ref, result)
        return len(due)

    async def deliver_due(self) -> int:
        platform = self.platform
        now = platform.clock()
        due = platform.read(lambda conn: outbox_store.due_events(conn, now=now, limit=BATCH))
        if not due:
            return 0
        await asyncio.gather(*(self.deliver(row) for row in due))
        return len(due)

    async def deliver(self, row: Any) -> None:
        platform = self.platform
        lease = platform.clock() + platform.settings.notify_timeout_s + 30
        claimed = await platform.write(lambda uow: outbox_store.claim(
            uow.conn, event_id=row.id, seen_next=row.next_attempt_at, lease_until=lease))
        if not claimed:
            return
        body = event_body(event_id=row.id, type_=row.type, created_at=row.created_at,
                          data=row.data)
        url = urlsplit(row.notify_url)
        path_qs = (url.path or "/") + (f"?{url.query}" if url.query else "")
        timestamp, nonce = str(int(platform.clock())), new_nonce()
        # One reading of the ring, so the key id and the signature match across a rotation.
        signer = platform.keys.current
        signature = signer.sign(request_signing_bytes("POST", path_qs, timestamp, nonce, body))
        headers = {"Content-Type": "application/json", "Anfu-Event-Id": row.id,
                   "Anfu-Event-Type": row.type,
                   "Anfu-Signature": format_signature_header(
                       key_id=signer.key_id, alg=signer.alg, timestamp=timestamp,
                       nonce=nonce, signature=signature)}
        started, t0 = platform.clock(), time.perf_counter()
        status_code: int | None = None
        error: str | None = None
        try:
            reply = await self.client.post(row.notify_url, content=body, headers=headers)
            status_code = reply.status_code
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:250]
        ok = status_code is not None and 200 <= status_code < 300
        attempt = row.attempts + 1
        outcome = after_attempt(attempts_done=attempt, succeeded=ok, now=platform.clock(),
                                schedule=platform.settings.notify_delays)
        label = {"delivered": "delivered", "pending": "retry", "failed": "failed"}[
            outcome.status]
        duration_ms = int((time.perf_counter() - t0) * 1000)
        await platform.write(lambda uow: outbox_store.record_attempt(
            uow.conn, event_id=row.id, attempt=attempt, started_at=started,
            duration_ms=duration_ms, status_code=status_code, error=error, outcome=label,
            next_attempt_at=outcome.next_attempt_at, now=uow.now))
        platform.metrics.deliveries.labels(label).inc()


def _due_jobs(platform: Platform, conn: Connection) -> list[tuple[int, str, str]]:
    from anfu.db.uow import SqlJobStore

    return SqlJobStore(conn).due(platform.clock(), BATCH)
