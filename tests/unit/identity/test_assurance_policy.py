"""The amount rule of the auth policy denies by default: a currency without a limit is high
value at any amount (issue 16 item 5: KWD 900,000.000 was paid on a level-2 session)."""

from __future__ import annotations

from pathlib import Path

import pytest

from anfu.identity.assurance import DEFAULT_POLICY_PATH, PolicyError, load_policy
from anfu.money import Money

POLICY = load_policy()


@pytest.mark.parametrize("amount", [Money(1, "KWD"), Money(900_000_000, "KWD"),
                                    Money(1, "BHD"), Money(5, "CHF")])
def test_a_currency_without_a_limit_needs_level_3_for_any_amount(amount: Money) -> None:
    assert POLICY.required("trade.pay", amount=amount) == 3
    assert POLICY.required("transfer.create", amount=amount) == 3
    assert POLICY.required("withdrawal.create", amount=amount) == 3


def test_listed_currencies_keep_their_limit() -> None:
    assert POLICY.required("trade.pay", amount=Money(50_000, "CNY")) == 2
    assert POLICY.required("trade.pay", amount=Money(50_001, "CNY")) == 3
    assert POLICY.required("trade.pay", amount=Money(10_000, "USD")) == 2


def test_the_customers_own_limits_do_not_open_other_currencies() -> None:
    own = {"CNY": 100_000}
    assert POLICY.required("trade.pay", amount=Money(80_000, "CNY"), user_limits=own) == 2
    assert POLICY.required("trade.pay", amount=Money(1, "KWD"), user_limits=own) == 3
    assert POLICY.required("trade.pay", amount=Money(900, "USD"), user_limits=own) == 2
    # a customer's own limit for an unlisted currency is theirs to set (at level 3)
    assert POLICY.required("trade.pay", amount=Money(500, "KWD"),
                           user_limits={"KWD": 1_000}) == 2


def test_operations_without_the_amount_rule_are_unchanged() -> None:
    assert POLICY.required("topup.create", amount=Money(900_000_000, "KWD")) == 2
    assert POLICY.required("trade.confirm", amount=Money(900_000_000, "KWD")) == 2


def test_describe_says_what_an_unlisted_currency_needs() -> None:
    assert POLICY.describe()["unlisted_currency"] == "level 3 for any amount"
    assert "default" not in POLICY.default_limits  # no default is shipped


def policy_with(tmp_path: Path, limits_line: str) -> Path:
    text = DEFAULT_POLICY_PATH.read_text(encoding="utf-8")
    start = text.index("default_limits = {")
    end = text.index("\n", start)
    path = tmp_path / "policy.toml"
    path.write_text(text[:start] + limits_line + text[end:], encoding="utf-8")
    return path


def test_an_operator_default_limit_applies_to_unlisted_currencies_only(tmp_path: Path) -> None:
    policy = load_policy(policy_with(tmp_path, "default_limits = { CNY = 50000, default = 300 }"))
    assert policy.required("trade.pay", amount=Money(300, "KWD")) == 2
    assert policy.required("trade.pay", amount=Money(301, "KWD")) == 3
    assert policy.required("trade.pay", amount=Money(50_000, "CNY")) == 2
    assert "300 minor units" in policy.describe()["unlisted_currency"]


@pytest.mark.parametrize("line", ["default_limits = { XYZ = 5 }",
                                  "default_limits = { CNY = -1 }"])
def test_a_policy_with_an_odd_limit_is_refused(tmp_path: Path, line: str) -> None:
    with pytest.raises(PolicyError):
        load_policy(policy_with(tmp_path, line))
