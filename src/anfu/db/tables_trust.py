"""Tables of transaction signing (book 3.6): single-use challenges and the evidence kept;
and the ledger seals logged to the transparency log."""

from __future__ import annotations

from sqlalchemy import Column, Float, Index, Integer, LargeBinary, String, Table

from anfu.db.tables import metadata

txn_challenges = Table(
    "txn_challenges", metadata,
    Column("challenge", String(64), primary_key=True),
    Column("user_id", String(32), nullable=False),
    Column("device_id", String(32), nullable=False),
    # SHA-256 of the facts when issued for a known transaction; NULL for a fresh one.
    Column("facts_digest", String(64), nullable=True),
    Column("issued_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("used_at", Float, nullable=True),
    Column("used_for", String(40), nullable=True),
)
Index("ix_txn_challenges_expires", txn_challenges.c.expires_at)

txn_evidence = Table(
    "txn_evidence", metadata,
    Column("txn_id", String(40), primary_key=True),
    Column("operation", String(16), nullable=False),
    Column("user_id", String(32), nullable=False),
    Column("device_id", String(32), nullable=False),
    Column("certificate_serial", String(64), nullable=False),
    Column("challenge", String(64), nullable=False),
    Column("signed_bytes", LargeBinary, nullable=False),
    Column("signature", LargeBinary, nullable=False),
    Column("alg", String(8), nullable=False),
    Column("signed_at", Integer, nullable=False),
    Column("created_at", Float, nullable=False),
)
Index("ix_txn_evidence_user", txn_evidence.c.user_id, txn_evidence.c.created_at)

ledger_seals = Table(
    "ledger_seals", metadata,
    Column("seal_no", Integer, primary_key=True, autoincrement=False),
    Column("from_seq", Integer, nullable=False),
    Column("to_seq", Integer, nullable=False),
    Column("transfers", Integer, nullable=False),
    Column("digest", String(64), nullable=False),
    Column("sealed_at", Float, nullable=False),
)
