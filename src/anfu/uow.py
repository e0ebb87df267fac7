"""The unit of work every use case runs in: one database transaction holding the ledger,
the state change, the outbox event and the idempotency record together. Built by ``db/``;
domain code sees only these Protocols."""

from __future__ import annotations

from typing import Protocol

from anfu.ledger.ports import LedgerStore
from anfu.trades.ports import JobStore, Outbox, TradeStore

IN_PROGRESS = 0  # the status code of a reserved key whose answer is not known yet


class IdempotencyStore(Protocol):
    def find(self, scope: str, key: str) -> tuple[str, int, str] | None:
        """(request_hash, status_code, response_body) of an earlier call, if kept."""

    def reserve(self, scope: str, key: str, request_hash: str) -> None:
        """Bind ``key`` to this request before an outside party is called, so that the same
        key with another request is refused while the first is still in flight."""

    def save(self, scope: str, key: str, request_hash: str, status_code: int,
             body: str) -> None:
        """Keep the answer (replacing this key's reservation, if any)."""


class UnitOfWork(Protocol):
    @property
    def now(self) -> float:
        """The clock reading for this unit of work (injected, so tests can move time)."""

    @property
    def ledger(self) -> LedgerStore: ...

    @property
    def trades(self) -> TradeStore: ...

    @property
    def outbox(self) -> Outbox: ...

    @property
    def jobs(self) -> JobStore: ...

    @property
    def idempotency(self) -> IdempotencyStore: ...

    def new_id(self, prefix: str) -> str: ...
