"""SandboxCarrier: a stand-in for a mobile operator's number-verification and SIM-swap
services, for development and tests.

``issue_token`` plays the operator's side of the phone's data connection: it hands out the
network token the app would receive for the SIM holding that number. A token lives
``token_ttl_s`` seconds on the injected clock and is spent by its first presentation,
whatever the verdict, so one captured token cannot be used to try several numbers. Spent and
expired tokens are remembered for one more lifetime (answered ``used`` / ``expired``), then
forgotten (``unknown``), which bounds the state. ``set_sim_changed`` records a SIM change.

Calls wait ``latency_ms`` (through the injected ``sleep``) and a ``failure_rate`` share of
them raise ``CarrierUnavailable``. Every reply is signed with the sandbox's own Ed25519 key,
as a real operator's gateway would sign. Tokens come from the seeded generator so runs
repeat: the sandbox is not a security boundary.

With a ``state_path`` the tokens, SIM changes and signing key live in a SQLite file shared by
every worker process and the CLI (``anfu carrier token``): a token issued by one process is
spent once across all of them, and all of them sign with the one key the platform pins.
Without one, the state lives in this instance only. Thread-safe either way.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from anfu import crypto
from anfu.adapters.carrier.base import (
    CarrierAdapter,
    CarrierUnavailable,
    CarrierVerdict,
    Clock,
    SimChangeReply,
    VerdictStatus,
    check_phone,
    key_id,
    token_digest,
)
from anfu.adapters.sandbox_store import SandboxStore

Sleep = Callable[[float], Awaitable[None]]

SIGNING_ALG = "ed25519"

# Tokens are kept by their SHA-256, as the replies name them, so the state file holds no
# live token. carrier_meta holds the signing key (PKCS#8 PEM) and the count of tokens issued.
SCHEMA = """
CREATE TABLE IF NOT EXISTS carrier_meta (name TEXT PRIMARY KEY, value NOT NULL);
CREATE TABLE IF NOT EXISTS carrier_token (
    token_digest TEXT PRIMARY KEY,
    phone TEXT NOT NULL,
    expires_at REAL NOT NULL,
    spent INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS carrier_token_by_expiry ON carrier_token (expires_at);
CREATE TABLE IF NOT EXISTS carrier_sim_change (
    phone TEXT PRIMARY KEY,
    changed_at TEXT NOT NULL
);
"""


def default_state_path(home: Path) -> Path:
    """The sandbox operator's shared state under the platform home (``ANFU_HOME``)."""
    return home / "sandbox" / "carrier.sqlite"


class SandboxCarrier(CarrierAdapter):
    """``state_path`` is the SQLite file that instances in other processes share (None: the
    state lives in this instance only)."""

    name = "sandbox"

    def __init__(self, *, latency_ms: int = 30, failure_rate: float = 0.0,
                 token_ttl_s: float = 120.0, seed: int | None = None,
                 clock: Clock = time.time, sleep: Sleep = asyncio.sleep,
                 state_path: Path | None = None) -> None:
        if latency_ms < 0 or token_ttl_s <= 0:
            raise ValueError("latency_ms must be >= 0 and token_ttl_s > 0")
        if not 0.0 <= failure_rate <= 1.0:
            raise ValueError("failure_rate must be between 0 and 1")
        self._store = SandboxStore(state_path, SCHEMA)
        self._key = self._load_or_create_signing_key()
        super().__init__(self._key.public_key())
        self._key_id = key_id(self._key.public_key())
        self._latency_s = latency_ms / 1000.0
        self._failure_rate = failure_rate
        self._ttl_s = token_ttl_s
        # Token n is drawn from (seed, n), n counted in the state, so instances sharing a
        # file (and perhaps a seed) never hand out the same token, while a run with a seed
        # still repeats. An unseeded instance picks a seed of its own.
        self._token_seed = str(seed) if seed is not None else secrets.token_hex(16)
        self._random = random.Random(seed)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()

    @property
    def state_path(self) -> Path | None:
        return self._store.path

    @property
    def public_key(self) -> crypto.PublicKey:
        """The key a platform configures to trust this operator."""
        return self._key.public_key()

    def issue_token(self, phone: str) -> str:
        """A fresh network token proving ``phone``, as the operator gives the app."""
        check_phone(phone)
        with self._store.write() as conn:
            now = self._clock()
            self._forget_old(conn, now)
            token = self._new_token(conn)
            conn.execute("INSERT INTO carrier_token (token_digest, phone, expires_at)"
                         " VALUES (?, ?, ?)", (token_digest(token), phone, now + self._ttl_s))
        return token

    def set_sim_changed(self, phone: str, when: datetime | None) -> None:
        """Record that ``phone`` got a new SIM at ``when`` (None: no change on record)."""
        check_phone(phone)
        if when is not None and when.tzinfo is None:
            raise ValueError("when must carry a time zone (e.g. datetime(..., tzinfo=UTC))")
        with self._store.write() as conn:
            if when is None:
                conn.execute("DELETE FROM carrier_sim_change WHERE phone = ?", (phone,))
            else:
                conn.execute("INSERT INTO carrier_sim_change (phone, changed_at) VALUES (?, ?)"
                             " ON CONFLICT (phone) DO UPDATE SET changed_at = excluded.changed_at",
                             (phone, when.astimezone(UTC).isoformat()))

    async def _verify_token(self, *, token: str, phone: str, nonce: str) -> CarrierVerdict:
        await self._answer_delay()
        status, now = await self._store.off_loop(lambda: self._spend_now(token, phone))
        with self._lock:
            reference = f"SBXNV{self._random.getrandbits(64):016x}"
        unsigned = CarrierVerdict(
            phone=phone, token_digest=token_digest(token), nonce=nonce, status=status,
            checked_at=datetime.fromtimestamp(now, tz=UTC), carrier_reference=reference,
            alg=self._key.alg, key_id=self._key_id, signature=b"")
        return replace(unsigned, signature=self._key.sign(unsigned.signed_bytes()))

    async def _sim_change(self, *, phone: str, nonce: str) -> SimChangeReply:
        await self._answer_delay()
        changed_at, now = await self._store.off_loop(lambda: self._read_sim_change(phone))
        unsigned = SimChangeReply(
            phone=phone, nonce=nonce, changed_at=changed_at,
            checked_at=datetime.fromtimestamp(now, tz=UTC), alg=self._key.alg,
            key_id=self._key_id, signature=b"")
        return replace(unsigned, signature=self._key.sign(unsigned.signed_bytes()))

    async def _answer_delay(self) -> None:
        with self._lock:
            delay = self._latency_s * self._random.uniform(0.5, 1.5)
            failed = self._random.random() < self._failure_rate
        if delay:
            await self._sleep(delay)
        if failed:
            raise CarrierUnavailable("sandbox carrier: simulated outage; fall back to another"
                                     " login method or retry with a new token")

    def _load_or_create_signing_key(self) -> crypto.PrivateKey:
        # Every process sharing the state signs with one key, because the platform pins its
        # public key; the first process to start creates it.
        with self._store.write() as conn:
            row = conn.execute("SELECT value FROM carrier_meta WHERE name = 'signing_key'"
                               ).fetchone()
            if row is not None:
                return crypto.load_private_key(SIGNING_ALG, str(row[0]))
            key = crypto.generate_private_key(SIGNING_ALG)
            conn.execute("INSERT INTO carrier_meta (name, value) VALUES ('signing_key', ?)",
                         (key.private_pem(None),))
            return key

    def _new_token(self, conn: sqlite3.Connection) -> str:
        (issued,) = conn.execute(
            "INSERT INTO carrier_meta (name, value) VALUES ('tokens_issued', 1)"
            " ON CONFLICT (name) DO UPDATE SET value = value + 1 RETURNING value").fetchone()
        draw = random.Random(f"{self._token_seed}:{issued}")
        return f"sbxnt_{draw.getrandbits(128):032x}"

    def _spend_now(self, token: str, phone: str) -> tuple[VerdictStatus, float]:
        with self._store.write() as conn:
            now = self._clock()
            return self._spend(conn, token, phone, now), now

    @staticmethod
    def _spend(conn: sqlite3.Connection, token: str, phone: str,
               now: float) -> VerdictStatus:
        digest = token_digest(token)
        row = conn.execute("SELECT phone, expires_at, spent FROM carrier_token"
                           " WHERE token_digest = ?", (digest,)).fetchone()
        if row is None:
            return "unknown"
        issued_to, expires_at, spent = row
        if spent:
            return "used"
        conn.execute("UPDATE carrier_token SET spent = 1 WHERE token_digest = ?", (digest,))
        if now >= expires_at:
            return "expired"
        return "match" if issued_to == phone else "mismatch"

    def _read_sim_change(self, phone: str) -> tuple[datetime | None, float]:
        with self._store.read() as conn:
            row = conn.execute("SELECT changed_at FROM carrier_sim_change WHERE phone = ?",
                               (phone,)).fetchone()
            now = self._clock()
        return (None if row is None else datetime.fromisoformat(row[0])), now

    def _forget_old(self, conn: sqlite3.Connection, now: float) -> None:
        # Keep a token one more lifetime after it expires, so a late retry hears "used" or
        # "expired" rather than "unknown"; after that it is dropped to bound the state.
        conn.execute("DELETE FROM carrier_token WHERE expires_at <= ?", (now - self._ttl_s,))
