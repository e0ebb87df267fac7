"""The mobile zone's transaction-signing gate (``identity/txn_signing.py`` holds the rules).

A money move the policy wants signed arrives with ``Anfu-Txn-Signature: challenge=…,
timestamp=…, signature=…``. Without it the answer is 401 ``txn_signature_required`` with a
challenge bound to this transaction and the exact bytes to sign. A client that signs often
saves that round trip: ``POST /v1/txn-challenges`` hands out a fresh challenge, and every
signed money move's answer carries the next one in ``Anfu-Txn-Challenge`` (as ACME's
Replay-Nonce does).

The signature is checked before the write; the challenge is consumed, and the signed bytes and
signature stored as evidence, in the same transaction as the money move.
"""

from __future__ import annotations

import base64
import binascii
import logging
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import APIRouter, Depends
from starlette.responses import Response

from anfu.api.auth import AuthContext, Authenticator, auth_dependency
from anfu.api.common import json_response
from anfu.bootstrap import Platform
from anfu.crypto import InvalidSignature, JwkInvalid, parse_public_jwk, random_token
from anfu.db.factor_store import SqlFactorStore
from anfu.db.txn_store import SqlTxnStore
from anfu.db.uow import SqlUnitOfWork
from anfu.errors import AuthenticationFailed, Forbidden, NotFound
from anfu.identity.txn_signing import (
    CHALLENGE_TTL_S,
    MAX_ATTEMPTS,
    SigningMode,
    TxnChallenge,
    TxnEvidence,
    TxnFacts,
    TxnSignatureHeader,
)
from anfu.money import Money

log = logging.getLogger("anfu.txn_signing")
SIGNATURE_HEADER = "Anfu-Txn-Signature"
NEXT_CHALLENGE_HEADER = "Anfu-Txn-Challenge"


class TxnSignatureRequired(AuthenticationFailed):
    code = "txn_signature_required"
    title = "Sign this transaction on the phone"


@dataclass(frozen=True, slots=True)
class TxnApproval:
    """A verified signature, to be consumed in the money move's transaction. ``replay``: the
    challenge was already used for this very transaction (a retry after a lost answer), so
    the idempotency record answers instead."""

    evidence: TxnEvidence | None
    next_challenge: TxnChallenge
    replay: bool = False


