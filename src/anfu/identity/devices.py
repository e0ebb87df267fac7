"""Device binding (book ch. 6.5: phones are lost, stolen, rooted and cloned).

A device registers a key pair it generated, with what it reports of itself. Its key then
answers login and step-up challenges and signs a DPoP proof on every request, so the
session's tokens are useless anywhere else. What the app reports is a claim, not proof: a
key is hardware-bound (amr ``hwk``, enough for level 3) only when its key attestation
verified at registration (``crypto/attestation``: the secure hardware certified the key) and
the device does not report itself rooted or an emulator. Any other key is ``swk`` (level 2 at
most with a second factor), whatever ``key_storage`` says; the claim is kept for the risk
engine.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from anfu.errors import InvalidRequest

KeyStorage = Literal["software", "hardware"]
NAME_MAX = 64
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
_APP_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
_VERSION = re.compile(r"^[0-9A-Za-z.+_-]{1,32}$")


@dataclass(frozen=True, slots=True)
class DeviceReport:
    """What the app reports of the phone and itself when it registers."""

    name: str
    app_id: str
    app_version: str
    app_cert_sha256: str
    os: str
    rooted: bool
    emulator: bool
    key_storage: KeyStorage

    def checked(self) -> DeviceReport:
        name = " ".join(self.name.split())
        if not 1 <= len(name) <= NAME_MAX:
            raise InvalidRequest(f"a device name is 1 to {NAME_MAX} characters",
                                 code="invalid_device_name")
        if not _APP_ID.match(self.app_id) or not _VERSION.match(self.app_version):
            raise InvalidRequest("app_id and app_version must be plain identifiers",
                                 code="invalid_device_report")
        if not _SHA256_HEX.match(self.app_cert_sha256):
            raise InvalidRequest("app_cert_sha256 is the lowercase hex SHA-256 of the app's"
                                 " signing certificate", code="invalid_device_report")
        if not 1 <= len(self.os) <= 64:
            raise InvalidRequest("os is 1 to 64 characters", code="invalid_device_report")
        return DeviceReport(name, self.app_id, self.app_version, self.app_cert_sha256,
                            self.os.strip(), self.rooted, self.emulator, self.key_storage)


@dataclass(frozen=True, slots=True)
class Device:
    device_id: str
    user_id: str
    alg: str
    public_jwk: dict[str, Any]
    jkt: str
    report: DeviceReport
    created_at: float
    last_seen_at: float | None = None
    revoked_at: float | None = None
    # the verified attestation's security level ("trusted_environment", "strongbox"), or
    # None when the key was not attested
    attestation: str | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    @property
    def hardware_bound(self) -> bool:
        r = self.report
        return self.attestation is not None and not r.rooted and not r.emulator

    @property
    def amr(self) -> str:
        """What answering a challenge with this device's key proves."""
        return "hwk" if self.hardware_bound else "swk"

    def public(self) -> dict[str, Any]:
        r = self.report
        return {"device_id": self.device_id, "name": r.name, "alg": self.alg,
                "jkt": self.jkt, "key_storage": r.key_storage,
                "hardware_bound": self.hardware_bound, "attestation": self.attestation,
                "app_id": r.app_id,
                "app_version": r.app_version, "app_cert_sha256": r.app_cert_sha256,
                "os": r.os, "rooted": r.rooted, "emulator": r.emulator,
                "created_at": self.created_at, "last_seen_at": self.last_seen_at,
                "revoked_at": self.revoked_at}
