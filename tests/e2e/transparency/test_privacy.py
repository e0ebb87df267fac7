"""Transparency log privacy through a real platform: anyone may read the log, but its money
entries are salted commitments, so an anonymous reader of ``get-entries`` learns no user,
merchant, amount, phone, bank reference or device; the owner's receipt carries the body and
salt and verifies offline (commitment, leaf, inclusion, tree head); auditors get every body
from the admin zone and ``anfu verify log --auditor`` checks each commitment and the root."""

from __future__ import annotations

import base64
import copy
import json
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from anfu.config import Settings
from anfu.crypto import platform_sig
from anfu.keys import dev_secrets, open_keystore, open_rings
from anfu.sdk import MerchantClient, WalletClient
from anfu.transparency.audit import verify_audited_entries
from anfu.transparency.model import b64, parse_entry, receipt_signing_bytes
from tests.support import (
    ADMIN_TOKENS,
    ROOT,
    RunningPlatform,
    admin_headers,
    create_merchant,
    eventually,
    new_customer,
)
from tests.support import start_platform as start

Json = dict[str, Any]
MONEY_KINDS = {"payment", "refund", "transfer", "withdrawal", "topup"}


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    running = start(tmp_path_factory.mktemp("tlog-privacy"), ANFU_LOG_STH_INTERVAL_S="0.2")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def moves(platform: RunningPlatform) -> dict[str, Json]:
    """A signed payment (device certificate, level 3), a transfer and a withdrawal, each
    with its owner's verified receipt bundle."""
    buyer: WalletClient = new_customer(platform, amount=90_000)
    buyer.request_certificate()
    buyer.raise_assurance(3)
    payee: WalletClient = new_customer(platform)
    m = create_merchant(platform.admin, name="Privacy Tea " + secrets.token_hex(3))
    shop = MerchantClient(platform.merchant, m.merchant_id, m.key_id, m.alg,
                          m.private_key_pem)
    trade = shop.create_trade(out_trade_no="o" + secrets.token_hex(6), amount=4_321,
                              currency="CNY", subject="oolong", mode="direct")
    buyer.pay(trade["trade_no"])
    sent = buyer.transfer(765, "CNY", to_user_id=payee.user_id)
    out = buyer.withdraw(1_987, "CNY")
    published = buyer.platform_keys()
    return {"payment": buyer.verified_receipt(trade["trade_no"], keys=published),
            "transfer": buyer.verified_receipt(sent["transfer_no"], keys=published),
            "withdrawal": buyer.verified_receipt(out["id"], keys=published),
            "keys": {"keys": published}, "merchant": {"merchant_id": m.merchant_id}}


def anfu(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "anfu.cli", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=60)


def signed_head(platform: RunningPlatform) -> Json:
    head: Json = httpx.get(f"{platform.mobile}/log/v1/get-sth").json()
    return head


def values_in(value: Any) -> list[Any]:
    """Every scalar in a JSON value (dict keys excepted)."""
    if isinstance(value, dict):
        return [s for v in value.values() for s in values_in(v)]
    if isinstance(value, list):
        return [s for v in value for s in values_in(v)]
    return [value]


def test_anonymous_get_entries_shows_no_customer_data(platform: RunningPlatform,
                                                      moves: dict[str, Json]) -> None:
    bodies = {kind: moves[kind]["receipt"]["transaction"]
              for kind in ("payment", "transfer", "withdrawal")}
    # The values an anonymous reader must not learn (all present, so the check bites).
    named = {"user id": bodies["payment"]["user_id"],
             "merchant id": moves["merchant"]["merchant_id"],
             "payee user id": bodies["transfer"]["payee_id"],
             "masked phone": bodies["transfer"]["payee_name"],
             "bank reference": bodies["withdrawal"]["bank_reference"],
             "device id": bodies["payment"]["device_id"]}
    assert all(named.values()) and "*" in named["masked phone"], named
    # Every string of the three bodies (ids, names, references, hashes), grepped for; the
    # amounts are compared as values (as digits they could turn up in a hash or a time).
    hidden = {v for body in bodies.values() for v in values_in(body)
              if isinstance(v, str) and len(v) >= 6} | set(named.values())
    amounts = {4_321, 765, 1_987}
    assert amounts == {body["amount"] for body in bodies.values()}
    size = signed_head(platform)["tree_size"]
    for zone in (platform.mobile, platform.merchant):
        reply = httpx.get(f"{zone}/log/v1/get-entries", params={"start": 0, "end": size - 1})
        assert reply.status_code == 200, reply.text
        rows = reply.json()["entries"]
        leaves = [base64.b64decode(r["leaf_input"]).decode() for r in rows]
        public = reply.text + "\n".join(leaves)
        leaked = sorted(s for s in hidden if s in public)
        assert not leaked, f"the public log shows {leaked}"
        assert '"amount"' not in public
        parsed = [parse_entry(leaf.encode()) for leaf in leaves]
        shown = {x for e in parsed for k, v in e.items() if k != "at" for x in values_in(v)}
        assert not shown & amounts
        money = [e for e in parsed if e["kind"] in MONEY_KINDS]
        assert {e["kind"] for e in money} >= {"payment", "transfer", "withdrawal", "topup"}
        assert all(set(e) == {"version", "at", "kind", "commitment"} for e in money)


