"""Prepare a platform database for the HTTP benchmarks, in-process (not through HTTP).

One merchant, 64 funded customers and a pool of escrow trades waiting for payment, made with
the platform's own services through its writer (group commit), as the HTTP handlers would.

Each customer is what a logged-in phone looks like to the platform:

- a password hashed with Argon2id at the platform's default cost (the ``logins`` phase logs
  in with it);
- a device row (``SqlFactorStore.insert_device``) holding the public half of a generated
  ES256 ``DeviceKey``, reported as ``key_storage="hardware"``, not rooted, no emulator: a
  hardware-bound key, so proving it counts as ``hwk``;
- a session bound to that key (``SqlAuthStore.open_session`` with its ``jkt``) that proved
  ``{"pwd": t, "hwk": t}`` at prepare time ``t``: assurance level 3 for 300 s (what paying
  a first-time payee needs), then 2 for 12 h. Its access token is minted like the
  platform's own (``IdentityKit.tokens``: a jti, ``cnf.jkt``, ``ANFU_ACCESS_TOKEN_TTL_S``),
  and every request carries
  ``Authorization: DPoP <token>`` plus a one-time DPoP proof made by the device key;
- an unbound session, as a passkey login leaves it (``{"hwk": t, "uv": t}``, also level
  3), whose requests carry ``Authorization: Bearer <token>`` alone: the same pay path
  without DPoP, so its cost shows as a ratio.

``refresh`` stamps both sessions' proofs with the current time again (through a writer,
while the platform runs), so every measured phase starts at level 3, and mints new access
tokens (the platform's live at most 10 minutes), as a phone's refresh would.

The trades form one pool; each wrk run ``take``s the next trades, so no trade is paid twice.
The lines files for wrk are written just before each run by ``pay_lines``, ``wallet_lines``
and ``login_lines``: DPoP proofs carry ``iat``, and the platform accepts them for
``ANFU_DPOP_MAX_AGE_S`` (60 s by default) only."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, insert

from anfu import crypto
from anfu.bootstrap import Platform, build
from anfu.config import Settings
from anfu.crypto.jose import DeviceKey
from anfu.crypto.tokens import random_token
from anfu.db.auth_store import SqlAuthStore
from anfu.db.factor_store import SqlFactorStore
from anfu.db.merchant_store import SqlMerchantStore
from anfu.db.migrate import upgrade
from anfu.db.tables import jobs as job_table
from anfu.db.tables import trades as trade_table
from anfu.db.uow import SqlUnitOfWork, new_id
from anfu.db.user_store import SqlUserStore
from anfu.identity import service as identity
from anfu.identity.devices import Device, DeviceReport
from anfu.ledger import service as ledger
from anfu.ledger.model import AccountRef
from anfu.merchants import service as merchants
from anfu.trades import service as trades
from anfu.trades.model import TradeMode

T = TypeVar("T")
CUSTOMERS = 64
CURRENCY = "CNY"
TRADE_AMOUNT = 100  # 1.00 CNY in minor units
MAX_PAY_TIMEOUT_S = 15 * 86400
TIMERS = trades.TradeTimers(pay_timeout_s=900, confirm_timeout_s=864000,
                            max_pay_timeout_s=MAX_PAY_TIMEOUT_S)
FUNDS = 10**10  # per customer, minor units: enough for any top-up of the trade pool
PASSWORD = "bench-Korrekt-Pferd-7q"  # every bench customer's; the logins phase sends it
DEVICE_ALG = "ES256"  # what phone key stores (Secure Enclave, StrongBox) hold
DEVICE_REPORT = DeviceReport(name="Bench phone", app_id="cn.anfu.wallet", app_version="1.0.0",
                             app_cert_sha256="5e" * 32, os="Android 14", rooted=False,
                             emulator=False, key_storage="hardware")
_TRADE_COLUMNS = [c.name for c in trade_table.columns]


@dataclass
class Customer:
    user_id: str
    phone: str
    device_id: str
    key: DeviceKey
    dpop_session: str
    bearer_session: str
    dpop_token: str = ""
    bearer_token: str = ""


@dataclass
class Prepared:
    settings: Settings
    merchant_id: str
    customers: list[Customer]
    trade_numbers: list[str]
    seconds: float
    proved_at: float
    tokens_at: float
    trades_per_s: float = 0.0
    taken: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def left(self) -> int:
        return len(self.trade_numbers) - self.taken

    def take(self, count: int) -> list[str]:
        """The next ``count`` unpaid trades of the pool (fewer when it runs out)."""
        out = self.trade_numbers[self.taken:self.taken + count]
        self.taken += len(out)
        return out


def reset_postgres(url: str) -> None:
    """Empty a PostgreSQL database (as tests/support.py ``reset_database`` does)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    finally:
        engine.dispose()


