"""Brute-force protection for every secret a person types (password, SMS code, TOTP, PIN).

The rules follow Keycloak's brute force detector (linear strategy), counted per key: one key
per account and secret (``account_key``) and one per client address (``address_key``).

- Failures are counted per key; a gap longer than ``failure_reset_s`` since the last failure
  starts the count again.
- From the ``max_failures``-th failure on, each failure locks the key for
  ``wait_increment_s * (1 + failures - max_failures)``, at most ``max_wait_s``.
- Below that, two failures closer than ``quick_login_check_s`` (a script, not a person) lock
  the key for ``quick_login_wait_s``.
- Every lock calls ``on_lock`` with a ``LockEvent`` (for the audit trail).

``check`` raises ``CredentialsRefused``, and callers raise the very same error when the secret
is wrong, so a caller (or attacker) cannot tell "locked" from "wrong"; the lock end is never
in the message. Typical use::

    for t, key in ((accounts, account_key("password", user_id)), (addresses, address_key(ip))):
        t.check(key, now)
    try:
        hasher.verify(stored, password)
    except AuthenticationFailed:
        accounts.record_failure(account_key("password", user_id), now)
        addresses.record_failure(address_key(ip), now)
        raise CredentialsRefused() from None
    accounts.record_success(account_key("password", user_id), now)

A success clears only the account key: clearing the address key would let an attacker reset
it with an account of his own between guesses against others; address failures age out.

The store is read, changed and written back; the SQL implementation runs ``record_failure``
inside one transaction (the single writer on SQLite, ``SELECT … FOR UPDATE`` on PostgreSQL),
and keeps the state where every instance sees it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal, Protocol

from anfu.errors import AuthenticationFailed

REFUSED_DETAIL = (
    "the credentials are not correct, or there were too many attempts; check them and try "
    "again in a few minutes"
)

LOCK_EVENT = "identity:account:locked"


class CredentialsRefused(AuthenticationFailed):
    """A secret was wrong or its key is locked; one message for both, on purpose."""

    code = "credentials_refused"

    def __init__(self) -> None:
        super().__init__(REFUSED_DETAIL)


@dataclass(frozen=True, slots=True)
class ThrottlePolicy:
    """Defaults are Keycloak's. Meaning of each setting: Keycloak Server Administration
    Guide, "Brute force attacks" (e.g. https://docs.redhat.com/en/documentation/
    red_hat_build_of_keycloak/26.0/html/server_administration_guide/mitigating_security_threats
    section 16.3). Values: a realm's defaults as every exported realm shows them,
    ``failureFactor`` 30, ``waitIncrementSeconds`` 60, ``maxFailureWaitSeconds`` 900,
    ``maxDeltaTimeSeconds`` 43200, ``quickLoginCheckMilliSeconds`` 1000,
    ``minimumQuickLoginWaitSeconds`` 60. The formula is that of
    ``org.keycloak.services.managers.DefaultBruteForceProtector.failure`` (linear strategy,
    temporary lockout; Keycloak's optional permanent lockout is left out)."""

    max_failures: int = 30  # Max login failures before a temporary lock
    wait_increment_s: float = 60.0  # Wait increment: 1 minute
    max_wait_s: float = 15 * 60.0  # Max wait: 15 minutes
    failure_reset_s: float = 12 * 3600.0  # Failure reset time: 12 hours
    quick_login_check_s: float = 1.0  # Quick login check: 1000 ms (0 turns it off)
    quick_login_wait_s: float = 60.0  # Minimum quick login wait: 1 minute

    def __post_init__(self) -> None:
        if self.max_failures < 1:
            raise ValueError("max_failures must be at least 1")
        if min(self.wait_increment_s, self.max_wait_s, self.failure_reset_s,
               self.quick_login_check_s, self.quick_login_wait_s) < 0:
            raise ValueError("throttle durations must not be negative")


KEYCLOAK_DEFAULTS = ThrottlePolicy()

# Per client address: many people share one address (carrier-grade NAT is the rule on mobile
# networks), so allow more failures before a lock and do not treat two people mistyping
# within a second as a script. Credential stuffing from one address still locks it.
ADDRESS_DEFAULTS = replace(KEYCLOAK_DEFAULTS, max_failures=100, quick_login_check_s=0.0)


@dataclass(frozen=True, slots=True)
class FailureState:
    failures: int
    last_failure: float
    locked_until: float = 0.0
    lockouts: int = 0  # temporary locks since the count last started


@dataclass(frozen=True, slots=True)
class LockEvent:
    key: str
    at: float
    locked_until: float
    failures: int
    reason: Literal["too_many_failures", "quick_failures"]
    name: str = LOCK_EVENT

    @property
    def wait_s(self) -> float:
        return self.locked_until - self.at


class ThrottleStore(Protocol):
    def load(self, key: str) -> FailureState | None: ...

    def save(self, key: str, state: FailureState) -> None: ...

    def clear(self, key: str) -> None: ...


class InMemoryThrottleStore:
    """For tests and single-process tools only: real deployments share the state."""

    def __init__(self) -> None:
        self.states: dict[str, FailureState] = {}

    def load(self, key: str) -> FailureState | None:
        return self.states.get(key)

    def save(self, key: str, state: FailureState) -> None:
        self.states[key] = state

    def clear(self, key: str) -> None:
        self.states.pop(key, None)


def account_key(secret: str, account_id: str) -> str:
    """The key for one account's secret of one kind (``password``, ``sms``, ``totp``, ``pin``)."""
    return f"acct:{secret}:{account_id}"


def address_bucket(address: str) -> str:
    """The unit a client address is counted in: the IPv4 address, or the IPv6 /64 (one
    subscriber's prefix, in which a client picks any address it likes)."""
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return address.strip().lower()
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network(f"{ip}/64", strict=False))
    return str(ip)


