"""RFC 9162 §2.1 Merkle trees: tree hashes, inclusion (PATH) and consistency (PROOF) proofs,
their generation and their verification. Pure; hashing is ``anfu.crypto.merkle_hash``.

``MerkleTree`` is the serving structure: one ``bytearray`` per level holding the hashes of the
*complete* subtrees of that height (level 0: the leaf hashes), extended incrementally as leaves
are appended. Every subtree the RFC's recursion names is either complete (one lookup) or lies
on the tree's right border (a few hashes), so a proof for any tree size up to ``size`` costs
O(log n) lookups and at most O(log n) hashes, whatever the size."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from anfu.crypto.merkle_hash import (
    EMPTY_ROOT,
    HASH_SIZE,
    digests_equal,
    node_hash,
    parent_level,
)


class ProofInvalid(ValueError):
    """A proof does not verify; the message names the check that failed."""

    def __init__(self, check: str, detail: str) -> None:
        super().__init__(f"{check}: {detail}")
        self.check = check
        self.detail = detail


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def mth(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH(D[n]) over already-hashed leaves (the reference definition, recursive)."""
    n = len(leaf_hashes)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return leaf_hashes[0]
    k = _split(n)
    return node_hash(mth(leaf_hashes[:k]), mth(leaf_hashes[k:]))


class MerkleTree:
    """An append-only tree of leaf hashes with O(log n) proofs for any size ≤ ``size``."""

    def __init__(self) -> None:
        self._levels: list[bytearray] = [bytearray()]
        self._lock = threading.Lock()

    @property
    def size(self) -> int:
        return len(self._levels[0]) // HASH_SIZE

    def append(self, hashes: bytes) -> None:
        """Append leaf hashes (concatenated, 32 bytes each) and the complete parents."""
        if len(hashes) % HASH_SIZE:
            raise ValueError("leaf hashes must be 32 bytes each")
        with self._lock:
            levels = self._levels
            levels[0] += hashes
            height = 0
            while True:
                children = levels[height]
                count = len(children) // HASH_SIZE
                if count < 2:
                    break
                if height + 1 == len(levels):
                    levels.append(bytearray())
                parents = levels[height + 1]
                have, want = len(parents) // HASH_SIZE, count // 2
                if have == want:
                    break
                parents += parent_level(children, have, want)
                height += 1

    def truncate(self, size: int) -> None:
        """Forget leaves from ``size`` on (a batch that did not commit)."""
        with self._lock:
            for height, level in enumerate(self._levels):
                del level[(size >> height) * HASH_SIZE:]

    def leaf(self, index: int) -> bytes:
        return bytes(self._levels[0][index * HASH_SIZE:(index + 1) * HASH_SIZE])

    def _complete(self, start: int, size: int) -> bytes:
        height = size.bit_length() - 1
        at = (start >> height) * HASH_SIZE
        return bytes(self._levels[height][at:at + HASH_SIZE])

    def _mth(self, start: int, end: int) -> bytes:
        """MTH(D[start:end]) for a range of the RFC's decomposition."""
        n = end - start
        if n & (n - 1) == 0 and start % n == 0:
            return self._complete(start, n)
        k = _split(n)
        return node_hash(self._complete(start, k), self._mth(start + k, end))

    def root(self, size: int | None = None) -> bytes:
        size = self.size if size is None else size
        self._check_size(size)
        return EMPTY_ROOT if size == 0 else self._mth(0, size)

    def _check_size(self, size: int) -> None:
        if not 0 <= size <= self.size:
            raise ValueError(f"tree size {size} is beyond the {self.size} leaves known")

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """PATH(index, D[size]) (RFC 9162 §2.1.3.1), bottom-up."""
        self._check_size(size)
        if not 0 <= index < size:
            raise ValueError(f"leaf index {index} is not in a tree of size {size}")
        path: list[bytes] = []
        start, end = 0, size
        while end - start > 1:
            k = _split(end - start)
            if index < start + k:
                path.append(self._mth(start + k, end))
                end = start + k
            else:
                path.append(self._complete(start, k))
                start += k
        path.reverse()
        return path

    def consistency_proof(self, first: int, second: int) -> list[bytes]:
        """PROOF(first, D[second]) (RFC 9162 §2.1.4.1) for 0 < first ≤ second."""
        self._check_size(second)
        if not 0 < first <= second:
            raise ValueError(f"no consistency proof from size {first} to {second}")
        proof: list[bytes] = []
        start, end, m, whole = 0, second, first, True
        while True:
            n = end - start
            if m == n:
                if not whole:
                    proof.append(self._mth(start, end))
                break
            k = _split(n)
            if m <= k:
                proof.append(self._mth(start + k, end))
                end = start + k
            else:
                proof.append(self._complete(start, k))
                start += k
                m -= k
                whole = False
        proof.reverse()
        return proof


