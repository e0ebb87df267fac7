"""The platform CA on the wire.

Public, no auth, on the mobile and merchant zones: ``/pki/ca/{ca_id}.crt``,
``/pki/crl/{ca_id}.crl``, the OCSP responder ``POST /pki/ocsp`` and ``GET /pki/ocsp/{b64}``
(a raw ASGI handler in front of the app: it answers from the pre-signed cache without
routing, middleware or JSON); ``/pki/pins`` is api/mtls.py's. Mobile: the session's device
certificate. Merchant: the signing merchant's client certificates. Admin: CAs, issuance,
revocation."""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import unquote

from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from anfu.api.auth import AuthContext, Authenticator, auth_dependency
from anfu.api.common import check_idempotency_key, idempotent_write, json_response, request_hash
from anfu.api.problems import problem
from anfu.bootstrap import Platform
from anfu.crypto import x509 as X
from anfu.db.factor_store import SqlFactorStore
from anfu.db.pki_store import SqlPkiStore
from anfu.db.uow import SqlUnitOfWork
from anfu.errors import Forbidden, NotFound
from anfu.merchants.model import VerifiedRequest
from anfu.pki import service as pki
from anfu.pki.ocsp import MAX_REQUEST_BYTES, responder

log = logging.getLogger("anfu.pki")
OCSP_TYPE = b"application/ocsp-response"
IdemKey = Annotated[str | None, Header(alias="Idempotency-Key")]


class CertificateRequest(BaseModel):
    csr: str = Field(min_length=1, max_length=16384, description="PKCS#10 request, PEM")


class AdminCertificateRequest(CertificateRequest):
    profile: str = Field(pattern="^(merchant|server)$")
    subject_id: str = Field(min_length=1, max_length=255)


class Revocation(BaseModel):
    reason: str = Field("unspecified", max_length=32,
                        description="RFC 5280 reason: unspecified, key_compromise,"
                        " affiliation_changed, superseded, cessation_of_operation, …")


# --- OCSP: a raw ASGI handler --------------------------------------------------------------

class OcspEndpoint:
    """``POST /pki/ocsp`` and ``GET /pki/ocsp/{base64}`` answered before routing."""

    def __init__(self, app: ASGIApp, platform: Platform) -> None:
        self.app = app
        self.platform = platform

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not path.startswith("/pki/ocsp"):
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        status, body = 200, b""
        if method == "POST" and path in ("/pki/ocsp", "/pki/ocsp/"):
            request, too_big = await _read_body(receive, MAX_REQUEST_BYTES)
            body = X.ocsp_error("malformed") if too_big else self._answer(request)
        elif method == "GET" and path.startswith("/pki/ocsp/"):
            body = self._answer(_decode_get(path[len("/pki/ocsp/"):]))
        else:
            # Each path serves one method: the request's own path says which (RFC 6960 A.1)
            allow = "POST" if path in ("/pki/ocsp", "/pki/ocsp/") else "GET"
            refused = problem(405, "method_not_allowed", "Request failed",
                              f"{path} answers {allow} only", headers={"Allow": allow})
            await refused(scope, receive, send)
            return
        headers = [(b"content-type", OCSP_TYPE), (b"content-length", str(len(body)).encode()),
                   (b"cache-control", b"no-transform")]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _answer(self, request: bytes) -> bytes:
        try:
            return responder(self.platform).answer(request, self.platform.clock())
        except Exception:  # never a 500 to an OCSP client: RFC 6960 internalError
            log.exception("OCSP responder failed")
            return X.ocsp_error("internal")


async def _read_body(receive: Receive, limit: int) -> tuple[bytes, bool]:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"", True
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return b"", True
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks), False


def _decode_get(segment: str) -> bytes:
    text = unquote(segment)
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_"
                                if ("-" in text or "_" in text) else None, validate=True)
    except (binascii.Error, ValueError):
        return b""


# --- public routes -------------------------------------------------------------------------