def _b64url_decode(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise AuthenticationFailed("the transaction signature is not base64url",
                                   code="txn_signature_malformed") from None


def lapsed_certificate(newest: dict[str, Any], now: float) -> None:
    """Raise 403 if the device's newest certificate was revoked or has expired."""
    if newest["revoked_at"] is not None:
        raise Forbidden(
            f"this device's certificate was revoked ({newest['revocation_reason']}): it moves"
            " no money until it has a new certificate (POST /v1/devices/current/certificate)"
            " or an operator removes the device", code="device_certificate_revoked",
            reason=newest["revocation_reason"])
    if newest["not_after"] <= now:
        raise Forbidden(
            "this device's certificate expired: renew it (POST"
            " /v1/devices/current/certificate) before moving money",
            code="device_certificate_expired")


class TxnGate:
    def __init__(self, platform: Platform) -> None:
        self.platform = platform

    def new_challenge(self, c: AuthContext, facts: TxnFacts | None = None) -> TxnChallenge:
        now = self.platform.clock()
        assert c.device_id is not None
        return TxnChallenge(challenge=random_token(32), user_id=c.user_id,
                            device_id=c.device_id, issued_at=float(int(now)),
                            expires_at=now + CHALLENGE_TTL_S,
                            facts_digest=None if facts is None else facts.digest())

    async def approve(self, c: AuthContext, facts: TxnFacts,
                      header: str | None) -> TxnApproval | None:
        """None when this move needs no signature; otherwise the verified approval. Raises
        401 ``txn_signature_required`` (with a challenge) or the failed check."""
        platform = self.platform
        policy = platform.policy.txn_signing
        if policy.mode is SigningMode.OFF:
            return None
        now = platform.clock()
        parsed = None if header is None else TxnSignatureHeader.parse(header)
        device_id = c.device_id

        def read(conn: Any) -> tuple[dict[str, Any] | None, TxnChallenge | None]:
            assert device_id is not None
            store = SqlTxnStore(conn)
            newest = store.signer(device_id)
            ch = store.get(parsed.challenge) if parsed is not None and newest else None
            return newest, ch

        newest, ch = (None, None) if device_id is None else platform.read(read)
        signer = None
        if newest is not None:
            # A device that held a certificate keeps the bar it set: revoked or expired, it
            # moves no money until it has a new one (never falls back to "no signature").
            lapsed_certificate(newest, now)
            signer = newest
        if facts.amount <= policy.threshold(facts.currency):
            return None
        if not policy.needed(Money(facts.amount, facts.currency),
                             has_certificate=signer is not None,
                             bound_device=device_id is not None):
            return None
        if parsed is None:
            await self._ask_for_signature(c, facts)
        assert parsed is not None and signer is not None
        if ch is None:
            raise AuthenticationFailed("no such transaction challenge; ask for a new one",
                                       code="txn_challenge_unknown")
        next_challenge = self.new_challenge(c)
        if ch.used_at is not None and ch.user_id == c.user_id:
            used_for = platform.read(lambda conn: SqlTxnStore(conn).evidence(facts.txn_id))
            if used_for is not None and used_for.challenge == ch.challenge:
                # A retry after a lost answer must be the very transaction that was signed:
                # the same amount, currency and payee, not just the same operation id.
                if used_for.signed_bytes != facts.signing_bytes(ch.challenge,
                                                                used_for.signed_at):
                    platform.metrics.security.labels("mobile", "txn_facts_changed").inc()
                    raise AuthenticationFailed(
                        "this signature approved other transaction facts (amount, currency"
                        " or payee); sign the new transaction", code="txn_facts_changed")
                return TxnApproval(None, next_challenge, replay=True)
        ch.check_usable(user_id=c.user_id, device_id=signer["device_id"], now=now)
        try:
            ch.check_facts(facts)
        except AuthenticationFailed:
            await self._failed(c, ch, "txn_facts_changed", burn=True)
            raise
        ch.check_timestamp(parsed.timestamp, now)
        message = facts.signing_bytes(ch.challenge, parsed.timestamp)
        signature = _b64url_decode(parsed.signature)
        try:
            parse_public_jwk(orjson.loads(signer["public_jwk"])).verify(signature, message)
        except (InvalidSignature, JwkInvalid, ValueError):
            await self._failed(c, ch, "txn_signature_invalid")
            left = ch.remaining_attempts() - 1
            raise AuthenticationFailed(
                "the transaction signature does not verify over ANFU-TXN-V1 with this"
                f" challenge, amount and payee ({left} attempts left)",
                code="txn_signature_invalid", remaining_attempts=left) from None
        return TxnApproval(TxnEvidence(
            txn_id=facts.txn_id, operation=facts.operation, user_id=c.user_id,
            device_id=signer["device_id"], certificate_serial=signer["serial"],
            challenge=ch.challenge, signed_bytes=message, signature=signature,
            alg=signer["alg"], signed_at=parsed.timestamp), next_challenge)

    async def _ask_for_signature(self, c: AuthContext, facts: TxnFacts) -> None:
        ch = self.new_challenge(c, facts)
        await self.platform.write(lambda uow: SqlTxnStore(uow.conn).insert(ch))
        signing = facts.signing_bytes(ch.challenge, int(self.platform.clock()))
        raise TxnSignatureRequired(
            f"this {facts.operation.value} must be signed on the phone with its device"
            f" certificate's key: sign the ANFU-TXN-V1 bytes (signing_string, with your own"
            f" timestamp as the last line) and retry with {SIGNATURE_HEADER}",
            challenge=ch.challenge, expires_at=ch.expires_at, transaction=facts.public(),
            signing_string=signing.decode("utf-8"), max_attempts=MAX_ATTEMPTS,
            header=f"{SIGNATURE_HEADER}: challenge=<challenge>, timestamp=<unix seconds>,"
                   " signature=<base64url>")

    async def _failed(self, c: AuthContext, ch: TxnChallenge, check: str, *,
                      burn: bool = False) -> None:
        platform = self.platform
        platform.metrics.security.labels("mobile", check).inc()
        log.warning("transaction signature refused", extra={
            "check": check, "user_id": c.user_id, "device_id": c.device_id})

        def record(uow: SqlUnitOfWork) -> None:
            store = SqlTxnStore(uow.conn)
            for _ in range(MAX_ATTEMPTS if burn else 1):
                store.record_failure(ch.challenge)

        await platform.write(record)

    @staticmethod
    def commit(uow: SqlUnitOfWork, approval: TxnApproval | None, txn_id: str) -> None:
        """In the money move's transaction: use the challenge once, keep the evidence, and
        issue the next challenge."""
        if approval is None or approval.evidence is None:
            return
        store = SqlTxnStore(uow.conn)
        if not store.use(approval.evidence.challenge, txn_id, uow.now, MAX_ATTEMPTS):
            raise AuthenticationFailed("this transaction challenge was used meanwhile; ask"
                                       " for a new one", code="txn_challenge_used")
        store.add_evidence(approval.evidence, uow.now)
        store.insert(approval.next_challenge)

    @staticmethod
    def with_next_challenge(response: Response, approval: TxnApproval | None) -> Response:
        if approval is not None and approval.evidence is not None and response.status_code < 300:
            response.headers[NEXT_CHALLENGE_HEADER] = approval.next_challenge.challenge
        return response


def build_router(gate: TxnGate, authenticator: Authenticator) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["transaction signing"])
    current = Depends(auth_dependency(authenticator))

    @router.post("/txn-challenges", status_code=201,
                 summary="A fresh single-use challenge for signing a money move")
    async def new_txn_challenge(c: AuthContext = current) -> Response:
        if c.device_id is None:
            raise Forbidden("only a session on a bound device signs transactions",
                            code="device_required")
        ch = gate.new_challenge(c)
        await gate.platform.write(lambda uow: SqlTxnStore(uow.conn).insert(ch))
        return json_response({"challenge": ch.challenge, "issued_at": ch.issued_at,
                              "expires_at": ch.expires_at, "max_attempts": MAX_ATTEMPTS}, 201)

    return router


