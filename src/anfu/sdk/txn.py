"""The phone's half of transaction signing (book 3.6): build the ANFU-TXN-V1 bytes from the
transaction the customer approved, never from text the server sent, and sign them with the
device key (the key of the device certificate); and waiting for the platform's receipt."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from anfu.crypto.jose import DeviceKey
from anfu.crypto.jwk import b64url_encode
from anfu.identity.txn_signing import TxnFacts, TxnOperation, TxnSignatureHeader
from anfu.sdk.errors import SdkError

Json = dict[str, Any]
Approver = Callable[[Json], bool]
"""Shown the transaction (operation, txn_id, amount, currency, payee_id, payee_name); returns
True when the person confirmed it on the phone's screen."""


def facts_of(transaction: Json) -> TxnFacts:
    try:
        return TxnFacts(TxnOperation(transaction["operation"]), str(transaction["txn_id"]),
                        int(transaction["amount"]), str(transaction["currency"]),
                        str(transaction["payee_id"]), str(transaction["payee_name"]))
    except (KeyError, ValueError, TypeError) as exc:
        raise SdkError(f"the transaction to sign is incomplete: {exc}") from None


def signature_header(key: DeviceKey, facts: TxnFacts, challenge: str,
                     now: float | None = None) -> str:
    """The ``Anfu-Txn-Signature`` header value for ``facts`` under ``challenge``."""
    timestamp = int(time.time() if now is None else now)
    signature = key.sign(facts.signing_bytes(challenge, timestamp))
    return TxnSignatureHeader(challenge, timestamp, b64url_encode(signature)).render()


def answer_signature_required(key: DeviceKey | None, problem: Json,
                              approve: Approver | None,
                              expected: Callable[[TxnFacts], None] | None = None) -> str:
    """Turn a ``txn_signature_required`` problem into the header to retry with."""
    if key is None:
        raise SdkError("this payment must be signed with the device key, which this client"
                       " does not hold")
    facts = facts_of(problem.get("transaction") or {})
    if expected is not None:
        expected(facts)
    if approve is not None and not approve(facts.public()):
        raise SdkError("the person declined the transaction on the phone")
    return signature_header(key, facts, str(problem["challenge"]))


def poll_receipt(fetch: Callable[[], Json | None], txn_id: str, wait_s: float) -> Json:
    """``fetch()`` (None while the receipt is pending: the log has not sequenced it or no
    tree head covers it yet) until it gives the bundle, for at most ``wait_s``."""
    deadline = time.monotonic() + wait_s
    while True:
        bundle = fetch()
        if bundle is not None:
            return bundle
        if time.monotonic() >= deadline:
            raise SdkError(f"the receipt of {txn_id} is still pending after {wait_s} s")
        time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
