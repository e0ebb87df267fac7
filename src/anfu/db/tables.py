"""Every table of the platform (SQLAlchemy Core). Money columns are BigInteger minor units."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

metadata = MetaData(naming_convention={
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
})

# Times are Unix seconds (float) from the injected clock: portable across SQLite and
# PostgreSQL and cheap to compare.
accounts = Table(
    "accounts", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("owner_type", String(16), nullable=False),
    Column("owner_id", String(64), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("debits_posted", BigInteger, nullable=False, default=0),
    Column("credits_posted", BigInteger, nullable=False, default=0),
    Column("debits_pending", BigInteger, nullable=False, default=0),
    Column("credits_pending", BigInteger, nullable=False, default=0),
    Column("no_overdraft", Boolean, nullable=False),
    Column("created_at", Float, nullable=False),
    UniqueConstraint("owner_type", "owner_id", "kind", "currency", name="uq_accounts_owner"),
)

transfers = Table(
    "transfers", metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("kind", String(8), nullable=False),  # single | pending | post | void | expire
    Column("debit_account_id", Integer, ForeignKey("accounts.id"), nullable=False),
    Column("credit_account_id", Integer, ForeignKey("accounts.id"), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("pending_id", String(64), nullable=True),
    Column("timeout_at", Float, nullable=True),
    Column("reference", String(64), nullable=True),
    Column("description", String(200), nullable=True),
    Column("reverses_id", String(64), nullable=True),
    Column("created_at", Float, nullable=False),
)
# Partial indexes: most transfers are single-phase and should not pay for what only holds
# and their resolutions need. (Kept in step with migration 0001.)
_PENDING = text("kind = 'pending'")
Index("ix_transfers_pending_timeout", transfers.c.timeout_at, sqlite_where=_PENDING,
      postgresql_where=_PENDING)
for _column in (transfers.c.pending_id, transfers.c.reverses_id):
    _present = _column.isnot(None)
    Index(f"uq_transfers_{_column.name}", _column, unique=True, sqlite_where=_present,
          postgresql_where=_present)

entries = Table(
    "entries", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("account_id", Integer, ForeignKey("accounts.id"), nullable=False),
    Column("transfer_id", String(64), nullable=False),
    Column("amount", BigInteger, nullable=False),  # + credit, - debit
    Column("balance_after", BigInteger, nullable=False),
    Column("created_at", Float, nullable=False),
)
Index("ix_entries_account", entries.c.account_id, entries.c.id)

merchants = Table(
    "merchants", metadata,
    Column("merchant_id", String(32), primary_key=True),
    Column("name", String(128), nullable=False),
    Column("notify_url", String(1024), nullable=True),
    Column("fee_bps", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", Float, nullable=False),
)

merchant_keys = Table(
    "merchant_keys", metadata,
    Column("key_id", String(40), primary_key=True),
    Column("merchant_id", String(32), ForeignKey("merchants.merchant_id"), nullable=False),
    Column("alg", String(24), nullable=False),
    Column("public_key_pem", Text, nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float, nullable=True),
)

nonces = Table(
    "nonces", metadata,
    Column("merchant_id", String(32), primary_key=True),
    Column("nonce", String(64), primary_key=True),
    Column("expires_at", Float, nullable=False),
)
Index("ix_nonces_expiry", nonces.c.expires_at)

users = Table(
    "users", metadata,
    Column("user_id", String(32), primary_key=True),
    Column("phone", String(20), nullable=False, unique=True),
    Column("password_hash", String(256), nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", Float, nullable=False),
    # A risk signal for 24 h after a password reset (the risk engine reads it).
    Column("recently_reset_until", Float, nullable=True),
    # JSON {"CNY": 50000}: above these amounts a payment needs assurance level 3.
    Column("high_value_limits", Text, nullable=True),
)

refresh_tokens = Table(
    "refresh_tokens", metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("user_id", String(32), ForeignKey("users.user_id"), nullable=False),
    Column("session_id", String(32), nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("used_at", Float, nullable=True),
    Column("created_at", Float, nullable=False),
)
Index("ix_refresh_tokens_session", refresh_tokens.c.session_id)

sessions = Table(
    "sessions", metadata,
    Column("session_id", String(32), primary_key=True),
    Column("user_id", String(32), ForeignKey("users.user_id"), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float, nullable=True),
    Column("revoked_reason", String(64), nullable=True),
    # The device whose key the session's tokens are bound to (DPoP), if any.
    Column("device_id", String(32), nullable=True),
    Column("jkt", String(64), nullable=True),
    # JSON {"pwd": 1700000000.0, "sms": ...}: each method proved, and when.
    Column("proofs", Text, nullable=False, server_default="{}"),
    Column("client_address", String(64), nullable=True),
)
Index("ix_sessions_user", sessions.c.user_id)
Index("ix_sessions_device", sessions.c.device_id)

idempotency_keys = Table(
    "idempotency_keys", metadata,
    Column("scope", String(64), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("request_hash", String(64), nullable=False),
    Column("status_code", Integer, nullable=False),
    Column("response_body", Text, nullable=False),
    Column("expires_at", Float, nullable=False),
)
Index("ix_idempotency_expiry", idempotency_keys.c.expires_at)

trades = Table(
    "trades", metadata,
    Column("trade_no", String(32), primary_key=True),
    Column("merchant_id", String(32), ForeignKey("merchants.merchant_id"), nullable=False),
    Column("out_trade_no", String(64), nullable=False),
    Column("request_hash", String(64), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("subject", String(256), nullable=False),
    Column("mode", String(8), nullable=False),
    Column("notify_url", String(1024), nullable=True),
    Column("status", String(32), nullable=False),
    Column("fee_bps", Integer, nullable=False),
    Column("buyer_id", String(32), nullable=True),
    Column("hold_transfer_id", String(64), nullable=True),
    Column("hold_posted", Boolean, nullable=False, default=False),
    Column("refunded_amount", BigInteger, nullable=False, default=0),
    Column("settled_amount", BigInteger, nullable=False, default=0),
    Column("fee_amount", BigInteger, nullable=False, default=0),
    Column("created_at", Float, nullable=False),
    Column("pay_expire_at", Float, nullable=False),
    Column("paid_at", Float, nullable=True),
    Column("shipped_at", Float, nullable=True),
    Column("confirm_deadline", Float, nullable=True),
    Column("finished_at", Float, nullable=True),
    Column("closed_at", Float, nullable=True),
    Column("close_reason", String(32), nullable=True),
    UniqueConstraint("merchant_id", "out_trade_no", name="uq_trades_out_trade_no"),
)

refunds = Table(
    "refunds", metadata,
    Column("refund_no", String(32), primary_key=True),
    Column("trade_no", String(32), ForeignKey("trades.trade_no"), nullable=False),
    Column("out_refund_no", String(64), nullable=False),
    Column("request_hash", String(64), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("reason", String(256), nullable=True),
    Column("source", String(16), nullable=False),  # escrow | merchant
    Column("status", String(16), nullable=False),
    Column("created_at", Float, nullable=False),
    UniqueConstraint("trade_no", "out_refund_no", name="uq_refunds_out_refund_no"),
)

events = Table(
    "events", metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("id", String(40), nullable=False, unique=True),
    Column("merchant_id", String(32), nullable=False),
    Column("trade_no", String(32), nullable=True),
    Column("type", String(40), nullable=False),
    Column("data", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("notify_url", String(1024), nullable=True),
    Column("delivery_status", String(16), nullable=False),  # pending|delivered|failed|none
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", Float, nullable=True),
    Column("delivered_at", Float, nullable=True),
)
Index("ix_events_due", events.c.delivery_status, events.c.next_attempt_at)
Index("ix_events_merchant", events.c.merchant_id, events.c.seq)
Index("ix_events_trade", events.c.trade_no, events.c.seq)

delivery_attempts = Table(
    "delivery_attempts", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String(40), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("started_at", Float, nullable=False),
    Column("duration_ms", Integer, nullable=False),
    Column("status_code", Integer, nullable=True),
    Column("error", String(256), nullable=True),
    Column("outcome", String(16), nullable=False),  # delivered | retry | failed
)
Index("ix_delivery_attempts_event", delivery_attempts.c.event_id, delivery_attempts.c.id)

jobs = Table(
    "jobs", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(32), nullable=False),
    Column("ref", String(64), nullable=False),
    Column("run_at", Float, nullable=False),
    Column("status", String(16), nullable=False),  # pending | done | cancelled
    Column("done_at", Float, nullable=True),
    Column("result", String(64), nullable=True),
    UniqueConstraint("kind", "ref", name="uq_jobs_kind_ref"),
)
Index("ix_jobs_due", jobs.c.status, jobs.c.run_at)

bank_operations = Table(
    "bank_operations", metadata,
    Column("op_id", String(32), primary_key=True),
    Column("user_id", String(32), nullable=False),
    Column("kind", String(16), nullable=False),  # topup | withdrawal
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("status", String(16), nullable=False),  # succeeded | failed
    Column("bank_reference", String(64), nullable=True),
    Column("bank_signature", Text, nullable=True),
    Column("failure", String(256), nullable=True),
    Column("created_at", Float, nullable=False),
)

p2p_transfers = Table(
    "p2p_transfers", metadata,
    Column("transfer_no", String(32), primary_key=True),
    Column("payer_id", String(32), nullable=False),
    Column("payee_id", String(32), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("memo", String(140), nullable=True),
    Column("created_at", Float, nullable=False),
)

throttle_state = Table(
    "throttle_state", metadata,
    Column("key", String(128), primary_key=True),
    Column("failures", Integer, nullable=False),
    Column("last_failure", Float, nullable=False),
    Column("locked_until", Float, nullable=False),
    Column("lockouts", Integer, nullable=False),
)


# "Has this customer paid this payee before?" (the first-time-payee step-up rule)
Index("ix_trades_buyer", trades.c.buyer_id, trades.c.merchant_id)
Index("ix_p2p_payer", p2p_transfers.c.payer_id, p2p_transfers.c.payee_id)

# --- identity: factors, devices, challenges, audit (migration 0003) ---

devices = Table(
    "devices", metadata,
    Column("device_id", String(32), primary_key=True),
    Column("user_id", String(32), ForeignKey("users.user_id"), nullable=False),
    Column("name", String(64), nullable=False),
    Column("alg", String(8), nullable=False),
    Column("public_jwk", Text, nullable=False),
    Column("jkt", String(64), nullable=False, unique=True),
    Column("key_storage", String(16), nullable=False),
    Column("app_id", String(128), nullable=False),
    Column("app_version", String(32), nullable=False),
    Column("app_cert_sha256", String(64), nullable=False),
    Column("os", String(64), nullable=False),
    Column("rooted", Boolean, nullable=False),
    Column("emulator", Boolean, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("last_seen_at", Float, nullable=True),
    Column("revoked_at", Float, nullable=True),
)
Index("ix_devices_user", devices.c.user_id)

auth_challenges = Table(
    "auth_challenges", metadata,
    Column("challenge_id", String(40), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("user_id", String(32), nullable=True),
    Column("session_id", String(32), nullable=True),
    Column("device_id", String(32), nullable=True),
    Column("operation", String(48), nullable=False),
    Column("required_acr", Integer, nullable=False),
    # JSON {"all": ["pwd", "sms"], "any": []}: methods a login or reset must include.
    Column("requirement", Text, nullable=False),
    Column("nonce", String(64), nullable=False),
    Column("proofs", Text, nullable=False),
    Column("amount", BigInteger, nullable=True),
    Column("currency", String(3), nullable=True),
    Column("payee", String(64), nullable=True),
    Column("payee_id", String(64), nullable=True),  # migration 0007
    Column("phone", String(16), nullable=True),  # a reset's phone, known or not (0007)
    Column("sms_challenge_id", String(40), nullable=True),
    Column("client_address", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("completed_at", Float, nullable=True),
)

sms_challenges = Table(
    "sms_challenges", metadata,
    Column("challenge_id", String(40), primary_key=True),
    Column("phone", String(20), nullable=False),
    Column("purpose", String(24), nullable=False),
    Column("code_hash", String(128), nullable=False),
    Column("client_address", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("amount_minor", BigInteger, nullable=True),
    Column("currency", String(3), nullable=True),
    Column("payee", String(64), nullable=True),
    Column("attempts", Integer, nullable=False),
    Column("used_at", Float, nullable=True),
)

sms_sends = Table(
    "sms_sends", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key", String(80), nullable=False),
    Column("at", Float, nullable=False),
)
Index("ix_sms_sends_key_at", sms_sends.c.key, sms_sends.c.at)

totp_factors = Table(
    "totp_factors", metadata,
    Column("user_id", String(32), ForeignKey("users.user_id"), primary_key=True),
    Column("secret_sealed", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("confirmed_at", Float, nullable=True),
    Column("last_step", BigInteger, nullable=False),
)

recovery_codes = Table(
    "recovery_codes", metadata,
    Column("user_id", String(32), ForeignKey("users.user_id"), primary_key=True),
    Column("position", Integer, primary_key=True),
    Column("code_hash", String(128), nullable=False),
    Column("used_at", Float, nullable=True),
)

passkeys = Table(
    "passkeys", metadata,
    Column("credential_id", String(1400), primary_key=True),
    Column("user_id", String(32), ForeignKey("users.user_id"), nullable=False),
    Column("name", String(64), nullable=False),
    Column("public_key", Text, nullable=False),
    Column("sign_count", BigInteger, nullable=False),
    Column("aaguid", String(36), nullable=False),
    Column("backed_up", Boolean, nullable=False),
    Column("transports", String(128), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("last_used_at", Float, nullable=True),
)
Index("ix_passkeys_user", passkeys.c.user_id)

dpop_jtis = Table(
    "dpop_jtis", metadata,
    Column("jkt", String(64), primary_key=True),
    Column("jti", String(256), primary_key=True),
    Column("expires_at", Float, nullable=False),
)
Index("ix_dpop_jtis_expiry", dpop_jtis.c.expires_at)

audit_events = Table(
    "audit_events", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),
    Column("name", String(64), nullable=False),
    Column("user_id", String(32), nullable=True),
    Column("session_id", String(32), nullable=True),
    Column("device_id", String(32), nullable=True),
    Column("client_address", String(64), nullable=True),
    Column("detail", Text, nullable=False),
)
Index("ix_audit_events_user", audit_events.c.user_id, audit_events.c.id)

device_notices = Table(
    "device_notices", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("device_id", String(32), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("text", String(400), nullable=False),
    Column("created_at", Float, nullable=False),
)
Index("ix_device_notices_device", device_notices.c.device_id, device_notices.c.id)

# The trust tables live beside this file, one module per domain, on the same metadata.
from anfu.db import tables_identity, tables_log, tables_pki, tables_trust  # noqa: E402,F401
