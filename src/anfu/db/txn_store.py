"""Transaction-signing challenges and evidence: a few fixed statements on the pay path, so
they run on the driver connection (``Raw``)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from anfu.db.raw import Raw
from anfu.identity.txn_signing import TxnChallenge, TxnEvidence, TxnOperation

_INSERT = ("INSERT INTO txn_challenges (challenge, user_id, device_id, facts_digest, issued_at,"
           " expires_at, attempts) VALUES (:c, :u, :d, :f, :i, :e, 0)")
_GET = ("SELECT challenge, user_id, device_id, facts_digest, issued_at, expires_at, attempts,"
        " used_at FROM txn_challenges WHERE challenge = :c")
# What signing a payment needs to know about the device, in one statement: its newest device
# certificate, valid or not (a lapsed one must never lower the bar), and the key it certifies.
_SIGNER = ("SELECT c.serial, c.not_after, c.revoked_at, c.revocation_reason, d.device_id,"
           " d.user_id, d.alg, d.public_jwk FROM pki_certificates c"
           " JOIN devices d ON d.device_id = c.subject_id WHERE c.profile = 'device'"
           " AND c.subject_id = :d AND d.revoked_at IS NULL"
           " ORDER BY c.not_before DESC, c.created_at DESC LIMIT 1")
_FAIL = "UPDATE txn_challenges SET attempts = attempts + 1 WHERE challenge = :c"
_USE = ("UPDATE txn_challenges SET used_at = :now, used_for = :t WHERE challenge = :c"
        " AND used_at IS NULL AND attempts < :max AND expires_at > :now")
_EVIDENCE = ("INSERT INTO txn_evidence (txn_id, operation, user_id, device_id,"
             " certificate_serial, challenge, signed_bytes, signature, alg, signed_at,"
             " created_at) VALUES (:t, :o, :u, :d, :s, :c, :b, :sig, :a, :at, :now)")


def _challenge(row: dict[str, Any]) -> TxnChallenge:
    return TxnChallenge(challenge=row["challenge"], user_id=row["user_id"],
                        device_id=row["device_id"], issued_at=row["issued_at"],
                        expires_at=row["expires_at"], facts_digest=row["facts_digest"],
                        attempts=row["attempts"], used_at=row["used_at"])


class SqlTxnStore:
    def __init__(self, conn: Connection) -> None:
        self._raw = Raw(conn)
        self._conn = conn

    def insert(self, ch: TxnChallenge) -> None:
        self._raw.run(_INSERT, {"c": ch.challenge, "u": ch.user_id, "d": ch.device_id,
                                "f": ch.facts_digest, "i": ch.issued_at, "e": ch.expires_at})

    def get(self, challenge: str) -> TxnChallenge | None:
        row = self._raw.row(_GET, {"c": challenge})
        return None if row is None else _challenge(row)

    def signer(self, device_id: str) -> dict[str, Any] | None:
        """The device's newest certificate (serial, validity, revocation) and its key, if
        it ever held one."""
        return self._raw.row(_SIGNER, {"d": device_id})

    def record_failure(self, challenge: str) -> None:
        self._raw.run(_FAIL, {"c": challenge})

    def use(self, challenge: str, txn_id: str, now: float, max_attempts: int) -> bool:
        """Mark the challenge used for ``txn_id``; False if it was used, locked or expired
        meanwhile (the conditional UPDATE makes single use hold across processes)."""
        return self._raw.run(_USE, {"c": challenge, "t": txn_id, "now": now,
                                    "max": max_attempts}) == 1

    def add_evidence(self, ev: TxnEvidence, now: float) -> None:
        self._raw.run(_EVIDENCE, {"t": ev.txn_id, "o": ev.operation.value, "u": ev.user_id,
                                  "d": ev.device_id, "s": ev.certificate_serial,
                                  "c": ev.challenge, "b": ev.signed_bytes,
                                  "sig": ev.signature, "a": ev.alg, "at": ev.signed_at,
                                  "now": now})

    def evidence(self, txn_id: str) -> TxnEvidence | None:
        row = self._raw.row("SELECT * FROM txn_evidence WHERE txn_id = :t", {"t": txn_id})
        if row is None:
            return None
        return TxnEvidence(txn_id=row["txn_id"], operation=TxnOperation(row["operation"]),
                           user_id=row["user_id"], device_id=row["device_id"],
                           certificate_serial=row["certificate_serial"],
                           challenge=row["challenge"], signed_bytes=bytes(row["signed_bytes"]),
                           signature=bytes(row["signature"]), alg=row["alg"],
                           signed_at=row["signed_at"])

    def forget_expired(self, now: float) -> int:
        """Challenges past their life (a day's grace keeps recent failures inspectable)."""
        return self._raw.run("DELETE FROM txn_challenges WHERE expires_at < :t",
                             {"t": now - 86400})
