"""The mobile zone: customers' phones. Access tokens (DPoP-bound on a bound device); every
call asks the auth policy for its assurance level; every money move takes an
``Idempotency-Key``."""


import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request
from sqlalchemy import text
from starlette.responses import Response

from anfu.adapters.bank import BankDeclined, BankReplyMismatch, BankUnavailable
from anfu.adapters.carrier import SandboxCarrier
from anfu.api import (
    cert_login,
    devices,
    factors,
    passwords,
    pki,
    problems,
    public_trust,
    sessions,
    transparency,
    txn_signing,
)
from anfu.api.auth import AuthContext, Authenticator, auth_dependency, consume_step_up
from anfu.api.common import (
    MetricsMiddleware,
    add_health,
    check_idempotency_key,
    idempotent_write,
    json_response,
    request_hash,
    stored_answer,
)
from anfu.api.identity_kit import IdentityKit, mask_phone
from anfu.api.ledger_log import log_bank_op, log_payment, log_transfer
from anfu.api.limits import install_body_limit
from anfu.api.schemas import MoneyMove, NewUser, P2PTransfer, PasskeyLogin
from anfu.api.txn_signing import SIGNATURE_HEADER, TxnGate
from anfu.bootstrap import Platform
from anfu.db.ledger_store import balances_of, statement
from anfu.db.raw import Raw
from anfu.db.uow import SqlTradeStore, SqlUnitOfWork, new_id, trade_from_row
from anfu.db.user_store import SqlUserStore
from anfu.db.wallet_store import SqlWalletStore
from anfu.errors import Conflict, InvalidRequest, NotFound, UpstreamFailed
from anfu.identity import service as identity
from anfu.identity.txn_signing import TxnFacts, TxnOperation
from anfu.ledger.model import AccountKind, AccountRef, OwnerType
from anfu.money import Money
from anfu.trades import service as trades
from anfu.wallet import service as wallet

log = logging.getLogger("anfu.mobile")
IdemKey = Annotated[str | None, Header(alias="Idempotency-Key")]
TxnSignature = Annotated[str | None, Header(alias=SIGNATURE_HEADER)]
BANK = "sandbox"
BANK_PAYEE = (f"bank:{BANK}", "your bank account")


