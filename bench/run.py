"""anfu's benchmark: ``python bench/run.py [--quick] [--only PHASES]`` (or ``make bench``).

Measures in one run, on this machine, and prints a Markdown table (also written with every
figure to bench/results/latest.json):

(a) ceiling: a bare FastAPI endpoint (bench/ceiling_app.py) doing one Ed25519 verify and
    one SQLite write per request, served like the platform;
(b) pay: 64 connections paying prepared escrow trades through the mobile zone
    (``POST /v1/trades/{trade_no}/pay``) as logged-in phones do: a session bound to a
    hardware device key (``Authorization: DPoP`` + a one-time DPoP proof per request), and
    the same with unbound sessions (``Authorization: Bearer``), then the ledger check and a
    paid-exactly-once check;
(c) ledger: in-process transfers through the writer (group commit);
(d) postgres: the pay path again on PostgreSQL, when a server answers;
(e) logins: the password step of ``POST /v1/sessions`` (one Argon2id verify at the
    platform's default cost), 50 connections, against threads / verify time;
(f) flood: the pay path's p99 alone and while 50 connections flood logins, with the hash
    pool as it is and as it was (2 threads per process, normal priority);
(g) auth: DPoP and device-signature checks in-process (bench/auth_crypto.py), and
    ``GET /v1/wallet`` end to end with Bearer and with DPoP.

Load comes from wrk (``apt-get install -y wrk``) with bench/*.lua; data is prepared
in-process by bench/prepare.py. ``--only`` / ``--skip`` pick phases; ``--profile`` also
samples the pay path and the pay path under the login flood with py-spy."""

from __future__ import annotations

import argparse
import base64
import json
import math
import os
import platform as host
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import auth_crypto
import checks
import harness
import httpx
import ledger
import prepare
import profiling
import report
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from anfu.config import Settings
from anfu.crypto.passwords import PasswordHasher
from anfu.identity.assurance import load_policy

RESULTS = harness.BENCH / "results"
PG_URL = os.environ.get("ANFU_BENCH_PG_URL",
                        "postgresql+psycopg://postgres@127.0.0.1:5432/anfu_bench")
WARMUP_S = 1
PER_CALL = 1000  # transfers per create_transfers call in phase (c), batch API
PROFILE_SLACK_S = 10  # the load under py-spy outlasts the recordings by this much
LOGIN_CONNECTIONS = 50
LOGIN_TIMEOUT_S = 30  # a login queued behind 49 others for the hash pool can take seconds
FLOOD_LEAD_S = 1  # the login flood starts this long before the pay load, ends after it
PHASES = {
    "ceiling": "(a) bare FastAPI + Ed25519 + SQLite write per request: the ceiling",
    "pay": "(b) pay path on SQLite: DPoP-bound and Bearer sessions",
    "ledger": "(c) ledger alone, in-process",
    "postgres": "(d) pay path on PostgreSQL",
    "logins": "(e) logins/s through POST /v1/sessions (Argon2id, default cost)",
    "flood": "(f) pay p99 alone and under a login flood, hash pool now and as it was",
    "auth": "(g) DPoP and device-signature cost: in-process, and GET /v1/wallet end to end",
}
SQLITE_PHASES = ("pay", "auth", "logins", "flood")
# The hash pool as it was before ANFU_HASH_WORKERS / ANFU_HASH_NICE (flood, "before").
HASH_POOL_BEFORE = {"ANFU_HASH_WORKERS": "2", "ANFU_HASH_NICE": "0"}


def hash_pool_now() -> dict[str, str]:
    return {f"ANFU_{name.upper()}": str(Settings.model_fields[name].default)
            for name in ("hash_workers", "hash_nice")}


