"""The mobile zone: customers' phones. Bearer access tokens; every money move takes an
``Idempotency-Key``."""


import asyncio
import hashlib
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request
from starlette.responses import Response

from anfu.adapters.bank import BankDeclined, BankUnavailable
from anfu.api import problems
from anfu.api.common import (
    MetricsMiddleware,
    add_health,
    check_idempotency_key,
    idempotent_write,
    json_response,
    request_hash,
    stored_answer,
)
from anfu.api.schemas import Login, MoneyMove, NewUser, P2PTransfer, Refresh
from anfu.bootstrap import Platform
from anfu.crypto.passwords import InvalidPassword
from anfu.crypto.tokens import TokenExpired, TokenInvalid
from anfu.db.ledger_store import balances_of, statement
from anfu.db.throttle_store import SqlThrottleStore
from anfu.db.uow import SqlTradeStore, SqlUnitOfWork, new_id
from anfu.db.user_store import SqlUserStore
from anfu.db.wallet_store import SqlWalletStore
from anfu.errors import (
    AuthenticationFailed,
    InvalidRequest,
    NotFound,
    UpstreamFailed,
)
from anfu.identity import service as identity
from anfu.identity.throttle import (
    ADDRESS_DEFAULTS,
    KEYCLOAK_DEFAULTS,
    LockEvent,
    Throttle,
    account_key,
    address_key,
)
from anfu.ledger.model import AccountKind, AccountRef, OwnerType
from anfu.trades import service as trades
from anfu.wallet import service as wallet

log = logging.getLogger("anfu.identity")


def log_lock(event: LockEvent) -> None:
    log.warning("%s: %s locked for %d s after %d failures (%s)", event.name,
                event.key.split(":")[0], int(event.wait_s), event.failures, event.reason,
                extra={"event": event.name, "code": event.reason})


IdemKey = Annotated[str | None, Header(alias="Idempotency-Key")]
BANK = "sandbox"


