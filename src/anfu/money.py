"""Money as integer minor units plus an ISO 4217 currency; never floats."""

from __future__ import annotations

from dataclasses import dataclass

from anfu.errors import InvalidRequest

# ISO 4217 code -> number of minor-unit digits. The platform accepts only these; extend
# the table (not the code) to support more.
MINOR_UNITS: dict[str, int] = {
    "CNY": 2, "HKD": 2, "MOP": 2, "TWD": 2, "USD": 2, "EUR": 2, "GBP": 2, "CHF": 2,
    "SGD": 2, "AUD": 2, "CAD": 2, "NZD": 2, "THB": 2, "MYR": 2, "INR": 2, "RUB": 2,
    "JPY": 0, "KRW": 0, "VND": 0, "KWD": 3, "BHD": 3,
}

# Largest amount one operation may move: 10^12 minor units (ten billion yuan); keeps every
# sum far inside a signed 64-bit column.
MAX_AMOUNT = 10**12


def check_currency(currency: str) -> str:
    if currency not in MINOR_UNITS:
        raise InvalidRequest(
            f"unknown currency {currency!r}: use an ISO 4217 code such as CNY or USD",
            code="unknown_currency",
        )
    return currency


def check_amount(amount: int, *, limit: int = MAX_AMOUNT) -> int:
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise InvalidRequest("amount must be an integer number of minor units",
                             code="invalid_amount")
    if amount <= 0:
        raise InvalidRequest("amount must be positive", code="invalid_amount")
    if amount > limit:
        raise InvalidRequest(f"amount exceeds the limit of {limit} minor units",
                             code="amount_over_limit")
    return amount


@dataclass(frozen=True, slots=True)
class Money:
    minor_units: int
    currency: str

    def __post_init__(self) -> None:
        check_currency(self.currency)
        if isinstance(self.minor_units, bool) or not isinstance(self.minor_units, int):
            raise InvalidRequest("money must be integer minor units", code="invalid_amount")

    def __str__(self) -> str:
        digits = MINOR_UNITS[self.currency]
        sign = "-" if self.minor_units < 0 else ""
        units, minor = divmod(abs(self.minor_units), 10**digits) if digits else (
            abs(self.minor_units), 0)
        return f"{sign}{units}.{minor:0{digits}d} {self.currency}" if digits else (
            f"{sign}{units} {self.currency}")


def fee_for(amount: int, fee_bps: int) -> int:
    """The platform fee on ``amount``: ``amount * fee_bps / 10000`` rounded half up
    (half a minor unit goes to the platform). Exact integer arithmetic."""
    if amount < 0 or fee_bps < 0:
        raise ValueError("amount and fee_bps must be non-negative")
    return (amount * fee_bps + 5000) // 10000
