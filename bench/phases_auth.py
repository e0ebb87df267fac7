"""Phases (e) logins through the password step, (f) pay under a login flood and (g) the cost
of DPoP and device signatures (in-process, and ``GET /v1/wallet`` end to end)."""

from __future__ import annotations

import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import auth_crypto
import harness
import prepare
from context import (
    WARMUP_S,
    Bench,
    Target,
    batch_counters,
    batch_figures,
    describe_run,
    stored_figures,
)
from traffic import (
    FLOOD_LEAD_S,
    drain_logins,
    login_wrk,
    pay_lines,
    pay_run,
    pay_wrk,
    preflight_pay,
    preflight_wallet,
    profile_under_load,
    wallet_run,
)

from anfu.crypto.passwords import PasswordHasher

# --- logins ----------------------------------------------------------------------------

def phase_logins(b: Bench, t: Target, label: str) -> dict[str, Any]:
    # No wrk warm-up: the verifies it would leave queued would only slow the measured run.
    drain_logins(t)
    # What one verify costs on this machine as loaded as it is, measured just before and
    # just after the run (the platform idle): the yardstick.
    before = argon2_verify_ms()
    run = login_wrk(t, b.seconds)
    run["drained_after_s"] = round(drain_logins(t), 1)
    after = argon2_verify_ms()
    argon2 = {"cost": before["cost"], "before": before, "after": after,
              "single_ms": round(statistics.median(before["samples_ms"]
                                                   + after["samples_ms"]), 2),
              "two_threads_ms": round(statistics.median(before["paired_ms"]
                                                        + after["paired_ms"]), 2)}
    b.log(f"  logins ({label}): {describe_run(run)}")
    b.log(f"  one Argon2id verify in-process: {argon2['single_ms']:.1f} ms alone,"
          f" {argon2['two_threads_ms']:.1f} ms each with two at once")
    return {**stored_figures(run), "argon2": argon2,
            "hash_pool": {k: v for k, v in t.env.items() if k.startswith("ANFU_HASH")}}


