"""SQL storage for authentication in progress and its trail: challenges, session proofs,
DPoP proof ids, SMS codes, audit events and device notices."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy import Connection

from anfu.db.raw import Raw
from anfu.identity.challenges import AuthChallenge, ChallengeKind, Requirement
from anfu.identity.codes import Purpose, SmsChallenge
from anfu.identity.step_up import OperationBinding, StepUpGrant

_CHALLENGE_COLUMNS = ("challenge_id", "kind", "user_id", "session_id", "device_id",
                      "operation", "required_acr", "requirement", "nonce", "proofs", "amount",
                      "currency", "payee", "sms_challenge_id", "client_address", "created_at",
                      "expires_at", "completed_at", "payee_id", "phone")
# Column names come from the constant above, never from a request.
_INSERT_CHALLENGE = (f"INSERT INTO auth_challenges ({', '.join(_CHALLENGE_COLUMNS)}) VALUES"  # noqa: S608
                     f" ({', '.join(':' + c for c in _CHALLENGE_COLUMNS)})")
_SESSION_AUTH = ("SELECT user_id, revoked_at, device_id, jkt, proofs FROM sessions"
                 " WHERE session_id = :s")


def _challenge(row: dict[str, Any]) -> AuthChallenge:
    return AuthChallenge(
        challenge_id=row["challenge_id"], kind=ChallengeKind(row["kind"]),
        user_id=row["user_id"], operation=row["operation"],
        requirement=Requirement.from_row(row["requirement"], row["required_acr"]),
        nonce=row["nonce"], client_address=row["client_address"],
        created_at=row["created_at"], expires_at=row["expires_at"],
        proofs=orjson.loads(row["proofs"]), session_id=row["session_id"],
        device_id=row["device_id"], amount=row["amount"], currency=row["currency"],
        payee=row["payee"], sms_challenge_id=row["sms_challenge_id"],
        completed_at=row["completed_at"], payee_id=row["payee_id"], phone=row["phone"])


class SqlAuthStore:
    def __init__(self, conn: Connection) -> None:
        self._sql = Raw(conn)

    # --- challenges ---
    def insert_challenge(self, ch: AuthChallenge) -> None:
        self._sql.run(_INSERT_CHALLENGE, {
            "challenge_id": ch.challenge_id, "kind": ch.kind.value, "user_id": ch.user_id,
            "session_id": ch.session_id, "device_id": ch.device_id,
            "operation": ch.operation, "required_acr": ch.requirement.acr,
            "requirement": ch.requirement.to_json(), "nonce": ch.nonce,
            "proofs": orjson.dumps(ch.proofs).decode(), "amount": ch.amount,
            "currency": ch.currency, "payee": ch.payee,
            "sms_challenge_id": ch.sms_challenge_id, "client_address": ch.client_address,
            "created_at": ch.created_at, "expires_at": ch.expires_at,
            "completed_at": ch.completed_at, "payee_id": ch.payee_id, "phone": ch.phone})

    def challenge(self, challenge_id: str) -> AuthChallenge | None:
        row = self._sql.row("SELECT * FROM auth_challenges WHERE challenge_id = :c",
                            {"c": challenge_id})
        return None if row is None else _challenge(row)

    def save_proofs(self, ch: AuthChallenge) -> None:
        self._sql.run("UPDATE auth_challenges SET proofs = :p WHERE challenge_id = :c",
                      {"p": orjson.dumps(ch.proofs).decode(), "c": ch.challenge_id})

    def set_sms_challenge(self, challenge_id: str, sms_challenge_id: str) -> None:
        self._sql.run("UPDATE auth_challenges SET sms_challenge_id = :s"
                      " WHERE challenge_id = :c", {"s": sms_challenge_id, "c": challenge_id})

    def complete(self, challenge_id: str, now: float) -> bool:
        """Mark the challenge done; False if a concurrent answer already did."""
        return self._sql.run("UPDATE auth_challenges SET completed_at = :n WHERE"
                             " challenge_id = :c AND completed_at IS NULL",
                             {"n": now, "c": challenge_id}) == 1

    # --- sessions ---
    def open_session(self, *, session_id: str, user_id: str, proofs: dict[str, float],
                     device_id: str | None, jkt: str | None, client_address: str,
                     now: float) -> None:
        self._sql.run(
            "INSERT INTO sessions (session_id, user_id, created_at, device_id, jkt, proofs,"
            " client_address) VALUES (:s, :u, :n, :d, :j, :p, :a)",
            {"s": session_id, "u": user_id, "n": now, "d": device_id, "j": jkt,
             "p": orjson.dumps(proofs).decode(), "a": client_address})

    def session_auth(self, session_id: str) -> dict[str, Any] | None:
        """What every authenticated request needs: owner, revocation, binding, proofs."""
        return self._sql.row(_SESSION_AUTH, {"s": session_id})

    def add_session_proofs(self, session_id: str, proofs: dict[str, float]) -> None:
        row = self._sql.row("SELECT proofs FROM sessions WHERE session_id = :s",
                            {"s": session_id})
        if row is None:
            return
        merged = {**orjson.loads(row["proofs"]), **proofs}
        self._sql.run("UPDATE sessions SET proofs = :p WHERE session_id = :s",
                      {"p": orjson.dumps(merged).decode(), "s": session_id})

    def bind_session(self, session_id: str, device_id: str, jkt: str) -> None:
        self._sql.run("UPDATE sessions SET device_id = :d, jkt = :j WHERE session_id = :s",
                      {"d": device_id, "j": jkt, "s": session_id})

    def sessions_of(self, user_id: str) -> list[dict[str, Any]]:
        return self._sql.rows(
            "SELECT session_id, device_id, created_at, client_address, proofs FROM sessions"
            " WHERE user_id = :u AND revoked_at IS NULL ORDER BY created_at", {"u": user_id})

    def revoke_sessions(self, *, reason: str, now: float, user_id: str | None = None,
                        device_id: str | None = None, except_session: str = "") -> int:
        """End every live session of a user or of a device; returns how many."""
        column, value = ("device_id", device_id) if device_id else ("user_id", user_id)
        return self._sql.run(
            f"UPDATE sessions SET revoked_at = :n, revoked_reason = :r WHERE {column} = :v"  # noqa: S608
            " AND revoked_at IS NULL AND session_id <> :x",
            {"n": now, "r": reason, "v": value, "x": except_session})

    # --- step-up grants (identity/step_up.py) ---
    def insert_grant(self, grant: StepUpGrant) -> None:
        b = grant.binding
        self._sql.run(
            "INSERT INTO step_up_grants (grant_id, session_id, user_id, operation, amount,"
            " currency, payee, payee_id, acr, proofs, created_at, expires_at, used_at) VALUES"
            " (:g, :s, :u, :o, :a, :c, :p, :pi, :acr, :pr, :n, :e, NULL)",
            {"g": grant.grant_id, "s": b.session_id, "u": grant.user_id, "o": b.operation,
             "a": b.amount, "c": b.currency, "p": b.payee, "pi": b.payee_id, "acr": grant.acr,
             "pr": orjson.dumps(dict(grant.proofs)).decode(), "n": grant.created_at,
             "e": grant.expires_at})

    def open_grants(self, binding: OperationBinding, now: float) -> list[StepUpGrant]:
        """The unused, unexpired grants of exactly this operation, newest first."""
        rows = self._sql.rows(
            "SELECT * FROM step_up_grants WHERE session_id = :s AND operation = :o AND"
            " amount = :a AND currency = :c AND payee = :p AND payee_id = :pi AND"
            " used_at IS NULL AND expires_at > :n ORDER BY created_at DESC",
            {"s": binding.session_id, "o": binding.operation, "a": binding.amount,
             "c": binding.currency, "p": binding.payee, "pi": binding.payee_id, "n": now})
        return [StepUpGrant(
            grant_id=r["grant_id"], user_id=r["user_id"], binding=OperationBinding(
                r["session_id"], r["operation"], r["amount"], r["currency"], r["payee"],
                r["payee_id"]), acr=r["acr"], proofs=orjson.loads(r["proofs"]),
            created_at=r["created_at"], expires_at=r["expires_at"]) for r in rows]

    def use_grant(self, grant_id: str, now: float) -> bool:
        """Spend a grant; False if a concurrent request spent it first."""
        return self._sql.run("UPDATE step_up_grants SET used_at = :n WHERE grant_id = :g AND"
                             " used_at IS NULL AND expires_at > :n",
                             {"n": now, "g": grant_id}) == 1

    # --- DPoP proof ids ---
    def remember_jti(self, jkt: str, jti: str, expires_at: float) -> bool:
        """False if this key already used this jti (a replayed proof)."""
        return self._sql.run(
            "INSERT INTO dpop_jtis (jkt, jti, expires_at) VALUES (:k, :j, :e)"
            " ON CONFLICT DO NOTHING", {"k": jkt, "j": jti, "e": expires_at}) == 1

    def forget_expired(self, now: float) -> int:
        n = self._sql.run("DELETE FROM dpop_jtis WHERE expires_at < :n", {"n": now})
        n += self._sql.run("DELETE FROM auth_challenges WHERE expires_at < :n",
                           {"n": now - 86400})
        n += self._sql.run("DELETE FROM sms_sends WHERE at < :n", {"n": now - 86400})
        n += self._sql.run("DELETE FROM step_up_grants WHERE expires_at < :n",
                           {"n": now - 86400})
        return n

    # --- audit and notices ---
    def audit(self, name: str, *, now: float, user_id: str | None = None,
              session_id: str | None = None, device_id: str | None = None,
              client_address: str | None = None, **detail: Any) -> None:
        self._sql.run(
            "INSERT INTO audit_events (at, name, user_id, session_id, device_id,"
            " client_address, detail) VALUES (:at, :n, :u, :s, :d, :a, :x)",
            {"at": now, "n": name, "u": user_id, "s": session_id, "d": device_id,
             "a": client_address, "x": orjson.dumps(detail).decode()})

    def audit_events(self, *, user_id: str | None, name: str | None, after: int,
                     limit: int) -> list[dict[str, Any]]:
        where = ["id > :after"]
        if user_id is not None:
            where.append("user_id = :u")
        if name is not None:
            where.append("name = :n")
        rows = self._sql.rows(
            f"SELECT * FROM audit_events WHERE {' AND '.join(where)}"  # noqa: S608
            " ORDER BY id LIMIT :l", {"after": after, "u": user_id, "n": name, "l": limit})
        for row in rows:
            row["detail"] = orjson.loads(row["detail"])
        return rows

    def notify_devices(self, device_ids: Sequence[str], kind: str, text: str,
                       now: float) -> None:
        for device_id in device_ids:
            self._sql.run("INSERT INTO device_notices (device_id, kind, text, created_at)"
                          " VALUES (:d, :k, :t, :n)",
                          {"d": device_id, "k": kind, "t": text, "n": now})

    def notices(self, device_id: str, after: int, limit: int) -> list[dict[str, Any]]:
        return self._sql.rows("SELECT id, kind, text, created_at FROM device_notices WHERE"
                              " device_id = :d AND id > :a ORDER BY id LIMIT :l",
                              {"d": device_id, "a": after, "l": limit})


class SqlCodeStore:
    """``identity.codes.CodeStore`` on the platform database."""

    def __init__(self, conn: Connection) -> None:
        self._sql = Raw(conn)

    def insert_challenge(self, c: SmsChallenge) -> None:
        self._sql.run(
            "INSERT INTO sms_challenges (challenge_id, phone, purpose, code_hash,"
            " client_address, created_at, expires_at, amount_minor, currency, payee,"
            " attempts, used_at) VALUES (:i, :p, :pu, :h, :a, :c, :e, :am, :cu, :pa, 0, NULL)",
            {"i": c.challenge_id, "p": c.phone, "pu": c.purpose.value, "h": c.code_hash,
             "a": c.client_address, "c": c.created_at, "e": c.expires_at,
             "am": c.amount_minor, "cu": c.currency, "pa": c.payee})

    def challenge(self, challenge_id: str) -> SmsChallenge | None:
        row = self._sql.row("SELECT * FROM sms_challenges WHERE challenge_id = :i",
                            {"i": challenge_id})
        if row is None:
            return None
        row["purpose"] = Purpose(row["purpose"])
        return SmsChallenge(**row)

    def take_attempt(self, challenge_id: str, max_attempts: int) -> int | None:
        if self._sql.run("UPDATE sms_challenges SET attempts = attempts + 1 WHERE"
                         " challenge_id = :i AND attempts < :m",
                         {"i": challenge_id, "m": max_attempts}) != 1:
            return None
        return int(self._sql.value("SELECT attempts FROM sms_challenges WHERE"
                                   " challenge_id = :i", {"i": challenge_id}))

    def consume(self, challenge_id: str, now: float) -> bool:
        return self._sql.run("UPDATE sms_challenges SET used_at = :n WHERE challenge_id = :i"
                             " AND used_at IS NULL", {"n": now, "i": challenge_id}) == 1

    def recent_sends(self, key: str, since: float) -> Sequence[float]:
        return [r["at"] for r in self._sql.rows(
            "SELECT at FROM sms_sends WHERE key = :k AND at >= :s ORDER BY at",
            {"k": key, "s": since})]

    def record_send(self, key: str, at: float) -> None:
        self._sql.run("INSERT INTO sms_sends (key, at) VALUES (:k, :a)", {"k": key, "a": at})
