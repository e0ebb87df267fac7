"""SQL storage for merchants, their keys and the nonce replay window."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, insert, select, text, update
from sqlalchemy.exc import IntegrityError

from anfu.db.tables import merchant_keys, merchants, nonces
from anfu.merchants.model import Merchant, MerchantKey

_MERCHANT = text("SELECT * FROM merchants WHERE merchant_id = :m")
_KEY = text("SELECT * FROM merchant_keys WHERE key_id = :k")


def _merchant(row: Any) -> Merchant:
    return Merchant(**dict(row._mapping))


def _key(row: Any) -> MerchantKey:
    return MerchantKey(**dict(row._mapping))


class SqlMerchantStore:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def merchant(self, merchant_id: str) -> Merchant | None:
        row = self._conn.execute(_MERCHANT, {"m": merchant_id}).first()
        return None if row is None else _merchant(row)

    def key(self, key_id: str) -> MerchantKey | None:
        row = self._conn.execute(_KEY, {"k": key_id}).first()
        return None if row is None else _key(row)

    def insert_merchant(self, merchant: Merchant) -> None:
        self._conn.execute(insert(merchants).values(**merchant.public()))

    def insert_key(self, key: MerchantKey) -> None:
        self._conn.execute(insert(merchant_keys).values(
            key_id=key.key_id, merchant_id=key.merchant_id, alg=key.alg,
            public_key_pem=key.public_key_pem, fingerprint=key.fingerprint, status=key.status,
            created_at=key.created_at, revoked_at=key.revoked_at))

    def revoke_key(self, key_id: str, now: float) -> bool:
        done = self._conn.execute(update(merchant_keys).where(
            merchant_keys.c.key_id == key_id, merchant_keys.c.status == "active",
        ).values(status="revoked", revoked_at=now))
        return done.rowcount == 1

    def list_merchants(self) -> list[Merchant]:
        rows = self._conn.execute(select(merchants).order_by(merchants.c.created_at)).all()
        return [_merchant(r) for r in rows]

    def keys_of(self, merchant_id: str) -> list[MerchantKey]:
        rows = self._conn.execute(select(merchant_keys).where(
            merchant_keys.c.merchant_id == merchant_id).order_by(merchant_keys.c.created_at))
        return [_key(r) for r in rows]

    def remember_nonce(self, merchant_id: str, nonce: str, expires_at: float) -> bool:
        nested = self._conn.begin_nested()
        try:
            self._conn.execute(insert(nonces).values(merchant_id=merchant_id, nonce=nonce,
                                                     expires_at=expires_at))
        except IntegrityError:
            nested.rollback()
            return False
        nested.commit()
        return True

    def forget_nonces(self, now: float) -> int:
        return self._conn.execute(nonces.delete().where(nonces.c.expires_at < now)).rowcount
