"""The log's data: entry bytes, signed tree heads and receipts, each with defined canonical
bytes and a domain-separation label (docs/transparency.md). Pure Python.

- Entry (the leaf data), one of two versions named by its first line:
  ``ANFU-LOG-V1\\n`` + canonical JSON ``{"at", "body", "kind"}``: the body in clear (the
  public kinds, and every entry of a log written before commitments existed);
  ``ANFU-LOG-V2\\n`` + canonical JSON ``{"at", "commitment", "kind"}``: only a hiding
  commitment to the body, ``SHA-256("ANFU-LOG-COMMITMENT-V2\\n" || salt || body)`` with a
  fresh 32-byte salt (the body and salt stay private: the owner's receipt, the auditors).
  ``at`` is in integer milliseconds.
- Canonical JSON: UTF-8, no insignificant whitespace, object keys sorted by code point,
  integers, strings, booleans, null, arrays and objects only (no floats).
- Signed tree head: ``ANFU-STH-V1\\n<tree_size>\\n<timestamp ms>\\n<root hash hex>\\n``.
- Receipt: ``ANFU-RECEIPT-V2\\n`` (``-V1`` for receipts of V1 entries) + canonical JSON of
  the receipt without ``signature``.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import orjson

from anfu.crypto.commitment import commit

ENTRY_LABEL = b"ANFU-LOG-V1\n"
COMMITTED_ENTRY_LABEL = b"ANFU-LOG-V2\n"
ENTRY_V1 = "ANFU-LOG-V1"
ENTRY_V2 = "ANFU-LOG-V2"
COMMITMENT_LABEL = b"ANFU-LOG-COMMITMENT-V2\n"
STH_LABEL = "ANFU-STH-V1"
RECEIPT_V1 = "ANFU-RECEIPT-V1"
RECEIPT_VERSION = "ANFU-RECEIPT-V2"
RECEIPT_LABELS = {RECEIPT_V1: b"ANFU-RECEIPT-V1\n", RECEIPT_VERSION: b"ANFU-RECEIPT-V2\n"}
STH_VERSION = "ANFU-STH-V1"
RECEIPT_KINDS = frozenset({"payment", "refund", "transfer", "withdrawal"})
KINDS = frozenset({"payment", "refund", "transfer", "withdrawal", "topup",
                   "certificate.issued", "certificate.revoked", "key.published",
                   "key.rotated",
                   "operator.action", "ledger.batch"})
# The kinds whose body is published in clear: platform announcements that name no customer,
# merchant, device or operator. Every other kind (a kind added later too) is committed:
# deny by default.
PUBLIC_KINDS = frozenset({"key.published", "key.rotated", "ledger.batch"})
MAX_KIND = 32
MAX_ENTRIES_PER_PAGE = 1000
STH_MAX_AGE_S = 3600.0  # a tree head is signed at least hourly, grown or not


class EntryInvalid(ValueError):
    pass


def canonical_json(value: Any) -> bytes:
    """The canonical bytes of a JSON value (see the module notes)."""
    _no_floats(value)
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def _no_floats(value: Any) -> None:
    if isinstance(value, float):
        raise EntryInvalid("canonical JSON has no floats: send integers (minor units, ms)")
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise EntryInvalid("canonical JSON object keys are strings")
            _no_floats(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _no_floats(v)


def at_ms(now: float) -> int:
    return round(now * 1000)


def is_public_kind(kind: str) -> bool:
    return kind in PUBLIC_KINDS


def entry_bytes(kind: str, at: int, body_json: str) -> bytes:
    """The V1 leaf data (body in clear), from the body's canonical JSON (as queued)."""
    return b"%s{\"at\":%d,\"body\":%s,\"kind\":%s}" % (
        ENTRY_LABEL, at, body_json.encode(), orjson.dumps(kind))


_KIND_JSON: dict[str, str] = {}


def _kind_json(kind: str) -> str:
    found = _KIND_JSON.get(kind)
    if found is None:
        found = _KIND_JSON[kind] = orjson.dumps(kind).decode()
    return found


def entry_text(kind: str, at: int, body_json: str) -> str:
    """``entry_bytes`` as text (what ``log_leaves.entry`` stores), built by formatting: the
    body is already canonical and the keys are in order."""
    return f'ANFU-LOG-V1\n{{"at":{at},"body":{body_json},"kind":{_kind_json(kind)}}}'


def body_commitment(salt: bytes, body_json: bytes) -> bytes:
    """The V2 commitment to a body's canonical JSON bytes."""
    return commit(COMMITMENT_LABEL, salt, body_json)


