"""The single writer with group commit.

Every write of the platform is a job ``fn(uow) -> result`` handed to one writer thread. The
writer gathers the jobs that arrive within ``wait_ms`` (up to ``max_batch``), runs each in its
own SAVEPOINT inside one transaction, commits once (one fsync), and only then answers every
caller. A job that raises is rolled back alone; the batch commits the rest. SQLite has one
writer anyway, so owning it removes SQLITE_BUSY retries; on PostgreSQL the same batching
saves round trips and fsyncs, and a batch hit by a deadlock or serialization failure is
retried as a whole (its jobs are pure functions of the database)."""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Protocol, TypeVar

import psycopg
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from anfu.errors import AnfuError, Conflict, Unavailable

log = logging.getLogger("anfu.db.writer")
T = TypeVar("T")
Job = Callable[[Connection], Any]
_STOP = object()
WRITER_LOCK_KEY = 0x616E6675  # "anfu"
# Raw driver statements (db/raw.py) raise the drivers' own exceptions, unwrapped.
INTEGRITY_ERRORS = (IntegrityError, sqlite3.IntegrityError, psycopg.IntegrityError)
OPERATIONAL_ERRORS = (OperationalError, DBAPIError, sqlite3.OperationalError,
                      psycopg.OperationalError)
_RETRIES = 5


class TransactionListener(Protocol):
    """Told how each job and batch ended, for state that must follow the transaction."""

    def job_ended(self, ok: bool) -> None: ...

    def batch_ended(self, committed: bool) -> None: ...


class Writer:
    def __init__(self, engine: Engine, *, max_batch: int = 256, wait_ms: float = 1.0,
                 on_batch: Callable[[int, float], None] | None = None,
                 on_failure: Callable[[], None] | None = None,
                 listeners: tuple[TransactionListener, ...] = (),
                 lock_path: Path | None = None) -> None:
        self._engine = engine
        self._max_batch = max_batch
        self._wait_s = wait_ms / 1000.0
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._on_batch = on_batch
        self._on_failure = on_failure
        self._listeners = listeners
        # SQLite lets one process write at a time and makes the others poll with growing
        # sleeps (up to 100 ms). Writers of several processes (anfu run --workers N, the
        # CLI) instead queue on an OS file lock, which hands over the moment it is freed.
        self._lock_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600) if lock_path else None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="anfu-writer", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout=30)
            self._thread = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def submit(self, job: Callable[[Connection], T]) -> Future[T]:
        future: Future[T] = Future()
        self._queue.put((job, future))
        return future

    def run(self, job: Callable[[Connection], T], timeout: float | None = 60) -> T:
        """Blocking call for threads and scripts (CLI, worker, tests)."""
        return self.submit(job).result(timeout)

    async def call(self, job: Callable[[Connection], T]) -> T:
        return await asyncio.wrap_future(self.submit(job))

    def _gather(self, first: Any) -> tuple[list[tuple[Job, Future[Any]]], bool]:
        batch = [first]
        stop = False
        deadline = time.monotonic() + self._wait_s
        while len(batch) < self._max_batch:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    item = self._queue.get(timeout=remaining)
                except queue.Empty:
                    break
            if item is _STOP:
                stop = True
                break
            batch.append(item)
        return batch, stop

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch, stop = self._gather(first)
            self._commit_batch(batch)
            if stop:
                return

    def _commit_batch(self, batch: list[tuple[Job, Future[Any]]]) -> None:
        started = time.perf_counter()
        for attempt in range(_RETRIES):
            try:
                outcomes = self._attempt(batch)
                self._batch_ended(True)
            except OPERATIONAL_ERRORS as exc:
                self._batch_ended(False)
                log.warning("write batch of %d failed (attempt %d): %s", len(batch),
                            attempt + 1, type(exc).__name__)
                time.sleep(0.005 * (attempt + 1))
                continue
            except Exception:  # a bug must not kill the writer: fail this batch loudly
                self._batch_ended(False)
                log.exception("write batch crashed")
                break
            for (_, future), (ok, value) in zip(batch, outcomes, strict=True):
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)
            if self._on_batch is not None:
                self._on_batch(len(batch), time.perf_counter() - started)
            return
        if self._on_failure is not None:
            self._on_failure()
        for _, future in batch:
            future.set_exception(Unavailable("the database did not accept the write; retry",
                                             code="storage_unavailable"))

    def _batch_ended(self, committed: bool) -> None:
        for listener in self._listeners:
            listener.batch_ended(committed)

    def _job_ended(self, ok: bool) -> None:
        for listener in self._listeners:
            listener.job_ended(ok)

    def _attempt(self, batch: list[tuple[Job, Future[Any]]]) -> list[tuple[bool, Any]]:
        if self._lock_fd is None:
            return self._attempt_locked(batch)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            return self._attempt_locked(batch)
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _attempt_locked(self, batch: list[tuple[Job, Future[Any]]]
                        ) -> list[tuple[bool, Any]]:
        outcomes: list[tuple[bool, Any]] = []
        with self._engine.connect() as conn, conn.begin():
            # Savepoints straight on the driver: SQLAlchemy's begin_nested() costs more
            # Python than the jobs' own statements.
            dbapi = conn.connection.driver_connection
            assert dbapi is not None
            cursor = dbapi.cursor()
            if conn.dialect.name == "postgresql":
                # The PostgreSQL twin of the SQLite file lock: batches of all processes
                # take turns, so two batches never deadlock on the rows they both touch
                # (hot ones like the escrow account); released at COMMIT or ROLLBACK.
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", (WRITER_LOCK_KEY,))
            # On PostgreSQL every statement is a round trip, so the release of one job's
            # savepoint travels with the next job's SAVEPOINT, and COMMIT releases the last.
            pg = conn.dialect.name == "postgresql"
            released = True
            for job, _future in batch:
                cursor.execute("SAVEPOINT anfu_job" if released
                               else "RELEASE SAVEPOINT anfu_job; SAVEPOINT anfu_job")
                released = True
                try:
                    value = job(conn)
                except AnfuError as exc:
                    self._undo(cursor)
                    outcomes.append((False, exc))
                except INTEGRITY_ERRORS as exc:
                    # Another process won a race on a unique key: a retry by the caller
                    # finds the winner's row and answers idempotently.
                    self._undo(cursor)
                    log.info("integrity conflict in write job: %s", exc)
                    outcomes.append((False, Conflict(
                        "a concurrent request changed the same object; retry",
                        code="concurrent_update")))
                except OPERATIONAL_ERRORS:
                    self._job_ended(False)
                    raise  # deadlock, lost connection, disk full: retry the whole batch
                except Exception as exc:
                    self._undo(cursor)
                    log.exception("write job failed")
                    outcomes.append((False, Unavailable(
                        "the platform could not complete this write",
                        code="internal_error", cause=type(exc).__name__)))
                else:
                    if pg:
                        released = False
                    else:
                        cursor.execute("RELEASE SAVEPOINT anfu_job")
                    self._job_ended(True)
                    outcomes.append((True, value))
            cursor.close()
        return outcomes

    def _undo(self, cursor: Any) -> None:
        cursor.execute("ROLLBACK TO SAVEPOINT anfu_job")
        cursor.execute("RELEASE SAVEPOINT anfu_job")
        self._job_ended(False)
