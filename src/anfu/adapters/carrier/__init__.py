"""Mobile network operators: the ``CarrierAdapter`` contract for SIM-based login (network
token verification, last SIM change) and a sandbox operator."""

from anfu.adapters.carrier.base import (
    CarrierAdapter,
    CarrierReplyInvalid,
    CarrierUnavailable,
    CarrierVerdict,
    NetworkTokenRefused,
    SimChangeReply,
    VerdictStatus,
)
from anfu.adapters.carrier.sandbox import SandboxCarrier

__all__ = [
    "CarrierAdapter",
    "CarrierReplyInvalid",
    "CarrierUnavailable",
    "CarrierVerdict",
    "NetworkTokenRefused",
    "SandboxCarrier",
    "SimChangeReply",
    "VerdictStatus",
]
