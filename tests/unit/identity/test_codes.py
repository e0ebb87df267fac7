"""SMS verification codes: issue, verify, expiry, tries, single use, send limits, messages."""

from __future__ import annotations

import itertools
import re
from dataclasses import fields
from typing import Any

import pytest

from anfu.errors import AuthenticationFailed, InvalidRequest
from anfu.identity.codes import (
    ADDRESS_SEND_LIMITS,
    CODE_DIGITS,
    CODE_TTL_S,
    MAX_ATTEMPTS,
    PHONE_SEND_LIMITS,
    InMemoryCodeStore,
    IssuedCode,
    Purpose,
    SendLimited,
    SmsCodeRejected,
    SmsCodes,
    clean_payee,
    format_amount,
)
from anfu.money import Money
from tests.clock import Clock

PHONE = "13800138000"
ADDRESS = "198.51.100.7"
KEY = b"k" * 32
FARE = Money(2300, "CNY")
SHOP = "BEST TRANSPORT"




class Digits:
    """Injected randomness: 123456, 123457, … so messages are predictable."""

    def __init__(self) -> None:
        self._next = itertools.count(123456)

    def __call__(self, upper: int) -> int:
        return next(self._next) % upper


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store() -> InMemoryCodeStore:
    return InMemoryCodeStore()


@pytest.fixture
def codes(store: InMemoryCodeStore) -> SmsCodes:
    ids = (f"smc_{i}" for i in itertools.count(1))
    return SmsCodes(store, key=KEY, randbelow=Digits(), new_id=lambda: next(ids))


def pay(codes: SmsCodes, clock: Clock, **kw: Any) -> IssuedCode:
    args: dict[str, Any] = {"phone": PHONE, "purpose": Purpose.PAY, "client_address": ADDRESS,
                            "amount": FARE, "payee": SHOP, **kw}
    return codes.issue(now=clock.now, **args)


def verify_pay(codes: SmsCodes, issued: IssuedCode, code: str, now: float,
               **kw: Any) -> Any:
    args: dict[str, Any] = {"phone": PHONE, "purpose": "pay", "amount": FARE, "payee": SHOP,
                            **kw}
    return codes.verify(challenge_id=issued.challenge_id, code=code, now=now, **args)


def test_constants() -> None:
    assert (CODE_DIGITS, CODE_TTL_S, MAX_ATTEMPTS) == (6, 300, 5)
    assert [(limit.count, limit.per_s) for limit in PHONE_SEND_LIMITS] == [
        (1, 60), (5, 3600), (10, 86400)]
    assert all(a.count >= p.count for a, p in zip(ADDRESS_SEND_LIMITS, PHONE_SEND_LIMITS,
                                                   strict=True))


def test_payment_message_names_amount_and_payee(codes: SmsCodes, clock: Clock) -> None:
    issued = pay(codes, clock)
    assert issued.code == "123456"
    assert issued.message == (
        "anfu: 123456 is your code to pay ¥23.00 to BEST TRANSPORT. Never share it.")
    assert issued.challenge_id == "smc_1" and issued.challenge_id not in issued.message
    assert issued.expires_at == clock.now + 300
    assert "http" not in issued.message and issued.code not in repr(issued)


@pytest.mark.parametrize(("purpose", "text"), [
    (Purpose.LOGIN, "anfu: 123456 is your code to sign in. Never share it."),
    (Purpose.RESET_PASSWORD, "anfu: 123456 is your code to reset your password. Never share it."),
    ("new_device", "anfu: 123456 is your code to sign in on a new device. Never share it."),
])
def test_other_purposes(codes: SmsCodes, clock: Clock, purpose: str, text: str) -> None:
    issued = codes.issue(phone=PHONE, purpose=purpose, client_address=ADDRESS, now=clock.now)
    assert issued.message == text
    assert issued.challenge.purpose == Purpose(purpose)


def test_transfer_and_withdraw_messages(codes: SmsCodes, clock: Clock) -> None:
    issued = codes.issue(phone=PHONE, purpose="transfer", client_address=ADDRESS,
                         now=clock.now, amount=Money(123456, "CNY"), payee="王小明")
    assert issued.message == (
        "anfu: 123456 is your code to transfer ¥1,234.56 to 王小明. Never share it.")
    issued = codes.issue(phone="13900139000", purpose="withdraw", client_address=ADDRESS,
                         now=clock.now, amount=Money(500, "USD"), payee="ICBC ****1234")
    assert "to withdraw US$5.00 to ICBC ****1234." in issued.message


