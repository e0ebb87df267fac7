"""What a customer manages about their own authentication: bound devices, the authenticator
app (TOTP) and its recovery codes, passkeys, password, phone number and high-value limit.
Each change asks the policy for its level first (adding a factor needs two factors)."""

from __future__ import annotations

import base64
from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from anfu.api.auth import AuthContext, Authenticator, auth_dependency, b64url_decode
from anfu.api.common import json_response
from anfu.api.identity_kit import IdentityKit, b64url
from anfu.api.schemas import (
    Body,
    Limits,
    PasskeyRegistration,
    PhoneChange,
    PhoneConfirm,
    Secret,
    TotpConfirm,
)
from anfu.crypto import passkeys as webauthn
from anfu.crypto.otp import (
    InvalidOtp,
    hash_recovery_code,
    new_recovery_codes,
    new_totp_secret,
    totp_qr_png,
    totp_qr_svg,
    totp_uri,
    verify_totp,
)
from anfu.db.auth_store import SqlAuthStore
from anfu.db.factor_store import SqlFactorStore
from anfu.db.uow import SqlUnitOfWork
from anfu.db.user_store import SqlUserStore
from anfu.errors import AuthenticationFailed, Conflict, InvalidRequest, NotFound
from anfu.identity import codes
from anfu.identity.challenges import ChallengeKind, Requirement, new_challenge
from anfu.identity.service import check_phone

MAX_PASSKEYS = 10


class SecretProof(Body):
    current_password: Secret


class ProvedPhoneChange(PhoneChange):
    current_password: Secret


