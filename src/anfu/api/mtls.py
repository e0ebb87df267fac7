"""The merchant zone's client certificates (``ANFU_MERCHANT_MTLS``) and the pinning data
for apps (``GET /pki/pins``).

Order of checks on a merchant-zone request, ``required`` mode:

1. TLS: the handshake asks for a certificate (CERT_OPTIONAL) and refuses one that does not
   chain to our CA.
2. :class:`ClientCertificates` (middleware): no certificate → 401 ``client_certificate_required``;
   the certificate's status (``anfu.pki.service.verify_certificate``, profile merchant) →
   401 ``certificate_revoked`` / ``certificate_expired`` / ``certificate_unknown`` / …
3. The signed-request dependency (``api/merchant.py``) calls :func:`check_signer`: a
   request signed for another merchant than the certificate's subject → 403
   ``client_certificate_mismatch``.

``optional`` mode skips 2's first refusal only: a certificate that is presented is checked
the same way. Public routes (health, PKI, log, platform keys, docs) need no certificate.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from anfu.api.common import json_response
from anfu.api.problems import problem_of
from anfu.bootstrap import Platform
from anfu.crypto import x509 as X
from anfu.errors import AnfuError, AuthenticationFailed, Forbidden
from anfu.pki.model import VerifiedCertificate
from anfu.pki.service import authority, verify_certificate
from anfu.tls import pem_certificates, serving_tls

log = logging.getLogger("anfu.mtls")

ZONE = "merchant"
STATE_KEY = "client_certificate"
PUBLIC_PATHS = ("/healthz", "/v1/platform/keys", "/docs", "/openapi.json")
PUBLIC_PREFIXES = ("/pki/", "/log/", "/docs/")
CACHE_TTL_S = 5.0          # a revocation reaches the merchant zone within this time
CACHE_MAX = 4096
PIN_MAX_AGE_S = 30 * 86400  # RFC 7469 max-age: root and issuing pins outlive a server renewal
PINS_CACHE_S = 60.0


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def client_certificate_pem(scope: Scope) -> str | None:
    """The client's certificate from the ASGI TLS extension, if it sent one."""
    tls = (scope.get("extensions") or {}).get("tls") or {}
    chain = tls.get("client_cert_chain") or ()
    return str(chain[0]) if chain else None


def verified_certificate(scope: Scope) -> VerifiedCertificate | None:
    """The merchant certificate :class:`ClientCertificates` checked for this request."""
    found = (scope.get("state") or {}).get(STATE_KEY)
    return found if isinstance(found, VerifiedCertificate) else None


def count_refusal(platform: Platform, exc: AnfuError, scope: Scope,
                  cert: VerifiedCertificate | None = None) -> None:
    """Structured log line and the security metric, like the zones' other refusals."""
    client = scope.get("client") or ("", 0)
    log.warning("refused: %s", exc.detail, extra={
        "zone": ZONE, "code": exc.code, "path": scope.get("path", ""),
        "client_addr": client[0], "cert_serial": cert.serial if cert else None,
        "cert_subject": cert.subject_id if cert else None})
    platform.metrics.security.labels(ZONE, exc.code).inc()


class CertificateChecker:
    """``verify_certificate`` with a short cache per certificate: a client on a keep-alive
    connection (or many connections) costs one chain check and one read per TTL."""

    def __init__(self, platform: Platform, ttl_s: float = CACHE_TTL_S) -> None:
        self.platform = platform
        self.ttl_s = ttl_s
        self._cache: dict[str, tuple[float, VerifiedCertificate]] = {}
        self._lock = threading.Lock()

    def check(self, pem: str) -> VerifiedCertificate:
        now = time.monotonic()
        hit = self._cache.get(pem)
        if hit is not None and hit[0] > now:
            return hit[1]
        der = ssl.PEM_cert_to_DER_cert(pem)
        cert = self.platform.read(lambda c: verify_certificate(
            c, der, profile="merchant", now=self.platform.clock()))
        with self._lock:
            if len(self._cache) >= CACHE_MAX:
                self._cache.clear()
            self._cache[pem] = (now + self.ttl_s, cert)
        return cert


