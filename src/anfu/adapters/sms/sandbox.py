"""SandboxSmsGateway: a stand-in for a real SMS gateway, for development and tests.

It delivers nothing. Every accepted message goes to an outbox that operators read (the
verification codes a developer would otherwise receive on a phone), and its delivery receipt
settles after a configurable latency measured on the injected clock: ``delivered``, or
``failed`` for a configurable share of messages. Numbers ending in ``0000`` always fail, so
tests can force a failed delivery. ``outage_rate`` makes a share of sends raise
``SmsUnavailable``; half of those outages happen after the message was queued, as a real
timeout can, so a retry with the same ``message_id`` finds it instead of sending it twice.

With a ``state_path`` the outbox and the receipts live in a SQLite file that every worker
process, the CLI (``anfu sms outbox``) and the admin API share; without one they live in this
process only. A message's fate (its latency, outcome and gateway reference) is drawn when it
is queued and stored with it, so every reader computes the same receipt from the same row.

Because the outbox holds texts in clear, including one-time codes, the sandbox must never be
the gateway of a production deployment.

Thread-safe: the operators' readers (admin API, CLI) and the senders may run on different
threads and processes; no await happens while the state is locked.
"""

from __future__ import annotations

import random
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from anfu import errors
from anfu.adapters.sandbox_store import SandboxStore
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

# seq orders the outbox (queue order) and tells retention which messages are the oldest. The
# other columns are _Entry's fields, in its order.
SCHEMA = """
CREATE TABLE IF NOT EXISTS sms_message (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id TEXT NOT NULL UNIQUE,
    phone TEXT NOT NULL,
    text TEXT NOT NULL,
    segments INTEGER NOT NULL,
    gateway_reference TEXT NOT NULL,
    sent_at REAL NOT NULL,
    settles_at REAL NOT NULL,
    outcome TEXT NOT NULL,
    reason TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS sms_message_by_phone ON sms_message (phone, seq);
"""
_INSERT = ("INSERT INTO sms_message (message_id, phone, text, segments, gateway_reference,"
           " sent_at, settles_at, outcome, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
_SELECT = ("SELECT message_id, phone, text, segments, gateway_reference, sent_at, settles_at,"
           " outcome, reason FROM sms_message")


def default_state_path(home: Path) -> Path:
    """The sandbox SMS gateway's shared state under the platform home (``ANFU_HOME``)."""
    return home / "sandbox" / "sms.sqlite"


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

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> _Entry:
        return cls(*row)

    def as_row(self) -> tuple[str | int | float, ...]:
        return (self.message_id, self.phone, self.text, self.segments, self.gateway_reference,
                self.sent_at, self.settles_at, self.outcome, self.reason)

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
    forgotten, as a real gateway forgets receipts after its retention period.

    ``state_path`` is the SQLite file that instances in other processes share (None: the
    state lives in this instance only). They share messages, not draws: each instance keeps
    its own seeded generator."""

    name = "sandbox"

    def __init__(self, *, latency_ms: int = 1000, failure_rate: float = 0.0,
                 outage_rate: float = 0.0, seed: int | None = None,
                 clock: Clock = time.time, retention: int = 10_000,
                 state_path: Path | None = None) -> None:
        if latency_ms < 0 or retention < 1:
            raise ValueError("latency_ms must be >= 0 and retention >= 1")
        if not (0.0 <= failure_rate <= 1.0 and 0.0 <= outage_rate <= 1.0):
            raise ValueError("failure_rate and outage_rate must be between 0 and 1")
        self._latency_s = latency_ms / 1000.0
        self._failure_rate = failure_rate
        self._outage_rate = outage_rate
        self._random = random.Random(seed)
        self._random_lock = threading.Lock()
        self._clock = clock
        self._retention = retention
        self._store = SandboxStore(state_path, SCHEMA)

    @property
    def state_path(self) -> Path | None:
        return self._store.path

    async def _submit(self, *, message_id: str, phone: str, text: str,
                      segments: int) -> SmsReceipt:
        return await self._store.off_loop(lambda: self._submit_now(
            message_id=message_id, phone=phone, text=text, segments=segments))

    def _submit_now(self, *, message_id: str, phone: str, text: str,
                    segments: int) -> SmsReceipt:
        with self._store.write() as conn:
            now = self._clock()
            known = self._entry(conn, message_id)
            if known is not None:
                return self._repeat(known, phone=phone, text=text, now=now)
            with self._random_lock:
                outage = self._random.random() < self._outage_rate
                lost_before_queueing = outage and self._random.random() < 0.5
            if lost_before_queueing:
                raise SmsUnavailable("sandbox SMS gateway: simulated outage; retry with the"
                                     " same message_id")
            entry = self._queue(conn, message_id=message_id, phone=phone, text=text,
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

    def _queue(self, conn: sqlite3.Connection, *, message_id: str, phone: str, text: str,
               segments: int, now: float) -> _Entry:
        with self._random_lock:
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
        conn.execute(_INSERT, entry.as_row())
        # Everything older than the newest `retention` messages is forgotten.
        conn.execute("DELETE FROM sms_message WHERE seq <= (SELECT seq FROM sms_message"
                     " ORDER BY seq DESC LIMIT 1 OFFSET ?)", (self._retention,))
        return entry

    def _read_entry(self, message_id: str) -> _Entry | None:
        with self._store.read() as conn:
            return self._entry(conn, message_id)

    @staticmethod
    def _entry(conn: sqlite3.Connection, message_id: str) -> _Entry | None:
        row = conn.execute(_SELECT + " WHERE message_id = ?", (message_id,)).fetchone()
        return None if row is None else _Entry.from_row(row)

    async def receipt(self, message_id: str) -> SmsReceipt:
        entry = await self._store.off_loop(lambda: self._read_entry(message_id))
        now = self._clock()
        if entry is None:
            raise errors.NotFound(f"the SMS gateway has no message {message_id}",
                                  code="sms_message_unknown")
        return entry.receipt(now)

    def outbox(self, phone: str | None = None, limit: int = 50) -> list[OutboxMessage]:
        """The newest ``limit`` messages, newest first, to ``phone`` or to anyone."""
        if limit < 1:
            raise errors.InvalidRequest("limit must be at least 1", code="invalid_limit")
        with self._store.read() as conn:
            rows = conn.execute(_SELECT + " WHERE ?1 IS NULL OR phone = ?1"
                                " ORDER BY seq DESC LIMIT ?2", (phone, limit)).fetchall()
        now = self._clock()
        return [_Entry.from_row(row).outbox_message(now) for row in rows]
