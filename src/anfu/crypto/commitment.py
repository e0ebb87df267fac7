"""Hiding hash commitments (the transparency log's private entries, docs/transparency.md).

``commitment = SHA-256(label || salt || data)`` with a fresh 32-byte random salt per
commitment: without the salt nobody can test guesses of ``data`` (an amount, a user id)
against the published hash; with it, the holder of ``data`` proves it is what was committed.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Sequence

SALT_SIZE = 32
RandBytes = Callable[[int], bytes]


def new_salts(count: int, *, randbytes: RandBytes | None = None) -> list[bytes]:
    """``count`` fresh salts, drawn in one call (the sequencer needs tens of thousands);
    ``randbytes`` (tests) replaces the system's CSPRNG."""
    if count <= 0:
        return []
    pool = (randbytes or secrets.token_bytes)(SALT_SIZE * count)
    if len(pool) != SALT_SIZE * count:
        raise ValueError("the random source returned too few bytes")
    return [pool[i:i + SALT_SIZE] for i in range(0, len(pool), SALT_SIZE)]


def commit(label: bytes, salt: bytes, data: bytes) -> bytes:
    if len(salt) != SALT_SIZE:
        raise ValueError(f"a commitment salt is {SALT_SIZE} bytes")
    return hashlib.sha256(label + salt + data).digest()


def commit_many(label: bytes, salts: Sequence[bytes], datas: Sequence[bytes]) -> list[bytes]:
    """``commit`` of each (salt, data) pair; the salts come from ``new_salts``."""
    if len(salts) != len(datas):
        raise ValueError("one salt per committed value")
    sha = hashlib.sha256
    return [sha(label + s + d).digest() for s, d in zip(salts, datas, strict=True)]


class CommitmentMismatch(ValueError):
    """The salt and data given do not open the commitment."""


def verify_opening(commitment: bytes, label: bytes, salt: bytes, data: bytes) -> None:
    """Raise ``CommitmentMismatch`` unless (salt, data) opens ``commitment`` (the comparison
    is constant-time)."""
    if len(salt) != SALT_SIZE:
        raise CommitmentMismatch(f"the salt is {len(salt)} bytes, not {SALT_SIZE}")
    if not hmac.compare_digest(commitment, hashlib.sha256(label + salt + data).digest()):
        raise CommitmentMismatch("the salt and data do not open the commitment")
