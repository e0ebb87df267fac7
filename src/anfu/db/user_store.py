"""SQL storage for customers and their sessions."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, insert, select, text, update

from anfu.db.tables import refresh_tokens, sessions, users
from anfu.identity.service import User

_COLUMNS = "user_id, phone, password_hash, status, created_at"
_BY_PHONE = text(f"SELECT {_COLUMNS} FROM users WHERE phone = :p")  # noqa: S608
_BY_ID = text(f"SELECT {_COLUMNS} FROM users WHERE user_id = :u")  # noqa: S608


class SqlUserStore:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def user_by_phone(self, phone: str) -> User | None:
        row = self._conn.execute(_BY_PHONE, {"p": phone}).first()
        return None if row is None else User(**dict(row._mapping))

    def user(self, user_id: str) -> User | None:
        row = self._conn.execute(_BY_ID, {"u": user_id}).first()
        return None if row is None else User(**dict(row._mapping))

    def insert_user(self, user: User) -> None:
        self._conn.execute(insert(users).values(
            user_id=user.user_id, phone=user.phone, password_hash=user.password_hash,
            status=user.status, created_at=user.created_at))

    def set_password_hash(self, user_id: str, password_hash: str) -> None:
        self._conn.execute(update(users).where(users.c.user_id == user_id)
                           .values(password_hash=password_hash))

    def set_phone(self, user_id: str, phone: str) -> None:
        self._conn.execute(update(users).where(users.c.user_id == user_id).values(phone=phone))

    def session_revoked(self, session_id: str) -> bool:
        row = self._conn.execute(select(sessions.c.revoked_at).where(
            sessions.c.session_id == session_id)).first()
        return row is None or row.revoked_at is not None

    def revoke_session(self, session_id: str, reason: str, now: float) -> None:
        self._conn.execute(update(sessions).where(
            sessions.c.session_id == session_id, sessions.c.revoked_at.is_(None),
        ).values(revoked_at=now, revoked_reason=reason))

    def insert_refresh(self, token_hash: str, user_id: str, session_id: str,
                       expires_at: float, now: float) -> None:
        self._conn.execute(insert(refresh_tokens).values(
            token_hash=token_hash, user_id=user_id, session_id=session_id,
            expires_at=expires_at, created_at=now))

    def refresh(self, token_hash: str) -> dict[str, Any] | None:
        row = self._conn.execute(select(refresh_tokens).where(
            refresh_tokens.c.token_hash == token_hash)).first()
        return None if row is None else dict(row._mapping)

    def use_refresh(self, token_hash: str, now: float) -> bool:
        done = self._conn.execute(update(refresh_tokens).where(
            refresh_tokens.c.token_hash == token_hash, refresh_tokens.c.used_at.is_(None),
        ).values(used_at=now))
        return done.rowcount == 1
