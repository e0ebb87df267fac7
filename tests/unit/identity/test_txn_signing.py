"""Transaction signing rules: the exact signed bytes, challenge life, policy modes."""

from __future__ import annotations

import pytest

from anfu.errors import AuthenticationFailed, Forbidden, InvalidRequest
from anfu.identity.assurance import load_policy
from anfu.identity.txn_signing import (
    MAX_ATTEMPTS,
    SigningMode,
    TxnChallenge,
    TxnFacts,
    TxnOperation,
    TxnSignatureHeader,
    TxnSigningPolicy,
    parse_policy,
)
from anfu.money import Money

FACTS = TxnFacts(TxnOperation.PAYMENT, "T0123", 60000, "CNY", "m42", "Lotus Tea House")


def test_signed_bytes_are_the_documented_lines() -> None:
    assert FACTS.signing_bytes("c" * 43, 1764000000) == (
        b"ANFU-TXN-V1\npayment\nT0123\n60000\nCNY\nm42\nLotus Tea House\n" + b"c" * 43
        + b"\n1764000000\n")


def test_payee_names_are_utf8() -> None:
    facts = TxnFacts(TxnOperation.TRANSFER, "P1", 1, "CNY", "u1", "莲花茶馆")
    assert "莲花茶馆\n".encode() in facts.signing_bytes("x", 1)


@pytest.mark.parametrize("changed", [
    TxnFacts(TxnOperation.PAYMENT, "T0123", 60001, "CNY", "m42", "Lotus Tea House"),
    TxnFacts(TxnOperation.PAYMENT, "T0123", 60000, "USD", "m42", "Lotus Tea House"),
    TxnFacts(TxnOperation.PAYMENT, "T0123", 60000, "CNY", "m43", "Lotus Tea House"),
    TxnFacts(TxnOperation.PAYMENT, "T0123", 60000, "CNY", "m42", "Lotus Tea Hous"),
    TxnFacts(TxnOperation.TRANSFER, "T0123", 60000, "CNY", "m42", "Lotus Tea House"),
    TxnFacts(TxnOperation.PAYMENT, "T0124", 60000, "CNY", "m42", "Lotus Tea House"),
])
def test_any_change_of_the_facts_changes_digest_and_bytes(changed: TxnFacts) -> None:
    assert changed.digest() != FACTS.digest()
    assert changed.signing_bytes("c", 1) != FACTS.signing_bytes("c", 1)
    bound = TxnChallenge("c", "u", "d", 0.0, 300.0, facts_digest=FACTS.digest())
    bound.check_facts(FACTS)
    with pytest.raises(AuthenticationFailed) as err:
        bound.check_facts(changed)
    assert err.value.code == "txn_facts_changed"


def test_line_breaks_cannot_forge_lines() -> None:
    sneaky = TxnFacts(TxnOperation.PAYMENT, "T1", 1, "CNY", "m1", "Shop\n999999")
    with pytest.raises(InvalidRequest):
        sneaky.signing_bytes("c", 1)


def _challenge(**kw: object) -> TxnChallenge:
    base: dict[str, object] = {"challenge": "c", "user_id": "u", "device_id": "d",
                               "issued_at": 1000.0, "expires_at": 1300.0}
    base.update(kw)
    return TxnChallenge(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(("change", "now", "code"), [
    ({"used_at": 1001.0}, 1002.0, "txn_challenge_used"),
    ({"attempts": MAX_ATTEMPTS}, 1002.0, "txn_challenge_locked"),
    ({}, 1300.0, "txn_challenge_expired"),
    ({"device_id": "other"}, 1002.0, "txn_challenge_unknown"),
])
def test_challenge_is_single_use_short_lived_and_limited(change: dict[str, object],
                                                         now: float, code: str) -> None:
    with pytest.raises(AuthenticationFailed) as err:
        _challenge(**change).check_usable(user_id="u", device_id="d", now=now)
    assert err.value.code == code


def test_challenge_usable_within_life() -> None:
    ch = _challenge(attempts=MAX_ATTEMPTS - 1)
    ch.check_usable(user_id="u", device_id="d", now=1299.0)
    assert ch.remaining_attempts() == 1
    ch.check_timestamp(1001, 1002.0)
    with pytest.raises(AuthenticationFailed):
        ch.check_timestamp(800, 1002.0)


def test_header_round_trip_and_malformed() -> None:
    header = TxnSignatureHeader("abc", 17, "c2ln")
    assert TxnSignatureHeader.parse(header.render()) == header
    for bad in ("", "challenge=abc", "challenge=a, timestamp=x, signature=s"):
        with pytest.raises(AuthenticationFailed) as err:
            TxnSignatureHeader.parse(bad)
        assert err.value.code == "txn_signature_malformed"


def test_policy_modes_and_thresholds() -> None:
    cny = Money(500, "CNY")
    certified = TxnSigningPolicy(SigningMode.CERTIFIED, {"default": 0, "CNY": 1000})
    assert not certified.needed(cny, has_certificate=True, bound_device=True)
    assert certified.needed(Money(1001, "CNY"), has_certificate=True, bound_device=True)
    assert not certified.needed(Money(1001, "CNY"), has_certificate=False, bound_device=True)
    assert certified.needed(Money(1, "USD"), has_certificate=True, bound_device=True)
    always = TxnSigningPolicy(SigningMode.ALWAYS, {"default": 0})
    with pytest.raises(Forbidden) as err:
        always.needed(cny, has_certificate=False, bound_device=True)
    assert err.value.code == "certificate_required"
    off = TxnSigningPolicy(SigningMode.OFF)
    assert not off.needed(cny, has_certificate=True, bound_device=True)


def test_policy_table_parses_and_built_in_policy_signs_everything_when_certified() -> None:
    assert parse_policy({"mode": "always", "threshold": 100}).thresholds == {"default": 100}
    with pytest.raises(ValueError):
        parse_policy({"mode": "sometimes"})
    built_in = load_policy().txn_signing
    assert built_in.mode is SigningMode.CERTIFIED and built_in.threshold("JPY") == 0