def argon2_verify_ms(rounds: int = 10) -> dict[str, Any]:
    """One Argon2id verify at the platform's default cost, in this process: the median of
    ``rounds`` single verifies, and the median of two verifies run at once on two threads
    (each core busy: what a pool of two threads does per verify)."""
    cost = harness.argon2_defaults()
    hasher = PasswordHasher(time_cost=cost["argon2_time_cost"],
                            memory_kib=cost["argon2_memory_kib"],
                            parallelism=cost["argon2_parallelism"])
    stored = hasher.hash(prepare.PASSWORD)
    hasher.verify(stored, prepare.PASSWORD)
    single: list[float] = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        hasher.verify(stored, prepare.PASSWORD)
        single.append(time.perf_counter() - t0)
    paired: list[float] = []

    def timed() -> None:
        t0 = time.perf_counter()
        hasher.verify(stored, prepare.PASSWORD)
        paired.append(time.perf_counter() - t0)

    for _ in range(max(3, rounds // 3)):
        pair = [threading.Thread(target=timed) for _ in range(2)]
        for th in pair:
            th.start()
        for th in pair:
            th.join()
    return {"cost": cost, "single_ms": round(1000 * statistics.median(single), 2),
            "two_threads_ms": round(1000 * statistics.median(paired), 2), "rounds": rounds,
            "samples_ms": [round(1000 * x, 2) for x in single],
            "paired_ms": [round(1000 * x, 2) for x in paired]}


# --- pay under a login flood -----------------------------------------------------------

def phase_flood(b: Bench, t: Target, rate: float, label: str,
                profile_it: bool) -> dict[str, Any]:
    """Pay alone, then pay while LOGIN_CONNECTIONS connections flood the password step;
    ``b.flood_pairs`` times, alternating, so that the machine's drift hits both alike."""
    preflight_pay(t, "dpop")
    drain_logins(t)
    pay_run(t, "dpop", WARMUP_S, rate, f"flood-{label}-warmup")
    pairs: list[dict[str, Any]] = []
    for n in range(b.flood_pairs):
        alone = pay_run(t, "dpop", b.seconds, rate, f"flood-{label}-alone-{n}")
        b.log(f"  pay alone ({label}): {describe_run(alone)}")
        lines = pay_lines(t, "dpop", b.seconds, rate, f"flood-{label}-flooded-{n}")
        with ThreadPoolExecutor(1) as pool:
            logins = pool.submit(login_wrk, t, b.seconds + 2 * FLOOD_LEAD_S)
            time.sleep(FLOOD_LEAD_S)
            flooded = pay_wrk(t, lines, "dpop", b.seconds)
            login_run = logins.result()
        b.log(f"  pay under the login flood ({label}): {describe_run(flooded)}")
        b.log(f"  logins meanwhile: {describe_run(login_run)}")
        login_run["drained_after_s"] = round(drain_logins(t), 1)
        pairs.append({"alone": stored_figures(alone), "flooded": stored_figures(flooded),
                      "logins": stored_figures(login_run)})

    def median(side: str, key: str) -> float:
        return statistics.median(p[side].get(key, 0.0) for p in pairs)

    keys = ("rps", "p50_us", "p99_us", "loops_on_cpu_pct", "loops_waiting_pct")
    out: dict[str, Any] = {
        "hash_pool": {k: v for k, v in t.env.items() if k.startswith("ANFU_HASH")},
        "pairs": pairs, "alone": {k: median("alone", k) for k in keys},
        "flooded": {k: median("flooded", k) for k in keys},
        "logins": {k: median("logins", k) for k in ("rps", "p50_us", "p99_us")},
        "errors": sum(p["flooded"]["errors"] + p["alone"]["errors"] for p in pairs),
        "login_errors": sum(p["logins"]["errors"] for p in pairs)}
    out["p99_ratio"] = (out["flooded"]["p99_us"] / out["alone"]["p99_us"]
                        if out["alone"]["p99_us"] else 0.0)
    out["rps_ratio"] = (out["flooded"]["rps"] / out["alone"]["rps"]
                        if out["alone"]["rps"] else 0.0)
    out["p99_ratios"] = [round(p["flooded"]["p99_us"] / max(p["alone"]["p99_us"], 1), 2)
                         for p in pairs]
    if profile_it:
        out["profile"] = profile_under_load(b, t, f"flood-profile-{label}", rate, flood=True)
        drain_logins(t)
    return out


# --- DPoP and device-signature cost: GET /v1/wallet, and in-process --------------------

def phase_wallet(b: Bench, t: Target, rate: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for variant in ("bearer", "dpop"):
        preflight_wallet(t, variant)
        wallet_run(t, variant, WARMUP_S, rate, f"wallet-{variant}-warmup")
        before = batch_counters(t.admin, t.admin_headers)
        run = wallet_run(t, variant, b.seconds, rate, f"wallet-{variant}")
        run.update(batch_figures(before, batch_counters(t.admin, t.admin_headers), b.seconds))
        b.log(f"  GET /v1/wallet, {variant}: {describe_run(run)};"
              f" {run.get('server_cpu_us_per_req') or 0:,.0f} µs server CPU per request")
        if run["exhausted_threads"]:
            b.log("  NOTE: the prepared requests ran out: lower bound")
        out[variant] = stored_figures(run)
        rate = max(run["rps"], 100.0)  # the DPoP run needs no more proofs than that
    bearer, dpop = out["bearer"], out["dpop"]
    out["dpop_over_bearer"] = dpop["rps"] / bearer["rps"] if bearer["rps"] else 0.0
    if dpop.get("server_cpu_us_per_req") and bearer.get("server_cpu_us_per_req"):
        out["dpop_extra_cpu_us"] = round(dpop["server_cpu_us_per_req"]
                                         - bearer["server_cpu_us_per_req"], 1)
    return out


def phase_auth_crypto(b: Bench) -> dict[str, Any]:
    iterations = 1000 if b.args.quick else 3000
    b.log(f"(g) DPoP and device signatures in-process (bench/auth_crypto.py, {iterations}"
          " calls each)")
    figures = auth_crypto.measure(iterations)
    b.log("  " + ", ".join(f"{k} {v:.1f} µs" for k, v in figures.items()))
    return {"iterations": iterations, "median_us": figures}
