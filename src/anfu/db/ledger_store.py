"""SQL implementation of the ledger's storage port, plus reads (balances, statements) and
the invariant check used by tests and the admin zone."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select, text

from anfu.db.raw import Raw
from anfu.db.tables import accounts, entries, transfers
from anfu.ledger.batch import AccountState, Entry
from anfu.ledger.model import AccountRef, Balance, Transfer, TransferKind


class AccountIdCache:
    """Account ids never change once committed; this cache saves a query per account use.

    An id seen inside a write job is only staged: it becomes visible to other jobs of the
    batch once its job succeeded, and cached for good only once the batch committed. A job
    or batch that rolls back takes its staged ids with it (else a refused transfer to a new
    payee would leave the id of a never-committed account behind, which the database may
    hand to another account). The writer drives this through ``TransactionListener``.
    """

    def __init__(self) -> None:
        self._ids: dict[AccountRef, int] = {}
        self._batch: dict[AccountRef, int] = {}
        self._job: dict[AccountRef, int] = {}
        self._lock = threading.Lock()

    def get(self, ref: AccountRef) -> int | None:
        # committed ids first: the common case costs one lookup
        return self._ids.get(ref) or self._job.get(ref) or self._batch.get(ref)

    def put(self, ref: AccountRef, account_id: int) -> None:
        self._job[ref] = account_id

    def job_ended(self, ok: bool) -> None:
        if ok:
            self._batch.update(self._job)
        self._job.clear()

    def batch_ended(self, committed: bool) -> None:
        if committed:
            with self._lock:
                self._ids.update(self._batch)
        self._batch.clear()
        self._job.clear()

    def clear(self) -> None:
        with self._lock:
            self._ids.clear()
        self._batch.clear()
        self._job.clear()


_FIND_ACCOUNT = ("SELECT id FROM accounts WHERE owner_type = :ot AND owner_id = :oid"
                 " AND kind = :k AND currency = :c")
_NEW_ACCOUNT = (
    "INSERT INTO accounts (owner_type, owner_id, kind, currency, debits_posted,"
    " credits_posted, debits_pending, credits_pending, no_overdraft, created_at)"
    " VALUES (:ot, :oid, :k, :c, 0, 0, 0, 0, :nod, :now) RETURNING id")
# One statement both guards against overdraft and applies the change (no read-modify-write
# race, on SQLite or PostgreSQL), and hands back the balance for the entry.
_APPLY = (
    "UPDATE accounts SET debits_posted = debits_posted + :dp, credits_posted = credits_posted"
    " + :cp, debits_pending = debits_pending + :dpe, credits_pending = credits_pending + :cpe"
    " WHERE id = :id AND (:reserve <= 0 OR NOT no_overdraft"
    " OR credits_posted - debits_posted - debits_pending >= :reserve)"
    " RETURNING credits_posted - debits_posted")
_FIND_TRANSFER = "SELECT * FROM transfers WHERE id = :id"
_FIND_RESOLUTION = "SELECT * FROM transfers WHERE pending_id = :pid"
_INSERT_TRANSFER = (
    "INSERT INTO transfers (id, kind, debit_account_id, credit_account_id, amount, currency,"
    " pending_id, timeout_at, reference, description, reverses_id, created_at) VALUES (:id,"
    " :kind, :dr, :cr, :amount, :currency, :pending_id, :timeout_at, :reference,"
    " :description, :reverses_id, :created_at) ON CONFLICT (id) DO NOTHING")
_INSERT_ENTRY = (
    "INSERT INTO entries (account_id, transfer_id, amount, balance_after, created_at)"
    " VALUES (:a, :t, :amount, :b, :at)")
_BULK_TRANSFER = (
    "INSERT INTO transfers (id, kind, debit_account_id, credit_account_id, amount, currency,"
    " pending_id, timeout_at, reference, description, reverses_id, created_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
_BULK_ENTRY = ("INSERT INTO entries (account_id, transfer_id, amount, balance_after,"
               " created_at) VALUES (?, ?, ?, ?, ?)")
_BULK_ACCOUNT = ("UPDATE accounts SET debits_posted = ?, credits_posted = ?,"
                 " debits_pending = ?, credits_pending = ? WHERE id = ?")
_CHUNK = 500
_STATE = "id, debits_posted, credits_posted, debits_pending, credits_pending, no_overdraft"
_DUE_HOLDS = (
    "SELECT t.* FROM transfers t WHERE t.kind = 'pending' AND t.timeout_at IS NOT NULL"
    " AND t.timeout_at <= :now AND NOT EXISTS (SELECT 1 FROM transfers r"
    " WHERE r.pending_id = t.id) ORDER BY t.timeout_at LIMIT :lim")


def _transfer(m: dict[str, Any]) -> Transfer:
    return Transfer(id=m["id"], kind=TransferKind(m["kind"]),
                    debit_account_id=m["debit_account_id"],
                    credit_account_id=m["credit_account_id"], amount=m["amount"],
                    currency=m["currency"], created_at=m["created_at"],
                    pending_id=m["pending_id"], timeout_at=m["timeout_at"],
                    reference=m["reference"], description=m["description"],
                    reverses_id=m["reverses_id"])


class SqlLedgerStore:
    def __init__(self, conn: Connection, cache: AccountIdCache, now: float = 0.0,
                 raw: Raw | None = None) -> None:
        self._sql = raw or Raw(conn)
        self._cache = cache
        self._now = now

    def account_id(self, ref: AccountRef) -> int:
        cached = self._cache.get(ref)
        if cached is not None:
            return cached
        params: dict[str, Any] = {"ot": ref.owner_type.value, "oid": ref.owner_id,
                                  "k": ref.kind.value, "c": ref.currency}
        found = self._sql.value(_FIND_ACCOUNT, params)
        if found is None:
            found = self._sql.value(_NEW_ACCOUNT, {**params, "nod": ref.no_overdraft,
                                                   "now": self._now})
        self._cache.put(ref, int(found))
        return int(found)

    def find_transfer(self, transfer_id: str) -> Transfer | None:
        row = self._sql.row(_FIND_TRANSFER, {"id": transfer_id})
        return None if row is None else _transfer(row)

    def find_resolution(self, pending_id: str) -> Transfer | None:
        row = self._sql.row(_FIND_RESOLUTION, {"pid": pending_id})
        return None if row is None else _transfer(row)

    def insert_transfer(self, transfer: Transfer) -> bool:
        return self._sql.run(_INSERT_TRANSFER, {
            "id": transfer.id, "kind": transfer.kind.value, "dr": transfer.debit_account_id,
            "cr": transfer.credit_account_id, "amount": transfer.amount,
            "currency": transfer.currency, "pending_id": transfer.pending_id,
            "timeout_at": transfer.timeout_at, "reference": transfer.reference,
            "description": transfer.description, "reverses_id": transfer.reverses_id,
            "created_at": transfer.created_at}) == 1

    def apply(self, account_id: int, *, debits_posted: int = 0, credits_posted: int = 0,
              debits_pending: int = 0, credits_pending: int = 0,
              reserve: int = 0) -> int | None:
        after = self._sql.value(_APPLY, {
            "dp": debits_posted, "cp": credits_posted, "dpe": debits_pending,
            "cpe": credits_pending, "id": account_id, "reserve": reserve})
        return None if after is None else int(after)

    def add_entry(self, *, account_id: int, transfer_id: str, amount: int,
                  balance_after: int, created_at: float) -> None:
        self._sql.run(_INSERT_ENTRY, {"a": account_id, "t": transfer_id, "amount": amount,
                                      "b": balance_after, "at": created_at})

    # ---- batches (ledger/batch.py) -------------------------------------------------------

    def find_transfers(self, ids: Sequence[str]) -> dict[str, Transfer]:
        found: dict[str, Transfer] = {}
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start:start + _CHUNK]
            params = {f"i{n}": v for n, v in enumerate(chunk)}
            marks = ", ".join(f":i{n}" for n in range(len(chunk)))
            for row in self._sql.rows(f"SELECT * FROM transfers WHERE id IN ({marks})",  # noqa: S608
                                      params):
                found[row["id"]] = _transfer(row)
        return found

    def lock_accounts(self, account_ids: Sequence[int]) -> dict[int, AccountState]:
        # Ascending id order on PostgreSQL so that two batches never wait on each other in a
        # cycle; SQLite's writer already holds the database lock (BEGIN IMMEDIATE).
        lock = " ORDER BY id FOR UPDATE" if self._sql.is_postgres else ""
        states: dict[int, AccountState] = {}
        for start in range(0, len(account_ids), _CHUNK):
            chunk = account_ids[start:start + _CHUNK]
            params = {f"i{n}": v for n, v in enumerate(chunk)}
            marks = ", ".join(f":i{n}" for n in range(len(chunk)))
            sql = f"SELECT {_STATE} FROM accounts WHERE id IN ({marks}){lock}"  # noqa: S608
            for r in self._sql.rows(sql, params):
                states[r["id"]] = AccountState(r["debits_posted"], r["credits_posted"],
                                               r["debits_pending"], r["credits_pending"],
                                               bool(r["no_overdraft"]))
        return states

    def write_batch(self, transfers: Sequence[Transfer], entries: Sequence[Entry],
                    accounts: dict[int, AccountState]) -> None:
        self._sql.run_many(_BULK_TRANSFER, [
            (t.id, t.kind.value, t.debit_account_id, t.credit_account_id, t.amount, t.currency,
             t.pending_id, t.timeout_at, t.reference, t.description, t.reverses_id,
             t.created_at) for t in transfers])
        self._sql.run_many(_BULK_ENTRY, list(entries))
        self._sql.run_many(_BULK_ACCOUNT, [
            (a.debits_posted, a.credits_posted, a.debits_pending, a.credits_pending, account_id)
            for account_id, a in accounts.items()])

    def due_holds(self, now: float, limit: int) -> list[Transfer]:
        rows = self._sql.rows(_DUE_HOLDS, {"now": now, "lim": limit})
        return [_transfer(r) for r in rows]


# ---- reads -------------------------------------------------------------------------------

def balances_of(conn: Connection, owner_type: str, owner_id: str,
                kind: str) -> list[Balance]:
    rows = conn.execute(select(
        accounts.c.id, accounts.c.currency, accounts.c.credits_posted, accounts.c.debits_posted,
        accounts.c.debits_pending, accounts.c.credits_pending,
    ).where(accounts.c.owner_type == owner_type, accounts.c.owner_id == owner_id,
            accounts.c.kind == kind).order_by(accounts.c.currency)).all()
    return [Balance(account_id=r.id, currency=r.currency,
                    posted=r.credits_posted - r.debits_posted,
                    pending_out=r.debits_pending, pending_in=r.credits_pending) for r in rows]


def statement(conn: Connection, account_id: int, *, after: int, limit: int) -> list[Any]:
    return list(conn.execute(select(
        entries.c.id, entries.c.transfer_id, entries.c.amount, entries.c.balance_after,
        entries.c.created_at, transfers.c.reference, transfers.c.description,
    ).join(transfers, transfers.c.id == entries.c.transfer_id).where(
        entries.c.account_id == account_id, entries.c.id > after,
    ).order_by(entries.c.id).limit(limit)).all())


@dataclass(frozen=True)
class InvariantReport:
    violations: list[str]
    accounts: int
    transfers: int

    @property
    def ok(self) -> bool:
        return not self.violations


def check_invariants(conn: Connection) -> InvariantReport:
    """Checks, in one read transaction: per currency all balances (and pending sides) sum to
    zero; each account's posted balance equals the sum of its entries; its pending sides
    equal its open holds; no no-overdraft account is overdrawn."""
    bad: list[str] = []
    for cur, total, dpend, cpend in conn.execute(text(
            "SELECT currency, SUM(credits_posted - debits_posted), SUM(debits_pending),"
            " SUM(credits_pending) FROM accounts GROUP BY currency")):
        if total != 0 or dpend != cpend:
            bad.append(f"{cur}: balances sum to {total}, pending {dpend} vs {cpend}")
    for acc_id, diff in conn.execute(text(
            "SELECT a.id, a.credits_posted - a.debits_posted - COALESCE((SELECT SUM(e.amount)"
            " FROM entries e WHERE e.account_id = a.id), 0) FROM accounts a")):
        if diff != 0:
            bad.append(f"account {acc_id}: balance differs from its entries by {diff}")
    for acc_id, dpend, cpend, open_out, open_in in conn.execute(text(
            "SELECT a.id, a.debits_pending, a.credits_pending,"
            " COALESCE((SELECT SUM(t.amount) FROM transfers t WHERE t.kind='pending'"
            "  AND t.debit_account_id=a.id AND NOT EXISTS (SELECT 1 FROM transfers r"
            "  WHERE r.pending_id=t.id)),0),"
            " COALESCE((SELECT SUM(t.amount) FROM transfers t WHERE t.kind='pending'"
            "  AND t.credit_account_id=a.id AND NOT EXISTS (SELECT 1 FROM transfers r"
            "  WHERE r.pending_id=t.id)),0) FROM accounts a")):
        if dpend != open_out or cpend != open_in:
            bad.append(f"account {acc_id}: pending {dpend}/{cpend} vs open holds"
                       f" {open_out}/{open_in}")
    for (acc_id,) in conn.execute(text(
            "SELECT id FROM accounts WHERE no_overdraft AND"
            " credits_posted - debits_posted - debits_pending < 0")):
        bad.append(f"account {acc_id} is overdrawn")
    n_accounts = conn.execute(text("SELECT COUNT(*) FROM accounts")).scalar_one()
    n_transfers = conn.execute(text("SELECT COUNT(*) FROM transfers")).scalar_one()
    return InvariantReport(bad, int(n_accounts), int(n_transfers))
