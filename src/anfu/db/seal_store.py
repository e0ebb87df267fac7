"""Ledger seals (``ledger/seal.py``): find the transfers since the last seal, record the
seal, log it; and recompute every seal for ``anfu verify ledger``."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from anfu.db.log_store import SqlLogStore
from anfu.db.raw import Raw
from anfu.ledger.seal import FIELDS, MAX_TRANSFERS, SEAL_LAG_S, LedgerSeal, batch_digest
from anfu.transparency.model import parse_entry

# Fixed statements, built once from constant column names (no input reaches them).
_RANGE = (f"SELECT {', '.join(FIELDS)} FROM transfers"  # noqa: S608
          " WHERE seq >= :a AND seq <= :b ORDER BY seq")
_NEW = (f"SELECT {', '.join(FIELDS)} FROM transfers"  # noqa: S608
        f" WHERE seq > :a AND created_at < :t ORDER BY seq LIMIT {MAX_TRANSFERS}")


class SqlSealStore:
    def __init__(self, conn: Connection) -> None:
        self._raw = Raw(conn)
        self._conn = conn

    def seals(self) -> list[LedgerSeal]:
        rows = self._raw.rows("SELECT seal_no, from_seq, to_seq, transfers, digest, sealed_at"
                              " FROM ledger_seals ORDER BY seal_no", {})
        return [LedgerSeal(**r) for r in rows]

    def last(self) -> LedgerSeal | None:
        row = self._raw.row("SELECT seal_no, from_seq, to_seq, transfers, digest, sealed_at"
                            " FROM ledger_seals ORDER BY seal_no DESC LIMIT 1", {})
        return None if row is None else LedgerSeal(**row)

    def transfers(self, from_seq: int, to_seq: int) -> list[dict[str, Any]]:
        return self._raw.rows(_RANGE, {"a": from_seq, "b": to_seq})

    def seal_new_transfers(self, now: float) -> LedgerSeal | None:
        """Seal the transfers after the last seal that are older than SEAL_LAG_S (a transfer
        committed late on PostgreSQL, with a lower seq than one already sealed, would be
        missed; the lag makes that window far longer than any of our transactions)."""
        last = self.last()
        after = last.to_seq if last else 0
        rows = self._raw.rows(_NEW, {"a": after, "t": now - SEAL_LAG_S})
        if not rows:
            return None
        seal = LedgerSeal(seal_no=(last.seal_no + 1) if last else 1, from_seq=after + 1,
                          to_seq=int(rows[-1]["seq"]), transfers=len(rows),
                          digest=batch_digest(rows), sealed_at=now)
        self._raw.run("INSERT INTO ledger_seals (seal_no, from_seq, to_seq, transfers, digest,"
                      " sealed_at) VALUES (:n, :f, :t, :c, :d, :s)",
                      {"n": seal.seal_no, "f": seal.from_seq, "t": seal.to_seq,
                       "c": seal.transfers, "d": seal.digest, "s": seal.sealed_at})
        SqlLogStore(self._conn).enqueue("ledger.batch", seal.log_body(), now)
        return seal

    def logged(self) -> dict[int, dict[str, Any]]:
        """The ``ledger.batch`` bodies already in the transparency log, by seal number."""
        rows = self._raw.rows("SELECT entry FROM log_leaves WHERE kind = 'ledger.batch'"
                              " ORDER BY leaf_index", {})
        found = {}
        for row in rows:
            body = parse_entry(row["entry"].encode("utf-8"))["body"]
            found[int(body["seal_no"])] = body
        return found

    def check(self) -> list[str]:
        """Every seal recomputed from the transfers as they are now, and compared with what
        the transparency log holds: the problems found."""
        problems = []
        expected_from = 1
        logged = self.logged()
        for seal in self.seals():
            body = logged.pop(seal.seal_no, None)
            if body is not None and body != seal.log_body():
                problems.append(f"seal {seal.seal_no}: the database's seal differs from the"
                                " one in the transparency log")
            rows = self.transfers(seal.from_seq, seal.to_seq)
            if seal.from_seq != expected_from:
                problems.append(f"seal {seal.seal_no} starts at seq {seal.from_seq}, expected"
                                f" {expected_from}")
            if len(rows) != seal.transfers or batch_digest(rows) != seal.digest:
                problems.append(f"seal {seal.seal_no} (seq {seal.from_seq}..{seal.to_seq}):"
                                f" the transfers no longer match ({len(rows)} now,"
                                f" {seal.transfers} sealed)")
            expected_from = seal.to_seq + 1
        problems += [f"seal {n} is in the transparency log but not in the database"
                     for n in sorted(logged)]
        return problems
