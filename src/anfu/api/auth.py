"""Who is calling the mobile zone, what they proved, and whether that is enough.

Every authenticated request: the access token's MAC and expiry, then one read of its session
(revoked? bound to a device key? which proofs?), then, for a bound session, the DPoP proof
(RFC 9449) signed by that device's key, whose ``jti`` is remembered so it cannot be replayed.
A revoked device or session is therefore locked out on its next request, not at token expiry.

``require`` compares the session's assurance level with the policy's level for the operation
and, when it falls short, opens a step-up challenge and answers 401 ``step_up_required``
naming the methods that would help (RFC 9470's ``insufficient_user_authentication``).
For a money move the answer does not raise the session: it is a single-use grant for that
operation, amount and payee (``identity/step_up``), which ``require`` returns on the retry
and the route spends with ``consume_step_up`` in the money move's own transaction.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

import orjson
from fastapi import Header, Request

from anfu.bootstrap import Platform
from anfu.crypto import passkeys as webauthn
from anfu.crypto.jose import DpopInvalid, verify_dpop
from anfu.crypto.tokens import TokenExpired, TokenInvalid
from anfu.db.auth_store import SqlAuthStore
from anfu.db.factor_store import SqlFactorStore
from anfu.db.uow import SqlUnitOfWork
from anfu.errors import AuthenticationFailed, Forbidden
from anfu.identity.assurance import METHOD_AMR, useful_methods
from anfu.identity.challenges import ChallengeKind, Requirement, new_challenge
from anfu.identity.step_up import OperationBinding, StepUpGrant, StepUpGrantUsed
from anfu.money import Money


class StepUpRequired(AuthenticationFailed):
    code = "step_up_required"
    title = "Stronger authentication required"


@dataclass(frozen=True, slots=True)
class AuthContext:
    user_id: str
    session_id: str
    device_id: str | None
    jkt: str | None
    proofs: dict[str, float]
    client_address: str


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def request_url(request: Request) -> str:
    """The URL the client addressed, without query: what a DPoP proof's ``htu`` names."""
    url = request.url
    return f"{url.scheme}://{url.netloc}{url.path}"


