"""Transparency-log routes (RFC 9162-like, JSON, base64 hashes) and receipt routes.

- ``build_log_router(platform)``: ``/log/v1/get-sth``, ``get-sth-consistency``,
  ``get-proof-by-hash``, ``get-proof-by-index``, ``get-entries``; no authentication (mobile
  and merchant zones include it), so entries are served in their public form only: a
  committed entry's body and salt never leave through these routes.
- ``build_admin_router(platform)``: ``GET /v1/log/entries`` for auditors (admin zone, behind
  the operator check): the same leaves with each committed entry's body and salt.
- ``build_mobile_receipts_router`` / ``build_merchant_receipts_router``: ``GET
  /v1/receipts/{txn_id}`` for the owner only: 200 with the bundle, or 202 ``pending`` with
  ``Retry-After`` while the sequencer has not reached it.
- ``OperatorActionLog``: admin-zone middleware logging every successful mutating call."""

from __future__ import annotations

import base64
import binascii
import math
from typing import Any

from fastapi import APIRouter, Depends, Query
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from anfu.api.common import json_response
from anfu.bootstrap import Platform
from anfu.db.log_store import SqlLogStore, transparency_log
from anfu.errors import InvalidRequest, NotFound
from anfu.transparency.model import b64

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def build_log_router(platform: Platform) -> APIRouter:
    router = APIRouter(prefix="/log/v1", tags=["transparency log"])
    tlog = transparency_log(platform)

    @router.get("/get-sth", summary="The latest signed tree head")
    async def get_sth() -> Response:
        head = platform.read(tlog.latest)
        return json_response(head.public(), headers={"Cache-Control": "no-cache"})

    @router.get("/get-sth-consistency", summary="Consistency proof between two tree sizes")
    async def get_sth_consistency(first: int = Query(ge=1),
                                  second: int = Query(ge=1)) -> Response:
        return json_response(platform.read(lambda c: tlog.consistency(c, first, second)))

    @router.get("/get-proof-by-index", summary="Inclusion proof of a leaf by its index")
    async def get_proof_by_index(index: int = Query(ge=0),
                                 tree_size: int | None = Query(None, ge=1)) -> Response:
        return json_response(platform.read(lambda c: tlog.inclusion(c, index, tree_size)))

    @router.get("/get-proof-by-hash", summary="Inclusion proof of a leaf by its leaf hash")
    async def get_proof_by_hash(hash: str = Query(min_length=1, max_length=100),
                                tree_size: int | None = Query(None, ge=1)) -> Response:
        leaf = _leaf_hash_param(hash)

        def read(conn: Any) -> dict[str, Any]:
            size = tlog.signed_size(conn, tree_size)
            index = SqlLogStore(conn).leaf_index_of(leaf, size)
            if index is None:
                raise NotFound(f"no leaf with that hash in the tree of size {size}",
                               code="leaf_not_found")
            return tlog.inclusion(conn, index, size)

        return json_response(platform.read(read))

    @router.get("/get-entries", summary="Leaves start..end (inclusive, at most 1000)")
    async def get_entries(start: int = Query(ge=0), end: int = Query(ge=0)) -> Response:
        first, last = tlog.entries_page(start, end)
        rows = platform.read(lambda c: SqlLogStore(c).entries(first, last))
        return json_response({"entries": [
            {"leaf_index": r["leaf_index"], "kind": r["kind"],
             "leaf_input": b64(r["entry"].encode("utf-8"))} for r in rows]})

    return router


def build_admin_router(platform: Platform) -> APIRouter:
    """The auditors' view of the log (admin zone; the caller adds the operator check)."""
    router = APIRouter(prefix="/v1/log", tags=["transparency log"])
    tlog = transparency_log(platform)

    @router.get("/entries", summary="Leaves start..end (inclusive, at most 1000) with the"
                " private body and salt of each committed entry")
    async def audit_entries(start: int = Query(ge=0), end: int = Query(ge=0)) -> Response:
        rows = platform.read(lambda c: tlog.audit_page(c, start, end))
        return json_response({"entries": rows}, headers={"Cache-Control": "no-store"})

    return router


def _leaf_hash_param(value: str) -> bytes:
    try:
        raw = (bytes.fromhex(value) if len(value) == 64
               else base64.b64decode(value.replace(" ", "+"), validate=True))
    except (ValueError, binascii.Error):
        raw = b""
    if len(raw) != 32:
        raise InvalidRequest("hash must be a leaf hash: 32 bytes in base64 (or hex)",
                             code="leaf_hash_invalid")
    return raw


def _bundle_response(platform: Platform, bundle: dict[str, Any] | None) -> Response:
    if bundle is None:
        wait = max(1, math.ceil(platform.settings.log_sth_interval_s))
        return json_response({"status": "pending"}, 202, headers={"Retry-After": str(wait)})
    return json_response(bundle)


def build_mobile_receipts_router(platform: Platform, authenticator: Any,
                                 current: Any) -> APIRouter:
    """``current``: the zone's ``Depends(auth_dependency(authenticator))``."""
    router = APIRouter(prefix="/v1", tags=["receipts"])
    tlog = transparency_log(platform)

    @router.get("/receipts/{txn_id}", summary="The signed receipt of a payment, refund,"
                " transfer or withdrawal, with a tree head and its inclusion proof")
    async def receipt(txn_id: str, c: Any = current) -> Response:
        await authenticator.require(c, "wallet.read")
        user_id = c.user_id
        bundle = platform.read(lambda conn: tlog.receipt_bundle(
            conn, txn_id, lambda owner, _merchant: owner == user_id))
        return _bundle_response(platform, bundle)

    return router


def build_merchant_receipts_router(platform: Platform, signed: Any) -> APIRouter:
    """``signed``: the merchant zone's signed-request dependency (a callable)."""
    router = APIRouter(prefix="/v1", tags=["receipts"])
    tlog = transparency_log(platform)

    @router.get("/receipts/{txn_id}", summary="The signed receipt of one of this merchant's"
                " payments or refunds, with a tree head and its inclusion proof")
    async def receipt(txn_id: str, auth: Any = Depends(signed)) -> Response:
        merchant_id = auth.merchant_id
        bundle = platform.read(lambda conn: tlog.receipt_bundle(
            conn, txn_id, lambda _user, merchant: merchant == merchant_id))
        return _bundle_response(platform, bundle)

    return router


class OperatorActionLog:
    """Admin zone: every successful (2xx) POST/PUT/PATCH/DELETE enqueues an
    ``operator.action`` entry {method, path, status, operator} (one small write)."""

    def __init__(self, app: ASGIApp, platform: Platform, operator: str = "admin") -> None:
        self.app = app
        self.platform = platform
        self.operator = operator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in MUTATING:
            await self.app(scope, receive, send)
            return
        status = [0]

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            await send(message)

        await self.app(scope, receive, watch)
        if 200 <= status[0] < 300:
            body = {"method": scope["method"], "path": scope["path"], "status": status[0],
                    "operator": self.operator}
            await self.platform.write(lambda uow: SqlLogStore(uow.conn).enqueue(
                "operator.action", body, uow.now))
