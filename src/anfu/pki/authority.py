"""The platform CA as one process holds it: its certificates (rows of ``pki_cas``), its
signers (from the platform keystore), the URLs it names, set-up, offline root, rotation,
building and recording end-entity certificates, and CRLs."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from time import monotonic
from typing import TYPE_CHECKING, Any

from anfu.crypto import x509 as X
from anfu.crypto.keystore.files import FileSigner, alg_of
from anfu.crypto.keystore.platform import KeyNotFound, PlatformKeyStore, Signer
from anfu.db.log_store import SqlLogStore
from anfu.db.pki_store import SqlPkiStore
from anfu.errors import (
    Conflict,
    InvalidRequest,
    InvalidState,
    NotFound,
    Unavailable,
)
from anfu.pki.model import (
    BACKDATE_S,
    DAY,
    ISSUING_LIFETIME_S,
    OCSP_LIFETIME_S,
    PROFILE_KEYS,
    ROOT_LIFETIME_S,
    CaRecord,
    IssuedCertificate,
    Profile,
    needs_renewal,
    new_serial,
    subject_uris,
)

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from anfu.bootstrap import Platform
    from anfu.db.uow import SqlUnitOfWork

ORG = "anfu"
CA_CACHE_S = 1.0
_EXTRA = "pki.authority"


# --- keys ----------------------------------------------------------------------------------

def platform_keystore(platform: Platform) -> PlatformKeyStore:
    """Where the CA and OCSP keys live: the platform's keystore (files or PKCS#11)."""
    return platform.keystore