def build_admin_router(platform: Platform) -> APIRouter:
    """Operators settling a dispute: what the phone signed, and whether it still verifies."""
    router = APIRouter(prefix="/v1", tags=["transaction signing"])

    @router.get("/txn-evidence/{txn_id}", summary="The signed bytes and signature of a"
                " transaction, checked again now")
    async def evidence(txn_id: str) -> Response:
        def read(conn: Any) -> tuple[TxnEvidence | None, Any]:
            found = SqlTxnStore(conn).evidence(txn_id)
            device = SqlFactorStore(conn).device(found.device_id) if found else None
            return found, device

        found, device = platform.read(read)
        if found is None:
            raise NotFound(f"no signed transaction {txn_id}", code="evidence_not_found")
        verified = False
        if device is not None:
            try:
                parse_public_jwk(device.public_jwk).verify(found.signature, found.signed_bytes)
                verified = True
            except (InvalidSignature, JwkInvalid, ValueError):
                verified = False
        return json_response({
            "txn_id": found.txn_id, "operation": found.operation.value,
            "user_id": found.user_id, "device_id": found.device_id,
            "certificate_serial": found.certificate_serial, "challenge": found.challenge,
            "alg": found.alg, "signed_at": found.signed_at,
            "signed_bytes": base64.b64encode(found.signed_bytes).decode("ascii"),
            "signature": base64.b64encode(found.signature).decode("ascii"),
            "signature_sha256": found.signature_sha256(), "verified": verified})

    return router
