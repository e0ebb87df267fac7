"""Pieces shared by the zones: JSON responses, request hashing, idempotent writes,
health, request metrics."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from typing import Any

import orjson
from fastapi import FastAPI
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from anfu.bootstrap import Platform
from anfu.db.uow import SqlUnitOfWork
from anfu.errors import Conflict, InvalidRequest
from anfu.uow import IN_PROGRESS

JSON = "application/json"


def json_response(payload: Any, status: int = 200,
                  headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type=JSON,
                    headers=headers)


def path_and_query(scope: Scope) -> str:
    """The path and query exactly as the client sent them (what signatures cover)."""
    raw: bytes = scope.get("raw_path") or scope["path"].encode()
    query = scope.get("query_string", b"")
    return (raw + (b"?" + query if query else b"")).decode("latin-1")


def request_hash(method: str, path: str, body: bytes) -> str:
    return hashlib.sha256(method.encode() + b"\n" + path.encode() + b"\n" + body).hexdigest()


def check_idempotency_key(key: str | None, *, required: bool) -> str | None:
    if key is None:
        if required:
            raise InvalidRequest("this call moves money: send an Idempotency-Key header"
                                 " (e.g. a UUID) so that a retry cannot repeat it",
                                 code="idempotency_key_required")
        return None
    if not 1 <= len(key) <= 255 or not key.isprintable():
        raise InvalidRequest("Idempotency-Key must be 1-255 printable characters",
                             code="invalid_idempotency_key")
    return key


def stored_answer(uow: SqlUnitOfWork, scope: str, key: str,
                  fingerprint: str) -> tuple[int, bytes] | None:
    """The (status, body) kept for an earlier call with this key, if any. The key binds the
    whole request: the same key with another method, path or body is a conflict, checked
    before anything else. A key reserved by a call still in flight has no answer yet."""
    found = uow.idempotency.find(scope, key)
    if found is None:
        return None
    stored_hash, status, body = found
    if not hmac.compare_digest(stored_hash, fingerprint):
        raise Conflict("this Idempotency-Key was used with another request (another amount,"
                       " currency, payee or path): use a new key for a new request",
                       code="idempotency_key_reused")
    return None if status == IN_PROGRESS else (status, body.encode())


Effect = Callable[[SqlUnitOfWork], tuple[int, Any]]


async def idempotent_write(platform: Platform, *, scope: str, key: str | None,
                           fingerprint: str, effect: Effect) -> Response:
    """Run ``effect`` in the writer. With a key, the first response is stored in the same
    transaction as the effect; a repeat returns it, the same key with another body is 409."""

    def job(uow: SqlUnitOfWork) -> tuple[int, bytes, bool]:
        if key is not None and (stored := stored_answer(uow, scope, key, fingerprint)):
            return stored[0], stored[1], True
        status, payload = effect(uow)
        raw = orjson.dumps(payload)
        if key is not None:
            uow.idempotency.save(scope, key, fingerprint, status, raw.decode())
        return status, raw, False

    status, body, replayed = await platform.write(job)
    headers = {"Idempotent-Replayed": "true"} if replayed else None
    return Response(body, status_code=status, media_type=JSON, headers=headers)


def add_health(app: FastAPI, zone: str) -> None:
    @app.get("/healthz", tags=["health"], summary="Liveness of this listener")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "zone": zone}


class MetricsMiddleware:
    def __init__(self, app: ASGIApp, platform: Platform, zone: str) -> None:
        self.app = app
        self.zone = zone
        self.requests = platform.metrics.requests
        self.latency = platform.metrics.latency.labels(zone)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.latency.observe(time.perf_counter() - started)
            self.requests.labels(self.zone, str(status[0])).inc()

