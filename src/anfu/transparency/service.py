"""The log's use cases: sequencing queued entries into leaves (with receipts), signing tree
heads, and serving proofs and receipt bundles from an in-memory tree.

Sequencing (like Trillian's sequencer), one batch at a time:
1. *prepare* (outside the writer, on a read connection): the committed tree size, the oldest
   queued entries (≤ ``log_batch_max``), their entry bytes and leaf hashes, and the signed
   receipts of the receipt kinds. An entry of a public kind is logged with its body in
   clear (V1); any other gets a fresh salt and is logged as its commitment only (V2), its
   body and salt kept beside the leaf for its receipt and the auditors;
2. *commit* (one write transaction): lock the state row, check the tree still has the size
   prepared for (else nothing is written and the batch is prepared again), insert the leaves
   with consecutive indices and the receipts, delete exactly those queue rows, and move the
   state to the new size. A crash leaves all of it or none;
3. extend the in-memory tree, and sign a tree head when the tree grew (every
   ``log_sth_interval_s``) and at least hourly anyway.

Serving processes extend their own tree lazily from the leaf hashes in the database (only
the new ones), so a proof never recomputes more than O(log n) hashes."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import orjson

from anfu.crypto import platform_sig
from anfu.crypto.commitment import RandBytes, new_salts
from anfu.crypto.keystore import Signer
from anfu.crypto.merkle_hash import leaf_digests
from anfu.errors import Conflict, InvalidRequest, NotFound
from anfu.transparency.merkle import MerkleTree
from anfu.transparency.model import (
    MAX_ENTRIES_PER_PAGE,
    RECEIPT_KINDS,
    STH_MAX_AGE_S,
    TreeHead,
    at_ms,
    b64,
    body_commitment,
    committed_entry_text,
    entry_text,
    is_public_kind,
    receipt_payload,
    receipt_signing_bytes,
    sth_signing_bytes,
)

log = logging.getLogger("anfu.transparency")
T = TypeVar("T")
# A leaf row: (leaf_index, kind, entry text, leaf hash, sequenced_at, private body, salt);
# the body and salt are None for the public kinds (their body is in the entry).
LeafRow = tuple[int, str, str, bytes, float, str | None, bytes | None]


class LogStorePort(Protocol):
    def tree_size(self, *, lock: bool = False) -> int: ...

    def queued(self, limit: int, after_id: int = 0) -> list[tuple[int, str, str, float]]:
        ...

    def append_leaves(self, rows: list[LeafRow]) -> None: ...

    def delete_queued(self, ids: list[int]) -> int: ...

    def insert_receipts(self, rows: list[tuple[str, str, str | None, str | None, int, str,
                                               float]]) -> None: ...

    def set_tree_size(self, size: int, now: float) -> None: ...

    def leaf_hashes(self, start: int, end: int) -> bytes: ...

    def audit_entries(self, start: int, end: int) -> list[dict[str, Any]]: ...

    def latest_tree_head(self) -> TreeHead | None: ...

    def save_tree_head(self, head: TreeHead) -> None: ...


class Runtime(Protocol):
    """What the log needs from the platform (``anfu.bootstrap.Platform`` fits)."""

    def clock(self) -> float: ...

    def read(self, fn: Callable[[Any], T]) -> T: ...

    def write(self, job: Callable[[Any], T]) -> Awaitable[T]: ...


@dataclass(frozen=True, slots=True)
class Batch:
    start: int
    ids: list[int]
    leaves: list[LeafRow]
    hashes: bytes
    receipts: list[tuple[str, str, str | None, str | None, int, str, float]]


def prepare_batch(start: int, queued: list[tuple[int, str, str, float]], now: float,
                  receipt_signer: Signer | None, *,
                  randbytes: RandBytes | None = None) -> Batch:
    """Entry bytes, leaf hashes and receipts of ``queued`` placed from index ``start``.
    ``randbytes`` (tests) replaces the system's random source for the salts."""
    committed = [i for i, q in enumerate(queued) if not is_public_kind(q[1])]
    salts: list[bytes | None] = [None] * len(queued)
    for i, salt in zip(committed, new_salts(len(committed), randbytes=randbytes),
                       strict=True):
        salts[i] = salt
    texts = [entry_text(kind, at_ms(created), body) if salt is None else
             committed_entry_text(kind, at_ms(created),
                                  body_commitment(salt, body.encode("utf-8")))
             for (_, kind, body, created), salt in zip(queued, salts, strict=True)]
    entries = [t.encode("utf-8") for t in texts]
    digests = leaf_digests(entries)
    leaves: list[LeafRow] = [
        (start + i, q[1], t, d, now, None if salt is None else q[2], salt)
        for i, (q, t, d, salt) in enumerate(zip(queued, texts, digests, salts, strict=True))]
    receipts = []
    issued = at_ms(now)
    for i, (_, kind, body_json, _created) in enumerate(queued):
        receipt_salt = salts[i]
        if kind not in RECEIPT_KINDS or receipt_signer is None or receipt_salt is None:
            continue
        body = orjson.loads(body_json)
        if not isinstance(body, dict) or not body.get("txn_id"):
            continue
        signer = receipt_signer
        receipt = receipt_payload(kind=kind, body=body, salt=receipt_salt, leaf_index=start + i,
                                  entry=entries[i], issued_at=issued, key_id=signer.key_id,
                                  alg=signer.alg)
        receipt["signature"] = b64(platform_sig.sign(signer, receipt_signing_bytes(receipt)))
        receipts.append((str(body["txn_id"]), kind, _opt(body.get("user_id")),
                         _opt(body.get("merchant_id")), start + i,
                         orjson.dumps(receipt).decode(), now))
    return Batch(start, [q[0] for q in queued], leaves, b"".join(digests), receipts)