@contextlib.contextmanager
def _home_lock(home: Path, name: str) -> Iterator[None]:
    """Processes sharing one ANFU_HOME take turns creating CA keys and server keys."""
    home.mkdir(parents=True, exist_ok=True)
    with open(home / f"{name}.lock", "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


@lru_cache(maxsize=4096)
def _parsed(pem: str) -> Any:
    return X.load_cert(pem)


def _ca_record(*, ca_id: str, kind: str, parent_id: str | None, key_id: str, der: bytes,
               now: float) -> CaRecord:
    cert = X.load_cert(der)
    info = X.cert_info(cert)
    return CaRecord(ca_id=ca_id, kind=kind, parent_id=parent_id, key_id=key_id,
                    serial=info.serial, cert_pem=X.pem_of_der(der),
                    not_before=info.not_before, not_after=info.not_after, status="active",
                    revocation_gen=0, created_at=now)


def _next_number(kind: str, taken: list[CaRecord], store: PlatformKeyStore,
                 key_prefix: str) -> int:
    n = 1 + sum(1 for ca in taken if ca.kind == kind)
    ids = {ca.ca_id for ca in taken}
    while f"{kind}-{n}" in ids or store.exists(f"{key_prefix}-{n}"):
        n += 1
    return n


# --- the authority (one per process) -------------------------------------------------------

class Authority:
    """The platform CA as one process sees it: its certificates (read from the database),
    its signers (loaded once from the keystore), the URLs it names, and the CRL cache."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.settings = platform.settings
        self._signers: dict[str, Signer] = {}
        self._lock = threading.Lock()
        self._crls: dict[str, tuple[int, float, bytes]] = {}
        self._cas_at: tuple[float, list[CaRecord]] | None = None

    # URLs named in certificates
    @property
    def base_url(self) -> str:
        s = self.settings
        if s.pki_public_url:
            return s.pki_public_url.rstrip("/")
        return f"{'https' if s.tls else 'http'}://{s.mobile_addr}"

    @property
    def ocsp_url(self) -> str:
        return f"{self.base_url}/pki/ocsp"

    def crl_url(self, ca_id: str) -> str:
        return f"{self.base_url}/pki/crl/{ca_id}.crl"

    @property
    def keystore(self) -> PlatformKeyStore:
        return platform_keystore(self.platform)

    def signer(self, key_id: str) -> Signer:
        found = self._signers.get(key_id)
        if found is None:
            found = self.keystore.load(key_id)
            self._signers[key_id] = found
        return found

    def cas(self) -> list[CaRecord]:
        return self.platform.read(lambda conn: SqlPkiStore(conn).cas())

    def cas_cached(self, pki: SqlPkiStore) -> list[CaRecord]:
        """The CA rows for issuance, read again at most every CA_CACHE_S (a rotation made
        by another process is seen within that time)."""
        tick = monotonic()
        if self._cas_at is None or tick - self._cas_at[0] > CA_CACHE_S:
            self._cas_at = (tick, pki.cas())
        return self._cas_at[1]

    def active_issuing(self, cas: list[CaRecord] | None = None) -> CaRecord:
        cas = cas if cas is not None else self.cas()
        found = [c for c in cas if c.kind == "issuing" and c.status == "active"]
        if not found:
            raise Unavailable("the platform CA is not set up: run `anfu pki init`",
                              code="ca_not_initialised")
        return found[-1]

    def root_of(self, issuing: CaRecord, cas: list[CaRecord]) -> CaRecord:
        return next(c for c in cas if c.ca_id == issuing.parent_id)

    # --- set-up ---
    def initialise(self, *, now: float, exist_ok: bool) -> list[CaRecord]:
        """Root CA (P-384, 10 years), issuing CA (P-256, 5 years) and its OCSP signer."""
        with _home_lock(self.settings.home, "pki"):
            cas = self.cas()
            if any(c.kind == "root" for c in cas):
                if not exist_ok:
                    raise Conflict("the platform CA exists already", code="ca_exists")
                self.ensure_ocsp_signers(now=now)
                return self.cas()
            store = self.keystore
            n = _next_number("root", cas, store, "ca-root")
            root_key = store.create(f"ca-root-{n}", "ecdsa-p384-sha384")
            root_der = X.build_ca_certificate(
                signer=root_key, common_name=f"anfu Root CA {n}", organization=ORG,
                serial=new_serial(), not_before=now - BACKDATE_S,
                not_after=now + ROOT_LIFETIME_S)
            root = _ca_record(ca_id=f"root-{n}", kind="root", parent_id=None,
                              key_id=root_key.key_id, der=root_der, now=now)
            self.platform.write_sync(lambda uow: SqlPkiStore(uow.conn).insert_ca(root))
            self._new_issuing(root, root_key, now=now)
            return self.cas()

    def _new_issuing(self, root: CaRecord, root_key: Signer, *, now: float) -> CaRecord:
        cas = self.cas()
        store = self.keystore
        n = _next_number("issuing", cas, store, "ca-issuing")
        key = store.create(f"ca-issuing-{n}", "ecdsa-p256-sha256")
        der = X.build_ca_certificate(
            signer=key, common_name=f"anfu Issuing CA {n}", organization=ORG,
            serial=new_serial(), not_before=now - BACKDATE_S,
            not_after=min(now + ISSUING_LIFETIME_S, root.not_after),
            issuer=_parsed(root.cert_pem), issuer_signer=root_key, path_length=0)
        issuing = _ca_record(ca_id=f"issuing-{n}", kind="issuing", parent_id=root.ca_id,
                             key_id=key.key_id, der=der, now=now)
        old = [c.ca_id for c in cas if c.kind == "issuing" and c.status == "active"]

        def save(uow: SqlUnitOfWork) -> None:
            pki = SqlPkiStore(uow.conn)
            for ca_id in old:
                pki.retire_ca(ca_id)
            pki.insert_ca(issuing)

        self.platform.write_sync(save)
        self._cas_at = None
        self._new_ocsp_signer(issuing, now=now)
        return issuing

    def _new_ocsp_signer(self, issuing: CaRecord, *, now: float) -> CaRecord:
        cas = self.cas()
        store = self.keystore
        n = _next_number("ocsp", cas, store, "ocsp")
        key = store.create(f"ocsp-{n}", "ecdsa-p256-sha256")
        spec = X.LeafSpec(common_name=f"anfu OCSP Responder {n}", eku=("ocsp_signing",),
                          ocsp_nocheck=True, subject_key_id=True)
        der = X.build_leaf_certificate(
            spec=spec, public_key=key.public_key(),
            serial=new_serial(), not_before=now - BACKDATE_S,
            not_after=min(now + OCSP_LIFETIME_S, issuing.not_after),
            issuer=_parsed(issuing.cert_pem), issuer_signer=self.signer(issuing.key_id))
        record = _ca_record(ca_id=f"ocsp-{n}", kind="ocsp", parent_id=issuing.ca_id,
                            key_id=key.key_id, der=der, now=now)
        self.platform.write_sync(lambda uow: SqlPkiStore(uow.conn).insert_ca(record))
        return record

    def ensure_ocsp_signers(self, *, now: float) -> None:
        """Every issuing CA that may still have valid certificates has a current OCSP
        signer; one with less than a third of its life left is replaced."""
        cas = self.cas()
        for issuing in (c for c in cas if c.kind == "issuing" and c.not_after > now):
            signers = [c for c in cas if c.kind == "ocsp" and c.parent_id == issuing.ca_id]
            if not signers or needs_renewal(signers[-1].not_before, signers[-1].not_after,
                                            now):
                with _home_lock(self.settings.home, "pki"):
                    fresh = [c for c in self.cas() if c.kind == "ocsp"
                             and c.parent_id == issuing.ca_id]
                    if not fresh or needs_renewal(fresh[-1].not_before, fresh[-1].not_after,
                                                  now):
                        self._new_ocsp_signer(issuing, now=now)

    def rotate_issuing(self, *, root_key: Signer | None, now: float) -> CaRecord:
        """A new issuing CA (and OCSP signer); the old one is retired: it issues no more,
        but its CRL and OCSP answers go on until its certificates expire."""
        cas = self.cas()
        roots = [c for c in cas if c.kind == "root" and c.status == "active"]
        if not roots:
            raise InvalidState("no root CA: run `anfu pki init`", code="ca_not_initialised")
        root = roots[-1]
        if root_key is None:
            try:
                root_key = self.signer(root.key_id)
            except KeyNotFound:
                raise InvalidState("the root key is offline: pass it back with --root-key",
                                   code="root_key_offline") from None
        expected = X.spki_der(_parsed(root.cert_pem).public_key())
        if X.spki_der(root_key.public_key()) != expected:
            raise InvalidRequest("that key is not the root CA's key", code="root_key_mismatch")
        with _home_lock(self.settings.home, "pki"):
            return self._new_issuing(root, root_key, now=now)

    def export_root(self, passphrase: bytes) -> tuple[bytes, str]:
        """(encrypted PKCS#8 PEM of the root key, root certificate PEM)."""
        root = [c for c in self.cas() if c.kind == "root" and c.status == "active"][-1]
        return self.keystore.export_pkcs8(root.key_id, passphrase), root.cert_pem

    def remove_root_key(self) -> str:
        root = [c for c in self.cas() if c.kind == "root" and c.status == "active"][-1]
        self.keystore.delete(root.key_id)
        self._signers.pop(root.key_id, None)
        return root.key_id

    # --- issuance ---
    def issue(self, uow: SqlUnitOfWork, *, profile: Profile, subject_id: str,
              user_id: str | None, csr: X.CsrKey | None = None,
              public_key: Any = None, names: tuple[str, ...] = ()) -> IssuedCertificate:
        """Issue one end-entity certificate (inside the caller's write job, with its
        transparency-log entry)."""
        cas = self.cas_cached(SqlPkiStore(uow.conn))
        return self.record(uow, self.prepare(
            cas, profile=profile, subject_id=subject_id, user_id=user_id, csr=csr,
            public_key=public_key, names=names, now=uow.now))

    def prepare(self, cas: list[CaRecord], *, profile: Profile, subject_id: str,
                user_id: str | None, now: float, csr: X.CsrKey | None = None,
                public_key: Any = None, names: tuple[str, ...] = ()) -> Prepared:
        """Build and sign a certificate (CPU only: done outside the single writer, so
        signing never holds up other writes); ``record`` stores it."""
        if csr is not None:
            if csr.kind not in PROFILE_KEYS[profile]:
                raise InvalidRequest(f"a {profile.value} certificate takes keys of type"
                                     f" {', '.join(PROFILE_KEYS[profile])}",
                                     code="csr_key_unsupported")
            public_key = csr.public_key
        issuing = self.active_issuing(cas)
        root = self.root_of(issuing, cas)
        s = self.settings
        days = {Profile.DEVICE: s.pki_device_cert_days, Profile.MERCHANT:
                s.pki_merchant_cert_days, Profile.SERVER: s.pki_server_cert_days}[profile]
        not_after = min(now + days * DAY, issuing.not_after)
        spec = self._spec(profile, subject_id, user_id, issuing.ca_id, names)
        serial = new_serial()
        der = X.build_leaf_certificate(spec=spec, public_key=public_key, serial=serial,
                                       not_before=now - BACKDATE_S, not_after=not_after,
                                       issuer=_parsed(issuing.cert_pem),
                                       issuer_signer=self.signer(issuing.key_id))
        info = X.issued_info(der, serial=serial, not_before=now - BACKDATE_S,
                             not_after=not_after, public_key=public_key, uris=spec.uris,
                             issuer=_parsed(issuing.cert_pem))
        issued = IssuedCertificate(
            serial=info.serial, ca_id=issuing.ca_id, profile=profile.value,
            subject_id=subject_id, user_id=user_id, sha256=info.sha256,
            certificate_pem=X.pem_of_der(der), chain_pem=(issuing.cert_pem, root.cert_pem),
            not_before=info.not_before, not_after=info.not_after)
        return Prepared(issued, hashlib.sha256(info.public_key_der).hexdigest())

    def record(self, uow: SqlUnitOfWork, prepared: Prepared) -> IssuedCertificate:
        """Store a prepared certificate and enqueue its transparency-log entry."""
        c = prepared.issued
        SqlPkiStore(uow.conn).insert_certificate(
            serial=c.serial, ca_id=c.ca_id, profile=c.profile, subject_id=c.subject_id,
            user_id=c.user_id, sha256=c.sha256, spki_sha256=prepared.spki_sha256,
            cert_pem=c.certificate_pem, not_before=c.not_before, not_after=c.not_after,
            created_at=uow.now)
        SqlLogStore(uow.conn).enqueue("certificate.issued", {
            "serial": c.serial, "profile": c.profile, "subject_id": c.subject_id,
            "not_after": int(c.not_after), "sha256": c.sha256}, uow.now)
        return c

    def cas_for_issuing(self) -> list[CaRecord]:
        return self.platform.read(self._cas_cached_conn)

    def _cas_cached_conn(self, conn: Connection) -> list[CaRecord]:
        return self.cas_cached(SqlPkiStore(conn))

    def _spec(self, profile: Profile, subject_id: str, user_id: str | None, ca_id: str,
              names: tuple[str, ...]) -> X.LeafSpec:
        uris = subject_uris(profile, subject_id, user_id)
        if profile is Profile.DEVICE:  # compact (WPKI): no CRL distribution point
            return X.LeafSpec(common_name=subject_id, uris=uris, ocsp_url=self.ocsp_url)
        if profile is Profile.MERCHANT:
            return X.LeafSpec(common_name=subject_id, uris=uris, eku=("client_auth",),
                              ocsp_url=self.ocsp_url, crl_url=self.crl_url(ca_id))
        dns, ips = split_names(names)
        return X.LeafSpec(common_name=names[0] if names else subject_id, dns_names=dns,
                          ip_addresses=ips, eku=("server_auth",), ocsp_url=self.ocsp_url,
                          crl_url=self.crl_url(ca_id))

    # --- CRL ---
    def crl(self, ca_id: str, now: float) -> bytes:
        """The DER CRL of an issuing CA; made again when a revocation happened (the CA's
        generation moved) or half of its validity has passed."""
        def read(conn: Connection) -> tuple[CaRecord | None, list[dict[str, Any]]]:
            pki = SqlPkiStore(conn)
            return pki.ca(ca_id), pki.revoked_under(ca_id, now)

        ca = self.platform.read(lambda conn: SqlPkiStore(conn).ca(ca_id))
        if ca is None or ca.kind != "issuing":
            raise NotFound(f"no CRL for {ca_id!r}: CRLs are published for issuing CAs",
                           code="ca_not_found")
        cached = self._crls.get(ca_id)
        if cached is not None and cached[0] == ca.revocation_gen and now < cached[1]:
            return cached[2]
        ca, rows = self.platform.read(read)
        assert ca is not None
        hours = self.settings.pki_crl_hours
        der = X.build_crl(
            issuer=_parsed(ca.cert_pem), signer=self.signer(ca.key_id),
            revoked=[X.Revoked(int(r["serial"], 16), r["revoked_at"],
                               r["revocation_reason"] or "unspecified") for r in rows],
            this_update=now, next_update=now + hours * 3600, number=int(now * 1000))
        self._crls[ca_id] = (ca.revocation_gen, now + hours * 1800, der)
        return der


def split_names(names: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    import ipaddress

    dns: list[str] = []
    ips: list[str] = []
    for name in names:
        try:
            ipaddress.ip_address(name)
            ips.append(name)
        except ValueError:
            dns.append(name)
    return tuple(dns), tuple(ips)


def authority(platform: Platform) -> Authority:
    found = platform.extras.get(_EXTRA)
    if found is None:
        found = Authority(platform)
        platform.extras[_EXTRA] = found
    return found


def ensure_ca(platform: Platform) -> None:
    """At start: outside production, create the CA if there is none (like the platform
    keys); in every case keep the OCSP signers current."""
    auth = authority(platform)
    now = platform.clock()
    if not any(c.kind == "root" for c in auth.cas()):
        if platform.settings.env == "production":
            return  # answered 503 ca_not_initialised until `anfu pki init`
        auth.initialise(now=now, exist_ok=True)
    auth.ensure_ocsp_signers(now=now)


@dataclass(frozen=True)
class Prepared:
    issued: IssuedCertificate
    spki_sha256: str



def load_root_key(pem: bytes, passphrase: bytes, key_id: str) -> Signer:
    """The offline root key, brought back for ``rotate-issuing``."""
    from cryptography.hazmat.primitives import serialization

    try:
        key = serialization.load_pem_private_key(pem, password=passphrase)
    except (ValueError, TypeError) as exc:
        raise InvalidRequest(f"cannot read the root key ({exc})", code="root_key_unreadable") \
            from None
    alg_of(key)  # type: ignore[arg-type]
    return FileSigner(key_id, key)  # type: ignore[arg-type]
