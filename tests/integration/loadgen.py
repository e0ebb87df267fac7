"""Load generation for the concurrency and crash tests.

Plain functions over raw httpx, importable by processes started with the ``spawn`` method.
A customer's credential is a plain dict, ``{"token": access token, "key": PKCS#8 DER of the
device key or None}`` (``credential(client)`` makes one): with a key, every request carries
``Authorization: DPoP`` and a fresh DPoP proof, as the phone would send. An operation is a
plain dict too, so both pickle across processes:

    {"kind": "pay", "trade_no": "T…", "amount": 150, "key": None | "…"}
    {"kind": "p2p", "to_user_id": "u…", "amount": 150, "key": "…"}

(an optional ``cred`` in an operation overrides the caller's credential)
and its outcome is a dict too: the operation plus ``status``, ``code`` (problem code or
None), ``body`` (decoded JSON), ``raw`` (the response bytes) and ``replayed``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

Op = dict[str, Any]
Outcome = dict[str, Any]
CURRENCY = "CNY"


def request_of(op: Op) -> tuple[str, dict[str, Any] | None]:
    """(path, JSON body) of one operation."""
    if op["kind"] == "pay":
        return f"/v1/trades/{op['trade_no']}/pay", None
    if op["kind"] == "p2p":
        return "/v1/transfers", {"to_user_id": op["to_user_id"], "amount": op["amount"],
                                 "currency": op.get("currency", CURRENCY)}
    raise ValueError(f"unknown operation {op['kind']!r}")


Credential = dict[str, Any]


def credential(client: Any) -> Credential:
    """The picklable credential of a logged-in ``WalletClient``."""
    key = client.device_key if client.token_type == "DPoP" else None
    return {"token": client.access_token, "key": key.to_pkcs8_der() if key else None}


def auth_headers(http: httpx.Client, cred: Credential, method: str,
                 path: str) -> dict[str, str]:
    if cred.get("key") is None:
        return {"Authorization": f"Bearer {cred['token']}"}
    from anfu.crypto.jose import DeviceKey

    key = DeviceKey.from_pkcs8_der(cred["key"])
    url = str(http.base_url).rstrip("/") + path
    return {"Authorization": f"DPoP {cred['token']}",
            "DPoP": key.dpop_proof(method, url, access_token=cred["token"])}


def send(http: httpx.Client, cred: Credential, op: Op) -> Outcome:
    """Send one operation; transport errors (connection refused or cut) propagate."""
    path, body = request_of(op)
    headers = auth_headers(http, op.get("cred") or cred, "POST", path)
    if op.get("key") is not None:
        headers["Idempotency-Key"] = op["key"]
    response = http.post(path, json=body, headers=headers)
    try:
        data = response.json()
    except json.JSONDecodeError:
        data = {"_text": response.text}
    code = data.get("code") if response.status_code >= 400 and isinstance(data, dict) else None
    return {**op, "status": response.status_code, "code": code, "body": data,
            "raw": response.content,
            "replayed": response.headers.get("Idempotent-Replayed") == "true"}


def run_threads(base_url: str, cred: Credential, per_thread: Sequence[Sequence[Op]],
                *, start_at: float | None = None, timeout: float = 30) -> list[Outcome]:
    """One thread (with its own connection) per list of operations; all threads start
    together (at ``start_at`` if given, else as soon as all are ready)."""
    barrier = threading.Barrier(len(per_thread))

    def work(ops: Sequence[Op]) -> list[Outcome]:
        with httpx.Client(base_url=base_url, timeout=timeout) as http:
            http.get("/healthz")  # open the connection before the race starts
            barrier.wait()
            if start_at is not None:
                time.sleep(max(0.0, start_at - time.time()))
            return [send(http, cred, op) for op in ops]

    with ThreadPoolExecutor(len(per_thread)) as pool:
        return [o for outcomes in pool.map(work, per_thread) for o in outcomes]


def process_main(base_url: str, cred: Credential, per_thread: Sequence[Sequence[Op]],
                 start_at: float, results: Any) -> None:
    """Entry point of a spawned process: run the threads, put the outcomes (or the error)
    on the ``results`` queue."""
    try:
        outcomes = run_threads(base_url, cred, per_thread, start_at=start_at)
        for o in outcomes:
            o["raw"] = bytes(o["raw"])
        results.put(("ok", outcomes))
    except BaseException as exc:  # report, never hang the parent
        results.put(("error", repr(exc)))


def chunks(items: Sequence[Op], n: int) -> list[list[Op]]:
    """Deal ``items`` round-robin into ``n`` lists."""
    return [list(items[i::n]) for i in range(n)]


def statement(http: httpx.Client, cred: Credential,
              currency: str = CURRENCY) -> list[dict[str, Any]]:
    """Every entry of the caller's wallet statement (follows the cursor)."""
    entries: list[dict[str, Any]] = []
    cursor = 0
    while True:
        page = http.get("/v1/wallet/statement", params={"currency": currency,
                                                         "cursor": cursor, "limit": 500},
                        headers=auth_headers(http, cred, "GET", "/v1/wallet/statement"))
        assert page.status_code == 200, page.text
        data = page.json()
        entries.extend(data["entries"])
        if data["next_cursor"] is None:
            return entries
        cursor = data["next_cursor"]


def wallet(http: httpx.Client, cred: Credential, currency: str = CURRENCY) -> dict[str, int]:
    """``{balance, available, pending_out}`` of one currency (zeros if no account yet)."""
    reply = http.get("/v1/wallet", headers=auth_headers(http, cred, "GET", "/v1/wallet"))
    assert reply.status_code == 200, reply.text
    for row in reply.json()["balances"]:
        if row["currency"] == currency:
            return {"balance": row["balance"], "available": row["available"],
                    "pending_out": row["pending_out"]}
    return {"balance": 0, "available": 0, "pending_out": 0}


def get_json(http: httpx.Client, cred: Credential, path: str) -> Any:
    """GET ``path`` as the customer; the decoded JSON."""
    return http.get(path, headers=auth_headers(http, cred, "GET", path)).json()


def ledger_check(admin_url: str) -> dict[str, Any]:
    from tests.support import admin_headers  # the operator token of that platform

    reply = httpx.get(f"{admin_url}/v1/ledger/check", headers=admin_headers(admin_url),
                      timeout=60)
    data: dict[str, Any] = reply.json()
    assert reply.status_code == 200 and data["ok"], f"ledger invariants broken: {data}"
    return data


def total(outcomes: Iterable[Outcome]) -> int:
    return sum(o["amount"] for o in outcomes)
