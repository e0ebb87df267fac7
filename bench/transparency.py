"""Transparency-log benchmark: sequencer appends, inclusion and consistency proofs.

Runs in-process on a real platform (``anfu.bootstrap.build``, SQLite file in WAL mode with
synchronous=FULL, the group-commit writer) and prints a table and a ``BENCH-JSON`` line.

- enqueue: ``SqlLogStore.enqueue`` per entry inside a write transaction (the payment path).
- appends: queued entries sequenced in batches of ``--batch`` through ``TransparencyLog``:
  prepare (entry bytes, leaf hashes) + one write transaction (leaves, queue delete, state) +
  the in-memory tree extended. Ceiling in the same run: ``executemany`` of the same rows into
  a bare table (what SQLite alone costs).
- appends with receipts: the same with every entry a payment (an Ed25519 receipt each).
- inclusion / consistency proofs at ``--leaves`` leaves, from the in-memory tree and through
  the serving path (the signed tree head read from the database each time). Ceiling: one
  SHA-256 node hash (a proof needs ~log2 n lookups and at most as many hashes).

Usage: ``python bench/transparency.py [--leaves 1000000] [--batch 50000]``
Targets: appends ≥ 100,000 leaves/s; an inclusion proof < 1 ms at 1,000,000 leaves.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from statistics import mean
from typing import Any

from anfu.bootstrap import build
from anfu.config import Settings
from anfu.crypto.merkle_hash import node_hash
from anfu.db.log_store import SqlLogStore, transparency_log
from anfu.db.migrate import upgrade
from anfu.transparency.model import canonical_json


def _fill_queue(platform: Any, n: int, kind: str) -> None:
    """Untimed set-up: ``n`` queued entries, bulk-inserted."""
    now = platform.clock()
    chunk = 100_000
    for start in range(0, n, chunk):
        rows = []
        for i in range(start, min(n, start + chunk)):
            body = ({"txn_id": f"T{i:09d}", "user_id": f"u{i % 1000}", "merchant_id": "m1",
                     "amount": 100 + i % 5000, "currency": "CNY", "payee_id": "m1",
                     "payee_name": "Bench Shop", "device_signature_sha256": None,
                     "ledger_transfer_ids": [f"T{i:09d}:hold"]} if kind == "payment"
                    else {"method": "POST", "path": f"/v1/merchants/{i}", "status": 201,
                          "operator": "admin"})
            rows.append((kind, canonical_json(body).decode(), now))

        def job(uow: Any, rows: list[tuple[str, str, float]] = rows) -> None:
            cur = uow.conn.connection.driver_connection.cursor()
            cur.executemany("INSERT INTO log_queue (kind, body, created_at) VALUES (?, ?, ?)",
                            rows)

        platform.write_sync(job, )


def _sequence_all(platform: Any) -> tuple[int, float]:
    import asyncio

    tlog = transparency_log(platform)

    async def run() -> int:
        return await tlog.sequence()

    loop = asyncio.new_event_loop()
    t0 = time.perf_counter()
    done = loop.run_until_complete(run())
    elapsed = time.perf_counter() - t0
    loop.run_until_complete(tlog.sign_if_due(force=True))
    loop.close()
    return done, elapsed


def _ceiling_insert(platform: Any, n: int) -> float:
    """Rows of the same shape (entry text of the same length, random 32-byte hashes, same
    indexes) written with one executemany into a bare table: what SQLite alone costs."""
    import os

    entry = "x" * 170
    rows = [(i, "operator.action", entry, os.urandom(32), 0.0) for i in range(n)]

    def job(uow: Any) -> None:
        cur = uow.conn.connection.driver_connection.cursor()
        cur.execute("CREATE TABLE IF NOT EXISTS bench_ceiling (a INTEGER PRIMARY KEY, b TEXT,"
                    " c TEXT, d BLOB, e REAL)")
        cur.execute("CREATE INDEX IF NOT EXISTS ix_bench_ceiling_d ON bench_ceiling (d)")
        cur.executemany("INSERT INTO bench_ceiling VALUES (?, ?, ?, ?, ?)", rows)

    t0 = time.perf_counter()
    platform.write_sync(job, )
    return n / (time.perf_counter() - t0)


def _enqueue_rate(platform: Any, n: int) -> float:
    body = {"txn_id": "T1", "user_id": "u1", "merchant_id": "m1", "amount": 1234,
            "currency": "CNY", "payee_id": "m1", "payee_name": "Bench Shop",
            "device_signature_sha256": None, "ledger_transfer_ids": ["T1:hold"]}

    def job(uow: Any) -> float:
        store = SqlLogStore(uow.conn)
        t0 = time.perf_counter()
        for _ in range(n):
            store.enqueue("topup", body, uow.now)
        return time.perf_counter() - t0

    return platform.write_sync(job, ) / n


def _timings(fn: Any, args: list[Any]) -> dict[str, float]:
    times = []
    for a in args:
        t0 = time.perf_counter()
        fn(*a)
        times.append(time.perf_counter() - t0)
    times.sort()
    return {"mean_us": mean(times) * 1e6, "p50_us": times[len(times) // 2] * 1e6,
            "p99_us": times[int(len(times) * 0.99)] * 1e6}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leaves", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=50_000)
    parser.add_argument("--receipts", type=int, default=20_000)
    parser.add_argument("--proofs", type=int, default=20_000)
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="anfu-bench-tlog-"))
    settings = Settings(home=home, env="test", log_batch_max=args.batch)
    upgrade(settings.resolved_database_url)
    platform = build(settings)
    try:
        enqueue_s = _enqueue_rate(platform, 20_000)
        platform.write_sync(lambda uow: uow.conn.connection.driver_connection.execute(
            "DELETE FROM log_queue"))
        _fill_queue(platform, args.leaves, "operator.action")
        appended, append_s = _sequence_all(platform)
        assert appended == args.leaves, appended
        ceiling = _ceiling_insert(platform, min(args.leaves, args.batch * 4))

        tlog = transparency_log(platform)
        size = tlog.tree.size
        rng = random.Random(7)
        indices = [(rng.randrange(size), size) for _ in range(args.proofs)]
        inclusion = _timings(tlog.tree.inclusion_proof, indices)
        pairs = []
        for _ in range(args.proofs):
            a = rng.randrange(1, size + 1)
            pairs.append((a, rng.randrange(a, size + 1)))
        consistency = _timings(tlog.tree.consistency_proof, pairs)
        with platform.read_engine.connect() as conn:
            served = _timings(lambda i, _n: tlog.inclusion(conn, i, None),
                              indices[:2000])
        hash_us = _timings(node_hash, [(b"a" * 32, b"b" * 32)] * 20_000)["mean_us"]

        # a cold serving process: the tree rebuilt from the leaf hashes in the database
        from anfu.transparency.merkle import MerkleTree

        tlog.tree = MerkleTree()
        t0 = time.perf_counter()
        with platform.read_engine.connect() as conn:
            tlog.sync(conn, size)
        cold_s = time.perf_counter() - t0

        _fill_queue(platform, args.receipts, "payment")
        with_receipts, receipts_s = _sequence_all(platform)
    finally:
        platform.close()

    figures = {
        "enqueue_us": round(enqueue_s * 1e6, 2),
        "append_leaves_per_s": round(appended / append_s),
        "append_target_leaves_per_s": 100_000,
        "sqlite_insert_ceiling_rows_per_s": round(ceiling),
        "append_vs_ceiling": round(appended / append_s / ceiling, 3),
        "append_with_receipts_leaves_per_s": round(with_receipts / receipts_s),
        "tree_size": size,
        "inclusion_proof_us": {k: round(v, 1) for k, v in inclusion.items()},
        "inclusion_proof_served_us": {k: round(v, 1) for k, v in served.items()},
        "inclusion_target_us": 1000,
        "consistency_proof_us": {k: round(v, 1) for k, v in consistency.items()},
        "node_hash_us": round(hash_us, 2),
        "cold_tree_rebuild_s": round(cold_s, 2),
    }
    rows = [
        ("enqueue (in a write transaction)", f"{figures['enqueue_us']} µs / entry"),
        ("appends via sequencer (SQLite)", f"{figures['append_leaves_per_s']:,} leaves/s"
         f"  (target ≥ 100,000; {figures['append_vs_ceiling']:.0%} of the bare-insert"
         f" ceiling {figures['sqlite_insert_ceiling_rows_per_s']:,} rows/s)"),
        ("appends, all receipts (Ed25519)", f"{figures['append_with_receipts_leaves_per_s']:,}"
         " leaves/s"),
        (f"inclusion proof at {size:,}", f"mean {inclusion['mean_us']:.1f} µs, p99"
         f" {inclusion['p99_us']:.1f} µs (target < 1000 µs)"),
        ("  served (STH read + proof)", f"mean {served['mean_us']:.1f} µs, p99"
         f" {served['p99_us']:.1f} µs"),
        (f"consistency proof at {size:,}", f"mean {consistency['mean_us']:.1f} µs, p99"
         f" {consistency['p99_us']:.1f} µs"),
        ("ceiling: one node hash", f"{hash_us:.2f} µs"),
        ("cold tree rebuild from DB", f"{cold_s:.2f} s"),
    ]
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print("BENCH-JSON " + json.dumps({"bench": "transparency", **figures}))
    ok = (figures["append_leaves_per_s"] >= 100_000 and inclusion["p99_us"] < 1000)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
