"""Tables of the identity hardening (migration 0007): step-up grants bound to one money
operation, and the key attestations that make a device key hardware-bound."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Float, Index, Integer, String, Table, Text

from anfu.db.tables import metadata

# PSD2 RTS art. 5 (dynamic linking): a step-up answered for a money move approves that move
# only (session, operation, amount, currency, payee), once.
step_up_grants = Table(
    "step_up_grants", metadata,
    Column("grant_id", String(40), primary_key=True),  # the step-up challenge's id
    Column("session_id", String(32), nullable=False),
    Column("user_id", String(32), nullable=False),
    Column("operation", String(48), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("payee", String(128), nullable=False),
    Column("payee_id", String(64), nullable=False),  # "" when the payee has no id
    Column("acr", Integer, nullable=False),
    Column("proofs", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("used_at", Float, nullable=True),
)
Index("ix_step_up_grants_session", step_up_grants.c.session_id)

# A verified key attestation (Android Key Attestation): the only thing that makes a device
# key count as hardware-bound (amr "hwk"). No row: the key is "swk" whatever the app claims.
device_attestations = Table(
    "device_attestations", metadata,
    Column("device_id", String(32), primary_key=True),
    Column("format", String(32), nullable=False),
    Column("security_level", String(32), nullable=False),
    Column("root_sha256", String(64), nullable=False),
    Column("verified_at", Float, nullable=False),
)
