"""Changing and resetting the password.

A change needs the current password (or a reset challenge answered just now), ends every
other session, tells the other devices and is audited (``identity:password:changed``): a
stolen session alone cannot lock the owner out.

A reset must not tell whether a phone number has an account. An unknown number gets a
challenge like a known one's; asking for its code records an SMS challenge with the same
expiry and counts against the same send limits (the code is simply never sent, and never
accepted); a code for it is checked by the same steps, against the same throttles, and
refused as a wrong code is. The message to a known number is handed to the gateway without
waiting, so the answer takes the same time either way.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from anfu.api.auth import AuthContext, Authenticator, auth_dependency, client_address
from anfu.api.common import json_response
from anfu.api.identity_kit import IdentityKit
from anfu.api.schemas import Body, Id, NewPassword, ResetStart, Secret
from anfu.db.auth_store import SqlAuthStore
from anfu.db.factor_store import SqlFactorStore
from anfu.db.uow import SqlUnitOfWork
from anfu.db.user_store import SqlUserStore
from anfu.errors import AuthenticationFailed, Forbidden, InvalidRequest
from anfu.identity import codes
from anfu.identity.challenges import (
    AuthChallenge,
    ChallengeKind,
    new_challenge,
    reset_requirement,
)
from anfu.identity.service import User

RESET_MARK_S = 24 * 3600.0


class PasswordChange(Body):
    new_password: Secret
    current_password: Secret | None = None
    # instead of the current password: a reset challenge answered in this app just now
    reset_challenge_id: Id | None = None


async def send_reset_code(kit: IdentityKit, ch: AuthChallenge, user: User | None,
                          address: str) -> dict[str, Any]:
    """The answer to "send the code" of a reset, the same for every number."""
    phone = user.phone if user is not None else ch.phone
    if phone is None:  # a reset started before the phone was recorded
        raise AuthenticationFailed("this challenge has expired; start again",
                                   code="challenge_expired")
    issued = await kit.issue_code(phone=phone, purpose=codes.Purpose.RESET_PASSWORD,
                                  address=address, link=ch)
    if user is not None:
        kit.deliver_later(issued, phone)
    return {"expires_at": issued.expires_at}


async def prove_reset_code(kit: IdentityKit, ch: AuthChallenge, user: User | None,
                           code: str, address: str) -> list[str]:
    if user is not None:
        return await kit.prove_sms_code(ch, subject=user.user_id, user_id=user.user_id,
                                        phone=user.phone, code=code, address=address)
    phone = ch.phone or ""
    return await kit.prove_sms_code(ch, subject=phone, user_id=None, phone=phone, code=code,
                                    address=address, answerable=False)


def build_router(kit: IdentityKit, authenticator: Authenticator) -> APIRouter:
    platform = kit.platform
    router = APIRouter(prefix="/v1")
    current = Depends(auth_dependency(authenticator))

    def open_reset(challenge_id: str) -> tuple[AuthChallenge, User | None]:
        ch = platform.read(lambda conn: SqlAuthStore(conn).challenge(challenge_id))
        if ch is None or ch.kind is not ChallengeKind.RESET:
            raise AuthenticationFailed("the reset challenge is not complete",
                                       code="reset_incomplete")
        ch.check_open(platform.clock())
        user = None if ch.user_id is None else platform.read(
            lambda conn: SqlUserStore(conn).user(ch.user_id or ""))
        return ch, user

    @router.post("/password-resets", summary="Start a password reset (SMS + second factor)")
    async def start_reset(body: ResetStart, request: Request) -> Response:
        # A SIM swapped lately would hand the SMS code to whoever swapped it: no reset by
        # phone for the hold, whoever the number belongs to.
        changed = await platform.carrier.last_sim_change(body.phone)
        hold = kit.settings.sim_change_hold_s
        if changed is not None and platform.clock() - changed.timestamp() < hold:
            raise Forbidden(f"this number's SIM changed less than {hold // 3600} h ago: a"
                            " password reset by phone waits until then; sign in on a bound"
                            " device or contact support", code="sim_recently_changed")
        user = platform.read(lambda conn: SqlUserStore(conn).user_by_phone(body.phone))
        second: list[str] = []
        if user is not None:
            second = platform.read(lambda conn: reset_second_factors(conn, user.user_id))
        ch = new_challenge(ChallengeKind.RESET, user_id=user.user_id if user else None,
                           operation="password.reset", requirement=reset_requirement(second),
                           client_address=client_address(request), now=platform.clock(),
                           phone=body.phone)
        await platform.write(lambda uow: SqlAuthStore(uow.conn).insert_challenge(ch))
        # Only the SMS code is asked for first, whoever the number belongs to; the second
        # factors the account has are named once the code proved the phone.
        public = ch.public()
        return json_response({**public, "methods": ["sms"], "current_acr": 0}, 200)

    @router.post("/password-resets/{challenge_id}", status_code=204,
                 summary="Set the new password once the reset challenge is satisfied")
    async def finish_reset(challenge_id: str, body: NewPassword, request: Request) -> Response:
        ch, user = open_reset(challenge_id)
        if user is None or not ch.satisfied(kit.policy, platform.clock()):
            raise AuthenticationFailed("the reset challenge is not complete",
                                       code="reset_incomplete")
        new_hash = await kit.new_password_hash(body.new_password, user.phone)

        def reset(uow: SqlUnitOfWork) -> None:
            store = SqlAuthStore(uow.conn)
            if not store.complete(challenge_id, uow.now):
                raise AuthenticationFailed("this reset was already used",
                                           code="challenge_expired")
            SqlUserStore(uow.conn).set_password_hash(user.user_id, new_hash)
            store.revoke_sessions(reason="password_reset", now=uow.now, user_id=user.user_id)
            SqlFactorStore(uow.conn).mark_reset(user.user_id, uow.now + RESET_MARK_S)
            store.audit("identity:password:reset", now=uow.now, user_id=user.user_id,
                        client_address=client_address(request), amr=sorted(ch.proofs))

        await platform.write(reset)
        return Response(status_code=204)

    @router.put("/me/password", status_code=204,
                summary="Change the password (needs the current one); other sessions end")
    async def change_password(body: PasswordChange, c: AuthContext = current) -> Response:
        await authenticator.require(c, "password.change")
        user = platform.read(lambda conn: SqlUserStore(conn).user(c.user_id))
        assert user is not None
        reset_id = await proved_secret(c, user, body)
        new_hash = await kit.new_password_hash(body.new_password, user.phone)

        def change(uow: SqlUnitOfWork) -> None:
            store = SqlAuthStore(uow.conn)
            if reset_id is not None and not store.complete(reset_id, uow.now):
                raise AuthenticationFailed("this reset was already used",
                                           code="challenge_expired")
            SqlUserStore(uow.conn).set_password_hash(c.user_id, new_hash)
            ended = store.revoke_sessions(reason="password_changed", now=uow.now,
                                          user_id=c.user_id, except_session=c.session_id)
            others = [d.device_id for d in SqlFactorStore(uow.conn).devices_of(c.user_id)
                      if d.device_id != c.device_id]
            store.notify_devices(others, "password_changed", "The password of your anfu"
                                 " account was changed and your other devices were signed"
                                 " out. If this was not you, reset it now.", uow.now)
            store.audit("identity:password:changed", now=uow.now, user_id=c.user_id,
                        session_id=c.session_id, device_id=c.device_id,
                        client_address=c.client_address, sessions_ended=ended,
                        proved="reset" if reset_id else "password")

        await platform.write(change)
        return Response(status_code=204)

    async def proved_secret(c: AuthContext, user: User, body: PasswordChange) -> str | None:
        """Check the current password (throttled like a login), or that the reset challenge
        is this customer's, satisfied and unused; its id, to spend with the change."""
        if body.current_password is not None:
            await kit.prove_password(user, body.current_password, c.client_address)
            return None
        if body.reset_challenge_id is None:
            raise InvalidRequest("give current_password (or the reset_challenge_id of a reset"
                                 " answered just now)", code="current_password_required")
        ch, owner = open_reset(body.reset_challenge_id)
        if owner is None or owner.user_id != c.user_id or not ch.satisfied(
                kit.policy, platform.clock()):
            raise AuthenticationFailed("the reset challenge is not complete",
                                       code="reset_incomplete")
        return ch.challenge_id

    return router


def reset_second_factors(conn: Any, user_id: str) -> list[str]:
    """The amr values of which a reset also needs one: the enrolled second factors."""
    factors = SqlFactorStore(conn)
    methods = factors.enrolled_methods(user_id)
    second = [amr for method, amr in (("totp", "otp"), ("recovery_code", "rec"),
                                      ("passkey", "hwk")) if method in methods]
    return second + sorted({d.amr for d in factors.devices_of(user_id)} - set(second))
