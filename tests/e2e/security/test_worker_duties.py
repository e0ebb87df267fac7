"""Each worker duty runs on its own: a duty that raises every time is logged once, counted,
retried, and stops nothing else. In-process, on a real platform (SQLite, or PostgreSQL with
ANFU_TEST_DATABASE_URL) and the real worker loop, with a poisoned duty put in first."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from anfu.db.log_store import transparency_log
from anfu.db.tables import jobs, transfers
from anfu.ledger import service as ledger
from anfu.ledger.model import AccountRef
from anfu.trades.service import PAY_TIMEOUT_JOB
from anfu.worker import Duty, Worker
from tests.support import reset_database
from tests.support import test_database_url as database_url


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Any]:
    from anfu.bootstrap import build
    from anfu.config import Settings
    from anfu.db.migrate import upgrade

    url = database_url(tmp_path)
    reset_database(url)
    upgrade(url)
    settings = Settings(home=tmp_path, database_url=url, env="test", worker_poll_s=0.05,
                        log_sth_interval_s=0.1)
    running = build(settings)
    yield running
    running.close()


def due_hold(platform: Any) -> str:
    """A customer's 300 held with a timeout already past."""
    wallet, escrow = AccountRef.wallet("u-duty", "CNY"), AccountRef.escrow("CNY")

    def job(uow: Any) -> None:
        ledger.transfer(uow.ledger, transfer_id="duty-topup", debit=AccountRef.clearing(
            "sandbox", "CNY"), credit=wallet, amount=1_000, now=uow.now)
        ledger.transfer(uow.ledger, transfer_id="duty-hold", debit=wallet, credit=escrow,
                        amount=300, now=uow.now, pending=True, timeout_at=uow.now - 1)
        uow.jobs.schedule(kind=PAY_TIMEOUT_JOB, ref="t-none", run_at=uow.now - 1)

    platform.write_sync(job)
    return "duty-hold"


def run_until(worker: Worker, done: Callable[[], bool], timeout: float = 20) -> None:
    async def main() -> None:
        task = asyncio.create_task(worker.run())
        deadline = time.monotonic() + timeout
        while not done() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        worker.stop()
        await task

    asyncio.run(main())


def failures(platform: Any, duty: str) -> float:
    """``anfu_worker_duty_failures_total{duty=...}`` as /metrics shows it."""
    text = platform.metrics.render().decode()
    found = re.search(rf'^anfu_worker_duty_failures_total\{{duty="{duty}"\}} (\S+)$', text,
                      re.M)
    return float(found.group(1)) if found else 0.0


def test_a_duty_that_always_fails_stops_no_other(platform: Any,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    hold = due_hold(platform)
    worker = Worker(platform)

    async def poisoned() -> int:
        raise RuntimeError("a row this duty chokes on")

    worker.duties.insert(0, Duty("poisoned", poisoned, every_s=0.05))
    log = transparency_log(platform)

    def expired() -> bool:
        return platform.read(lambda c: c.execute(select(transfers.c.id).where(
            transfers.c.pending_id == hold)).first()) is not None

    def timer_fired() -> bool:
        return platform.read(lambda c: c.execute(select(jobs.c.status).where(
            jobs.c.ref == "t-none")).scalar()) == "done"

    with caplog.at_level(logging.INFO, logger="anfu.worker"):
        run_until(worker, lambda: (expired() and timer_fired() and log.tree.size > 0
                                   and failures(platform, "poisoned") >= 3))
    assert expired(), "holds expire"
    assert timer_fired(), "timers fire"
    assert log.tree.size > 0, "the transparency log sequences (the keys announced at start)"
    assert failures(platform, "poisoned") >= 3
    reports = [r for r in caplog.records if "worker duty poisoned failed" in r.getMessage()]
    assert len(reports) == 1, "logged once per streak of failures, with the duty's name"
    assert reports[0].exc_info is not None


def test_a_duty_that_recovers_says_so(platform: Any, caplog: pytest.LogCaptureFixture) -> None:
    worker = Worker(platform)
    turns: list[int] = []

    async def flaky() -> int:
        turns.append(1)
        if len(turns) <= 2:
            raise RuntimeError("the database is away")
        return 0

    worker.duties = [Duty("flaky", flaky, every_s=0.02)]
    with caplog.at_level(logging.INFO, logger="anfu.worker"):
        run_until(worker, lambda: len(turns) >= 4)
    assert failures(platform, "flaky") == 2
    messages = [r.getMessage() for r in caplog.records]
    assert sum("worker duty flaky failed" in m for m in messages) == 1
    assert any("worker duty flaky works again after 2 failed turns" in m for m in messages)
