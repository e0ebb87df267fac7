"""Receipts and ledger seals through the real platform: every signed payment, transfer,
withdrawal and refund gets a receipt the customer can check offline against the published
keys and the transparency log; the ledger is sealed into the same log."""

from __future__ import annotations

import json
import secrets
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from anfu.sdk import MerchantClient, WalletClient
from tests.support import RunningPlatform, create_merchant, eventually, new_customer, start_platform

Json = dict[str, Any]


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    running = start_platform(tmp_path_factory.mktemp("receipts"),
                             ANFU_LOG_STH_INTERVAL_S="0.2")
    yield running
    running.stop()


def anfu(platform: RunningPlatform, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "anfu.cli", *args], capture_output=True,
                          text=True, env=platform.env, timeout=120, check=False)


def shop(platform: RunningPlatform) -> MerchantClient:
    m = create_merchant(platform.admin, name="Lotus Tea House")
    return MerchantClient(platform.merchant, m.merchant_id, m.key_id, m.alg, m.private_key_pem)


def test_a_signed_payment_gets_a_receipt_checked_offline(platform: RunningPlatform,
                                                        tmp_path: Path) -> None:
    buyer: WalletClient = new_customer(platform, amount=50_000)
    buyer.request_certificate()
    buyer.raise_assurance(3)
    merchant = shop(platform)
    trade = merchant.create_trade(out_trade_no="o" + secrets.token_hex(6), amount=1200,
                                  currency="CNY", subject="oolong", mode="direct")
    buyer.pay(trade["trade_no"])
    bundle = buyer.verified_receipt(trade["trade_no"])
    receipt = bundle["receipt"]
    assert receipt["kind"] == "payment" and receipt["amount"] == 1200
    evidence = httpx.get(f"{platform.admin}/v1/txn-evidence/{trade['trade_no']}",
                         headers=platform.admin_headers).json()
    assert receipt["device_signature_sha256"] == evidence["signature_sha256"]
    assert receipt["transaction"]["certificate_serial"] == evidence["certificate_serial"]
    # The merchant reads the same receipt through the signed API.
    assert merchant.receipt(trade["trade_no"])["receipt"] == receipt
    # Offline: the saved bundle and the saved published keys are all it takes.
    (tmp_path / "receipt.json").write_text(json.dumps(bundle))
    (tmp_path / "keys.json").write_text(json.dumps({"keys": buyer.platform_keys()}))
    ok = anfu(platform, "verify", "receipt", str(tmp_path / "receipt.json"), "--keys",
              str(tmp_path / "keys.json"))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "ok inclusion_proof" in ok.stdout
    bundle["receipt"]["amount"] = 12
    (tmp_path / "forged.json").write_text(json.dumps(bundle))
    bad = anfu(platform, "verify", "receipt", str(tmp_path / "forged.json"), "--keys",
               str(tmp_path / "keys.json"))
    assert bad.returncode == 1 and bad.stdout.startswith("FAILED receipt_"), bad.stdout


def test_transfers_withdrawals_and_refunds_get_receipts(platform: RunningPlatform) -> None:
    payer: WalletClient = new_customer(platform, amount=50_000)
    payee: WalletClient = new_customer(platform)
    sent = payer.transfer(700, "CNY", to_user_id=payee.user_id)
    out = payer.withdraw(300, "CNY")
    merchant = shop(platform)
    trade = merchant.create_trade(out_trade_no="o" + secrets.token_hex(6), amount=900,
                                  currency="CNY", subject="tea", mode="direct")
    payer.pay(trade["trade_no"])
    refund = merchant.refund(trade["trade_no"], out_refund_no="r1", amount=400)
    kinds = {payer.verified_receipt(sent["transfer_no"])["receipt"]["kind"],
             payer.verified_receipt(out["id"])["receipt"]["kind"],
             payer.verified_receipt(refund["refund"]["refund_no"])["receipt"]["kind"]}
    assert kinds == {"transfer", "withdrawal", "refund"}
    # Only its owner reads a receipt.
    other: WalletClient = new_customer(platform)
    reply = httpx.get(f"{platform.mobile}/v1/receipts/{sent['transfer_no']}",
                      headers=other.auth_headers("GET", f"/v1/receipts/{sent['transfer_no']}"))
    assert reply.status_code == 404


def test_the_ledger_is_sealed_into_the_log_and_checked(platform: RunningPlatform) -> None:
    payer: WalletClient = new_customer(platform, amount=10_000)
    payer.topup(500, "CNY")

    def sealed() -> list[Json]:
        size = httpx.get(f"{platform.mobile}/log/v1/get-sth").json()["tree_size"]
        entries = httpx.get(f"{platform.mobile}/log/v1/get-entries",
                            params={"start": 0, "end": size - 1}).json()["entries"]
        return [e for e in entries if e.get("kind") == "ledger.batch"]

    batches = eventually(sealed, timeout=30)
    assert batches
    ok = anfu(platform, "verify", "ledger")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    if not platform.env.get("ANFU_DATABASE_URL", "").startswith("sqlite"):
        return
    # An insider edits a sealed transfer: the seal no longer matches.
    db = sqlite3.connect(platform.env["ANFU_DATABASE_URL"].removeprefix("sqlite:///"))
    with db:
        db.execute("UPDATE transfers SET amount = amount + 1 WHERE seq = 1")
    db.close()
    bad = anfu(platform, "verify", "ledger")
    assert bad.returncode == 1 and "seal 1" in bad.stdout, bad.stdout
