"""The one wiring point: builds every service of the platform from Settings."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine

from anfu import crypto
from anfu.adapters.bank import BankAdapter, SandboxBank
from anfu.adapters.carrier import CarrierAdapter, SandboxCarrier
from anfu.adapters.carrier.sandbox import default_state_path as carrier_state_path
from anfu.adapters.sms import SandboxSmsGateway, SmsGateway
from anfu.adapters.sms.sandbox import default_state_path as sms_state_path
from anfu.config import Settings
from anfu.crypto.keystore import PlatformKeyStore, close_keystore
from anfu.crypto.passwords import PasswordHasher
from anfu.crypto.tokens import TokenSigner
from anfu.db.engine import make_engine
from anfu.db.ledger_store import AccountIdCache
from anfu.db.uow import SqlUnitOfWork
from anfu.db.writer import Writer
from anfu.identity.assurance import AuthPolicy, load_policy
from anfu.keys import KeyRing, data_key, dev_secrets, open_keystore, open_rings
from anfu.observability import Metrics

T = TypeVar("T")
Clock = Callable[[], float]


@dataclass
class Platform:
    settings: Settings
    clock: Clock
    engine: Engine
    read_engine: Engine
    writer: Writer
    account_ids: AccountIdCache
    keys: KeyRing  # purpose "response"
    tokens: TokenSigner
    passwords: PasswordHasher
    hash_pool: ThreadPoolExecutor
    bank: BankAdapter
    key_cache: crypto.PublicKeyCache
    metrics: Metrics
    policy: AuthPolicy
    data_key: bytes
    sms: SmsGateway
    carrier: CarrierAdapter
    keystore: PlatformKeyStore
    receipt_keys: KeyRing
    log_keys: KeyRing
    extras: dict[str, Any] = field(default_factory=dict)

    def uow(self, conn: Connection) -> SqlUnitOfWork:
        return SqlUnitOfWork(conn, self.clock(), self.account_ids,
                             self.settings.idempotency_ttl_s)

    async def write(self, job: Callable[[SqlUnitOfWork], T]) -> T:
        return await self.writer.call(lambda conn: job(self.uow(conn)))

    def write_sync(self, job: Callable[[SqlUnitOfWork], T]) -> T:
        return self.writer.run(lambda conn: job(self.uow(conn)))

    def read(self, fn: Callable[[Connection], T]) -> T:
        with self.read_engine.connect() as conn:
            return fn(conn)

    def close(self) -> None:
        self.writer.stop()
        self.hash_pool.shutdown(wait=False)
        self.engine.dispose()
        self.read_engine.dispose()
        close_keystore(self.keystore)  # a PKCS#11 session is closed before a fork


def hash_pool(settings: Settings) -> ThreadPoolExecutor:
    """The Argon2id threads. Each verify takes a core for tens of milliseconds, so a login
    flood could starve payments of CPU: the threads run niced (``ANFU_HASH_NICE``), and
    there are ``ANFU_HASH_WORKERS`` of them per process (with one process per core, one each
    fills the machine)."""
    nice = settings.hash_nice

    def lower_priority() -> None:
        if nice and hasattr(os, "setpriority"):
            # Linux: PRIO_PROCESS with a thread id sets that one thread's niceness.
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)

    return ThreadPoolExecutor(max_workers=settings.hash_workers,
                              thread_name_prefix="anfu-argon2", initializer=lower_priority)


def build(settings: Settings, *, clock: Clock = time.time,
          bank: BankAdapter | None = None) -> Platform:
    settings.home.mkdir(parents=True, exist_ok=True)
    token_secret, passphrase = dev_secrets(settings)
    url = settings.resolved_database_url
    engine = make_engine(url, writer=True)
    read_engine = make_engine(url)
    metrics = Metrics()
    account_ids = AccountIdCache()
    # Platform keystore and key rings
    keystore = open_keystore(settings, passphrase)
    rings = open_rings(keystore, settings.home / "keys", passphrase=passphrase, clock=clock)

    writer = Writer(engine, max_batch=settings.group_commit_max,
                    wait_ms=settings.group_commit_wait_ms, on_batch=metrics.observe_batch,
                    listeners=(account_ids,),
                    lock_path=settings.home / "writer.lock" if settings.is_sqlite else None)
    writer.start()
    return Platform(
        settings=settings, clock=clock, engine=engine, read_engine=read_engine, writer=writer,
        account_ids=account_ids, keys=rings.response,
        keystore=keystore, receipt_keys=rings.receipt, log_keys=rings.log,
        tokens=TokenSigner(token_secret, clock),
        passwords=PasswordHasher(time_cost=settings.argon2_time_cost,
                                 memory_kib=settings.argon2_memory_kib,
                                 parallelism=settings.argon2_parallelism),
        hash_pool=hash_pool(settings),
        bank=bank or SandboxBank(latency_ms=settings.bank_latency_ms,
                                 failure_rate=settings.bank_failure_rate),
        key_cache=crypto.PublicKeyCache(), metrics=metrics,
        policy=load_policy(settings.auth_policy), data_key=data_key(settings),
        sms=SandboxSmsGateway(
            latency_ms=settings.sms_latency_ms, failure_rate=settings.sms_failure_rate,
            clock=clock, state_path=sms_state_path(settings.home)),
        carrier=SandboxCarrier(
            latency_ms=settings.carrier_latency_ms, clock=clock,
            state_path=carrier_state_path(settings.home)))