def build_tree(leaf_hashes: Sequence[bytes]) -> MerkleTree:
    tree = MerkleTree()
    tree.append(b"".join(leaf_hashes))
    return tree


# -- verification (RFC 9162 §2.1.3.2 and §2.1.4.2) --------------------------------------------

def _hash_ok(value: bytes, what: str) -> None:
    if len(value) != HASH_SIZE:
        raise ProofInvalid("hash_length", f"{what} is {len(value)} bytes, not {HASH_SIZE}")


def root_from_inclusion(leaf_index: int, tree_size: int, leaf: bytes,
                        path: Sequence[bytes]) -> bytes:
    """The root that ``path`` proves for ``leaf`` (a leaf hash) at ``leaf_index``."""
    if tree_size <= 0 or not 0 <= leaf_index < tree_size:
        raise ProofInvalid("leaf_index", f"leaf index {leaf_index} is not in a tree of size"
                           f" {tree_size}")
    _hash_ok(leaf, "the leaf hash")
    fn, sn = leaf_index, tree_size - 1
    r = leaf
    for p in path:
        _hash_ok(p, "a proof hash")
        if sn == 0:
            raise ProofInvalid("proof_length", "the inclusion proof is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofInvalid("proof_length", "the inclusion proof is too short")
    return r


def verify_inclusion(leaf_index: int, tree_size: int, leaf: bytes, path: Sequence[bytes],
                     root: bytes) -> None:
    """Raise ProofInvalid unless ``path`` proves ``leaf`` at ``leaf_index`` in ``root``."""
    computed = root_from_inclusion(leaf_index, tree_size, leaf, path)
    if not digests_equal(computed, root):
        raise ProofInvalid("inclusion_root", "the inclusion proof leads to another root")


def verify_consistency(first: int, second: int, first_root: bytes, second_root: bytes,
                       proof: Sequence[bytes]) -> None:
    """Raise ProofInvalid unless ``proof`` shows the tree of size ``second`` with
    ``second_root`` extends the tree of size ``first`` with ``first_root``. A tree of size 0
    has nothing to be consistent with: such a check is refused, as the reference does."""
    if first <= 0:
        raise ProofInvalid("tree_size", "a consistency check from an empty tree proves nothing")
    if second < first:
        raise ProofInvalid("tree_size", f"the second tree ({second}) is smaller than the"
                           f" first ({first})")
    if first == second:
        if proof:
            raise ProofInvalid("proof_length", "equal tree sizes need an empty proof")
        if not digests_equal(first_root, second_root):
            raise ProofInvalid("consistency_root", "same tree size, different roots")
        return
    if not proof:
        raise ProofInvalid("proof_length", "the consistency proof is empty")
    _hash_ok(first_root, "the first root")
    _hash_ok(second_root, "the second root")
    for p in proof:
        _hash_ok(p, "a proof hash")
    path = list(proof)
    if first & (first - 1) == 0:
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofInvalid("proof_length", "the consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofInvalid("proof_length", "the consistency proof is too short")
    if not digests_equal(fr, first_root):
        raise ProofInvalid("consistency_first_root", "the proof does not lead to the first"
                           " root")
    if not digests_equal(sr, second_root):
        raise ProofInvalid("consistency_second_root", "the proof does not lead to the second"
                           " root")
