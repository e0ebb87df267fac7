"""The transparency log through a real platform: operator actions and money moves are
sequenced into the RFC 9162 log, tree heads are signed, proofs served on the mobile and
merchant zones verify, receipts reach only their owners, and the offline CLI verifiers
accept the saved files and refuse tampered ones naming the failed check."""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from anfu.crypto.merkle_hash import leaf_hash
from anfu.sdk import MerchantClient
from anfu.transparency.model import parse_entry
from anfu.transparency.verify import (
    VerificationFailed,
    verify_commitment,
    verify_inclusion_proof,
    verify_receipt_bundle,
    verify_sth_consistency,
)
from tests.support import (
    ROOT,
    RunningPlatform,
    admin_headers,
    create_merchant,
    eventually,
    new_customer,
)
from tests.support import start_platform as start

Json = dict[str, Any]


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    running = start(tmp_path_factory.mktemp("tlog"), ANFU_LOG_STH_INTERVAL_S="0.2")
    yield running
    running.stop()


def keys(platform: RunningPlatform) -> list[Json]:
    return list(httpx.get(f"{platform.mobile}/v1/platform/keys").json()["keys"])


def sth_covering(platform: RunningPlatform, size: int) -> Json:
    def check() -> Json | None:
        reply = httpx.get(f"{platform.mobile}/log/v1/get-sth")
        return reply.json() if reply.status_code == 200 and reply.json()[
            "tree_size"] >= size else None

    found: Json = eventually(check, timeout=15)
    return found


def entries(platform: RunningPlatform, start: int, end: int) -> list[Json]:
    reply = httpx.get(f"{platform.merchant}/log/v1/get-entries",
                      params={"start": start, "end": end})
    assert reply.status_code == 200, reply.text
    return list(reply.json()["entries"])


def anfu(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "anfu.cli", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=60)


def test_operator_action_is_logged_and_provably_included(platform: RunningPlatform) -> None:
    m = create_merchant(platform.admin, name="Logged Shop")

    def logged() -> tuple[Json, list[Json]] | None:
        head = sth_covering(platform, 1)
        found = [e for e in entries(platform, 0, head["tree_size"] - 1)
                 if e["kind"] == "operator.action"]
        return (head, found) if found else None

    head, found = eventually(logged, timeout=15)  # the merchant creation is logged
    data = base64.b64decode(found[-1]["leaf_input"])
    # Public: the kind, the time and a commitment; the body is for auditors (admin zone).
    assert set(json.loads(data.split(b"\n", 1)[1])) == {"at", "commitment", "kind"}
    index = found[-1]["leaf_index"]
    [audited] = httpx.get(f"{platform.admin}/v1/log/entries",
                          params={"start": index, "end": index},
                          headers=admin_headers(platform.admin)).json()["entries"]
    assert audited["leaf_input"] == found[-1]["leaf_input"]
    verify_commitment(parse_entry(data), audited["body"], audited["salt"], "commitment")
    body = audited["body"]
    assert body["method"] == "POST" and body["path"] == "/v1/merchants"
    assert body["status"] == 201 and m.merchant_id
    leaf = leaf_hash(data)
    for zone in (platform.mobile, platform.merchant):
        proof = httpx.get(f"{zone}/log/v1/get-proof-by-hash",
                          params={"hash": base64.b64encode(leaf).decode(),
                                  "tree_size": head["tree_size"]}).json()
        assert proof["leaf_index"] == found[-1]["leaf_index"]
        verify_inclusion_proof(leaf, proof, head, keys(platform))
    by_index = httpx.get(f"{platform.mobile}/log/v1/get-proof-by-index",
                         params={"index": found[-1]["leaf_index"]}).json()
    latest = httpx.get(f"{platform.mobile}/log/v1/get-sth").json()
    verify_inclusion_proof(leaf, by_index, latest, keys(platform))


def test_bad_log_requests_are_problems_not_errors(platform: RunningPlatform) -> None:
    sth_covering(platform, 1)
    for path, params in (("get-proof-by-index", {"index": 10**9}),
                         ("get-proof-by-hash", {"hash": "nope"}),
                         ("get-sth-consistency", {"first": 5, "second": 10**9}),
                         ("get-entries", {"start": 5, "end": 1})):
        reply = httpx.get(f"{platform.mobile}/log/v1/{path}", params=params)
        assert 400 <= reply.status_code < 500, (path, reply.text)
        assert reply.headers["content-type"].startswith("application/problem+json")


