"""Password hashing with Argon2id (RFC 9106), via argon2-cffi."""

from __future__ import annotations

import argon2
from argon2.exceptions import InvalidHashError, VerificationError

from anfu.errors import AuthenticationFailed


class InvalidPassword(AuthenticationFailed):
    """The password does not match the stored hash (or the stored hash is unreadable)."""

    code = "password_invalid"


class PasswordHasher:
    """Argon2id with the given cost. The defaults are RFC 9106's second recommended option.

    Stored hashes carry their own parameters, so raising the cost later still verifies old
    hashes; ``needs_rehash`` says when to store a new one (after a successful ``verify``).
    """

    def __init__(self, time_cost: int = 3, memory_kib: int = 65536, parallelism: int = 4) -> None:
        self._hasher = argon2.PasswordHasher(
            time_cost=time_cost,
            memory_cost=memory_kib,
            parallelism=parallelism,
            type=argon2.Type.ID,
        )

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, stored: str, password: str) -> None:
        try:
            self._hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            raise InvalidPassword("the password is not correct") from None

    def needs_rehash(self, stored: str) -> bool:
        try:
            return self._hasher.check_needs_rehash(stored)
        except (InvalidHashError, ValueError):
            return True
