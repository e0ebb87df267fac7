"""Concurrency: many threads and processes spend from one wallet through the real mobile zone.

Invariants proved here (issue 2, section 3): no overdraft, no lost update, every success
answered 200/201 and every refusal ``insufficient_funds``; one trade is paid once however many
requests race for it; one Idempotency-Key moves money once however many copies race; and the
ledger's invariants hold afterwards (admin ``/v1/ledger/check``)."""

from __future__ import annotations

import multiprocessing
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from anfu.sdk import MerchantClient
from tests.integration import loadgen
from tests.integration.loadgen import Op, Outcome
from tests.support import MerchantIdentity, RunningPlatform

pytestmark = pytest.mark.slow

PAID = "WAIT_SELLER_SEND_GOODS"
UNPAID = "WAIT_BUYER_PAY"


def strong(customer: Any) -> Any:
    """Raise the customer's session to level 3 now, so the raw requests below (which cannot
    answer a step-up) pass the first-time-payee rule for the next five minutes."""
    customer.raise_assurance(3)
    return customer


def merchant_client(platform: RunningPlatform, m: MerchantIdentity) -> MerchantClient:
    return MerchantClient(platform.merchant, m.merchant_id, m.key_id, m.alg, m.private_key_pem)


def create_trades(platform: RunningPlatform, m: MerchantIdentity,
                  amounts: list[int]) -> list[dict[str, Any]]:
    with merchant_client(platform, m) as client:
        return [client.create_trade(out_trade_no=f"conc-{uuid.uuid4().hex[:20]}",
                                    amount=amount, currency="CNY", subject="race",
                                    mode="escrow") for amount in amounts]


