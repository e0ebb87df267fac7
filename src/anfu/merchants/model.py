from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Merchant:
    merchant_id: str
    name: str
    notify_url: str | None
    fee_bps: int
    status: str
    created_at: float

    def public(self) -> dict[str, Any]:
        return {"merchant_id": self.merchant_id, "name": self.name,
                "notify_url": self.notify_url, "fee_bps": self.fee_bps, "status": self.status,
                "created_at": self.created_at}


@dataclass(frozen=True, slots=True)
class MerchantKey:
    key_id: str
    merchant_id: str
    alg: str
    public_key_pem: str
    fingerprint: str
    status: str
    created_at: float
    revoked_at: float | None = None

    def public(self) -> dict[str, Any]:
        return {"key_id": self.key_id, "merchant_id": self.merchant_id, "alg": self.alg,
                "fingerprint": self.fingerprint, "status": self.status,
                "created_at": self.created_at, "revoked_at": self.revoked_at}


@dataclass(frozen=True, slots=True)
class VerifiedRequest:
    merchant_id: str
    key_id: str
    nonce: str
    timestamp: int