def create_app(platform: Platform) -> FastAPI:
    app = FastAPI(title="anfu mobile zone", version="1", summary="Customers' phones: wallet,"
                  " payments, escrow confirmations", docs_url="/docs", redoc_url=None)
    problems.install(app, "mobile", lambda z, c: platform.metrics.security.labels(z, c).inc())
    install_body_limit(app, platform.settings.max_body_bytes, "mobile")
    app.add_middleware(MetricsMiddleware, platform=platform, zone="mobile")
    add_health(app, "mobile")
    router = APIRouter(prefix="/v1")
    settings = platform.settings

    authenticator = Authenticator(platform)
    kit = IdentityKit(platform)
    gate = TxnGate(platform)
    current = Depends(auth_dependency(authenticator))

    @router.post("/users", status_code=201, summary="Create a customer account")
    async def create_user(body: NewUser) -> Response:
        identity.check_phone(body.phone)
        password_hash = await kit.new_password_hash(body.password, body.phone)
        user = await platform.write(lambda uow: identity.create_user(
            SqlUserStore(uow.conn), user_id=new_id("u"), phone=body.phone,
            password_hash=password_hash, now=uow.now))
        return json_response({"user_id": user.user_id, "phone": user.phone,
                              "created_at": user.created_at}, 201)

    @router.get("/wallet", summary="Balances per currency")
    async def get_wallet(c: AuthContext = current) -> Response:
        await authenticator.require(c, "wallet.read")
        user_id = c.user_id
        rows = platform.read(lambda conn: balances_of(conn, OwnerType.CUSTOMER, user_id,
                                                      AccountKind.WALLET))
        return json_response({"user_id": user_id, "balances": [b.public() for b in rows]})

    @router.get("/wallet/statement", summary="Wallet entries, oldest first, cursor-paginated")
    async def wallet_statement(c: AuthContext = current,
                               currency: str = Query(pattern="^[A-Z]{3}$"),
                               cursor: int = Query(0, ge=0),
                               limit: int = Query(50, ge=1, le=500)) -> Response:
        await authenticator.require(c, "wallet.read")
        user_id = c.user_id
        return json_response(statement_page(platform, AccountRef.wallet(user_id, currency),
                                            cursor, limit))

    async def bank_operation(kind: str, c: AuthContext, body: MoneyMove, key: str | None,
                             raw: bytes, path: str, signature: str | None = None) -> Response:
        key = check_idempotency_key(key, required=True)
        assert key is not None
        user_id = c.user_id
        fingerprint = request_hash("POST", path, raw)
        scope = f"user:{user_id}"
        # The key binds the whole request: compared before any policy step or bank call.
        earlier = platform.read(lambda conn: peek_answer(conn, platform, scope, key,
                                                         fingerprint))
        if earlier is not None:
            return replayed(earlier)
        grant = await authenticator.require(c, f"{kind}.create",
                                            amount=Money(body.amount, body.currency),
                                            payee="your bank account", payee_id=BANK_PAYEE[0])
        op_id = "b" + hashlib.sha256(f"{user_id}\n{kind}\n{key}".encode()).hexdigest()[:24]
        approval = None
        if kind == "withdrawal":
            approval = await gate.approve(c, TxnFacts(
                TxnOperation.WITHDRAWAL, op_id, body.amount, body.currency, *BANK_PAYEE),
                signature)
        evidence = approval.evidence if approval is not None else None

        def begin(uow: SqlUnitOfWork) -> tuple[wallet.BankOperation | None,
                                               tuple[int, bytes] | None]:
            stored = stored_answer(uow, scope, key, fingerprint)
            if stored is not None:
                return None, stored
            if uow.idempotency.find(scope, key) is None:
                uow.idempotency.reserve(scope, key, fingerprint)
            gate.commit(uow, approval, op_id)
            consume_step_up(uow, grant)
            return wallet.begin_bank_op(uow, SqlWalletStore(uow.conn), op_id=op_id,
                                        user_id=user_id, kind=kind, amount=body.amount,
                                        currency=body.currency, bank=BANK,
                                        max_amount=settings.max_amount), None

        op, stored = await platform.write(begin)
        if stored is not None:
            return replayed(stored)
        assert op is not None
        if op.status == "review":
            raise Conflict(f"bank operation {op.op_id} is held for reconciliation with the"
                           " bank; an operator settles it", code="bank_operation_in_review")
        # The bank is asked for the operation as recorded, never for the request's figures.
        call = platform.bank.charge if op.kind == "topup" else platform.bank.payout
        try:
            reply = await call(reference=op.op_id, account=op.user_id, amount=op.amount,
                               currency=op.currency)
        except BankUnavailable as exc:
            raise UpstreamFailed(f"the bank did not answer ({exc}); retry with the same"
                                 " Idempotency-Key", code="bank_unavailable") from exc
        except BankReplyMismatch as exc:
            reason, held = str(exc), op.op_id
            await platform.write(lambda uow: wallet.hold_for_reconciliation(
                SqlWalletStore(uow.conn), op_id=held, reason=reason))
            platform.metrics.security.labels("mobile", "bank_reply_mismatch").inc()
            log.warning("bank reply refused", extra={"op_id": op.op_id,
                                                     "check": f"bank_{exc.field}_mismatch"})
            raise UpstreamFailed(f"the bank's answer did not match operation {op.op_id}"
                                 f" ({exc.field} differs): nothing was booked, the operation"
                                 " is held for reconciliation", code="bank_reply_mismatch",
                                 operation_id=op.op_id) from None
        except BankDeclined as exc:
            outcome: dict[str, Any] = {"succeeded": False, "failure": str(exc)}
        else:
            outcome = {"succeeded": True, "bank_reference": reply.bank_reference,
                       "bank_signature": reply.signature.hex()}

        def finish(uow: SqlUnitOfWork) -> tuple[int, Any]:
            store = SqlWalletStore(uow.conn)
            before = store.bank_op(op_id)
            done = wallet.finish_bank_op(uow, store, op_id=op_id, bank=BANK, **outcome)
            if before is not None and before.status == "pending":
                log_bank_op(uow, done, *BANK_PAYEE, evidence)
            return 201, done.public()

        return gate.with_next_challenge(await idempotent_write(
            platform, scope=scope, key=key, fingerprint=fingerprint, effect=finish), approval)

    @router.post("/topups", status_code=201, summary="Add money from the bank")
    async def topup(body: MoneyMove, request: Request, key: IdemKey = None,
                    c: AuthContext = current) -> Response:
        return await bank_operation("topup", c, body, key, await request.body(),
                                    request.url.path)

    @router.post("/withdrawals", status_code=201, summary="Send money to the bank")
    async def withdraw(body: MoneyMove, request: Request, key: IdemKey = None,
                       signature: TxnSignature = None, c: AuthContext = current) -> Response:
        return await bank_operation("withdrawal", c, body, key, await request.body(),
                                    request.url.path, signature)

    @router.post("/transfers", status_code=201, summary="Pay another customer")
    async def p2p(body: P2PTransfer, request: Request, key: IdemKey = None,
                  signature: TxnSignature = None, c: AuthContext = current) -> Response:
        key = check_idempotency_key(key, required=True)
        assert key is not None
        if (body.to_phone is None) == (body.to_user_id is None):
            raise InvalidRequest("give exactly one of to_phone and to_user_id",
                                 code="payee_required")
        user_id = c.user_id
        fingerprint = request_hash("POST", request.url.path, await request.body())
        scope = f"user:{user_id}"
        earlier = platform.read(lambda conn: peek_answer(conn, platform, scope, key,
                                                         fingerprint))
        if earlier is not None:
            return replayed(earlier)
        facts = platform.read(lambda conn: payee_facts(conn, body, user_id))
        if facts is None:
            # Never decide for a payee the policy has not seen: an unknown payee is refused
            # (a payee signing up meanwhile cannot slip past step-up or signing).
            raise NotFound("no customer with that phone or id", code="payee_not_found")
        # Known before the write, so that the phone can sign it.
        transfer_no = "P" + hashlib.sha256(f"{user_id}\ntransfer\n{key}".encode()).hexdigest()[:20]
        grant = await authenticator.require(c, "transfer.create",
                                            amount=Money(body.amount, body.currency),
                                            payee=facts.masked_phone, payee_id=facts.user_id,
                                            first_time_payee=not facts.paid_before)
        approval = await gate.approve(c, TxnFacts(
            TxnOperation.TRANSFER, transfer_no, body.amount, body.currency, facts.user_id,
            facts.masked_phone), signature)
        evidence = approval.evidence if approval is not None else None

        def effect(uow: SqlUnitOfWork) -> tuple[int, Any]:
            # The decision above and this money move must rest on the same facts: read them
            # again in this transaction and refuse the move if any changed.
            now_facts = payee_facts(uow.conn, body, user_id)
            if now_facts is None or now_facts.user_id != facts.user_id or (
                    now_facts.paid_before is False and facts.paid_before is True):
                raise Conflict("the payee changed while this transfer was being decided;"
                               " check the payee and send it again with a new"
                               " Idempotency-Key", code="payee_changed")
            gate.commit(uow, approval, transfer_no)
            consume_step_up(uow, grant)
            done = wallet.transfer_p2p(
                uow, SqlWalletStore(uow.conn), transfer_no=transfer_no, payer_id=user_id,
                payee_id=facts.user_id, amount=body.amount, currency=body.currency,
                memo=body.memo, max_amount=settings.max_amount)
            log_transfer(uow, done, facts.masked_phone, evidence)
            return 201, done

        return gate.with_next_challenge(await idempotent_write(
            platform, scope=scope, key=key, fingerprint=fingerprint, effect=effect), approval)

    @router.get("/trades/{trade_no}", summary="A trade, as a buyer sees it before paying")
    async def get_trade(trade_no: str, c: AuthContext = current) -> Response:
        await authenticator.require(c, "trade.read")
        trade = platform.read(lambda conn: SqlTradeStore(conn).get(trade_no))
        if trade is None:
            raise NotFound(f"no trade {trade_no}", code="trade_not_found")
        public = trade.public()
        if trade.buyer_id != c.user_id:  # who paid a trade is for its buyer and merchant
            public["buyer_id"] = None
        return json_response(public)

    async def trade_action(trade_no: str, c: AuthContext, request: Request, key: str | None,
                           operation: str, action: Any, signature: str | None = None) -> Response:
        key = check_idempotency_key(key, required=False)
        user_id = c.user_id

        facts = platform.read(lambda conn: Raw(conn).row(_TRADE_FACTS,
                                                         {"t": trade_no, "u": user_id}))
        if facts is None:
            raise NotFound(f"no trade {trade_no}", code="trade_not_found")
        merchant_name = facts.pop("merchant_name")
        limits = facts.pop("buyer_limits")
        paid = bool(facts.pop("paid_before"))
        trade = trade_from_row(facts)
        grant = await authenticator.require(
            c, operation, amount=Money(trade.amount, trade.currency), payee=merchant_name,
            payee_id=trade.merchant_id, first_time_payee=not paid,
            user_limits=orjson.loads(limits) if limits else {})
        paying = operation == "trade.pay"
        approval = await gate.approve(c, TxnFacts(
            TxnOperation.PAYMENT, trade_no, trade.amount, trade.currency, trade.merchant_id,
            merchant_name), signature) if paying else None
        evidence = approval.evidence if approval is not None else None

        def effect(uow: SqlUnitOfWork) -> tuple[int, Any]:
            consume_step_up(uow, grant)
            done = action(uow, trade_no=trade_no, buyer_id=user_id)
            if paying and done.paid_at == uow.now:  # paid now, not a retry's earlier payment
                gate.commit(uow, approval, trade_no)
                log_payment(uow, done, merchant_name, evidence)
            return 200, done.public()

        return gate.with_next_challenge(await idempotent_write(
            platform, scope=f"user:{user_id}", key=key,
            fingerprint=request_hash("POST", request.url.path, await request.body()),
            effect=effect), approval)

    @router.post("/trades/{trade_no}/pay", summary="Pay a trade from the wallet")
    async def pay(trade_no: str, request: Request, key: IdemKey = None,
                  signature: TxnSignature = None, c: AuthContext = current) -> Response:
        return await trade_action(trade_no, c, request, key, "trade.pay", trades.pay_trade,
                                  signature)

    @router.post("/trades/{trade_no}/confirm", summary="Confirm receipt: releases escrow")
    async def confirm(trade_no: str, request: Request, key: IdemKey = None,
                      c: AuthContext = current) -> Response:
        return await trade_action(trade_no, c, request, key, "trade.confirm",
                                  trades.confirm_trade)

    app.include_router(router)
    app.include_router(sessions.build_router(kit, authenticator))
    app.include_router(factors.build_router(kit, authenticator))
    app.include_router(devices.build_router(kit, authenticator))
    app.include_router(passwords.build_router(kit, authenticator))
    app.include_router(txn_signing.build_router(gate, authenticator))
    app.include_router(cert_login.build_router(kit))
    app.include_router(transparency.build_mobile_receipts_router(platform, authenticator,
                                                                 current))
    app.include_router(pki.build_mobile_router(platform, authenticator))
    add_web_pages(app)
    # ANFU_SANDBOX_ROUTES (refused with ANFU_ENV=production by the settings)
    if platform.settings.sandbox_routes and isinstance(platform.carrier, SandboxCarrier):
        add_sandbox_carrier(app, platform.carrier)
    public_trust.install(app, platform)
    return app


