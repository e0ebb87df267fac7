"""Step-up grants: a step-up answered for one money move approves that move only (PSD2 RTS
art. 5, dynamic linking).

A step-up challenge opened for an operation with an amount (a payment, transfer, top-up or
withdrawal) does not raise the session when it is satisfied: it becomes a ``StepUpGrant``
bound to the session, the operation, the amount, the currency and the payee (its id where it
has one, else its name). The money move is then allowed by the session's own level or by a
matching unused grant, and the grant is spent in the same transaction as the money move, so
two racing requests cannot both use it. Step-ups for anything else (device registration,
factor enrolment, ``session.step_up``) raise the session as before.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from anfu.errors import Conflict
from anfu.identity.assurance import AuthPolicy
from anfu.identity.challenges import CHALLENGE_TTL_S, AuthChallenge, ChallengeKind


class StepUpGrantUsed(Conflict):
    code = "step_up_grant_used"
    title = "This approval was already used"


@dataclass(frozen=True, slots=True)
class OperationBinding:
    """What a grant approves: one operation of one session, for one amount and payee."""

    session_id: str
    operation: str
    amount: int
    currency: str
    payee: str
    payee_id: str = ""


@dataclass(frozen=True, slots=True)
class StepUpGrant:
    grant_id: str
    user_id: str
    binding: OperationBinding
    acr: int
    proofs: Mapping[str, float]
    created_at: float
    expires_at: float
    used_at: float | None = None

    def usable_for(self, binding: OperationBinding, needed: int, policy: AuthPolicy,
                   now: float) -> bool:
        """Unused, unexpired, for exactly this operation, and its proofs still fresh enough
        for the level the operation needs now."""
        return (self.used_at is None and now < self.expires_at and self.binding == binding
                and policy.acr(self.proofs, now) >= needed)


def binding_of(ch: AuthChallenge) -> OperationBinding | None:
    """The operation a step-up challenge approves, or None when it is not for a money move
    (then answering it raises the session)."""
    if (ch.kind is not ChallengeKind.STEP_UP or ch.session_id is None or ch.amount is None
            or ch.currency is None):
        return None
    return OperationBinding(ch.session_id, ch.operation, ch.amount, ch.currency,
                            ch.payee or "", ch.payee_id or "")


def grant_from(ch: AuthChallenge, binding: OperationBinding, policy: AuthPolicy,
               now: float) -> StepUpGrant:
    """The grant a satisfied money step-up becomes; it lives as long as a challenge does."""
    assert ch.user_id is not None
    return StepUpGrant(grant_id=ch.challenge_id, user_id=ch.user_id, binding=binding,
                       acr=policy.acr(ch.proofs, now), proofs=dict(ch.proofs),
                       created_at=now, expires_at=now + CHALLENGE_TTL_S)
