"""Crash test (issue 2, section 3): a load of payments and p2p transfers runs while the
platform process is killed with SIGKILL and restarted three times. Requests cut off by a
crash are retried with the same Idempotency-Key. Afterwards the ledger's invariants hold and
every acknowledged request is present exactly once: balances and statements match the
acknowledged answers to the unit, and each key replays its stored answer byte for byte."""

from __future__ import annotations

import itertools
import random
import threading
import time
import uuid
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from anfu.sdk import MerchantClient
from tests.integration import loadgen
from tests.integration.loadgen import Op, Outcome
from tests.support import RunningPlatform, create_merchant, new_customer, start_platform

pytestmark = pytest.mark.slow

KILLS = 3
PAYERS, PAYEES, THREADS, TRADES = 3, 2, 12, 600
FUNDS = 10_000_000
PAID, UNPAID = "WAIT_SELLER_SEND_GOODS", "WAIT_BUYER_PAY"


@dataclass
class Request:
    op: Op
    payer: int
    attempts: int = 0
    cut_off: int = 0  # attempts that ended in a transport error (outcome unknown)
    errors: list[str] = field(default_factory=list)  # their exception types
    answer: Outcome | None = None
    refused: Outcome | None = None  # an unexpected 4xx: final, reported as a failure


@dataclass
class Load:
    """Worker threads sending payments and transfers; cut-off requests are kept and retried
    with the same key until they are answered."""

    platform: RunningPlatform
    payers: list[Any]
    payees: list[Any]
    trades: deque[dict[str, Any]]
    seed: int
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    requests: list[Request] = field(default_factory=list)
    pending: list[Request] = field(default_factory=list)
    bad: list[Outcome] = field(default_factory=list)  # 5xx or unexpected 4xx

    def acknowledged(self) -> int:
        with self.lock:
            return sum(r.answer is not None for r in self.requests)

    def new_request(self, rng: random.Random, payer: int) -> Request:
        key = str(uuid.uuid4())
        if rng.random() < 0.4:
            with self.lock:
                trade = self.trades.popleft() if self.trades else None
            if trade is not None:
                return Request({"kind": "pay", "trade_no": trade["trade_no"],
                                "amount": trade["amount"], "key": key}, payer)
        payee = rng.randrange(len(self.payees))
        return Request({"kind": "p2p", "to_user_id": self.payees[payee].user_id,
                        "amount": rng.randrange(1, 1000), "key": key, "payee": payee}, payer)

    def attempt(self, http: httpx.Client, req: Request) -> bool:
        """One try; True when answered (2xx), False when it must be retried."""
        req.attempts += 1
        try:
            outcome = loadgen.send(http, loadgen.credential(self.payers[req.payer]), req.op)
        except httpx.TransportError as exc:
            req.cut_off += 1
            req.errors.append(type(exc).__name__)
            return False
        if 200 <= outcome["status"] < 300:
            req.answer = outcome
            return True
        with self.lock:
            self.bad.append(outcome)  # reported at the end; a 5xx is retried meanwhile
        if outcome["status"] < 500:
            req.refused = outcome
            return True
        return False

    def worker(self, index: int) -> None:
        rng = random.Random(self.seed * 100 + index)
        payer = index % len(self.payers)
        mine: list[Request] = []
        with httpx.Client(base_url=self.platform.mobile, timeout=5) as http:
            while not self.stop.is_set():
                req = mine.pop(0) if mine else self.new_request(rng, payer)
                if req.attempts == 0:
                    with self.lock:
                        self.requests.append(req)
                if not self.attempt(http, req):
                    mine.append(req)
                    time.sleep(0.05)  # the platform is down: do not spin
                else:
                    time.sleep(0.001)
        with self.lock:
            self.pending.extend(mine)

    def drain(self) -> None:
        """After the last restart: retry every request still unanswered, same key."""
        with httpx.Client(base_url=self.platform.mobile, timeout=10) as http:
            for req in self.pending:
                for _ in range(50):
                    if self.attempt(http, req):
                        break
                    time.sleep(0.1)
        self.pending = [r for r in self.pending if r.answer is None and r.refused is None]


def restart_after_kill(platform: RunningPlatform) -> None:
    platform.process.kill()  # SIGKILL: no shutdown code runs
    platform.process.wait(10)
    platform.restart()


def test_sigkill_under_load_loses_nothing_and_doubles_nothing(tmp_path: Path) -> None:
    seed = random.randrange(10**6)
    rng = random.Random(seed)
    platform = start_platform(tmp_path / "crash")
    try:
        run_crash_test(platform, rng, seed)
    finally:
        platform.stop()


