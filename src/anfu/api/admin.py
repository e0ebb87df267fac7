"""The admin zone: operators. Loopback-only by default, and always behind the gate of
``api/admin_guard.py``: its own Host names, and ``Authorization: Bearer <operator token>``
on every call but /healthz (``ANFU_ADMIN_TOKEN``, or the bootstrap token of the first
start: ``anfu/operator_credential.py``)."""


from fastapi import APIRouter, FastAPI
from starlette.responses import Response

from anfu.api import admin_identity, bank_ops, pki, problems, txn_signing
from anfu.api.admin_guard import AdminGuard
from anfu.api.common import MetricsMiddleware, add_health, json_response
from anfu.api.limits import install_body_limit
from anfu.api.schemas import NewKey, NewMerchant
from anfu.api.transparency import OperatorActionLog, build_admin_router
from anfu.bootstrap import Platform
from anfu.db.ledger_store import check_invariants
from anfu.db.merchant_store import SqlMerchantStore
from anfu.errors import NotFound
from anfu.merchants import service as merchants
from anfu.notify.network import address_policy, vet_notify_url
from anfu.operator_credential import OperatorCredential


def create_app(platform: Platform, credential: OperatorCredential) -> FastAPI:
    app = FastAPI(title="anfu admin zone", version="1", docs_url="/docs", redoc_url=None,
                  summary="Operators: merchants, keys, ledger checks, metrics")
    settings = platform.settings
    problems.install(app, "admin", lambda z, c: platform.metrics.security.labels(z, c).inc())
    # Innermost first: the gate, then the body limit around it (a declared oversize body is
    # refused before the token is even looked at), then metrics around both.
    app.add_middleware(AdminGuard, platform=platform, credential=credential,
                       hosts=settings.admin_host_names)
    install_body_limit(app, settings.admin_max_body_bytes, "admin")
    app.add_middleware(MetricsMiddleware, platform=platform, zone="admin")
    # Every successful mutating call becomes an operator.action log entry
    app.add_middleware(OperatorActionLog, platform=platform)
    add_health(app, "admin")
    router = APIRouter(prefix="/v1")

    @app.get("/metrics", summary="Prometheus metrics")
    async def metrics() -> Response:
        return Response(platform.metrics.render(),
                        media_type="text/plain; version=0.0.4; charset=utf-8")

    @router.post("/merchants", status_code=201, summary="Register a merchant and its first key")
    async def create_merchant(body: NewMerchant) -> Response:
        fee = platform.settings.default_fee_bps if body.fee_bps is None else body.fee_bps
        await vet_notify_url(body.notify_url, address_policy(platform.settings),
                             timeout_s=platform.settings.notify_timeout_s)
        merchant, key = await platform.write(lambda uow: merchants.create_merchant(
            SqlMerchantStore(uow.conn), name=body.name, alg=body.alg,
            public_key_pem=body.public_key_pem, notify_url=body.notify_url, fee_bps=fee,
            now=uow.now))
        return json_response({**merchant.public(), "key_id": key.key_id, "alg": key.alg}, 201)

    @router.get("/merchants", summary="All merchants")
    async def list_merchants() -> Response:
        rows = platform.read(lambda c: SqlMerchantStore(c).list_merchants())
        return json_response({"merchants": [m.public() for m in rows]})

    @router.get("/merchants/{merchant_id}", summary="A merchant and its keys")
    async def get_merchant(merchant_id: str) -> Response:
        def read(conn: object) -> Response:
            store = SqlMerchantStore(conn)  # type: ignore[arg-type]
            merchant = store.merchant(merchant_id)
            if merchant is None:
                raise NotFound(f"no merchant {merchant_id}", code="merchant_not_found")
            return json_response({**merchant.public(),
                                  "keys": [k.public() for k in store.keys_of(merchant_id)]})

        return platform.read(read)

    @router.post("/merchants/{merchant_id}/keys", status_code=201, summary="Add a key")
    async def add_key(merchant_id: str, body: NewKey) -> Response:
        key = await platform.write(lambda uow: merchants.add_key(
            SqlMerchantStore(uow.conn), merchant_id=merchant_id, alg=body.alg,
            public_key_pem=body.public_key_pem, now=uow.now))
        return json_response(key.public(), 201)

    @router.post("/merchants/{merchant_id}/keys/{key_id}/revoke",
                 summary="Revoke a key (effective at once)")
    async def revoke_key(merchant_id: str, key_id: str) -> Response:
        key = await platform.write(lambda uow: merchants.revoke_key(
            SqlMerchantStore(uow.conn), merchant_id=merchant_id, key_id=key_id, now=uow.now,
            cache=platform.key_cache))
        return json_response(key.public())

    @router.get("/ledger/check", summary="Check the ledger's invariants now")
    async def ledger_check() -> Response:
        report = platform.read(check_invariants)
        return json_response({"ok": report.ok, "violations": report.violations,
                              "accounts": report.accounts, "transfers": report.transfers},
                             200 if report.ok else 500)

    admin_identity.build_router(platform, router)
    app.include_router(router)
    app.include_router(pki.build_admin_router(platform))  # CAs, issuance, revocation
    app.include_router(txn_signing.build_admin_router(platform))
    app.include_router(bank_ops.build_admin_router(platform))
    app.include_router(build_admin_router(platform))  # the log's auditor view
    return app
