"""Ledger rules and invariants, through the real writer on a real database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anfu.db.ledger_store import balances_of
from anfu.errors import Conflict, InsufficientFunds, InvalidState
from anfu.ledger import service as ledger
from anfu.ledger.model import AccountRef
from tests.dbharness import Harness, open_harness


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = open_harness(tmp_path)
    yield harness
    harness.close()


BANK = AccountRef.clearing("sandbox", "CNY")


def wallet(name: str) -> AccountRef:
    return AccountRef.wallet(name, "CNY")


def fund(h: Harness, who: str, amount: int, tid: str | None = None) -> None:
    h.write(lambda uow: ledger.transfer(uow.ledger, transfer_id=tid or f"fund-{who}-{amount}",
                                        debit=BANK, credit=wallet(who), amount=amount,
                                        now=uow.now))


def posted(h: Harness, who: str) -> tuple[int, int]:
    rows = h.read(lambda c: balances_of(c, "customer", who, "wallet"))
    return (rows[0].posted, rows[0].available) if rows else (0, 0)


def test_transfer_moves_money_and_repeat_is_idempotent(h: Harness) -> None:
    fund(h, "alice", 1000)
    move = lambda uow: ledger.transfer(uow.ledger, transfer_id="t1", debit=wallet("alice"),  # noqa: E731
                                       credit=wallet("bob"), amount=300, now=uow.now)
    first = h.write(move)
    again = h.write(move)
    assert first == again
    assert posted(h, "alice") == (700, 700)
    assert posted(h, "bob") == (300, 300)
    assert h.invariants().ok


def test_same_id_other_transfer_is_conflict_and_changes_nothing(h: Harness) -> None:
    fund(h, "alice", 1000)
    h.write(lambda uow: ledger.transfer(uow.ledger, transfer_id="t1", debit=wallet("alice"),
                                        credit=wallet("bob"), amount=300, now=uow.now))
    with pytest.raises(Conflict) as info:
        h.write(lambda uow: ledger.transfer(uow.ledger, transfer_id="t1",
                                            debit=wallet("alice"), credit=wallet("bob"),
                                            amount=301, now=uow.now))
    assert info.value.code == "transfer_id_reused"
    assert posted(h, "alice") == (700, 700)


def test_overdraft_refused(h: Harness) -> None:
    fund(h, "alice", 100)
    with pytest.raises(InsufficientFunds):
        h.write(lambda uow: ledger.transfer(uow.ledger, transfer_id="t1",
                                            debit=wallet("alice"), credit=wallet("bob"),
                                            amount=101, now=uow.now))
    assert posted(h, "alice") == (100, 100)
    assert h.invariants().ok


def test_hold_reserves_then_post_partial_releases_rest(h: Harness) -> None:
    fund(h, "alice", 1000)
    h.write(lambda uow: ledger.transfer(uow.ledger, transfer_id="h1", debit=wallet("alice"),
                                        credit=AccountRef.escrow("CNY"), amount=600,
                                        now=uow.now, pending=True))
    assert posted(h, "alice") == (1000, 400)
    with pytest.raises(InsufficientFunds):
        h.write(lambda uow: ledger.transfer(uow.ledger, transfer_id="t2",
                                            debit=wallet("alice"), credit=wallet("bob"),
                                            amount=401, now=uow.now))
    h.write(lambda uow: ledger.post_pending(uow.ledger, transfer_id="p1", pending_id="h1",
                                            amount=250, now=uow.now))
    assert posted(h, "alice") == (750, 750)
    with pytest.raises(InvalidState):
        h.write(lambda uow: ledger.void_pending(uow.ledger, transfer_id="v1",
                                                pending_id="h1", now=uow.now))
    assert h.invariants().ok


def test_void_and_expiry_release_holds(h: Harness) -> None:
    fund(h, "alice", 1000)
    for tid, timeout in (("h1", None), ("h2", h.clock() + 60)):
        h.write(lambda uow, tid=tid, timeout=timeout: ledger.transfer(
            uow.ledger, transfer_id=tid, debit=wallet("alice"), credit=AccountRef.escrow("CNY"),
            amount=100, now=uow.now, pending=True, timeout_at=timeout))
    h.write(lambda uow: ledger.void_pending(uow.ledger, transfer_id="v1", pending_id="h1",
                                            now=uow.now))
    assert posted(h, "alice") == (1000, 900)
    assert h.write(lambda uow: ledger.expire_due_holds(uow.ledger, now=uow.now)) == 0
    h.clock.advance(61)
    assert h.write(lambda uow: ledger.expire_due_holds(uow.ledger, now=uow.now)) == 1
    assert h.write(lambda uow: ledger.expire_due_holds(uow.ledger, now=uow.now)) == 0
    assert posted(h, "alice") == (1000, 1000)
    assert h.invariants().ok


def test_reversal_corrects_without_editing_history(h: Harness) -> None:
    fund(h, "alice", 1000)
    h.write(lambda uow: ledger.transfer(uow.ledger, transfer_id="t1", debit=wallet("alice"),
                                        credit=wallet("bob"), amount=300, now=uow.now))
    h.write(lambda uow: ledger.reverse(uow.ledger, transfer_id="r1", original_id="t1",
                                       now=uow.now))
    h.write(lambda uow: ledger.reverse(uow.ledger, transfer_id="r1", original_id="t1",
                                       now=uow.now))
    assert posted(h, "alice") == (1000, 1000)
    assert posted(h, "bob") == (0, 0)
    assert h.invariants().transfers == 3


ops = st.lists(st.tuples(
    st.sampled_from(["transfer", "hold", "post", "void"]),
    st.sampled_from(["a", "b", "c"]), st.sampled_from(["a", "b", "c"]),
    st.integers(min_value=1, max_value=500), st.integers(min_value=0, max_value=20)),
    min_size=1, max_size=40)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=ops)
def test_property_invariants_hold_after_any_sequence(tmp_path_factory: pytest.TempPathFactory,
                                                     ops: list[tuple[str, str, str, int, int]]
                                                     ) -> None:
    h = open_harness(tmp_path_factory.mktemp("prop"))
    try:
        for who in "abc":
            fund(h, who, 1000)
        futures = []
        for n, (op, src, dst, amount, ref) in enumerate(ops):
            def job(uow, op=op, src=src, dst=dst, amount=amount, ref=ref, n=n):  # type: ignore[no-untyped-def]
                if op == "transfer":
                    return ledger.transfer(uow.ledger, transfer_id=f"t{n}", debit=wallet(src),
                                           credit=wallet(dst), amount=amount, now=uow.now)
                if op == "hold":
                    return ledger.transfer(uow.ledger, transfer_id=f"h{ref}",
                                           debit=wallet(src), credit=AccountRef.escrow("CNY"),
                                           amount=amount, now=uow.now, pending=True)
                resolve = ledger.post_pending if op == "post" else ledger.void_pending
                return resolve(uow.ledger, transfer_id=f"r{ref}", pending_id=f"h{ref}",
                               now=uow.now)
            futures.append(h.submit(job))  # submitted together: they share group commits
        for f in futures:
            try:
                f.result(30)
            except Exception as exc:  # refused operations must change nothing
                assert getattr(exc, "code", None) is not None, exc
        report = h.invariants()
        assert report.ok, report.violations
        for who in "abc":
            balance, available = posted(h, who)
            assert 0 <= available <= balance
    finally:
        h.close()


def test_refused_transfer_to_a_new_account_leaves_no_stale_account_id(h: Harness) -> None:
    fund(h, "alice", 100)
    with pytest.raises(InsufficientFunds):
        h.write(lambda uow: ledger.transfer(uow.ledger, transfer_id="t1",
                                            debit=wallet("alice"), credit=wallet("newbie"),
                                            amount=1000, now=uow.now))
    fund(h, "carol", 500)  # the next account the database creates
    h.write(lambda uow: ledger.transfer(uow.ledger, transfer_id="t2", debit=wallet("alice"),
                                        credit=wallet("newbie"), amount=50, now=uow.now))
    assert posted(h, "newbie") == (50, 50)
    assert posted(h, "carol") == (500, 500)
    assert h.invariants().ok


def test_batch_applies_in_order_each_on_its_own(h: Harness) -> None:
    from anfu.ledger.batch import TransferRequest, create_transfers

    fund(h, "alice", 1000)
    requests = [
        TransferRequest("b1", wallet("alice"), wallet("bob"), 600),
        TransferRequest("b2", wallet("alice"), wallet("bob"), 600),   # would overdraw now
        TransferRequest("b3", wallet("alice"), AccountRef.escrow("CNY"), 300, pending=True),
        TransferRequest("b4", wallet("alice"), wallet("bob"), 200),   # 100 left after hold
        TransferRequest("b1", wallet("alice"), wallet("bob"), 600),   # repeat of b1: same
        TransferRequest("b1", wallet("alice"), wallet("bob"), 601),   # reuse of b1: refused
        TransferRequest("b5", wallet("alice"), wallet("alice"), 1),
        TransferRequest("b6", wallet("alice"), AccountRef.wallet("bob", "USD"), 1),
        TransferRequest("b7", wallet("alice"), wallet("carol"), 100),
    ]
    results = h.write(lambda uow: create_transfers(uow.ledger, requests=requests,
                                                   now=uow.now))
    assert [r.code for r in results] == [None, "insufficient_funds", None,
                                         "insufficient_funds", None, "transfer_id_reused",
                                         "same_account", "currency_mismatch", None]
    assert posted(h, "alice") == (300, 0)
    assert posted(h, "bob") == (600, 600)
    assert posted(h, "carol") == (100, 100)
    again = h.write(lambda uow: create_transfers(uow.ledger, requests=requests[:1],
                                                 now=uow.now))
    assert again[0].ok and posted(h, "bob") == (600, 600)
    report = h.invariants()
    assert report.ok, report.violations
