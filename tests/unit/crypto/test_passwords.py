"""Argon2id password hashing."""

from __future__ import annotations

import pytest

from anfu.crypto import InvalidPassword, PasswordHasher
from anfu.errors import AuthenticationFailed

# Small costs keep the tests fast; the parameters are still stored in and read from the hash.
FAST = {"time_cost": 1, "memory_kib": 1024, "parallelism": 1}


@pytest.fixture
def hasher() -> PasswordHasher:
    return PasswordHasher(**FAST)


def test_hash_and_verify(hasher: PasswordHasher) -> None:
    stored = hasher.hash("correct horse battery staple")
    assert stored.startswith("$argon2id$v=19$m=1024,t=1,p=1$")
    hasher.verify(stored, "correct horse battery staple")
    assert hasher.hash("correct horse battery staple") != stored  # salted
    hasher.verify(hasher.hash("密码 ünïcode"), "密码 ünïcode")


@pytest.mark.parametrize(
    "attempt", ["correct horse battery stapl", "", "Correct horse battery staple"]
)
def test_wrong_password_raises(hasher: PasswordHasher, attempt: str) -> None:
    stored = hasher.hash("correct horse battery staple")
    with pytest.raises(InvalidPassword) as info:
        hasher.verify(stored, attempt)
    assert isinstance(info.value, AuthenticationFailed)
    assert info.value.code == "password_invalid"


@pytest.mark.parametrize("stored", ["", "plaintext", "$argon2id$v=19$m=1024,t=1,p=1$bad$bad"])
def test_unreadable_stored_hash_raises(hasher: PasswordHasher, stored: str) -> None:
    with pytest.raises(InvalidPassword):
        hasher.verify(stored, "anything")
    assert hasher.needs_rehash(stored)


def test_needs_rehash_follows_the_parameters(hasher: PasswordHasher) -> None:
    stored = hasher.hash("pw")
    assert not hasher.needs_rehash(stored)
    stronger = PasswordHasher(time_cost=2, memory_kib=2048, parallelism=1)
    assert stronger.needs_rehash(stored)
    stronger.verify(stored, "pw")  # old hashes still verify after the cost goes up


def test_argon2i_hash_verifies_but_needs_rehash(hasher: PasswordHasher) -> None:
    import argon2

    old = argon2.PasswordHasher(
        time_cost=1, memory_cost=1024, parallelism=1, type=argon2.Type.I
    ).hash("pw")
    hasher.verify(old, "pw")
    assert hasher.needs_rehash(old)