def _opt(value: Any) -> str | None:
    return None if value is None else str(value)


def commit_batch(store: LogStorePort, batch: Batch, now: float) -> int:
    """Write a prepared batch (inside a write transaction); Conflict if the log moved."""
    size = store.tree_size(lock=True)
    if size != batch.start:
        raise Conflict(f"the log has {size} leaves, the batch was prepared for"
                       f" {batch.start}", code="log_moved")
    store.append_leaves(batch.leaves)
    if batch.receipts:
        store.insert_receipts(batch.receipts)
    if store.delete_queued(batch.ids) != len(batch.ids):
        raise Conflict("queued log entries were taken by another sequencer",
                       code="log_moved")
    store.set_tree_size(batch.start + len(batch.ids), now)
    return batch.start + len(batch.ids)


class TransparencyLog:
    """One platform process's view of the log: its tree cache, sequencer and signer."""

    def __init__(self, runtime: Runtime, store: Callable[[Any], LogStorePort], *,
                 log_keys: Any, receipt_keys: Any, batch_max: int,
                 sth_interval_s: float, randbytes: RandBytes | None = None) -> None:
        self.runtime = runtime
        self.randbytes = randbytes
        self.store = store
        self.log_keys = log_keys
        self.receipt_keys = receipt_keys
        self.batch_max = batch_max
        self.sth_interval_s = sth_interval_s
        self.tree = MerkleTree()
        self._sync_lock = threading.Lock()
        self._next_run = 0.0
        self._head: TreeHead | None = None

    # -- the tree cache ------------------------------------------------------------------
    def sync(self, conn: Any, size: int) -> MerkleTree:
        """Extend the in-memory tree from the database up to ``size`` leaves."""
        if self.tree.size >= size:
            return self.tree
        with self._sync_lock:
            step = 200_000
            while self.tree.size < size:
                start = self.tree.size
                hashes = self.store(conn).leaf_hashes(start, min(size, start + step))
                if not hashes:
                    raise RuntimeError(f"log leaves {start}.. are missing from the database")
                self.tree.append(hashes)
        return self.tree

    # -- sequencer (worker, process 0) ---------------------------------------------------
    async def tick(self) -> int:
        """Run when due: sequence what is queued, then sign a tree head if needed."""
        now = self.runtime.clock()
        if now < self._next_run:
            return 0
        self._next_run = now + self.sth_interval_s
        done = await self.sequence()
        await self.sign_if_due()
        return done

    async def sequence(self) -> int:
        """Sequence everything queued, batch after batch; the next batch is prepared while
        the writer commits the current one. Returns how many entries were sequenced."""
        done = 0
        batch = await asyncio.to_thread(self._prepare, None)
        while batch is not None:
            current = batch
            committing = self.runtime.write(self._committer(current))
            ahead = (asyncio.to_thread(self._prepare, current)
                     if len(current.ids) >= self.batch_max else None)
            try:
                await committing
            except Conflict as exc:
                if ahead is not None:
                    await ahead
                log.info("log batch not written (%s): prepared again next time", exc.detail)
                return done
            if self.tree.size == current.start:
                self.tree.append(current.hashes)
            done += len(current.ids)
            batch = await ahead if ahead is not None else None
        return done

    def _committer(self, batch: Batch) -> Callable[[Any], int]:
        return lambda uow: commit_batch(self.store(uow.conn), batch, uow.now)

    async def sequence_once(self) -> int:
        """One batch (tests, tools); returns how many entries were sequenced."""
        batch = await asyncio.to_thread(self._prepare, None)
        if batch is None:
            return 0
        try:
            await self.runtime.write(lambda uow: commit_batch(self.store(uow.conn), batch,
                                                              uow.now))
        except Conflict as exc:
            log.info("log batch not written (%s): prepared again next time", exc.detail)
            return 0
        if self.tree.size == batch.start:
            self.tree.append(batch.hashes)
        return len(batch.ids)

    def _prepare(self, after: Batch | None) -> Batch | None:
        """The next batch: from the committed state, or (pipelined) right after ``after``,
        which is being committed; the commit checks the start either way."""
        def read(conn: Any) -> Batch | None:
            store = self.store(conn)
            if after is None:
                size, after_id = store.tree_size(), 0
            else:
                size, after_id = after.start + len(after.ids), after.ids[-1]
            queued = store.queued(self.batch_max, after_id)
            if not queued:
                return None
            return prepare_batch(size, queued, self.runtime.clock(), self.receipt_keys.current,
                                 randbytes=self.randbytes)

        return self.runtime.read(read)

    async def sign_if_due(self, *, force: bool = False) -> TreeHead | None:
        """Sign a tree head for the committed size if the tree grew (or an hour passed)."""
        def read(conn: Any) -> tuple[int, TreeHead | None]:
            store = self.store(conn)
            size = store.tree_size()
            self.sync(conn, size)
            return size, store.latest_tree_head()

        size, latest = await asyncio.to_thread(self.runtime.read, read)
        now = self.runtime.clock()
        if latest is not None and not force:
            grew = size > latest.tree_size
            stale = now * 1000 - latest.timestamp >= STH_MAX_AGE_S * 1000
            if not grew and not stale:
                return None
        head = self.sign_tree_head(size, now)
        await self.runtime.write(lambda uow: self.store(uow.conn).save_tree_head(head))
        self._head = head
        return head

    def sign_tree_head(self, size: int, now: float) -> TreeHead:
        signer = self.log_keys.current  # once: key id and signature agree
        timestamp = at_ms(now)
        root = self.tree.root(size)
        signature = platform_sig.sign(signer, sth_signing_bytes(size, timestamp, root))
        return TreeHead(size, timestamp, root, signer.key_id, signer.alg, signature)

    # -- serving -------------------------------------------------------------------------
    def latest(self, conn: Any) -> TreeHead:
        head = self.store(conn).latest_tree_head()
        if head is None:
            raise NotFound("the log has no signed tree head yet; try again in a moment",
                           code="log_empty")
        return head

    def signed_size(self, conn: Any, tree_size: int | None) -> int:
        head = self.latest(conn)
        if tree_size is None:
            return head.tree_size
        if not 0 < tree_size <= head.tree_size:
            raise InvalidRequest(f"tree_size must be between 1 and the signed size"
                                 f" {head.tree_size}", code="tree_size_out_of_range")
        return tree_size

    def inclusion(self, conn: Any, index: int, tree_size: int | None) -> dict[str, Any]:
        size = self.signed_size(conn, tree_size)
        if not 0 <= index < size:
            raise InvalidRequest(f"leaf index {index} is not in the tree of size {size}",
                                 code="leaf_index_out_of_range")
        tree = self.sync(conn, size)
        return {"leaf_index": index, "tree_size": size,
                "audit_path": [b64(h) for h in tree.inclusion_proof(index, size)]}

    def consistency(self, conn: Any, first: int, second: int) -> dict[str, Any]:
        head = self.latest(conn)
        if not 0 < first <= second <= head.tree_size:
            raise InvalidRequest(f"need 0 < first <= second <= {head.tree_size} (the signed"
                                 " size)", code="tree_size_out_of_range")
        tree = self.sync(conn, second)
        return {"first": first, "second": second,
                "consistency": [b64(h) for h in tree.consistency_proof(first, second)]}

    def entries_page(self, start: int, end: int) -> tuple[int, int]:
        if start < 0 or end < start:
            raise InvalidRequest("need 0 <= start <= end", code="entries_range_invalid")
        return start, min(end, start + MAX_ENTRIES_PER_PAGE - 1)

    def audit_page(self, conn: Any, start: int, end: int) -> list[dict[str, Any]]:
        """Leaves ``start..end`` for auditors: each committed (V2) entry with its private
        body and salt, so every commitment can be checked; public (V1) entries as they are."""
        first, last = self.entries_page(start, end)
        out = []
        for row in self.store(conn).audit_entries(first, last):
            entry = {"leaf_index": row["leaf_index"], "kind": row["kind"],
                     "leaf_input": b64(row["entry"].encode("utf-8"))}
            if row["salt"] is not None:
                entry["body"] = orjson.loads(row["private_body"])
                entry["salt"] = b64(bytes(row["salt"]))
            out.append(entry)
        return out

    def receipt_bundle(self, conn: Any, txn_id: str,
                       owns: Callable[[str | None, str | None], bool]) -> dict[str, Any] | None:
        """The bundle ``{receipt, signed_tree_head, inclusion_proof}`` of ``txn_id`` if
        ``owns(user_id, merchant_id)``; None while it waits for the sequencer or for a tree
        head that covers it; NotFound for anything else (others' receipts included)."""
        store: Any = self.store(conn)
        row = store.receipt(txn_id)
        if row is None:
            pending = store.queued_owner(txn_id, sorted(RECEIPT_KINDS))
            if pending is not None and owns(*pending):
                return None
            raise NotFound(f"no receipt for {txn_id}", code="receipt_not_found")
        if not owns(row["user_id"], row["merchant_id"]):
            raise NotFound(f"no receipt for {txn_id}", code="receipt_not_found")
        head = store.latest_tree_head()
        index = int(row["leaf_index"])
        if head is None or head.tree_size <= index:
            return None
        tree = self.sync(conn, head.tree_size)
        return {"receipt": orjson.loads(row["receipt"]), "signed_tree_head": head.public(),
                "inclusion_proof": {"leaf_index": index, "tree_size": head.tree_size,
                                    "audit_path": [b64(h) for h in tree.inclusion_proof(
                                        index, head.tree_size)]}}
