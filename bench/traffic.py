"""The requests the phases send, as a phone would: a preflight request through httpx (a
refusal stops the benchmark with its reason), the lines files wrk replays and the wrk runs,
for pay, logins and ``GET /v1/wallet``; and py-spy profiles of the platform under that
load."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import harness
import httpx
import prepare
import profiling
from context import (
    LOGIN_CONNECTIONS,
    PROFILE_SLACK_S,
    RESULTS,
    Bench,
    Target,
    lines_needed,
    stored_figures,
)

LOGIN_TIMEOUT_S = 30  # a login queued behind 49 others for the hash pool can take seconds
FLOOD_LEAD_S = 1  # the login flood starts this long before the pay load, ends after it


# --- pay -------------------------------------------------------------------------------

def _pay_headers(t: Target, variant: str, trade_no: str) -> dict[str, str]:
    c = t.prepared.customers[0]
    if variant == "bearer":
        return {"Authorization": f"Bearer {c.bearer_token}",
                "Idempotency-Key": f"bench-pay-{trade_no}"}
    return {"Authorization": f"DPoP {c.dpop_token}", "Idempotency-Key": f"bench-pay-{trade_no}",
            "DPoP": c.key.dpop_proof("POST", f"{t.mobile}/v1/trades/{trade_no}/pay",
                                     access_token=c.dpop_token)}


def preflight_pay(t: Target, variant: str) -> None:
    """One payment through httpx first: a refusal stops the benchmark with its reason."""
    t.ensure_fresh(5)
    [trade_no] = t.prepared.take(1)
    reply = httpx.post(f"{t.mobile}/v1/trades/{trade_no}/pay",
                       headers=_pay_headers(t, variant, trade_no), timeout=30)
    if reply.status_code != 200:
        raise RuntimeError(f"a {variant} payment was refused ({reply.status_code}):"
                           f" {reply.text[:600]}")
    t.preflight_paid += 1


def pay_lines(t: Target, variant: str, seconds: float, rate: float, label: str) -> Path:
    t.ensure_fresh(seconds + 15)
    count = lines_needed(rate, seconds, t.b.connections)
    path, made = prepare.pay_lines(t.prepared, t.lines / f"{label}.lines", count, variant,
                                   t.mobile)
    if made < count:
        t.b.log(f"  NOTE: only {made:,} of {count:,} trades left for {label}")
    return path


def pay_wrk(t: Target, path: Path, variant: str, seconds: float) -> dict[str, Any]:
    run = t.b.wrk(t.mobile, "pay.lua", [str(path), str(t.b.threads)], seconds, t.svc)
    run["variant"] = variant
    run["level3_age_at_end_s"] = round(time.time() - t.prepared.proved_at, 1)
    t.pay_runs.append(run)
    return run


def pay_run(t: Target, variant: str, seconds: float, rate: float,
            label: str) -> dict[str, Any]:
    return pay_wrk(t, pay_lines(t, variant, seconds, rate, label), variant, seconds)


# --- py-spy profiles under load --------------------------------------------------------

ACTIVE = "== all active threads (includes time waiting for the GIL or the database) =="
GIL = "== the thread holding the GIL only (where the CPU of Python goes) =="


def profile_under_load(b: Bench, t: Target, tag: str, rate: float,
             flood: bool = False) -> dict[str, Any]:
    """Under load (with ``flood``, pay plus the login flood): a flame graph, stacks of all
    active threads and GIL-only stacks, of every platform process."""
    b.log(f"  profiling{' under the login flood' if flood else ''} with py-spy"
          f" (3 recordings at once, {b.profile_s} s)")
    RESULTS.mkdir(parents=True, exist_ok=True)
    raw, raw_gil = b.work / f"{tag}.txt", b.work / f"{tag}-gil.txt"
    svg = RESULTS / f"{tag}.svg"
    seconds = b.profile_s + PROFILE_SLACK_S
    lines = pay_lines(t, "dpop", seconds, rate, tag)
    with ThreadPoolExecutor(2) as pool:
        flood_run = (pool.submit(login_wrk, t, seconds + 2 * FLOOD_LEAD_S) if flood
                     else None)
        if flood:
            time.sleep(FLOOD_LEAD_S)
        load = pool.submit(pay_wrk, t, lines, "dpop", seconds)
        time.sleep(2)
        # The three recordings run at once, over the same window of the same load: py-spy
        # takes seconds to attach to every process of a busy machine, so one after the
        # other they would outlast the load.
        with ThreadPoolExecutor(3) as spies:
            recordings = [spies.submit(profiling.record, t.svc.pid, b.profile_s, svg),
                          spies.submit(profiling.record, t.svc.pid, b.profile_s, raw,
                                       fmt="raw"),
                          spies.submit(profiling.record, t.svc.pid, b.profile_s, raw_gil,
                                       fmt="raw", gil=True)]
            closing = [r.result() for r in recordings]
        run = load.result()
        logins = flood_run.result() if flood_run else None
    active = profiling.summarise(raw)
    gil = profiling.summarise(raw_gil, seconds=b.profile_s)
    text = profiling.render(active, ACTIVE) + "\n\n" + profiling.render(gil, GIL)
    (RESULTS / f"{tag}.summary.txt").write_text(text + "\n")
    b.log("\n".join("    " + line for line in text.splitlines()))
    return {"active": active, "gil": gil, "py_spy": closing, "load": stored_figures(run),
            "logins": stored_figures(logins) if logins else None,
            "svg": str(svg.relative_to(harness.ROOT))}


# --- logins ----------------------------------------------------------------------------

def preflight_login(t: Target) -> None:
    c = t.prepared.customers[0]
    reply = httpx.post(f"{t.mobile}/v1/sessions", timeout=30, json={
        "phone": c.phone, "password": prepare.PASSWORD, "device_id": c.device_id})
    if reply.status_code != 401 or reply.json().get("code") != "step_up_required":
        raise RuntimeError(f"the password step answered {reply.status_code}:"
                           f" {reply.text[:600]} (expected 401 step_up_required)")


def login_wrk(t: Target, seconds: float) -> dict[str, Any]:
    path = prepare.login_lines(t.prepared, t.lines / "logins.lines")
    return t.b.wrk(t.mobile, "login.lua", [str(path), str(t.b.threads), prepare.PASSWORD],
                   seconds, t.svc, LOGIN_CONNECTIONS, timeout_s=LOGIN_TIMEOUT_S)


def drain_logins(t: Target, quick_s: float = 1.0, limit_s: float = 120) -> float:
    """Wait until the logins a wrk run left behind are done: the platform finishes a
    request whose client has gone, so up to one verify per connection is still queued in
    the hash pools. Done when two logins in a row answer within ``quick_s``."""
    started = time.monotonic()
    quick = 0
    while quick < 2 and time.monotonic() - started < limit_s:
        t0 = time.monotonic()
        preflight_login(t)
        quick = quick + 1 if time.monotonic() - t0 < quick_s else 0
    return time.monotonic() - started


# --- GET /v1/wallet, Bearer vs DPoP ----------------------------------------------------

def preflight_wallet(t: Target, variant: str) -> None:
    t.ensure_fresh(5)
    c = t.prepared.customers[0]
    headers = {"Authorization": f"Bearer {c.bearer_token}"}
    if variant == "dpop":
        headers = {"Authorization": f"DPoP {c.dpop_token}",
                   "DPoP": c.key.dpop_proof("GET", f"{t.mobile}/v1/wallet",
                                            access_token=c.dpop_token)}
    reply = httpx.get(f"{t.mobile}/v1/wallet", headers=headers, timeout=30)
    if reply.status_code != 200:
        raise RuntimeError(f"GET /v1/wallet ({variant}) answered {reply.status_code}:"
                           f" {reply.text[:600]}")


def wallet_run(t: Target, variant: str, seconds: float, rate: float,
               label: str) -> dict[str, Any]:
    t.ensure_fresh(seconds + 15)
    count = lines_needed(rate, seconds, t.b.connections)
    path = prepare.wallet_lines(t.prepared, t.lines / f"{label}.lines", count, variant,
                                t.mobile)
    run = t.b.wrk(t.mobile, "wallet.lua", [str(path), str(t.b.threads)], seconds, t.svc)
    run["variant"] = variant
    return run