def test_the_owners_receipt_verifies_offline_and_refuses_tampering(
        platform: RunningPlatform, moves: dict[str, Json], tmp_path: Path) -> None:
    bundle = moves["payment"]
    receipt = bundle["receipt"]
    assert receipt["version"] == "ANFU-RECEIPT-V2" and receipt["amount"] == 4_321
    assert parse_entry(base64.b64decode(receipt["log_entry"]))["version"] == "ANFU-LOG-V2"
    keys_file = tmp_path / "keys.json"
    keys_file.write_text(json.dumps(moves["keys"]))

    def verify(value: Json) -> subprocess.CompletedProcess[str]:
        path = tmp_path / "receipt.json"
        path.write_text(json.dumps(value))
        return anfu("verify", "receipt", str(path), "--keys", str(keys_file))

    ok = verify(bundle)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    for check in ("receipt_signature", "receipt_commitment", "sth_signature",
                  "inclusion_proof"):
        assert f"ok {check}" in ok.stdout, ok.stdout
    for field, value in (("salt", b64(bytes(32))), ("transaction", {
            **receipt["transaction"], "amount": 1})):
        forged = copy.deepcopy(bundle)
        forged["receipt"][field] = value
        bad = verify(forged)
        assert bad.returncode == 1 and "FAILED receipt_signature" in bad.stdout, bad.stdout
    # Even a receipt signed with the platform's own receipt key is refused when its body
    # does not open the commitment the log holds: the log, not the signature, backs it.
    lying = copy.deepcopy(bundle)
    lying["receipt"]["transaction"]["amount"] = lying["receipt"]["amount"] = 1
    signer = receipt_signer(platform)
    lying["receipt"]["signature"] = b64(platform_sig.sign(
        signer, receipt_signing_bytes(lying["receipt"])))
    bad = verify(lying)
    assert bad.returncode == 1 and "FAILED receipt_commitment" in bad.stdout, bad.stdout


def receipt_signer(platform: RunningPlatform) -> Any:
    """The platform's current receipt key, opened from its home (as an insider could)."""
    settings = Settings(home=platform.home, env="test")
    passphrase = dev_secrets(settings)[1]
    rings = open_rings(open_keystore(settings, passphrase), platform.home / "keys",
                       passphrase=passphrase)
    return rings.receipt.current


def test_auditors_get_every_body_and_check_every_commitment(
        platform: RunningPlatform, moves: dict[str, Json], tmp_path: Path) -> None:
    old = signed_head(platform)
    create_merchant(platform.admin, name="Audited Shop")  # one more operator.action
    new = eventually(lambda: (h := signed_head(platform))["tree_size"] > old["tree_size"]
                     and h, timeout=15)
    size = new["tree_size"]
    reply = httpx.get(f"{platform.admin}/v1/log/entries", params={"start": 0, "end": size - 1},
                      headers=admin_headers(platform.admin))
    assert reply.status_code == 200, reply.text
    rows = reply.json()["entries"]
    payment_index = moves["payment"]["receipt"]["leaf_index"]
    assert rows[payment_index]["body"] == moves["payment"]["receipt"]["transaction"]
    assert rows[payment_index]["salt"] == moves["payment"]["receipt"]["salt"]
    summary = verify_audited_entries(rows, new, moves["keys"]["keys"])
    assert summary["committed"] >= 5 and summary["public"] >= 3  # the keys, in clear
    for zone in (platform.mobile, platform.merchant):  # not served outside the admin zone
        assert httpx.get(f"{zone}/v1/log/entries",
                         params={"start": 0, "end": 1}).status_code in (401, 404)

    files = {name: tmp_path / f"{name}.json" for name in ("old", "new", "keys", "entries")}
    for name, value in (("old", old), ("new", new), ("keys", moves["keys"])):
        files[name].write_text(json.dumps(value))
    audited = anfu("verify", "log", str(files["old"]), str(files["new"]), "--mobile-url",
                   platform.mobile, "--auditor", platform.admin,
                   "--admin-token", ADMIN_TOKENS[platform.admin])
    assert audited.returncode == 0, audited.stdout + audited.stderr
    assert "ok consistency" in audited.stdout and "ok audit" in audited.stdout
    rows[payment_index]["body"]["amount"] += 1
    files["entries"].write_text(json.dumps({"entries": rows}))
    refused = anfu("verify", "log", str(files["old"]), str(files["new"]), "--mobile-url",
                   platform.mobile, "--entries", str(files["entries"]))
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert f"FAILED audit_commitment: leaf {payment_index}" in refused.stdout


def test_the_auditor_route_needs_the_operator_token(tmp_path: Path) -> None:
    token = secrets.token_urlsafe(24)
    running = start(tmp_path / "guarded", ANFU_LOG_STH_INTERVAL_S="0.2",
                    ANFU_ADMIN_TOKEN=token)
    try:
        head = eventually(lambda: (h := signed_head(running))["tree_size"] >= 3 and h,
                          timeout=15)  # the first keys are announced
        url, params = f"{running.admin}/v1/log/entries", {"start": 0, "end": 2}
        refused = httpx.get(url, params=params)
        assert refused.status_code == 401, refused.text
        assert refused.json()["code"] in ("operator_token_missing", "operator_token_invalid")
        allowed = httpx.get(url, params=params, headers={"Authorization": f"Bearer {token}"})
        assert allowed.status_code == 200 and len(allowed.json()["entries"]) == 3
        (tmp_path / "head.json").write_text(json.dumps(head))
        (tmp_path / "keys.json").write_text(httpx.get(f"{running.mobile}/v1/platform/keys").text)
        args = ("verify", "log", str(tmp_path / "head.json"), str(tmp_path / "head.json"),
                "--keys", str(tmp_path / "keys.json"), "--auditor", running.admin)
        assert anfu(*args).returncode == 2  # refused without the token: an input error
        audited = anfu(*args, "--admin-token", token)
        assert audited.returncode == 0 and "ok audit" in audited.stdout, audited.stdout
    finally:
        running.stop()