class ClientCertificates:
    """ASGI middleware on the merchant zone (inside the response signer, so its problems
    are signed like every other answer)."""

    def __init__(self, app: ASGIApp, platform: Platform, mode: str) -> None:
        self.app = app
        self.platform = platform
        self.required = mode == "required"
        self.checker = CertificateChecker(platform)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_public(scope["path"]):
            await self.app(scope, receive, send)
            return
        pem = client_certificate_pem(scope)
        if pem is None:
            if self.required:
                await self.refuse(AuthenticationFailed(
                    "this zone requires a client certificate from the platform CA: connect"
                    " with your merchant certificate and key (TLS client authentication)",
                    code="client_certificate_required",
                    www_authenticate="ANFU-SIG-V1, mTLS"), scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        try:
            cert = self.checker.check(pem)
        except AuthenticationFailed as exc:
            exc.extra.setdefault("www_authenticate", "ANFU-SIG-V1, mTLS")
            await self.refuse(exc, scope, receive, send)
            return
        scope.setdefault("state", {})[STATE_KEY] = cert
        await self.app(scope, receive, send)

    async def refuse(self, exc: AnfuError, scope: Scope, receive: Receive, send: Send
                     ) -> None:
        count_refusal(self.platform, exc, scope)
        await problem_of(exc)(scope, receive, send)


def check_signer(platform: Platform, scope: Scope, merchant_id: str) -> None:
    """Called once the request signature is verified: when a client certificate was
    presented, the signing merchant must be its subject."""
    cert = verified_certificate(scope)
    if cert is not None and cert.subject_id != merchant_id:
        exc = Forbidden(f"the request is signed by merchant {merchant_id} but the TLS client"
                        f" certificate belongs to {cert.subject_id}: sign with the key of the"
                        " merchant whose certificate you connect with",
                        code="client_certificate_mismatch")
        count_refusal(platform, exc, scope, cert)
        raise exc


def install(app: FastAPI, platform: Platform) -> None:
    """Add the client-certificate check to the merchant app (call before the response
    signer is added, so that it runs inside it). Nothing when ``merchant_mtls`` is off."""
    settings = platform.settings
    if settings.merchant_mtls == "off":
        return
    if not settings.tls:
        raise ValueError("ANFU_MERCHANT_MTLS needs TLS: set ANFU_TLS=1 (anfu run --tls)")
    app.add_middleware(ClientCertificates, platform=platform, mode=settings.merchant_mtls)


# --- pinning data (book 2.2) -----------------------------------------------------------------

def pins_of(platform: Platform) -> list[dict[str, Any]]:
    """RFC 7469 pin-sha256 of every root and issuing CA still valid (the backup pins) and,
    when the listeners serve TLS, of the current server certificate."""
    now = platform.clock()
    out: list[dict[str, Any]] = []
    for kind in ("server", "issuing", "root"):
        if kind == "server":
            zone_tls = serving_tls(platform)
            pems = pem_certificates(Path(zone_tls.creds.cert_chain_pem).read_bytes())[:1] \
                if zone_tls is not None else []
        else:
            pems = [c.cert_pem for c in authority(platform).cas()
                    if c.kind == kind and c.not_after > now]
        for pem in pems:
            cert = X.load_cert(pem)
            out.append({"name": kind, "pin_sha256": X.pin_sha256(cert),
                        "not_after": X.cert_info(cert).not_after})
    return out


def pins_router(platform: Platform) -> APIRouter:
    """``GET /pki/pins`` for the mobile and merchant zones (no authentication)."""
    router = APIRouter(tags=["pki"])
    cached: list[Any] = [0.0, None]

    @router.get("/pki/pins", summary="Public-key pins for apps (RFC 7469 pin-sha256): the"
                " server certificate, and the issuing and root CAs as backup pins")
    async def tls_pins() -> Response:
        now = time.monotonic()
        if cached[1] is None or cached[0] < now:
            cached[:] = [now + PINS_CACHE_S, {"pins": pins_of(platform),
                                              "max_age": PIN_MAX_AGE_S}]
        return json_response(cached[1], headers={"Cache-Control": "public, max-age=60"})

    return router
