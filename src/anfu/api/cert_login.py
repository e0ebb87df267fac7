"""Certificate login (book 3.8.4): a phone holding a valid device certificate logs in by
signing a server challenge with the certificate's key.

``POST /v1/sessions/certificate`` checks the certificate (chain to the platform CA, validity,
device profile, status) and opens a login challenge for that device; the phone answers it at
``POST /v1/auth/challenges/{id}`` with method ``certificate`` and its signature over
``ANFU-DEVICE-V1``. The session is bound to the device key (DPoP) and proves ``x509`` plus the
key's own amr (``hwk`` or ``swk``): one factor, possession, so moving money asks for a step-up.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from anfu.api.auth import client_address, step_up_problem
from anfu.api.common import json_response
from anfu.api.identity_kit import IdentityKit
from anfu.api.schemas import CertificateLogin
from anfu.db.auth_store import SqlAuthStore
from anfu.db.factor_store import SqlFactorStore
from anfu.db.user_store import SqlUserStore
from anfu.errors import AuthenticationFailed, InvalidRequest
from anfu.identity.challenges import ChallengeKind, Requirement, new_challenge
from anfu.pki import service as pki

_PEM_BEGIN = "-----BEGIN CERTIFICATE-----"
_PEM_END = "-----END CERTIFICATE-----"


def certificate_der(text: str) -> bytes:
    """The DER of the first certificate in PEM text, or of base64 DER."""
    body = text.strip()
    if _PEM_BEGIN in body:
        body = body.split(_PEM_BEGIN, 1)[1].split(_PEM_END, 1)[0]
    try:
        return base64.b64decode("".join(body.split()), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest("certificate: send the PEM, or base64 of the DER",
                             code="certificate_malformed") from None


def build_router(kit: IdentityKit) -> APIRouter:
    platform = kit.platform
    router = APIRouter(prefix="/v1", tags=["sessions"])

    @router.post("/sessions/certificate",
                 summary="Start a certificate login: the device signs the challenge")
    async def certificate_login(body: CertificateLogin, request: Request) -> Response:
        address = client_address(request)
        der = certificate_der(body.certificate)
        now = platform.clock()
        try:
            cert = platform.read(lambda conn: pki.verify_certificate(
                conn, der, profile="device", now=now))
        except AuthenticationFailed as exc:
            await kit.record_failure([], "identity:certificate:refused", user_id=None,
                                     address=address, check=exc.code)
            raise
        device_id = cert.subject_id

        def facts(conn: Any) -> tuple[bool, bool]:
            device = SqlFactorStore(conn).device(device_id)
            user = SqlUserStore(conn).user(cert.user_id or "")
            return (device is not None and device.active and device.user_id == cert.user_id,
                    user is not None and user.status == "active")

        device_ok, user_ok = platform.read(facts)
        if not (device_ok and user_ok):
            await kit.record_failure([], "identity:certificate:refused", user_id=cert.user_id,
                                     address=address, check="device_revoked")
            raise AuthenticationFailed("this certificate's device or account is no longer"
                                       " active", code="device_unknown")
        ch = new_challenge(ChallengeKind.LOGIN, user_id=cert.user_id, operation="session.login",
                           requirement=Requirement(all_of=("x509",), acr=1),
                           client_address=address, now=now, device_id=device_id)
        await platform.write(lambda uow: SqlAuthStore(uow.conn).insert_challenge(ch))
        problem = step_up_problem(platform, ch.public(), ["certificate"], current=0,
                                  user_id=None)
        return json_response({k: v for k, v in problem.extra.items()
                              if k != "www_authenticate"}, 200)

    return router
