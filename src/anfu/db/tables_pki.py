"""Tables of the pki domain (SQLAlchemy Core), on the shared metadata (migration 0004)."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Float, Index, String, Table, Text

from anfu.db.tables import metadata

# The platform's own certificates: roots, issuing CAs, delegated OCSP signers.
# ``revocation_gen`` (issuing CAs) grows with every revocation under that CA: responders in
# every process compare it with the one their cached OCSP answers and CRL were made at.
pki_cas = Table(
    "pki_cas", metadata,
    Column("ca_id", String(40), primary_key=True),
    Column("kind", String(16), nullable=False),          # root | issuing | ocsp
    Column("parent_id", String(40), nullable=True),
    Column("key_id", String(64), nullable=False),
    Column("serial", String(40), nullable=False),
    Column("cert_pem", Text, nullable=False),
    Column("not_before", Float, nullable=False),
    Column("not_after", Float, nullable=False),
    Column("status", String(16), nullable=False),        # active | retired
    Column("revocation_gen", BigInteger, nullable=False),
    Column("created_at", Float, nullable=False),
)
Index("ix_pki_cas_kind", pki_cas.c.kind, pki_cas.c.status)

# End-entity certificates issued by an issuing CA: device, merchant, server.
pki_certificates = Table(
    "pki_certificates", metadata,
    Column("serial", String(40), primary_key=True),
    Column("ca_id", String(40), nullable=False),
    Column("profile", String(16), nullable=False),
    Column("subject_id", String(255), nullable=False),
    Column("user_id", String(32), nullable=True),
    Column("sha256", String(64), nullable=False, unique=True),
    Column("spki_sha256", String(64), nullable=False),
    Column("cert_pem", Text, nullable=False),
    Column("not_before", Float, nullable=False),
    Column("not_after", Float, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float, nullable=True),
    Column("revocation_reason", String(32), nullable=True),
)
Index("ix_pki_certificates_subject", pki_certificates.c.profile,
      pki_certificates.c.subject_id, pki_certificates.c.not_after)
Index("ix_pki_certificates_revoked", pki_certificates.c.ca_id, pki_certificates.c.revoked_at)
