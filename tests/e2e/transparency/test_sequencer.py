"""The sequencer on the real writer and database (SQLite, and PostgreSQL with
ANFU_TEST_DATABASE_URL): two sequencers on one database never assign an index twice, a batch
that fails half-way leaves nothing behind, and receipts wait (pending) until sequenced."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pytest

from anfu.crypto.keystore import FileKeyStore
from anfu.crypto.merkle_hash import leaf_hash
from anfu.db.log_store import SqlLogStore
from anfu.errors import Conflict, NotFound
from anfu.transparency.merkle import mth
from anfu.transparency.service import TransparencyLog, commit_batch
from tests.dbharness import Harness, open_harness

T = TypeVar("T")


class Ring:
    def __init__(self, signer: Any) -> None:
        self.current = signer


class Runtime:
    def __init__(self, harness: Harness) -> None:
        self.h = harness

    def clock(self) -> float:
        return float(self.h.clock())

    def read(self, fn: Callable[[Any], T]) -> T:
        return self.h.read(fn)

    async def write(self, job: Callable[[Any], T]) -> T:
        result: T = await asyncio.wrap_future(self.h.submit(job))
        return result


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    h = open_harness(tmp_path)
    yield h
    h.close()


@pytest.fixture
def rings(tmp_path: Path) -> tuple[Ring, Ring]:
    store = FileKeyStore(tmp_path / "keys", b"test passphrase")
    return Ring(store.create("lk1", "ecdsa-p256-sha256")), Ring(store.create("rk1", "ed25519"))


def make_log(harness: Harness, rings: tuple[Ring, Ring], batch_max: int) -> TransparencyLog:
    return TransparencyLog(Runtime(harness), SqlLogStore, log_keys=rings[0],
                           receipt_keys=rings[1], batch_max=batch_max, sth_interval_s=0.1)


def enqueue(harness: Harness, n: int, offset: int = 0) -> None:
    def job(uow: Any) -> None:
        store = SqlLogStore(uow.conn)
        for i in range(offset, offset + n):
            if i % 4 == 0:
                store.enqueue("payment", {"txn_id": f"T{i}", "user_id": f"u{i % 3}",
                                          "merchant_id": "m1", "amount": i, "currency": "CNY",
                                          "device_signature_sha256": None}, uow.now)
            else:
                store.enqueue("operator.action", {"method": "POST", "path": f"/v1/x/{i}",
                                                  "status": 201}, uow.now)

    harness.write(job)


def leaves(harness: Harness) -> list[dict[str, Any]]:
    return harness.read(lambda c: SqlLogStore(c).entries(0, 10**9))


def test_two_sequencers_never_assign_an_index_twice(harness: Harness,
                                                    rings: tuple[Ring, Ring]) -> None:
    enqueue(harness, 250)
    a, b = make_log(harness, rings, 100), make_log(harness, rings, 100)
    batch_a, batch_b = a._prepare(None), b._prepare(None)
    assert batch_a is not None and batch_b is not None and batch_a.start == batch_b.start == 0
    harness.write(lambda uow: commit_batch(SqlLogStore(uow.conn), batch_a, uow.now))
    with pytest.raises(Conflict):
        harness.write(lambda uow: commit_batch(SqlLogStore(uow.conn), batch_b, uow.now))

    async def both() -> list[int]:
        return list(await asyncio.gather(a.sequence(), b.sequence()))

    asyncio.run(both())
    rows = leaves(harness)
    assert [r["leaf_index"] for r in rows] == list(range(250))
    audited = harness.read(lambda c: SqlLogStore(c).audit_entries(0, 10**9))
    bodies = [orjson.loads(r["private_body"]) for r in audited]  # every kind here is private
    paths = [x.get("path") or x["txn_id"] for x in bodies]
    assert len(set(paths)) == 250  # each entry exactly once
    assert harness.read(lambda c: SqlLogStore(c).queued(1000)) == []
    receipts = harness.read(lambda c: c.exec_driver_sql(
        "SELECT COUNT(*) FROM receipts").scalar())
    assert receipts == len([i for i in range(250) if i % 4 == 0])
    head = asyncio.run(b.sign_if_due(force=True))
    assert head is not None and head.tree_size == 250
    expected = mth([leaf_hash(r["entry"].encode()) for r in rows])
    synced = harness.read(lambda c: a.sync(c, 250))  # a's cache missed b's batches
    assert head.root_hash == expected == synced.root(250) == b.tree.root(250)


def test_a_batch_failing_half_way_leaves_nothing(harness: Harness,
                                                 rings: tuple[Ring, Ring]) -> None:
    enqueue(harness, 40)
    tlog = make_log(harness, rings, 100)
    batch = tlog._prepare(None)
    assert batch is not None

    class Crashing(SqlLogStore):
        def delete_queued(self, ids: list[int]) -> int:
            raise Conflict("simulated crash after the leaf inserts", code="crash")

    with pytest.raises(Conflict):
        harness.write(lambda uow: commit_batch(Crashing(uow.conn), batch, uow.now))
    assert leaves(harness) == []
    assert len(harness.read(lambda c: SqlLogStore(c).queued(1000))) == 40
    assert asyncio.run(tlog.sequence()) == 40
    assert len(leaves(harness)) == 40


def test_receipts_are_pending_until_sequenced_and_signed(harness: Harness,
                                                         rings: tuple[Ring, Ring]) -> None:
    enqueue(harness, 5)
    tlog = make_log(harness, rings, 100)

    def bundle(owner: str) -> Any:
        return harness.read(lambda c: tlog.receipt_bundle(c, "T4", lambda u, _m: u == owner))

    assert bundle("u1") is None  # queued: pending for its owner
    with pytest.raises(NotFound):
        bundle("u2")
    asyncio.run(tlog.sequence())
    assert bundle("u1") is None  # sequenced, no tree head covers it yet
    asyncio.run(tlog.sign_if_due())
    found = bundle("u1")
    assert found["receipt"]["leaf_index"] == 4 and found["inclusion_proof"]["tree_size"] == 5
    with pytest.raises(NotFound):
        bundle("u2")
