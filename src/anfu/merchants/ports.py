from __future__ import annotations

from typing import Protocol

from anfu.merchants.model import Merchant, MerchantKey


class MerchantDirectory(Protocol):
    """Read side: looked up on every signed request."""

    def merchant(self, merchant_id: str) -> Merchant | None: ...

    def key(self, key_id: str) -> MerchantKey | None: ...


class MerchantStore(MerchantDirectory, Protocol):
    def insert_merchant(self, merchant: Merchant) -> None: ...

    def insert_key(self, key: MerchantKey) -> None: ...

    def revoke_key(self, key_id: str, now: float) -> bool: ...

    def list_merchants(self) -> list[Merchant]: ...

    def keys_of(self, merchant_id: str) -> list[MerchantKey]: ...

    def remember_nonce(self, merchant_id: str, nonce: str, expires_at: float) -> bool:
        """False if the nonce is already remembered for this merchant (a replay)."""