# What deciding a payment's assurance level needs, in one round trip on the hot path: the
# trade, the payee's name, the buyer's own limits, and whether the buyer paid them before.
_TRADE_FACTS = (
    "SELECT t.*, m.name AS merchant_name, u.high_value_limits AS buyer_limits,"
    " EXISTS (SELECT 1 FROM trades p WHERE p.buyer_id = :u AND p.merchant_id = t.merchant_id"
    " AND p.paid_at IS NOT NULL) AS paid_before"
    " FROM trades t JOIN merchants m ON m.merchant_id = t.merchant_id"
    " LEFT JOIN users u ON u.user_id = :u WHERE t.trade_no = :t")


@dataclass(frozen=True, slots=True)
class PayeeFacts:
    """What the policy decides a transfer on, read again inside the transfer's transaction."""

    user_id: str
    masked_phone: str
    paid_before: bool


def payee_facts(conn: Any, body: P2PTransfer, payer_id: str) -> PayeeFacts | None:
    users = SqlUserStore(conn)
    payee = (users.user_by_phone(body.to_phone) if body.to_phone
             else users.user(body.to_user_id or ""))
    if payee is None:
        return None
    paid = conn.execute(text(_PAID_BEFORE), {"u": payer_id, "p": payee.user_id}).first()
    return PayeeFacts(payee.user_id, mask_phone(payee.phone), paid is not None)


