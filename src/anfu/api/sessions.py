"""Logging in, answering challenges, refreshing and ending sessions, resetting a password.

Every login proves two factors: password and the bound device's key, or on a new device
password and an SMS code (and the TOTP code when one is enrolled); a passkey alone (it is a
hardware key with user verification); or a SIM network token, which gives a one-factor
session. A correct password answers 401 ``step_up_required`` with the challenge to
complete; the challenge's last answer returns the tokens.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Depends, Header, Request
from starlette.responses import Response

from anfu.adapters.carrier import NetworkTokenRefused
from anfu.api.auth import (
    AuthContext,
    Authenticator,
    auth_dependency,
    client_address,
    offered_methods,
    passkey_request_options,
    step_up_problem,
)
from anfu.api.common import json_response
from anfu.api.identity_kit import IdentityKit, mask_phone
from anfu.api.passwords import prove_reset_code, send_reset_code
from anfu.api.schemas import (
    ChallengeAnswer,
    Login,
    PasskeyLogin,
    Refresh,
    SimLogin,
    StepUp,
)
from anfu.crypto.tokens import sha256_hex
from anfu.db.auth_store import SqlAuthStore
from anfu.db.factor_store import SqlFactorStore
from anfu.db.uow import SqlUnitOfWork
from anfu.db.user_store import SqlUserStore
from anfu.errors import AuthenticationFailed, InvalidRequest
from anfu.identity import service as identity
from anfu.identity.challenges import (
    AuthChallenge,
    ChallengeKind,
    Requirement,
    login_requirement,
    new_challenge,
)
from anfu.identity.service import User
from anfu.identity.step_up import binding_of, grant_from

# Which challenge methods can prove each amr value.
_METHODS_OF_AMR: dict[str, tuple[str, ...]] = {
    "pwd": ("password",), "sms": ("sms",), "otp": ("totp", "recovery_code"),
    "rec": ("recovery_code",), "swk": ("device",), "hwk": ("device", "passkey"),
    "uv": ("passkey",), "x509": ("certificate",)}


def methods_for(ch: AuthChallenge, available: set[str]) -> list[str]:
    """The methods that would move a login or reset challenge toward its requirement."""
    req = ch.requirement
    wanted = [amr for amr in req.all_of if amr not in ch.proofs]
    if req.any_of and not set(req.any_of) & set(ch.proofs):
        wanted += req.any_of
    offered: list[str] = []
    for amr in wanted:
        offered += [m for m in _METHODS_OF_AMR.get(amr, ()) if m in available
                    and m not in offered]
    return offered


def build_router(kit: IdentityKit, authenticator: Authenticator) -> APIRouter:
    platform = kit.platform
    router = APIRouter(prefix="/v1")
    current = Depends(auth_dependency(authenticator))

    def user_by_phone(phone: str) -> User | None:
        return platform.read(lambda conn: SqlUserStore(conn).user_by_phone(phone))

    def user_by_id(user_id: str | None) -> User | None:
        if user_id is None:
            return None
        return platform.read(lambda conn: SqlUserStore(conn).user(user_id))

    def available_methods(user_id: str, device_id: str | None = None) -> set[str]:
        def read(conn: Any) -> set[str]:
            factors = SqlFactorStore(conn)
            methods = {"password", "sms", *factors.enrolled_methods(user_id)}
            if device_id or factors.devices_of(user_id):
                methods.add("device")
            return methods

        return platform.read(read)

    async def save(ch: AuthChallenge) -> None:
        await platform.write(lambda uow: SqlAuthStore(uow.conn).insert_challenge(ch))

    def started(ch: AuthChallenge, methods: list[str]) -> Response:
        problem = step_up_problem(platform, ch.public(), methods, current=0,
                                  user_id=ch.user_id)
        body = {k: v for k, v in problem.extra.items() if k != "www_authenticate"}
        if "passkey" in methods and "passkey_options" not in body:
            # An unknown phone gets options too (no passkey allowed), as a customer without
            # passkeys does: the answer must not tell whether the number has an account.
            body["passkey_options"] = passkey_request_options(platform, ch.nonce, None)
        return json_response(body, 200)

    @router.post("/sessions", status_code=201, summary="Log in: password, then a second factor",
                 responses={401: {"description": "step_up_required with the challenge, or"
                                                 " invalid_credentials"}})
    async def login(body: Login, request: Request) -> Response:
        address = client_address(request)
        user = user_by_phone(body.phone)
        keys = kit.secret_keys("password", user.user_id if user else body.phone, address)
        locked = kit.locked(keys)
        # The hash runs even when locked or unknown: "locked", "wrong" and "no such phone"
        # take the same time and get the same answer.
        ok = await kit.password_matches(user.password_hash if user else None, body.password)
        if locked or user is None or not ok or user.status != "active":
            await kit.record_failure(keys, "identity:session:login_failed",
                                     user_id=user.user_id if user else None, address=address)
            raise AuthenticationFailed("phone or password is wrong", code="invalid_credentials")
        await kit.maybe_rehash(user, body.password)

        device = None if body.device_id is None else platform.read(
            lambda conn: SqlFactorStore(conn).device(body.device_id or ""))
        known = device is not None and device.active and device.user_id == user.user_id
        available = available_methods(user.user_id)
        now = platform.clock()
        ch = new_challenge(
            ChallengeKind.LOGIN, user_id=user.user_id, operation="session.login",
            requirement=login_requirement(known_device=known,
                                          totp_enrolled="totp" in available),
            client_address=address, now=now, proofs={"pwd": now},
            device_id=body.device_id if known else None)
        await save(ch)
        raise step_up_problem(platform, ch.public(), methods_for(ch, available), current=1,
                              user_id=user.user_id, detail="the password is right; this login"
                              " needs a second factor: answer the challenge")

    @router.post("/sessions/passkey", summary="Start a passkey login (returns its options)")
    async def passkey_login(body: PasskeyLogin, request: Request) -> Response:
        user = user_by_phone(body.phone)
        ch = new_challenge(ChallengeKind.LOGIN, user_id=user.user_id if user else None,
                           operation="session.login",
                           requirement=Requirement(all_of=("hwk", "uv"), acr=3),
                           client_address=client_address(request), now=platform.clock())
        await save(ch)
        return started(ch, ["passkey"])

    @router.post("/sessions/sim", status_code=201,
                 summary="Log in with the operator's network token (one factor)")
    async def sim_login(body: SimLogin, request: Request) -> Response:
        address = client_address(request)
        user = user_by_phone(body.phone)
        try:
            await platform.carrier.verify_network_token(token=body.network_token,
                                                        phone=body.phone)
        except NetworkTokenRefused as exc:
            await kit.record_failure([], "identity:sim:failed",
                                     user_id=user.user_id if user else None, address=address,
                                     check=exc.code)
            raise
        if user is None or user.status != "active":
            raise AuthenticationFailed("no active account has this phone number",
                                       code="invalid_credentials")
        # A SIM swapped lately is how phone numbers are stolen: the SIM alone no longer
        # proves the customer until the hold has passed.
        changed = await platform.carrier.last_sim_change(body.phone)
        hold = kit.settings.sim_change_hold_s
        if changed is not None and platform.clock() - changed.timestamp() < hold:
            await kit.record_failure([], "identity:sim:recently_changed", user_id=user.user_id,
                                     address=address, sim_changed_at=changed.isoformat())
            raise AuthenticationFailed(
                f"this number's SIM changed less than {hold // 3600} h ago, so the SIM alone"
                " cannot sign in; log in with the password and a second factor",
                code="sim_recently_changed")

        def open_sim(uow: SqlUnitOfWork) -> dict[str, Any]:
            tokens = kit.open_session(uow, user_id=user.user_id, proofs={"sim": uow.now},
                                      device=None, address=address)
            SqlAuthStore(uow.conn).audit("identity:session:login_succeeded", now=uow.now,
                                         user_id=user.user_id, client_address=address,
                                         session_id=tokens["session_id"], amr=["sim"])
            notify_other_devices(uow, user.user_id, None, address)
            return tokens

        return json_response(await platform.write(open_sim), 201)

    def notify_other_devices(uow: SqlUnitOfWork, user_id: str, device_id: str | None,
                             address: str) -> None:
        others = [d.device_id for d in SqlFactorStore(uow.conn).devices_of(user_id)
                  if d.device_id != device_id]
        SqlAuthStore(uow.conn).notify_devices(
            others, "new_sign_in", f"Your anfu account was signed in on a new device from"
            f" {address}. If this was not you, revoke it and change your password.", uow.now)

    @router.post("/auth/challenges/{challenge_id}/sms", status_code=202,
                 summary="Send the SMS code for a challenge")
    async def send_challenge_sms(challenge_id: str, request: Request) -> Response:
        ch = open_challenge(challenge_id)
        user = user_by_id(ch.user_id)
        if ch.kind is ChallengeKind.RESET:  # the person typed the number: tell nothing
            return json_response(await send_reset_code(kit, ch, user, client_address(request)),
                                 202)
        if user is None:  # a passkey login for an unknown phone: as for a known one
            return json_response({"expires_at": ch.expires_at}, 202)
        purpose, amount, payee = kit.sms_context(ch)
        sms = await kit.send_code(phone=user.phone, purpose=purpose,
                                  address=client_address(request), amount=amount,
                                  payee=payee, link=ch)
        return json_response({"sent_to": mask_phone(user.phone),
                              "expires_at": sms.expires_at}, 202)

    def open_challenge(challenge_id: str) -> AuthChallenge:
        ch = platform.read(lambda conn: SqlAuthStore(conn).challenge(challenge_id))
        if ch is None or not ch.kind.answerable:
            raise AuthenticationFailed("no such challenge; start again",
                                       code="challenge_expired")
        ch.check_open(platform.clock())
        return ch

    @router.post("/auth/challenges/{challenge_id}",
                 summary="Answer a login, step-up or reset challenge with one method")
    async def answer(challenge_id: str, body: ChallengeAnswer, request: Request) -> Response:
        address = client_address(request)
        ch = open_challenge(challenge_id)
        user = user_by_id(ch.user_id)
        if ch.kind is ChallengeKind.RESET and body.method != "sms" and "sms" not in ch.proofs:
            # The SMS code comes first, for every number alike, so nothing about the
            # account's other factors shows before the phone is proved.
            raise AuthenticationFailed("answer the SMS code first", code="sms_first")
        if user is None:
            if ch.kind is ChallengeKind.RESET:  # the same checks as for a known number
                if body.code is None:
                    raise InvalidRequest("this method needs `code`", code="invalid_request")
                await prove_reset_code(kit, ch, None, body.code, address)
            if body.method == "passkey":  # as for a known phone's unregistered passkey
                raise AuthenticationFailed("this passkey is not registered to the account",
                                           code="passkey_unknown")
            raise AuthenticationFailed("the answer does not match", code="invalid_credentials")
        amr = await kit.prove(ch, user, body, address)
        device = None
        if body.method in ("device", "certificate") and ch.kind is ChallengeKind.LOGIN:
            device = platform.read(lambda conn: SqlFactorStore(conn).device(
                ch.device_id or body.device_id or ""))

        def record(uow: SqlUnitOfWork) -> tuple[AuthChallenge, dict[str, Any] | None]:
            store = SqlAuthStore(uow.conn)
            current = store.challenge(challenge_id)
            assert current is not None
            current.check_open(uow.now)
            updated = current.with_proofs(amr, uow.now)
            store.save_proofs(updated)
            if body.method in ("device", "certificate"):
                SqlFactorStore(uow.conn).touch_device(body.device_id or updated.device_id or "",
                                                      uow.now)
            if not updated.satisfied(kit.policy, uow.now) or updated.kind is ChallengeKind.RESET:
                return updated, None
            if not store.complete(challenge_id, uow.now):
                raise AuthenticationFailed("this challenge was already completed",
                                           code="challenge_expired")
            return updated, finish(uow, updated, device, address)

        updated, result = await platform.write(record)
        if result is not None:
            return json_response(result, 201 if updated.kind is ChallengeKind.LOGIN else 200)
        if updated.kind is ChallengeKind.RESET and updated.satisfied(kit.policy,
                                                                     platform.clock()):
            return json_response({"challenge_id": challenge_id, "satisfied": True,
                                  "next": f"/v1/password-resets/{challenge_id}"}, 200)
        if updated.kind is ChallengeKind.STEP_UP:
            methods = offered_methods(platform, user.user_id, updated.device_id,
                                      updated.proofs, updated.requirement.acr)
        else:
            methods = methods_for(updated, available_methods(user.user_id, updated.device_id))
        raise step_up_problem(platform, updated.public(), methods,
                              current=kit.policy.acr(updated.proofs, platform.clock()),
                              user_id=user.user_id, detail="that proof was accepted; the"
                              f" challenge still needs one of: {', '.join(methods)}")

    def finish(uow: SqlUnitOfWork, ch: AuthChallenge, device: Any,
               address: str) -> dict[str, Any]:
        store = SqlAuthStore(uow.conn)
        assert ch.user_id is not None
        if ch.kind is ChallengeKind.STEP_UP:
            assert ch.session_id is not None
            binding = binding_of(ch)
            if binding is None:  # not a money move: the session itself is raised
                store.add_session_proofs(ch.session_id, ch.proofs)
            else:  # a money move: this approves that move only, once
                store.insert_grant(grant_from(ch, binding, kit.policy, uow.now))
            store.audit("identity:session:stepped_up", now=uow.now, user_id=ch.user_id,
                        session_id=ch.session_id, device_id=ch.device_id,
                        client_address=address, operation=ch.operation, amr=sorted(ch.proofs),
                        bound_to_operation=binding is not None)
            out = {"challenge_id": ch.challenge_id, "session_id": ch.session_id,
                   "acr": kit.policy.acr(ch.proofs, uow.now), "amr": sorted(ch.proofs)}
            if binding is not None:
                out["grant"] = {"operation": ch.operation, "amount": ch.amount,
                                "currency": ch.currency, "payee": ch.payee,
                                "single_use": True}
            return out
        bound = device if device is not None and ch.device_id else None
        tokens = kit.open_session(uow, user_id=ch.user_id, proofs=ch.proofs, device=bound,
                                  address=address)
        store.audit("identity:session:login_succeeded", now=uow.now, user_id=ch.user_id,
                    session_id=tokens["session_id"], device_id=ch.device_id,
                    client_address=address, amr=sorted(ch.proofs))
        kit.throttle(uow.conn, f"acct:password:{ch.user_id}").record_success(
            f"acct:password:{ch.user_id}", uow.now)
        if ch.device_id is None:
            notify_other_devices(uow, ch.user_id, None, address)
        return tokens

    @router.post("/sessions/refresh", status_code=201, summary="Rotate the refresh token")
    async def refresh(body: Refresh, request: Request,
                      dpop: str | None = Header(None, alias="DPoP")) -> Response:
        address = client_address(request)
        token_hash = sha256_hex(body.refresh_token.encode())
        row = platform.read(lambda conn: SqlUserStore(conn).refresh(token_hash))
        if row is not None:
            auth = platform.read(lambda conn: SqlAuthStore(conn).session_auth(row["session_id"]))
            if auth is not None and auth["jkt"]:
                await authenticator.verify_proof(request, dpop, jkt=auth["jkt"])

        def rotate(uow: SqlUnitOfWork) -> dict[str, Any] | None:
            issued = identity.rotate_refresh(SqlUserStore(uow.conn),
                                             refresh_token=body.refresh_token, now=uow.now,
                                             refresh_ttl_s=kit.settings.refresh_token_ttl_s)
            store = SqlAuthStore(uow.conn)
            if issued is None:
                store.audit("identity:session:refresh_reused", now=uow.now,
                            user_id=row["user_id"] if row else None,
                            session_id=row["session_id"] if row else None,
                            client_address=address)
                return None
            auth = store.session_auth(issued.session_id) or {}
            return kit.tokens(issued.user_id, issued.session_id, issued.refresh_token,
                              auth.get("jkt"), orjson.loads(auth.get("proofs") or "{}"),
                              uow.now)

        tokens = await platform.write(rotate)
        if tokens is None:
            raise AuthenticationFailed("this refresh token was already used: the session is"
                                       " revoked for safety; log in again",
                                       code="refresh_token_reused")
        return json_response(tokens, 201)

    @router.get("/sessions", summary="This customer's live sessions")
    async def list_sessions(c: AuthContext = current) -> Response:
        await authenticator.require(c, "session.list")
        rows = platform.read(lambda conn: SqlAuthStore(conn).sessions_of(c.user_id))
        return json_response({"sessions": [
            {"session_id": r["session_id"], "device_id": r["device_id"],
             "created_at": r["created_at"], "client_address": r["client_address"],
             "current": r["session_id"] == c.session_id} for r in rows]})

    @router.post("/sessions/current/step-up",
                 summary="Raise this session to an assurance level before it is needed",
                 responses={401: {"description": "step_up_required: answer the challenge"}})
    async def step_up(body: StepUp, c: AuthContext = current) -> Response:
        await authenticator.require(c, "session.step_up", level=body.level)
        return json_response({"session_id": c.session_id,
                              "acr": kit.policy.acr(c.proofs, platform.clock()),
                              "amr": sorted(c.proofs)})

    @router.delete("/sessions/current", status_code=204, summary="Log out this session")
    async def logout(c: AuthContext = current) -> Response:
        await platform.write(lambda uow: end_sessions(uow, c, everywhere=False))
        return Response(status_code=204)

    @router.delete("/sessions", status_code=204, summary="Log out everywhere")
    async def logout_everywhere(c: AuthContext = current) -> Response:
        await platform.write(lambda uow: end_sessions(uow, c, everywhere=True))
        return Response(status_code=204)

    def end_sessions(uow: SqlUnitOfWork, c: AuthContext, everywhere: bool) -> None:
        store = SqlAuthStore(uow.conn)
        if everywhere:
            store.revoke_sessions(reason="logout_everywhere", now=uow.now, user_id=c.user_id)
        else:
            SqlUserStore(uow.conn).revoke_session(c.session_id, "logout", uow.now)
        store.audit("identity:session:logout", now=uow.now, user_id=c.user_id,
                    session_id=c.session_id, device_id=c.device_id,
                    client_address=c.client_address, everywhere=everywhere)

    return router
