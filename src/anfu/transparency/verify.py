"""Offline verifiers: signed tree heads, inclusion and consistency proofs, receipt bundles
and the commitments of private (V2) log entries.
Pure: they need only what they check and the platform's published keys
(``GET /v1/platform/keys``). Each raises ``VerificationFailed`` naming the failed check."""

from __future__ import annotations

from typing import Any

from anfu.crypto import InvalidSignature, platform_sig
from anfu.crypto.commitment import CommitmentMismatch, verify_opening
from anfu.crypto.merkle_hash import leaf_hash
from anfu.transparency.merkle import ProofInvalid, verify_consistency, verify_inclusion
from anfu.transparency.model import (
    COMMITMENT_LABEL,
    ENTRY_V1,
    ENTRY_V2,
    RECEIPT_V1,
    RECEIPT_VERSION,
    STH_VERSION,
    EntryInvalid,
    canonical_json,
    parse_entry,
    receipt_signing_bytes,
    sth_signing_bytes,
    unb64,
)

Json = dict[str, Any]


class VerificationFailed(ValueError):
    """``check`` names what failed (e.g. ``receipt_signature``, ``inclusion_root``)."""

    def __init__(self, check: str, detail: str) -> None:
        super().__init__(f"{check}: {detail}")
        self.check = check
        self.detail = detail


def _key(keys: list[Json], key_id: Any, alg: Any, purpose: str, check: str) -> Json:
    for k in keys:
        if k.get("key_id") == key_id and k.get("purpose", purpose) == purpose:
            if k.get("alg") != alg:
                raise VerificationFailed(check, f"key {key_id} is a {k.get('alg')} key, not"
                                         f" {alg}")
            return k
    raise VerificationFailed(check, f"no published {purpose} key {key_id!r}")


