"""The merchant zone: merchants' servers. Every request is signed (ANFU-SIG-V1) and every
response, errors included, carries the platform's ``Anfu-Signature``."""


import hashlib
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from anfu.api import mtls, pki, problems, public_trust, transparency
from anfu.api.common import MetricsMiddleware, add_health, json_response, path_and_query
from anfu.api.ledger_log import log_refund
from anfu.api.limits import install_body_limit
from anfu.api.mobile import statement_page
from anfu.api.schemas import Empty, NewRefund, NewTrade
from anfu.api.signed_first import already_verified, remember_verified, signed_first_route
from anfu.bootstrap import Platform
from anfu.db.ledger_store import balances_of
from anfu.db.merchant_store import SqlMerchantStore
from anfu.db.uow import SqlTradeStore, SqlUnitOfWork
from anfu.errors import NotFound
from anfu.ledger.model import AccountKind, AccountRef, OwnerType
from anfu.merchants import service as merchants
from anfu.merchants.model import Merchant, MerchantKey, VerifiedRequest
from anfu.notify.network import address_policy, vet_notify_url
from anfu.sigwire import (
    format_signature_header,
    new_nonce,
    request_binding,
    response_signing_bytes,
)
from anfu.trades import service as trades
from anfu.trades.model import Refund, Trade, TradeMode


