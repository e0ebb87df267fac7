"""Request body size limits, enforced before anything reads a body: by ``Content-Length``
(refused at once, nothing read) and by the bytes that actually arrive (a chunked upload is
cut off at the first chunk over the limit; the rest is never buffered). Either way the
caller gets 413 ``body_too_large`` naming the limit, and the connection is closed so that
the server does not go on reading the rest."""

from __future__ import annotations

import logging

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from anfu.api.problems import problem

log = logging.getLogger("anfu.api")


def declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the HTTP parser refuses these before we see them
    return None


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int, zone: str) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.zone = zone

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = declared_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self.refuse(scope, send, declared)
            return
        received = 0
        refused = started = False

        async def limited_receive() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    refused = True
                    if not started:
                        await self.refuse(scope, send, None)
                    # What reads the body sees the client gone and stops reading.
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused:
                return  # the 413 went out: what the application says after it is dropped
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, limited_receive, guarded_send)

    async def refuse(self, scope: Scope, send: Send, declared: int | None) -> None:
        log.warning("refused: request body over %d bytes", self.max_bytes,
                    extra={"zone": self.zone, "code": "body_too_large",
                           "path": scope.get("path", "")})
        response = problem(
            413, "body_too_large", "The request body is too large",
            f"this zone takes request bodies of at most {self.max_bytes} bytes"
            + (f"; this one declared {declared}" if declared is not None else ""),
            headers={"Connection": "close"}, extra={"max_body_bytes": self.max_bytes})

        async def nothing() -> Message:
            return {"type": "http.disconnect"}

        await response(scope, nothing, send)


def install_body_limit(app: FastAPI, max_bytes: int, zone: str) -> None:
    """Call before the zone's other ``add_middleware`` calls: what is added first sits
    innermost, so metrics (and the merchant zone's response signature) cover the 413."""
    app.add_middleware(BodyLimit, max_bytes=max_bytes, zone=zone)