def postgres_reachable(url: str) -> str | None:
    """None when the server answers, else the reason it does not."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # any failure means "skip this phase", with the reason
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    finally:
        engine.dispose()
    return None


def _merchant(platform: Platform) -> str:
    public_pem = crypto.generate_private_key("ed25519").public_key().public_pem()
    merchant, _key = platform.write_sync(lambda uow: merchants.create_merchant(
        SqlMerchantStore(uow.conn), name="Bench Shop", alg="ed25519",
        public_key_pem=public_pem, notify_url=None, fee_bps=60, now=uow.now))
    return merchant.merchant_id


def _customers(platform: Platform, funds: int, proved_at: float) -> list[Customer]:
    # Argon2id is slow on purpose: one hash, at the platform's cost, serves every customer.
    password_hash = platform.passwords.hash(PASSWORD)
    made: list[Customer] = []

    def create(c: Customer) -> Callable[[SqlUnitOfWork], None]:
        def job(uow: SqlUnitOfWork) -> None:
            identity.create_user(SqlUserStore(uow.conn), user_id=c.user_id, phone=c.phone,
                                 password_hash=password_hash, now=uow.now)
            ledger.transfer(uow.ledger, transfer_id=f"bench-fund-{c.user_id}",
                            debit=AccountRef.clearing("sandbox", CURRENCY),
                            credit=AccountRef.wallet(c.user_id, CURRENCY), amount=funds,
                            now=uow.now, description="bench funding")
            public = c.key.public
            SqlFactorStore(uow.conn).insert_device(Device(
                device_id=c.device_id, user_id=c.user_id, alg=public.alg,
                public_jwk=dict(public.jwk), jkt=public.jkt, report=DEVICE_REPORT.checked(),
                created_at=uow.now))
            store = SqlAuthStore(uow.conn)
            store.open_session(session_id=c.dpop_session, user_id=c.user_id,
                               proofs={"pwd": proved_at, "hwk": proved_at},
                               device_id=c.device_id, jkt=public.jkt,
                               client_address="127.0.0.1", now=uow.now)
            store.open_session(session_id=c.bearer_session, user_id=c.user_id,
                               proofs={"hwk": proved_at, "uv": proved_at}, device_id=None,
                               jkt=None, client_address="127.0.0.1", now=uow.now)
        return job

    # One at a time: the first creates the clearing account, the others reuse it.
    for i in range(CUSTOMERS):
        c = Customer(user_id=f"u{i:04d}", phone=f"+86139{i:08d}", device_id=new_id("d"),
                     key=DeviceKey.generate(DEVICE_ALG), dpop_session=new_id("s"),
                     bearer_session=new_id("s"))
        platform.write_sync(create(c))
        made.append(c)
    return made


def _mint_tokens(platform: Platform, customers: list[Customer]) -> float:
    """Access tokens as the platform's login and refresh mint them (``IdentityKit.tokens``:
    a jti, ``cnf.jkt`` when bound, the platform's lifetime); returns when they were made."""
    ttl = platform.settings.access_token_ttl_s
    for c in customers:
        c.dpop_token = platform.tokens.mint(
            {"sub": c.user_id, "sid": c.dpop_session, "jti": random_token(9),
             "cnf": {"jkt": c.key.public.jkt}}, ttl)
        c.bearer_token = platform.tokens.mint(
            {"sub": c.user_id, "sid": c.bearer_session, "jti": random_token(9)}, ttl)
    return time.time()


class _CollectingStores:
    """The storage a trade creation touches, collecting rows for one bulk insert instead of
    two statements per trade (the database is new, so no out_trade_no exists yet)."""

    def __init__(self, now: float) -> None:
        self.now = now
        self.trade_rows: list[dict[str, Any]] = []
        self.job_rows: list[dict[str, Any]] = []
        self.trades = self
        self.jobs = self

    def new_id(self, prefix: str) -> str:
        return new_id(prefix)

    def by_out_trade_no(self, merchant_id: str, out_trade_no: str) -> None:
        return None

    def insert(self, trade: Any) -> None:
        row = {name: getattr(trade, name) for name in _TRADE_COLUMNS}
        self.trade_rows.append({k: getattr(v, "value", v) for k, v in row.items()})
        trade.changed.clear()

    def schedule(self, *, kind: str, ref: str, run_at: float) -> None:
        self.job_rows.append({"kind": kind, "ref": ref, "run_at": run_at,
                              "status": "pending"})


def _trades(platform: Platform, merchant_id: str, count: int, first: int = 0) -> list[str]:
    """``count`` escrow trades made by ``trades.create_trade`` (the real use case: checks,
    trade number, expiry, pay-timeout timer), stored with bulk inserts."""
    terms = trades.MerchantTerms(merchant_id=merchant_id, fee_bps=60, notify_url=None)
    numbers: list[str] = []
    chunk = 5000
    for start in range(first, first + count, chunk):
        stores = _CollectingStores(platform.clock())
        for i in range(start, min(first + count, start + chunk)):
            request = trades.TradeRequest(
                out_trade_no=f"bench-{i}", amount=TRADE_AMOUNT, currency=CURRENCY,
                subject=f"bench order {i}", mode=TradeMode.ESCROW, notify_url=None,
                pay_expire_s=MAX_PAY_TIMEOUT_S - 60, request_hash="x")
            trade, _created = trades.create_trade(
                stores, merchant=terms, request=request,  # type: ignore[arg-type]
                timers=TIMERS, max_amount=10**12)
            numbers.append(trade.trade_no)

        def store(conn: Connection, stores: _CollectingStores = stores) -> None:
            conn.execute(insert(trade_table), stores.trade_rows)
            conn.execute(insert(job_table), stores.job_rows)

        platform.writer.run(store, timeout=600)
    return numbers


