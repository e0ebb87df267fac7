"""The log's data: entry bytes, signed tree heads and receipts, each with defined canonical
bytes and a domain-separation label (docs/transparency.md). Pure Python.

- Entry (the leaf data): ``ANFU-LOG-V1\\n`` + canonical JSON ``{"at", "body", "kind"}``,
  ``at`` in integer milliseconds.
- Canonical JSON: UTF-8, no insignificant whitespace, object keys sorted by code point,
  integers, strings, booleans, null, arrays and objects only (no floats).
- Signed tree head: ``ANFU-STH-V1\\n<tree_size>\\n<timestamp ms>\\n<root hash hex>\\n``.
- Receipt: ``ANFU-RECEIPT-V1\\n`` + canonical JSON of the receipt without ``signature``.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import orjson

ENTRY_LABEL = b"ANFU-LOG-V1\n"
STH_LABEL = "ANFU-STH-V1"
RECEIPT_LABEL = b"ANFU-RECEIPT-V1\n"
RECEIPT_VERSION = "ANFU-RECEIPT-V1"
STH_VERSION = "ANFU-STH-V1"
RECEIPT_KINDS = frozenset({"payment", "refund", "transfer", "withdrawal"})
KINDS = frozenset({"payment", "refund", "transfer", "withdrawal", "topup",
                   "certificate.issued", "certificate.revoked", "key.published",
                   "key.rotated",
                   "operator.action", "ledger.batch"})
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


def entry_bytes(kind: str, at: int, body_json: str) -> bytes:
    """The leaf data, from the body's canonical JSON (as queued)."""
    return b"%s{\"at\":%d,\"body\":%s,\"kind\":%s}" % (
        ENTRY_LABEL, at, body_json.encode(), orjson.dumps(kind))


_KIND_JSON: dict[str, str] = {}


def entry_text(kind: str, at: int, body_json: str) -> str:
    """``entry_bytes`` as text (what ``log_leaves.entry`` stores), built by formatting: the
    body is already canonical and the keys are in order."""
    kind_json = _KIND_JSON.get(kind)
    if kind_json is None:
        kind_json = _KIND_JSON[kind] = orjson.dumps(kind).decode()
    return f'ANFU-LOG-V1\n{{"at":{at},"body":{body_json},"kind":{kind_json}}}'


def parse_entry(data: bytes) -> dict[str, Any]:
    """``{"at", "body", "kind"}`` of an entry; refuses bytes that are not canonical."""
    if not data.startswith(ENTRY_LABEL):
        raise EntryInvalid("the log entry does not start with ANFU-LOG-V1")
    try:
        value = orjson.loads(data[len(ENTRY_LABEL):])
    except orjson.JSONDecodeError as exc:
        raise EntryInvalid(f"the log entry is not JSON: {exc}") from None
    if not isinstance(value, dict) or set(value) != {"at", "body", "kind"}:
        raise EntryInvalid("the log entry must hold exactly at, body and kind")
    if canonical_json(value) != data[len(ENTRY_LABEL):]:
        raise EntryInvalid("the log entry is not in canonical form")
    return value


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
    unsigned = {k: v for k, v in receipt.items() if k != "signature"}
    return RECEIPT_LABEL + canonical_json(unsigned)


def receipt_payload(*, kind: str, body: dict[str, Any], leaf_index: int, entry: bytes,
                    issued_at: int, key_id: str, alg: str) -> dict[str, Any]:
    """The receipt before its signature: the transaction, the hash of the device's
    signature, the log index and the exact log entry (so the leaf hash can be recomputed)."""
    return {"version": RECEIPT_VERSION, "kind": kind, "txn_id": str(body.get("txn_id")),
            "user_id": body.get("user_id"), "merchant_id": body.get("merchant_id"),
            "amount": body.get("amount"), "currency": body.get("currency"),
            "device_signature_sha256": body.get("device_signature_sha256"),
            "leaf_index": leaf_index, "log_entry": b64(entry), "transaction": body,
            "issued_at": issued_at, "key_id": key_id, "alg": alg}
