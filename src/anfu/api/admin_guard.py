"""The admin zone's gate, in front of every route, before any body is read or parsed:

1. ``Host`` must name the admin listener (``ANFU_ADMIN_HOSTS``): a page that rebinds its
   DNS name to 127.0.0.1, or a server-side fetch aimed at some other name, is refused with
   421 ``admin_host_refused`` even when it carries a leaked token.
2. Every path but ``/healthz`` needs ``Authorization: Bearer <operator token>``
   (401 ``operator_token_missing`` / ``operator_token_invalid``).

A gate rather than a route dependency: a route added later is covered without anyone
remembering to add a dependency (deny by default). Refusals are logged and counted in
``anfu_security_failures_total{zone="admin"}``."""

from __future__ import annotations

import logging

from starlette.types import ASGIApp, Receive, Scope, Send

from anfu.api.problems import problem, problem_of
from anfu.bootstrap import Platform
from anfu.crypto.operator_token import OperatorTokenInvalid, check_operator_token
from anfu.errors import AuthenticationFailed
from anfu.operator_credential import OperatorCredential

log = logging.getLogger("anfu.api")

OPEN_PATHS = frozenset({"/healthz"})


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


class AdminGuard:
    def __init__(self, app: ASGIApp, platform: Platform, credential: OperatorCredential,
                 hosts: frozenset[str]) -> None:
        self.app = app
        self.platform = platform
        self.credential = credential
        self.hosts = hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":  # the zone serves none: nothing to let through
            await send({"type": "websocket.close", "code": 1008})
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host = (header(scope, b"host") or "").strip().lower()
        if host not in self.hosts:
            self.count(scope, "admin_host_refused", f"Host {host[:80]!r} is not the admin zone")
            response = problem(
                421, "admin_host_refused", "Not the admin zone's name",
                "the admin zone answers only requests addressed to its own names"
                " (ANFU_ADMIN_HOSTS); this Host is not one of them")
            await response(scope, receive, send)
            return
        if scope["path"] not in OPEN_PATHS:
            try:
                digest = self.credential.digest()
                if digest is None:
                    raise OperatorTokenInvalid("no operator token is set (the token file is"
                                               " gone): `anfu admin token --rotate`")
                check_operator_token(header(scope, b"authorization"), digest)
            except AuthenticationFailed as exc:
                self.count(scope, exc.code, exc.detail)
                await problem_of(exc)(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def count(self, scope: Scope, code: str, detail: str) -> None:
        log.warning("refused: %s", detail, extra={"zone": "admin", "code": code,
                                                  "path": scope.get("path", "")})
        self.platform.metrics.security.labels("admin", code).inc()
