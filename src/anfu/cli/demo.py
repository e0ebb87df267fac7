"""The demo merchant and customer (seeded by ``anfu run``) and ``anfu demo``, which drives a
complete escrow trade through the real listeners with the SDK."""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

import typer

from anfu import crypto
from anfu.bootstrap import Platform
from anfu.config import Settings
from anfu.crypto.sandbox_keystore import SandboxKeystore, sandbox_keystore_folder
from anfu.db.merchant_store import SqlMerchantStore
from anfu.db.uow import new_id
from anfu.db.user_store import SqlUserStore
from anfu.identity import service as identity
from anfu.ledger import service as ledger
from anfu.ledger.model import AccountRef
from anfu.merchants import service as merchants

DEMO_PHONE = "13800138000"
DEMO_FUNDS = 100_000  # 1,000.00 CNY


def seed(platform: Platform) -> dict[str, Any]:
    folder = platform.settings.home / "demo"
    path = folder / "credentials.json"
    if path.exists():
        creds: dict[str, Any] = json.loads(path.read_text())
        if platform.read(lambda c: SqlMerchantStore(c).merchant(creds["merchant_id"])):
            _print(creds, path)
            return creds
    folder.mkdir(parents=True, exist_ok=True)
    key = crypto.generate_private_key("ed25519")
    password = secrets.token_urlsafe(12)
    password_hash = platform.passwords.hash(password)

    def job(uow: Any) -> dict[str, Any]:
        merchant, mkey = merchants.create_merchant(
            SqlMerchantStore(uow.conn), name="Demo Shop", alg="ed25519",
            public_key_pem=key.public_key().public_pem(), notify_url=None,
            fee_bps=platform.settings.default_fee_bps, now=uow.now)
        users = SqlUserStore(uow.conn)
        user = users.user_by_phone(DEMO_PHONE) or identity.create_user(
            users, user_id=new_id("u"), phone=DEMO_PHONE, password_hash=password_hash,
            now=uow.now)
        if user.password_hash != password_hash:
            users.set_password_hash(user.user_id, password_hash)
        ledger.transfer(uow.ledger, transfer_id=f"demo-funding:{user.user_id}:{uow.now}",
                        debit=AccountRef.clearing("sandbox", "CNY"),
                        credit=AccountRef.wallet(user.user_id, "CNY"), amount=DEMO_FUNDS,
                        now=uow.now, description="demo funding (sandbox bank)")
        return {"merchant_id": merchant.merchant_id, "key_id": mkey.key_id, "alg": "ed25519",
                "private_key_pem": key.private_pem(None), "customer_phone": DEMO_PHONE,
                "customer_password": password, "customer_user_id": user.user_id}

    creds = platform.write_sync(job)
    path.write_text(json.dumps(creds, indent=2))
    path.chmod(0o600)
    _print(creds, path)
    return creds


def _print(creds: dict[str, Any], path: Any) -> None:
    """What ``anfu run`` prints about the demo: never the password, because whatever the
    run prints ends up in its log; ``anfu demo`` shows it to the person at the terminal."""
    typer.echo(f"demo merchant: {creds['merchant_id']} key {creds['key_id']} (ed25519;"
               f" private key in {path})")
    typer.echo(f"demo customer: phone {creds['customer_phone']} (password in {path};"
               " `anfu demo` shows it)")


