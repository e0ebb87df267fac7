"""identity hardening: step-up grants bound to one operation, verified key attestations,
the payee id a step-up challenge is bound to, the phone a password reset was started for

Revision ID: 0007
Revises: 0006
"""
from alembic import op
import sqlalchemy as sa


revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "step_up_grants",
        sa.Column("grant_id", sa.String(length=40), nullable=False),
        sa.Column("session_id", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("operation", sa.String(length=48), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("payee", sa.String(length=128), nullable=False),
        sa.Column("payee_id", sa.String(length=64), nullable=False),
        sa.Column("acr", sa.Integer(), nullable=False),
        sa.Column("proofs", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.Column("used_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("grant_id", name=op.f("pk_step_up_grants")),
    )
    op.create_index("ix_step_up_grants_session", "step_up_grants", ["session_id"])
    op.create_table(
        "device_attestations",
        sa.Column("device_id", sa.String(length=32), nullable=False),
        sa.Column("format", sa.String(length=32), nullable=False),
        sa.Column("security_level", sa.String(length=32), nullable=False),
        sa.Column("root_sha256", sa.String(length=64), nullable=False),
        sa.Column("verified_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("device_id", name=op.f("pk_device_attestations")),
    )
    with op.batch_alter_table("auth_challenges") as batch:
        batch.add_column(sa.Column("payee_id", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("phone", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("auth_challenges") as batch:
        batch.drop_column("phone")
        batch.drop_column("payee_id")
    op.drop_table("device_attestations")
    op.drop_index("ix_step_up_grants_session", table_name="step_up_grants")
    op.drop_table("step_up_grants")