def prepare(*, home: Path, database_url: str, trades_count: int, settings: Settings,
            log: Callable[[str], None] = print) -> Prepared:
    """Migrate and fill the database at ``database_url`` (``settings`` must name the same
    home and database as the platform that will serve it)."""
    started = time.perf_counter()
    home.mkdir(parents=True, exist_ok=True)
    upgrade(settings.resolved_database_url)
    platform = build(settings)
    try:
        merchant_id = _merchant(platform)
        proved_at = time.time()
        customers = _customers(platform, funds=FUNDS, proved_at=proved_at)
        tokens_at = _mint_tokens(platform, customers)
        t0 = time.perf_counter()
        numbers = _trades(platform, merchant_id, trades_count)
        trade_s = max(time.perf_counter() - t0, 1e-6)
        log(f"  created {trades_count:,} trades in {trade_s:.1f} s"
            f" ({trades_count / trade_s:,.0f}/s), {CUSTOMERS} customers with a bound"
            f" {DEVICE_ALG} device key and two sessions each")
    finally:
        platform.close()
    return Prepared(settings=settings, merchant_id=merchant_id, customers=customers,
                    trade_numbers=numbers, seconds=time.perf_counter() - started,
                    proved_at=proved_at, tokens_at=tokens_at,
                    trades_per_s=trades_count / trade_s)


def add_trades(prepared: Prepared, count: int, log: Callable[[str], None] = print) -> None:
    """Top the pool up with ``count`` more trades (the platform must be stopped)."""
    platform = build(prepared.settings)
    try:
        t0 = time.perf_counter()
        prepared.trade_numbers += _trades(platform, prepared.merchant_id, count,
                                          first=len(prepared.trade_numbers))
        log(f"  created {count:,} more trades in {time.perf_counter() - t0:.1f} s")
    finally:
        platform.close()


def refresh(prepared: Prepared, *, proofs: bool, tokens: bool) -> None:
    """While the platform may be running (through a writer of its own, which queues on the
    platform's writer lock): with ``proofs``, stamp every bench session's proofs with the
    time now, as answering a step-up would; with ``tokens``, mint new access tokens, as a
    phone's refresh does every ``ANFU_ACCESS_TOKEN_TTL_S``."""
    platform = build(prepared.settings)
    try:
        if proofs:
            now = time.time()

            def stamp(uow: SqlUnitOfWork) -> None:
                store = SqlAuthStore(uow.conn)
                for c in prepared.customers:
                    store.add_session_proofs(c.dpop_session, {"pwd": now, "hwk": now})
                    store.add_session_proofs(c.bearer_session, {"hwk": now, "uv": now})

            platform.write_sync(stamp)
            prepared.proved_at = now
        if tokens:
            prepared.tokens_at = _mint_tokens(platform, prepared.customers)
    finally:
        platform.close()


def pay_lines(prepared: Prepared, path: Path, count: int, variant: str,
              base_url: str) -> tuple[Path, int]:
    """``count`` lines ``<scheme> <token> <trade_no> <DPoP proof or ->``, one trade each,
    round-robin over the customers; the proofs are made now (their ``iat``)."""
    numbers = prepared.take(count)
    with path.open("w") as out:
        for i, trade_no in enumerate(numbers):
            c = prepared.customers[i % CUSTOMERS]
            if variant == "dpop":
                proof = c.key.dpop_proof("POST", f"{base_url}/v1/trades/{trade_no}/pay",
                                         access_token=c.dpop_token)
                out.write(f"DPoP {c.dpop_token} {trade_no} {proof}\n")
            else:
                out.write(f"Bearer {c.bearer_token} {trade_no} -\n")
    return path, len(numbers)


def wallet_lines(prepared: Prepared, path: Path, count: int, variant: str,
                 base_url: str) -> Path:
    """``count`` lines ``<scheme> <token> <DPoP proof or ->`` for ``GET /v1/wallet``."""
    url = f"{base_url}/v1/wallet"
    with path.open("w") as out:
        for i in range(count):
            c = prepared.customers[i % CUSTOMERS]
            if variant == "dpop":
                proof = c.key.dpop_proof("GET", url, access_token=c.dpop_token)
                out.write(f"DPoP {c.dpop_token} {proof}\n")
            else:
                out.write(f"Bearer {c.bearer_token} -\n")
    return path


def login_lines(prepared: Prepared, path: Path) -> Path:
    """``<phone> <device_id>`` per customer: a returning customer on their bound phone."""
    with path.open("w") as out:
        for c in prepared.customers:
            out.write(f"{c.phone} {c.device_id}\n")
    return path
