"""SQL storage of the brute-force throttle (identity/throttle.py), shared by every process."""

from __future__ import annotations

from sqlalchemy import Connection

from anfu.db.raw import Raw
from anfu.identity.throttle import FailureState

_LOAD = ("SELECT failures, last_failure, locked_until, lockouts FROM throttle_state"
         " WHERE key = :k")
_SAVE = ("INSERT INTO throttle_state (key, failures, last_failure, locked_until, lockouts)"
         " VALUES (:k, :f, :lf, :lu, :lo) ON CONFLICT (key) DO UPDATE SET failures = :f,"
         " last_failure = :lf, locked_until = :lu, lockouts = :lo")
_CLEAR = "DELETE FROM throttle_state WHERE key = :k"


class SqlThrottleStore:
    def __init__(self, conn: Connection) -> None:
        self._sql = Raw(conn)

    def load(self, key: str) -> FailureState | None:
        row = self._sql.row(_LOAD, {"k": key})
        return None if row is None else FailureState(**row)

    def save(self, key: str, state: FailureState) -> None:
        self._sql.run(_SAVE, {"k": key, "f": state.failures, "lf": state.last_failure,
                              "lu": state.locked_until, "lo": state.lockouts})

    def clear(self, key: str) -> None:
        self._sql.run(_CLEAR, {"k": key})
