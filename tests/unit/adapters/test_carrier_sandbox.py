"""The sandbox operator for SIM-based login: network tokens, SIM changes, signed replies."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest

from anfu import crypto, errors
from anfu.adapters.carrier import (
    CarrierAdapter,
    CarrierReplyInvalid,
    CarrierUnavailable,
    CarrierVerdict,
    NetworkTokenRefused,
    SandboxCarrier,
    SimChangeReply,
)
from tests.clock import Clock as BaseClock

PHONE = "+8613800138000"
OTHER = "+8613900139000"


class Clock(BaseClock):
    """Also the carrier's sleep: time passes without waiting."""

    def __init__(self, now: float = 1_750_000_000.0) -> None:
        super().__init__(now)
        self.slept = 0.0

    async def sleep(self, seconds: float) -> None:
        # Latency moves the fake clock instead of the test's wall time.
        self.now += seconds
        self.slept += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def carrier(clock: Clock) -> SandboxCarrier:
    return SandboxCarrier(latency_ms=30, token_ttl_s=120, seed=11, clock=clock,
                          sleep=clock.sleep)


def verify(carrier: SandboxCarrier, token: str, phone: str = PHONE) -> CarrierVerdict:
    return asyncio.run(carrier.verify_network_token(token=token, phone=phone))


def refusal(carrier: SandboxCarrier, token: str, phone: str = PHONE) -> NetworkTokenRefused:
    with pytest.raises(NetworkTokenRefused) as caught:
        verify(carrier, token, phone)
    assert isinstance(caught.value, errors.AuthenticationFailed)
    assert caught.value.extra == {}  # the verdict never travels in an HTTP problem body
    return caught.value


def test_a_token_proves_its_own_number(carrier: SandboxCarrier, clock: Clock) -> None:
    token = carrier.issue_token(PHONE)
    verdict = verify(carrier, token)
    assert verdict.matched and verdict.status == "match" and verdict.phone == PHONE
    assert token not in repr(verdict)  # replies name the token by its digest only
    assert verdict.alg == "ed25519"
    assert 0.015 <= clock.slept <= 0.045  # latency went through the injected sleep
    carrier.public_key.verify(verdict.signature, verdict.signed_bytes())


def test_a_token_of_another_number_is_refused(carrier: SandboxCarrier) -> None:
    token = carrier.issue_token(OTHER)
    refused = refusal(carrier, token, PHONE)
    assert refused.code == "network_token_wrong_phone"
    assert refused.verdict.status == "mismatch" and refused.verdict.phone == PHONE


def test_a_token_is_spent_by_its_first_presentation(carrier: SandboxCarrier) -> None:
    token = carrier.issue_token(PHONE)
    verify(carrier, token)
    assert refusal(carrier, token).code == "network_token_used"
    # Even a wrong guess spends it, so one token cannot probe several numbers.
    probe = carrier.issue_token(PHONE)
    assert refusal(carrier, probe, OTHER).code == "network_token_wrong_phone"
    assert refusal(carrier, probe, PHONE).code == "network_token_used"


def test_a_token_expires(carrier: SandboxCarrier, clock: Clock) -> None:
    fresh = carrier.issue_token(PHONE)
    stale = carrier.issue_token(PHONE)
    clock.now += 120  # the token lives 120 s
    assert refusal(carrier, stale).code == "network_token_expired"
    clock.now -= 1.1  # back to just inside the fresh token's life (calls take ~0.03 s)
    assert verify(carrier, fresh).matched


def test_old_tokens_are_forgotten_and_unknown_tokens_refused(carrier: SandboxCarrier,
                                                             clock: Clock) -> None:
    old = carrier.issue_token(PHONE)
    clock.now += 121
    assert refusal(carrier, old).code == "network_token_expired"
    clock.now += 240
    carrier.issue_token(OTHER)  # issuing sweeps tokens more than one lifetime past expiry
    assert refusal(carrier, old).code == "network_token_unknown"
    assert refusal(carrier, "sbxnt_made_up").code == "network_token_unknown"


@pytest.mark.parametrize(("token", "phone", "code"), [
    ("", PHONE, "network_token_malformed"),
    ("x" * 2049, PHONE, "network_token_malformed"),
    ("sbxnt_x", "not a phone", "invalid_phone"),
])
def test_malformed_requests(carrier: SandboxCarrier, token: str, phone: str,
                            code: str) -> None:
    with pytest.raises(errors.InvalidRequest) as caught:
        verify(carrier, token, phone)
    assert caught.value.code == code


def test_outages(clock: Clock) -> None:
    down = SandboxCarrier(latency_ms=0, failure_rate=1.0, seed=1, clock=clock)
    token = down.issue_token(PHONE)
    with pytest.raises(CarrierUnavailable) as caught:
        verify(down, token)
    assert isinstance(caught.value, errors.UpstreamFailed)
    assert caught.value.code == "carrier_unavailable"
    with pytest.raises(CarrierUnavailable):
        asyncio.run(down.last_sim_change(PHONE))


def test_sim_change_reporting(carrier: SandboxCarrier) -> None:
    assert asyncio.run(carrier.last_sim_change(PHONE)) is None
    swapped = datetime(2025, 6, 1, 8, 30, tzinfo=timezone(timedelta(hours=8)))
    carrier.set_sim_changed(PHONE, swapped)
    reported = asyncio.run(carrier.last_sim_change(PHONE))
    assert reported == swapped and reported is not None and reported.tzinfo == UTC
    assert asyncio.run(carrier.last_sim_change(OTHER)) is None
    carrier.set_sim_changed(PHONE, None)
    assert asyncio.run(carrier.last_sim_change(PHONE)) is None
    with pytest.raises(ValueError):
        carrier.set_sim_changed(PHONE, datetime(2025, 6, 1))  # naive: which zone?


