"""``anfu``: run the platform, migrate its database, manage merchants, drive a demo."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from anfu.cli.keys import keys_app
from anfu.cli.pki import pki_app
from anfu.cli.sandbox import carrier_app, sms_app
from anfu.cli.users import users_app
from anfu.cli.verify import verify_app
from anfu.config import Settings

if TYPE_CHECKING:
    from anfu.bootstrap import Platform

app = typer.Typer(help="anfu (安付): a self-hostable mobile payment platform.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
db_app = typer.Typer(help="Database schema migrations.", no_args_is_help=True)
merchants_app = typer.Typer(help="Register merchants and manage their signing keys.",
                            no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(merchants_app, name="merchants")
app.add_typer(sms_app, name="sms",
              help="Sandbox SMS gateway: read the outbox (the codes a phone would receive).")
app.add_typer(carrier_app, name="carrier",
              help="Sandbox mobile operator: network tokens and SIM changes for SIM login.")

T = TypeVar("T")
ALGS = "ed25519 | ecdsa-p256-sha256 | rsa-sha256 | sm2-sm3 | rsa-pss-sha256"


def _settings() -> Settings:
    try:
        return Settings()
    except ValueError as exc:
        typer.echo(f"configuration error: {exc}", err=True)
        raise typer.Exit(2) from exc


def _platform(settings: Settings | None = None) -> Platform:
    from anfu.bootstrap import build
    from anfu.db.migrate import upgrade

    settings = settings or _settings()
    settings.home.mkdir(parents=True, exist_ok=True)
    upgrade(settings.resolved_database_url)
    return build(settings)


def _write(job: Callable[[Any], T]) -> T:
    """Run one write job on a platform opened for this command; a refusal is printed as
    JSON ``{"error": code, "detail": …}`` with exit status 1."""
    from anfu.errors import AnfuError

    platform = _platform()
    try:
        return platform.write_sync(job)
    except AnfuError as exc:
        typer.echo(json.dumps({"error": exc.code, "detail": exc.detail}), err=True)
        raise typer.Exit(1) from exc
    finally:
        platform.close()


def _vet_notify_url(settings: Settings, url: str | None) -> None:
    """Where the URL leads, as the API checks it; a refusal is printed like ``_write``'s."""
    import asyncio

    from anfu.errors import AnfuError
    from anfu.notify.network import address_policy, vet_notify_url

    try:
        asyncio.run(vet_notify_url(url, address_policy(settings),
                                   timeout_s=settings.notify_timeout_s))
    except AnfuError as exc:
        typer.echo(json.dumps({"error": exc.code, "detail": exc.detail}), err=True)
        raise typer.Exit(1) from exc


