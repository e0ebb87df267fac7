"""Prepare a platform database for the pay-path benchmark, in-process (not through HTTP).

One merchant, 64 funded customers with access tokens, and N escrow trades waiting for
payment. The trades are split into named sets (warm-up, measured, profile) written as
``<token> <trade_no>`` lines, one file per set, so that every request of a wrk run pays a
different trade. Everything goes through the platform's own services and its writer (group
commit), exactly as the HTTP handlers would do it."""

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
from anfu.db.merchant_store import SqlMerchantStore
from anfu.db.migrate import upgrade
from anfu.db.tables import jobs as job_table
from anfu.db.tables import trades as trade_table
from anfu.db.uow import SqlUnitOfWork, new_id
from anfu.db.user_store import SqlUserStore
from anfu.identity import service as identity
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
TOKEN_TTL_S = 3600
_TRADE_COLUMNS = [c.name for c in trade_table.columns]


@dataclass
class Prepared:
    merchant_id: str
    users: list[str]
    files: dict[str, Path]
    counts: dict[str, int]
    seconds: float
    trades_per_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


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


def _customers(platform: Platform, tag: str, funds: int) -> list[str]:
    # Argon2id is slow on purpose; nobody logs in here, so one hash serves every customer.
    password_hash = platform.passwords.hash("bench-password-not-used")
    users = [f"u{tag}{i:04d}" for i in range(CUSTOMERS)]

    def create(user_id: str, i: int) -> Callable[[SqlUnitOfWork], None]:
        def job(uow: SqlUnitOfWork) -> None:
            identity.create_user(SqlUserStore(uow.conn), user_id=user_id,
                                 phone=f"+86139{i:08d}", password_hash=password_hash,
                                 now=uow.now)
            ledger.transfer(uow.ledger, transfer_id=f"bench-fund-{user_id}",
                            debit=AccountRef.clearing("sandbox", CURRENCY),
                            credit=AccountRef.wallet(user_id, CURRENCY), amount=funds,
                            now=uow.now, description="bench funding")
        return job

    # One at a time: the first creates the clearing account, the others reuse it.
    for i, user_id in enumerate(users):
        platform.write_sync(create(user_id, i))
    return users


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


def _trades(platform: Platform, merchant_id: str, count: int) -> list[str]:
    """``count`` escrow trades made by ``trades.create_trade`` (the real use case: checks,
    trade number, expiry, pay-timeout timer), stored with bulk inserts."""
    terms = trades.MerchantTerms(merchant_id=merchant_id, fee_bps=60, notify_url=None)
    numbers: list[str] = []
    chunk = 5000
    for start in range(0, count, chunk):
        stores = _CollectingStores(platform.clock())
        for i in range(start, min(count, start + chunk)):
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


def prepare(*, home: Path, database_url: str, sets: dict[str, int],
            log: Callable[[str], None] = print) -> Prepared:
    """Migrate and fill the database at ``database_url``; write one lines file per set."""
    started = time.perf_counter()
    home.mkdir(parents=True, exist_ok=True)
    settings = Settings(home=home, database_url=database_url, log_level="WARNING")
    upgrade(settings.resolved_database_url)
    platform = build(settings)
    try:
        total = sum(sets.values())
        per_customer = -(-total // CUSTOMERS) + 1
        merchant_id = _merchant(platform)
        users = _customers(platform, "", funds=TRADE_AMOUNT * per_customer * 2)
        tokens = [platform.tokens.mint({"sub": u, "sid": "bench"}, TOKEN_TTL_S) for u in users]
        t0 = time.perf_counter()
        numbers = _trades(platform, merchant_id, total)
        trade_s = time.perf_counter() - t0
        log(f"  created {total} trades in {trade_s:.1f} s ({total / trade_s:,.0f}/s)")
    finally:
        platform.close()
    files: dict[str, Path] = {}
    offset = 0
    for name, count in sets.items():
        path = home / f"{name}.lines"
        with path.open("w") as out:
            for i in range(offset, offset + count):
                out.write(f"{tokens[i % CUSTOMERS]} {numbers[i]}\n")
        files[name] = path
        offset += count
    return Prepared(merchant_id=merchant_id, users=users, files=files, counts=dict(sets),
                    seconds=time.perf_counter() - started, trades_per_s=total / trade_s)