def build_router(kit: IdentityKit, authenticator: Authenticator) -> APIRouter:
    platform = kit.platform
    router = APIRouter(prefix="/v1")
    current = Depends(auth_dependency(authenticator))

    def audit(uow: SqlUnitOfWork, name: str, c: AuthContext, **detail: Any) -> None:
        SqlAuthStore(uow.conn).audit(name, now=uow.now, user_id=c.user_id,
                                     session_id=c.session_id, device_id=c.device_id,
                                     client_address=c.client_address, **detail)

    async def reprove(c: AuthContext, body: SecretProof | ProvedPhoneChange) -> None:
        """A change that weakens the account's protection (a factor removed, the number
        codes go to) needs the password again, not only a live session."""
        user = platform.read(lambda conn: SqlUserStore(conn).user(c.user_id))
        assert user is not None
        await kit.prove_password(user, body.current_password, c.client_address)

    def tell_other_devices(uow: SqlUnitOfWork, c: AuthContext, kind: str, text: str) -> None:
        others = [d.device_id for d in SqlFactorStore(uow.conn).devices_of(c.user_id)
                  if d.device_id != c.device_id]
        SqlAuthStore(uow.conn).notify_devices(others, kind, text, uow.now)

    def phone_of(user_id: str) -> str:
        user = platform.read(lambda conn: SqlUserStore(conn).user(user_id))
        assert user is not None
        return user.phone

    # --- the account ---
    @router.get("/me", summary="Who I am, what this session proved, my factors")
    async def me(c: AuthContext = current) -> Response:
        def read(conn: Any) -> dict[str, Any]:
            factors = SqlFactorStore(conn)
            extras = factors.account_extras(c.user_id)
            totp = factors.totp(c.user_id)
            return {"user_id": c.user_id, "session_id": c.session_id,
                    "device_id": c.device_id,
                    "acr": kit.policy.acr(c.proofs, platform.clock()),
                    "amr": sorted(c.proofs),
                    "factors": {
                        "password": True,
                        "totp": bool(totp and totp["confirmed_at"]),
                        "recovery_codes_left": sum(h is not None for h in
                                                   factors.recovery_hashes(c.user_id)),
                        "devices": len(factors.devices_of(c.user_id)),
                        "passkeys": len(factors.passkeys_of(c.user_id))},
                    **extras}

        return json_response(platform.read(read))

    @router.put("/me/limits", summary="Set the amount above which a payment needs level 3")
    async def set_limits(body: Limits, c: AuthContext = current) -> Response:
        await authenticator.require(c, "limits.change")

        def change(uow: SqlUnitOfWork) -> dict[str, int]:
            factors = SqlFactorStore(uow.conn)
            limits = {**factors.account_extras(c.user_id)["high_value_limits"],
                      body.currency: body.high_value_minor}
            factors.set_limits(c.user_id, limits)
            audit(uow, "identity:limits:changed", c, limits=limits)
            return limits

        return json_response({"high_value_limits": await platform.write(change)})

    @router.post("/me/phone", status_code=202, summary="Change phone: send a code to the new one")
    async def change_phone(body: ProvedPhoneChange, request: Request,
                           c: AuthContext = current) -> Response:
        await authenticator.require(c, "phone.change")
        await reprove(c, body)
        check_phone(body.new_phone)
        if platform.read(lambda conn: SqlUserStore(conn).user_by_phone(body.new_phone)):
            raise Conflict("this phone number already has an account", code="phone_taken")
        sms = await kit.send_code(phone=body.new_phone, purpose=codes.Purpose.CHANGE_PHONE,
                                  address=c.client_address)
        return json_response({"sms_challenge_id": sms.challenge_id,
                              "expires_at": sms.expires_at}, 202)

    @router.post("/me/phone/confirm", summary="Change phone: prove the new number's code")
    async def confirm_phone(body: PhoneConfirm, c: AuthContext = current) -> Response:
        await authenticator.require(c, "phone.change")

        def confirm(uow: SqlUnitOfWork) -> codes.SmsCodeRejected | None:
            try:
                kit.sms_codes(uow).verify(challenge_id=body.sms_challenge_id, code=body.code,
                                          phone=body.new_phone,
                                          purpose=codes.Purpose.CHANGE_PHONE, now=uow.now)
            except codes.SmsCodeRejected as exc:
                return exc  # the spent try must commit
            SqlUserStore(uow.conn).set_phone(c.user_id, body.new_phone)
            store = SqlAuthStore(uow.conn)
            ended = store.revoke_sessions(reason="phone_changed", now=uow.now,
                                          user_id=c.user_id, except_session=c.session_id)
            others = [d.device_id for d in SqlFactorStore(uow.conn).devices_of(c.user_id)
                      if d.device_id != c.device_id]
            store.notify_devices(others, "phone_changed", "The phone number of your anfu"
                                 " account was changed. If this was not you, call us now.",
                                 uow.now)
            audit(uow, "identity:phone:changed", c, sessions_ended=ended)
            return None

        refused = await platform.write(confirm)
        if refused is not None:
            raise refused
        return json_response({"user_id": c.user_id, "phone": body.new_phone})

    # --- TOTP ---
    @router.post("/factors/totp", status_code=201, summary="Enrol an authenticator app")
    async def enroll_totp(c: AuthContext = current) -> Response:
        await authenticator.require(c, "factor.enroll")
        existing = platform.read(lambda conn: SqlFactorStore(conn).totp(c.user_id))
        if existing is not None and existing["confirmed_at"] is not None:
            raise Conflict("an authenticator app is already enrolled; remove it first",
                           code="totp_already_enrolled")
        secret = new_totp_secret()
        sealed = b64url(kit.secret_box.seal(secret.encode(), context=c.user_id.encode()))
        await platform.write(lambda uow: SqlFactorStore(uow.conn).put_pending_totp(
            c.user_id, sealed, uow.now))
        uri = totp_uri(secret, phone_of(c.user_id))
        return json_response({"secret": secret, "otpauth_uri": uri,
                              "qr_png": "data:image/png;base64,"
                              + base64.b64encode(totp_qr_png(uri)).decode(),
                              "qr_svg": totp_qr_svg(uri)}, 201)

    @router.post("/factors/totp/confirm", summary="Confirm with a first code; get recovery codes")
    async def confirm_totp(body: TotpConfirm, c: AuthContext = current) -> Response:
        await authenticator.require(c, "factor.enroll")
        row = platform.read(lambda conn: SqlFactorStore(conn).totp(c.user_id))
        if row is None or row["confirmed_at"] is not None:
            raise InvalidRequest("start an enrolment first", code="totp_not_pending")
        secret = kit.secret_box.open(b64url_decode(row["secret_sealed"]),
                                     context=c.user_id.encode()).decode()
        try:
            step = verify_totp(secret, body.code, at=platform.clock(), window=1)
        except InvalidOtp:
            raise AuthenticationFailed("the code is not correct; check the phone's clock",
                                       code="totp_invalid") from None
        recovery = new_recovery_codes(10)

        def confirm(uow: SqlUnitOfWork) -> None:
            factors = SqlFactorStore(uow.conn)
            if not factors.confirm_totp(c.user_id, step, uow.now):
                raise Conflict("already confirmed", code="totp_already_enrolled")
            factors.replace_recovery_codes(c.user_id, [hash_recovery_code(r) for r in recovery])
            audit(uow, "identity:totp:enrolled", c)

        await platform.write(confirm)
        return json_response({"enrolled": True, "recovery_codes": recovery})

    @router.delete("/factors/totp", status_code=204, summary="Remove the authenticator app")
    async def remove_totp(body: SecretProof, c: AuthContext = current) -> Response:
        await authenticator.require(c, "factor.remove")
        await reprove(c, body)

        def remove(uow: SqlUnitOfWork) -> None:
            SqlFactorStore(uow.conn).delete_totp(c.user_id)
            tell_other_devices(uow, c, "factor_removed", "The authenticator app was removed"
                               " from your anfu account. If this was not you, reset your"
                               " password now.")
            audit(uow, "identity:totp:removed", c)

        await platform.write(remove)
        return Response(status_code=204)

    # --- passkeys ---
    @router.post("/factors/passkeys/options", summary="Start a passkey registration")
    async def passkey_options(c: AuthContext = current) -> Response:
        await authenticator.require(c, "factor.enroll")
        existing = platform.read(lambda conn: SqlFactorStore(conn).passkeys_of(c.user_id))
        if len(existing) >= MAX_PASSKEYS:
            raise Conflict(f"at most {MAX_PASSKEYS} passkeys", code="too_many_passkeys")
        now = platform.clock()
        ch = new_challenge(ChallengeKind.STEP_UP, user_id=c.user_id, operation="factor.enroll",
                           requirement=Requirement(acr=3), client_address=c.client_address,
                           now=now, session_id=c.session_id)
        await platform.write(lambda uow: SqlAuthStore(uow.conn).insert_challenge(ch))
        phone = phone_of(c.user_id)
        options = webauthn.registration_options(
            rp_id=kit.settings.webauthn_rp_id, rp_name="anfu", user_handle=c.user_id.encode(),
            user_name=phone, display_name=phone, challenge=ch.nonce.encode("ascii"),
            exclude_credential_ids=[b64url_decode(r["credential_id"]) for r in existing])
        return json_response({"challenge_id": ch.challenge_id, "options": options})

    @router.post("/factors/passkeys", status_code=201, summary="Finish a passkey registration")
    async def register_passkey(body: PasskeyRegistration, c: AuthContext = current) -> Response:
        await authenticator.require(c, "factor.enroll")
        ch = platform.read(lambda conn: SqlAuthStore(conn).challenge(body.challenge_id))
        if ch is None or ch.user_id != c.user_id or ch.operation != "factor.enroll":
            raise AuthenticationFailed("no such registration; start again",
                                       code="challenge_expired")
        ch.check_open(platform.clock())
        try:
            passkey = webauthn.verify_registration(
                body.credential, challenge=ch.nonce.encode("ascii"),
                rp_id=kit.settings.webauthn_rp_id, origins=kit.settings.passkey_origins)
        except webauthn.PasskeyInvalid as exc:
            raise AuthenticationFailed(f"passkey registration refused: {exc}",
                                       code=f"passkey_{exc.check}") from None
        credential_id = b64url(passkey.credential_id)
        name = (body.name or "Passkey").strip()[:64] or "Passkey"

        def register(uow: SqlUnitOfWork) -> None:
            if not SqlAuthStore(uow.conn).complete(ch.challenge_id, uow.now):
                raise AuthenticationFailed("this registration was already used",
                                           code="challenge_expired")
            factors = SqlFactorStore(uow.conn)
            if factors.passkey(credential_id) is not None:
                raise Conflict("this passkey is already registered", code="passkey_taken")
            factors.insert_passkey(
                credential_id=credential_id, user_id=c.user_id, name=name,
                public_key=b64url(passkey.public_key), sign_count=passkey.sign_count,
                aaguid=passkey.aaguid, backed_up=passkey.backed_up,
                transports=",".join(passkey.transports), now=uow.now)
            audit(uow, "identity:passkey:registered", c, credential_id=credential_id)

        await platform.write(register)
        return json_response({"credential_id": credential_id, "name": name}, 201)

    @router.get("/factors/passkeys", summary="My passkeys")
    async def list_passkeys(c: AuthContext = current) -> Response:
        await authenticator.require(c, "factor.list")
        rows = platform.read(lambda conn: SqlFactorStore(conn).passkeys_of(c.user_id))
        return json_response({"passkeys": [
            {"credential_id": r["credential_id"], "name": r["name"], "aaguid": r["aaguid"],
             "backed_up": bool(r["backed_up"]), "created_at": r["created_at"],
             "last_used_at": r["last_used_at"]} for r in rows]})

    @router.delete("/factors/passkeys/{credential_id}", status_code=204,
                   summary="Remove a passkey")
    async def remove_passkey(credential_id: str, body: SecretProof,
                             c: AuthContext = current) -> Response:
        await authenticator.require(c, "factor.remove")
        await reprove(c, body)

        def remove(uow: SqlUnitOfWork) -> None:
            if not SqlFactorStore(uow.conn).delete_passkey(c.user_id, credential_id):
                raise NotFound("no such passkey", code="passkey_not_found")
            tell_other_devices(uow, c, "factor_removed", "A passkey was removed from your anfu"
                               " account. If this was not you, reset your password now.")
            audit(uow, "identity:passkey:removed", c, credential_id=credential_id)

        await platform.write(remove)
        return Response(status_code=204)

    return router
