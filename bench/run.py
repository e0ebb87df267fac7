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
(h) signing: the pay path where half the customers hold a device certificate and sign
    every payment (``Anfu-Txn-Signature``) against the other half, who do not
    (bench/phase_signing.py).

Load comes from wrk (``apt-get install -y wrk``) with bench/*.lua; data is prepared
in-process by bench/prepare.py. ``--only`` / ``--skip`` pick phases; ``--profile`` also
samples the pay path and the pay path under the login flood with py-spy."""

from __future__ import annotations

import argparse
import json
import math
import os
import platform as host
import shutil
import subprocess
import sys
import time
from typing import Any

import harness
import prepare
import profiling
import report
from context import (
    HASH_POOL_BEFORE,
    LOGIN_CONNECTIONS,
    PROFILE_SLACK_S,
    RESULTS,
    WARMUP_S,
    Bench,
    Target,
    hash_pool_now,
)
from phase_signing import phase_signing
from phases_auth import phase_auth_crypto, phase_flood, phase_logins, phase_wallet
from phases_pay import (
    pay_checks,
    phase_ceiling,
    phase_ledger,
    phase_ledger_batched,
    phase_pay,
    postgres_group,
)
from phases_trust import phase_log, phase_pki, phase_tls

from anfu.config import Settings

PG_URL = os.environ.get("ANFU_BENCH_PG_URL",
                        "postgresql+psycopg://postgres@127.0.0.1:5432/anfu_bench")
PHASES = {
    "ceiling": "(a) bare FastAPI + Ed25519 + SQLite write per request: the ceiling",
    "pay": "(b) pay path on SQLite: DPoP-bound and Bearer sessions",
    "ledger": "(c) ledger alone, in-process",
    "postgres": "(d) pay path on PostgreSQL",
    "logins": "(e) logins/s through POST /v1/sessions (Argon2id, default cost)",
    "flood": "(f) pay p99 alone and under a login flood, hash pool now and as it was",
    "auth": "(g) DPoP and device-signature cost: in-process, and GET /v1/wallet end to end",
    "signing": "(h) pay path with transaction signing (device certificate) vs without",
    "pki": "(i) device-certificate issuance/s; cached OCSP answers/s vs GET /healthz",
    "log": "(j) transparency log: appends/s vs bare inserts; proofs at 1,000,000 leaves",
    "tls": "(k) TLS and mutual TLS vs plain HTTP: req/s, handshake, signed merchant call",
}
SQLITE_PHASES = ("pay", "auth", "logins", "flood", "signing")


# --- the SQLite platform: pay, auth, logins, flood -------------------------------------

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
    if b.wants("signing"):
        # Last: once half the customers hold a certificate, their payments must be signed.
        rate = 1.5 * measured_pay
        need = math.ceil(rate * (2 * WARMUP_S + 4 * b.seconds) * 1.3) + 8 * b.connections
        prepare.add_trades(prepared, max(0, need - prepared.left), log=b.log)
        t.start(hash_pool_now())
        try:
            b.log("(h) pay path with transaction signing vs without")
            phases["signing"] = phase_signing(b, t, rate)
        finally:
            t.stop()
    if t.pay_runs:
        phases["sqlite_checks"] = pay_checks(b, t)



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
        for name, phase in (("pki", phase_pki), ("log", phase_log), ("tls", phase_tls)):
            if b.wants(name):
                b.log(PHASES[name])
                phases[name] = phase(b)
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