def run_crash_test(platform: RunningPlatform, rng: random.Random, seed: int) -> None:
    m = create_merchant(platform.admin)
    customers = []
    for i in range(PAYERS + PAYEES):
        c = new_customer(platform, amount=FUNDS if i < PAYERS else 0)
        if i < PAYERS:
            c.raise_assurance(3)  # the raw requests below cannot answer a step-up
        customers.append(c)
    payers, payees = customers[:PAYERS], customers[PAYERS:]
    with MerchantClient(platform.merchant, m.merchant_id, m.key_id, m.alg,
                        m.private_key_pem) as mc:
        trades = [mc.create_trade(out_trade_no=f"crash-{i}", amount=rng.randrange(100, 1000),
                                  currency="CNY", subject="crash", mode="escrow")
                  for i in range(TRADES)]

    load = Load(platform, payers, payees, deque(trades), seed)
    threads = [threading.Thread(target=load.worker, args=(i,), daemon=True)
               for i in range(THREADS)]
    for t in threads:
        t.start()
    acked_at_kill, restarts = [], []
    for _ in range(KILLS):
        time.sleep(rng.uniform(0.7, 2.0))
        acked_at_kill.append(load.acknowledged())
        began = time.monotonic()
        restart_after_kill(platform)
        restarts.append(time.monotonic() - began)
    time.sleep(1.0)
    load.stop.set()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads)
    acked_at_kill.append(load.acknowledged())
    load.drain()

    context = f"seed {seed}; log tail:\n{platform.logs()[-3000:]}"
    assert not load.bad, (f"{len(load.bad)} unexpected answers, e.g. {load.bad[:3]}; "
                          f"{context}")
    assert not load.pending, f"{len(load.pending)} requests never answered; {context}"
    # Load was flowing between every two kills, and some requests were cut off by a kill.
    assert all(a < b for a, b in itertools.pairwise(acked_at_kill)), acked_at_kill
    cut = [r for r in load.requests if r.cut_off]
    assert cut, "no request was in flight or refused during the outages"
    stats = Counter((r.op["kind"], r.answer["replayed"]) for r in cut if r.answer)
    kinds = Counter(e for r in cut for e in r.errors)
    print(f"\ncrash test seed {seed}: {len(load.requests)} requests, {len(cut)} retried"
          f" after a transport error {dict(kinds)}; (kind, answered by replay):"
          f" {dict(stats)}; restarts took {[f'{s:.1f}s' for s in restarts]}")

    loadgen.ledger_check(platform.admin)
    check_exactly_once(platform, load)


def check_exactly_once(platform: RunningPlatform, load: Load) -> None:
    answers = [r.answer for r in load.requests]
    assert all(a is not None for a in answers)
    pays = [(r, a) for r, a in zip(load.requests, answers) if r.op["kind"] == "pay"]
    p2ps = [(r, a) for r, a in zip(load.requests, answers) if r.op["kind"] == "p2p"]
    assert pays and p2ps
    with httpx.Client(base_url=platform.mobile, timeout=30) as http:
        for i, payer in enumerate(load.payers):
            sent = [(r, a) for r, a in p2ps if r.payer == i]
            held = sum(r.op["amount"] for r, _ in pays if r.payer == i)
            spent = sum(r.op["amount"] for r, _ in sent)
            assert loadgen.wallet(http, loadgen.credential(payer)) == {
                "balance": FUNDS - spent, "pending_out": held,
                "available": FUNDS - spent - held}, f"payer {i}"
            # Every acknowledged transfer is in the statement once, and nothing else is.
            debits = sorted((e["reference"], e["amount"])
                            for e in loadgen.statement(http, loadgen.credential(payer))
                            if e["amount"] < 0)
            assert debits == sorted((a["body"]["transfer_no"], -r.op["amount"])
                                    for r, a in sent), f"payer {i}"
        for j, payee in enumerate(load.payees):
            got = sum(r.op["amount"] for r, _ in p2ps if r.op["payee"] == j)
            assert loadgen.wallet(http, loadgen.credential(payee))["balance"] == got
        cred = loadgen.credential(load.payers[0])
        paid_by = {r.op["trade_no"]: load.payers[r.payer].user_id for r, _ in pays}
        for r, a in pays:
            assert (a["body"]["status"], a["body"]["buyer_id"]) == (PAID, paid_by[
                r.op["trade_no"]])
        for trade in list(load.trades):
            seen = loadgen.get_json(http, cred, f"/v1/trades/{trade['trade_no']}")
            assert seen["status"] == UNPAID, seen
        payer_of = {r.op["trade_no"]: load.payers[r.payer] for r, _ in pays}
        for trade_no, buyer in paid_by.items():  # each buyer reads its own trade
            seen = loadgen.get_json(http, loadgen.credential(payer_of[trade_no]),
                                    f"/v1/trades/{trade_no}")
            assert (seen["status"], seen["buyer_id"]) == (PAID, buyer), seen

    # Every key replays its first answer, byte for byte, and moves nothing more.
    def replay(chunk: list[Request]) -> list[str]:
        wrong = []
        with httpx.Client(base_url=platform.mobile, timeout=30) as http:
            for r in chunk:
                again = loadgen.send(http, loadgen.credential(load.payers[r.payer]), r.op)
                first = r.answer
                assert first is not None
                if (again["status"], again["raw"], again["replayed"]) != (
                        first["status"], first["raw"], True):
                    wrong.append(f"{r.op} -> {again['status']} replayed={again['replayed']}"
                                 f" {again['raw'][:200]!r} (first: {first['raw'][:200]!r})")
        return wrong

    with ThreadPoolExecutor(THREADS) as pool:
        wrong = [w for ws in pool.map(replay, loadgen.chunks(load.requests, THREADS))
                 for w in ws]
    assert not wrong, f"{len(wrong)} keys did not replay their answer: {wrong[:3]}"
    loadgen.ledger_check(platform.admin)
    with httpx.Client(base_url=platform.mobile, timeout=30) as http:
        for i, payer in enumerate(load.payers):
            spent = sum(r.op["amount"] for r, _ in p2ps if r.payer == i)
            assert loadgen.wallet(http, loadgen.credential(payer))["balance"] == FUNDS - spent
