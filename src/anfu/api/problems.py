"""RFC 9457 problem details: every error leaves the platform as
``application/problem+json`` with a stable ``code``, never a stack trace."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from anfu import errors
from anfu.identity.codes import SendLimited

log = logging.getLogger("anfu.api")

STATUS: list[tuple[type[errors.AnfuError], int]] = [
    (SendLimited, 429),
    (errors.Unprocessable, 422),
    (errors.InvalidRequest, 400),
    (errors.AuthenticationFailed, 401),
    (errors.InsufficientFunds, 402),
    (errors.Forbidden, 403),
    (errors.NotFound, 404),
    (errors.Conflict, 409),
    (errors.InvalidState, 409),
    (errors.UpstreamFailed, 502),
    (errors.Unavailable, 503),
]


def status_of(exc: errors.AnfuError) -> int:
    for cls, status in STATUS:
        if isinstance(exc, cls):
            return status
    return 400


ROUTINE_CHALLENGES = frozenset({"step_up_required", "txn_signature_required"})


def problem(status: int, code: str, title: str, detail: str,
            headers: dict[str, str] | None = None, extra: dict[str, Any] | None = None
            ) -> Response:
    body = {**(extra or {}), "type": f"https://anfu.dev/problems/{code}", "title": title,
            "status": status, "detail": detail, "code": code}
    return Response(orjson.dumps(body), status_code=status, headers=headers,
                    media_type="application/problem+json")


def problem_of(exc: errors.AnfuError) -> Response:
    status = status_of(exc)
    extra = dict(exc.extra)
    challenge = extra.pop("www_authenticate", None)
    headers = None
    if status == 401:
        headers = {"WWW-Authenticate": challenge or "ANFU-SIG-V1, Bearer, DPoP"}
    if status == 429 and "retry_after_s" in extra:
        headers = {"Retry-After": str(int(extra["retry_after_s"]))}  # RFC 9110 10.2.3
    return problem(status, exc.code, exc.title, exc.detail, headers, extra)


def install(app: FastAPI, zone: str, on_security_failure: Any = None) -> None:
    async def anfu_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, errors.AnfuError)
        if isinstance(exc, errors.AuthenticationFailed):
            # Asking for a step-up or a signature is the ordinary flow of a money move, not
            # something for an operator to look at: those go to INFO, real refusals to WARNING.
            level = logging.INFO if exc.code in ROUTINE_CHALLENGES else logging.WARNING
            log.log(level, "refused: %s", exc.detail,
                    extra={"zone": zone, "code": exc.code, "path": request.url.path})
            if on_security_failure is not None:
                on_security_failure(zone, exc.code)
        return problem_of(exc)

    async def invalid(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        problems = [{"loc": [str(p) for p in e.get("loc", ())], "msg": e.get("msg", ""),
                     "type": e.get("type", "")} for e in exc.errors()]
        first = problems[0] if problems else {"loc": [], "msg": "invalid"}
        where = ".".join(first["loc"][1:] if len(first["loc"]) > 1 else first["loc"])
        return problem(422, "validation_failed", "The request body or parameters are invalid",
                       f"{where}: {first['msg']}", extra={"errors": problems})

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        code = {404: "route_not_found", 405: "method_not_allowed"}.get(
            exc.status_code, f"http_{exc.status_code}")
        if exc.status_code == 400 and "parsing the body" in str(exc.detail):
            # FastAPI's answer to a body it cannot decode (not UTF-8, or not JSON at all)
            return problem(400, "body_not_utf8_json", "The body cannot be read",
                           "the request body must be JSON encoded in UTF-8 (RFC 8259)")
        # Keep the router's own headers: a 405 names the methods it serves (RFC 9110 15.5.6).
        return problem(exc.status_code, code, "Request failed", str(exc.detail),
                       headers=dict(exc.headers) if exc.headers else None)

    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s", request.url.path, extra={"zone": zone})
        return problem(500, "internal_error", "Internal error",
                       "the platform failed to handle this request; it was logged")

    app.add_exception_handler(errors.AnfuError, anfu_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)