class Authenticator:
    def __init__(self, platform: Platform) -> None:
        self._platform = platform

    async def context(self, request: Request, authorization: str | None,
                      dpop: str | None) -> AuthContext:
        platform = self._platform
        scheme, _, token = (authorization or "").partition(" ")
        scheme = scheme.lower()
        if scheme not in ("bearer", "dpop") or not token:
            raise AuthenticationFailed("send Authorization: Bearer <access_token> (or DPoP"
                                       " <access_token> with a DPoP proof)", code="token_missing")
        try:
            claims = platform.tokens.verify(token)
        except TokenExpired as exc:
            raise AuthenticationFailed("the access token expired; refresh it",
                                       code="token_expired") from exc
        except TokenInvalid as exc:
            raise AuthenticationFailed("the access token is not valid",
                                       code="token_invalid") from exc
        session_id: str = claims["sid"]
        row = platform.read(lambda conn: SqlAuthStore(conn).session_auth(session_id))
        if row is None or row["revoked_at"] is not None:
            raise AuthenticationFailed("this session was ended (logout, a revoked device, a"
                                       " password reset or a reused refresh token); log in"
                                       " again", code="session_revoked")
        jkt = row["jkt"]
        if jkt is not None:
            await self._check_dpop(request, scheme, token, jkt, dpop)
        elif scheme != "bearer":
            raise AuthenticationFailed("this session is not bound to a device key; use"
                                       " Authorization: Bearer", code="token_invalid")
        return AuthContext(user_id=row["user_id"], session_id=session_id,
                           device_id=row["device_id"], jkt=jkt,
                           proofs=orjson.loads(row["proofs"]),
                           client_address=client_address(request))

    async def _check_dpop(self, request: Request, scheme: str, token: str, jkt: str,
                          dpop: str | None) -> None:
        if scheme != "dpop" or not dpop:
            raise AuthenticationFailed(
                "this session is bound to a device key: send Authorization: DPoP <token> and"
                " a DPoP proof signed by the device", code="dpop_required")
        await self.verify_proof(request, dpop, jkt=jkt, access_token=token)

    async def verify_proof(self, request: Request, dpop: str | None, *, jkt: str,
                           access_token: str | None = None) -> None:
        """Check a DPoP proof of this request by the key ``jkt`` and remember its jti (a
        replayed proof is refused)."""
        platform = self._platform
        if not dpop:
            raise AuthenticationFailed("sign a DPoP proof of this request with the device key",
                                       code="dpop_required")
        now = platform.clock()
        max_age = platform.settings.dpop_max_age_s
        try:
            proof = verify_dpop(dpop, method=request.method, url=request_url(request), now=now,
                                access_token=access_token, expected_jkt=jkt,
                                max_age_s=max_age)
        except DpopInvalid as exc:
            platform.metrics.security.labels("mobile", f"dpop_{exc.check}").inc()
            raise AuthenticationFailed(f"DPoP proof refused: {exc}",
                                       code=f"dpop_{exc.check}") from None
        fresh = await platform.write(lambda uow: SqlAuthStore(uow.conn).remember_jti(
            jkt, proof.jti, now + 2 * max_age))
        if not fresh:
            raise AuthenticationFailed("this DPoP proof was already used; sign a new one for"
                                       " every request", code="dpop_jti_replayed")

    async def require(self, ctx: AuthContext, operation: str, *,
                      amount: Money | None = None, payee: str | None = None,
                      payee_id: str | None = None, first_time_payee: bool = False,
                      level: int = 0,
                      user_limits: dict[str, int] | None = None) -> StepUpGrant | None:
        """Return if the session is strong enough for ``operation`` (and at least ``level``):
        None when its own proofs are, or, for an operation with an amount, the unused
        step-up grant of exactly this operation, amount and payee, which the caller spends
        with ``consume_step_up`` in the transaction that moves the money. Raise
        StepUpRequired (after recording a challenge the client can answer) otherwise."""
        platform = self._platform
        policy = platform.policy
        now = platform.clock()
        limits = user_limits
        if amount is not None and limits is None:
            limits = platform.read(lambda conn: SqlFactorStore(conn).account_extras(
                ctx.user_id))["high_value_limits"]
        needed = max(level, policy.required(operation, amount=amount,
                                            first_time_payee=first_time_payee,
                                            user_limits=limits))
        current = policy.acr(ctx.proofs, now)
        if current >= needed:
            return None
        binding = None if amount is None else OperationBinding(
            ctx.session_id, operation, amount.minor_units, amount.currency, payee or "",
            payee_id or "")
        if binding is not None:
            grants = platform.read(lambda conn: SqlAuthStore(conn).open_grants(binding, now))
            usable = [g for g in grants if g.usable_for(binding, needed, policy, now)]
            if usable:
                return usable[0]
        methods = offered_methods(platform, ctx.user_id, ctx.device_id, ctx.proofs, needed)
        if not methods:
            # Nothing this customer holds can reach the level: say what would, instead of
            # opening a challenge nobody can answer.
            await platform.write(lambda uow: SqlAuthStore(uow.conn).audit(
                "identity:session:step_up_unavailable", now=uow.now, user_id=ctx.user_id,
                session_id=ctx.session_id, device_id=ctx.device_id,
                client_address=ctx.client_address, operation=operation, required_acr=needed,
                current_acr=current))
            raise Forbidden(
                f"{operation} needs assurance level {needed}, which needs a hardware-bound key"
                " this account does not have: register a passkey, or bind a phone whose key"
                " is kept in hardware (not rooted, not an emulator)",
                code="stronger_factor_required", required_acr=needed, current_acr=current)
        challenge = new_challenge(
            ChallengeKind.STEP_UP, user_id=ctx.user_id, operation=operation,
            requirement=Requirement(acr=needed), client_address=ctx.client_address, now=now,
            proofs=ctx.proofs, session_id=ctx.session_id, device_id=ctx.device_id,
            amount=amount.minor_units if amount else None,
            currency=amount.currency if amount else None, payee=payee,
            payee_id=payee_id if amount else None)

        def record(uow: SqlUnitOfWork) -> None:
            store = SqlAuthStore(uow.conn)
            store.insert_challenge(challenge)
            store.audit("identity:session:step_up_required", now=uow.now,
                        user_id=ctx.user_id, session_id=ctx.session_id,
                        device_id=ctx.device_id, client_address=ctx.client_address,
                        operation=operation, required_acr=needed, current_acr=current)

        await platform.write(record)
        raise step_up_problem(platform, challenge.public(), methods, current=current,
                              user_id=ctx.user_id)