def _int(value: Any, what: str, check: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise VerificationFailed(check, f"{what} must be a non-negative integer")
    return value


def _bytes(value: Any, what: str, check: str) -> bytes:
    try:
        return unb64(value, what)
    except EntryInvalid as exc:
        raise VerificationFailed(check, str(exc)) from None


def _hashes(values: Any, what: str, check: str) -> list[bytes]:
    if not isinstance(values, list):
        raise VerificationFailed(check, f"{what} must be a list of base64 hashes")
    return [_bytes(v, what, check) for v in values]


def verify_sth(sth: Json, keys: list[Json]) -> Json:
    """Check a signed tree head's signature with the published log key; returns
    ``{"tree_size", "timestamp", "root_hash"(bytes), "key_id"}``."""
    check = "sth_signature"
    if not isinstance(sth, dict) or sth.get("version", STH_VERSION) != STH_VERSION:
        raise VerificationFailed("sth_format", f"not an {STH_VERSION} signed tree head")
    size = _int(sth.get("tree_size"), "tree_size", "sth_format")
    timestamp = _int(sth.get("timestamp"), "timestamp", "sth_format")
    root = _bytes(sth.get("sha256_root_hash"), "sha256_root_hash", "sth_format")
    signature = _bytes(sth.get("tree_head_signature"), "tree_head_signature", "sth_format")
    key = _key(keys, sth.get("key_id"), sth.get("alg"), "log", check)
    try:
        platform_sig.verify(str(key["alg"]), str(key["public_key_pem"]),
                            sth_signing_bytes(size, timestamp, root), signature)
    except InvalidSignature as exc:
        raise VerificationFailed(check, f"the tree head's signature does not verify ({exc})"
                                 ) from None
    return {"tree_size": size, "timestamp": timestamp, "root_hash": root,
            "key_id": sth.get("key_id")}


def verify_inclusion_proof(leaf: bytes, proof: Json, sth: Json, keys: list[Json]) -> Json:
    """``leaf`` (a leaf hash) is in the tree ``sth`` signs, at ``proof["leaf_index"]``."""
    head = verify_sth(sth, keys)
    index = _int(proof.get("leaf_index"), "leaf_index", "inclusion_format")
    size = _int(proof.get("tree_size", head["tree_size"]), "tree_size", "inclusion_format")
    if size != head["tree_size"]:
        raise VerificationFailed("inclusion_tree_size", f"the proof is for size {size}, the"
                                 f" tree head for {head['tree_size']}")
    path = _hashes(proof.get("audit_path"), "audit_path", "inclusion_format")
    try:
        verify_inclusion(index, size, leaf, path, head["root_hash"])
    except ProofInvalid as exc:
        raise VerificationFailed(exc.check, exc.detail) from None
    return head


def verify_sth_consistency(old: Json, new: Json, proof: list[Any], keys: list[Json]) -> Json:
    """Both tree heads are signed and the newer tree extends the older one."""
    first = verify_sth(old, keys)
    second = verify_sth(new, keys)
    hashes = _hashes(proof, "consistency", "consistency_format")
    if first["tree_size"] == 0:  # the empty tree is a prefix of every tree
        return {"old": first, "new": second}
    try:
        verify_consistency(first["tree_size"], second["tree_size"], first["root_hash"],
                           second["root_hash"], hashes)
    except ProofInvalid as exc:
        raise VerificationFailed(exc.check, exc.detail) from None
    return {"old": first, "new": second}


def verify_commitment(entry: Json, body: Any, salt: Any, check: str) -> None:
    """``body`` and ``salt`` open the commitment of ``entry`` (a parsed V2 entry): the
    salted SHA-256 of the body's canonical JSON is the one the log holds."""
    if not isinstance(body, dict):
        raise VerificationFailed(check, "the committed body is a JSON object")
    salt_bytes = _bytes(salt, "salt", check)
    try:
        data = canonical_json(body)
    except EntryInvalid as exc:
        raise VerificationFailed(check, str(exc)) from None
    try:
        verify_opening(bytes.fromhex(entry["commitment"]), COMMITMENT_LABEL, salt_bytes, data)
    except CommitmentMismatch as exc:
        raise VerificationFailed(check, f"the body and salt do not open the log entry's"
                                 f" commitment ({exc})") from None


def verify_receipt(receipt: Json, keys: list[Json]) -> bytes:
    """The receipt's signature by a published receipt key and its entry's coherence (for a
    V2 receipt: its transaction and salt open the entry's commitment); returns the log
    entry bytes. V1 receipts (entries logged in clear, before commitments) still verify."""
    version = receipt.get("version") if isinstance(receipt, dict) else None
    if version not in (RECEIPT_V1, RECEIPT_VERSION):
        raise VerificationFailed("receipt_format", f"not an {RECEIPT_VERSION} (or"
                                 f" {RECEIPT_V1}) receipt")
    signature = _bytes(receipt.get("signature"), "signature", "receipt_format")
    key = _key(keys, receipt.get("key_id"), receipt.get("alg"), "receipt", "receipt_signature")
    try:
        message = receipt_signing_bytes(receipt)
    except EntryInvalid as exc:
        raise VerificationFailed("receipt_format", str(exc)) from None
    try:
        platform_sig.verify(str(key["alg"]), str(key["public_key_pem"]), message, signature)
    except InvalidSignature as exc:
        raise VerificationFailed("receipt_signature", f"the receipt's signature does not"
                                 f" verify ({exc})") from None
    entry = _bytes(receipt.get("log_entry"), "log_entry", "receipt_format")
    try:
        parsed = parse_entry(entry)
    except EntryInvalid as exc:
        raise VerificationFailed("receipt_entry", str(exc)) from None
    body = receipt.get("transaction")
    if parsed["kind"] != receipt.get("kind") or not isinstance(body, dict):
        raise VerificationFailed("receipt_entry", "the log entry is not this receipt's"
                                 " transaction")
    if version == RECEIPT_V1:
        if parsed["version"] != ENTRY_V1 or parsed["body"] != body:
            raise VerificationFailed("receipt_entry", "the log entry is not this receipt's"
                                     " transaction")
    else:
        if parsed["version"] != ENTRY_V2:
            raise VerificationFailed("receipt_entry", f"an {RECEIPT_VERSION} receipt's log"
                                     f" entry is a committed {ENTRY_V2} entry")
        verify_commitment(parsed, body, receipt.get("salt"), "receipt_commitment")
    for name in ("txn_id", "user_id", "merchant_id", "amount", "currency",
                 "device_signature_sha256"):
        if body.get(name) != receipt.get(name) and not (name == "txn_id" and str(
                body.get(name)) == receipt.get(name)):
            raise VerificationFailed("receipt_entry", f"{name} differs from the log entry")
    return entry


def verify_receipt_bundle(bundle: Json, keys: list[Json]) -> Json:
    """A receipt bundle ``{receipt, signed_tree_head, inclusion_proof}``: the receipt's
    signature, its transaction against the log entry's commitment, the tree head's
    signature, and the inclusion of the log entry at its index. Returns a summary; raises
    VerificationFailed naming the check that failed."""
    if not isinstance(bundle, dict):
        raise VerificationFailed("bundle_format", "a receipt bundle is a JSON object")
    receipt, sth, proof = (bundle.get("receipt"), bundle.get("signed_tree_head"),
                           bundle.get("inclusion_proof"))
    if not isinstance(receipt, dict) or not isinstance(sth, dict) or not isinstance(proof,
                                                                                    dict):
        raise VerificationFailed("bundle_format", "a receipt bundle holds receipt,"
                                 " signed_tree_head and inclusion_proof")
    entry = verify_receipt(receipt, keys)
    if proof.get("leaf_index") != receipt.get("leaf_index"):
        raise VerificationFailed("inclusion_leaf_index", "the proof is for another log index")
    head = verify_inclusion_proof(leaf_hash(entry), proof, sth, keys)
    committed = receipt.get("version") == RECEIPT_VERSION
    return {"ok": True, "txn_id": receipt.get("txn_id"), "kind": receipt.get("kind"),
            "leaf_index": receipt.get("leaf_index"), "tree_size": head["tree_size"],
            "receipt_key_id": receipt.get("key_id"), "log_key_id": head["key_id"],
            "checks": ["receipt_signature", "receipt_entry",
                       *(["receipt_commitment"] if committed else []), "sth_signature",
                       "inclusion_proof"]}