def committed_entry_text(kind: str, at: int, commitment: bytes) -> str:
    """The V2 leaf data (the body's commitment only), as text; keys in canonical order."""
    return (f'ANFU-LOG-V2\n{{"at":{at},"commitment":"{commitment.hex()}",'
            f'"kind":{_kind_json(kind)}}}')


_FIELDS = {ENTRY_V1: {"at", "body", "kind"}, ENTRY_V2: {"at", "commitment", "kind"}}


def parse_entry(data: bytes) -> dict[str, Any]:
    """An entry's fields and its ``version``: ``{"version", "at", "kind", "body"}`` (V1) or
    ``{"version", "at", "kind", "commitment"}`` (V2, the commitment in hex); refuses bytes
    that are not canonical."""
    if data.startswith(ENTRY_LABEL):
        version, rest = ENTRY_V1, data[len(ENTRY_LABEL):]
    elif data.startswith(COMMITTED_ENTRY_LABEL):
        version, rest = ENTRY_V2, data[len(COMMITTED_ENTRY_LABEL):]
    else:
        raise EntryInvalid("the log entry starts with neither ANFU-LOG-V1 nor ANFU-LOG-V2")
    try:
        value = orjson.loads(rest)
    except orjson.JSONDecodeError as exc:
        raise EntryInvalid(f"the log entry is not JSON: {exc}") from None
    if not isinstance(value, dict) or set(value) != _FIELDS[version]:
        raise EntryInvalid(f"an {version} entry holds exactly"
                           f" {', '.join(sorted(_FIELDS[version]))}")
    if canonical_json(value) != rest:
        raise EntryInvalid("the log entry is not in canonical form")
    if not isinstance(value["kind"], str) or not isinstance(value["at"], int):
        raise EntryInvalid("the log entry's kind is a string and its at an integer")
    if version == ENTRY_V2 and not _is_hash_hex(value["commitment"]):
        raise EntryInvalid("the commitment is 64 lower-case hex digits (SHA-256)")
    return {"version": version, **value}


def _is_hash_hex(value: Any) -> bool:
    return (isinstance(value, str) and len(value) == 64
            and all(c in "0123456789abcdef" for c in value))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: Any, what: str) -> bytes:
    if not isinstance(text, str):
        raise EntryInvalid(f"{what} must be a base64 string")
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        raise EntryInvalid(f"{what} is not valid base64") from None


@dataclass(frozen=True, slots=True)
class TreeHead:
    tree_size: int
    timestamp: int  # ms
    root_hash: bytes
    key_id: str
    alg: str
    signature: bytes

    def public(self) -> dict[str, Any]:
        """RFC 9162-like JSON: hashes and signature in base64."""
        return {"version": STH_VERSION, "tree_size": self.tree_size,
                "timestamp": self.timestamp, "sha256_root_hash": b64(self.root_hash),
                "key_id": self.key_id, "alg": self.alg,
                "tree_head_signature": b64(self.signature)}


def sth_signing_bytes(tree_size: int, timestamp: int, root_hash: bytes) -> bytes:
    return f"{STH_LABEL}\n{tree_size}\n{timestamp}\n{root_hash.hex()}\n".encode("ascii")


def receipt_signing_bytes(receipt: dict[str, Any]) -> bytes:
    """The signed bytes of a receipt, labelled by its version (V2 unless it says V1)."""
    label = RECEIPT_LABELS.get(str(receipt.get("version")), RECEIPT_LABELS[RECEIPT_VERSION])
    unsigned = {k: v for k, v in receipt.items() if k != "signature"}
    return label + canonical_json(unsigned)


def receipt_payload(*, kind: str, body: dict[str, Any], salt: bytes, leaf_index: int,
                    entry: bytes, issued_at: int, key_id: str,
                    alg: str) -> dict[str, Any]:
    """The receipt before its signature: the transaction, the hash of the device's
    signature, the log index, the exact (public, V2) log entry, and the transaction's salt,
    so its owner can recompute the commitment and the leaf hash."""
    return {"version": RECEIPT_VERSION, "kind": kind, "txn_id": str(body.get("txn_id")),
            "user_id": body.get("user_id"), "merchant_id": body.get("merchant_id"),
            "amount": body.get("amount"), "currency": body.get("currency"),
            "device_signature_sha256": body.get("device_signature_sha256"),
            "leaf_index": leaf_index, "log_entry": b64(entry), "transaction": body,
            "salt": b64(salt), "issued_at": issued_at, "key_id": key_id, "alg": alg}
