"""What a session has proved, and what an operation needs (book ch. 3.8 "combined
authentication").

A session records each method it proved and when (``proofs``: amr value → Unix time). Its
assurance level (``acr``) is computed, not stored: level 1 is any fresh proof, level 2 two
independent factor categories, level 3 two categories of which one is a hardware-bound key.
Freshness is per level (``max_age_s``), so a login in the morning still reads the wallet in
the evening but no longer moves money without a new proof.

The policy is data: ``auth_policy.toml`` beside this module, or the operator's copy named by
``ANFU_AUTH_POLICY``.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from anfu.identity.txn_signing import TxnSigningPolicy, parse_policy
from anfu.money import MINOR_UNITS, Money

DEFAULT_POLICY_PATH = Path(__file__).with_name("auth_policy.toml")


class Factor(StrEnum):
    KNOWLEDGE = "knowledge"
    POSSESSION = "possession"
    INHERENCE = "inherence"


# amr values (RFC 8176 where one fits): what each proof shows.
AMR_FACTOR: dict[str, Factor] = {
    "pwd": Factor.KNOWLEDGE,   # static password
    "sms": Factor.POSSESSION,  # SMS one-time code: the SIM
    "otp": Factor.POSSESSION,  # TOTP code: the authenticator app's secret
    "rec": Factor.POSSESSION,  # a recovery code: stands in for the TOTP device
    "swk": Factor.POSSESSION,  # a device key kept in software
    "hwk": Factor.POSSESSION,  # a hardware-bound key (passkey, or a device key in hardware)
    "sim": Factor.POSSESSION,  # the operator confirmed the SIM holds the phone number
    "x509": Factor.POSSESSION,  # the key of a valid platform-issued device certificate
    "uv": Factor.INHERENCE,    # the authenticator verified the user (biometric or local PIN)
}
HARDWARE_BOUND = "hwk"
# The key of ``[high_value] default_limits`` that applies to every currency not listed.
UNLISTED_CURRENCY = "default"

# The methods a client can answer a challenge with, and the amr each one adds.
METHOD_AMR: dict[str, tuple[str, ...]] = {
    "password": ("pwd",),
    "sms": ("sms",),
    "totp": ("otp",),
    "recovery_code": ("rec",),
    "device": ("swk",),  # "hwk" instead when the device key is hardware-backed
    "passkey": ("hwk", "uv"),
    "sim": ("sim",),
    "certificate": ("x509",),  # plus "swk" or "hwk", as for the device key
}


def level_of(methods: Iterable[str]) -> int:
    """The assurance level of a set of amr values proved together."""
    amr = set(methods)
    if not amr:
        return 0
    categories = {AMR_FACTOR[m] for m in amr if m in AMR_FACTOR}
    if len(categories) < 2:
        return 1
    return 3 if HARDWARE_BOUND in amr else 2


@dataclass(frozen=True, slots=True)
class AuthPolicy:
    operations: Mapping[str, int]
    max_age_s: Mapping[int, float]
    default_limits: Mapping[str, int] = field(default_factory=dict)
    money_operations: frozenset[str] = frozenset()
    first_time_payee_level: int = 3
    txn_signing: TxnSigningPolicy = field(default_factory=TxnSigningPolicy)
    source: str = "built-in"

    def acr(self, proofs: Mapping[str, float], now: float) -> int:
        """The highest level whose proofs are all fresh enough for it."""
        for level in (3, 2, 1):
            fresh = [m for m, at in proofs.items() if now - at <= self.max_age_s[level]]
            if level_of(fresh) >= level:
                return level
        return 0

    def required(self, operation: str, *, amount: Money | None = None,
                 first_time_payee: bool = False,
                 user_limits: Mapping[str, int] | None = None) -> int:
        try:
            level = self.operations[operation]
        except KeyError:
            raise KeyError(f"the auth policy has no level for operation {operation!r}") from None
        if operation not in self.money_operations:
            return level
        if first_time_payee:
            level = max(level, self.first_time_payee_level)
        if amount is not None:
            limit = self.high_value_limit(amount.currency, user_limits)
            # Deny by default: a currency nobody set a limit for is high value at any amount.
            if limit is None or amount.minor_units > limit:
                level = 3
        return level

    def high_value_limit(self, currency: str,
                         user_limits: Mapping[str, int] | None = None) -> int | None:
        """The amount above which a payment in ``currency`` needs level 3: the customer's own
        limit, else the policy's for the currency, else the policy's ``default`` (only when
        the operator wrote one); None when there is none, and then every amount needs 3."""
        for limits in (user_limits or {}, self.default_limits):
            if currency in limits:
                return limits[currency]
        return self.default_limits.get(UNLISTED_CURRENCY)

    def unlisted_rule(self) -> str:
        """What a payment in a currency without a limit needs, in words."""
        default = self.default_limits.get(UNLISTED_CURRENCY)
        if default is None:
            return "level 3 for any amount"
        return f"level 3 above {default} minor units (the policy's default limit)"

    def describe(self) -> dict[str, Any]:
        return {"source": self.source, "operations": dict(self.operations),
                "max_age_s": {str(k): v for k, v in self.max_age_s.items()},
                "default_limits": dict(self.default_limits),
                "unlisted_currency": self.unlisted_rule(),
                "money_operations": sorted(self.money_operations),
                "first_time_payee_level": self.first_time_payee_level,
                "transaction_signing": self.txn_signing.describe()}


def useful_methods(available: Iterable[str], proofs: Mapping[str, float], now: float,
                   policy: AuthPolicy, required_acr: int,
                   method_amr: Mapping[str, tuple[str, ...]] = METHOD_AMR) -> list[str]:
    """The methods worth offering: those that add a factor category the fresh proofs lack,
    or, when level 3 is needed, the hardware-bound key."""
    fresh = {m for m, at in proofs.items()
             if now - at <= policy.max_age_s[max(required_acr, 1)]}
    have = {AMR_FACTOR[m] for m in fresh if m in AMR_FACTOR}
    offered = []
    for method in available:
        adds = set(method_amr.get(method, ()))
        if adds <= fresh:
            continue
        new_category = any(AMR_FACTOR[m] not in have for m in adds)
        if new_category or (required_acr >= 3 and HARDWARE_BOUND in adds):
            offered.append(method)
    return offered


class PolicyError(ValueError):
    """The policy file is unreadable or incomplete; the message says where."""


def load_policy(path: Path | None = None) -> AuthPolicy:
    chosen = path or DEFAULT_POLICY_PATH
    try:
        data = tomllib.loads(chosen.read_text(encoding="utf-8"))
        ages = {int(k): float(v) for k, v in data["assurance"]["max_age_s"].items()}
        operations = {str(k): int(v) for k, v in data["operations"].items()}
        high = data.get("high_value", {})
        limits = {str(k): int(v) for k, v in high.get("default_limits", {}).items()}
        odd = sorted(k for k in limits if k != UNLISTED_CURRENCY and k not in MINOR_UNITS)
        if odd:
            raise ValueError(f"[high_value] default_limits: unknown currencies {odd}"
                             f" (ISO 4217 codes, or {UNLISTED_CURRENCY!r})")
        if any(v < 0 for v in limits.values()):
            raise ValueError("[high_value] default_limits: limits are minor units >= 0")
        money = frozenset(str(op) for op in high.get("money_operations", []))
        first_payee = int(high.get("first_time_payee_level", 3))
        txn_signing = parse_policy(data.get("transaction_signing", {}))
    except (OSError, tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as exc:
        raise PolicyError(f"auth policy {chosen}: {exc}") from exc
    if sorted(ages) != [1, 2, 3]:
        raise PolicyError(f"auth policy {chosen}: [assurance] max_age_s needs levels 1, 2, 3")
    bad = {op: lvl for op, lvl in operations.items() if lvl not in (1, 2, 3)}
    if bad or first_payee not in (1, 2, 3):
        raise PolicyError(f"auth policy {chosen}: levels must be 1, 2 or 3 (got {bad})")
    unknown = money - operations.keys()
    if unknown:
        raise PolicyError(f"auth policy {chosen}: money_operations not in [operations]:"
                          f" {sorted(unknown)}")
    return AuthPolicy(operations=operations, max_age_s=ages, default_limits=limits,
                      money_operations=money, first_time_payee_level=first_payee,
                      txn_signing=txn_signing, source=str(chosen))
