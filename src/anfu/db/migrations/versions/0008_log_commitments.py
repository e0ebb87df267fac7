"""log commitments: the private body and salt of each committed (ANFU-LOG-V2) log entry

Earlier leaves keep NULL in both: they are ANFU-LOG-V1 entries, signed into the tree with
their body in clear, and cannot be rewritten (docs/transparency.md, "Existing logs").

Revision ID: 0008
Revises: 0007
"""
from alembic import op
import sqlalchemy as sa


revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("log_leaves", sa.Column("private_body", sa.Text(), nullable=True))
    op.add_column("log_leaves", sa.Column("salt", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("log_leaves") as batch:
        batch.drop_column("salt")
        batch.drop_column("private_body")