def drive(settings: Settings, mobile_url: str, merchant_url: str) -> None:
    from anfu.sdk import MerchantClient, WalletClient

    path = settings.home / "demo" / "credentials.json"
    if not path.exists():
        typer.echo(f"no demo credentials at {path}: start the platform with `anfu run`"
                   " first", err=True)
        raise typer.Exit(1)
    creds = json.loads(path.read_text())
    typer.echo(f"demo customer: phone {creds['customer_phone']} password"
               f" {creds['customer_password']}   (from {path})")
    shop = MerchantClient(merchant_url, creds["merchant_id"], creds["key_id"], creds["alg"],
                          creds["private_key_pem"])
    phone = creds["customer_phone"]
    sources: dict[str, Any] = {
        "sms_code": lambda challenge: _sandbox_code(settings, phone),
        "password": lambda challenge: str(creds["customer_password"])}
    keystore = settings.home / "demo" / "device.json"
    passphrase = str(creds["customer_password"]).encode()
    # The phone keeps its key between runs: a second run logs in with it, not with an SMS.
    def step(title: str, payload: Any) -> None:
        typer.echo(f"\n== {title}")
        typer.echo(json.dumps(payload, indent=2, ensure_ascii=False))

    def approve(transaction: dict[str, Any]) -> bool:
        step("3a. the phone shows what it is asked to sign; the customer confirms", transaction)
        return True

    sources["approve_transaction"] = approve
    buyer = (WalletClient.from_keystore(mobile_url, keystore, passphrase, **sources)
             if keystore.exists() else WalletClient(mobile_url, **sources))

    out_trade_no = f"demo-{int(time.time())}-{secrets.token_hex(3)}"
    trade = shop.create_trade(out_trade_no=out_trade_no, amount=2300, currency="CNY",
                              subject="BEST TRANSPORT: one parcel", mode="escrow")
    step("1. merchant creates an escrow trade (signed request, signed response verified)",
         {k: trade[k] for k in ("trade_no", "out_trade_no", "amount", "currency", "status")})
    first_time = buyer.device_id is None
    session = buyer.login(phone, creds["customer_password"])
    step("2. customer logs in: password + " + (
        "SMS code (a new phone; the code read from the sandbox outbox)" if first_time
        else "the phone's bound key (no SMS)"),
        {k: session[k] for k in ("acr", "amr", "token_type")})
    if first_time:
        # The phone's Keystore attests the key (the sandbox Keystore of this ANFU_HOME, which
        # the platform trusts with the sandbox routes on): a hardware-bound key, level 3.
        phone_keystore = SandboxKeystore.in_folder(sandbox_keystore_folder(settings.home))
        device = buyer.bind_device("demo phone", key_storage="hardware", keystore=keystore,
                                   passphrase=passphrase, attest=phone_keystore.attest)
        step("2b. the phone binds its key (kept encrypted in var/demo/device.json): every"
             " request now carries a DPoP proof",
             {k: device[k] for k in ("device_id", "alg", "jkt", "hardware_bound")})
    certificate = buyer.request_certificate()
    step("2c. the phone gets a device certificate from the platform CA (a CSR signed by its"
         " key; renewed on every run)",
         {k: certificate.get(k) for k in ("serial", "profile", "not_after", "ocsp_url")})
    step("2d. wallet before paying", buyer.wallet())
    paid = buyer.pay(trade["trade_no"])
    step("3. customer pays, the payment signed by the phone's certified key; money held in"
         " escrow" + (
             " (a first-time payee needs level 3: the step-up was answered by the device key)"
             if first_time else " (the login with the hardware-bound key gave level 3)"),
         {"status": paid["status"], "acr": buyer.me()["acr"]})
    shipped = shop.ship(trade["trade_no"])
    step("4. merchant ships", {"status": shipped["status"]})
    done = buyer.confirm(trade["trade_no"])
    step("5. customer confirms receipt: escrow settles to the merchant minus the fee",
         {k: done[k] for k in ("status", "settled_amount", "fee_amount")})
    step("6. merchant balance", shop.balance())
    step("7. customer wallet after", buyer.wallet())
    events = shop.events(trade_no=trade["trade_no"])
    step("8. events written for this trade", [e["type"] for e in events["events"]])
    keys = buyer.platform_keys()
    bundle = buyer.verified_receipt(trade["trade_no"], keys=keys)
    receipt_path = settings.home / "demo" / "receipt.json"
    keys_path = settings.home / "demo" / "platform-keys.json"
    receipt_path.write_text(json.dumps(bundle, indent=2))
    keys_path.write_text(json.dumps({"keys": keys}, indent=2))
    receipt = bundle["receipt"]
    step(f"9. the platform's signed receipt, checked against the transparency log; saved,"
         f" with the platform's keys, for `anfu verify receipt {receipt_path} --keys"
         f" {keys_path}`",
         {k: receipt[k] for k in ("kind", "txn_id", "amount", "currency",
                                  "device_signature_sha256", "leaf_index", "key_id")})


def _sandbox_code(settings: Settings, phone: str) -> str:
    """What the customer reads on the phone: here, the sandbox SMS gateway's outbox."""
    import re

    from anfu.adapters.sms.sandbox import SandboxSmsGateway, default_state_path

    messages = SandboxSmsGateway(state_path=default_state_path(settings.home)).outbox(phone, 1)
    found = re.search(r"\b(\d{6})\b", messages[0].text) if messages else None
    if found is None:
        typer.echo("no SMS code found in the sandbox outbox", err=True)
        raise typer.Exit(1)
    return found.group(1)
