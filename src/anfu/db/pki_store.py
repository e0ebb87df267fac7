"""SQL storage of the platform CA: its own certificates (roots, issuing CAs, OCSP signers)
and the end-entity certificates it issued, with their revocation."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from anfu.db.raw import Raw
from anfu.pki.model import CaRecord

_CA_COLUMNS = ("ca_id", "kind", "parent_id", "key_id", "serial", "cert_pem", "not_before",
               "not_after", "status", "revocation_gen", "created_at")
_CERT_COLUMNS = ("serial", "ca_id", "profile", "subject_id", "user_id", "sha256",
                 "spki_sha256", "cert_pem", "not_before", "not_after", "created_at",
                 "revoked_at", "revocation_reason")
# Column names come from the constants above, never from a request.
_INSERT_CA = (f"INSERT INTO pki_cas ({', '.join(_CA_COLUMNS)}) VALUES"  # noqa: S608
              f" ({', '.join(':' + c for c in _CA_COLUMNS)})")
_INSERT_CERT = (f"INSERT INTO pki_certificates ({', '.join(_CERT_COLUMNS)}) VALUES"  # noqa: S608
                f" ({', '.join(':' + c for c in _CERT_COLUMNS)})")


def _ca(row: dict[str, Any]) -> CaRecord:
    return CaRecord(**{c: row[c] for c in _CA_COLUMNS})


class SqlPkiStore:
    def __init__(self, conn: Connection) -> None:
        self._sql = Raw(conn)

    # --- the platform's own certificates ---
    def insert_ca(self, ca: CaRecord) -> None:
        self._sql.run(_INSERT_CA, {c: getattr(ca, c) for c in _CA_COLUMNS})

    def ca(self, ca_id: str) -> CaRecord | None:
        row = self._sql.row("SELECT * FROM pki_cas WHERE ca_id = :i", {"i": ca_id})
        return None if row is None else _ca(row)

    def cas(self, kind: str | None = None) -> list[CaRecord]:
        if kind is None:
            rows = self._sql.rows("SELECT * FROM pki_cas ORDER BY created_at, LENGTH(ca_id), ca_id",
                                  {})
        else:
            rows = self._sql.rows("SELECT * FROM pki_cas WHERE kind = :k"
                                  " ORDER BY created_at, LENGTH(ca_id), ca_id", {"k": kind})
        return [_ca(r) for r in rows]

    def retire_ca(self, ca_id: str) -> None:
        self._sql.run("UPDATE pki_cas SET status = 'retired' WHERE ca_id = :i", {"i": ca_id})

    def generations(self) -> dict[str, int]:
        """The revocation generation of every issuing CA: one small indexed read."""
        rows = self._sql.rows("SELECT ca_id, revocation_gen FROM pki_cas WHERE kind ="
                              " 'issuing'", {})
        return {r["ca_id"]: int(r["revocation_gen"]) for r in rows}

    def bump_generation(self, ca_id: str) -> None:
        self._sql.run("UPDATE pki_cas SET revocation_gen = revocation_gen + 1"
                      " WHERE ca_id = :i", {"i": ca_id})

    # --- issued certificates ---
    def insert_certificate(self, **row: Any) -> None:
        self._sql.run(_INSERT_CERT, {c: row.get(c) for c in _CERT_COLUMNS})

    def certificate(self, serial: str) -> dict[str, Any] | None:
        return self._sql.row("SELECT * FROM pki_certificates WHERE serial = :s", {"s": serial})

    def status(self, serial: str) -> dict[str, Any] | None:
        """What an OCSP answer needs, nothing more."""
        return self._sql.row("SELECT ca_id, revoked_at, revocation_reason, not_after FROM"
                             " pki_certificates WHERE serial = :s", {"s": serial})

    def certificates(self, *, profile: str | None, subject_id: str | None,
                     limit: int = 200) -> list[dict[str, Any]]:
        sql = "SELECT * FROM pki_certificates WHERE 1 = 1"
        params: dict[str, Any] = {"n": limit}
        if profile is not None:
            sql += " AND profile = :p"
            params["p"] = profile
        if subject_id is not None:
            sql += " AND subject_id = :s"
            params["s"] = subject_id
        return self._sql.rows(sql + " ORDER BY created_at DESC LIMIT :n", params)

    def valid_of(self, profile: str, subject_id: str, now: float) -> list[dict[str, Any]]:
        """Unrevoked, unexpired certificates of one subject, newest first."""
        return self._sql.rows(
            "SELECT * FROM pki_certificates WHERE profile = :p AND subject_id = :s"
            " AND not_after > :now AND revoked_at IS NULL ORDER BY not_before DESC,"
            " created_at DESC", {"p": profile, "s": subject_id, "now": now})

    def revoke(self, serial: str, *, reason: str, now: float) -> bool:
        return self._sql.run(
            "UPDATE pki_certificates SET revoked_at = :now, revocation_reason = :r"
            " WHERE serial = :s AND revoked_at IS NULL",
            {"now": now, "r": reason, "s": serial}) == 1

    def revoked_under(self, ca_id: str, now: float) -> list[dict[str, Any]]:
        """Revoked certificates of a CA that have not expired yet (an expired certificate
        leaves the CRL, RFC 5280 §3.3)."""
        return self._sql.rows(
            "SELECT serial, revoked_at, revocation_reason FROM pki_certificates"
            " WHERE ca_id = :c AND revoked_at IS NOT NULL AND not_after > :now"
            " ORDER BY serial", {"c": ca_id, "now": now})