class Relay(CarrierAdapter):
    """What the platform sees when something sits between it and an operator: it trusts
    ``trusted`` and receives ``operator``'s replies, altered on the way."""

    def __init__(self, operator: SandboxCarrier, trusted: crypto.PublicKey, *,
                 verdict: Callable[[CarrierVerdict], CarrierVerdict] = lambda v: v,
                 sim: Callable[[SimChangeReply], SimChangeReply] = lambda r: r) -> None:
        super().__init__(trusted)
        self.operator, self.alter_verdict, self.alter_sim = operator, verdict, sim

    async def _verify_token(self, *, token: str, phone: str, nonce: str) -> CarrierVerdict:
        reply = await self.operator._verify_token(token=token, phone=phone, nonce=nonce)
        return self.alter_verdict(reply)

    async def _sim_change(self, *, phone: str, nonce: str) -> SimChangeReply:
        return self.alter_sim(await self.operator._sim_change(phone=phone, nonce=nonce))


def relay_verify(relay: Relay, token: str, phone: str = PHONE) -> CarrierVerdict:
    return asyncio.run(relay.verify_network_token(token=token, phone=phone))


def test_an_honest_relay_is_believed(carrier: SandboxCarrier) -> None:
    relay = Relay(carrier, carrier.public_key)
    assert relay_verify(relay, carrier.issue_token(PHONE)).matched


@pytest.mark.parametrize("alter", [
    lambda v: replace(v, status="match"),                  # a refusal turned into a match
    lambda v: replace(v, signature=bytes(64)),
    lambda v: replace(v, signature=v.signature[:-1]),
    lambda v: replace(v, checked_at=v.checked_at + timedelta(seconds=1)),
    lambda v: replace(v, alg="ecdsa-p256-sha256"),
])
def test_tampered_verdicts_are_refused(
        carrier: SandboxCarrier, alter: Callable[[CarrierVerdict], CarrierVerdict]) -> None:
    relay = Relay(carrier, carrier.public_key, verdict=alter)
    with pytest.raises(CarrierReplyInvalid) as caught:
        relay_verify(relay, carrier.issue_token(OTHER), PHONE)
    assert caught.value.code == "carrier_reply_invalid"
    assert isinstance(caught.value, CarrierUnavailable)


def test_a_verdict_for_another_request_is_refused(carrier: SandboxCarrier) -> None:
    # Each reply below is correctly signed by the trusted operator, but answers another
    # call, another token, or another number.
    captured: list[CarrierVerdict] = []

    def record(verdict: CarrierVerdict) -> CarrierVerdict:
        captured.append(verdict)
        return verdict

    recorder = Relay(carrier, carrier.public_key, verdict=record)
    relay_verify(recorder, carrier.issue_token(PHONE))
    earlier = captured[0]
    replay = Relay(carrier, carrier.public_key, verdict=lambda v: earlier)
    with pytest.raises(CarrierReplyInvalid):
        relay_verify(replay, carrier.issue_token(PHONE))

    class OtherQuestion(Relay):
        async def _verify_token(self, *, token: str, phone: str,
                                nonce: str) -> CarrierVerdict:
            spare = self.operator.issue_token(OTHER)
            return await self.operator._verify_token(token=spare, phone=OTHER, nonce=nonce)

    with pytest.raises(CarrierReplyInvalid):
        relay_verify(OtherQuestion(carrier, carrier.public_key), carrier.issue_token(PHONE))


def test_a_reply_signed_by_another_key_is_refused(carrier: SandboxCarrier,
                                                  clock: Clock) -> None:
    impostor = SandboxCarrier(latency_ms=0, seed=3, clock=clock)
    relay = Relay(impostor, carrier.public_key)
    with pytest.raises(CarrierReplyInvalid) as caught:
        relay_verify(relay, impostor.issue_token(PHONE))
    assert "trusts" in caught.value.detail
    # Claiming the trusted key's id does not help: the signature does not verify.
    trusted_id = carrier.public_key.fingerprint()[:16]
    disguised = Relay(impostor, carrier.public_key,
                      verdict=lambda v: replace(v, key_id=trusted_id))
    with pytest.raises(CarrierReplyInvalid) as caught:
        relay_verify(disguised, impostor.issue_token(PHONE))
    assert "did not verify" in caught.value.detail


@pytest.mark.parametrize("alter", [
    lambda r: replace(r, changed_at=None),
    lambda r: replace(r, changed_at=datetime(2020, 1, 1, tzinfo=UTC)),
    lambda r: replace(r, phone=OTHER),
    lambda r: replace(r, nonce="replayed"),
])
def test_tampered_sim_change_replies_are_refused(
        carrier: SandboxCarrier, alter: Callable[[SimChangeReply], SimChangeReply]) -> None:
    carrier.set_sim_changed(PHONE, datetime(2025, 6, 1, tzinfo=UTC))
    assert asyncio.run(Relay(carrier, carrier.public_key).last_sim_change(PHONE)) is not None
    with pytest.raises(CarrierReplyInvalid):
        asyncio.run(Relay(carrier, carrier.public_key, sim=alter).last_sim_change(PHONE))
