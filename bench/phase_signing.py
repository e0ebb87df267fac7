"""Phase (h): the pay path with transaction signing against the pay path without it.

Half the bench customers get a device certificate through the mobile zone
(``POST /v1/devices/current/certificate`` with a CSR made by their device key), so every
payment they make must carry ``Anfu-Txn-Signature``; the other half have none, so their
payments are not signed (the policy's "certified" mode). Runs alternate unsigned / signed,
twice, on the same platform, and the figure is signed rps over unsigned rps.

A phone that pays often keeps a challenge ready (``POST /v1/txn-challenges``, then the one
each signed answer carries in ``Anfu-Txn-Challenge``), so a signed payment is one request.
The bench does the same: the challenges are stored beforehand in-process (through a writer
of its own, as ``prepare.refresh`` does) and each payment's header is signed ahead, the way
the DPoP proofs are.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
import prepare
import profiling
from context import RESULTS, WARMUP_S, Bench, Target, describe_run, lines_needed, stored_figures

from anfu.bootstrap import build
from anfu.crypto.csr import device_csr_pem
from anfu.crypto.jwk import b64url_encode
from anfu.crypto.tokens import random_token
from anfu.db.txn_store import SqlTxnStore
from anfu.db.uow import SqlUnitOfWork
from anfu.identity.txn_signing import (
    CHALLENGE_TTL_S,
    TxnChallenge,
    TxnFacts,
    TxnOperation,
)

MERCHANT_NAME = "Bench Shop"


def certify(t: Target, customers: list[prepare.Customer]) -> float:
    """Each customer asks for a device certificate, as the SDK's request_certificate()
    does; returns certificates/s (over HTTP, one at a time)."""
    t.ensure_fresh(30)
    started = time.perf_counter()
    path = "/v1/devices/current/certificate"
    for c in customers:
        proof = c.key.dpop_proof("POST", f"{t.mobile}{path}", access_token=c.dpop_token)
        reply = httpx.post(f"{t.mobile}{path}", timeout=30,
                           json={"csr": device_csr_pem(c.key, c.device_id)},
                           headers={"Authorization": f"DPoP {c.dpop_token}", "DPoP": proof,
                                    "Idempotency-Key": f"bench-cert-{c.device_id}"})
        if reply.status_code != 201:
            raise RuntimeError(f"certificate refused ({reply.status_code}): {reply.text[:600]}")
    return len(customers) / (time.perf_counter() - started)


def _lines(t: Target, customers: list[prepare.Customer], count: int, signed: bool,
           label: str) -> Path:
    numbers = t.prepared.take(count)
    path = t.lines / f"{label}.lines"
    now = time.time()
    challenges: list[TxnChallenge] = []
    with path.open("w") as out:
        for i, trade_no in enumerate(numbers):
            c = customers[i % len(customers)]
            proof = c.key.dpop_proof("POST", f"{t.mobile}/v1/trades/{trade_no}/pay",
                                     access_token=c.dpop_token)
            line = f"DPoP {c.dpop_token} {trade_no} {proof}"
            if signed:
                ch = TxnChallenge(random_token(32), c.user_id, c.device_id, float(int(now)),
                                  now + CHALLENGE_TTL_S)
                challenges.append(ch)
                facts = TxnFacts(TxnOperation.PAYMENT, trade_no, prepare.TRADE_AMOUNT,
                                 prepare.CURRENCY, t.prepared.merchant_id, MERCHANT_NAME)
                signature = b64url_encode(c.key.sign(facts.signing_bytes(ch.challenge,
                                                                          int(now))))
                line += f" challenge={ch.challenge},timestamp={int(now)},signature={signature}"
            out.write(line + "\n")
    if challenges:
        platform = build(t.prepared.settings)
        try:
            def store(uow: SqlUnitOfWork) -> None:
                txn = SqlTxnStore(uow.conn)
                for ch in challenges:
                    txn.insert(ch)

            platform.write_sync(store)
        finally:
            platform.close()
    return path


def _run(t: Target, customers: list[prepare.Customer], seconds: float, rate: float,
         signed: bool, label: str) -> dict[str, Any]:
    t.ensure_fresh(seconds + 15)
    count = lines_needed(rate, seconds, t.b.connections)
    path = _lines(t, customers, count, signed, label)
    spy = None
    if t.b.args.profile and label.endswith("-0"):
        # The first measured run of each kind: where the CPU of Python goes (GIL samples).
        spy = threading.Thread(target=_profile, args=(t, label, max(1, int(seconds) - 2)))
        spy.start()
    run = t.b.wrk(t.mobile, "pay.lua", [str(path), str(t.b.threads)], seconds, t.svc)
    if spy is not None:
        spy.join()
    run["variant"] = "signed" if signed else "unsigned"
    run["level3_age_at_end_s"] = round(time.time() - t.prepared.proved_at, 1)
    t.pay_runs.append(run)
    return run


def _profile(t: Target, label: str, seconds: int) -> None:
    time.sleep(1)
    raw = t.b.work / f"{label}-gil.txt"
    profiling.record(t.svc.pid, seconds, raw, fmt="raw", gil=True)
    summary = profiling.summarise(raw, top=25, seconds=seconds)
    text = profiling.render(summary, f"== {label}: the thread holding the GIL ==")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{label}.summary.txt").write_text(text + "\n")


def phase_signing(b: Bench, t: Target, rate: float) -> dict[str, Any]:
    half = len(t.prepared.customers) // 2
    signers, others = t.prepared.customers[:half], t.prepared.customers[half:]
    out: dict[str, Any] = {"certificates_per_s_http": round(certify(t, signers), 1)}
    b.log(f"  {half} customers certified ({out['certificates_per_s_http']}/s over HTTP)")
    _run(t, others, WARMUP_S, rate, False, "sign-warmup-unsigned")
    _run(t, signers, WARMUP_S, rate, True, "sign-warmup-signed")
    runs: dict[str, list[dict[str, Any]]] = {"unsigned": [], "signed": []}
    for rep in range(2):
        for signed in (False, True):
            name = "signed" if signed else "unsigned"
            run = _run(t, signers if signed else others, b.seconds, rate, signed,
                       f"sign-{name}-{rep}")
            b.log(f"  {name}: {describe_run(run)}")
            runs[name].append(stored_figures(run))
    for name, got in runs.items():
        out[name] = got
        out[f"{name}_rps"] = sum(r["rps"] for r in got) / len(got)
    out["signed_over_unsigned"] = (out["signed_rps"] / out["unsigned_rps"]
                                   if out["unsigned_rps"] else 0.0)
    b.log(f"  signed / unsigned: {out['signed_over_unsigned']:.0%} (target >= 80%)")
    return out
