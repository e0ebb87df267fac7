"""SQL storage for what a customer authenticates with besides the password: bound devices,
the TOTP secret (sealed), recovery codes (hashed) and passkeys."""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import Connection

from anfu.crypto.attestation import KeyAttestation
from anfu.db.raw import Raw
from anfu.identity.devices import Device, DeviceReport

_DEVICE_COLUMNS = ("device_id", "user_id", "name", "alg", "public_jwk", "jkt", "key_storage",
                   "app_id", "app_version", "app_cert_sha256", "os", "rooted", "emulator",
                   "created_at", "last_seen_at", "revoked_at")
# Column names come from the constant above, never from a request.
_INSERT_DEVICE = (f"INSERT INTO devices ({', '.join(_DEVICE_COLUMNS)}) VALUES"  # noqa: S608
                  f" ({', '.join(':' + c for c in _DEVICE_COLUMNS)})")


def _device(row: dict[str, Any]) -> Device:
    report = DeviceReport(name=row["name"], app_id=row["app_id"],
                          app_version=row["app_version"],
                          app_cert_sha256=row["app_cert_sha256"], os=row["os"],
                          rooted=bool(row["rooted"]), emulator=bool(row["emulator"]),
                          key_storage=row["key_storage"])
    return Device(device_id=row["device_id"], user_id=row["user_id"], alg=row["alg"],
                  public_jwk=orjson.loads(row["public_jwk"]), jkt=row["jkt"], report=report,
                  created_at=row["created_at"], last_seen_at=row["last_seen_at"],
                  revoked_at=row["revoked_at"], attestation=row.get("attested_level"))


# Every device read carries its verified attestation, if any (one join, no second query).
_DEVICES = ("SELECT d.*, a.security_level AS attested_level FROM devices d"
            " LEFT JOIN device_attestations a ON a.device_id = d.device_id")


