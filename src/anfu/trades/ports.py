"""What trades need from storage."""

from __future__ import annotations

from typing import Any, Protocol

from anfu.trades.model import Refund, Trade


class TradeStore(Protocol):
    def get(self, trade_no: str) -> Trade | None: ...

    def by_out_trade_no(self, merchant_id: str, out_trade_no: str) -> Trade | None: ...

    def insert(self, trade: Trade) -> None: ...

    def save(self, trade: Trade) -> None:
        """Write the fields listed in ``trade.changed``."""

    def refund(self, trade_no: str, out_refund_no: str) -> Refund | None: ...

    def insert_refund(self, refund: Refund) -> None: ...


class Outbox(Protocol):
    def add(self, *, merchant_id: str, trade_no: str | None, type: str,
            data: dict[str, Any], notify_url: str | None) -> str:
        """Record an event in the current transaction; returns its id."""


class JobStore(Protocol):
    def schedule(self, *, kind: str, ref: str, run_at: float) -> None:
        """A persisted timer; (kind, ref) is unique, so scheduling twice is harmless."""

    def due(self, now: float, limit: int) -> list[tuple[int, str, str]]:
        """(id, kind, ref) of pending jobs whose time has come."""

    def finish(self, job_id: int, result: str, now: float) -> bool:
        """Mark a pending job done; False if another worker already did."""