def install_public(app: FastAPI, platform: Platform) -> None:
    """The CA certificates, CRLs, OCSP and pins, on a zone's app (mobile or merchant).
    Outside production the CA is created here on first start."""
    if not platform.extras.get("pki.ready"):
        platform.extras["pki.ready"] = True
        try:
            pki.ensure_ca(platform)
        except Exception:  # the zone still serves; CA routes answer 503
            log.exception("the platform CA could not be set up")
    auth = pki.authority(platform)
    router = APIRouter(prefix="/pki", tags=["pki"])

    @router.get("/cas", summary="The root and issuing CAs: ids, validity, and where their"
                " certificates and CRLs are")
    async def public_cas() -> Response:
        listed = [{"ca_id": ca.ca_id, "kind": ca.kind, "parent_id": ca.parent_id,
                   "status": ca.status, "not_before": ca.not_before,
                   "not_after": ca.not_after, "certificate_url": f"/pki/ca/{ca.ca_id}.crt",
                   "crl_url": f"/pki/crl/{ca.ca_id}.crl" if ca.kind == "issuing" else None}
                  for ca in auth.cas() if ca.kind in ("root", "issuing")]
        return json_response({"cas": listed})

    @router.get("/ca/{ca_id}.crt", summary="A CA certificate (DER)")
    async def ca_certificate(ca_id: str) -> Response:
        ca = platform.read(lambda conn: SqlPkiStore(conn).ca(ca_id))
        if ca is None or ca.kind not in ("root", "issuing"):
            raise NotFound(f"no CA {ca_id}", code="ca_not_found")
        return Response(X.der_of(X.load_cert(ca.cert_pem)),
                        media_type="application/pkix-cert")

    @router.get("/crl/{ca_id}.crl", summary="The CRL of an issuing CA (DER)")
    async def crl(ca_id: str) -> Response:
        return Response(auth.crl(ca_id, platform.clock()), media_type="application/pkix-crl")

    @router.post("/ocsp", summary="OCSP (RFC 6960), POST: body is the DER request",
                 response_class=Response)
    async def ocsp_post() -> Response:  # pragma: no cover - answered by OcspEndpoint
        raise NotFound("served before routing", code="not_found")

    @router.get("/ocsp/{request_b64:path}", summary="OCSP (RFC 6960), GET: base64 request",
                response_class=Response)
    async def ocsp_get(request_b64: str) -> Response:  # pragma: no cover - OcspEndpoint
        raise NotFound("served before routing", code="not_found")

    app.include_router(router)
    app.add_middleware(OcspEndpoint, platform=platform)


# --- mobile: the device's certificate ------------------------------------------------------

def build_mobile_router(platform: Platform, authenticator: Authenticator) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["pki"])
    current = Depends(auth_dependency(authenticator))
    auth = pki.authority(platform)

    def bound_device(c: AuthContext) -> str:
        if c.device_id is None or c.jkt is None:
            raise Forbidden("a device certificate needs a session bound to a device key"
                            " (DPoP)", code="device_binding_required")
        return c.device_id

    @router.post("/devices/current/certificate", status_code=201,
                 summary="Issue (or renew) this device's certificate from a CSR of its key")
    async def issue(body: CertificateRequest, request: Request, key: IdemKey = None,
                    c: AuthContext = current) -> Response:
        key = check_idempotency_key(key, required=False)
        await authenticator.require(c, "certificate.issue")
        device_id = bound_device(c)
        jkt = c.jkt

        def effect(uow: SqlUnitOfWork) -> tuple[int, Any]:
            device = SqlFactorStore(uow.conn).device(device_id)
            if device is None or device.user_id != c.user_id or device.jkt != jkt:
                raise Forbidden("the session's key is not this device's bound key",
                                code="device_binding_required")
            facts = pki.DeviceFacts(device.device_id, device.user_id, device.jkt,
                                    device.public_jwk, device.active)
            # One job: the device check, the signature and the supersede are atomic. (Signing
            # on the event loop instead measured slower: the writer then waits for the GIL.)
            issued = pki.issue_device_certificate(uow, auth, device=facts, csr_pem=body.csr)
            return 201, issued.public(auth.ocsp_url)

        reply = await idempotent_write(
            platform, scope=f"user:{c.user_id}", key=key,
            fingerprint=request_hash("POST", request.url.path, await request.body()),
            effect=effect)
        responder(platform).invalidate()
        return reply

    @router.get("/devices/current/certificate", summary="This device's current certificate")
    async def current_certificate(c: AuthContext = current) -> Response:
        await authenticator.require(c, "device.list")
        device_id = bound_device(c)
        now = platform.clock()
        found = platform.read(lambda conn: pki.current_device_certificate_full(
            conn, device_id, now))
        if found is None:
            raise NotFound("this device has no valid certificate", code="certificate_not_found")
        return json_response(found.public(auth.ocsp_url))

    return router


