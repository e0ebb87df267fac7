"""Keycloak-style brute-force protection, driven by a movable clock."""

from __future__ import annotations

from dataclasses import replace

import pytest

from anfu.errors import AuthenticationFailed
from anfu.identity.throttle import (
    ADDRESS_DEFAULTS,
    KEYCLOAK_DEFAULTS,
    LOCK_EVENT,
    CredentialsRefused,
    InMemoryThrottleStore,
    LockEvent,
    Throttle,
    ThrottlePolicy,
    account_key,
    address_bucket,
    address_key,
)
from tests.clock import Clock

KEY = account_key("password", "u_1")




@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def events() -> list[LockEvent]:
    return []


@pytest.fixture
def throttle(events: list[LockEvent]) -> Throttle:
    return Throttle(InMemoryThrottleStore(), on_lock=events.append)


def fail(throttle: Throttle, clock: Clock, times: int, gap: float = 2.0,
         key: str = KEY) -> None:
    """``times`` failures ``gap`` seconds apart, each after a successful ``check``."""
    for _ in range(times):
        clock.advance(gap)
        throttle.check(key, clock.now)
        throttle.record_failure(key, clock.now)


def test_defaults_are_keycloaks() -> None:
    keycloak = ThrottlePolicy(
        max_failures=30, wait_increment_s=60, max_wait_s=900, failure_reset_s=43200,
        quick_login_check_s=1.0, quick_login_wait_s=60)
    assert keycloak == KEYCLOAK_DEFAULTS


def test_locks_at_the_thirtieth_failure_for_one_wait_increment(
        throttle: Throttle, clock: Clock, events: list[LockEvent]) -> None:
    fail(throttle, clock, 29)
    throttle.check(KEY, clock.now)
    assert events == []
    fail(throttle, clock, 1)
    assert len(events) == 1
    event = events[0]
    assert (event.key, event.failures, event.reason, event.name) == (
        KEY, 30, "too_many_failures", LOCK_EVENT)
    assert event.wait_s == 60 and event.locked_until == clock.now + 60
    with pytest.raises(CredentialsRefused):
        throttle.check(KEY, clock.now + 59.9)
    throttle.check(KEY, clock.now + 60)


def test_waits_grow_by_the_increment_up_to_fifteen_minutes(
        throttle: Throttle, clock: Clock, events: list[LockEvent]) -> None:
    fail(throttle, clock, 29)
    waits = []
    for _ in range(20):
        if events:
            clock.now = events[-1].locked_until  # wait the lock out, then fail again
        fail(throttle, clock, 1, gap=0)
        waits.append(events[-1].wait_s)
    assert waits[:5] == [60, 120, 180, 240, 300]
    assert waits[14] == 900 and set(waits[14:]) == {900}
    assert len(events) == 20  # an event for every lock


def test_quick_failures_lock_for_the_minimum_quick_login_wait(
        throttle: Throttle, clock: Clock, events: list[LockEvent]) -> None:
    throttle.record_failure(KEY, clock.now)
    assert events == []
    throttle.record_failure(KEY, clock.advance(0.5))
    assert [(e.reason, e.wait_s, e.failures) for e in events] == [("quick_failures", 60, 2)]
    with pytest.raises(CredentialsRefused):
        throttle.check(KEY, clock.advance(30))
    throttle.check(KEY, clock.advance(30))
    # One second apart is not "quick".
    throttle.record_failure(KEY, clock.advance(1.0))
    assert len(events) == 1


def test_failures_are_forgotten_after_the_reset_time(
        throttle: Throttle, clock: Clock, events: list[LockEvent]) -> None:
    fail(throttle, clock, 29)
    clock.advance(12 * 3600)  # exactly the reset time: still counted
    throttle.record_failure(KEY, clock.now)
    assert len(events) == 1
    clock.advance(12 * 3600 + 1)  # more than the reset time since the last failure
    throttle.check(KEY, clock.now)
    state = throttle.record_failure(KEY, clock.now)
    assert state.failures == 1 and state.locked_until < clock.now
    assert len(events) == 1


def test_success_clears_the_count(throttle: Throttle, clock: Clock,
                                  events: list[LockEvent]) -> None:
    fail(throttle, clock, 29)
    throttle.record_success(KEY, clock.now)
    fail(throttle, clock, 29)
    assert events == []


def test_locked_and_wrong_give_the_same_answer(throttle: Throttle, clock: Clock) -> None:
    wrong = CredentialsRefused()  # what a caller raises for a wrong secret
    fail(throttle, clock, 30)
    with pytest.raises(CredentialsRefused) as locked:
        throttle.check(KEY, clock.now)
    assert type(locked.value) is type(wrong)
    assert (locked.value.code, locked.value.detail, locked.value.extra) == (
        wrong.code, wrong.detail, wrong.extra)
    assert isinstance(wrong, AuthenticationFailed)
    assert str(int(clock.now + 60)) not in wrong.detail


def test_keys_are_independent(throttle: Throttle, clock: Clock) -> None:
    fail(throttle, clock, 30)
    with pytest.raises(CredentialsRefused):
        throttle.check(KEY, clock.now)
    throttle.check(account_key("password", "u_2"), clock.now)
    throttle.check(account_key("totp", "u_1"), clock.now)
    assert throttle.locked_until(KEY, clock.now) == clock.now + 60
    assert throttle.locked_until(account_key("password", "u_2"), clock.now) is None


def test_unlock_by_an_operator(throttle: Throttle, clock: Clock) -> None:
    fail(throttle, clock, 30)
    throttle.unlock(KEY)
    throttle.check(KEY, clock.now)
    state = throttle.record_failure(KEY, clock.advance(5))
    assert state.failures == 1


def test_per_address_policy_tolerates_shared_addresses(clock: Clock) -> None:
    events: list[LockEvent] = []
    addresses = Throttle(InMemoryThrottleStore(), policy=ADDRESS_DEFAULTS,
                         on_lock=events.append)
    key = address_key("203.0.113.9")
    for _ in range(99):  # two people behind one NAT failing in the same second: no lock
        addresses.record_failure(key, clock.advance(0.2))
    addresses.check(key, clock.now)
    addresses.record_failure(key, clock.advance(0.2))
    assert [(e.reason, e.failures) for e in events] == [("too_many_failures", 100)]
    with pytest.raises(CredentialsRefused):
        addresses.check(key, clock.now)


def test_address_buckets() -> None:
    assert address_bucket("203.0.113.9") == "203.0.113.9"
    assert address_bucket("::ffff:203.0.113.9") == "203.0.113.9"
    a, b = address_bucket("2001:db8:1:2::1"), address_bucket("2001:db8:1:2:ffff::9")
    assert a == b == "2001:db8:1:2::/64"
    assert address_bucket("2001:db8:1:3::1") != a
    assert address_bucket(" Not-An-IP ") == "not-an-ip"
    assert address_key("2001:db8:1:2::7") == "addr:2001:db8:1:2::/64"


def test_policy_is_validated() -> None:
    with pytest.raises(ValueError):
        ThrottlePolicy(max_failures=0)
    with pytest.raises(ValueError):
        replace(KEYCLOAK_DEFAULTS, wait_increment_s=-1)


def test_no_callback_is_fine(clock: Clock) -> None:
    throttle = Throttle(InMemoryThrottleStore(), policy=ThrottlePolicy(max_failures=1))
    throttle.record_failure(KEY, clock.now)
    with pytest.raises(CredentialsRefused):
        throttle.check(KEY, clock.now)
