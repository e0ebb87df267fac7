"""Customer sign-up and refresh tokens. Refresh tokens are stored hashed, rotate at every
use, and a reused old one revokes its whole session (stolen-token detection). Sessions are
opened by the identity routes once a login challenge is satisfied (``api/identity_kit``);
what they proved is in ``identity/assurance``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Protocol

from anfu.crypto.tokens import random_token, sha256_hex
from anfu.errors import AuthenticationFailed, Conflict, InvalidRequest

PHONE = re.compile(r"^\+?[0-9]{6,15}$")


def check_phone(phone: str) -> str:
    if not PHONE.match(phone):
        raise InvalidRequest("phone must be 6-15 digits, optionally with a leading +",
                             code="invalid_phone")
    return phone


@dataclass(frozen=True, slots=True)
class User:
    user_id: str
    phone: str
    password_hash: str
    status: str
    created_at: float


class UserStore(Protocol):
    def user_by_phone(self, phone: str) -> User | None: ...

    def user(self, user_id: str) -> User | None: ...

    def insert_user(self, user: User) -> None: ...

    def set_password_hash(self, user_id: str, password_hash: str) -> None: ...

    def session_revoked(self, session_id: str) -> bool: ...

    def revoke_session(self, session_id: str, reason: str, now: float) -> None: ...

    def insert_refresh(self, token_hash: str, user_id: str, session_id: str,
                       expires_at: float, now: float) -> None: ...

    def refresh(self, token_hash: str) -> dict[str, Any] | None: ...

    def use_refresh(self, token_hash: str, now: float) -> bool:
        """Mark a refresh token used; False if it already was (a reuse)."""


def create_user(store: UserStore, *, user_id: str, phone: str, password_hash: str,
                now: float) -> User:
    if store.user_by_phone(phone) is not None:
        raise Conflict("this phone number already has an account", code="phone_taken")
    user = User(user_id=user_id, phone=phone, password_hash=password_hash, status="active",
                created_at=now)
    store.insert_user(user)
    return user


@dataclass(frozen=True, slots=True)
class IssuedSession:
    session_id: str
    user_id: str
    refresh_token: str


def rotate_refresh(store: UserStore, *, refresh_token: str, now: float,
                   refresh_ttl_s: int) -> IssuedSession | None:
    """The next refresh token, or None when the token was already used: then the whole
    session is revoked (and that must commit, so this returns instead of raising)."""
    token_hash = sha256_hex(refresh_token.encode())
    row = store.refresh(token_hash)
    if row is None or row["expires_at"] < now:
        raise AuthenticationFailed("refresh token unknown or expired; log in again",
                                   code="refresh_token_invalid")
    session_id, user_id = row["session_id"], row["user_id"]
    if store.session_revoked(session_id):
        raise AuthenticationFailed("this session was ended; log in again",
                                   code="session_revoked")
    if not store.use_refresh(token_hash, now):
        store.revoke_session(session_id, "refresh_token_reused", now)
        return None
    refresh = random_token()
    store.insert_refresh(sha256_hex(refresh.encode()), user_id, session_id,
                         now + refresh_ttl_s, now)
    return IssuedSession(session_id, user_id, refresh)
