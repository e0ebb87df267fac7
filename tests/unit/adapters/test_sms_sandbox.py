"""The sandbox SMS gateway: idempotency, outbox, delivery receipts, refusals, threads."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime

import pytest

from anfu import errors
from anfu.adapters.sms import (
    MAX_SEGMENTS,
    SandboxSmsGateway,
    SmsReceipt,
    SmsRejected,
    SmsUnavailable,
    sms_length,
)
from tests.clock import Clock

PHONE = "+8613800138000"  # ends in 8000: delivered unless failure_rate says otherwise
OTHER = "+8613900139001"
FAILING = "+8613700130000"  # ends in 0000: always fails




@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def gateway(clock: Clock) -> SandboxSmsGateway:
    return SandboxSmsGateway(latency_ms=1000, seed=7, clock=clock)


def send(gw: SandboxSmsGateway, message_id: str, phone: str = PHONE,
         text: str = "anfu code 123456") -> SmsReceipt:
    return asyncio.run(gw.send(message_id=message_id, phone=phone, text=text))


def receipt(gw: SandboxSmsGateway, message_id: str) -> SmsReceipt:
    return asyncio.run(gw.receipt(message_id))


def test_send_queues_and_the_receipt_is_delivered_after_the_latency(
        gateway: SandboxSmsGateway, clock: Clock) -> None:
    first = send(gateway, "m1")
    assert (first.status, first.segments, first.reason) == ("queued", 1, "")
    assert first.queued_at == datetime.fromtimestamp(clock.now, tz=UTC)
    assert not first.final
    clock.now += 0.49  # each message settles between 0.5 and 1.5 times the latency
    assert receipt(gateway, "m1").status == "queued"
    clock.now += 1.1
    done = receipt(gateway, "m1")
    assert done.status == "delivered" and done.final
    assert first.queued_at < done.updated_at <= datetime.fromtimestamp(clock.now, tz=UTC)
    assert done.gateway_reference == first.gateway_reference


def test_same_message_id_is_one_message(gateway: SandboxSmsGateway, clock: Clock) -> None:
    first = send(gateway, "m1")
    clock.now += 5
    again = send(gateway, "m1")
    assert again.gateway_reference == first.gateway_reference
    assert again.status == "delivered"  # the current receipt, not a new message
    assert len(gateway.outbox()) == 1


def test_same_message_id_with_other_content_is_a_conflict(gateway: SandboxSmsGateway) -> None:
    send(gateway, "m1")
    with pytest.raises(errors.Conflict) as caught:
        send(gateway, "m1", text="anfu code 654321")
    assert caught.value.code == "sms_message_id_reused"
    with pytest.raises(errors.Conflict):
        send(gateway, "m1", phone=OTHER)
    assert len(gateway.outbox()) == 1


def test_outbox_is_newest_first_filtered_and_limited(gateway: SandboxSmsGateway,
                                                    clock: Clock) -> None:
    for i in range(5):
        send(gateway, f"m{i}", phone=PHONE if i % 2 == 0 else OTHER, text=f"text {i}")
        clock.now += 1
    everything = gateway.outbox()
    assert [m.message_id for m in everything] == ["m4", "m3", "m2", "m1", "m0"]
    assert [m.text for m in everything] == [f"text {i}" for i in (4, 3, 2, 1, 0)]
    assert [m.sent_at for m in everything] == sorted((m.sent_at for m in everything),
                                                      reverse=True)
    assert [m.message_id for m in gateway.outbox(PHONE)] == ["m4", "m2", "m0"]
    assert [m.message_id for m in gateway.outbox(OTHER, limit=1)] == ["m3"]
    assert gateway.outbox("+8610000000") == []
    assert {m.status for m in everything} == {"queued", "delivered"}
    with pytest.raises(errors.InvalidRequest):
        gateway.outbox(limit=0)


def test_outbox_repr_hides_the_text(gateway: SandboxSmsGateway) -> None:
    send(gateway, "m1", text="anfu code 987654")
    message = gateway.outbox()[0]
    assert message.text == "anfu code 987654"
    assert "987654" not in repr(message)


def test_numbers_ending_in_0000_always_fail(clock: Clock) -> None:
    gateway = SandboxSmsGateway(latency_ms=200, failure_rate=0.0, seed=1, clock=clock)
    assert send(gateway, "m1", phone=FAILING).status == "queued"
    clock.now += 1
    failed = receipt(gateway, "m1")
    assert failed.status == "failed" and "0000" in failed.reason
    assert gateway.outbox(FAILING)[0].status == "failed"


def test_failure_rate_fails_that_share_of_messages(clock: Clock) -> None:
    never = SandboxSmsGateway(latency_ms=0, failure_rate=0.0, seed=3, clock=clock)
    always = SandboxSmsGateway(latency_ms=0, failure_rate=1.0, seed=3, clock=clock)
    some = SandboxSmsGateway(latency_ms=0, failure_rate=0.3, seed=3, clock=clock)
    for i in range(200):
        for gw in (never, always, some):
            send(gw, f"m{i}")
    assert {m.status for m in never.outbox(limit=200)} == {"delivered"}
    assert {m.status for m in always.outbox(limit=200)} == {"failed"}
    failed = sum(m.status == "failed" for m in some.outbox(limit=200))
    assert 30 < failed < 90


def test_same_seed_same_story() -> None:
    def run() -> list[tuple[str, str, datetime]]:
        clock = Clock()
        gw = SandboxSmsGateway(latency_ms=1000, failure_rate=0.5, seed=42, clock=clock)
        for i in range(20):
            send(gw, f"m{i}")
        clock.now += 10
        return [(r.gateway_reference, r.status, r.updated_at)
                for r in (receipt(gw, f"m{i}") for i in range(20))]

    assert run() == run()


def test_outage_loses_the_answer_but_a_retry_sends_once(clock: Clock) -> None:
    gateway = SandboxSmsGateway(latency_ms=0, outage_rate=1.0, seed=5, clock=clock)
    queued_anyway = 0
    for i in range(40):
        with pytest.raises(SmsUnavailable) as caught:
            send(gateway, f"m{i}")
        assert caught.value.code == "sms_unavailable"
        assert isinstance(caught.value, errors.UpstreamFailed)
        if any(m.message_id == f"m{i}" for m in gateway.outbox(limit=100)):
            queued_anyway += 1
            # The retry finds the queued message instead of sending it again.
            assert send(gateway, f"m{i}").status == "delivered"
    assert 0 < queued_anyway < 40
    assert len(gateway.outbox(limit=100)) == queued_anyway


def test_unknown_message_receipt_is_not_found(gateway: SandboxSmsGateway) -> None:
    with pytest.raises(errors.NotFound):
        receipt(gateway, "never-sent")


def test_receipt_states_only_move_forward(gateway: SandboxSmsGateway, clock: Clock) -> None:
    queued = send(gateway, "m1")
    at = datetime.fromtimestamp(clock.now + 1, tz=UTC)
    delivered = queued.settle("delivered", at=at)
    assert delivered.status == "delivered" and delivered.updated_at == at
    for target in ("queued", "failed", "delivered"):
        with pytest.raises(errors.InvalidState):
            delivered.settle(target, at=at)
    with pytest.raises(errors.InvalidState):
        queued.settle("queued", at=at)
    assert queued.settle("failed", at=at, reason="no signal").reason == "no signal"


@pytest.mark.parametrize(("text", "encoding", "segments"), [
    ("a" * 160, "GSM-7", 1),
    ("a" * 161, "GSM-7", 2),
    ("€" * 80, "GSM-7", 1),               # extension characters cost two septets
    ("a" * 152 + "€" + "a" * 10, "GSM-7", 2),
    ("a" * 153 * 5, "GSM-7", 5),
    ("a" * (153 * 5 + 1), "GSM-7", 6),
    ("付" * 70, "UCS-2", 1),
    ("付" * 71, "UCS-2", 2),
    ("付" * 67 * 5, "UCS-2", 5),
    ("a" * 69 + "😀", "UCS-2", 2),         # one emoji is a surrogate pair: 71 units
    ("", "GSM-7", 0),
])
def test_sms_length(text: str, encoding: str, segments: int) -> None:
    length = sms_length(text)
    assert (length.encoding, length.segments) == (encoding, segments)


@pytest.mark.parametrize("text", ["a" * (153 * MAX_SEGMENTS + 1),
                                  "付" * (67 * MAX_SEGMENTS + 1),
                                  "pay ¥23.00 " + "付" * 330])
def test_over_long_texts_are_refused(gateway: SandboxSmsGateway, text: str) -> None:
    with pytest.raises(SmsRejected) as caught:
        send(gateway, "long", text=text)
    assert caught.value.code == "sms_text_too_long"
    assert gateway.outbox() == []


def test_longest_allowed_texts_are_sent(gateway: SandboxSmsGateway) -> None:
    assert send(gateway, "g", text="a" * 153 * MAX_SEGMENTS).segments == MAX_SEGMENTS
    assert send(gateway, "u", text="付" * 67 * MAX_SEGMENTS).segments == MAX_SEGMENTS


@pytest.mark.parametrize(("message_id", "phone", "text", "code"), [
    ("m1", "12345", "hi", "sms_phone_invalid"),
    ("m1", "+86 138 0013 8000", "hi", "sms_phone_invalid"),
    ("m1", PHONE, "", "sms_text_empty"),
    ("", PHONE, "hi", "sms_message_id_invalid"),
    ("x" * 129, PHONE, "hi", "sms_message_id_invalid"),
])
def test_malformed_messages_are_refused(gateway: SandboxSmsGateway, message_id: str,
                                        phone: str, text: str, code: str) -> None:
    with pytest.raises(SmsRejected) as caught:
        send(gateway, message_id, phone=phone, text=text)
    assert caught.value.code == code


def test_retention_forgets_the_oldest(clock: Clock) -> None:
    gateway = SandboxSmsGateway(latency_ms=0, seed=1, clock=clock, retention=3)
    for i in range(5):
        send(gateway, f"m{i}")
    assert [m.message_id for m in gateway.outbox()] == ["m4", "m3", "m2"]
    with pytest.raises(errors.NotFound):
        receipt(gateway, "m0")


def test_concurrent_senders_and_readers(clock: Clock) -> None:
    gateway = SandboxSmsGateway(latency_ms=0, seed=9, clock=clock)
    errors_seen: list[BaseException] = []

    def sender(worker: int) -> None:
        try:
            for i in range(50):
                # Every worker also sends the shared ids: each must exist once.
                send(gateway, f"w{worker}-{i}")
                send(gateway, f"shared-{i}")
                gateway.outbox(limit=10)
        except BaseException as exc:  # reported by the assertion below
            errors_seen.append(exc)

    threads = [threading.Thread(target=sender, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors_seen == []
    ids = [m.message_id for m in gateway.outbox(limit=10_000)]
    assert len(ids) == len(set(ids)) == 8 * 50 + 50
