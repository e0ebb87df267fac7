"""The transparency log's storage (``db/tables_log.py``), on plain DB-API statements: the
enqueue sits inside payment transactions and the sequencer moves tens of thousands of rows
per batch. ``transparency_log(platform)`` is the per-process ``TransparencyLog``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import Connection

from anfu.db.raw import Raw
from anfu.transparency.model import KINDS, MAX_KIND, TreeHead, canonical_json

if TYPE_CHECKING:
    from anfu.bootstrap import Platform
    from anfu.transparency.service import LeafRow, TransparencyLog

_EXTRAS_KEY = "anfu.transparency.log"


class SqlLogStore:
    __slots__ = ("_conn", "_raw")

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._raw = Raw(conn)

    # -- the writers' call --------------------------------------------------------------
    def enqueue(self, kind: str, body: dict[str, Any], now: float) -> int:
        """Queue a log entry in the caller's transaction (one INSERT); returns its queue id.
        ``body`` is JSON without floats (amounts in minor units, times in integer ms/s)."""
        if kind not in KINDS and not (0 < len(kind) <= MAX_KIND and kind.isascii()
                                      and kind.isprintable()):
            raise ValueError(f"log entry kind {kind!r} is not valid")
        params = {"k": kind, "b": canonical_json(body).decode("utf-8"), "t": now}
        if self._raw.is_postgres:
            return int(self._raw.value("INSERT INTO log_queue (kind, body, created_at)"
                                       " VALUES (:k, :b, :t) RETURNING id", params))
        self._raw.run("INSERT INTO log_queue (kind, body, created_at) VALUES (:k, :b, :t)",
                      params)
        return int(self._raw._cursor.lastrowid)

    def announce_key(self, kind: str, key_id: str, purpose: str, body: dict[str, Any],
                     now: float) -> bool:
        """Queue ``kind`` (``key.published`` / ``key.rotated``) for a platform key the log
        has not announced yet; False (and nothing queued) if it already has."""
        added = self._raw.run("INSERT INTO log_keys (key_id, purpose, logged_at) VALUES"
                              " (:k, :p, :t) ON CONFLICT (key_id) DO NOTHING",
                              {"k": key_id, "p": purpose, "t": now})
        if added:
            self.enqueue(kind, body, now)
        return bool(added)

    # -- sequencer ----------------------------------------------------------------------
    def tree_size(self, *, lock: bool = False) -> int:
        sql = "SELECT tree_size FROM log_state WHERE id = 1"
        if lock and self._raw.is_postgres:
            sql += " FOR UPDATE"
        size = self._raw.value(sql, {})
        if size is None:
            if lock:
                self._raw.run("INSERT INTO log_state (id, tree_size, updated_at) VALUES"
                              " (1, 0, 0) ON CONFLICT (id) DO NOTHING", {})
                return self.tree_size(lock=True)
            return 0
        return int(size)

    def queued(self, limit: int, after_id: int = 0) -> list[tuple[int, str, str, float]]:
        """The oldest queued entries (after queue id ``after_id``)."""
        cur = self._raw._cursor
        cur.execute(self._sql("SELECT id, kind, body, created_at FROM log_queue WHERE id > ?"
                              " ORDER BY id LIMIT ?"), (int(after_id), int(limit)))
        return list(cur.fetchall())

    def append_leaves(self, rows: list[LeafRow]) -> None:
        """One multi-row INSERT per batch; a committed entry's private body and salt go in
        the same row as its public entry (no extra statement)."""
        self._raw.run_many("INSERT INTO log_leaves (leaf_index, kind, entry, leaf_hash,"
                           " sequenced_at, private_body, salt) VALUES (?, ?, ?, ?, ?, ?, ?)",
                           rows)

    def delete_queued(self, ids: list[int]) -> int:
        if not ids:
            return 0
        lo, hi = ids[0], ids[-1]
        if hi - lo + 1 == len(ids):  # contiguous: every id in the range was read
            return self._raw.run("DELETE FROM log_queue WHERE id >= :a AND id <= :b",
                                 {"a": lo, "b": hi})
        deleted = 0
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            marks = ", ".join(str(int(x)) for x in chunk)
            deleted += self._raw.run(f"DELETE FROM log_queue WHERE id IN ({marks})",  # noqa: S608
                                     {})
        return deleted

    def insert_receipts(self, rows: list[tuple[str, str, str | None, str | None, int, str,
                                               float]]) -> None:
        self._raw.run_many("INSERT INTO receipts (txn_id, kind, user_id, merchant_id,"
                           " leaf_index, receipt, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
                           " ON CONFLICT (txn_id) DO NOTHING", rows)

    def set_tree_size(self, size: int, now: float) -> None:
        self._raw.run("UPDATE log_state SET tree_size = :s, updated_at = :t WHERE id = 1",
                      {"s": size, "t": now})

    # -- readers ------------------------------------------------------------------------
    def leaf_hashes(self, start: int, end: int) -> bytes:
        cur = self._raw._cursor
        cur.execute(self._sql("SELECT leaf_hash FROM log_leaves WHERE leaf_index >= ? AND"
                              " leaf_index < ? ORDER BY leaf_index"), (start, end))
        return b"".join(bytes(r[0]) for r in cur.fetchall())

    def leaf_index_of(self, leaf_hash: bytes, tree_size: int) -> int | None:
        value = self._raw.value("SELECT MIN(leaf_index) FROM log_leaves WHERE leaf_hash = :h"
                                " AND leaf_index < :n", {"h": leaf_hash, "n": tree_size})
        return None if value is None else int(value)

    def entries(self, start: int, end: int) -> list[dict[str, Any]]:
        """Leaves ``start..end`` (inclusive), public form only: never the private bodies."""
        return self._raw.rows("SELECT leaf_index, kind, entry, sequenced_at FROM log_leaves"
                              " WHERE leaf_index >= :a AND leaf_index <= :b"
                              " ORDER BY leaf_index", {"a": start, "b": end})

    def audit_entries(self, start: int, end: int) -> list[dict[str, Any]]:
        """Leaves ``start..end`` with the private body and salt of each committed entry
        (auditors only: the admin zone)."""
        return self._raw.rows("SELECT leaf_index, kind, entry, private_body, salt FROM"
                              " log_leaves WHERE leaf_index >= :a AND leaf_index <= :b"
                              " ORDER BY leaf_index", {"a": start, "b": end})

    def latest_tree_head(self) -> TreeHead | None:
        row = self._raw.row("SELECT tree_size, timestamp, root_hash, key_id, alg, signature"
                            " FROM log_tree_heads ORDER BY tree_size DESC LIMIT 1", {})
        if row is None:
            return None
        return TreeHead(int(row["tree_size"]), int(row["timestamp"]), bytes(row["root_hash"]),
                        row["key_id"], row["alg"], bytes(row["signature"]))

    def save_tree_head(self, head: TreeHead) -> None:
        self._raw.run("INSERT INTO log_tree_heads (tree_size, timestamp, root_hash, key_id,"
                      " alg, signature) VALUES (:n, :t, :r, :k, :a, :s)"
                      " ON CONFLICT (tree_size) DO UPDATE SET timestamp = excluded.timestamp,"
                      " root_hash = excluded.root_hash, key_id = excluded.key_id,"
                      " alg = excluded.alg, signature = excluded.signature",
                      {"n": head.tree_size, "t": head.timestamp, "r": head.root_hash,
                       "k": head.key_id, "a": head.alg, "s": head.signature})

    def receipt(self, txn_id: str) -> dict[str, Any] | None:
        return self._raw.row("SELECT txn_id, kind, user_id, merchant_id, leaf_index, receipt"
                             " FROM receipts WHERE txn_id = :t", {"t": txn_id})

    def queued_owner(self, txn_id: str, kinds: list[str]) -> tuple[str | None,
                                                                   str | None] | None:
        """(user_id, merchant_id) of a receipt-kind entry for ``txn_id`` still queued."""
        needle = orjson.dumps({"txn_id": txn_id}).decode()[1:-1]
        rows = self._raw.rows("SELECT kind, body FROM log_queue WHERE body LIKE :n",
                              {"n": "%" + needle.replace("%", "").replace("_", "%") + "%"})
        for row in rows:
            body = orjson.loads(row["body"])
            if row["kind"] in kinds and body.get("txn_id") == txn_id:
                user, merchant = body.get("user_id"), body.get("merchant_id")
                return (None if user is None else str(user),
                        None if merchant is None else str(merchant))
        return None

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self._raw.is_postgres else sql


def transparency_log(platform: Platform) -> TransparencyLog:
    """This process's ``TransparencyLog`` (tree cache, sequencer, signer), made once."""
    found = platform.extras.get(_EXTRAS_KEY)
    if found is None:
        from anfu.transparency.service import TransparencyLog

        found = TransparencyLog(platform, SqlLogStore, log_keys=platform.log_keys,
                                receipt_keys=platform.receipt_keys,
                                batch_max=platform.settings.log_batch_max,
                                sth_interval_s=platform.settings.log_sth_interval_s)
        platform.extras[_EXTRAS_KEY] = found
    log: TransparencyLog = found
    return log
