"""Private log entries: committed (ANFU-LOG-V2) entries hide their body behind a salted
commitment, public kinds stay in clear (V1), receipts carry the opening and verify offline,
a receipt whose transaction does not open the commitment is refused (``receipt_commitment``),
receipts of an earlier V1 log still verify, and the auditor's whole-log check."""

from __future__ import annotations

import copy
import itertools
from pathlib import Path
from typing import Any

import orjson
import pytest

from anfu.crypto import platform_sig
from anfu.crypto.commitment import SALT_SIZE, CommitmentMismatch, new_salts, verify_opening
from anfu.crypto.keystore import FileKeyStore
from anfu.crypto.merkle_hash import leaf_hash
from anfu.transparency.audit import verify_audited_entries
from anfu.transparency.merkle import build_tree
from anfu.transparency.model import (
    COMMITMENT_LABEL,
    KINDS,
    PUBLIC_KINDS,
    RECEIPT_KINDS,
    EntryInvalid,
    TreeHead,
    at_ms,
    b64,
    canonical_json,
    entry_bytes,
    parse_entry,
    receipt_signing_bytes,
    sth_signing_bytes,
)
from anfu.transparency.service import Batch, prepare_batch
from anfu.transparency.verify import VerificationFailed, verify_receipt_bundle

Json = dict[str, Any]
NOW = 1_800_000_000.25
PAYMENT = {"txn_id": "T1", "user_id": "u-alice", "merchant_id": "m-tea", "amount": 4321,
           "currency": "CNY", "payee_id": "m-tea", "payee_name": "Tea", "device_id": "dv-9",
           "device_signature_sha256": None, "bank_reference": "BANK-REF-77"}


@pytest.fixture(scope="module")
def signers(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any, list[Json]]:
    store = FileKeyStore(Path(tmp_path_factory.mktemp("keys")), b"test passphrase")
    receipt, log = store.create("rk-c", "ed25519"), store.create("lk-c", "ecdsa-p256-sha256")
    keys = [{"key_id": s.key_id, "alg": s.alg, "purpose": p,
             "public_key_pem": platform_sig.public_key_pem(s)}
            for s, p in ((receipt, "receipt"), (log, "log"))]
    return receipt, log, keys


def counter_bytes(n: int) -> bytes:
    """A deterministic random source (injected): 0, 1, 2, … modulo 256."""
    return bytes(itertools.islice(itertools.cycle(range(256)), n))


def queue() -> list[tuple[int, str, str, float]]:
    key = {"key_id": "rk1", "purpose": "receipt", "alg": "ed25519"}
    rows = [("payment", PAYMENT), ("key.published", key),
            ("operator.action", {"method": "POST", "path": "/v1/users/u-alice/freeze"}),
            ("ledger.batch", {"seal_no": 1, "sha256": "00" * 32}),
            ("some.future.kind", {"user_id": "u-alice"})]
    return [(i + 1, kind, canonical_json(body).decode(), NOW + i)
            for i, (kind, body) in enumerate(rows)]


def batch(signers: tuple[Any, Any, list[Json]]) -> Batch:
    return prepare_batch(0, queue(), NOW + 10, signers[0], randbytes=counter_bytes)


def bundle_of(b: Batch, log: Any, txn_id: str = "T1") -> Json:
    size = len(b.leaves)
    tree = build_tree([b.hashes[i:i + 32] for i in range(0, len(b.hashes), 32)])
    row = next(r for r in b.receipts if r[0] == txn_id)
    root, ts = tree.root(size), at_ms(NOW + 100)
    head = TreeHead(size, ts, root, log.key_id, log.alg,
                    platform_sig.sign(log, sth_signing_bytes(size, ts, root)))
    return {"receipt": orjson.loads(row[5]), "signed_tree_head": head.public(),
            "inclusion_proof": {"leaf_index": row[4], "tree_size": size,
                                "audit_path": [b64(h) for h in tree.inclusion_proof(row[4],
                                                                                    size)]}}


def resign(receipt: Json, signer: Any) -> None:
    receipt["signature"] = b64(platform_sig.sign(signer, receipt_signing_bytes(receipt)))


def test_only_the_public_kinds_are_logged_in_clear(signers: tuple[Any, Any, list[Json]]
                                                   ) -> None:
    assert PUBLIC_KINDS < KINDS and not PUBLIC_KINDS & RECEIPT_KINDS
    b = batch(signers)
    versions = [leaf[2].split("\n", 1)[0] for leaf in b.leaves]
    assert versions == ["ANFU-LOG-V2", "ANFU-LOG-V1", "ANFU-LOG-V2", "ANFU-LOG-V1",
                        "ANFU-LOG-V2"]  # an unknown kind is committed: deny by default
    payment = b.leaves[0][2]
    for secret in ("u-alice", "m-tea", "4321", "dv-9", "BANK-REF-77", "Tea"):
        assert secret not in payment and secret not in b.leaves[2][2]
    parsed = parse_entry(payment.encode())
    assert set(parsed) == {"version", "at", "commitment", "kind"}
    # The private body and salt sit beside the committed leaf, and open its commitment.
    _, _, _, digest, _, body, salt = b.leaves[0]
    assert body is not None and salt == counter_bytes(SALT_SIZE)
    assert digest == leaf_hash(payment.encode())
    verify_opening(bytes.fromhex(parsed["commitment"]), COMMITMENT_LABEL, salt, body.encode())
    assert b.leaves[1][5:] == (None, None)  # public: the body is in the entry itself


def test_salts_are_fresh_and_the_commitment_hides_the_body() -> None:
    salts = new_salts(3)
    assert len({*salts}) == 3 and all(len(s) == SALT_SIZE for s in salts)
    data = canonical_json(PAYMENT)
    with pytest.raises(CommitmentMismatch):
        verify_opening(bytes(32), COMMITMENT_LABEL, salts[0], data)


