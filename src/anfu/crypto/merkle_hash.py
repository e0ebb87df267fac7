"""SHA-256 Merkle tree hashing of RFC 9162 §2.1.1 (the transparency log's one primitive).

``leaf_hash(d) = SHA-256(0x00 || d)``, ``node_hash(l, r) = SHA-256(0x01 || l || r)``, and
``EMPTY_ROOT = SHA-256("")``. The batch helpers work on levels kept as contiguous bytes (32
bytes per hash), which is how the log's in-memory tree stores them."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
_LEAF = b"\x00"
_NODE = b"\x01"


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(_LEAF + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(_NODE + left + right).digest()


def leaf_hashes(entries: Iterable[bytes]) -> bytes:
    """The leaf hashes of ``entries``, concatenated."""
    sha = hashlib.sha256
    return b"".join([sha(_LEAF + e).digest() for e in entries])


def leaf_digests(entries: Iterable[bytes]) -> list[bytes]:
    """The leaf hash of each entry."""
    sha = hashlib.sha256
    return [sha(_LEAF + e).digest() for e in entries]


def parent_level(children: bytes | bytearray | memoryview, start: int, end: int) -> bytes:
    """The parents of the child pairs ``start..end`` (pair indices) of a level of hashes."""
    sha = hashlib.sha256
    view = memoryview(children)
    out = []
    for i in range(start * 64, end * 64, 64):
        out.append(sha(_NODE + view[i:i + 64]).digest())
    return b"".join(out)


def digests_equal(a: bytes, b: bytes) -> bool:
    import hmac

    return hmac.compare_digest(a, b)
