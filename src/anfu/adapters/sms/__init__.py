"""SMS gateways: the ``SmsGateway`` contract and a sandbox that keeps an operator-readable
outbox instead of delivering."""

from anfu.adapters.sms.base import (
    MAX_SEGMENTS,
    DeliveryStatus,
    SmsGateway,
    SmsLength,
    SmsReceipt,
    SmsRejected,
    SmsUnavailable,
    sms_length,
)
from anfu.adapters.sms.sandbox import FAIL_SUFFIX, OutboxMessage, SandboxSmsGateway

__all__ = [
    "FAIL_SUFFIX",
    "MAX_SEGMENTS",
    "DeliveryStatus",
    "OutboxMessage",
    "SandboxSmsGateway",
    "SmsGateway",
    "SmsLength",
    "SmsReceipt",
    "SmsRejected",
    "SmsUnavailable",
    "sms_length",
]
