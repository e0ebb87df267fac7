"""The contract with an SMS gateway (the operator that hands text messages to the phone
networks).

A send may time out after the gateway accepted the message, so every send carries the
platform's ``message_id`` and a gateway must treat a repeated id as the same message: it
answers with that message's receipt and never delivers it twice. The same id with another
phone or text is a programming error on our side and is refused as a conflict.

A message's delivery receipt moves ``queued`` → ``delivered`` | ``failed`` exactly once;
both end states are final. ``send`` answers as soon as the gateway has queued the message;
``receipt`` tells later whether a handset received it.

``SmsGateway`` checks what every real gateway refuses (a malformed number, an empty text, a
text longer than five concatenated segments) before any network round trip, so each
implementation refuses the same messages with the same codes.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Literal

from anfu import errors

Clock = Callable[[], float]
"""Unix seconds, injected so that tests move time instead of sleeping."""

DeliveryStatus = Literal["queued", "delivered", "failed"]
Encoding = Literal["GSM-7", "UCS-2"]

# The same rule as the identity service's phone check: digits only, optionally "+".
PHONE = re.compile(r"^\+?[0-9]{6,15}$")
MAX_MESSAGE_ID_CHARS = 128
MAX_SEGMENTS = 5

# A single SMS carries 140 bytes: 160 GSM-7 septets or 70 UCS-2 (UTF-16) code units. A
# concatenated message spends 6 bytes of each part on the header that reassembles it,
# leaving 153 septets or 67 code units per part.
_SINGLE = {"GSM-7": 160, "UCS-2": 70}
_PART = {"GSM-7": 153, "UCS-2": 67}

# GSM 03.38 default alphabet (without ESC) and its extension table; an extension
# character is sent as ESC + character and so costs two septets.
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")


class SmsUnavailable(errors.UpstreamFailed):
    """No answer from the gateway (timeout, outage): whether the message was queued is
    unknown. Retry with the same ``message_id``; it will not be delivered twice."""

    code = "sms_unavailable"
    title = "The SMS gateway did not answer"


class SmsRejected(errors.UpstreamFailed):
    """The gateway refused the message (bad number, text too long, …); retrying the same
    message will not help. ``code`` names the reason."""

    code = "sms_rejected"
    title = "The SMS gateway refused the message"


@dataclass(frozen=True, slots=True)
class SmsLength:
    """How a text travels: its encoding, its size in that encoding's units (septets or
    UTF-16 code units) and the number of SMS parts it needs."""

    encoding: Encoding
    units: int
    segments: int


def _unit_costs(text: str) -> tuple[Encoding, list[int]]:
    if all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in text):
        return "GSM-7", [2 if ch in GSM7_EXTENSION else 1 for ch in text]
    # Characters beyond the Basic Multilingual Plane (most emoji) take a surrogate pair.
    return "UCS-2", [2 if ord(ch) > 0xFFFF else 1 for ch in text]


def sms_length(text: str) -> SmsLength:
    """Count the SMS parts ``text`` needs. A character is never split across two parts (an
    escape pair or a surrogate pair moves whole to the next part), as handsets require."""
    encoding, costs = _unit_costs(text)
    units = sum(costs)
    if units <= _SINGLE[encoding]:
        return SmsLength(encoding, units, 1 if units else 0)
    per_part, segments, used = _PART[encoding], 1, 0
    for cost in costs:
        if used + cost > per_part:
            segments, used = segments + 1, 0
        used += cost
    return SmsLength(encoding, units, segments)


def utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, tz=UTC)


@dataclass(frozen=True, slots=True)
class SmsReceipt:
    """Where one message stands. ``updated_at`` is when it reached its current status;
    ``reason`` says why a message failed and is empty otherwise."""

    message_id: str
    gateway_reference: str
    status: DeliveryStatus
    segments: int
    queued_at: datetime
    updated_at: datetime
    reason: str = ""

    @property
    def final(self) -> bool:
        return self.status != "queued"

    def settle(self, status: DeliveryStatus, *, at: datetime, reason: str = "") -> SmsReceipt:
        """The receipt after the network reported ``status``: only a queued message moves,
        and only to delivered or failed, because a handset cannot un-receive a text."""
        if self.final or status == "queued":
            raise errors.InvalidState(
                f"SMS {self.message_id} is {self.status}; it cannot become {status}",
                code="sms_receipt_final")
        return replace(self, status=status, updated_at=at,
                       reason=reason if status == "failed" else "")


class SmsGateway(abc.ABC):
    """``send`` queues one text for one phone and returns its receipt (``queued``, or the
    current receipt when ``message_id`` was sent before); ``receipt`` reports its delivery.

    Implementations provide ``_submit`` (called with a message already checked against
    the limits below) and ``receipt``."""

    name: str = "sms"

    async def send(self, *, message_id: str, phone: str, text: str) -> SmsReceipt:
        length = self.check(message_id=message_id, phone=phone, text=text)
        return await self._submit(message_id=message_id, phone=phone, text=text,
                                  segments=length.segments)

    @staticmethod
    def check(*, message_id: str, phone: str, text: str) -> SmsLength:
        """Refuse what no gateway would deliver; return the text's length."""
        if not message_id or len(message_id) > MAX_MESSAGE_ID_CHARS:
            raise SmsRejected(f"message_id must be 1 to {MAX_MESSAGE_ID_CHARS} characters",
                              code="sms_message_id_invalid")
        if not PHONE.match(phone):
            raise SmsRejected("the phone number must be 6-15 digits, optionally with a"
                              " leading +", code="sms_phone_invalid")
        length = sms_length(text)
        if length.segments == 0:
            raise SmsRejected("the text is empty", code="sms_text_empty")
        if length.segments > MAX_SEGMENTS:
            limit = _PART[length.encoding] * MAX_SEGMENTS
            raise SmsRejected(
                f"the text needs {length.segments} SMS parts ({length.units}"
                f" {length.encoding} units); at most {MAX_SEGMENTS} parts ({limit} units) are"
                " sent. Shorten it, or use only GSM-7 characters to fit more per part",
                code="sms_text_too_long")
        return length

    @abc.abstractmethod
    async def _submit(self, *, message_id: str, phone: str, text: str,
                      segments: int) -> SmsReceipt:
        """Hand one checked message to the gateway and return its receipt; a repeated
        ``message_id`` returns the first message's receipt."""

    @abc.abstractmethod
    async def receipt(self, message_id: str) -> SmsReceipt:
        """The latest receipt of a sent message; ``errors.NotFound`` if the gateway does
        not know ``message_id``."""
