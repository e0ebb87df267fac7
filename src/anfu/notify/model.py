"""Delivery rules: the first attempt goes out at once, then one retry after each delay of the
schedule (``ANFU_NOTIFY_SCHEDULE``, Alipay's by default); a 2xx reply ends delivery."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson


@dataclass(frozen=True, slots=True)
class Outcome:
    status: str                  # delivered | pending | failed
    next_attempt_at: float | None


def after_attempt(*, attempts_done: int, succeeded: bool, now: float,
                  schedule: tuple[int, ...]) -> Outcome:
    if succeeded:
        return Outcome("delivered", None)
    if attempts_done > len(schedule):
        return Outcome("failed", None)
    return Outcome("pending", now + schedule[attempts_done - 1])


def event_body(*, event_id: str, type_: str, created_at: float, data: str) -> bytes:
    """The exact bytes POSTed to the merchant (and hashed into the signature)."""
    payload: dict[str, Any] = {"id": event_id, "type": type_, "created_at": created_at,
                               "data": orjson.loads(data)}
    return orjson.dumps(payload)
