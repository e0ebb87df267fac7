"""The sandbox SMS gateway and operator with a shared state file: what one instance (or one
worker process) does, every other instance on the same file sees."""

from __future__ import annotations

import asyncio
import multiprocessing
import stat
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from anfu import errors
from anfu.adapters.carrier import NetworkTokenRefused, SandboxCarrier
from anfu.adapters.carrier import sandbox as carrier_sandbox
from anfu.adapters.sms import SandboxSmsGateway, SmsReceipt
from anfu.adapters.sms import sandbox as sms_sandbox
from tests.clock import Clock

PHONE = "+8613800138000"
OTHER = "+8613900139001"


@pytest.fixture
def clock() -> Clock:
    return Clock()


def send(gw: SandboxSmsGateway, message_id: str, phone: str = PHONE,
         text: str = "anfu code 123456") -> SmsReceipt:
    return asyncio.run(gw.send(message_id=message_id, phone=phone, text=text))


def gateway(path: Path, clock: Clock, **options: int) -> SandboxSmsGateway:
    return SandboxSmsGateway(latency_ms=1000, clock=clock, state_path=path, **options)


def carrier(path: Path, clock: Clock, seed: int | None = None) -> SandboxCarrier:
    async def no_wait(seconds: float) -> None:
        return None

    return SandboxCarrier(latency_ms=0, seed=seed, clock=clock, sleep=no_wait,
                          state_path=path)


def verdict_status(operator: SandboxCarrier, token: str, phone: str = PHONE) -> str:
    try:
        return asyncio.run(operator.verify_network_token(token=token, phone=phone)).status
    except NetworkTokenRefused as refused:
        return refused.verdict.status


def test_default_state_paths_live_under_the_platform_home(tmp_path: Path) -> None:
    assert sms_sandbox.default_state_path(tmp_path) == tmp_path / "sandbox" / "sms.sqlite"
    assert (carrier_sandbox.default_state_path(tmp_path)
            == tmp_path / "sandbox" / "carrier.sqlite")