def consume_step_up(uow: SqlUnitOfWork, grant: StepUpGrant | None) -> None:
    """Spend the grant ``require`` returned, in the transaction of the money move it
    approved; ``StepUpGrantUsed`` (409) when a concurrent request spent it first, which rolls
    that request's money move back."""
    if grant is None:
        return
    if not SqlAuthStore(uow.conn).use_grant(grant.grant_id, uow.now):
        raise StepUpGrantUsed("this step-up approved one operation and was already used (or"
                              " expired); retry to be asked again")


def offered_methods(platform: Platform, user_id: str, device_id: str | None,
                    proofs: dict[str, float], needed: int) -> list[str]:
    """The step-up methods this customer can use now that would raise the session."""
    def read(conn: Any) -> tuple[list[str], dict[str, tuple[str, ...]]]:
        factors = SqlFactorStore(conn)
        available = ["password", "sms", *sorted(factors.enrolled_methods(user_id))]
        method_amr = dict(METHOD_AMR)
        device = factors.device(device_id) if device_id else None
        if device is not None and device.active:
            available.append("device")
            method_amr["device"] = (device.amr,)
        return available, method_amr

    available, method_amr = platform.read(read)
    return useful_methods(available, proofs, platform.clock(), platform.policy, needed,
                          method_amr)


def step_up_problem(platform: Platform, challenge: dict[str, Any], methods: list[str], *,
                    current: int, user_id: str | None,
                    detail: str | None = None) -> StepUpRequired:
    needed = challenge["required_acr"]
    extra: dict[str, Any] = {**challenge, "methods": methods, "current_acr": current}
    if "passkey" in methods and user_id is not None:
        extra["passkey_options"] = passkey_request_options(platform, challenge["nonce"],
                                                           user_id)
    extra["www_authenticate"] = (f'DPoP error="insufficient_user_authentication",'
                                 f' acr_values="{needed}"')
    return StepUpRequired(
        detail or f"{challenge['operation']} needs assurance level {needed} (this session has"
        f" {current}); answer challenge {challenge['challenge_id']} with one of:"
        f" {', '.join(methods) or 'no method available'}, then retry", **extra)


def passkey_request_options(platform: Platform, nonce: str,
                            user_id: str | None) -> dict[str, Any]:
    credential_ids: list[bytes] = []
    if user_id is not None:
        rows = platform.read(lambda conn: SqlFactorStore(conn).passkeys_of(user_id))
        credential_ids = [b64url_decode(r["credential_id"]) for r in rows]
    return webauthn.authentication_options(rp_id=platform.settings.webauthn_rp_id,
                                           challenge=nonce.encode("ascii"),
                                           allow_credential_ids=credential_ids)


def auth_dependency(authenticator: Authenticator) -> Callable[..., Awaitable[AuthContext]]:
    """The FastAPI dependency: ``ctx: AuthContext = Depends(auth_dependency(a))``."""

    async def current(request: Request,
                      authorization: Annotated[str | None, Header()] = None,
                      dpop: Annotated[str | None, Header(alias="DPoP")] = None) -> AuthContext:
        # async: a plain def dependency would cost a thread-pool hop on every request
        return await authenticator.context(request, authorization, dpop)

    return current