def share_metrics_between_processes(folder: Path) -> None:
    """Before prometheus_client is first imported (it reads this at import): each worker
    process then keeps its counters in files under ``folder``, and /metrics adds them up."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)


@app.command()
def run(
    seed_demo: Annotated[bool, typer.Option(help="Create the demo merchant and customer")]
    = True,
    workers: Annotated[int, typer.Option(envvar="ANFU_WORKERS", min=1, max=64,
                                         help="Processes serving HTTP (one per core)")]
    = 1,
    tls: Annotated[bool, typer.Option("--tls", envvar="ANFU_TLS",
                                      help="Serve every listener over TLS 1.3 (1.2 minimum)"
                                      " with a certificate from the platform CA")] = False,
) -> None:
    """Start the mobile, merchant and admin listeners and the background worker.

    On first start this creates the database and platform keys under ANFU_HOME (var/), and,
    unless ANFU_ADMIN_TOKEN is set, the admin zone's bearer token (printed this once).
    """
    settings = _settings()
    if tls and not settings.tls:
        settings = settings.model_copy(update={"tls": True})
    if settings.merchant_mtls != "off" and not settings.tls:
        typer.echo("configuration error: ANFU_MERCHANT_MTLS needs TLS (anfu run --tls)",
                   err=True)
        raise typer.Exit(2)
    if workers > 1:  # before anything imports prometheus_client
        share_metrics_between_processes(settings.home / "metrics")

    from anfu.bootstrap import build
    from anfu.cli.demo import seed
    from anfu.observability import setup_logging
    from anfu.operator_credential import prepare
    from anfu.server import Listeners
    from anfu.server import run as serve_until_stopped

    setup_logging(settings.log_level, settings.log_json)
    platform = _platform(settings)  # migrations, keys and secrets exist before any fork
    try:
        if seed_demo:
            seed(platform)
        if settings.tls:  # one server certificate, made before any fork
            from anfu.errors import AnfuError
            from anfu.pki.service import ensure_server_certificate

            try:
                creds = ensure_server_certificate(platform)
            except AnfuError as exc:
                typer.echo(f"cannot serve TLS: {exc.detail}", err=True)
                raise typer.Exit(2) from exc
            typer.echo(f"     tls: {creds.cert_chain_pem}   (client CAs: {creds.client_ca_pem};"
                       f" merchant mTLS: {settings.merchant_mtls})")
    finally:
        platform.close()
    listeners = Listeners.bind(settings)
    scheme = "https" if settings.tls else "http"
    for zone, addr in (("mobile", settings.mobile_addr), ("merchant", settings.merchant_addr),
                       ("admin", settings.admin_addr)):
        typer.echo(f"{zone:>8} zone: {scheme}://{addr}"
                   f"   (OpenAPI: {scheme}://{addr}/openapi.json)")
    typer.echo(f"database: {settings.resolved_database_url}"
               + (f"   ({workers} worker processes)" if workers > 1 else ""))
    operator, announcement = prepare(settings)
    typer.echo(announcement)  # the terminal only: the JSON log never holds the token
    if settings.sandbox_routes:
        typer.echo("sandbox routes: ON (ANFU_SANDBOX_ROUTES; development only):"
                   " mobile /sandbox/carrier/network-token, admin /v1/sms/outbox")
    sys.stdout.flush()
    raise typer.Exit(serve_until_stopped(lambda: build(settings), listeners, workers=workers,
                                         operator=operator))


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Apply schema migrations up to REVISION (default: the newest)."""
    from anfu.db.migrate import upgrade

    settings = _settings()
    settings.home.mkdir(parents=True, exist_ok=True)
    upgrade(settings.resolved_database_url, revision)
    typer.echo(f"database at {revision}: {settings.resolved_database_url}")


@merchants_app.command("create")
def merchants_create(
    name: Annotated[str, typer.Option(help="Merchant's display name")],
    alg: Annotated[str, typer.Option(help=f"Signature algorithm: {ALGS}")],
    public_key: Annotated[Path, typer.Option(help="PEM file of the merchant's public key",
                                             exists=True, dir_okay=False)],
    notify_url: Annotated[str | None, typer.Option(help="Default URL for notifications")]
    = None,
    fee_bps: Annotated[int | None, typer.Option(help="Fee in basis points (60 = 0.6%)")]
    = None,
) -> None:
    """Register a merchant with its first public key; prints merchant_id and key_id."""
    from anfu.db.merchant_store import SqlMerchantStore
    from anfu.merchants import service

    settings = _settings()
    _vet_notify_url(settings, notify_url)
    fee = settings.default_fee_bps if fee_bps is None else fee_bps
    merchant, key = _write(lambda uow: service.create_merchant(
        SqlMerchantStore(uow.conn), name=name, alg=alg, public_key_pem=public_key.read_text(),
        notify_url=notify_url, fee_bps=fee, now=uow.now))
    typer.echo(json.dumps({**merchant.public(), "key_id": key.key_id, "alg": key.alg},
                          indent=2))


@merchants_app.command("list")
def merchants_list() -> None:
    """List merchants and their keys as JSON."""
    from anfu.db.merchant_store import SqlMerchantStore

    platform = _platform()
    try:
        def read(conn: object) -> list[dict[str, object]]:
            store = SqlMerchantStore(conn)  # type: ignore[arg-type]
            return [{**m.public(), "keys": [k.public() for k in store.keys_of(m.merchant_id)]}
                    for m in store.list_merchants()]

        typer.echo(json.dumps(platform.read(read), indent=2))
    finally:
        platform.close()