def test_payment_and_withdrawal_receipts_for_their_owners_only(
        platform: RunningPlatform, tmp_path: Path) -> None:
    customer = new_customer(platform, amount=50_000)
    m = create_merchant(platform.admin, name="Receipt Tea")
    shop = MerchantClient(platform.merchant, m.merchant_id, m.key_id, m.alg,
                          m.private_key_pem)
    trade = shop.create_trade(out_trade_no="o" + secrets.token_hex(6), amount=1_234,
                              currency="CNY", subject="tea", mode="direct")
    customer.pay(trade["trade_no"])
    op = customer.withdraw(2_000, "CNY")
    published = customer.platform_keys()

    bundle = customer.receipt(trade["trade_no"])
    summary = verify_receipt_bundle(bundle, published)
    assert summary["kind"] == "payment" and bundle["receipt"]["amount"] == 1_234
    assert bundle["receipt"]["merchant_id"] == m.merchant_id
    withdrawal = customer.verified_receipt(op["id"], keys=published)
    assert withdrawal["receipt"]["kind"] == "withdrawal"

    # The merchant sees its own trade's receipt; another customer and merchant see none.
    merchant_view = shop._send_signed("GET", f"/v1/receipts/{trade['trade_no']}", None, None)
    assert merchant_view.status_code == 200, merchant_view.text
    verify_receipt_bundle(merchant_view.json(), published)
    stranger = new_customer(platform)
    other = stranger._http.get(f"/v1/receipts/{trade['trade_no']}",
                               headers=stranger.auth_headers(
                                   "GET", f"/v1/receipts/{trade['trade_no']}"))
    assert other.status_code == 404
    other_shop = create_merchant(platform.admin, name="Other")
    other_client = MerchantClient(platform.merchant, other_shop.merchant_id,
                                  other_shop.key_id, other_shop.alg, other_shop.private_key_pem)
    assert other_client._send_signed("GET", f"/v1/receipts/{op['id']}", None,
                                     None).status_code == 404

    # Offline CLI: the saved bundle verifies; a tampered one is refused, naming the check.
    keys_file, bundle_file = tmp_path / "keys.json", tmp_path / "receipt.json"
    keys_file.write_text(json.dumps({"keys": published}))
    bundle_file.write_text(json.dumps(bundle))
    ok = anfu("verify", "receipt", str(bundle_file), "--keys", str(keys_file))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "ok inclusion_proof" in ok.stdout
    bundle["receipt"]["amount"] = 1
    bundle_file.write_text(json.dumps(bundle))
    bad = anfu("verify", "receipt", str(bundle_file), "--keys", str(keys_file))
    assert bad.returncode == 1 and "FAILED receipt_signature" in bad.stdout, bad.stdout


def test_consistency_between_two_tree_heads(platform: RunningPlatform,
                                            tmp_path: Path) -> None:
    create_merchant(platform.admin)
    old = sth_covering(platform, 1)
    for _ in range(3):
        create_merchant(platform.admin)
    new = sth_covering(platform, old["tree_size"] + 3)
    published = keys(platform)
    proof = httpx.get(f"{platform.mobile}/log/v1/get-sth-consistency",
                      params={"first": old["tree_size"], "second": new["tree_size"]}).json()
    verify_sth_consistency(old, new, proof["consistency"], published)

    files = {name: tmp_path / f"{name}.json" for name in ("old", "new", "proof", "keys")}
    for name, value in (("old", old), ("new", new), ("proof", proof),
                        ("keys", {"keys": published})):
        files[name].write_text(json.dumps(value))
    online = anfu("verify", "log", str(files["old"]), str(files["new"]),
                  "--mobile-url", platform.mobile)
    assert online.returncode == 0, online.stdout + online.stderr
    offline = anfu("verify", "log", str(files["old"]), str(files["new"]), "--keys",
                   str(files["keys"]), "--proof", str(files["proof"]))
    assert offline.returncode == 0 and "ok consistency" in offline.stdout, offline.stdout
    forged = {**new, "sha256_root_hash": base64.b64encode(bytes(32)).decode()}
    files["new"].write_text(json.dumps(forged))
    refused = anfu("verify", "log", str(files["old"]), str(files["new"]), "--keys",
                   str(files["keys"]), "--proof", str(files["proof"]))
    assert refused.returncode == 1 and "FAILED sth_signature" in refused.stdout
    with pytest.raises(VerificationFailed):
        verify_sth_consistency(old, forged, proof["consistency"], published)


def _announced(platform: RunningPlatform) -> list[Json]:
    head = httpx.get(f"{platform.mobile}/log/v1/get-sth").json()
    if not head["tree_size"]:
        return []
    out = []
    for e in entries(platform, 0, head["tree_size"] - 1):
        if e["kind"] == "key.published":
            out.append(json.loads(base64.b64decode(e["leaf_input"]).split(b"\n", 1)[1])["body"])
    return out


def test_the_first_keys_are_announced_in_the_log_once(tmp_path: Path) -> None:
    running = start(tmp_path / "keys", ANFU_LOG_STH_INTERVAL_S="0.2")
    try:
        published = {k["key_id"]: k for k in keys(running)}
        assert {k["purpose"] for k in published.values()} == {"response", "receipt", "log"}
        announced = eventually(lambda: (found := _announced(running)) and len(found) >= 3
                               and found, timeout=15)
        assert {a["key_id"] for a in announced} == set(published)
        for a in announced:
            key = published[a["key_id"]]
            assert (a["purpose"], a["alg"], a["public_key_pem"]) == (
                key["purpose"], key["alg"], key["public_key_pem"])
            assert a["previous_key_id"] is None
        running.restart()  # a restart announces nothing again
        create_merchant(running.admin, name="After Restart")
        eventually(lambda: any(e["kind"] == "operator.action" for e in entries(
            running, 0, httpx.get(f"{running.mobile}/log/v1/get-sth").json()["tree_size"] - 1)
            if e["leaf_index"] >= 3), timeout=15)
        assert len(_announced(running)) == 3
    finally:
        running.stop()
