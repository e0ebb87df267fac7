"""Tables of the transparency log (RFC 9162) and receipts, on the shared metadata.

``log_queue``: entries written inside their writers' transactions, waiting for the sequencer.
``log_leaves``: the append-only log (leaf_index = position), each committed entry's private
body and salt beside its public entry (docs/transparency.md). ``log_tree_heads``: the signed
tree heads. ``receipts``: the signed receipt of each payment, refund, transfer, withdrawal.
``log_keys``: the platform keys already announced in the log.
``log_state``: one row, locked by the sequencer (two platforms on one PostgreSQL take turns)."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Float, Index, Integer, LargeBinary, String, Table, Text

from anfu.db.tables import metadata

log_queue = Table(
    "log_queue", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(32), nullable=False),
    Column("body", Text, nullable=False),  # canonical JSON
    Column("created_at", Float, nullable=False),
)

log_leaves = Table(
    "log_leaves", metadata,
    # INTEGER on SQLite: the rowid itself, so an append writes one B-tree, not two.
    Column("leaf_index", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True,
           autoincrement=False),
    Column("kind", String(32), nullable=False),
    # The leaf data (UTF-8): ANFU-LOG-V1 (body in clear) or ANFU-LOG-V2 (commitment only).
    Column("entry", Text, nullable=False),
    Column("leaf_hash", LargeBinary, nullable=False),
    Column("sequenced_at", Float, nullable=False),
    # V2 entries only: the committed body (canonical JSON) and its 32-byte salt. Never
    # served publicly: they go to the entry's owner (in the receipt) and to auditors.
    Column("private_body", Text, nullable=True),
    Column("salt", LargeBinary, nullable=True),
)
Index("ix_log_leaves_leaf_hash", log_leaves.c.leaf_hash)

log_tree_heads = Table(
    "log_tree_heads", metadata,
    Column("tree_size", BigInteger, primary_key=True, autoincrement=False),
    Column("timestamp", BigInteger, nullable=False),  # ms
    Column("root_hash", LargeBinary, nullable=False),
    Column("key_id", String(64), nullable=False),
    Column("alg", String(32), nullable=False),
    Column("signature", LargeBinary, nullable=False),
)

receipts = Table(
    "receipts", metadata,
    Column("txn_id", String(64), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("user_id", String(64), nullable=True),
    Column("merchant_id", String(64), nullable=True),
    Column("leaf_index", BigInteger, nullable=False),
    Column("receipt", Text, nullable=False),  # JSON, signed
    Column("created_at", Float, nullable=False),
)

# Every platform key the log has announced (``key.published`` or ``key.rotated``), so each
# is announced exactly once, in the transaction that enqueues its entry.
log_keys = Table(
    "log_keys", metadata,
    Column("key_id", String(64), primary_key=True),
    Column("purpose", String(16), nullable=False),
    Column("logged_at", Float, nullable=False),
)

log_state = Table(
    "log_state", metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("tree_size", BigInteger, nullable=False),
    Column("updated_at", Float, nullable=False),
)
