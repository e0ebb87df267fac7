"""A deadline for the request head: uvicorn's httptools protocol times out only idle
keep-alive connections, so a client that opens a connection and never finishes its request
line and headers (slowloris) holds a socket, and a file descriptor, for as long as it
likes. Here a timer starts when a connection opens and when a new request's first byte
arrives; unless the head is complete (``on_headers_complete``) when it fires, the
connection gets 408 and is closed. Bodies are not timed: the size limit bounds them, and a
handler reading a slow body holds no more than one task."""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


def _reply(seconds: float) -> bytes:
    text = f"request line and headers not complete within {seconds:g} s\n".encode()
    return (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
            b"connection: close\r\ncontent-length: " + str(len(text)).encode() + b"\r\n\r\n"
            + text)


class HeadTimeoutMixin:
    """Mixed in before an ``HttpToolsProtocol`` (plain or the TLS one)."""

    head_timeout_s: float = 10.0
    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._arm_head_timer()

    def on_message_begin(self) -> None:
        super().on_message_begin()  # type: ignore[misc]
        if self._head_timer is None:
            self._arm_head_timer()

    def on_headers_complete(self) -> None:
        self._cancel_head_timer()
        super().on_headers_complete()  # type: ignore[misc]

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)  # type: ignore[misc]

    def _arm_head_timer(self) -> None:
        loop: asyncio.AbstractEventLoop = self.loop  # type: ignore[attr-defined]
        self._head_timer = loop.call_later(self.head_timeout_s, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        transport: asyncio.Transport = self.transport  # type: ignore[attr-defined]
        if transport.is_closing():
            return
        cycle = getattr(self, "cycle", None)
        if cycle is not None and not cycle.response_complete:
            return  # a request is being answered: its head was complete
        transport.write(_reply(self.head_timeout_s))
        transport.close()


def with_head_timeout(base: type[HttpToolsProtocol], seconds: float
                      ) -> type[HttpToolsProtocol]:
    """``base`` with the head deadline, as a class uvicorn can take for ``http=``."""
    return type(f"HeadTimeout{base.__name__}", (HeadTimeoutMixin, base),
                {"head_timeout_s": seconds})