def test_amounts() -> None:
    assert format_amount(Money(2300, "CNY")) == "¥23.00"
    assert format_amount(Money(100_000_000, "CNY")) == "¥1,000,000.00"
    assert format_amount(Money(1000, "JPY")) == "1,000 JPY"
    assert format_amount(Money(1234, "KWD")) == "1.234 KWD"
    assert format_amount(Money(-5, "EUR")) == "-€0.05"


def test_payee_is_cleaned_for_the_message() -> None:
    assert clean_payee("  BEST\tTRANSPORT \n") == "BEST TRANSPORT"
    # A right-to-left override would let a payee name reorder what the person reads.
    assert clean_payee("SHOP\u202eLIAM\u202c") == "SHOPLIAM"
    long = clean_payee("X" * 100)
    assert len(long) == 32 and long.endswith("…")
    with pytest.raises(InvalidRequest):
        clean_payee("\u200b\n")


def test_only_a_keyed_hash_is_stored(codes: SmsCodes, clock: Clock,
                                     store: InMemoryCodeStore) -> None:
    issued = pay(codes, clock)
    stored = store.challenges[issued.challenge_id]
    assert re.fullmatch(r"[0-9a-f]{64}", stored.code_hash)
    for f in fields(stored):
        assert issued.code not in str(getattr(stored, f.name))
    assert (stored.amount_minor, stored.currency, stored.payee) == (2300, "CNY", SHOP)
    # The same code issued under another key hashes differently.
    other = SmsCodes(InMemoryCodeStore(), key=b"j" * 32, randbelow=Digits())
    assert pay(other, clock).challenge.code_hash != stored.code_hash


def test_right_code_is_accepted_once(codes: SmsCodes, clock: Clock) -> None:
    issued = pay(codes, clock)
    used = verify_pay(codes, issued, "123 456", clock.advance(10))
    assert used.used_at == clock.now and used.attempts == 1
    with pytest.raises(SmsCodeRejected) as info:
        verify_pay(codes, issued, "123456", clock.advance(1))
    assert info.value.code == "sms_code_expired"
    assert isinstance(info.value, AuthenticationFailed)


def test_code_lives_five_minutes(codes: SmsCodes, clock: Clock) -> None:
    start = clock.now
    first = pay(codes, clock)
    clock.advance(60)
    second = pay(codes, clock)
    verify_pay(codes, first, "123456", start + 299.9)
    with pytest.raises(SmsCodeRejected) as info:
        verify_pay(codes, second, "123457", second.expires_at)
    assert info.value.code == "sms_code_expired"


def test_at_most_five_tries(codes: SmsCodes, clock: Clock) -> None:
    issued = pay(codes, clock)
    for left in (4, 3, 2, 1, 0):
        with pytest.raises(SmsCodeRejected) as info:
            verify_pay(codes, issued, "000000", clock.advance(1))
        assert info.value.code == "sms_code_invalid"
        assert info.value.extra["tries_left"] == left
    assert "request a new one" in info.value.detail
    with pytest.raises(SmsCodeRejected) as info:
        verify_pay(codes, issued, "123456", clock.advance(1))
    assert info.value.code == "sms_code_exhausted"


def test_fifth_try_may_still_be_right(codes: SmsCodes, clock: Clock) -> None:
    issued = pay(codes, clock)
    for _ in range(4):
        with pytest.raises(SmsCodeRejected):
            verify_pay(codes, issued, "654321", clock.advance(1))
    assert verify_pay(codes, issued, "123456", clock.advance(1)).attempts == 5


@pytest.mark.parametrize("change", [
    {"amount": Money(230000, "CNY")},
    {"amount": Money(2300, "USD")},
    {"payee": "WORST TRANSPORT"},
    {"phone": "13900139000"},
    {"purpose": "transfer"},
])
def test_code_only_approves_what_it_was_sent_for(codes: SmsCodes, clock: Clock,
                                                 change: dict[str, Any]) -> None:
    issued = pay(codes, clock)
    with pytest.raises(SmsCodeRejected) as info:
        verify_pay(codes, issued, "123456", clock.advance(1), **change)
    assert info.value.code == "sms_code_invalid"
    verify_pay(codes, issued, "123456", clock.advance(1))  # still usable for its own payment


def test_unknown_challenge(codes: SmsCodes, clock: Clock) -> None:
    with pytest.raises(SmsCodeRejected) as info:
        codes.verify(challenge_id="smc_nope", code="123456", phone=PHONE, purpose="login",
                     now=clock.now)
    assert info.value.code == "sms_code_expired"