class Bench:
    def __init__(self, args: argparse.Namespace, phases: list[str]) -> None:
        self.args = args
        self.phases = phases
        self.seconds: int = args.seconds or (3 if args.quick else 10)
        self.profile_s: int = 4 if args.quick else 8
        self.connections: int = args.connections
        self.threads: int = args.threads
        self.work = Path(tempfile.mkdtemp(prefix="anfu-bench-"))
        # A DPoP proof is made before its run starts and must still be young enough at the
        # run's last request: keep the platform's default window unless a run is too long.
        longest = max(self.seconds, self.profile_s + PROFILE_SLACK_S if args.profile else 0)
        default_age = int(Settings.model_fields["dpop_max_age_s"].default)
        self.dpop_max_age_s = (default_age if longest + 30 <= default_age
                               else min(600, 2 * longest + 60))
        self.level3_s = load_policy().max_age_s[3]
        self.flood_pairs: int = args.flood_pairs or (1 if args.quick else 2)

    def log(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    def wants(self, *names: str) -> bool:
        return any(name in self.phases for name in names)

    def platform_env(self) -> dict[str, str]:
        return {"ANFU_DPOP_MAX_AGE_S": str(self.dpop_max_age_s)}

    def wrk(self, url: str, script: str, script_args: list[str], seconds: float,
            server: harness.Service | None = None, connections: int | None = None,
            timeout_s: int = 10) -> dict[str, Any]:
        return harness.run_wrk(url, harness.BENCH / script, script_args, seconds=seconds,
                               connections=connections or self.connections,
                               threads=self.threads,
                               server_pid=server.pid if server else None,
                               timeout_s=timeout_s)


class Target:
    """One prepared database and the platform serving it, restartable with other settings;
    it remembers every pay run, for the paid-exactly-once check at the end."""

    def __init__(self, b: Bench, name: str, database_url: str, home: Path,
                 prepared: prepare.Prepared) -> None:
        self.b, self.name, self.url, self.home = b, name, database_url, home
        self.prepared = prepared
        self.service: harness.Service | None = None
        self.env: dict[str, str] = {}
        self.pay_runs: list[dict[str, Any]] = []
        self.preflight_paid = 0
        self.ledger_checks: list[dict[str, Any]] = []
        self.lines = home / "lines"
        self.lines.mkdir(parents=True, exist_ok=True)

    def start(self, env: dict[str, str] | None = None) -> None:
        self.env = {**self.b.platform_env(), **(env or {})}
        self.service = harness.start_platform(self.home, self.url, self.env)

    @property
    def svc(self) -> harness.Service:
        assert self.service is not None, "the platform is not running"
        return self.service

    @property
    def mobile(self) -> str:
        return self.svc.urls["mobile"]

    @property
    def admin(self) -> str:
        return self.svc.urls["admin"]

    def stop(self) -> None:
        if self.service is None:
            return
        try:
            time.sleep(1)  # let requests cut off at the end of a run finish their commit
            reply = httpx.get(f"{self.admin}/v1/ledger/check", timeout=120)
            self.ledger_checks.append({"status": reply.status_code, **reply.json()})
        finally:
            self.service.stop()
            self.service = None

    def ensure_fresh(self, seconds: float) -> None:
        """Session proofs young enough that level 3 (what paying a first-time payee needs)
        lasts until the end of the next ``seconds``, and access tokens that live that long;
        else stamp the proofs anew / mint new tokens (as a phone's step-up and refresh do)."""
        now, p = time.time(), self.prepared
        proofs = now - p.proved_at + seconds + 30 > self.b.level3_s
        tokens = now - p.tokens_at + seconds + 30 > p.settings.access_token_ttl_s
        if proofs or tokens:
            prepare.refresh(p, proofs=proofs, tokens=tokens)
            self.b.log("  " + " and ".join(
                (["session proofs stamped anew"] if proofs else [])
                + (["access tokens minted anew"] if tokens else [])))

    def check_paid(self) -> dict[str, Any]:
        runs = self.pay_runs
        return checks.paid_exactly_once(
            self.url, answered=sum(r["ok"] for r in runs) + self.preflight_paid,
            in_flight_max=self.b.connections * len(runs), amount=prepare.TRADE_AMOUNT,
            unsure=sum(self.b.connections for r in runs if r["exhausted_threads"]))


def _brief(run: dict[str, Any]) -> str:
    return (f"{run['rps']:,.0f}/s, p50 {run['p50_us'] / 1000:.1f} ms, p99"
            f" {run['p99_us'] / 1000:.1f} ms, non-2xx {run['status_errors']},"
            f" socket errors {run['errors'] - run['status_errors']}; CPU: server"
            f" {run.get('server_cpu_pct', 0):.0f}%, wrk {run['wrk_cpu_pct']:.0f}%")


def _public(run: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in run.items() if k != "wrk_output"}


def _count(rate: float, seconds: float, connections: int) -> int:
    return math.ceil(rate * seconds * 1.3) + connections


def phase_ceiling(b: Bench) -> dict[str, Any]:
    b.log("(a) ceiling: bare FastAPI, Ed25519 verify + SQLite write per request")
    folder = b.work / "ceiling"
    folder.mkdir()
    key = Ed25519PrivateKey.generate()
    (folder / "public.pem").write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    body = secrets.token_hex(32)
    signature = base64.b64encode(key.sign(body.encode())).decode()
    service = harness.start_ceiling(folder, folder / "public.pem")
    out: dict[str, Any] = {}
    try:
        url = service.urls["ceiling"]
        b.wrk(url, "ceiling.lua", ["/batched", signature, body], WARMUP_S)
        for mode in ("serial", "batched"):
            run = b.wrk(url, "ceiling.lua", [f"/{mode}", signature, body], b.seconds,
                        service)
            b.log(f"  {mode}: {_brief(run)}")
            out[mode] = _public(run)
    finally:
        service.stop()
    out["best_rps"] = max(out["serial"]["rps"], out["batched"]["rps"])
    return out


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def _batches(admin: str) -> tuple[float, float]:
    text = httpx.get(f"{admin}/metrics", timeout=10).text
    return (_metric(text, "anfu_write_batch_size_sum"),
            _metric(text, "anfu_write_batch_size_count"))


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
    count = _count(rate, seconds, t.b.connections)
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


def _mean_batch(before: tuple[float, float], after: tuple[float, float],
                seconds: float) -> dict[str, float]:
    commits = after[1] - before[1]
    return {"mean_batch": (after[0] - before[0]) / commits if commits else 0.0,
            "commits_per_s": commits / seconds}


ACTIVE = "== all active threads (includes time waiting for the GIL or the database) =="
GIL = "== the thread holding the GIL only (where the CPU of Python goes) =="


def _profile(b: Bench, t: Target, tag: str, rate: float,
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
    return {"active": active, "gil": gil, "py_spy": closing, "load": _public(run),
            "logins": _public(logins) if logins else None,
            "svg": str(svg.relative_to(harness.ROOT))}


def phase_pay(b: Bench, t: Target, rate: float, profile_it: bool) -> dict[str, Any]:
    """DPoP-bound sessions, then Bearer sessions, each warmed up and then measured."""
    out: dict[str, Any] = {"database": t.name}
    for variant in ("dpop", "bearer"):
        preflight_pay(t, variant)
        pay_run(t, variant, WARMUP_S, rate, f"pay-{variant}-warmup")
        lines = pay_lines(t, variant, b.seconds, rate, f"pay-{variant}")
        before = _batches(t.admin)
        run = pay_wrk(t, lines, variant, b.seconds)
        run.update(_mean_batch(before, _batches(t.admin), b.seconds))
        b.log(f"  {variant}: {_brief(run)}")
        if run["exhausted_threads"]:
            b.log("  NOTE: the prepared trades ran out during the measured run: lower bound")
        out[variant] = _public(run)
    out["dpop_over_bearer"] = (out["dpop"]["rps"] / out["bearer"]["rps"]
                               if out["bearer"]["rps"] else 0.0)
    if profile_it:
        tag = "pay-profile" if t.name == "sqlite" else f"pay-profile-{t.name}"
        out["profile"] = _profile(b, t, tag, max(1.5 * out["dpop"]["rps"], 100.0))
    return out


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
    b.log(f"  logins ({label}): {_brief(run)}")
    b.log(f"  one Argon2id verify in-process: {argon2['single_ms']:.1f} ms alone,"
          f" {argon2['two_threads_ms']:.1f} ms each with two at once")
    return {**_public(run), "argon2": argon2,
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
        b.log(f"  pay alone ({label}): {_brief(alone)}")
        lines = pay_lines(t, "dpop", b.seconds, rate, f"flood-{label}-flooded-{n}")
        with ThreadPoolExecutor(1) as pool:
            logins = pool.submit(login_wrk, t, b.seconds + 2 * FLOOD_LEAD_S)
            time.sleep(FLOOD_LEAD_S)
            flooded = pay_wrk(t, lines, "dpop", b.seconds)
            login_run = logins.result()
        b.log(f"  pay under the login flood ({label}): {_brief(flooded)}")
        b.log(f"  logins meanwhile: {_brief(login_run)}")
        login_run["drained_after_s"] = round(drain_logins(t), 1)
        pairs.append({"alone": _public(alone), "flooded": _public(flooded),
                      "logins": _public(login_run)})

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
        out["profile"] = _profile(b, t, f"flood-profile-{label}", rate, flood=True)
        drain_logins(t)
    return out


# --- GET /v1/wallet, Bearer vs DPoP -----------------------------------------------------

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
    count = _count(rate, seconds, t.b.connections)
    path = prepare.wallet_lines(t.prepared, t.lines / f"{label}.lines", count, variant,
                                t.mobile)
    run = t.b.wrk(t.mobile, "wallet.lua", [str(path), str(t.b.threads)], seconds, t.svc)
    run["variant"] = variant
    return run


def phase_wallet(b: Bench, t: Target, rate: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for variant in ("bearer", "dpop"):
        preflight_wallet(t, variant)
        wallet_run(t, variant, WARMUP_S, rate, f"wallet-{variant}-warmup")
        before = _batches(t.admin)
        run = wallet_run(t, variant, b.seconds, rate, f"wallet-{variant}")
        run.update(_mean_batch(before, _batches(t.admin), b.seconds))
        b.log(f"  GET /v1/wallet, {variant}: {_brief(run)};"
              f" {run.get('server_cpu_us_per_req') or 0:,.0f} µs server CPU per request")
        if run["exhausted_threads"]:
            b.log("  NOTE: the prepared requests ran out: lower bound")
        out[variant] = _public(run)
        rate = max(run["rps"], 100.0)  # the DPoP run needs no more proofs than that
    bearer, dpop = out["bearer"], out["dpop"]
    out["dpop_over_bearer"] = dpop["rps"] / bearer["rps"] if bearer["rps"] else 0.0
    if dpop.get("server_cpu_us_per_req") and bearer.get("server_cpu_us_per_req"):
        out["dpop_extra_cpu_us"] = round(dpop["server_cpu_us_per_req"]
                                         - bearer["server_cpu_us_per_req"], 1)
    return out


# --- the SQLite platform: pay, auth, logins, flood --------------------------------------

def sqlite_group(b: Bench, phases: dict[str, Any], bound: float) -> None:
    home = b.work / "sqlite"
    url = f"sqlite:///{home / 'anfu.db'}"
    pay_rate = max(bound, report.TARGETS["pay_sqlite_per_s"])
    runs = 0.0
    if b.wants("pay"):
        runs += 2 * (WARMUP_S + b.seconds)
        if b.args.profile:
            runs += b.profile_s + PROFILE_SLACK_S
    b.log("(b, e, g) the platform on SQLite: preparing")
    settings = Settings(home=home, database_url=url, log_level="WARNING",
                        **harness.argon2_defaults())
    pool = math.ceil(pay_rate * runs * 1.3) + 8 * b.connections + 16
    prepared = prepare.prepare(home=home, database_url=url, trades_count=pool,
                               settings=settings, log=b.log)
    t = Target(b, "sqlite", url, home, prepared)
    measured_pay = pay_rate
    if b.wants("pay", "auth", "logins"):
        t.start(hash_pool_now())
        try:
            if b.wants("pay"):
                b.log("(b) pay path on SQLite through the mobile zone")
                phases["pay_sqlite"] = phase_pay(b, t, pay_rate, b.args.profile)
                measured_pay = max(phases["pay_sqlite"]["dpop"]["rps"], 50.0)
            if b.wants("auth"):
                b.log("(g) GET /v1/wallet: Bearer vs DPoP")
                phases["wallet"] = phase_wallet(b, t, 2 * pay_rate)
            if b.wants("logins"):
                b.log(f"(e) logins through POST /v1/sessions, {LOGIN_CONNECTIONS} connections")
                phases["logins"] = {"now": phase_logins(b, t, "hash pool now")}
        finally:
            t.stop()
    if b.wants("flood", "logins"):
        # Trades for each hash pool setting are made while the platform is stopped, sized
        # from the fastest payments/s seen so far (the first: from phase (b), else the
        # ceiling, else a guess; a run that runs out is flagged as a lower bound).
        flood_rate = 1.5 * (measured_pay if b.wants("pay") else (bound or 1000.0))
        per_config = (2 * b.flood_pairs + 1) * (b.seconds + WARMUP_S) + 2
        if b.args.profile:
            per_config += b.profile_s + PROFILE_SLACK_S
        configs = [("now", hash_pool_now())] if b.wants("flood") else []
        configs.append(("before", HASH_POOL_BEFORE))
        if b.wants("flood"):
            configs += [(f"{w} per process, nice {n}",
                         {"ANFU_HASH_WORKERS": w, "ANFU_HASH_NICE": n})
                        for w, n in b.args.flood_pools]
        for label, env in configs:
            if b.wants("flood"):
                need = math.ceil(flood_rate * per_config * 1.3) + 8 * b.connections
                prepare.add_trades(prepared, max(0, need - prepared.left), log=b.log)
            t.start(env)
            try:
                if b.wants("flood"):
                    b.log(f"(f) pay under a login flood, hash pool {label}: {env}")
                    flood = phase_flood(b, t, flood_rate, label,
                                        b.args.profile and label in ("now", "before"))
                    phases.setdefault("flood", {})[label] = flood
                    ran_out = any(p[k]["exhausted_threads"] for p in flood["pairs"]
                                  for k in ("alone", "flooded"))
                    flood_rate = (2 * flood_rate if ran_out else 1.5 * max(
                        p["alone"]["rps"] for p in flood["pairs"]))
                if b.wants("logins") and label == "before":
                    b.log("(e) logins again, with the hash pool as it was")
                    phases.setdefault("logins", {})["before"] = phase_logins(
                        b, t, "hash pool before")
            finally:
                t.stop()
    if t.pay_runs:
        phases["sqlite_checks"] = _checked(b, t)


def _checked(b: Bench, t: Target) -> dict[str, Any]:
    out = {"ledger_checks": t.ledger_checks, "check": t.check_paid(),
           "errors": sum(r["errors"] for r in t.pay_runs)}
    out["ledger_ok"] = bool(t.ledger_checks) and all(c.get("ok") for c in t.ledger_checks)
    b.log(f"  ledger check ok: {out['ledger_ok']}; paid exactly once:"
          f" {out['check']['ok']} ({out['check']['paid']:,} trades)"
          + "".join(f"\n  PROBLEM: {p}" for p in out["check"]["problems"]))
    return out


def postgres_group(b: Bench, phases: dict[str, Any], bound: float) -> None:
    b.log("(d) pay path on PostgreSQL")
    reason = "--no-postgres" if b.args.no_postgres else _pg_ready(b.args.pg_url)
    if reason is not None:
        b.log(f"  skipped: {reason}")
        phases["pay_postgres"] = {"skipped": reason}
        return
    prepare.reset_postgres(b.args.pg_url)
    home = b.work / "postgres"
    rate = max(bound, report.TARGETS["pay_postgres_per_s"])
    runs = 2 * (WARMUP_S + b.seconds) + (b.profile_s + PROFILE_SLACK_S if b.args.profile
                                         else 0)
    settings = Settings(home=home, database_url=b.args.pg_url, log_level="WARNING",
                        **harness.argon2_defaults())
    prepared = prepare.prepare(home=home, database_url=b.args.pg_url,
                               trades_count=math.ceil(rate * runs * 1.3) + 8 * b.connections,
                               settings=settings, log=b.log)
    t = Target(b, "postgresql", b.args.pg_url, home, prepared)
    t.start(hash_pool_now())
    try:
        phases["pay_postgres"] = phase_pay(b, t, rate, b.args.profile)
    finally:
        t.stop()
    phases["postgres_checks"] = _checked(b, t)


# --- in-process ------------------------------------------------------------------------

def phase_ledger(b: Bench) -> dict[str, Any]:
    b.log("(c) ledger alone: in-process transfers through the writer (group commit)")
    probe = ledger.run_ledger(b.work / "ledger-probe", transfers=2000, log=b.log)
    count = max(2000, min(1_000_000, round(probe["tps"] * b.seconds)))
    result = ledger.run_ledger(b.work / "ledger", transfers=count, log=b.log)
    result["probe_tps"] = probe["tps"]
    return result


def phase_ledger_batched(b: Bench) -> dict[str, Any]:
    """The same transfers through the batch API, when the platform has one."""
    try:
        import anfu.ledger.batch  # noqa: F401
    except ImportError as exc:
        return {"skipped": f"no batch API ({exc})"}
    probe = ledger.run_ledger(b.work / "ledger-batch-probe", transfers=2 * PER_CALL,
                              per_call=PER_CALL, log=b.log)
    count = max(2 * PER_CALL, min(3_000_000, round(probe["tps"] * b.seconds)))
    result = ledger.run_ledger(b.work / "ledger-batch", transfers=count, per_call=PER_CALL,
                               log=b.log)
    result["probe_tps"] = probe["tps"]
    return result


def phase_auth_crypto(b: Bench) -> dict[str, Any]:
    iterations = 1000 if b.args.quick else 3000
    b.log(f"(g) DPoP and device signatures in-process (bench/auth_crypto.py, {iterations}"
          " calls each)")
    figures = auth_crypto.measure(iterations)
    b.log("  " + ", ".join(f"{k} {v:.1f} µs" for k, v in figures.items()))
    return {"iterations": iterations, "median_us": figures}


def _pg_ready(url: str) -> str | None:
    """Create the benchmark's database if the server answers; None when ready."""
    from sqlalchemy import create_engine, make_url, text

    target = make_url(url)
    server = target.set(database="postgres")
    reason = prepare.postgres_reachable(server.render_as_string(hide_password=False))
    if reason is not None:
        return reason
    engine = create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            exists = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :d"),
                                  {"d": target.database}).first()
            if exists is None:
                conn.execute(text(f'CREATE DATABASE "{target.database}"'))
    finally:
        engine.dispose()
    return prepare.postgres_reachable(url)


def _environment(b: Bench) -> dict[str, Any]:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=harness.ROOT, check=False).stdout.strip()
    changed = subprocess.run(["git", "status", "--porcelain", "--", "src"], capture_output=True,
                             text=True, cwd=harness.ROOT, check=False).stdout.splitlines()
    wrk = subprocess.run([harness.wrk_path() or "wrk", "-v"], capture_output=True, text=True,
                         check=False)
    return {"cpus": os.cpu_count(), "platform_workers": harness.platform_workers(),
            "python": host.python_version(),
            "machine": f"{host.system()} {host.machine()}", "commit": commit or None,
            "src_changes_not_committed": [line[3:] for line in changed],
            "wrk": (wrk.stdout + wrk.stderr).splitlines()[0] if wrk.stdout + wrk.stderr
            else None, "load_before": " ".join(f"{x:.2f}" for x in os.getloadavg()),
            "argon2": harness.argon2_defaults(), "hash_pool_now": hash_pool_now(),
            "hash_pool_before": HASH_POOL_BEFORE, "dpop_max_age_s": b.dpop_max_age_s,
            "level3_max_age_s": b.level3_s}


def _phase_list(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in PHASES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown phase(s) {', '.join(unknown)}; choose"
                                         f" from {', '.join(PHASES)}")
    return names


def _pools(text: str) -> list[tuple[str, str]]:
    pools = [tuple(part.strip().split(":")) for part in text.split(",") if part.strip()]
    if not all(len(p) == 2 and p[0].isdigit() and p[1].isdigit() for p in pools):
        raise argparse.ArgumentTypeError("hash pools are WORKERS:NICE pairs, e.g. 2:10,1:0")
    return [(p[0], p[1]) for p in pools]


def main() -> int:
    parser = argparse.ArgumentParser(
        description="anfu benchmark", formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="phases:\n" + "\n".join(f"  {k:<9} {v}" for k, v in PHASES.items()))
    parser.add_argument("--quick", action="store_true", help="3 s per run instead of 10 s")
    parser.add_argument("--seconds", type=int, default=0, help="seconds per measured run")
    parser.add_argument("--only", type=_phase_list, default=None, metavar="PHASES",
                        help="comma-separated phases to run (default: all)")
    parser.add_argument("--skip", type=_phase_list, default=[], metavar="PHASES",
                        help="comma-separated phases to leave out")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--flood-pools", type=_pools, default=[], metavar="W:N,...",
                        help="(f): also try these hash pools (ANFU_HASH_WORKERS:ANFU_HASH_NICE)")
    parser.add_argument("--flood-pairs", type=int, default=0,
                        help="(f): alone/flooded pairs per hash pool setting (default 2,"
                        " --quick 1)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--profile", action="store_true",
                        help="also sample the pay paths (and pay under the login flood) with"
                        " py-spy (pip install py-spy)")
    parser.add_argument("--pg-url", default=PG_URL,
                        help="PostgreSQL for phase (d); its public schema is dropped"
                        " (default: database anfu_bench on 127.0.0.1:5432, created if missing;"
                        " env ANFU_BENCH_PG_URL)")
    parser.add_argument("--no-postgres", action="store_true", help="skip phase (d)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    phases_wanted = [p for p in (args.only or list(PHASES)) if p not in args.skip]
    if harness.wrk_path() is None:
        print(harness.WRK_HINT, file=sys.stderr)
        return 2
    if args.profile and not profiling.available():
        print(profiling.PY_SPY_HINT, file=sys.stderr)
        return 2
    b = Bench(args, phases_wanted)
    results: dict[str, Any] = {
        "started_at": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "seconds": b.seconds,
        "connections": b.connections, "login_connections": LOGIN_CONNECTIONS,
        "wrk_threads": b.threads, "phases_run": phases_wanted,
        "environment": _environment(b), "targets": report.TARGETS, "phases": {}}
    phases = results["phases"]
    b.log(f"work folder: {b.work}; phases: {', '.join(phases_wanted)}")
    started = time.perf_counter()
    try:
        if b.wants("ceiling"):
            phases["ceiling"] = phase_ceiling(b)
        bound = phases.get("ceiling", {}).get("best_rps", 0.0)
        if b.wants(*SQLITE_PHASES):
            sqlite_group(b, phases, bound)
        if b.wants("ledger"):
            phases["ledger"] = phase_ledger(b)
            phases["ledger_batched"] = phase_ledger_batched(b)
        if b.wants("auth"):
            phases["auth_crypto"] = phase_auth_crypto(b)
        if b.wants("postgres"):
            postgres_group(b, phases, bound)
    finally:
        if not args.keep:
            shutil.rmtree(b.work, ignore_errors=True)
    results["total_seconds"] = round(time.perf_counter() - started, 1)
    results["verdicts"] = report.verdicts(results)
    text = report.table(results)
    results["table"] = text
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(text)
    print(f"\nfigures: {(RESULTS / 'latest.json').relative_to(harness.ROOT)}")
    if args.profile:
        print("profiles: bench/results/*-profile*.svg and *.summary.txt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