def address_key(address: str) -> str:
    return f"addr:{address_bucket(address)}"


class Throttle:
    def __init__(self, store: ThrottleStore, *, policy: ThrottlePolicy = KEYCLOAK_DEFAULTS,
                 on_lock: Callable[[LockEvent], None] | None = None) -> None:
        self._store = store
        self._policy = policy
        self._on_lock = on_lock

    def check(self, key: str, now: float) -> None:
        """Return if ``key`` may try its secret now; raise ``CredentialsRefused`` otherwise."""
        if self.locked_until(key, now) is not None:
            raise CredentialsRefused()

    def locked_until(self, key: str, now: float) -> float | None:
        """When the lock on ``key`` ends, or None. For operators only: never show it to the
        person trying, or "locked" and "wrong" become distinguishable."""
        state = self._store.load(key)
        if state is not None and now < state.locked_until:
            return state.locked_until
        return None

    def record_failure(self, key: str, now: float) -> FailureState:
        """Count a wrong secret for ``key``; lock it when the rules say so."""
        policy = self._policy
        previous = self._store.load(key)
        failures, lockouts, locked_until = 0, 0, 0.0
        since_last = 0.0
        if previous is not None:
            since_last = now - previous.last_failure
            if since_last <= policy.failure_reset_s:
                failures, lockouts = previous.failures, previous.lockouts
                locked_until = previous.locked_until
        failures += 1

        reason: Literal["too_many_failures", "quick_failures"] | None = None
        wait = 0.0
        if failures >= policy.max_failures:
            wait = policy.wait_increment_s * (1 + failures - policy.max_failures)
            reason = "too_many_failures"
        elif (previous is not None and policy.quick_login_check_s > 0
              and since_last < policy.quick_login_check_s):
            wait = policy.quick_login_wait_s
            reason = "quick_failures"
        if reason is not None and wait > 0:
            locked_until = max(locked_until, now + min(wait, policy.max_wait_s))
            lockouts += 1 if reason == "too_many_failures" else 0

        state = FailureState(failures=failures, last_failure=now, locked_until=locked_until,
                             lockouts=lockouts)
        self._store.save(key, state)
        # One event per lock: failures while already locked extend it quietly, so a script
        # hammering a locked account cannot flood the audit trail.
        already_locked = previous is not None and now < previous.locked_until
        if reason is not None and wait > 0 and self._on_lock is not None and not already_locked:
            self._on_lock(LockEvent(key=key, at=now, locked_until=locked_until,
                                    failures=failures, reason=reason))
        return state

    def record_success(self, key: str, now: float) -> None:
        """The secret was right: forget the failures of ``key`` (an account key; see above)."""
        self._store.clear(key)

    def unlock(self, key: str) -> None:
        """An operator lifts the lock and the count (after checking who is asking)."""
        self._store.clear(key)
