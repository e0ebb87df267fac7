"""Sealing the ledger into the transparency log ("ledger batches").

Every few seconds the worker takes the transfers committed since the last seal, in ``seq``
order, and logs one ``ledger.batch`` entry naming the range and the SHA-256 of their
canonical lines. Ledger history is append-only by rule; sealed into an append-only log it is
append-only by proof: an insider who edits, deletes or inserts a past transfer changes a
batch's digest, which ``anfu verify ledger`` recomputes and the log's monitors already hold.

The canonical line of a transfer (UTF-8, ``|``-separated, ``-`` for NULL, ``\\n``-ended)::

    seq|id|kind|debit_account_id|credit_account_id|amount|currency|pending_id|created_at

with ``created_at`` as Python's ``repr`` of the float (shortest round-trip form).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from anfu.crypto.tokens import sha256_hex

SEAL_LAG_S = 2.0  # transfers younger than this wait for the next seal (late commits)
MAX_TRANSFERS = 200_000
FIELDS = ("seq", "id", "kind", "debit_account_id", "credit_account_id", "amount", "currency",
          "pending_id", "created_at")


def canonical_line(row: Mapping[str, Any]) -> str:
    values = []
    for name in FIELDS:
        value = row[name]
        values.append("-" if value is None else repr(float(value)) if name == "created_at"
                      else str(value))
    return "|".join(values) + "\n"


def batch_digest(rows: Iterable[Mapping[str, Any]]) -> str:
    return sha256_hex("".join(canonical_line(r) for r in rows).encode("utf-8"))


@dataclass(frozen=True, slots=True)
class LedgerSeal:
    seal_no: int
    from_seq: int
    to_seq: int
    transfers: int
    digest: str
    sealed_at: float

    def log_body(self) -> dict[str, Any]:
        return {"seal_no": self.seal_no, "from_seq": self.from_seq, "to_seq": self.to_seq,
                "transfers": self.transfers, "sha256": self.digest}
