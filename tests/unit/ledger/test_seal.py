"""Ledger seals: the canonical transfer lines and their digest."""

from __future__ import annotations

import hashlib

from anfu.ledger.seal import batch_digest, canonical_line

ROW = {"seq": 7, "id": "T1:hold", "kind": "pending", "debit_account_id": 3,
       "credit_account_id": 9, "amount": 600, "currency": "CNY", "pending_id": None,
       "created_at": 1764000000.125}


def test_canonical_line_is_documented_form() -> None:
    assert canonical_line(ROW) == "7|T1:hold|pending|3|9|600|CNY|-|1764000000.125\n"


def test_digest_changes_with_any_field_or_order() -> None:
    other = {**ROW, "seq": 8, "id": "T1:post", "kind": "post", "pending_id": "T1:hold"}
    digest = batch_digest([ROW, other])
    assert digest == hashlib.sha256((canonical_line(ROW) + canonical_line(other)).encode()
                                    ).hexdigest()
    assert batch_digest([other, ROW]) != digest
    for field, value in (("amount", 601), ("credit_account_id", 10), ("created_at", 1.0)):
        assert batch_digest([{**ROW, field: value}, other]) != digest
