"""Receipts, signed tree heads and their offline verifiers, with keys from the file keystore
(the same Signer interface the platform's key rings hand out)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import orjson
import pytest

from anfu.crypto import platform_sig
from anfu.crypto.keystore import FileKeyStore
from anfu.crypto.merkle_hash import leaf_hash
from anfu.transparency.merkle import build_tree
from anfu.transparency.model import (
    EntryInvalid,
    TreeHead,
    at_ms,
    b64,
    canonical_json,
    entry_bytes,
    parse_entry,
    sth_signing_bytes,
)
from anfu.transparency.service import prepare_batch
from anfu.transparency.verify import (
    VerificationFailed,
    verify_receipt_bundle,
    verify_sth,
    verify_sth_consistency,
)

Json = dict[str, Any]
NOW = 1_800_000_000.25


@pytest.fixture(scope="module")
def signers(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any, list[Json]]:
    store = FileKeyStore(Path(tmp_path_factory.mktemp("keys")), b"test passphrase")
    receipt, log = store.create("rk-test", "ed25519"), store.create("lk-test",
                                                                    "ecdsa-p256-sha256")
    keys = [{"key_id": s.key_id, "alg": s.alg, "purpose": p,
             "public_key_pem": platform_sig.public_key_pem(s)}
            for s, p in ((receipt, "receipt"), (log, "log"))]
    return receipt, log, keys


def _queue(n: int) -> list[tuple[int, str, str, float]]:
    rows = []
    for i in range(n):
        kind = "payment" if i % 3 == 0 else "operator.action"
        body = ({"txn_id": f"T{i}", "user_id": "u1", "merchant_id": "m1", "amount": 100 + i,
                 "currency": "CNY", "payee_id": "m1", "payee_name": "Tea",
                 "device_signature_sha256": None, "ledger_transfer_ids": [f"T{i}:hold"]}
                if kind == "payment" else {"method": "POST", "path": "/v1/x", "status": 201})
        rows.append((i + 10, kind, canonical_json(body).decode(), NOW + i))
    return rows


def _head(tree: Any, size: int, log: Any) -> TreeHead:
    root = tree.root(size)
    ts = at_ms(NOW + 100)
    return TreeHead(size, ts, root, log.key_id, log.alg,
                    platform_sig.sign(log, sth_signing_bytes(size, ts, root)))


def _bundle(signers: tuple[Any, Any, list[Json]], n: int = 7, which: int = 3) -> Json:
    receipt_signer, log, _ = signers
    batch = prepare_batch(0, _queue(n), NOW + 50, receipt_signer)
    tree = build_tree([batch.hashes[i:i + 32] for i in range(0, len(batch.hashes), 32)])
    row = next(r for r in batch.receipts if r[0] == f"T{which}")
    head = _head(tree, n, log)
    return {"receipt": orjson.loads(row[5]), "signed_tree_head": head.public(),
            "inclusion_proof": {"leaf_index": row[4], "tree_size": n,
                                "audit_path": [b64(h) for h in tree.inclusion_proof(row[4],
                                                                                    n)]}}


def test_entry_bytes_are_canonical_and_parse_back() -> None:
    body = {"b": [1, "x", None, True], "a": {"z": 1, "y": "é"}}
    data = entry_bytes("payment", 1234, canonical_json(body).decode())
    assert data == b'ANFU-LOG-V1\n{"at":1234,"body":{"a":{"y":"\xc3\xa9","z":1},' \
                   b'"b":[1,"x",null,true]},"kind":"payment"}'
    assert parse_entry(data) == {"version": "ANFU-LOG-V1", "at": 1234, "body": body,
                                 "kind": "payment"}
    with pytest.raises(EntryInvalid):
        parse_entry(data.replace(b'"at":1234,', b'"at": 1234,'))
    with pytest.raises(EntryInvalid):
        canonical_json({"amount": 1.5})


def test_receipts_only_for_receipt_kinds(signers: tuple[Any, Any, list[Json]]) -> None:
    batch = prepare_batch(5, _queue(7), NOW, signers[0])
    assert [r[0] for r in batch.receipts] == ["T0", "T3", "T6"]
    assert [r[4] for r in batch.receipts] == [5, 8, 11]
    assert [leaf[0] for leaf in batch.leaves] == list(range(5, 12))
    assert batch.leaves[0][3] == leaf_hash(batch.leaves[0][2].encode())
    assert all(leaf[2].startswith("ANFU-LOG-V2\n") for leaf in batch.leaves)


def test_receipt_bundle_verifies(signers: tuple[Any, Any, list[Json]]) -> None:
    summary = verify_receipt_bundle(_bundle(signers), signers[2])
    assert summary["ok"] and summary["txn_id"] == "T3" and summary["tree_size"] == 7


@pytest.mark.parametrize(("tamper", "check"), [
    (lambda b: b["receipt"].__setitem__("amount", 1), "receipt_signature"),
    (lambda b: b["receipt"]["transaction"].__setitem__("amount", 1), "receipt_signature"),
    (lambda b: b["receipt"].__setitem__("salt", b64(bytes(32))), "receipt_signature"),
    (lambda b: b["receipt"].__setitem__("key_id", "rk-other"), "receipt_signature"),
    (lambda b: b["signed_tree_head"].__setitem__("tree_size", 6), "sth_signature"),
    (lambda b: b["signed_tree_head"].__setitem__(
        "sha256_root_hash", b64(bytes(32))), "sth_signature"),
    (lambda b: b["inclusion_proof"]["audit_path"].__setitem__(0, b64(bytes(32))),
     "inclusion_root"),
    (lambda b: b["inclusion_proof"]["audit_path"].pop(), "proof_length"),
    (lambda b: b["inclusion_proof"].__setitem__("leaf_index", 4), "inclusion_leaf_index"),
    (lambda b: b.pop("signed_tree_head"), "bundle_format"),
])
def test_tampered_bundle_is_refused_naming_the_check(
        signers: tuple[Any, Any, list[Json]], tamper: Any, check: str) -> None:
    bundle = copy.deepcopy(_bundle(signers))
    tamper(bundle)
    with pytest.raises(VerificationFailed) as caught:
        verify_receipt_bundle(bundle, signers[2])
    assert caught.value.check == check


def test_a_receipt_key_cannot_sign_tree_heads(signers: tuple[Any, Any, list[Json]]) -> None:
    bundle = _bundle(signers)
    keys = [{**k, "purpose": "receipt"} for k in signers[2]]
    with pytest.raises(VerificationFailed) as caught:
        verify_receipt_bundle(bundle, keys)
    assert caught.value.check == "sth_signature"


def test_sth_consistency(signers: tuple[Any, Any, list[Json]]) -> None:
    _, log, keys = signers
    leaves = [leaf_hash(bytes([i])) for i in range(20)]
    tree = build_tree(leaves)
    old, new = _head(tree, 7, log).public(), _head(tree, 20, log).public()
    proof = [b64(h) for h in tree.consistency_proof(7, 20)]
    assert verify_sth(old, keys)["tree_size"] == 7
    verify_sth_consistency(old, new, proof, keys)
    forked = build_tree([*leaves[:6], leaf_hash(b"fork"), *leaves[7:]])
    with pytest.raises(VerificationFailed) as caught:
        verify_sth_consistency(old, _head(forked, 20, log).public(),
                               [b64(h) for h in forked.consistency_proof(7, 20)], keys)
    assert caught.value.check.startswith("consistency_")