def create_app(platform: Platform) -> FastAPI:
    app = FastAPI(title="anfu mobile zone", version="1", summary="Customers' phones: wallet,"
                  " payments, escrow confirmations", docs_url="/docs", redoc_url=None)
    problems.install(app, "mobile", lambda z, c: platform.metrics.security.labels(z, c).inc())
    app.add_middleware(MetricsMiddleware, platform=platform, zone="mobile")
    add_health(app, "mobile")
    router = APIRouter(prefix="/v1")
    settings = platform.settings
    dummy_hash = platform.passwords.hash("anfu-timing-equaliser")

    def throttle(conn: Any, key: str) -> Throttle:
        policy = ADDRESS_DEFAULTS if key.startswith("addr:") else KEYCLOAK_DEFAULTS
        return Throttle(SqlThrottleStore(conn), policy=policy, on_lock=log_lock)

    def bearer_user(authorization: str | None) -> str:
        if not authorization or not authorization.startswith("Bearer "):
            raise AuthenticationFailed("send Authorization: Bearer <access_token>",
                                       code="token_missing")
        try:
            claims = platform.tokens.verify(authorization[7:])
        except TokenExpired as exc:
            raise AuthenticationFailed("the access token expired; refresh it",
                                       code="token_expired") from exc
        except TokenInvalid as exc:
            raise AuthenticationFailed("the access token is not valid",
                                       code="token_invalid") from exc
        user_id: str = claims["sub"]
        return user_id

    async def current_user(authorization: Annotated[str | None, Header()] = None) -> str:
        # async: a plain def dependency would cost a thread-pool hop on every request
        return bearer_user(authorization)

    User = Annotated[str, Depends(current_user)]

    async def hash_password(password: str) -> str:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(platform.hash_pool, platform.passwords.hash, password)

    async def password_matches(stored: str, password: str) -> bool:
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(platform.hash_pool, platform.passwords.verify, stored,
                                       password)
        except InvalidPassword:
            return False
        return True

    def tokens_for(session: identity.IssuedSession, status: int = 201) -> Response:
        access = platform.tokens.mint({"sub": session.user_id, "sid": session.session_id},
                                      settings.access_token_ttl_s)
        return json_response({"access_token": access, "token_type": "Bearer",
                              "expires_in": settings.access_token_ttl_s,
                              "refresh_token": session.refresh_token,
                              "user_id": session.user_id, "session_id": session.session_id},
                             status)

    @router.post("/users", status_code=201, summary="Create a customer account")
    async def create_user(body: NewUser) -> Response:
        identity.check_phone(body.phone)
        identity.check_password_policy(body.password)
        password_hash = await hash_password(body.password)
        user = await platform.write(lambda uow: identity.create_user(
            SqlUserStore(uow.conn), user_id=new_id("u"), phone=body.phone,
            password_hash=password_hash, now=uow.now))
        return json_response({"user_id": user.user_id, "phone": user.phone,
                              "created_at": user.created_at}, 201)

    @router.post("/sessions", status_code=201, summary="Log in with phone and password")
    async def login(body: Login, request: Request) -> Response:
        user = platform.read(lambda conn: SqlUserStore(conn).user_by_phone(body.phone))
        keys = [address_key(request.client.host if request.client else "unknown")]
        if user is not None:
            keys.append(account_key("password", user.user_id))
        locked = platform.read(lambda conn: any(
            throttle(conn, key).locked_until(key, platform.clock()) for key in keys))
        # The hash runs even when locked or unknown: "locked", "wrong" and "no such phone"
        # take the same time and get the same answer.
        ok = await password_matches(user.password_hash if user else dummy_hash, body.password)
        if locked or user is None or not ok or user.status != "active":
            await platform.write(lambda uow: [
                throttle(uow.conn, key).record_failure(key, uow.now) for key in keys])
            raise AuthenticationFailed("phone or password is wrong",
                                       code="invalid_credentials")

        def open_session(uow: SqlUnitOfWork) -> identity.IssuedSession:
            account = keys[-1]
            throttle(uow.conn, account).record_success(account, uow.now)
            return identity.open_session(
                SqlUserStore(uow.conn), user_id=user.user_id, session_id=new_id("s"),
                now=uow.now, refresh_ttl_s=settings.refresh_token_ttl_s)

        return tokens_for(await platform.write(open_session))

    @router.post("/sessions/refresh", status_code=201, summary="Rotate the refresh token")
    async def refresh(body: Refresh) -> Response:
        session = await platform.write(lambda uow: identity.rotate_refresh(
            SqlUserStore(uow.conn), refresh_token=body.refresh_token, now=uow.now,
            refresh_ttl_s=settings.refresh_token_ttl_s))
        if session is None:
            raise AuthenticationFailed("this refresh token was already used: the session is"
                                       " revoked for safety; log in again",
                                       code="refresh_token_reused")
        return tokens_for(session)

    @router.delete("/sessions/current", status_code=204, summary="Log out this session")
    async def logout(authorization: Annotated[str | None, Header()] = None) -> Response:
        bearer_user(authorization)
        session_id = platform.tokens.verify((authorization or "")[7:])["sid"]
        await platform.write(lambda uow: SqlUserStore(uow.conn).revoke_session(
            session_id, "logout", uow.now))
        return Response(status_code=204)

    @router.get("/wallet", summary="Balances per currency")
    async def get_wallet(user_id: User) -> Response:
        rows = platform.read(lambda conn: balances_of(conn, OwnerType.CUSTOMER, user_id,
                                                      AccountKind.WALLET))
        return json_response({"user_id": user_id, "balances": [b.public() for b in rows]})

    @router.get("/wallet/statement", summary="Wallet entries, oldest first, cursor-paginated")
    async def wallet_statement(user_id: User, currency: str = Query(pattern="^[A-Z]{3}$"),
                               cursor: int = Query(0, ge=0),
                               limit: int = Query(50, ge=1, le=500)) -> Response:
        return json_response(statement_page(platform, AccountRef.wallet(user_id, currency),
                                            cursor, limit))

    async def bank_operation(kind: str, user_id: str, body: MoneyMove, key: str | None,
                             raw: bytes, path: str) -> Response:
        key = check_idempotency_key(key, required=True)
        assert key is not None
        op_id = "b" + hashlib.sha256(f"{user_id}\n{kind}\n{key}".encode()).hexdigest()[:24]
        fingerprint = request_hash("POST", path, raw)
        scope = f"user:{user_id}"

        def begin(uow: SqlUnitOfWork) -> tuple[wallet.BankOperation | None, bytes | None]:
            stored = stored_answer(uow, scope, key, fingerprint)
            if stored is not None:
                return None, stored[1]
            return wallet.begin_bank_op(uow, SqlWalletStore(uow.conn), op_id=op_id,
                                        user_id=user_id, kind=kind, amount=body.amount,
                                        currency=body.currency, bank=BANK,
                                        max_amount=settings.max_amount), None

        op, stored = await platform.write(begin)
        if stored is not None:
            return Response(stored, 201, media_type="application/json",
                            headers={"Idempotent-Replayed": "true"})
        assert op is not None
        call = platform.bank.charge if kind == "topup" else platform.bank.payout
        try:
            reply = await call(reference=op_id, account=user_id, amount=body.amount,
                               currency=body.currency)
        except BankUnavailable as exc:
            raise UpstreamFailed(f"the bank did not answer ({exc}); retry with the same"
                                 " Idempotency-Key", code="bank_unavailable") from exc
        except BankDeclined as exc:
            outcome: dict[str, Any] = {"succeeded": False, "failure": str(exc)}
        else:
            outcome = {"succeeded": True, "bank_reference": reply.bank_reference,
                       "bank_signature": reply.signature.hex()}

        def finish(uow: SqlUnitOfWork) -> tuple[int, Any]:
            done = wallet.finish_bank_op(uow, SqlWalletStore(uow.conn), op_id=op_id,
                                         bank=BANK, **outcome)
            return 201, done.public()

        return await idempotent_write(platform, scope=scope, key=key, fingerprint=fingerprint,
                                      effect=finish)

    @router.post("/topups", status_code=201, summary="Add money from the bank")
    async def topup(body: MoneyMove, user_id: User, request: Request,
                    key: IdemKey = None) -> Response:
        return await bank_operation("topup", user_id, body, key, await request.body(),
                                    request.url.path)

    @router.post("/withdrawals", status_code=201, summary="Send money to the bank")
    async def withdraw(body: MoneyMove, user_id: User, request: Request,
                       key: IdemKey = None) -> Response:
        return await bank_operation("withdrawal", user_id, body, key, await request.body(),
                                    request.url.path)

    @router.post("/transfers", status_code=201, summary="Pay another customer")
    async def p2p(body: P2PTransfer, user_id: User, request: Request,
                  key: IdemKey = None) -> Response:
        key = check_idempotency_key(key, required=True)
        if (body.to_phone is None) == (body.to_user_id is None):
            raise InvalidRequest("give exactly one of to_phone and to_user_id",
                                 code="payee_required")

        def effect(uow: SqlUnitOfWork) -> tuple[int, Any]:
            users = SqlUserStore(uow.conn)
            payee = (users.user_by_phone(body.to_phone) if body.to_phone
                     else users.user(body.to_user_id or ""))
            if payee is None:
                raise NotFound("no customer with that phone or id", code="payee_not_found")
            return 201, wallet.transfer_p2p(
                uow, SqlWalletStore(uow.conn), transfer_no=new_id("P"), payer_id=user_id,
                payee_id=payee.user_id, amount=body.amount, currency=body.currency,
                memo=body.memo, max_amount=settings.max_amount)

        return await idempotent_write(
            platform, scope=f"user:{user_id}", key=key,
            fingerprint=request_hash("POST", request.url.path, await request.body()),
            effect=effect)

    @router.get("/trades/{trade_no}", summary="A trade, as a buyer sees it before paying")
    async def get_trade(trade_no: str, user_id: User) -> Response:
        del user_id
        trade = platform.read(lambda conn: SqlTradeStore(conn).get(trade_no))
        if trade is None:
            raise NotFound(f"no trade {trade_no}", code="trade_not_found")
        return json_response(trade.public())

    async def trade_action(trade_no: str, user_id: str, request: Request, key: str | None,
                           action: Any) -> Response:
        key = check_idempotency_key(key, required=False)

        def effect(uow: SqlUnitOfWork) -> tuple[int, Any]:
            return 200, action(uow, trade_no=trade_no, buyer_id=user_id).public()

        return await idempotent_write(
            platform, scope=f"user:{user_id}", key=key,
            fingerprint=request_hash("POST", request.url.path, await request.body()),
            effect=effect)

    @router.post("/trades/{trade_no}/pay", summary="Pay a trade from the wallet")
    async def pay(trade_no: str, user_id: User, request: Request,
                  key: IdemKey = None) -> Response:
        return await trade_action(trade_no, user_id, request, key, trades.pay_trade)

    @router.post("/trades/{trade_no}/confirm", summary="Confirm receipt: releases escrow")
    async def confirm(trade_no: str, user_id: User, request: Request,
                      key: IdemKey = None) -> Response:
        return await trade_action(trade_no, user_id, request, key, trades.confirm_trade)

    app.include_router(router)
    return app


def statement_page(platform: Platform, ref: AccountRef, cursor: int,
                   limit: int) -> dict[str, Any]:
    def read(conn: Any) -> dict[str, Any]:
        from sqlalchemy import text

        account_id = conn.execute(text(
            "SELECT id FROM accounts WHERE owner_type=:o AND owner_id=:i AND kind=:k AND"
            " currency=:c"), {"o": ref.owner_type.value, "i": ref.owner_id,
                              "k": ref.kind.value, "c": ref.currency}).scalar()
        if account_id is None:
            return {"currency": ref.currency, "entries": [], "next_cursor": None}
        rows = statement(conn, account_id, after=cursor, limit=limit)
        entries = [{"id": r.id, "transfer_id": r.transfer_id, "amount": r.amount,
                    "balance_after": r.balance_after, "created_at": r.created_at,
                    "reference": r.reference, "description": r.description} for r in rows]
        return {"currency": ref.currency, "entries": entries,
                "next_cursor": entries[-1]["id"] if len(entries) == limit else None}

    return platform.read(read)
