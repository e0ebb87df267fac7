"""The platform CA's rules: certificate profiles, RFC 5280 revocation reasons, lifetimes,
serial numbers, and the records the service hands out. Plain Python."""

from __future__ import annotations

import enum
import secrets
from dataclasses import dataclass
from typing import Any

DAY = 86400.0

# RFC 5280 §5.3.1 CRLReason, by the names the API takes (``remove_from_crl`` is for delta
# CRLs only and ``certificate_hold`` would make revocation reversible: neither is accepted).
REASONS = ("unspecified", "key_compromise", "ca_compromise", "affiliation_changed",
           "superseded", "cessation_of_operation", "privilege_withdrawn", "aa_compromise")

ROOT_LIFETIME_S = 10 * 365 * DAY
ISSUING_LIFETIME_S = 5 * 365 * DAY
OCSP_LIFETIME_S = 7 * DAY
BACKDATE_S = 60.0  # clock skew allowance on notBefore (as step-ca)


class Profile(enum.StrEnum):
    DEVICE = "device"
    MERCHANT = "merchant"
    SERVER = "server"
    OCSP_SIGNER = "ocsp-signer"


# Key types a profile accepts from a CSR (x509.CsrKey.kind).
PROFILE_KEYS: dict[Profile, tuple[str, ...]] = {
    Profile.DEVICE: ("ec-p256", "ed25519"),
    Profile.MERCHANT: ("ec-p256", "ec-p384", "ed25519", "rsa"),
    Profile.SERVER: ("ec-p256", "ec-p384", "rsa"),
}


def check_reason(reason: str) -> str:
    if reason not in REASONS:
        raise ValueError(f"reason must be one of {', '.join(REASONS)}")
    return reason


def new_serial() -> int:
    """128 random bits, positive and below 2^159 (RFC 5280 §4.1.2.2: at most 20 octets);
    the top bit of 160 stays clear so the DER INTEGER needs no sign octet beyond 17."""
    return secrets.randbits(128) | (1 << 127)


def serial_hex(serial: int) -> str:
    return format(serial, "x")


def needs_renewal(not_before: float, not_after: float, now: float) -> bool:
    """Renew when less than a third of the lifetime remains (as step-ca's default)."""
    return now >= not_after - (not_after - not_before) / 3


def subject_uris(profile: Profile, subject_id: str, user_id: str | None) -> tuple[str, ...]:
    if profile is Profile.DEVICE:
        return (f"anfu:device:{subject_id}",) + ((f"anfu:user:{user_id}",) if user_id else ())
    if profile is Profile.MERCHANT:
        return (f"anfu:merchant:{subject_id}",)
    return ()


@dataclass(frozen=True)
class VerifiedCertificate:
    """A certificate that chains to the platform CA, is in its validity period, has the
    profile asked for, and is neither revoked nor unknown to our database."""

    profile: str
    subject_id: str
    user_id: str | None
    serial: str
    not_before: float
    not_after: float
    public_key_der: bytes
    sha256: str


@dataclass(frozen=True)
class IssuedCertificate:
    serial: str
    ca_id: str
    profile: str
    subject_id: str
    user_id: str | None
    sha256: str
    certificate_pem: str
    chain_pem: tuple[str, ...]      # the issuing CA, then the root
    not_before: float
    not_after: float
    revoked_at: float | None = None
    revocation_reason: str | None = None

    def public(self, ocsp_url: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "serial": self.serial, "ca_id": self.ca_id, "profile": self.profile,
            "subject_id": self.subject_id, "certificate": self.certificate_pem,
            "chain": list(self.chain_pem), "not_before": self.not_before,
            "not_after": self.not_after, "sha256": self.sha256,
            "status": "revoked" if self.revoked_at is not None else "valid",
            "revoked_at": self.revoked_at, "revocation_reason": self.revocation_reason}
        if self.user_id is not None:
            out["user_id"] = self.user_id
        if ocsp_url is not None:
            out["ocsp_url"] = ocsp_url
        return out


@dataclass(frozen=True)
class CaRecord:
    ca_id: str
    kind: str                 # root | issuing | ocsp
    parent_id: str | None
    key_id: str
    serial: str
    cert_pem: str
    not_before: float
    not_after: float
    status: str
    revocation_gen: int
    created_at: float

    def public(self) -> dict[str, Any]:
        return {"ca_id": self.ca_id, "kind": self.kind, "parent_id": self.parent_id,
                "serial": self.serial, "not_before": self.not_before,
                "not_after": self.not_after, "status": self.status,
                "certificate": self.cert_pem}
