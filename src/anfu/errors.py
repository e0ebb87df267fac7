"""Domain errors. Each carries a stable machine-readable ``code``; the HTTP edge maps the
error's family to a status (``api/problems.py``), so domain code never speaks HTTP."""

from __future__ import annotations

from typing import Any


class AnfuError(Exception):
    """Base of every error the platform reports to a caller."""

    code: str = "error"
    title: str = "Request failed"

    def __init__(self, detail: str, *, code: str | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code
        self.extra = extra


class InvalidRequest(AnfuError):
    code = "invalid_request"
    title = "The request is not valid"


class Unprocessable(InvalidRequest):
    """Well-formed, but a value breaks a rule of the platform (HTTP 422)."""

    code = "unprocessable"
    title = "The request cannot be processed"


class NotFound(AnfuError):
    code = "not_found"
    title = "Not found"


class Conflict(AnfuError):
    """The request contradicts an earlier one (same id or key, different content)."""

    code = "conflict"
    title = "Conflict with an earlier request"


class InvalidState(AnfuError):
    """The object exists but is not in a state that allows this operation."""

    code = "invalid_state"
    title = "Operation not allowed in the current state"


class InsufficientFunds(AnfuError):
    code = "insufficient_funds"
    title = "Insufficient funds"


class AuthenticationFailed(AnfuError):
    """A credential or signature check failed; ``code`` names the check."""

    code = "unauthenticated"
    title = "Authentication failed"


class Forbidden(AnfuError):
    code = "forbidden"
    title = "Not allowed"


class UpstreamFailed(AnfuError):
    """A party outside the platform (bank, SMS gateway) failed or refused."""

    code = "upstream_failed"
    title = "An outside party failed"


class Unavailable(AnfuError):
    code = "unavailable"
    title = "Temporarily unavailable"
