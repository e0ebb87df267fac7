"""Engines for SQLite (WAL, synchronous=FULL: an acknowledged write survives a power cut)
and PostgreSQL (synchronous_commit=on)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.pool import QueuePool


def make_engine(url: str, *, writer: bool = False, pool_size: int = 8) -> Engine:
    if url.startswith("sqlite"):
        return _sqlite_engine(url, writer=writer)
    engine = create_engine(url, poolclass=QueuePool, pool_size=pool_size, max_overflow=8,
                           pool_pre_ping=True)

    @event.listens_for(engine, "connect")
    def _pg_connect(dbapi_conn: Any, _record: Any) -> None:
        with dbapi_conn.cursor() as cur:
            cur.execute("SET synchronous_commit = on")
        dbapi_conn.commit()

    return engine


def _sqlite_engine(url: str, *, writer: bool) -> Engine:
    engine = create_engine(url, poolclass=QueuePool, pool_size=1 if writer else 8,
                           max_overflow=0 if writer else 8,
                           connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, emit BEGIN, so SAVEPOINT works.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA cache_size=-65536")  # 64 MiB: ledger indexes stay in memory
        cur.close()

    @event.listens_for(engine, "begin")
    def _sqlite_begin(conn: Any) -> None:
        # IMMEDIATE takes the write lock up front: no upgrade deadlocks between processes.
        conn.exec_driver_sql("BEGIN IMMEDIATE" if writer else "BEGIN")

    return engine
