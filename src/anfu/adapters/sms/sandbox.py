"""SandboxSmsGateway: a stand-in for a real SMS gateway, for development and tests.

It delivers nothing. Every accepted message goes to an outbox that operators read (the
verification codes a developer would otherwise receive on a phone), and its delivery receipt
settles after a configurable latency measured on the injected clock: ``delivered``, or
``failed`` for a configurable share of messages. Numbers ending in ``0000`` always fail, so
tests can force a failed delivery. ``outage_rate`` makes a share of sends raise
``SmsUnavailable``; half of those outages happen after the message was queued, as a real
timeout can, so a retry with the same ``message_id`` finds it instead of sending it twice.

Because the outbox holds texts in clear, including one-time codes, the sandbox must never be
the gateway of a production deployment.

Thread-safe: the operators' readers (admin API, CLI) and the senders may run on different
threads; one lock guards the outbox and the random generator, and no await happens under it.
"""

from __future__ import annotations

import random
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice

from anfu import errors
from anfu.adapters.sms.base import (
    Clock,
    DeliveryStatus,
    SmsGateway,
    SmsReceipt,
    SmsUnavailable,
    utc,
)

FAIL_SUFFIX = "0000"
"""Messages to a number ending in these digits always end ``failed``."""

UNREACHABLE = "the handset is unreachable (sandbox: numbers ending in 0000 always fail)"
UNDELIVERABLE = "the network reported the message undeliverable (sandbox: simulated failure)"


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """One message as an operator sees it. ``text`` is left out of ``repr`` because it
    usually holds a one-time code, and reprs end up in logs."""

    message_id: str
    phone: str
    text: str = field(repr=False)
    sent_at: datetime
    status: DeliveryStatus
    segments: int
    updated_at: datetime
    reason: str = ""


@dataclass(frozen=True, slots=True)
class _Entry:
    message_id: str
    phone: str
    text: str
    segments: int
    gateway_reference: str
    sent_at: float
    settles_at: float
    outcome: DeliveryStatus  # what the receipt becomes at settles_at
    reason: str

    def receipt(self, now: float) -> SmsReceipt:
        queued = SmsReceipt(message_id=self.message_id, gateway_reference=self.gateway_reference,
                            status="queued", segments=self.segments,
                            queued_at=utc(self.sent_at), updated_at=utc(self.sent_at))
        if now < self.settles_at:
            return queued
        return queued.settle(self.outcome, at=utc(self.settles_at), reason=self.reason)

    def outbox_message(self, now: float) -> OutboxMessage:
        receipt = self.receipt(now)
        return OutboxMessage(message_id=self.message_id, phone=self.phone, text=self.text,
                             sent_at=receipt.queued_at, status=receipt.status,
                             segments=self.segments, updated_at=receipt.updated_at,
                             reason=receipt.reason)


class SandboxSmsGateway(SmsGateway):
    """``latency_ms`` is the typical time from queueing to the delivery receipt (each
    message draws between half and one and a half times it); ``failure_rate`` the share of
    messages that fail; ``outage_rate`` the share of sends that raise ``SmsUnavailable``.
    ``seed`` makes those draws repeatable and ``clock`` (Unix seconds) is the only source of
    time. The outbox keeps the newest ``retention`` messages; an older ``message_id`` is
    forgotten, as a real gateway forgets receipts after its retention period."""

    name = "sandbox"

    def __init__(self, *, latency_ms: int = 1000, failure_rate: float = 0.0,
                 outage_rate: float = 0.0, seed: int | None = None,
                 clock: Clock = time.time, retention: int = 10_000) -> None:
        if latency_ms < 0 or retention < 1:
            raise ValueError("latency_ms must be >= 0 and retention >= 1")
        if not (0.0 <= failure_rate <= 1.0 and 0.0 <= outage_rate <= 1.0):
            raise ValueError("failure_rate and outage_rate must be between 0 and 1")
        self._latency_s = latency_ms / 1000.0
        self._failure_rate = failure_rate
        self._outage_rate = outage_rate
        self._random = random.Random(seed)
        self._clock = clock
        self._retention = retention
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, _Entry] = OrderedDict()  # oldest first

    async def _submit(self, *, message_id: str, phone: str, text: str,
                      segments: int) -> SmsReceipt:
        with self._lock:
            now = self._clock()
            known = self._entries.get(message_id)
            if known is not None:
                return self._repeat(known, phone=phone, text=text, now=now)
            outage = self._random.random() < self._outage_rate
            if outage and self._random.random() < 0.5:
                raise SmsUnavailable("sandbox SMS gateway: simulated outage; retry with the"
                                     " same message_id")
            entry = self._queue(message_id=message_id, phone=phone, text=text,
                                segments=segments, now=now)
        if outage:
            # Queued, but the answer is lost on the way back: the caller must retry.
            raise SmsUnavailable("sandbox SMS gateway: simulated timeout after the message"
                                 " was queued; retry with the same message_id")
        return entry.receipt(now)

    def _repeat(self, known: _Entry, *, phone: str, text: str, now: float) -> SmsReceipt:
        if known.phone != phone or known.text != text:
            raise errors.Conflict(
                f"message_id {known.message_id} was already sent with another phone or text;"
                " use a new message_id for a new message", code="sms_message_id_reused")
        return known.receipt(now)

    def _queue(self, *, message_id: str, phone: str, text: str, segments: int,
               now: float) -> _Entry:
        settles_at = now + self._latency_s * self._random.uniform(0.5, 1.5)
        failed_by_chance = self._random.random() < self._failure_rate
        reference = f"SBXSMS{self._random.getrandbits(64):016x}"
        if phone.endswith(FAIL_SUFFIX):
            outcome: DeliveryStatus = "failed"
            reason = UNREACHABLE
        elif failed_by_chance:
            outcome, reason = "failed", UNDELIVERABLE
        else:
            outcome, reason = "delivered", ""
        entry = _Entry(message_id=message_id, phone=phone, text=text, segments=segments,
                       gateway_reference=reference, sent_at=now, settles_at=settles_at,
                       outcome=outcome, reason=reason)
        self._entries[message_id] = entry
        while len(self._entries) > self._retention:
            self._entries.popitem(last=False)
        return entry

    async def receipt(self, message_id: str) -> SmsReceipt:
        with self._lock:
            entry = self._entries.get(message_id)
            now = self._clock()
        if entry is None:
            raise errors.NotFound(f"the SMS gateway has no message {message_id}",
                                  code="sms_message_unknown")
        return entry.receipt(now)

    def outbox(self, phone: str | None = None, limit: int = 50) -> list[OutboxMessage]:
        """The newest ``limit`` messages, newest first, to ``phone`` or to anyone."""
        if limit < 1:
            raise errors.InvalidRequest("limit must be at least 1", code="invalid_limit")
        with self._lock:
            now = self._clock()
            newest_first = reversed(self._entries.values())
            chosen = list(islice((e for e in newest_first if phone is None or e.phone == phone),
                                 limit))
        return [entry.outbox_message(now) for entry in chosen]
