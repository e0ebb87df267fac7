"""The ledger alone: single-phase transfers between customer wallets, in-process, through the
platform's writer (group commit), unit of work and ``ledger.service.transfer`` (one transfer
per writer job, all submitted at once), or ``ledger.batch.create_transfers`` (1,000 transfers
per job, two jobs in flight, as a client of a batch API would send them).

All jobs are submitted at once and the clock runs until the last future is answered; the
writer gathers them into batches (``ANFU_GROUP_COMMIT_MAX``, default 256), one transaction
and one fsync per batch. Each transfer checks idempotency, guards the debit against overdraft,
updates both balances, appends two entries (with the balance after) and the transfer row."""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from anfu.config import Settings
from anfu.db.engine import make_engine
from anfu.db.ledger_store import AccountIdCache, check_invariants
from anfu.db.migrate import upgrade
from anfu.db.uow import SqlUnitOfWork
from anfu.db.writer import Writer
from anfu.ledger import service as ledger
from anfu.ledger.model import AccountRef

CURRENCY = "CNY"


def _batched_jobs(plan: list[tuple[int, AccountRef, AccountRef, int]],
                  per_call: int) -> list[Callable[[SqlUnitOfWork], int]]:
    """Jobs of ``per_call`` transfers each through ``anfu.ledger.batch.create_transfers``
    (TigerBeetle's batch API); each job answers how many of its transfers failed."""
    from anfu.ledger.batch import TransferRequest, create_transfers

    def job(chunk: list[tuple[int, AccountRef, AccountRef, int]]) -> Callable[
            [SqlUnitOfWork], int]:
        requests = [TransferRequest(id=f"t{i}", debit=debit, credit=credit, amount=amount,
                                    reference=f"bench-{i}", description="bench")
                    for i, debit, credit, amount in chunk]
        return lambda uow: sum(not r.ok for r in create_transfers(
            uow.ledger, requests=requests, now=uow.now))

    return [job(plan[n:n + per_call]) for n in range(0, len(plan), per_call)]


def run_ledger(folder: Path, *, transfers: int, accounts: int = 1000, per_call: int = 0,
               log: Callable[[str], None] = print) -> dict[str, Any]:
    """``per_call`` = 0: one ``ledger.service.transfer`` per writer job; else jobs of
    ``per_call`` transfers through the batch API."""
    folder.mkdir(parents=True, exist_ok=True)
    settings = Settings(home=folder, database_url=f"sqlite:///{folder / 'ledger.db'}")
    url = settings.resolved_database_url
    upgrade(url)
    engine = make_engine(url, writer=True)
    ids = AccountIdCache()
    batches: list[int] = []
    writer = Writer(engine, max_batch=settings.group_commit_max,
                    wait_ms=settings.group_commit_wait_ms,
                    on_batch=lambda size, _s: batches.append(size), on_failure=ids.clear)
    writer.start()
    wallets = [AccountRef.wallet(f"lw{i:05d}", CURRENCY) for i in range(accounts)]

    def submit(fn: Callable[[SqlUnitOfWork], int]) -> Future[int]:
        return writer.submit(lambda conn: fn(SqlUnitOfWork(conn, time.time(), ids)))

    def fund(ref: AccountRef) -> Callable[[SqlUnitOfWork], Any]:
        return lambda uow: ledger.transfer(
            uow.ledger, transfer_id=f"fund-{ref.owner_id}",
            debit=AccountRef.clearing("sandbox", CURRENCY), credit=ref, amount=10**9,
            now=uow.now, description="bench funding")

    def move(i: int, debit: AccountRef, credit: AccountRef,
             amount: int) -> Callable[[SqlUnitOfWork], int]:
        def job(uow: SqlUnitOfWork) -> int:
            ledger.transfer(uow.ledger, transfer_id=f"t{i}", debit=debit, credit=credit,
                            amount=amount, now=uow.now, reference=f"bench-{i}",
                            description="bench")
            return 0
        return job

    try:
        writer.run(lambda conn: fund(wallets[0])(SqlUnitOfWork(conn, time.time(), ids)))
        for future in [submit(fund(w)) for w in wallets[1:]]:
            future.result(timeout=300)
        rng = random.Random(7)
        plan = []
        for i in range(transfers):
            a, b = rng.sample(range(accounts), 2)
            plan.append((i, wallets[a], wallets[b], rng.randint(1, 10_000)))
        jobs = (_batched_jobs(plan, per_call) if per_call else
                [move(*step) for step in plan])
        batches.clear()
        failed = 0

        def wait(future: Future[int]) -> int:
            try:
                return future.result(timeout=600)
            except Exception:
                return per_call or 1

        started = time.perf_counter()
        if per_call:
            # A client of the batch API: two calls in flight, so that each commit holds
            # one or two calls rather than the whole run.
            in_flight: deque[Future[int]] = deque()
            for job in jobs:
                if len(in_flight) == 2:
                    failed += wait(in_flight.popleft())
                in_flight.append(submit(job))
            failed += sum(wait(f) for f in in_flight)
        else:
            failed = sum(wait(f) for f in [submit(job) for job in jobs])
        seconds = time.perf_counter() - started
        with make_engine(url).connect() as conn:
            report = check_invariants(conn)
    finally:
        writer.stop()
        engine.dispose()
    done = transfers - failed
    result = {"transfers": done, "failed": failed, "per_call": per_call,
              "seconds": round(seconds, 3), "tps": done / seconds, "batches": len(batches),
              "mean_batch": sum(batches) / len(batches) if batches else 0.0,
              "max_batch": max(batches, default=0), "invariants_ok": report.ok,
              "violations": report.violations[:5]}
    log(f"  {done} transfers in {seconds:.2f} s: {result['tps']:,.0f}/s,"
        f" {len(batches)} commits (mean {result['mean_batch']:.0f} jobs),"
        f" {'batch API, ' + str(per_call) + ' per call' if per_call else 'one per job'}")
    return result

