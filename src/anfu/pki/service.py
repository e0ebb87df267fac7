"""The platform CA's use cases: issuance from PKCS#10 requests per profile, revocation,
listing, and what the rest of the platform asks of the CA (``verify_certificate``,
``current_device_certificate``, ``revoke_device_certificates``,
``ensure_server_certificate``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from anfu.crypto import x509 as X
from anfu.crypto.jwk import parse_public_jwk
from anfu.db.log_store import SqlLogStore
from anfu.db.pki_store import SqlPkiStore
from anfu.errors import (
    AuthenticationFailed,
    Forbidden,
    InvalidRequest,
    NotFound,
)
from anfu.pki.model import (
    CaRecord,
    IssuedCertificate,
    Profile,
    VerifiedCertificate,
    check_reason,
    needs_renewal,
)

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from anfu.bootstrap import Platform
    from anfu.db.uow import SqlUnitOfWork

from anfu.pki.authority import (
    Authority,
    Prepared,
    _home_lock,
    _parsed,
    authority,
    ensure_ca,
    load_root_key,
    platform_keystore,
)

__all__ = ["Authority", "authority", "ensure_ca", "load_root_key", "platform_keystore"]


# --- issuance and revocation use cases -----------------------------------------------------

@dataclass(frozen=True)
class DeviceFacts:
    device_id: str
    user_id: str
    jkt: str
    public_jwk: dict[str, Any]
    active: bool


def prepare_device_certificate(auth: Authority, *, device: DeviceFacts, csr_pem: str,
                               now: float, cas: list[CaRecord] | None = None) -> Prepared:
    """Check the request (its signature, and that its key is the device's bound key) and
    build the certificate; outside the writer."""
    if not device.active:
        raise Forbidden("this device is revoked", code="device_revoked")
    csr = parse_request(csr_pem)
    try:
        jkt = parse_public_jwk(csr.jwk()).jkt
    except (X.X509Invalid, ValueError):
        jkt = ""
    if jkt != device.jkt:
        raise Forbidden("the request's key is not this device's bound key",
                        code="csr_key_mismatch")
    return auth.prepare(cas if cas is not None else auth.cas_for_issuing(),
                        profile=Profile.DEVICE,
                        subject_id=device.device_id, user_id=device.user_id, csr=csr,
                        now=now)


def record_device_certificate(uow: SqlUnitOfWork, auth: Authority,
                              prepared: Prepared) -> IssuedCertificate:
    """Store it; the device's earlier valid certificates are revoked as superseded."""
    issued = auth.record(uow, prepared)
    for row in SqlPkiStore(uow.conn).valid_of(Profile.DEVICE.value, issued.subject_id,
                                               uow.now):
        if row["serial"] != issued.serial:
            _revoke_row(uow.conn, uow.now, row, reason="superseded")
    return issued


def issue_device_certificate(uow: SqlUnitOfWork, auth: Authority, *, device: DeviceFacts,
                             csr_pem: str) -> IssuedCertificate:
    """A device certificate for the session's bound device key, in one write job. Calling
    again while one is valid renews: the new one replaces it and the old is revoked as
    superseded."""
    return record_device_certificate(uow, auth, prepare_device_certificate(
        auth, device=device, csr_pem=csr_pem, now=uow.now,
        cas=auth.cas_cached(SqlPkiStore(uow.conn))))


def issue_certificate(uow: SqlUnitOfWork, auth: Authority, *, profile: str, subject_id: str,
                      csr_pem: str) -> IssuedCertificate:
    """Merchant (client authentication) or server (TLS) certificates from a CSR."""
    try:
        p = Profile(profile)
    except ValueError:
        raise InvalidRequest("profile must be merchant or server", code="profile_unknown") \
            from None
    if p not in (Profile.MERCHANT, Profile.SERVER):
        raise InvalidRequest("device certificates are issued through the mobile zone; here"
                             " merchant or server", code="profile_not_allowed")
    csr = parse_request(csr_pem)
    names = (subject_id,) if p is Profile.SERVER else ()
    return auth.issue(uow, profile=p, subject_id=subject_id, user_id=None, csr=csr,
                      names=names)


def parse_request(csr_pem: str) -> X.CsrKey:
    try:
        return X.parse_csr(csr_pem)
    except X.X509Invalid as exc:
        raise InvalidRequest(f"certificate request refused: {exc}", code=exc.check) from None


def _revoke_row(conn: Connection, now: float, row: dict[str, Any], *, reason: str) -> bool:
    pki = SqlPkiStore(conn)
    if not pki.revoke(row["serial"], reason=reason, now=now):
        return False
    pki.bump_generation(row["ca_id"])
    SqlLogStore(conn).enqueue("certificate.revoked", {
        "serial": row["serial"], "profile": row["profile"], "subject_id": row["subject_id"],
        "reason": reason, "sha256": row["sha256"]}, now)
    return True


def revoke_certificate(uow: SqlUnitOfWork, *, serial: str, reason: str,
                       profile: str | None = None,
                       subject_id: str | None = None) -> IssuedCertificate:
    """Revoke one certificate; with ``profile``/``subject_id`` only one of that owner's
    (others are not found, so no one learns they exist). Revoking twice is a no-op."""
    try:
        check_reason(reason)
    except ValueError as exc:
        raise InvalidRequest(str(exc), code="reason_invalid") from None
    pki = SqlPkiStore(uow.conn)
    row = pki.certificate(serial.lower().lstrip("0") or "0")
    if row is None or (profile is not None and row["profile"] != profile) or (
            subject_id is not None and row["subject_id"] != subject_id):
        raise NotFound(f"no certificate {serial}", code="certificate_not_found")
    _revoke_row(uow.conn, uow.now, row, reason=reason)
    return issued_from_row(pki.certificate(row["serial"]) or row, pki)


def issued_from_row(row: dict[str, Any], pki: SqlPkiStore | None = None) -> IssuedCertificate:
    chain: tuple[str, ...] = ()
    if pki is not None:
        issuing = pki.ca(row["ca_id"])
        root = pki.ca(issuing.parent_id) if issuing and issuing.parent_id else None
        chain = tuple(c.cert_pem for c in (issuing, root) if c is not None)
    return IssuedCertificate(
        serial=row["serial"], ca_id=row["ca_id"], profile=row["profile"],
        subject_id=row["subject_id"], user_id=row["user_id"], sha256=row["sha256"],
        certificate_pem=row["cert_pem"], chain_pem=chain, not_before=row["not_before"],
        not_after=row["not_after"], revoked_at=row["revoked_at"],
        revocation_reason=row["revocation_reason"])


def list_certificates(conn: Connection, *, profile: str | None,
                      subject_id: str | None) -> list[IssuedCertificate]:
    return [issued_from_row(r) for r in SqlPkiStore(conn).certificates(
        profile=profile, subject_id=subject_id)]


# --- what the rest of the platform asks -----------------------------------------------------

def _verified(row: dict[str, Any]) -> VerifiedCertificate:
    info = X.cert_info(_parsed(row["cert_pem"]))
    return VerifiedCertificate(profile=row["profile"], subject_id=row["subject_id"],
                               user_id=row["user_id"], serial=row["serial"],
                               not_before=row["not_before"], not_after=row["not_after"],
                               public_key_der=info.public_key_der, sha256=row["sha256"])


def verify_certificate(conn: Connection, cert_der: bytes, *, profile: str,
                       now: float) -> VerifiedCertificate:
    """Chain to our CA (cryptography's verifier), validity, profile, and status in our
    database. Raises AuthenticationFailed naming the check that failed."""
    try:
        cert = X.load_cert(cert_der)
    except X.X509Invalid:
        raise AuthenticationFailed("not an X.509 certificate", code="certificate_invalid") \
            from None
    pki = SqlPkiStore(conn)
    cas = pki.cas()
    roots = [_parsed(c.cert_pem) for c in cas if c.kind == "root"]
    issuing = [_parsed(c.cert_pem) for c in cas if c.kind == "issuing"]
    if not roots:
        raise AuthenticationFailed("the platform CA is not set up", code="certificate_unknown")
    try:
        X.verify_chain(cert, intermediates=issuing, roots=roots, now=now)
    except X.X509Invalid as exc:
        raise AuthenticationFailed(str(exc), code=exc.check) from None
    try:
        info = X.cert_info(cert)
    except ValueError:
        raise AuthenticationFailed("the certificate cannot be read",
                                   code="certificate_invalid") from None
    row = pki.certificate(info.serial)
    if row is None or row["sha256"] != info.sha256:
        raise AuthenticationFailed("the platform CA has no record of this certificate",
                                   code="certificate_unknown")
    if row["profile"] != profile:
        raise AuthenticationFailed(f"a {row['profile']} certificate, not a {profile} one",
                                   code="certificate_wrong_profile")
    if row["revoked_at"] is not None:
        raise AuthenticationFailed(f"the certificate was revoked ({row['revocation_reason']})",
                                   code="certificate_revoked")
    return _verified(row)


def current_device_certificate(conn: Connection, device_id: str,
                               now: float) -> VerifiedCertificate | None:
    rows = SqlPkiStore(conn).valid_of(Profile.DEVICE.value, device_id, now)
    fresh = [r for r in rows if r["not_before"] <= now]
    return _verified(fresh[0]) if fresh else None


def current_device_certificate_full(conn: Connection, device_id: str,
                                    now: float) -> IssuedCertificate | None:
    pki = SqlPkiStore(conn)
    rows = pki.valid_of(Profile.DEVICE.value, device_id, now)
    return issued_from_row(rows[0], pki) if rows else None


def revoke_device_certificates(conn: Connection, device_id: str, *, reason: str,
                               now: float) -> int:
    """Revoke every valid certificate of a device (the device itself was revoked); run
    inside the write job that revokes the device."""
    check_reason(reason)
    return sum(_revoke_row(conn, now, row, reason=reason)
               for row in SqlPkiStore(conn).valid_of(Profile.DEVICE.value, device_id, now))


@dataclass(frozen=True)
class ServerCredentials:
    cert_chain_pem: Path
    key_pem: Path
    key_password: bytes
    client_ca_pem: Path


def ensure_server_certificate(platform: Platform) -> ServerCredentials:
    """A TLS server certificate for ``settings.tls_names`` under ``ANFU_HOME/tls``: the
    encrypted key, the chain (leaf + issuing CA) and the client CA bundle (issuing CAs +
    root) for mTLS; reissued when a third of its life remains, the names changed, or the
    issuing CA changed."""
    from anfu.keys import dev_secrets

    ensure_ca(platform)
    auth = authority(platform)
    folder = platform.settings.home / "tls"
    folder.mkdir(parents=True, exist_ok=True)
    password = dev_secrets(platform.settings)[1]
    creds = ServerCredentials(folder / "server-chain.pem", folder / "server.key.pem",
                              password, folder / "client-ca.pem")
    names = tuple(platform.settings.tls_names)
    with _home_lock(platform.settings.home, "tls"):
        cas = auth.cas()
        issuing = auth.active_issuing(cas)
        now = platform.clock()
        if not _server_cert_fresh(creds, names, issuing, now):
            key = X.new_server_key()
            issued = platform.write_sync(lambda uow: auth.issue(
                uow, profile=Profile.SERVER, subject_id=names[0] if names else "localhost",
                user_id=None, public_key=key.public_key(), names=names))
            _write_private(creds.key_pem, X.encrypted_key_pem(key, password))
            creds.cert_chain_pem.write_text(issued.certificate_pem + issued.chain_pem[0])
        bundle = "".join(c.cert_pem for c in cas if c.kind in ("issuing", "root")
                         and c.not_after > now)
        if not creds.client_ca_pem.exists() or creds.client_ca_pem.read_text() != bundle:
            creds.client_ca_pem.write_text(bundle)
    return creds


def _server_cert_fresh(creds: ServerCredentials, names: tuple[str, ...], issuing: CaRecord,
                       now: float) -> bool:
    if not (creds.cert_chain_pem.exists() and creds.key_pem.exists()):
        return False
    cert = X.load_cert(creds.cert_chain_pem.read_bytes())
    info = X.cert_info(cert)
    if needs_renewal(info.not_before, info.not_after, now):
        return False
    if cert.issuer != _parsed(issuing.cert_pem).subject:
        return False
    from cryptography import x509

    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    have = {str(v) for v in san.get_values_for_type(x509.DNSName)} | {
        str(v) for v in san.get_values_for_type(x509.IPAddress)}
    return have == set(names)


def _write_private(path: Path, data: bytes) -> None:
    import os

    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)
