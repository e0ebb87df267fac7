"""Where a sandbox outside party keeps its state: a SQLite file shared by every process that
opens it, or a private in-memory database.

The platform runs as several worker processes, and operators read a sandbox's state from the
CLI and the admin API, so a sandbox given a ``path`` keeps everything there. Each operation
opens its own short-lived connection: nothing is shared across a fork, and any number of
processes and threads may use one file. Every write runs in ``BEGIN IMMEDIATE``, which takes
the file's write lock before the first read, so a check-then-write (is this token spent? was
this message_id queued?) cannot interleave with another process doing the same.

Without a ``path`` the state lives in one in-memory database behind a lock: the same SQL,
no file, fast enough for unit tests.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

BUSY_TIMEOUT_MS = 5_000
"""How long a writer waits for another process's transaction before SQLite gives up."""


class SandboxStore:
    """Connections to one sandbox's state. ``schema`` is idempotent DDL (``CREATE … IF NOT
    EXISTS``), run once per store before its first use."""

    def __init__(self, path: Path | None, schema: str) -> None:
        self.path = path
        self._schema = schema
        self._lock = threading.Lock()
        self._memory: sqlite3.Connection | None = None
        self._file_ready = False
        if path is None:
            self._memory = sqlite3.connect(":memory:", check_same_thread=False,
                                           isolation_level=None)
            self._memory.executescript(schema)

    async def off_loop(self, work: Callable[[], T]) -> T:
        """Run ``work`` (which uses this store) for a coroutine. A file may make it wait for
        another process's lock and for the disk, and that wait belongs on a worker thread,
        not on the event loop; the in-memory state never waits, so it runs at once."""
        if self._memory is not None:
            return work()
        return await asyncio.to_thread(work)

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A connection for reads; each statement sees one committed state of the file."""
        with self._connection() as conn:
            yield conn

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: committed when the block ends, rolled back if it raises."""
        with self._connection() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        if self._memory is not None:
            # One connection for every thread, so the lock also serialises its use.
            with self._lock:
                yield self._memory
            return
        conn = self._open_file()
        try:
            yield conn
        finally:
            conn.close()

    def _open_file(self) -> sqlite3.Connection:
        assert self.path is not None
        with self._lock:
            if not self._file_ready:
                self._create_file(self.path)
                self._file_ready = True
        return self._connect(self.path)

    def _create_file(self, path: Path) -> None:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # The state holds texts with one-time codes and, for the carrier, a private key:
        # only the platform's user may read it. SQLite gives its -wal and -shm files the
        # main file's permissions.
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        # Switching to WAL takes the file exclusively and SQLite does not wait for that
        # (no busy handler), so instances creating the file at once take turns on a lock.
        lock = os.open(path.with_name(path.name + ".init-lock"), os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            conn = self._connect(path)
            try:
                conn.execute("PRAGMA journal_mode=WAL")  # persists in the file
                conn.executescript(self._schema)
            finally:
                conn.close()
        finally:
            os.close(lock)  # closing releases the lock

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        # isolation_level=None: transactions are the explicit BEGIN IMMEDIATE above, not
        # the ones the sqlite3 module would open implicitly.
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        # A receipt or a spent token that was answered must survive a power cut.
        conn.execute("PRAGMA synchronous=FULL")
        return conn
