"""pki: certificate authorities, certificates, revocations

Revision ID: 0004
Revises: 0003
"""
from alembic import op
import sqlalchemy as sa


revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pki_cas",
        sa.Column("ca_id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("parent_id", sa.String(length=40), nullable=True),
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("serial", sa.String(length=40), nullable=False),
        sa.Column("cert_pem", sa.Text(), nullable=False),
        sa.Column("not_before", sa.Float(), nullable=False),
        sa.Column("not_after", sa.Float(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("revocation_gen", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("ca_id", name=op.f("pk_pki_cas")),
    )
    op.create_index("ix_pki_cas_kind", "pki_cas", ["kind", "status"], unique=False)
    op.create_table(
        "pki_certificates",
        sa.Column("serial", sa.String(length=40), nullable=False),
        sa.Column("ca_id", sa.String(length=40), nullable=False),
        sa.Column("profile", sa.String(length=16), nullable=False),
        sa.Column("subject_id", sa.String(length=255), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("spki_sha256", sa.String(length=64), nullable=False),
        sa.Column("cert_pem", sa.Text(), nullable=False),
        sa.Column("not_before", sa.Float(), nullable=False),
        sa.Column("not_after", sa.Float(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("revoked_at", sa.Float(), nullable=True),
        sa.Column("revocation_reason", sa.String(length=32), nullable=True),
        sa.PrimaryKeyConstraint("serial", name=op.f("pk_pki_certificates")),
        sa.UniqueConstraint("sha256", name=op.f("uq_pki_certificates_sha256")),
    )
    op.create_index("ix_pki_certificates_subject", "pki_certificates",
                    ["profile", "subject_id", "not_after"], unique=False)
    op.create_index("ix_pki_certificates_revoked", "pki_certificates",
                    ["ca_id", "revoked_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_pki_certificates_revoked", table_name="pki_certificates")
    op.drop_index("ix_pki_certificates_subject", table_name="pki_certificates")
    op.drop_table("pki_certificates")
    op.drop_index("ix_pki_cas_kind", table_name="pki_cas")
    op.drop_table("pki_cas")
