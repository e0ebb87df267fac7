"""The unauthenticated trust routes the mobile and merchant zones both serve: the platform's
public keys, key pins for apps, the CA's certificates, CRLs and OCSP, and the transparency
log. Installed last on each zone, so the OCSP endpoint sits outermost and answers before
routing and the zone's other middleware."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI
from starlette.responses import Response

from anfu.api import pki, transparency
from anfu.api.common import json_response
from anfu.api.mtls import pins_router
from anfu.bootstrap import Platform
from anfu.keys import published_keys


def install(app: FastAPI, platform: Platform) -> None:
    router = APIRouter(prefix="/v1", tags=["platform keys"])

    @router.get("/platform/keys", summary="The platform's public keys (response, receipt,"
                " log), each with its purpose and validity; no authentication")
    async def platform_keys() -> Response:
        return json_response({"keys": published_keys(platform.keys, platform.receipt_keys,
                                                     platform.log_keys)})

    app.include_router(router)
    app.include_router(pins_router(platform))
    app.include_router(transparency.build_log_router(platform))
    pki.install_public(app, platform)