class SqlFactorStore:
    def __init__(self, conn: Connection) -> None:
        self._sql = Raw(conn)

    # --- devices ---
    def insert_device(self, d: Device) -> None:
        r = d.report
        self._sql.run(_INSERT_DEVICE, {
            "device_id": d.device_id, "user_id": d.user_id, "name": r.name, "alg": d.alg,
            "public_jwk": orjson.dumps(d.public_jwk).decode(), "jkt": d.jkt,
            "key_storage": r.key_storage, "app_id": r.app_id, "app_version": r.app_version,
            "app_cert_sha256": r.app_cert_sha256, "os": r.os, "rooted": r.rooted,
            "emulator": r.emulator, "created_at": d.created_at,
            "last_seen_at": d.last_seen_at, "revoked_at": d.revoked_at})

    def device(self, device_id: str) -> Device | None:
        row = self._sql.row(_DEVICES + " WHERE d.device_id = :d", {"d": device_id})
        return None if row is None else _device(row)

    def device_by_jkt(self, jkt: str) -> Device | None:
        row = self._sql.row(_DEVICES + " WHERE d.jkt = :j", {"j": jkt})
        return None if row is None else _device(row)

    def devices_of(self, user_id: str, *, active_only: bool = True) -> list[Device]:
        sql = _DEVICES + " WHERE d.user_id = :u"
        if active_only:
            sql += " AND d.revoked_at IS NULL"
        return [_device(r) for r in self._sql.rows(sql + " ORDER BY d.created_at",
                                                    {"u": user_id})]

    def insert_attestation(self, device_id: str, attestation: KeyAttestation,
                           now: float) -> None:
        self._sql.run("INSERT INTO device_attestations (device_id, format, security_level,"
                      " root_sha256, verified_at) VALUES (:d, :f, :l, :r, :n)",
                      {"d": device_id, "f": attestation.format,
                       "l": attestation.security_level, "r": attestation.root_sha256,
                       "n": now})

    def rename_device(self, device_id: str, name: str) -> None:
        self._sql.run("UPDATE devices SET name = :n WHERE device_id = :d",
                      {"n": name, "d": device_id})

    def revoke_device(self, device_id: str, now: float) -> bool:
        return self._sql.run("UPDATE devices SET revoked_at = :n WHERE device_id = :d AND"
                             " revoked_at IS NULL", {"n": now, "d": device_id}) == 1

    def touch_device(self, device_id: str, now: float) -> None:
        self._sql.run("UPDATE devices SET last_seen_at = :n WHERE device_id = :d",
                      {"n": now, "d": device_id})

    # --- TOTP ---
    def totp(self, user_id: str) -> dict[str, Any] | None:
        return self._sql.row("SELECT * FROM totp_factors WHERE user_id = :u", {"u": user_id})

    def put_pending_totp(self, user_id: str, secret_sealed: str, now: float) -> None:
        """A new, unconfirmed secret; replaces an earlier unconfirmed one."""
        self._sql.run("DELETE FROM totp_factors WHERE user_id = :u AND confirmed_at IS NULL",
                      {"u": user_id})
        self._sql.run("INSERT INTO totp_factors (user_id, secret_sealed, created_at,"
                      " confirmed_at, last_step) VALUES (:u, :s, :n, NULL, -1)",
                      {"u": user_id, "s": secret_sealed, "n": now})

    def confirm_totp(self, user_id: str, step: int, now: float) -> bool:
        return self._sql.run("UPDATE totp_factors SET confirmed_at = :n, last_step = :s"
                             " WHERE user_id = :u AND confirmed_at IS NULL AND last_step < :s",
                             {"n": now, "s": step, "u": user_id}) == 1

    def use_totp_step(self, user_id: str, step: int) -> bool:
        """Accept each time step once: False if this step (or a later one) was used."""
        return self._sql.run("UPDATE totp_factors SET last_step = :s WHERE user_id = :u AND"
                             " confirmed_at IS NOT NULL AND last_step < :s",
                             {"s": step, "u": user_id}) == 1

    def delete_totp(self, user_id: str) -> None:
        self._sql.run("DELETE FROM totp_factors WHERE user_id = :u", {"u": user_id})
        self._sql.run("DELETE FROM recovery_codes WHERE user_id = :u", {"u": user_id})

    # --- recovery codes ---
    def replace_recovery_codes(self, user_id: str, hashes: list[str]) -> None:
        self._sql.run("DELETE FROM recovery_codes WHERE user_id = :u", {"u": user_id})
        for position, code_hash in enumerate(hashes):
            self._sql.run("INSERT INTO recovery_codes (user_id, position, code_hash, used_at)"
                          " VALUES (:u, :p, :h, NULL)",
                          {"u": user_id, "p": position, "h": code_hash})

    def recovery_hashes(self, user_id: str) -> list[str | None]:
        """Position-indexed; a used code is None."""
        rows = self._sql.rows("SELECT position, code_hash, used_at FROM recovery_codes"
                              " WHERE user_id = :u ORDER BY position", {"u": user_id})
        return [None if r["used_at"] is not None else r["code_hash"] for r in rows]

    def use_recovery_code(self, user_id: str, position: int, now: float) -> bool:
        return self._sql.run("UPDATE recovery_codes SET used_at = :n WHERE user_id = :u AND"
                             " position = :p AND used_at IS NULL",
                             {"n": now, "u": user_id, "p": position}) == 1

    # --- passkeys ---
    def insert_passkey(self, *, credential_id: str, user_id: str, name: str,
                       public_key: str, sign_count: int, aaguid: str, backed_up: bool,
                       transports: str, now: float) -> None:
        self._sql.run(
            "INSERT INTO passkeys (credential_id, user_id, name, public_key, sign_count,"
            " aaguid, backed_up, transports, created_at, last_used_at) VALUES (:c, :u, :n,"
            " :k, :s, :a, :b, :t, :now, NULL)",
            {"c": credential_id, "u": user_id, "n": name, "k": public_key, "s": sign_count,
             "a": aaguid, "b": backed_up, "t": transports, "now": now})

    def passkeys_of(self, user_id: str) -> list[dict[str, Any]]:
        return self._sql.rows("SELECT * FROM passkeys WHERE user_id = :u ORDER BY created_at",
                              {"u": user_id})

    def passkey(self, credential_id: str) -> dict[str, Any] | None:
        return self._sql.row("SELECT * FROM passkeys WHERE credential_id = :c",
                             {"c": credential_id})

    def use_passkey(self, credential_id: str, old_count: int, new_count: int,
                    now: float) -> bool:
        """Store the new signature count; False if a concurrent assertion moved it first."""
        return self._sql.run("UPDATE passkeys SET sign_count = :new, last_used_at = :n WHERE"
                             " credential_id = :c AND sign_count = :old",
                             {"new": new_count, "n": now, "c": credential_id,
                              "old": old_count}) == 1

    def delete_passkey(self, user_id: str, credential_id: str) -> bool:
        return self._sql.run("DELETE FROM passkeys WHERE user_id = :u AND credential_id = :c",
                             {"u": user_id, "c": credential_id}) == 1

    # --- account risk signals and limits ---
    def mark_reset(self, user_id: str, until: float) -> None:
        self._sql.run("UPDATE users SET recently_reset_until = :t WHERE user_id = :u",
                      {"t": until, "u": user_id})

    def set_limits(self, user_id: str, limits: dict[str, int]) -> None:
        self._sql.run("UPDATE users SET high_value_limits = :l WHERE user_id = :u",
                      {"l": orjson.dumps(limits).decode(), "u": user_id})

    def account_extras(self, user_id: str) -> dict[str, Any]:
        row = self._sql.row("SELECT recently_reset_until, high_value_limits FROM users"
                            " WHERE user_id = :u", {"u": user_id}) or {}
        limits = row.get("high_value_limits")
        return {"recently_reset_until": row.get("recently_reset_until"),
                "high_value_limits": orjson.loads(limits) if limits else {}}

    def enrolled_methods(self, user_id: str) -> set[str]:
        """The challenge methods this customer can answer with (besides password and SMS)."""
        methods = set()
        totp = self.totp(user_id)
        if totp is not None and totp["confirmed_at"] is not None:
            methods.add("totp")
            if any(h is not None for h in self.recovery_hashes(user_id)):
                methods.add("recovery_code")
        if self.passkeys_of(user_id):
            methods.add("passkey")
        return methods