def test_a_committed_entry_has_one_strict_form() -> None:
    good = b'ANFU-LOG-V2\n{"at":5,"commitment":"' + b"ab" * 32 + b'","kind":"payment"}'
    assert parse_entry(good)["commitment"] == "ab" * 32
    for bad in (good.replace(b"ab", b"AB"), good.replace(b'"at":5,', b'"at":5,"body":{},'),
                good.replace(b'"at":5', b'"at": 5'), b"ANFU-LOG-V3\n{}"):
        with pytest.raises(EntryInvalid):
            parse_entry(bad)


def test_a_receipt_opens_its_commitment_offline(signers: tuple[Any, Any, list[Json]]
                                                ) -> None:
    bundle = bundle_of(batch(signers), signers[1])
    receipt = bundle["receipt"]
    assert receipt["version"] == "ANFU-RECEIPT-V2" and receipt["transaction"] == PAYMENT
    summary = verify_receipt_bundle(bundle, signers[2])
    assert "receipt_commitment" in summary["checks"] and summary["leaf_index"] == 0


@pytest.mark.parametrize("tamper", [
    lambda r: r["transaction"].__setitem__("amount", 1),
    lambda r: r.__setitem__("salt", b64(bytes(32))),
])
def test_a_signed_receipt_that_does_not_open_the_log_entry_is_refused(
        signers: tuple[Any, Any, list[Json]], tamper: Any) -> None:
    """Even a receipt the platform signed: if its transaction and salt do not open the
    commitment that the log holds, the log does not back it."""
    bundle = copy.deepcopy(bundle_of(batch(signers), signers[1]))
    tamper(bundle["receipt"])
    if bundle["receipt"]["transaction"]["amount"] == 1:
        bundle["receipt"]["amount"] = 1  # the receipt's own fields agree with the body
    resign(bundle["receipt"], signers[0])
    with pytest.raises(VerificationFailed) as caught:
        verify_receipt_bundle(bundle, signers[2])
    assert caught.value.check == "receipt_commitment"


def test_receipts_of_an_earlier_v1_log_still_verify(signers: tuple[Any, Any, list[Json]]
                                                    ) -> None:
    receipt_signer, log, keys = signers
    entry = entry_bytes("payment", 1000, canonical_json(PAYMENT).decode())
    tree = build_tree([leaf_hash(entry), leaf_hash(b"other")])
    receipt = {"version": "ANFU-RECEIPT-V1", "kind": "payment", "txn_id": "T1",
               "user_id": "u-alice", "merchant_id": "m-tea", "amount": 4321,
               "currency": "CNY", "device_signature_sha256": None, "leaf_index": 0,
               "log_entry": b64(entry), "transaction": PAYMENT, "issued_at": 2000,
               "key_id": receipt_signer.key_id, "alg": receipt_signer.alg}
    resign(receipt, receipt_signer)
    assert receipt_signing_bytes(receipt).startswith(b"ANFU-RECEIPT-V1\n")
    root, ts = tree.root(2), 3000
    head = TreeHead(2, ts, root, log.key_id, log.alg,
                    platform_sig.sign(log, sth_signing_bytes(2, ts, root)))
    bundle = {"receipt": receipt, "signed_tree_head": head.public(),
              "inclusion_proof": {"leaf_index": 0, "tree_size": 2,
                                  "audit_path": [b64(h) for h in tree.inclusion_proof(0, 2)]}}
    summary = verify_receipt_bundle(bundle, keys)
    assert "receipt_commitment" not in summary["checks"]
    # A V2 receipt must point at a committed entry, not at an entry in clear.
    receipt = {**receipt, "version": "ANFU-RECEIPT-V2", "salt": b64(bytes(32))}
    resign(receipt, receipt_signer)
    with pytest.raises(VerificationFailed) as caught:
        verify_receipt_bundle({**bundle, "receipt": receipt}, keys)
    assert caught.value.check == "receipt_entry"


def audit_view(b: Batch) -> list[Json]:
    """What the admin zone's auditor route serves for these leaves."""
    return [{"leaf_index": i, "kind": kind, "leaf_input": b64(text.encode()),
             **({} if salt is None else {"body": orjson.loads(body or ""), "salt": b64(salt)})}
            for i, kind, text, _, _, body, salt in b.leaves]


def test_the_auditor_checks_every_commitment_and_the_root(
        signers: tuple[Any, Any, list[Json]]) -> None:
    b = batch(signers)
    sth = bundle_of(b, signers[1])["signed_tree_head"]
    summary = verify_audited_entries(audit_view(b), sth, signers[2])
    assert (summary["committed"], summary["public"]) == (3, 2)


@pytest.mark.parametrize(("tamper", "check"), [
    (lambda e: e[2]["body"].__setitem__("path", "/v1/x"), "audit_commitment"),
    (lambda e: e[0].pop("salt"), "audit_commitment"),
    (lambda e: e.pop(), "audit_entries"),
    (lambda e: e[1].__setitem__("leaf_input", b64(entry_bytes(
        "key.published", 1, '{"key_id":"forged"}'))), "audit_root"),
])
def test_the_auditor_names_what_does_not_check(signers: tuple[Any, Any, list[Json]],
                                               tamper: Any, check: str) -> None:
    b = batch(signers)
    sth = bundle_of(b, signers[1])["signed_tree_head"]
    entries = audit_view(b)
    tamper(entries)
    with pytest.raises(VerificationFailed) as caught:
        verify_audited_entries(entries, sth, signers[2])
    assert caught.value.check == check