_PAID_BEFORE = "SELECT 1 FROM p2p_transfers WHERE payer_id = :u AND payee_id = :p LIMIT 1"


def peek_answer(conn: Any, platform: Platform, scope: str, key: str,
                fingerprint: str) -> tuple[int, bytes] | None:
    """Before any policy step: the stored answer for this key, or 409 if the key was used
    with another request (the writer's transaction checks again, authoritatively)."""
    return stored_answer(platform.uow(conn), scope, key, fingerprint)


def replayed(stored: tuple[int, bytes]) -> Response:
    return Response(stored[1], stored[0], media_type="application/json",
                    headers={"Idempotent-Replayed": "true"})


def add_web_pages(app: FastAPI) -> None:
    page = (Path(__file__).parent / "web" / "passkeys.html").read_bytes()

    @app.get("/web/passkeys", include_in_schema=False)
    async def passkeys_page() -> Response:
        return Response(page, media_type="text/html; charset=utf-8",
                        headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY",
                                 "Referrer-Policy": "no-referrer"})


def add_sandbox_carrier(app: FastAPI, carrier: SandboxCarrier) -> None:
    """Plays the operator's side of the phone's data connection, which hands the app a
    network token (header enrichment). Only with the sandbox carrier and
    ANFU_SANDBOX_ROUTES=true, never in production."""

    @app.post("/sandbox/carrier/network-token", summary="Sandbox operator: a network token",
              tags=["sandbox"])
    async def network_token(body: PasskeyLogin) -> Response:
        return json_response({"network_token": carrier.issue_token(body.phone),
                              "phone": body.phone})


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
