"""transparency: log queue, leaves, tree heads, receipts

Revision ID: 0005
Revises: 0004
"""
from alembic import op
import sqlalchemy as sa


revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "log_queue",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_log_queue")),
    )
    op.create_table(
        "log_leaves",
        sa.Column("leaf_index", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                  autoincrement=False, nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("entry", sa.Text(), nullable=False),
        sa.Column("leaf_hash", sa.LargeBinary(), nullable=False),
        sa.Column("sequenced_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("leaf_index", name=op.f("pk_log_leaves")),
    )
    op.create_index("ix_log_leaves_leaf_hash", "log_leaves", ["leaf_hash"])
    op.create_table(
        "log_tree_heads",
        sa.Column("tree_size", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("timestamp", sa.BigInteger(), nullable=False),
        sa.Column("root_hash", sa.LargeBinary(), nullable=False),
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("alg", sa.String(length=32), nullable=False),
        sa.Column("signature", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("tree_size", name=op.f("pk_log_tree_heads")),
    )
    op.create_table(
        "receipts",
        sa.Column("txn_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=True),
        sa.Column("merchant_id", sa.String(length=64), nullable=True),
        sa.Column("leaf_index", sa.BigInteger(), nullable=False),
        sa.Column("receipt", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("txn_id", name=op.f("pk_receipts")),
    )
    op.create_table(
        "log_keys",
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("logged_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("key_id", name=op.f("pk_log_keys")),
    )
    op.create_table(
        "log_state",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("tree_size", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_log_state")),
    )


def downgrade() -> None:
    op.drop_table("log_state")
    op.drop_table("log_keys")
    op.drop_table("receipts")
    op.drop_table("log_tree_heads")
    op.drop_index("ix_log_leaves_leaf_hash", table_name="log_leaves")
    op.drop_table("log_leaves")
    op.drop_table("log_queue")