# --- merchant: client certificates ---------------------------------------------------------

def build_merchant_router(platform: Platform, signed: Callable[..., Any], *,
                          route_class: type[APIRoute] = APIRoute) -> APIRouter:
    """``route_class``: the merchant zone's, which checks ``signed`` before the body parse."""
    router = APIRouter(prefix="/v1", tags=["pki"], route_class=route_class)
    auth = pki.authority(platform)
    merchant = Depends(signed)

    @router.post("/certificates", status_code=201,
                 summary="A client certificate (merchant profile) for a CSR")
    async def issue(body: CertificateRequest, request: Request, key: IdemKey = None,
                    who: VerifiedRequest = merchant) -> Response:
        key = check_idempotency_key(key, required=False)
        return await idempotent_write(
            platform, scope=f"merchant:{who.merchant_id}", key=key,
            fingerprint=request_hash("POST", request.url.path, await request.body()),
            effect=lambda uow: (201, pki.issue_certificate(
                uow, auth, profile="merchant", subject_id=who.merchant_id,
                csr_pem=body.csr).public(auth.ocsp_url)))

    @router.get("/certificates", summary="This merchant's certificates, newest first")
    async def listing(who: VerifiedRequest = merchant) -> Response:
        rows = platform.read(lambda conn: pki.list_certificates(
            conn, profile="merchant", subject_id=who.merchant_id))
        return json_response({"certificates": [r.public() for r in rows]})

    @router.post("/certificates/{serial}/revoke", summary="Revoke one of this merchant's"
                 " certificates (RFC 5280 reason)")
    async def revoke(serial: str, body: Revocation,
                     who: VerifiedRequest = merchant) -> Response:
        done = await platform.write(lambda uow: pki.revoke_certificate(
            uow, serial=serial, reason=body.reason, profile="merchant",
            subject_id=who.merchant_id))
        responder(platform).invalidate()
        return json_response(done.public())

    return router


# --- admin ---------------------------------------------------------------------------------

def build_admin_router(platform: Platform) -> APIRouter:
    router = APIRouter(prefix="/v1/pki", tags=["pki"])
    auth = pki.authority(platform)

    @router.get("/cas", summary="The platform's CA and OCSP signer certificates")
    async def cas() -> Response:
        return json_response({"cas": [c.public() for c in auth.cas()]})

    @router.post("/certificates", status_code=201, summary="Issue a merchant or server"
                 " certificate from a CSR")
    async def issue(body: AdminCertificateRequest) -> Response:
        done = await platform.write(lambda uow: pki.issue_certificate(
            uow, auth, profile=body.profile, subject_id=body.subject_id, csr_pem=body.csr))
        return json_response(done.public(auth.ocsp_url), 201)

    @router.get("/certificates", summary="Issued certificates, newest first")
    async def listing(profile: str | None = Query(None, max_length=16),
                      subject_id: str | None = Query(None, max_length=255)) -> Response:
        rows = platform.read(lambda conn: pki.list_certificates(
            conn, profile=profile, subject_id=subject_id))
        return json_response({"certificates": [r.public() for r in rows]})

    @router.post("/certificates/{serial}/revoke", summary="Revoke a certificate")
    async def revoke(serial: str, body: Revocation) -> Response:
        done = await platform.write(lambda uow: pki.revoke_certificate(
            uow, serial=serial, reason=body.reason))
        responder(platform).invalidate()
        return json_response(done.public())

    return router