def test_the_state_file_is_created_on_first_use_readable_only_by_its_owner(
        tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "home" / "sandbox" / "sms.sqlite"
    gw = gateway(path, clock)
    assert gw.state_path == path and not path.exists()
    send(gw, "m1")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_two_gateways_on_one_file_share_the_outbox_and_receipts(tmp_path: Path,
                                                                clock: Clock) -> None:
    path = tmp_path / "sms.sqlite"
    worker, operator = gateway(path, clock, seed=1), gateway(path, clock, seed=1)
    first = send(worker, "m1", text="anfu code 111111")
    send(operator, "m2", phone=OTHER, text="anfu code 222222")
    assert [(m.message_id, m.text) for m in operator.outbox()] == [
        ("m2", "anfu code 222222"), ("m1", "anfu code 111111")]
    assert [m.message_id for m in worker.outbox(OTHER)] == ["m2"]
    clock.now += 2
    for gw in (worker, operator):
        settled = asyncio.run(gw.receipt("m1"))
        assert (settled.status, settled.gateway_reference) == ("delivered",
                                                              first.gateway_reference)


def test_a_message_id_is_one_message_across_gateways(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "sms.sqlite"
    one, two = gateway(path, clock, seed=1), gateway(path, clock, seed=2)
    first = send(one, "m1")
    assert send(two, "m1").gateway_reference == first.gateway_reference
    with pytest.raises(errors.Conflict):
        send(two, "m1", text="anfu code 999999")
    assert len(one.outbox()) == 1


def test_receipts_outlive_the_gateway_that_queued_them(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "sms.sqlite"
    queued = send(gateway(path, clock, seed=3), "m1")
    clock.now += 2
    restarted = gateway(path, clock, seed=4)
    settled = asyncio.run(restarted.receipt("m1"))
    assert settled.status == "delivered"
    assert (settled.gateway_reference, settled.queued_at) == (queued.gateway_reference,
                                                             queued.queued_at)
    assert queued.queued_at < settled.updated_at


def test_retention_applies_to_the_shared_outbox(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "sms.sqlite"
    one, two = gateway(path, clock, retention=3), gateway(path, clock, retention=3)
    for i in range(5):
        send(one if i % 2 else two, f"m{i}")
    assert [m.message_id for m in one.outbox()] == ["m4", "m3", "m2"]
    with pytest.raises(errors.NotFound):
        asyncio.run(two.receipt("m0"))


def test_concurrent_gateways_queue_each_message_once(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "sms.sqlite"
    gateways = [gateway(path, clock, seed=w) for w in range(4)]
    failures: list[BaseException] = []

    def sender(gw: SandboxSmsGateway) -> None:
        try:
            for i in range(15):
                send(gw, f"shared-{i}")
        except BaseException as exc:  # reported by the assertion below
            failures.append(exc)

    threads = [threading.Thread(target=sender, args=(gw,)) for gw in gateways]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    ids = [m.message_id for m in gateways[0].outbox(limit=100)]
    assert sorted(ids) == sorted(f"shared-{i}" for i in range(15))


def test_two_operators_on_one_file_sign_with_one_key(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "carrier.sqlite"
    first, second = carrier(path, clock), carrier(path, clock)
    assert first.public_key == second.public_key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    verdict = asyncio.run(second.verify_network_token(token=first.issue_token(PHONE),
                                                      phone=PHONE))
    first.public_key.verify(verdict.signature, verdict.signed_bytes())
    assert carrier(tmp_path / "other.sqlite", clock).public_key != first.public_key


def test_a_token_is_spent_once_across_operators(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "carrier.sqlite"
    issuer, verifier = carrier(path, clock), carrier(path, clock)
    token = issuer.issue_token(PHONE)
    assert verdict_status(verifier, token) == "match"
    assert verdict_status(issuer, token) == "used"
    assert verdict_status(verifier, token) == "used"
    probe = verifier.issue_token(PHONE)
    assert verdict_status(issuer, probe, OTHER) == "mismatch"
    assert verdict_status(verifier, probe) == "used"


def test_operators_with_one_seed_issue_distinct_tokens(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "carrier.sqlite"
    one, two = carrier(path, clock, seed=11), carrier(path, clock, seed=11)
    tokens = [op.issue_token(PHONE) for _ in range(5) for op in (one, two)]
    assert len(set(tokens)) == len(tokens)
    # A seed still replays: a fresh file with the same seed hands out the same tokens.
    again = carrier(tmp_path / "again.sqlite", clock, seed=11)
    assert [again.issue_token(PHONE) for _ in range(3)] == tokens[:3]


def test_token_expiry_and_forgetting_are_shared(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "carrier.sqlite"
    issuer, verifier = carrier(path, clock), carrier(path, clock)
    stale, old = issuer.issue_token(PHONE), issuer.issue_token(PHONE)
    clock.now += 121
    assert verdict_status(verifier, stale) == "expired"
    clock.now += 240
    verifier.issue_token(OTHER)  # sweeps tokens more than one lifetime past expiry
    assert verdict_status(issuer, old) == "unknown"


def test_sim_changes_are_shared(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "carrier.sqlite"
    writer, reader = carrier(path, clock), carrier(path, clock)
    swapped = datetime(2025, 6, 1, 8, 30, 0, 123456, tzinfo=UTC)
    writer.set_sim_changed(PHONE, swapped)
    assert asyncio.run(reader.last_sim_change(PHONE)) == swapped
    writer.set_sim_changed(PHONE, None)
    assert asyncio.run(reader.last_sim_change(PHONE)) is None


def _spend_all(path: str, tokens: list[str], results: multiprocessing.Queue[int]) -> None:
    operator = SandboxCarrier(latency_ms=0, state_path=Path(path))
    matches = 0
    for token in tokens:
        try:
            asyncio.run(operator.verify_network_token(token=token, phone=PHONE))
            matches += 1
        except NetworkTokenRefused:
            pass
    results.put(matches)


def test_worker_processes_spend_each_token_once(tmp_path: Path) -> None:
    path = tmp_path / "carrier.sqlite"
    tokens = [SandboxCarrier(state_path=path).issue_token(PHONE) for _ in range(20)]
    # fork starts a worker in milliseconds, spawn re-imports anfu in each (seconds); the
    # parent holds no connection to the file, so forking is safe here.
    context = (multiprocessing.get_context("fork")
               if "fork" in multiprocessing.get_all_start_methods()
               else multiprocessing.get_context("spawn"))
    results: multiprocessing.Queue[int] = context.Queue()
    workers = [context.Process(target=_spend_all, args=(str(path), tokens, results))
               for _ in range(3)]
    for w in workers:
        w.start()
    counts = [results.get(timeout=60) for _ in workers]
    for w in workers:
        w.join(timeout=60)
    assert sum(counts) == len(tokens)
