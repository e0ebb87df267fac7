"""One delivery attempt of one outbox event: lease it, POST the signed body to its notify
URL through the pinned client (``notify/network.py``), record the attempt and schedule the
next (``notify/model.py``).

Nothing about one event can escape as an exception: a URL the client cannot parse, a name
that leads inside, a refused connection, a slow or broken server, or a bug in between is a
failed attempt, and the event goes on along its retry schedule to ``failed``. The attempt
log, which the merchant reads, names only an error class; the operator's log has the
detail. A merchant can therefore not tell open from closed ports, or learn what an
internal name resolves to, from the attempt log."""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from anfu.db import outbox_store
from anfu.notify.model import after_attempt, event_body
from anfu.notify.network import AddressRefused, HostUnresolvable
from anfu.notify.urls import NotifyTarget, NotifyUrlInvalid, parse_notify_url
from anfu.sigwire import format_signature_header, new_nonce, request_signing_bytes

if TYPE_CHECKING:
    from anfu.bootstrap import Platform

log = logging.getLogger("anfu.notify")
REPLY_READ_MAX = 64 * 1024  # a reply body is read this far (to reuse the connection), no more
LEASE_SLACK_S = 30


@dataclass(frozen=True, slots=True)
class Attempt:
    status_code: int | None
    error: str | None  # an error class: see error_class()

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def error_class(exc: BaseException) -> str:
    """The generic name the attempt log shows for a failed attempt."""
    if isinstance(exc, NotifyUrlInvalid | httpx.InvalidURL | httpx.UnsupportedProtocol):
        return "invalid_url"
    if isinstance(exc, AddressRefused):
        return "address_forbidden"
    if isinstance(exc, HostUnresolvable):
        return "dns_failed"
    if isinstance(exc, httpx.TimeoutException | TimeoutError):
        return "timeout"
    if isinstance(exc, httpx.ConnectError):
        cause: BaseException | None = exc
        while cause is not None:
            if isinstance(cause, ssl.SSLError):
                return "tls_failed"
            cause = cause.__cause__ or cause.__context__
        return "connect_failed"
    if isinstance(exc, httpx.ProtocolError | httpx.DecodingError):
        return "protocol_error"
    if isinstance(exc, httpx.TransportError):
        return "connection_lost"
    return "internal_error"


def signed_headers(platform: Platform, *, event_id: str, event_type: str, path_qs: str,
                   body: bytes) -> dict[str, str]:
    timestamp, nonce = str(int(platform.clock())), new_nonce()
    # One reading of the ring, so the key id and the signature match across a rotation.
    signer = platform.keys.current
    signature = signer.sign(request_signing_bytes("POST", path_qs, timestamp, nonce, body))
    return {"Content-Type": "application/json", "Anfu-Event-Id": event_id,
            "Anfu-Event-Type": event_type,
            "Anfu-Signature": format_signature_header(
                key_id=signer.key_id, alg=signer.alg, timestamp=timestamp, nonce=nonce,
                signature=signature)}


async def post_event(platform: Platform, client: httpx.AsyncClient, target: NotifyTarget, *,
                     event_id: str, event_type: str, body: bytes) -> Attempt:
    """POST once, within ``ANFU_NOTIFY_TIMEOUT_S`` for all of it. Never raises (but for
    cancellation); a 3xx is a failed attempt: redirects are not followed."""
    try:
        # The signature covers the path and query exactly as the client sends them.
        headers = signed_headers(platform, event_id=event_id, event_type=event_type,
                                 path_qs=target.target, body=body)
        async with asyncio.timeout(platform.settings.notify_timeout_s):
            async with client.stream("POST", target.url, content=body,
                                     headers=headers) as reply:
                read = 0
                async for chunk in reply.aiter_raw():
                    read += len(chunk)
                    if read > REPLY_READ_MAX:
                        break
                status = reply.status_code
    except Exception as exc:
        kind = error_class(exc)
        log.info("notification %s to %s failed: %s (%s: %s)", event_id, target.host, kind,
                 type(exc).__name__, exc)
        return Attempt(None, kind)
    return Attempt(status, "redirect_not_followed" if 300 <= status < 400 else None)


async def deliver_event(platform: Platform, client: httpx.AsyncClient, row: Any) -> None:
    """Lease the event, attempt it, record the attempt. Database failures propagate (the
    lease then runs out and the event is tried again); nothing else does."""
    lease = platform.clock() + platform.settings.notify_timeout_s + LEASE_SLACK_S
    claimed = await platform.write(lambda uow: outbox_store.claim(
        uow.conn, event_id=row.id, seen_next=row.next_attempt_at, lease_until=lease))
    if not claimed:
        return  # another worker has it
    started, t0 = platform.clock(), time.perf_counter()
    attempt = await _attempt(platform, client, row)
    done = row.attempts + 1
    outcome = after_attempt(attempts_done=done, succeeded=attempt.succeeded,
                            now=platform.clock(), schedule=platform.settings.notify_delays)
    label = {"delivered": "delivered", "pending": "retry", "failed": "failed"}[outcome.status]
    duration_ms = int((time.perf_counter() - t0) * 1000)
    await platform.write(lambda uow: outbox_store.record_attempt(
        uow.conn, event_id=row.id, attempt=done, started_at=started, duration_ms=duration_ms,
        status_code=attempt.status_code, error=attempt.error, outcome=label,
        next_attempt_at=outcome.next_attempt_at, now=uow.now))
    platform.metrics.deliveries.labels(label).inc()


async def _attempt(platform: Platform, client: httpx.AsyncClient, row: Any) -> Attempt:
    try:
        target = parse_notify_url(row.notify_url or "")
        body = event_body(event_id=row.id, type_=row.type, created_at=row.created_at,
                          data=row.data)
    except Exception as exc:  # a row the API would refuse today, or data that is not JSON
        kind = error_class(exc)
        log.warning("notification %s not sent: %s (%s)", row.id, kind, exc)
        return Attempt(None, kind)
    return await post_event(platform, client, target, event_id=row.id, event_type=row.type,
                            body=body)