@merchants_app.command("add-key")
def merchants_add_key(
    merchant_id: Annotated[str, typer.Argument(help="The merchant's id")],
    alg: Annotated[str, typer.Option(help=f"Signature algorithm: {ALGS}")],
    public_key: Annotated[Path, typer.Option(help="PEM file of the new public key",
                                             exists=True, dir_okay=False)],
) -> None:
    """Add a signing key (rotation: the old key keeps working until revoked)."""
    from anfu.db.merchant_store import SqlMerchantStore
    from anfu.merchants import service

    key = _write(lambda uow: service.add_key(
        SqlMerchantStore(uow.conn), merchant_id=merchant_id, alg=alg,
        public_key_pem=public_key.read_text(), now=uow.now))
    typer.echo(json.dumps(key.public(), indent=2))


@merchants_app.command("revoke-key")
def merchants_revoke_key(
    merchant_id: Annotated[str, typer.Argument(help="The merchant's id")],
    key_id: Annotated[str, typer.Argument(help="The key to revoke")],
) -> None:
    """Revoke a key: requests signed with it fail at once."""
    from anfu.db.merchant_store import SqlMerchantStore
    from anfu.merchants import service

    key = _write(lambda uow: service.revoke_key(
        SqlMerchantStore(uow.conn), merchant_id=merchant_id, key_id=key_id, now=uow.now))
    typer.echo(json.dumps(key.public(), indent=2))


@app.command()
def demo(
    mobile_url: Annotated[str, typer.Option(help="Mobile zone base URL")] = "",
    merchant_url: Annotated[str, typer.Option(help="Merchant zone base URL")] = "",
) -> None:
    """Drive a complete escrow trade against a running platform, printing each step."""
    from anfu.cli.demo import drive

    settings = _settings()
    drive(settings, mobile_url or f"http://{settings.mobile_addr}",
          merchant_url or f"http://{settings.merchant_addr}")


admin_app = typer.Typer(help="The admin zone's operator credential.", no_args_is_help=True)
app.add_typer(admin_app, name="admin")


@admin_app.command("token")
def admin_token(
    rotate: Annotated[bool, typer.Option("--rotate", help="Make a new token; the old one"
                                         " stops working at once")] = False,
) -> None:
    """Show where the admin token comes from, or (--rotate) make a new one, printed once."""
    from anfu.operator_credential import ROTATE_HINT, digest_path
    from anfu.operator_credential import rotate as make_new

    settings = _settings()
    if not rotate:
        source = ("ANFU_ADMIN_TOKEN" if settings.admin_token is not None else
                  f"the bootstrap token, its SHA-256 in {digest_path(settings)}"
                  if digest_path(settings).exists() else "none yet: `anfu run` makes one")
        typer.echo(f"admin token: {source}; {ROTATE_HINT}")
        return
    token = make_new(settings)
    typer.echo(f"admin token: {token}   (shown this once; only its SHA-256 is kept, in"
               f" {digest_path(settings)}; a running platform takes it at once)")
    if settings.admin_token is not None:
        typer.echo("note: ANFU_ADMIN_TOKEN is set and wins while it is: unset it to use"
                   " this token", err=True)


auth_app = typer.Typer(help="Authentication: the policy in force.", no_args_is_help=True)
app.add_typer(auth_app, name="auth")
app.add_typer(users_app, name="users")
app.add_typer(keys_app, name="keys")
app.add_typer(verify_app, name="verify")
app.add_typer(pki_app, name="pki")


@auth_app.command("policy")
def auth_policy(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Print the assurance level each operation needs (ANFU_AUTH_POLICY or the built-in)."""
    import json

    from anfu.identity.assurance import load_policy

    policy = load_policy(_settings().auth_policy)
    if as_json:
        typer.echo(json.dumps(policy.describe(), indent=2))
        return
    typer.echo(f"policy: {policy.source}")
    ages = ", ".join(f"level {k}: {int(v)} s" for k, v in sorted(policy.max_age_s.items()))
    typer.echo(f"proofs count for: {ages}")
    for operation, level in sorted(policy.operations.items(), key=lambda kv: (kv[1], kv[0])):
        money = "  (+ amount and first-payee rules)" if operation in policy.money_operations \
            else ""
        typer.echo(f"  {level}  {operation}{money}")
    limits = ", ".join(f"{c} {v}" for c, v in sorted(policy.default_limits.items()))
    typer.echo(f"level {policy.first_time_payee_level} for a first-time payee; level 3 above:"
               f" {limits} (minor units); any other currency: {policy.unlisted_rule()}")
