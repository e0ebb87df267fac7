"""An in-process database with the real writer (group commit) and a movable clock, for
service-level tests on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine

from anfu.db.engine import make_engine
from anfu.db.ledger_store import AccountIdCache, InvariantReport, check_invariants
from anfu.db.migrate import upgrade
from anfu.db.uow import SqlUnitOfWork
from anfu.db.writer import Writer
from tests.clock import Clock
from tests.support import reset_database, test_database_url

T = TypeVar("T")




@dataclass
class Harness:
    url: str
    engine: Engine
    read_engine: Engine
    writer: Writer
    clock: Clock
    ids: AccountIdCache

    def write(self, job: Callable[[SqlUnitOfWork], T]) -> T:
        return self.writer.run(lambda conn: job(SqlUnitOfWork(conn, self.clock(), self.ids)))

    def submit(self, job: Callable[[SqlUnitOfWork], T]) -> Any:
        return self.writer.submit(lambda conn: job(SqlUnitOfWork(conn, self.clock(), self.ids)))

    def read(self, fn: Callable[[Any], T]) -> T:
        with self.read_engine.connect() as conn:
            return fn(conn)

    def invariants(self) -> InvariantReport:
        return self.read(check_invariants)

    def close(self) -> None:
        self.writer.stop()
        self.engine.dispose()
        self.read_engine.dispose()


def open_harness(folder: Path) -> Harness:
    url = test_database_url(folder)
    reset_database(url)
    upgrade(url)
    engine = make_engine(url, writer=True)
    ids = AccountIdCache()
    writer = Writer(engine, max_batch=64, wait_ms=0.5, listeners=(ids,))
    writer.start()
    return Harness(url, engine, make_engine(url), writer, Clock(), ids)