def mixed_ops(platform: RunningPlatform, m: MerchantIdentity, payee_id: str, n: int,
              seed: int) -> list[Op]:
    """``n`` operations, half payments of distinct trades and half p2p transfers, shuffled."""
    rng = random.Random(seed)
    amounts = [rng.randrange(100, 220) for _ in range(n)]
    trades = create_trades(platform, m, amounts[: n // 2])
    ops: list[Op] = [{"kind": "pay", "trade_no": t["trade_no"], "amount": t["amount"],
                      "key": None if i % 2 else str(uuid.uuid4())}
                     for i, t in enumerate(trades)]
    ops += [{"kind": "p2p", "to_user_id": payee_id, "amount": a, "key": str(uuid.uuid4())}
            for a in amounts[n // 2:]]
    rng.shuffle(ops)
    return ops


def summary(outcomes: list[Outcome]) -> Counter[tuple[str, int, str | None]]:
    return Counter((o["kind"], o["status"], o["code"]) for o in outcomes)


def check_one_wallet_race(platform: RunningPlatform, payer: Any, payee: Any, initial: int,
                          outcomes: list[Outcome]) -> None:
    """The exact accounting of a race of payments and transfers out of one wallet."""
    ok_pay = [o for o in outcomes if o["kind"] == "pay" and o["status"] == 200]
    ok_p2p = [o for o in outcomes if o["kind"] == "p2p" and o["status"] == 201]
    refused = [o for o in outcomes if o["status"] == 402 and o["code"] == "insufficient_funds"]
    unexpected = [o for o in outcomes if o not in ok_pay and o not in ok_p2p
                  and o not in refused]
    assert not unexpected, (f"answers other than 200/201/402 insufficient_funds:"
                            f" {summary(unexpected)}; first: {unexpected[0]['body']}")
    # The load was sized to exceed the balance: both outcomes must have happened.
    assert ok_pay and ok_p2p and refused, summary(outcomes)

    for o in ok_pay:
        t = o["body"]
        assert (t["trade_no"], t["status"], t["buyer_id"], t["amount"]) == (
            o["trade_no"], PAID, payer.user_id, o["amount"]), t
        assert not o["replayed"]
    for o in ok_p2p:
        t = o["body"]
        assert (t["to_user_id"], t["from_user_id"], t["amount"], t["status"]) == (
            payee.user_id, payer.user_id, o["amount"], "SUCCESS"), t
        assert not o["replayed"]
    transfer_nos = [o["body"]["transfer_no"] for o in ok_p2p]
    assert len(set(transfer_nos)) == len(transfer_nos)

    spent_p2p, held = loadgen.total(ok_p2p), loadgen.total(ok_pay)
    with httpx.Client(base_url=platform.mobile, timeout=30) as http:
        w = loadgen.wallet(http, loadgen.credential(payer))
        # No lost update and no overdraft: the balance is exactly what the successes say.
        assert w == {"balance": initial - spent_p2p, "pending_out": held,
                     "available": initial - spent_p2p - held}, (w, initial, spent_p2p, held)
        assert w["available"] >= 0
        # Balances only went down, so every refusal was justified at its time and still is.
        assert w["available"] < min(o["amount"] for o in refused), (w, refused)
        assert loadgen.wallet(http, loadgen.credential(payee))["balance"] == spent_p2p

        # Each successful transfer is in the payer's statement exactly once, nothing else is.
        debits = sorted((e["reference"], e["amount"])
                        for e in loadgen.statement(http, loadgen.credential(payer))
                        if e["amount"] < 0)
        assert debits == sorted((o["body"]["transfer_no"], -o["amount"]) for o in ok_p2p)

        cred = loadgen.credential(payer)
        for o in outcomes:
            if o["kind"] != "pay":
                continue
            trade = loadgen.get_json(http, cred, f"/v1/trades/{o['trade_no']}")
            if o["status"] == 200:
                assert (trade["status"], trade["buyer_id"]) == (PAID, payer.user_id), trade
            else:
                assert (trade["status"], trade["buyer_id"]) == (UNPAID, None), trade
    loadgen.ledger_check(platform.admin)


def test_threads_spend_from_one_wallet_without_overdraft(
        platform_urls: RunningPlatform, make_merchant: Callable[..., MerchantIdentity],
        funded_customer: Callable[..., Any]) -> None:
    initial, threads, per_thread = 20_000, 16, 16
    payer, payee = strong(funded_customer(initial)), funded_customer(0)
    ops = mixed_ops(platform_urls, make_merchant(), payee.user_id, threads * per_thread, 1)
    assert loadgen.total(ops) > 1.5 * initial  # far more than the wallet holds

    outcomes = loadgen.run_threads(platform_urls.mobile, loadgen.credential(payer),
                                   loadgen.chunks(ops, threads))
    assert len(outcomes) == len(ops)
    check_one_wallet_race(platform_urls, payer, payee, initial, outcomes)


def test_processes_spend_from_one_wallet_without_overdraft(
        platform_urls: RunningPlatform, make_merchant: Callable[..., MerchantIdentity],
        funded_customer: Callable[..., Any]) -> None:
    initial, processes, threads, per_thread = 12_000, 4, 4, 10
    payer, payee = strong(funded_customer(initial)), funded_customer(0)
    ops = mixed_ops(platform_urls, make_merchant(), payee.user_id,
                    processes * threads * per_thread, 2)
    assert loadgen.total(ops) > 1.5 * initial

    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    start_at = time.time() + 4.0  # every process has imported httpx and connected by then
    procs = [ctx.Process(target=loadgen.process_main,
                         args=(platform_urls.mobile, loadgen.credential(payer),
                               loadgen.chunks(share, threads), start_at, results))
             for share in loadgen.chunks(ops, processes)]
    for p in procs:
        p.start()
    outcomes: list[Outcome] = []
    try:
        for _ in procs:
            status, value = results.get(timeout=90)
            assert status == "ok", value
            outcomes.extend(value)
    finally:
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
    assert all(p.exitcode == 0 for p in procs)
    assert len(outcomes) == len(ops)
    check_one_wallet_race(platform_urls, payer, payee, initial, outcomes)


@pytest.mark.parametrize("keyed", [False, True], ids=["no-key", "distinct-keys"])
def test_one_buyer_racing_to_pay_one_trade_pays_once(
        platform_urls: RunningPlatform, make_merchant: Callable[..., MerchantIdentity],
        funded_customer: Callable[..., Any], keyed: bool) -> None:
    buyer = strong(funded_customer(10_000))
    trade = create_trades(platform_urls, make_merchant(), [3_000])[0]
    ops = [{"kind": "pay", "trade_no": trade["trade_no"], "amount": 3_000,
            "key": str(uuid.uuid4()) if keyed else None} for _ in range(16)]
    outcomes = loadgen.run_threads(platform_urls.mobile, loadgen.credential(buyer),
                                   loadgen.chunks(ops, 16))

    for o in outcomes:
        if o["status"] == 200:  # the trade, paid by this buyer
            assert (o["body"]["trade_no"], o["body"]["status"], o["body"]["buyer_id"]) == (
                trade["trade_no"], PAID, buyer.user_id), o["body"]
        else:  # a clear refusal, never a second payment or a 5xx
            assert o["status"] == 409 and o["code"], (o["status"], o["body"])
    assert any(o["status"] == 200 for o in outcomes)
    with httpx.Client(base_url=platform_urls.mobile, timeout=30) as http:
        assert loadgen.wallet(http, loadgen.credential(buyer)) == {
            "balance": 10_000, "pending_out": 3_000, "available": 7_000}
    loadgen.ledger_check(platform_urls.admin)


def test_many_buyers_racing_for_one_trade_exactly_one_pays(
        platform_urls: RunningPlatform, make_merchant: Callable[..., MerchantIdentity],
        funded_customer: Callable[..., Any]) -> None:
    buyers = [strong(funded_customer(5_000)) for _ in range(8)]
    trade = create_trades(platform_urls, make_merchant(), [3_000])[0]
    ops = [{"kind": "pay", "trade_no": trade["trade_no"], "amount": 3_000, "key": None,
            "cred": loadgen.credential(b), "buyer": b.user_id} for b in buyers
           for _ in range(2)]
    random.Random(3).shuffle(ops)
    outcomes = loadgen.run_threads(platform_urls.mobile, {}, loadgen.chunks(ops, len(ops)))

    winners = {o["buyer"] for o in outcomes if o["status"] == 200}
    assert len(winners) == 1, summary(outcomes)
    (winner,) = winners
    for o in outcomes:
        if o["buyer"] == winner:
            assert o["status"] == 200 and o["body"]["buyer_id"] == winner, o["body"]
        else:
            assert (o["status"], o["code"]) == (409, "trade_not_payable"), o["body"]
    with httpx.Client(base_url=platform_urls.mobile, timeout=30) as http:
        for b in buyers:
            held = 3_000 if b.user_id == winner else 0
            assert loadgen.wallet(http, loadgen.credential(b)) == {
                "balance": 5_000, "pending_out": held, "available": 5_000 - held}
        winning = next(b for b in buyers if b.user_id == winner)  # a buyer sees its own
        seen = loadgen.get_json(http, loadgen.credential(winning),
                                f"/v1/trades/{trade['trade_no']}")
    assert (seen["status"], seen["buyer_id"]) == (PAID, winner)
    loadgen.ledger_check(platform_urls.admin)


@pytest.mark.parametrize("kind", ["p2p", "pay"])
def test_one_idempotency_key_sent_concurrently_moves_money_once(
        platform_urls: RunningPlatform, make_merchant: Callable[..., MerchantIdentity],
        funded_customer: Callable[..., Any], kind: str) -> None:
    payer, payee = strong(funded_customer(10_000)), strong(funded_customer(0))
    key = str(uuid.uuid4())
    if kind == "pay":
        trade = create_trades(platform_urls, make_merchant(), [1_234])[0]
        op: Op = {"kind": "pay", "trade_no": trade["trade_no"], "amount": 1_234, "key": key}
    else:
        op = {"kind": "p2p", "to_user_id": payee.user_id, "amount": 1_234, "key": key}
    outcomes = loadgen.run_threads(platform_urls.mobile, loadgen.credential(payer),
                                   [[op] for _ in range(16)])

    expected = 200 if kind == "pay" else 201
    assert [o["status"] for o in outcomes] == [expected] * 16, summary(outcomes)
    # One answer, stored once and replayed byte for byte to every other copy.
    assert len({o["raw"] for o in outcomes}) == 1
    assert sum(not o["replayed"] for o in outcomes) == 1
    with httpx.Client(base_url=platform_urls.mobile, timeout=30) as http:
        w = loadgen.wallet(http, loadgen.credential(payer))
        if kind == "pay":
            assert w == {"balance": 10_000, "pending_out": 1_234, "available": 8_766}
        else:
            assert w == {"balance": 8_766, "pending_out": 0, "available": 8_766}
            assert loadgen.wallet(http, loadgen.credential(payee))["balance"] == 1_234
    loadgen.ledger_check(platform_urls.admin)


def test_one_idempotency_key_racing_over_different_trades_pays_one(
        platform_urls: RunningPlatform, make_merchant: Callable[..., MerchantIdentity],
        funded_customer: Callable[..., Any]) -> None:
    """The same key with different requests: exactly one runs, the others are 409."""
    payer = strong(funded_customer(10_000))
    trades = create_trades(platform_urls, make_merchant(), [500] * 12)
    key = str(uuid.uuid4())
    ops = [{"kind": "pay", "trade_no": t["trade_no"], "amount": 500, "key": key}
           for t in trades]
    outcomes = loadgen.run_threads(platform_urls.mobile, loadgen.credential(payer),
                                   [[o] for o in ops])

    paid = [o for o in outcomes if o["status"] == 200]
    assert len(paid) == 1, summary(outcomes)
    assert all((o["status"], o["code"]) == (409, "idempotency_key_reused")
               for o in outcomes if o is not paid[0]), summary(outcomes)
    with httpx.Client(base_url=platform_urls.mobile, timeout=30) as http:
        assert loadgen.wallet(http, loadgen.credential(payer)) == {
            "balance": 10_000, "pending_out": 500, "available": 9_500}
    loadgen.ledger_check(platform_urls.admin)


def test_refused_transfer_to_a_new_payee_does_not_misdirect_later_transfers(
        platform_urls: RunningPlatform, funded_customer: Callable[..., Any]) -> None:
    payer, payee = strong(funded_customer(100)), funded_customer(0)  # payee: no wallet yet
    with httpx.Client(base_url=platform_urls.mobile, timeout=30) as http:
        def transfer(amount: int) -> Outcome:
            return loadgen.send(http, loadgen.credential(payer), {
                "kind": "p2p", "to_user_id": payee.user_id, "amount": amount,
                "key": str(uuid.uuid4())})

        assert transfer(1_000)["code"] == "insufficient_funds"
        bystander = strong(funded_customer(500))  # the next account the platform creates
        assert transfer(50)["status"] == 201
        assert loadgen.wallet(http, loadgen.credential(payee))["balance"] == 50
        assert loadgen.wallet(http, loadgen.credential(bystander))["balance"] == 500
        assert loadgen.wallet(http, loadgen.credential(payer))["balance"] == 50
    loadgen.ledger_check(platform_urls.admin)
