"""The pieces the identity routes share: hashing off the event loop, throttles, SMS codes,
session issue, and proving one method of a challenge."""

from __future__ import annotations

import asyncio
import base64
import logging
from functools import partial
from typing import Any

from anfu.adapters.sms import SmsUnavailable
from anfu.api.auth import b64url_decode
from anfu.bootstrap import Platform
from anfu.crypto import InvalidSignature
from anfu.crypto import passkeys as webauthn
from anfu.crypto.jose import JwkInvalid, device_message, parse_public_jwk
from anfu.crypto.otp import InvalidOtp, SecretBox, verify_recovery_code, verify_totp
from anfu.crypto.passwords import InvalidPassword
from anfu.crypto.tokens import random_token, sha256_hex
from anfu.db.auth_store import SqlAuthStore, SqlCodeStore
from anfu.db.factor_store import SqlFactorStore
from anfu.db.throttle_store import SqlThrottleStore
from anfu.db.uow import SqlUnitOfWork, new_id
from anfu.db.user_store import SqlUserStore
from anfu.errors import AuthenticationFailed, InvalidRequest, UpstreamFailed
from anfu.identity import codes
from anfu.identity.assurance import AuthPolicy
from anfu.identity.challenges import AuthChallenge, ChallengeKind
from anfu.identity.devices import Device
from anfu.identity.password_policy import check_new_password, normalise_password
from anfu.identity.service import User
from anfu.identity.throttle import (
    ADDRESS_DEFAULTS,
    KEYCLOAK_DEFAULTS,
    LockEvent,
    Throttle,
    account_key,
    address_key,
)
from anfu.money import Money
from anfu.pki import service as pki

log = logging.getLogger("anfu.identity")

_MONEY_PURPOSE = {"trade.pay": codes.Purpose.PAY, "transfer.create": codes.Purpose.TRANSFER,
                  "withdrawal.create": codes.Purpose.WITHDRAW,
                  "topup.create": codes.Purpose.TOPUP}


def parse_limits(text: str) -> tuple[codes.SendLimit, ...]:
    pairs = (part.strip().partition("/") for part in text.split(","))
    return tuple(codes.SendLimit(int(count), float(seconds)) for count, _, seconds in pairs)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def mask_phone(phone: str) -> str:
    return phone[:3] + "*" * max(len(phone) - 7, 0) + phone[-4:]