def test_phone_send_limits(codes: SmsCodes, clock: Clock) -> None:
    start = clock.now
    codes.issue(phone=PHONE, purpose="login", client_address=ADDRESS, now=clock.now)
    with pytest.raises(SendLimited) as info:
        codes.issue(phone=PHONE, purpose="login", client_address="192.0.2.1",
                    now=clock.advance(59))
    assert info.value.code == "sms_send_limited" and info.value.extra["retry_after_s"] == 1
    for minute in range(1, 5):  # 1 a minute, 5 an hour
        clock.now = start + 60 * minute
        codes.issue(phone=PHONE, purpose="login", client_address=ADDRESS, now=clock.now)
    with pytest.raises(SendLimited) as info:
        codes.issue(phone=PHONE, purpose="login", client_address=ADDRESS,
                    now=clock.advance(60))
    assert info.value.extra["retry_after_s"] == 3600 - 300
    clock.now = start + 3600
    for _ in range(5):  # 10 a day
        codes.issue(phone=PHONE, purpose="login", client_address=ADDRESS, now=clock.now)
        clock.advance(60)
    clock.now = start + 2 * 3600
    with pytest.raises(SendLimited) as info:
        codes.issue(phone=PHONE, purpose="login", client_address=ADDRESS, now=clock.now)
    assert info.value.extra["retry_after_s"] == 86400 - 2 * 3600
    clock.now = start + 86400
    codes.issue(phone=PHONE, purpose="login", client_address=ADDRESS, now=clock.now)
    # Another phone was never limited by this one.
    codes.issue(phone="13900139000", purpose="login", client_address="192.0.2.1",
                now=clock.now)


def test_address_send_limits(codes: SmsCodes, clock: Clock) -> None:
    phones = (f"1390013{i:04d}" for i in itertools.count())
    for _ in range(5):
        codes.issue(phone=next(phones), purpose="register", client_address=ADDRESS,
                    now=clock.now)
    with pytest.raises(SendLimited):
        codes.issue(phone=next(phones), purpose="register", client_address=ADDRESS,
                    now=clock.advance(1))
    codes.issue(phone=next(phones), purpose="register", client_address="192.0.2.1",
                now=clock.now)


def test_ipv6_clients_share_their_64(codes: SmsCodes, clock: Clock) -> None:
    for i in range(5):
        codes.issue(phone=f"1390013{i:04d}", purpose="register",
                    client_address=f"2001:db8:7:7::{i + 1}", now=clock.now)
    with pytest.raises(SendLimited):
        codes.issue(phone="13900139999", purpose="register",
                    client_address="2001:db8:7:7:abcd::1", now=clock.now)


def test_a_refused_send_is_not_counted(codes: SmsCodes, clock: Clock) -> None:
    codes.issue(phone=PHONE, purpose="login", client_address=ADDRESS, now=clock.now)
    for _ in range(10):
        with pytest.raises(SendLimited):
            codes.issue(phone=PHONE, purpose="login", client_address=ADDRESS,
                        now=clock.advance(5))
    clock.advance(11)
    codes.issue(phone=PHONE, purpose="login", client_address=ADDRESS, now=clock.now)


@pytest.mark.parametrize("kw", [
    {"purpose": "pay"},
    {"purpose": "pay", "amount": FARE},
    {"purpose": "pay", "payee": SHOP},
    {"purpose": "pay", "amount": Money(0, "CNY"), "payee": SHOP},
    {"purpose": "login", "amount": FARE},
    {"purpose": "login", "payee": SHOP},
    {"purpose": "format_disk"},
    {"purpose": "login", "phone": "call me"},
])
def test_bad_requests(codes: SmsCodes, clock: Clock, kw: dict[str, Any]) -> None:
    args: dict[str, Any] = {"phone": PHONE, "client_address": ADDRESS, **kw}
    with pytest.raises(InvalidRequest):
        codes.issue(now=clock.now, **args)


def test_store_guards_concurrent_use(store: InMemoryCodeStore, codes: SmsCodes,
                                     clock: Clock) -> None:
    issued = pay(codes, clock)
    assert store.take_attempt(issued.challenge_id, 2) == 1
    assert store.take_attempt(issued.challenge_id, 2) == 2
    assert store.take_attempt(issued.challenge_id, 2) is None
    assert store.consume(issued.challenge_id, clock.now) is True
    assert store.consume(issued.challenge_id, clock.now) is False
    assert store.take_attempt("missing", 5) is None and store.consume("missing", 0) is False
    with pytest.raises(ValueError):
        store.insert_challenge(issued.challenge)
    assert "code_hash" not in repr(issued.challenge) and "KEY" not in repr(codes)
