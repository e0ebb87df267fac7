"""trust: transaction-signing challenges and evidence, ledger seals

Revision ID: 0006
Revises: 0005
"""
from alembic import op
import sqlalchemy as sa


revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "txn_challenges",
        sa.Column("challenge", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("device_id", sa.String(length=32), nullable=False),
        sa.Column("facts_digest", sa.String(length=64), nullable=True),
        sa.Column("issued_at", sa.Float(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("used_at", sa.Float(), nullable=True),
        sa.Column("used_for", sa.String(length=40), nullable=True),
        sa.PrimaryKeyConstraint("challenge", name=op.f("pk_txn_challenges")),
    )
    op.create_index("ix_txn_challenges_expires", "txn_challenges", ["expires_at"])
    op.create_table(
        "txn_evidence",
        sa.Column("txn_id", sa.String(length=40), nullable=False),
        sa.Column("operation", sa.String(length=16), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("device_id", sa.String(length=32), nullable=False),
        sa.Column("certificate_serial", sa.String(length=64), nullable=False),
        sa.Column("challenge", sa.String(length=64), nullable=False),
        sa.Column("signed_bytes", sa.LargeBinary(), nullable=False),
        sa.Column("signature", sa.LargeBinary(), nullable=False),
        sa.Column("alg", sa.String(length=8), nullable=False),
        sa.Column("signed_at", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("txn_id", name=op.f("pk_txn_evidence")),
    )
    op.create_index("ix_txn_evidence_user", "txn_evidence", ["user_id", "created_at"])
    op.create_table(
        "ledger_seals",
        sa.Column("seal_no", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("from_seq", sa.Integer(), nullable=False),
        sa.Column("to_seq", sa.Integer(), nullable=False),
        sa.Column("transfers", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("sealed_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("seal_no", name=op.f("pk_ledger_seals")),
    )


def downgrade() -> None:
    op.drop_table("ledger_seals")
    op.drop_index("ix_txn_evidence_user", table_name="txn_evidence")
    op.drop_table("txn_evidence")
    op.drop_index("ix_txn_challenges_expires", table_name="txn_challenges")
    op.drop_table("txn_challenges")
