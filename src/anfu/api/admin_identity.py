"""Operators' view of authentication: the sandbox SMS outbox, the audit trail, a customer's
risk signals (SIM change, recent reset, devices), the auth policy, and unlocking."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from starlette.responses import Response

from anfu.adapters.sms import SandboxSmsGateway
from anfu.api.common import json_response
from anfu.bootstrap import Platform
from anfu.db.auth_store import SqlAuthStore
from anfu.db.factor_store import SqlFactorStore
from anfu.db.throttle_store import SqlThrottleStore
from anfu.db.user_store import SqlUserStore
from anfu.errors import InvalidRequest, NotFound
from anfu.identity.throttle import account_key


def build_router(platform: Platform, router: APIRouter) -> None:
    if platform.settings.sandbox_routes:  # ANFU_SANDBOX_ROUTES: never in production
        add_sandbox_outbox(platform, router)
    add_operator_routes(platform, router)


def add_sandbox_outbox(platform: Platform, router: APIRouter) -> None:
    @router.get("/sms/outbox", summary="Sandbox SMS gateway: the newest messages",
                tags=["sandbox"])
    async def sms_outbox(phone: str | None = Query(None, max_length=16),
                         limit: int = Query(20, ge=1, le=500)) -> Response:
        gateway = platform.sms
        if not isinstance(gateway, SandboxSmsGateway):
            raise InvalidRequest("only the sandbox SMS gateway keeps an outbox",
                                 code="sms_outbox_unavailable")
        messages = gateway.outbox(phone, limit)
        return json_response({"messages": [
            {"message_id": m.message_id, "phone": m.phone, "text": m.text,
             "sent_at": m.sent_at.isoformat(), "status": m.status, "segments": m.segments,
             "reason": m.reason} for m in messages]})


def add_operator_routes(platform: Platform, router: APIRouter) -> None:
    @router.get("/audit", summary="Authentication audit events, oldest first")
    async def audit(user_id: str | None = Query(None, max_length=32),
                    name: str | None = Query(None, max_length=64),
                    after: int = Query(0, ge=0),
                    limit: int = Query(100, ge=1, le=1000)) -> Response:
        rows = platform.read(lambda conn: SqlAuthStore(conn).audit_events(
            user_id=user_id, name=name, after=after, limit=limit))
        return json_response({"events": rows,
                              "next_after": rows[-1]["id"] if len(rows) == limit else None})

    @router.get("/users/{user_id}/signals", summary="A customer's authentication risk signals")
    async def signals(user_id: str) -> Response:
        def read(conn: Any) -> dict[str, Any]:
            user = SqlUserStore(conn).user(user_id)
            if user is None:
                raise NotFound(f"no customer {user_id}", code="user_not_found")
            factors = SqlFactorStore(conn)
            return {"user_id": user_id, "phone": user.phone,
                    **factors.account_extras(user_id),
                    "devices": [d.public() for d in factors.devices_of(user_id,
                                                                       active_only=False)],
                    "enrolled": sorted(factors.enrolled_methods(user_id))}

        facts = platform.read(read)
        changed = await platform.carrier.last_sim_change(facts["phone"])
        now = platform.clock()
        reset_until = facts["recently_reset_until"]
        return json_response({**facts,
                              "sim_changed_at": changed.isoformat() if changed else None,
                              "recently_reset": bool(reset_until and reset_until > now)})

    @router.post("/users/{user_id}/unlock", summary="Lift the lock on a customer's secrets")
    async def unlock(user_id: str) -> Response:
        def clear(uow: Any) -> None:
            store = SqlThrottleStore(uow.conn)
            for secret in ("password", "sms", "totp"):
                store.clear(account_key(secret, user_id))
            SqlAuthStore(uow.conn).audit("identity:account:unlocked", now=uow.now,
                                         user_id=user_id)

        await platform.write(clear)
        return json_response({"user_id": user_id, "unlocked": True})

    @router.get("/auth/policy", summary="The authentication policy in force")
    async def policy() -> Response:
        return json_response(platform.policy.describe())
