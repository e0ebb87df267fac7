"""The background worker: the scheduler of the platform's duties (fire timers, deliver
notifications, expire holds, forget expired records, seal ledger batches, announce keys,
run the transparency log). It keeps no state of its own, so it survives restarts, and any
number of workers may run: events are leased before sending and a timer is marked done in
the same transaction as its effect.

Each duty runs in its own task at its own pace, so no duty waits for another and none can
stop another: a duty that raises is logged (once per streak of failures), counted in
``anfu_worker_duty_failures_total{duty}`` and tried again at its next turn, while the
others go on. A slow merchant endpoint delays notifications, never receipts or timers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx
from sqlalchemy import Connection

from anfu.bootstrap import Platform
from anfu.db import outbox_store
from anfu.db.auth_store import SqlAuthStore
from anfu.db.log_store import SqlLogStore, transparency_log
from anfu.db.seal_store import SqlSealStore
from anfu.db.tables import idempotency_keys, nonces
from anfu.db.txn_store import SqlTxnStore
from anfu.db.uow import SqlJobStore, SqlUnitOfWork
from anfu.errors import Conflict
from anfu.keys import rotation_log_body
from anfu.ledger import service as ledger
from anfu.notify.delivery import deliver_event
from anfu.notify.network import address_policy, pinned_client
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


class DutyFailed(Exception):
    """Some items of a duty's batch failed (the others were done); the first is the cause."""


@dataclass
class Duty:
    """One job of the worker. ``run`` returns how much it did: while it finds work it runs
    again at once, otherwise after ``every_s``. ``once`` duties stop after a success."""

    name: str
    run: Callable[[], Awaitable[int]]
    every_s: float
    once: bool = False
    failures: int = 0  # consecutive


class Worker:
    def __init__(self, platform: Platform, client: httpx.AsyncClient | None = None) -> None:
        self.platform = platform
        settings = platform.settings
        self.client = client or pinned_client(address_policy(settings),
                                              timeout_s=settings.notify_timeout_s)
        self._stopping = asyncio.Event()
        # Sequencer and signed tree heads (the worker runs in process 0 only)
        self._log = transparency_log(platform)
        poll = settings.worker_poll_s
        self.duties: list[Duty] = [
            Duty("fire_timers", self.fire_timers, poll),
            Duty("deliver_notifications", self.deliver_due, poll),
            Duty("expire_holds", self.expire_holds, poll),
            Duty("forget_expired", self.forget_expired, HOUSEKEEPING_S),
            Duty("seal_ledger", self.seal_ledger, SEAL_INTERVAL_S),
            Duty("announce_keys", self.announce_keys, poll, once=True),
            Duty("transparency_log", self._log.tick, poll),  # the log keeps its own pace
        ]

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        try:
            await asyncio.gather(*(self._keep_running(duty) for duty in self.duties))
        finally:
            await self.client.aclose()

    async def _keep_running(self, duty: Duty) -> None:
        while not self._stopping.is_set():
            done = await self.run_duty(duty)
            if duty.once and duty.failures == 0:
                return
            if done > 0:
                await asyncio.sleep(0)  # more work may be waiting: go on, but let others in
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), duty.every_s)

    async def run_duty(self, duty: Duty) -> int:
        """One turn of one duty; never raises (but for cancellation)."""
        try:
            done = await duty.run()
        except Exception:
            duty.failures += 1
            self.platform.metrics.duty_failures.labels(duty.name).inc()
            if duty.failures == 1:
                log.exception("worker duty %s failed; it is tried again every %.1f s and the"
                              " other duties go on", duty.name, duty.every_s)
            return 0
        if duty.failures:
            log.warning("worker duty %s works again after %d failed turns", duty.name,
                        duty.failures)
            duty.failures = 0
        return done

    async def fire_timers(self) -> int:
        platform = self.platform
        due = platform.read(lambda conn: SqlJobStore(conn).due(platform.clock(), BATCH))
        failed: list[Exception] = []
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
            except Exception as exc:  # this timer stays due; the others still fire
                failed.append(exc)
                continue
            if result is not None:
                platform.metrics.timers.labels(kind, result).inc()
                log.info("timer %s for %s: %s", kind, ref, result)
        _raise_first(failed, f"{len(failed)} of {len(due)} timers failed")
        return len(due) - len(failed)

    async def deliver_due(self) -> int:
        platform = self.platform
        now = platform.clock()
        due = platform.read(lambda conn: outbox_store.due_events(conn, now=now, limit=BATCH))
        if not due:
            return 0
        # Each delivery records its own failures; what escapes (the database) must not
        # cancel the other deliveries of the batch.
        results = await asyncio.gather(*(deliver_event(platform, self.client, row)
                                         for row in due), return_exceptions=True)
        failed = [r for r in results if isinstance(r, Exception)]
        _raise_first(failed, f"{len(failed)} of {len(due)} deliveries not recorded")
        return len(due) - len(failed)

    async def expire_holds(self) -> int:
        return await self.platform.write(
            lambda uow: ledger.expire_due_holds(uow.ledger, now=uow.now))

    async def forget_expired(self) -> int:
        await self.platform.write(lambda uow: forget_expired(uow.conn, uow.now))
        return 0  # once a minute is enough, however much there was

    async def seal_ledger(self) -> int:
        await self.platform.write(lambda uow: SqlSealStore(uow.conn).seal_new_transfers(uow.now))
        return 0  # one seal per interval

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

        await platform.write(job)
        return 0


def _raise_first(failed: list[Exception], summary: str) -> None:
    if failed:
        raise DutyFailed(summary) from failed[0]