class IdentityKit:
    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.settings = platform.settings
        self.policy: AuthPolicy = platform.policy
        self.secret_box = SecretBox(platform.data_key)
        self.code_policy = codes.CodePolicy(
            phone_limits=parse_limits(self.settings.sms_phone_limits),
            address_limits=parse_limits(self.settings.sms_address_limits))
        self.dummy_hash = platform.passwords.hash("anfu-timing-equaliser")
        self._deliveries: set[asyncio.Task[None]] = set()

    # --- passwords ---
    # Hashing, verifying and the strength check (zxcvbn: up to ~0.1 s) run in the bounded
    # worker pool, never on the event loop, so a login flood cannot stall payments. Passwords
    # are NFKC-normalised first, so one password typed two ways is one password.
    async def new_password_hash(self, password: str, phone: str) -> str:
        """Check ``password`` against the policy, then hash it."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self.platform.hash_pool, partial(
            check_new_password, password, context=[phone, phone.lstrip("+")]))
        return await self.hash_password(password)

    async def hash_password(self, password: str) -> str:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.platform.hash_pool,
                                          self.platform.passwords.hash,
                                          normalise_password(password))

    async def password_matches(self, stored: str | None, password: str) -> bool:
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self.platform.hash_pool, self.platform.passwords.verify,
                                       stored or self.dummy_hash,
                                       normalise_password(password))
        except InvalidPassword:
            return False
        return stored is not None

    # --- throttles ---
    def throttle(self, conn: Any, key: str) -> Throttle:
        policy = ADDRESS_DEFAULTS if key.startswith("addr:") else KEYCLOAK_DEFAULTS

        def on_lock(event: LockEvent) -> None:
            log.warning("%s locked for %d s after %d failures (%s)", event.key.split(":")[0],
                        int(event.wait_s), event.failures, event.reason,
                        extra={"event": "identity:account:locked", "code": event.reason})
            user_id = event.key.rsplit(":", 1)[-1] if event.key.startswith("acct:") else None
            SqlAuthStore(conn).audit("identity:account:locked", now=event.at, user_id=user_id,
                                     secret=event.key.split(":")[1] if user_id else "address",
                                     wait_s=int(event.wait_s), failures=event.failures,
                                     reason=event.reason)

        return Throttle(SqlThrottleStore(conn), policy=policy, on_lock=on_lock)

    def locked(self, keys: list[str]) -> bool:
        now = self.platform.clock()
        return self.platform.read(lambda conn: any(
            self.throttle(conn, key).locked_until(key, now) for key in keys))

    async def record_failure(self, keys: list[str], name: str, *, user_id: str | None,
                             address: str, **detail: Any) -> None:
        def job(uow: SqlUnitOfWork) -> None:
            for key in keys:
                self.throttle(uow.conn, key).record_failure(key, uow.now)
            SqlAuthStore(uow.conn).audit(name, now=uow.now, user_id=user_id,
                                         client_address=address, **detail)

        await self.platform.write(job)

    def secret_keys(self, secret: str, user_id: str, address: str) -> list[str]:
        return [address_key(address), account_key(secret, user_id)]

    # --- sessions ---
    def open_session(self, uow: SqlUnitOfWork, *, user_id: str, proofs: dict[str, float],
                     device: Device | None, address: str) -> dict[str, Any]:
        session_id = new_id("s")
        SqlAuthStore(uow.conn).open_session(
            session_id=session_id, user_id=user_id, proofs=proofs,
            device_id=device.device_id if device else None,
            jkt=device.jkt if device else None, client_address=address, now=uow.now)
        refresh = random_token()
        SqlUserStore(uow.conn).insert_refresh(sha256_hex(refresh.encode()), user_id,
                                              session_id,
                                              uow.now + self.settings.refresh_token_ttl_s,
                                              uow.now)
        return self.tokens(user_id, session_id, refresh, device.jkt if device else None,
                           proofs, uow.now)

    def tokens(self, user_id: str, session_id: str, refresh: str, jkt: str | None,
               proofs: dict[str, float], now: float) -> dict[str, Any]:
        # jti: two tokens of one session minted in the same second still differ
        claims: dict[str, Any] = {"sub": user_id, "sid": session_id, "jti": random_token(9)}
        if jkt:
            claims["cnf"] = {"jkt": jkt}
        ttl = self.settings.access_token_ttl_s
        return {"access_token": self.platform.tokens.mint(claims, ttl),
                "token_type": "DPoP" if jkt else "Bearer", "expires_in": ttl,
                "refresh_token": refresh, "user_id": user_id, "session_id": session_id,
                "acr": self.policy.acr(proofs, now), "amr": sorted(proofs)}

    # --- SMS codes ---
    def sms_codes(self, uow: SqlUnitOfWork) -> codes.SmsCodes:
        return codes.SmsCodes(SqlCodeStore(uow.conn), key=self.platform.data_key,
                              policy=self.code_policy)

    def sms_context(self, ch: AuthChallenge) -> tuple[codes.Purpose, Money | None, str | None]:
        if ch.kind is ChallengeKind.RESET:
            return codes.Purpose.RESET_PASSWORD, None, None
        if ch.kind is ChallengeKind.LOGIN:
            return (codes.Purpose.LOGIN if ch.device_id else codes.Purpose.NEW_DEVICE), None, None
        money = _MONEY_PURPOSE.get(ch.operation)
        if money is not None and ch.amount is not None and ch.currency is not None:
            return money, Money(ch.amount, ch.currency), ch.payee or "anfu"
        return codes.Purpose.STEP_UP, None, None

    async def send_code(self, *, phone: str, purpose: codes.Purpose, address: str,
                        amount: Money | None = None, payee: str | None = None,
                        link: AuthChallenge | None = None) -> codes.SmsChallenge:
        issued = await self.issue_code(phone=phone, purpose=purpose, address=address,
                                       amount=amount, payee=payee, link=link)
        await self.deliver(issued, phone)
        return issued.challenge

    async def issue_code(self, *, phone: str, purpose: codes.Purpose, address: str,
                         amount: Money | None = None, payee: str | None = None,
                         link: AuthChallenge | None = None) -> codes.IssuedCode:
        """Record a code (counting it against the send limits) without sending it."""
        def issue(uow: SqlUnitOfWork) -> codes.IssuedCode:
            issued = self.sms_codes(uow).issue(phone=phone, purpose=purpose,
                                               client_address=address, now=uow.now,
                                               amount=amount, payee=payee)
            if link is not None:
                SqlAuthStore(uow.conn).set_sms_challenge(link.challenge_id,
                                                         issued.challenge_id)
            return issued

        return await self.platform.write(issue)

    async def deliver(self, issued: codes.IssuedCode, phone: str) -> None:
        try:
            await self.platform.sms.send(message_id=issued.challenge_id, phone=phone,
                                         text=issued.message)
        except SmsUnavailable as exc:
            raise UpstreamFailed("the SMS gateway did not take the message; ask for a new"
                                 " code", code="sms_unavailable") from exc

    def deliver_later(self, issued: codes.IssuedCode, phone: str) -> None:
        """Hand the code to the gateway without waiting for it, so that the answer takes the
        same time whether or not a message is sent (a password reset must not tell)."""
        async def send() -> None:
            try:
                await self.deliver(issued, phone)
            except UpstreamFailed:
                log.warning("the SMS gateway refused a reset code",
                            extra={"event": "identity:sms:unavailable"})

        task = asyncio.get_running_loop().create_task(send())
        self._deliveries.add(task)
        task.add_done_callback(self._deliveries.discard)

    # --- proving one method ---
    async def prove(self, ch: AuthChallenge, user: User, answer: Any,
                    address: str) -> list[str]:
        """The amr values ``answer`` proves for ``user`` on challenge ``ch``; raises
        AuthenticationFailed naming the failed check (after counting it)."""
        method = answer.method
        if method == "password":
            return await self.prove_password(user, _required(answer.password, "password"),
                                             address)
        if method == "sms":
            return await self._prove_sms(ch, user, _required(answer.code, "code"), address)
        if method in ("totp", "recovery_code"):
            return await self._prove_otp(user, method, _required(answer.code, "code"),
                                         address)
        if method == "device":
            return await self._prove_device(ch, user, answer, address)
        if method == "certificate":
            return await self._prove_certificate(ch, user, answer, address)
        return await self._prove_passkey(ch, user, _required(answer.credential, "credential"),
                                         address)

    async def prove_password(self, user: User, password: str, address: str) -> list[str]:
        keys = self.secret_keys("password", user.user_id, address)
        locked = self.locked(keys)
        ok = await self.password_matches(user.password_hash, password)
        if locked or not ok:
            await self.record_failure(keys, "identity:password:failed", user_id=user.user_id,
                                      address=address)
            raise AuthenticationFailed("phone or password is wrong", code="invalid_credentials")
        await self.maybe_rehash(user, password)
        return ["pwd"]

    async def maybe_rehash(self, user: User, password: str) -> None:
        """The cost was raised since this hash was made: store one at today's cost."""
        if self.platform.passwords.needs_rehash(user.password_hash):
            new_hash = await self.hash_password(password)
            await self.platform.write(lambda uow: SqlUserStore(uow.conn).set_password_hash(
                user.user_id, new_hash))

    async def _prove_sms(self, ch: AuthChallenge, user: User, code: str,
                         address: str) -> list[str]:
        return await self.prove_sms_code(ch, subject=user.user_id, user_id=user.user_id,
                                         phone=user.phone, code=code, address=address)

    async def prove_sms_code(self, ch: AuthChallenge, *, subject: str, user_id: str | None,
                             phone: str, code: str, address: str,
                             answerable: bool = True) -> list[str]:
        """Check the challenge's SMS code, counting failures against ``subject`` (the user
        id, or the phone of a number without an account). ``answerable=False``: a code
        nobody was sent, refused exactly as a wrong one is, after the same steps."""
        if ch.sms_challenge_id is None:
            raise AuthenticationFailed("no code was sent for this challenge; ask for one",
                                       code="sms_code_expired")
        keys = self.secret_keys("sms", subject, address)
        purpose, amount, payee = self.sms_context(ch)
        sms_id = ch.sms_challenge_id

        def verify(uow: SqlUnitOfWork) -> codes.SmsCodeRejected | None:
            try:
                used = self.sms_codes(uow).verify(challenge_id=sms_id, code=code, phone=phone,
                                                  purpose=purpose, now=uow.now, amount=amount,
                                                  payee=payee)
            except codes.SmsCodeRejected as exc:
                return exc  # the spent try must commit
            if not answerable:
                return codes.wrong_code(self.code_policy.max_attempts - used.attempts)
            return None

        if self.locked(keys):
            await self.record_failure(keys, "identity:sms:failed", user_id=user_id,
                                      address=address)
            raise codes.SmsCodeRejected("the code is not correct")
        refused = await self.platform.write(verify)
        if refused is not None:
            await self.record_failure(keys, "identity:sms:failed", user_id=user_id,
                                      address=address, check=refused.code)
            raise refused
        return ["sms"]

    async def _prove_otp(self, user: User, method: str, code: str, address: str) -> list[str]:
        keys = self.secret_keys("totp", user.user_id, address)
        now = self.platform.clock()
        row = self.platform.read(lambda conn: SqlFactorStore(conn).totp(user.user_id))
        if row is None or row["confirmed_at"] is None:
            raise InvalidRequest("no authenticator app is enrolled", code="totp_not_enrolled")
        wrong = AuthenticationFailed("the code is not correct", code=f"{method}_invalid")
        if self.locked(keys):
            await self.record_failure(keys, f"identity:{method}:failed", user_id=user.user_id,
                                      address=address)
            raise wrong
        try:
            if method == "totp":
                secret = self.secret_box.open(b64url_decode(row["secret_sealed"]),
                                              context=user.user_id.encode()).decode()
                step = verify_totp(secret, code, at=now, window=1, last_step=row["last_step"])
                used = await self.platform.write(
                    lambda uow: SqlFactorStore(uow.conn).use_totp_step(user.user_id, step))
            else:
                hashes = self.platform.read(
                    lambda conn: SqlFactorStore(conn).recovery_hashes(user.user_id))
                position = verify_recovery_code(code, hashes)
                used = await self.platform.write(lambda uow: SqlFactorStore(
                    uow.conn).use_recovery_code(user.user_id, position, uow.now))
            if not used:
                raise InvalidOtp("this code was already used", code=f"{method}_reused")
        except InvalidOtp as exc:
            reused = exc.code.endswith("reused")
            await self.record_failure(keys, f"identity:{method}:failed", user_id=user.user_id,
                                      address=address,
                                      check=f"{method}_reused" if reused else wrong.code)
            if not reused:
                raise wrong from None  # word for word the answer given while locked
            raise AuthenticationFailed(exc.detail, code=f"{method}_reused") from None
        await self.platform.write(lambda uow: self.throttle(uow.conn, keys[1]).record_success(
            keys[1], uow.now))
        return ["otp"] if method == "totp" else ["rec"]

    async def _prove_device(self, ch: AuthChallenge, user: User, answer: Any,
                            address: str) -> list[str]:
        device_id = ch.device_id or answer.device_id
        signature = _required(answer.signature, "signature")
        if answer.device_id and ch.device_id and answer.device_id != ch.device_id:
            raise AuthenticationFailed("answer with the device this challenge was issued to",
                                       code="device_mismatch")
        device = None if device_id is None else self.platform.read(
            lambda conn: SqlFactorStore(conn).device(device_id))
        if device is None or device.user_id != user.user_id or not device.active:
            raise AuthenticationFailed("this device is not bound to the account (or was"
                                       " revoked)", code="device_unknown")
        ch.check_device_window(self.platform.clock())
        try:
            key = parse_public_jwk(device.public_jwk)
            key.verify(b64url_decode(signature), device_message(
                ch.nonce, user.user_id, device.device_id, ch.operation))
        except (JwkInvalid, InvalidSignature, ValueError):
            await self.record_failure([], "identity:device:signature_failed",
                                      user_id=user.user_id, address=address,
                                      device_id=device.device_id)
            raise AuthenticationFailed("the device signature does not verify over"
                                       " ANFU-DEVICE-V1 with this challenge",
                                       code="device_signature_invalid") from None
        return [device.amr]

    async def _prove_certificate(self, ch: AuthChallenge, user: User, answer: Any,
                                 address: str) -> list[str]:
        """Book 3.8.4: the device signs the challenge with the key of its certificate, which
        must still be valid and unrevoked now."""
        if ch.device_id is None or "x509" not in ch.requirement.all_of:
            raise AuthenticationFailed("start a certificate login first: POST"
                                       " /v1/sessions/certificate", code="challenge_expired")
        device_id = ch.device_id
        now = self.platform.clock()
        cert = self.platform.read(
            lambda conn: pki.current_device_certificate(conn, device_id, now))
        if cert is None:
            await self.record_failure([], "identity:certificate:invalid", user_id=user.user_id,
                                      address=address, device_id=device_id)
            raise AuthenticationFailed("this device has no valid certificate (expired or"
                                       " revoked)", code="certificate_revoked")
        amr = await self._prove_device(ch, user, answer, address)
        return ["x509", *amr]

    async def _prove_passkey(self, ch: AuthChallenge, user: User, credential: dict[str, Any],
                             address: str) -> list[str]:
        platform = self.platform
        try:
            credential_id = b64url(webauthn.credential_id_of(credential))
        except webauthn.PasskeyInvalid as exc:
            raise AuthenticationFailed(f"passkey refused: {exc}", code="passkey_malformed") \
                from None
        row = platform.read(lambda conn: SqlFactorStore(conn).passkey(credential_id))
        if row is None or row["user_id"] != user.user_id:
            raise AuthenticationFailed("this passkey is not registered to the account",
                                       code="passkey_unknown")
        try:
            verified = webauthn.verify_authentication(
                credential, challenge=ch.nonce.encode("ascii"),
                rp_id=self.settings.webauthn_rp_id, origins=self.settings.passkey_origins,
                public_key=b64url_decode(row["public_key"]), sign_count=row["sign_count"])
        except webauthn.PasskeyInvalid as exc:
            await self.record_failure([], "identity:passkey:failed", user_id=user.user_id,
                                      address=address, check=exc.check)
            raise AuthenticationFailed(f"passkey refused: {exc}",
                                       code=f"passkey_{exc.check}") from None
        moved = await platform.write(lambda uow: SqlFactorStore(uow.conn).use_passkey(
            credential_id, row["sign_count"], verified.new_sign_count, uow.now))
        if not moved:
            raise AuthenticationFailed("this passkey was used concurrently; try again",
                                       code="passkey_sign_count")
        return ["hwk", "uv"] if verified.user_verified else ["hwk"]


def _required(value: Any, name: str) -> Any:
    if value is None:
        raise InvalidRequest(f"this method needs `{name}`", code="invalid_request")
    return value