class ResponseSigner:
    """Signs every merchant-zone response over status, request path and query, and body."""

    def __init__(self, app: ASGIApp, platform: Platform) -> None:
        self.app = app
        self.platform = platform

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
                return
            if message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if message.get("more_body"):
                    return
                body = b"".join(chunks)
                headers = [(k, v) for k, v in start.get("headers", [])
                           if k.lower() != b"content-length"]
                headers.append((b"content-length", str(len(body)).encode()))
                headers.append((b"anfu-signature", self.sign(start["status"], scope,
                                                             body).encode()))
                await send({**start, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
            await send(message)

        await self.app(scope, receive, capture)

    def sign(self, status: int, scope: Scope, body: bytes) -> str:
        signer = self.platform.keys.current  # once, so id, alg and signature agree
        timestamp, nonce = str(int(self.platform.clock())), new_nonce()
        authorization = next((v.decode("latin-1") for k, v in scope.get("headers", ())
                              if k == b"authorization"), None)
        merchant_id, request_nonce = request_binding(authorization)
        message = response_signing_bytes(status, path_and_query(scope), timestamp, nonce, body,
                                         merchant_id=merchant_id, request_nonce=request_nonce)
        return format_signature_header(key_id=signer.key_id, alg=signer.alg,
                                       timestamp=timestamp, nonce=nonce,
                                       signature=signer.sign(message))


def create_app(platform: Platform) -> FastAPI:
    app = FastAPI(title="anfu merchant zone", version="1", docs_url="/docs", redoc_url=None,
                  summary="Merchants' servers: signed requests (ANFU-SIG-V1), signed"
                  " responses and notifications")
    problems.install(app, "merchant",
                     lambda z, c: platform.metrics.security.labels(z, c).inc())
    install_body_limit(app, platform.settings.max_body_bytes, "merchant")  # 413 signed too
    mtls.install(app, platform)  # client certificates (inside the response signer)
    app.add_middleware(ResponseSigner, platform=platform)
    app.add_middleware(MetricsMiddleware, platform=platform, zone="merchant")
    add_health(app, "merchant")
    settings = platform.settings

    class _Directory:
        def merchant(self, merchant_id: str) -> Merchant | None:
            return platform.read(lambda c: SqlMerchantStore(c).merchant(merchant_id))

        def key(self, key_id: str) -> MerchantKey | None:
            return platform.read(lambda c: SqlMerchantStore(c).key(key_id))

    verifier = merchants.RequestVerifier(directory=_Directory(), cache=platform.key_cache,
                                         clock=platform.clock,
                                         window_s=settings.signature_window_s)

    async def signed(request: Request) -> VerifiedRequest:
        if (verified := already_verified(request)) is not None:
            return verified  # checked by the route, before the body was parsed
        body = await request.body()
        verified = verifier.verify(method=request.method, path_qs=path_and_query(request.scope),
                                   authorization=request.headers.get("authorization"),
                                   body=body)
        mtls.check_signer(platform, request.scope, verified.merchant_id)  # cert = signer
        await platform.write(lambda uow: merchants.remember_nonce(
            SqlMerchantStore(uow.conn), request=verified, window_s=settings.signature_window_s,
            now=uow.now))
        remember_verified(request, verified)
        return verified

    Signed = Annotated[VerifiedRequest, Depends(signed)]
    SignedFirst = signed_first_route(signed)
    router = APIRouter(prefix="/v1", route_class=SignedFirst)
    timers = trades.TradeTimers(pay_timeout_s=settings.pay_timeout_s,
                                confirm_timeout_s=settings.confirm_timeout_s,
                                max_pay_timeout_s=settings.max_pay_timeout_s)

    @router.post("/trades", status_code=201, summary="Create a trade")
    async def create_trade(body: NewTrade, auth: Signed) -> Response:
        notify_url = await vet_notify_url(body.notify_url, address_policy(settings),
                                          timeout_s=settings.notify_timeout_s)

        def job(uow: SqlUnitOfWork) -> tuple[Trade, bool]:
            merchant = SqlMerchantStore(uow.conn).merchant(auth.merchant_id)
            assert merchant is not None
            canonical = orjson.dumps(body.model_dump(), option=orjson.OPT_SORT_KEYS)
            return trades.create_trade(
                uow, merchant=trades.MerchantTerms(merchant.merchant_id, merchant.fee_bps,
                                                   merchant.notify_url),
                request=trades.TradeRequest(
                    out_trade_no=body.out_trade_no, amount=body.amount,
                    currency=body.currency, subject=body.subject, mode=TradeMode(body.mode),
                    notify_url=notify_url, pay_expire_s=body.pay_expire_s,
                    request_hash=hashlib.sha256(canonical).hexdigest()),
                timers=timers, max_amount=settings.max_amount)

        trade, created = await platform.write(job)
        return json_response(trade.public(), 201 if created else 200)

    def with_refunds(trade: Trade) -> dict[str, Any]:
        refunds = platform.read(lambda c: SqlTradeStore(c).refunds_of(trade.trade_no))
        return {**trade.public(), "refunds": [r.public() for r in refunds]}

    @router.get("/trades/{trade_no}", summary="A trade and its refunds")
    async def get_trade(trade_no: str, auth: Signed) -> Response:
        trade = platform.read(lambda c: SqlTradeStore(c).get(trade_no))
        if trade is None or trade.merchant_id != auth.merchant_id:
            raise NotFound(f"no trade {trade_no}", code="trade_not_found")
        return json_response(with_refunds(trade))

    @router.get("/trades", summary="Find a trade by out_trade_no")
    async def find_trade(auth: Signed, out_trade_no: str = Query(min_length=1,
                                                                max_length=64)) -> Response:
        trade = platform.read(lambda c: SqlTradeStore(c).by_out_trade_no(auth.merchant_id,
                                                                         out_trade_no))
        if trade is None:
            raise NotFound(f"no trade with out_trade_no {out_trade_no!r}",
                           code="trade_not_found")
        return json_response(with_refunds(trade))

    @router.post("/trades/{trade_no}/ship", summary="Mark goods shipped")
    async def ship(trade_no: str, auth: Signed, body: Empty | None = None) -> Response:
        trade = await platform.write(lambda uow: trades.ship_trade(
            uow, trade_no=trade_no, merchant_id=auth.merchant_id,
            confirm_timeout_s=settings.confirm_timeout_s))
        return json_response(trade.public())

    @router.post("/trades/{trade_no}/close", summary="Close an unpaid trade")
    async def close(trade_no: str, auth: Signed, body: Empty | None = None) -> Response:
        trade = await platform.write(lambda uow: trades.close_trade(
            uow, trade_no=trade_no, merchant_id=auth.merchant_id))
        return json_response(trade.public())

    @router.post("/trades/{trade_no}/refunds", status_code=201, summary="Refund, fully or"
                 " partly")
    async def refund(trade_no: str, body: NewRefund, auth: Signed) -> Response:
        fingerprint = hashlib.sha256(orjson.dumps(body.model_dump(),
                                                  option=orjson.OPT_SORT_KEYS)).hexdigest()
        def effect(uow: SqlUnitOfWork) -> tuple[Refund, Trade]:
            refund, trade = trades.refund_trade(
                uow, trade_no=trade_no, merchant_id=auth.merchant_id,
                out_refund_no=body.out_refund_no, amount=body.amount, reason=body.reason,
                request_hash=fingerprint)
            if refund.created_at == uow.now:  # made now, not found by a retry
                log_refund(uow, refund, trade)
            return refund, trade

        result, trade = await platform.write(effect)
        return json_response({"refund": result.public(), "trade": trade.public()}, 201)

    @router.get("/balance", summary="Settled balances per currency")
    async def balance(auth: Signed) -> Response:
        rows = platform.read(lambda c: balances_of(c, OwnerType.MERCHANT, auth.merchant_id,
                                                   AccountKind.SETTLEMENT))
        return json_response({"merchant_id": auth.merchant_id,
                              "balances": [b.public() for b in rows]})

    @router.get("/statement", summary="Settlement account entries, cursor-paginated")
    async def merchant_statement(auth: Signed, currency: str = Query(pattern="^[A-Z]{3}$"),
                                 cursor: int = Query(0, ge=0),
                                 limit: int = Query(50, ge=1, le=500)) -> Response:
        return json_response(statement_page(
            platform, AccountRef.settlement(auth.merchant_id, currency), cursor, limit))

    @router.get("/events", summary="Events and every delivery attempt")
    async def list_events(auth: Signed, cursor: int = Query(0, ge=0),
                          limit: int = Query(50, ge=1, le=500),
                          trade_no: str | None = Query(None, max_length=32)) -> Response:
        from anfu.db.outbox_store import events_page

        return json_response(platform.read(lambda c: events_page(
            c, merchant_id=auth.merchant_id, after=cursor, limit=limit, trade_no=trade_no)))

    @router.post("/events/{event_id}/redeliver", summary="Deliver an event again now")
    async def redeliver(event_id: str, auth: Signed) -> Response:
        from anfu.db.outbox_store import event_view, schedule_redelivery

        await platform.write(lambda uow: schedule_redelivery(
            uow.conn, merchant_id=auth.merchant_id, event_id=event_id, now=uow.now))
        return json_response(platform.read(lambda c: event_view(c, event_id)))

    app.include_router(router)
    app.include_router(pki.build_merchant_router(platform, signed, route_class=SignedFirst))
    app.include_router(transparency.build_merchant_receipts_router(platform, signed))
    public_trust.install(app, platform)
    return app
