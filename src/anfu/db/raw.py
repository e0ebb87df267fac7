"""Plain DB-API statements for the money path.

SQLAlchemy Core costs ~150 µs of Python per statement here (coercion, cache keys, result
set-up); the DB-API call itself ~20 µs. The hot path (ledger, trades, outbox, idempotency)
therefore runs its few fixed statements straight on the driver connection of the current
SQLAlchemy transaction, so they share its BEGIN, SAVEPOINTs and COMMIT. Statements are
written once with ``:name`` placeholders (sqlite3's named style) and rewritten to psycopg's
``%(name)s`` style on PostgreSQL."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import Connection

_NAMED = re.compile(r"(?<![:\w]):(\w+)")
_PG_CACHE: dict[str, str] = {}


def _pg(sql: str) -> str:
    converted = _PG_CACHE.get(sql)
    if converted is None:
        converted = _NAMED.sub(r"%(\1)s", sql.replace("%", "%%"))
        _PG_CACHE[sql] = converted
    return converted


class Raw:
    __slots__ = ("_cursor", "_pg_style")

    def __init__(self, conn: Connection) -> None:
        dbapi = conn.connection.driver_connection
        assert dbapi is not None
        self._cursor: Any = dbapi.cursor()
        self._pg_style = conn.dialect.name == "postgresql"

    def run(self, sql: str, params: dict[str, Any]) -> int:
        """Execute; returns the row count."""
        self._cursor.execute(_pg(sql) if self._pg_style else sql, params)
        return int(self._cursor.rowcount)

    def row(self, sql: str, params: dict[str, Any]) -> dict[str, Any] | None:
        cur = self._cursor
        cur.execute(_pg(sql) if self._pg_style else sql, params)
        found = cur.fetchone()
        if found is None:
            return None
        return dict(zip([d[0] for d in cur.description], found, strict=True))

    def value(self, sql: str, params: dict[str, Any]) -> Any:
        cur = self._cursor
        cur.execute(_pg(sql) if self._pg_style else sql, params)
        found = cur.fetchone()
        return None if found is None else found[0]

    def rows(self, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        cur = self._cursor
        cur.execute(_pg(sql) if self._pg_style else sql, params)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    def run_many(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        """Bulk statement with positional ``?`` placeholders: tuples bind faster than
        dicts, which matters at tens of thousands of rows per second."""
        if rows:
            self._cursor.executemany(sql.replace("?", "%s") if self._pg_style else sql, rows)

    @property
    def is_postgres(self) -> bool:
        return self._pg_style
