"""Merchant zone: the request signature is checked over the raw body before anything parses
it. FastAPI decodes a JSON body before it runs any dependency, so with the signature check
as a plain dependency an unsigned request with a malformed body got a JSON parse error,
and every unsigned body was parsed. A route of this class runs the check first; the
dependency then finds the verified request in ``request.state`` instead of checking again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

from anfu.merchants.model import VerifiedRequest

SignatureCheck = Callable[[Request], Awaitable[VerifiedRequest]]
_STATE = "anfu_signed_request"


def depends_on(dependant: Dependant, call: Callable[..., Any]) -> bool:
    return any(d.call is call or depends_on(d, call) for d in dependant.dependencies)


def already_verified(request: Request) -> VerifiedRequest | None:
    found = getattr(request.state, _STATE, None)
    return found if isinstance(found, VerifiedRequest) else None


def remember_verified(request: Request, verified: VerifiedRequest) -> None:
    setattr(request.state, _STATE, verified)


def signed_first_route(check: SignatureCheck) -> type[APIRoute]:
    """An ``APIRoute`` class for routers whose routes depend on ``check``."""

    class SignedFirstRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()
            if self.body_field is None or not depends_on(self.dependant, check):
                return handler  # no body to parse: the dependency runs first anyway

            async def signature_first(request: Request) -> Response:
                await check(request)
                return await handler(request)

            return signature_first

    return SignedFirstRoute
