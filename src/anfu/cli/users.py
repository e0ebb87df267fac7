"""``anfu users``: what an operator (or a call centre) does for a customer: look them up,
revoke a lost phone, lift a lock, read the authentication audit trail."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any

import typer

users_app = typer.Typer(help="Customers: devices, factors, locks and the audit trail.",
                        no_args_is_help=True)


def _open() -> Any:
    from anfu.cli.main import _platform

    return _platform()


def _resolve(conn: Any, who: str) -> Any:
    from anfu.db.user_store import SqlUserStore

    users = SqlUserStore(conn)
    user = users.user(who) or users.user_by_phone(who)
    if user is None:
        typer.echo(json.dumps({"error": "user_not_found", "detail": f"no customer {who}"}),
                   err=True)
        raise typer.Exit(1)
    return user


def _run(fn: Callable[[Any], Any]) -> Any:
    platform = _open()
    try:
        return fn(platform)
    finally:
        platform.close()


@users_app.command("show")
def show(who: Annotated[str, typer.Argument(help="user id or phone number")]) -> None:
    """A customer's devices, factors, sessions and risk signals, as JSON."""
    from anfu.db.auth_store import SqlAuthStore
    from anfu.db.factor_store import SqlFactorStore

    def read(conn: Any) -> dict[str, Any]:
        user = _resolve(conn, who)
        factors = SqlFactorStore(conn)
        return {"user_id": user.user_id, "phone": user.phone, "status": user.status,
                **factors.account_extras(user.user_id),
                "enrolled": sorted(factors.enrolled_methods(user.user_id)),
                "devices": [d.public() for d in factors.devices_of(user.user_id,
                                                                   active_only=False)],
                "live_sessions": len(SqlAuthStore(conn).sessions_of(user.user_id))}

    typer.echo(json.dumps(_run(lambda p: p.read(read)), indent=2))


@users_app.command("revoke-device")
def revoke_device(device_id: str,
                  reason: Annotated[str, typer.Option(help="kept in the audit trail")]
                  = "reported lost") -> None:
    """Revoke a device (a lost or stolen phone): its sessions end at once."""
    from anfu.db.auth_store import SqlAuthStore
    from anfu.db.factor_store import SqlFactorStore

    def job(uow: Any) -> dict[str, Any]:
        factors = SqlFactorStore(uow.conn)
        device = factors.device(device_id)
        if device is None:
            return {"error": "device_not_found", "detail": f"no device {device_id}"}
        revoked = factors.revoke_device(device_id, uow.now)
        ended = SqlAuthStore(uow.conn).revoke_sessions(reason="device_revoked", now=uow.now,
                                                       device_id=device_id)
        SqlAuthStore(uow.conn).audit("identity:device:revoked", now=uow.now,
                                     user_id=device.user_id, revoked_device_id=device_id,
                                     sessions_ended=ended, by="operator", reason=reason)
        return {"device_id": device_id, "user_id": device.user_id,
                "revoked": revoked or device.revoked_at is not None, "sessions_ended": ended}

    result = _run(lambda p: p.write_sync(job))
    if "error" in result:
        typer.echo(json.dumps(result), err=True)
        raise typer.Exit(1)
    typer.echo(json.dumps(result, indent=2))


@users_app.command("unlock")
def unlock(who: Annotated[str, typer.Argument(help="user id or phone number")]) -> None:
    """Lift the brute-force lock on a customer's password, SMS and TOTP codes (after
    checking who is asking)."""
    from anfu.db.auth_store import SqlAuthStore
    from anfu.db.throttle_store import SqlThrottleStore
    from anfu.identity.throttle import account_key

    def job(uow: Any) -> dict[str, Any]:
        user = _resolve(uow.conn, who)
        store = SqlThrottleStore(uow.conn)
        for secret in ("password", "sms", "totp"):
            store.clear(account_key(secret, user.user_id))
        SqlAuthStore(uow.conn).audit("identity:account:unlocked", now=uow.now,
                                     user_id=user.user_id, by="operator")
        return {"user_id": user.user_id, "unlocked": True}

    typer.echo(json.dumps(_run(lambda p: p.write_sync(job)), indent=2))


@users_app.command("audit")
def audit(who: Annotated[str | None, typer.Argument(help="user id or phone (all if none)")]
          = None,
          name: Annotated[str | None, typer.Option(help="e.g. identity:account:locked")] = None,
          after: Annotated[int, typer.Option(min=0, help="events after this id (paging)")] = 0,
          limit: Annotated[int, typer.Option(min=1, max=10000)] = 50) -> None:
    """Authentication audit events, oldest first, one JSON object per line; page with
    --after <the last id printed>."""
    from anfu.db.auth_store import SqlAuthStore

    def read(conn: Any) -> list[dict[str, Any]]:
        user_id = _resolve(conn, who).user_id if who else None
        return SqlAuthStore(conn).audit_events(user_id=user_id, name=name, after=after,
                                               limit=limit)

    for event in _run(lambda p: p.read(read)):
        typer.echo(json.dumps(event, ensure_ascii=False))
