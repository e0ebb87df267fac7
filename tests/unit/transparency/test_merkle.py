"""RFC 9162 §2.1 Merkle hashing and proofs against the published vectors: the RFC 6962
reference roots, and every inclusion and consistency case of transparency-dev/merkle (each
says whether the proof must verify); generation must reproduce the vectors' proofs."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anfu.crypto.merkle_hash import leaf_hash
from anfu.transparency.merkle import (
    ProofInvalid,
    build_tree,
    mth,
    verify_consistency,
    verify_inclusion,
)
from tests.support import VECTORS

REFERENCE = json.loads((VECTORS / "rfc6962_merkle_reference_roots.json").read_text())
LEAVES = [leaf_hash(bytes.fromhex(x)) for x in REFERENCE["leaves_hex"]]
CASES = VECTORS / "merkle-transparency-dev" / "testdata"


def _cases(kind: str) -> list[Path]:
    found = sorted((CASES / kind).rglob("*.json"))
    assert found, f"no {kind} vectors under {CASES}"
    return found


def _b(value: str | None) -> bytes:
    return base64.b64decode(value or "")


def _proof(case: dict[str, Any]) -> list[bytes]:
    return [_b(p) for p in case["proof"] or []]


def test_reference_roots_for_every_size() -> None:
    assert leaf_hash(b"").hex() == REFERENCE["leaf_hash_of_empty"]
    tree = build_tree(LEAVES)
    for size, root in REFERENCE["root_by_size"].items():
        n = int(size)
        assert mth(LEAVES[:n]).hex() == root
        assert tree.root(n).hex() == root


@pytest.mark.parametrize("path", _cases("inclusion"), ids=lambda p: str(p.relative_to(CASES)))
def test_inclusion_vectors(path: Path) -> None:
    case = json.loads(path.read_text())
    args = (case["leafIdx"], case["treeSize"], _b(case["leafHash"]), _proof(case),
            _b(case["root"]))
    if case["wantErr"]:
        with pytest.raises(ProofInvalid):
            verify_inclusion(*args)
        return
    verify_inclusion(*args)
    if 0 < case["treeSize"] <= len(LEAVES) and _b(case["root"]) == mth(
            LEAVES[:case["treeSize"]]):
        tree = build_tree(LEAVES)  # generation reproduces the published proof
        assert tree.inclusion_proof(case["leafIdx"], case["treeSize"]) == _proof(case)


@pytest.mark.parametrize("path", _cases("consistency"),
                         ids=lambda p: str(p.relative_to(CASES)))
def test_consistency_vectors(path: Path) -> None:
    case = json.loads(path.read_text())
    args = (case["size1"], case["size2"], _b(case["root1"]), _b(case["root2"]),
            _proof(case))
    if case["wantErr"]:
        with pytest.raises(ProofInvalid):
            verify_consistency(*args)
        return
    verify_consistency(*args)
    if case["size2"] <= len(LEAVES) and _b(case["root2"]) == mth(LEAVES[:case["size2"]]):
        tree = build_tree(LEAVES)
        assert tree.consistency_proof(case["size1"], case["size2"]) == _proof(case)


def _leaves(n: int) -> list[bytes]:
    return [leaf_hash(i.to_bytes(4, "big")) for i in range(n)]


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 300), st.data())
def test_inclusion_proofs_for_random_sizes(n: int, data: st.DataObject) -> None:
    leaves = _leaves(n)
    tree = build_tree(leaves)
    size = data.draw(st.integers(1, n))
    index = data.draw(st.integers(0, size - 1))
    root = mth(leaves[:size])
    assert tree.root(size) == root
    proof = tree.inclusion_proof(index, size)
    verify_inclusion(index, size, leaves[index], proof, root)
    with pytest.raises(ProofInvalid):
        verify_inclusion(index, size, leaf_hash(b"other"), proof, root)
    if proof:
        bad = [*proof[:-1], bytes(32)]
        with pytest.raises(ProofInvalid):
            verify_inclusion(index, size, leaves[index], bad, root)


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 300), st.data())
def test_consistency_proofs_for_random_sizes(n: int, data: st.DataObject) -> None:
    leaves = _leaves(n)
    tree = build_tree(leaves)
    second = data.draw(st.integers(1, n))
    first = data.draw(st.integers(1, second))
    proof = tree.consistency_proof(first, second)
    verify_consistency(first, second, mth(leaves[:first]), mth(leaves[:second]), proof)
    if first < second:
        with pytest.raises(ProofInvalid):
            verify_consistency(first, second, leaf_hash(b"x"), mth(leaves[:second]), proof)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 70), min_size=1, max_size=6))
def test_incremental_appends_match_a_tree_built_at_once(chunks: list[int]) -> None:
    leaves = _leaves(sum(chunks))
    tree = build_tree([])
    at = 0
    for c in chunks:
        tree.append(b"".join(leaves[at:at + c]))
        at += c
        assert tree.root() == mth(leaves[:at])
    tree.truncate(chunks[0])
    assert tree.size == chunks[0] and tree.root() == mth(leaves[:chunks[0]])
    tree.append(b"".join(leaves[chunks[0]:]))
    assert tree.root() == mth(leaves)
