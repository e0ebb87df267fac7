"""anfu's benchmark: ``python bench/run.py [--quick]`` (or ``make bench``).

Measures in one run, on this machine, and prints a Markdown table (also written with every
figure to bench/results/latest.json):

(a) the ceiling: a bare FastAPI endpoint (bench/ceiling_app.py) doing one Ed25519 verify and
    one SQLite write per request, served like the platform;
(b) the pay path: 64 connections paying prepared escrow trades through the mobile zone
    (``POST /v1/trades/{trade_no}/pay``: bearer token, idempotency record, ledger hold, state
    change, outbox event), then the ledger check and a paid-exactly-once check;
(c) the ledger alone: in-process transfers through the writer (group commit);
(d) the pay path again on PostgreSQL, when a server answers.

Load comes from wrk (``apt-get install -y wrk``) with bench/pay.lua; data is prepared
in-process by bench/prepare.py. ``--profile`` also samples the pay path with py-spy."""

from __future__ import annotations

import argparse
import base64
import json
import math
import os
import platform as host
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import checks
import harness
import httpx
import ledger
import prepare
import profiling
import report
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

RESULTS = harness.BENCH / "results"
PG_URL = os.environ.get("ANFU_BENCH_PG_URL",
                        "postgresql+psycopg://postgres@127.0.0.1:5432/anfu_bench")
WARMUP_S = 1
PER_CALL = 1000  # transfers per create_transfers call in phase (c), batch API
PROFILE_RUNS = 3  # py-spy recordings, one after the other, under one wrk run


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.seconds: int = args.seconds or (3 if args.quick else 10)
        self.profile_s: int = 4 if args.quick else 8
        self.connections: int = args.connections
        self.threads: int = args.threads
        self.work = Path(tempfile.mkdtemp(prefix="anfu-bench-"))

    def log(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    def wrk(self, url: str, script: str, script_args: list[str], seconds: float,
            server: harness.Service | None = None) -> dict[str, Any]:
        return harness.run_wrk(url, harness.BENCH / script, script_args, seconds=seconds,
                               connections=self.connections, threads=self.threads,
                               server_pid=server.pid if server else None)


def _brief(run: dict[str, Any]) -> str:
    return (f"{run['rps']:,.0f}/s, p50 {run['p50_us'] / 1000:.1f} ms, p99"
            f" {run['p99_us'] / 1000:.1f} ms, non-2xx {run['status_errors']},"
            f" socket errors {run['errors'] - run['status_errors']}; CPU: server"
            f" {run.get('server_cpu_pct', 0):.0f}%, wrk {run['wrk_cpu_pct']:.0f}%")


def _public(run: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in run.items() if k != "wrk_output"}


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


ACTIVE = "== all active threads (includes time waiting for the GIL or the database) =="
GIL = "== the thread holding the GIL only (where the CPU of Python goes) =="


def _profile_pay(b: Bench, service: harness.Service, lines: Path,
                 tag: str) -> dict[str, Any]:
    """Under load: a flame graph, then stacks of all active threads, then GIL-only."""
    b.log(f"  profiling the pay path with py-spy (3 x {b.profile_s} s)")
    RESULTS.mkdir(parents=True, exist_ok=True)
    raw, raw_gil = b.work / f"pay-profile{tag}.txt", b.work / f"pay-profile{tag}-gil.txt"
    svg = RESULTS / f"pay-profile{tag}.svg"
    with ThreadPoolExecutor(1) as pool:
        load = pool.submit(b.wrk, service.urls["mobile"], "pay.lua",
                           [str(lines), str(b.threads)], PROFILE_RUNS * b.profile_s + 3)
        time.sleep(1)
        closing = [profiling.record(service.pid, b.profile_s, svg),
                   profiling.record(service.pid, b.profile_s, raw, fmt="raw"),
                   profiling.record(service.pid, b.profile_s, raw_gil, fmt="raw", gil=True)]
        run = load.result()
    active = profiling.summarise(raw)
    gil = profiling.summarise(raw_gil, seconds=b.profile_s)
    text = profiling.render(active, ACTIVE) + "\n\n" + profiling.render(gil, GIL)
    (RESULTS / f"pay-profile{tag}.summary.txt").write_text(text + "\n")
    b.log("\n".join("    " + line for line in text.splitlines()))
    return {"active": active, "gil": gil, "py_spy": closing, "load": _public(run),
            "svg": str(svg.relative_to(harness.ROOT))}


def phase_pay(b: Bench, name: str, database_url: str, home: Path,
              bound_rps: float, profile_it: bool) -> dict[str, Any]:
    """Prepare trades sized to what ``bound_rps`` could pay, serve, pay, check."""
    sets = {"warmup": math.ceil(bound_rps * WARMUP_S * 1.3) + b.connections,
            "measure": math.ceil(bound_rps * b.seconds * 1.3) + b.connections}
    if profile_it:
        sets["profile"] = math.ceil(bound_rps * (PROFILE_RUNS * b.profile_s + 3) * 1.3)
    b.log(f"  preparing {sum(sets.values()):,} trades in-process ({database_url.split(':')[0]})")
    prepared = prepare.prepare(home=home, database_url=database_url, sets=sets, log=b.log)
    service = harness.start_platform(home, database_url)
    out: dict[str, Any] = {"database": name, "prepared_trades": sets,
                           "prepare_seconds": round(prepared.seconds, 1)}
    runs: list[dict[str, Any]] = []
    try:
        mobile, admin = service.urls["mobile"], service.urls["admin"]
        args = [str(b.threads)]
        runs.append(b.wrk(mobile, "pay.lua", [str(prepared.files["warmup"]), *args],
                          WARMUP_S))
        before = _batches(admin)
        run = b.wrk(mobile, "pay.lua", [str(prepared.files["measure"]), *args], b.seconds,
                    service)
        after = _batches(admin)
        runs.append(run)
        b.log(f"  measured: {_brief(run)}")
        out.update(_public(run))
        out["exhausted"] = bool(run["exhausted_threads"])
        commits = after[1] - before[1]
        out["mean_batch"] = (after[0] - before[0]) / commits if commits else 0.0
        out["commits_per_s"] = commits / b.seconds
        if profile_it:
            tag = "" if name == "sqlite" else f"-{name}"
            out["profile"] = _profile_pay(b, service, prepared.files["profile"], tag)
            runs.append(out["profile"]["load"])
        time.sleep(1)  # let requests cut off at the end of a run finish their commit
        reply = httpx.get(f"{admin}/v1/ledger/check", timeout=120)
        out["ledger_check"] = {"status": reply.status_code, **reply.json()}
    finally:
        service.stop()
    out["check"] = checks.paid_exactly_once(
        database_url, answered=sum(r["ok"] for r in runs),
        in_flight_max=b.connections * len(runs), amount=prepare.TRADE_AMOUNT,
        unsure=sum(b.connections for r in runs if r["exhausted_threads"]))
    b.log(f"  ledger check ok: {out['ledger_check'].get('ok')};"
          f" paid exactly once: {out['check']['ok']} ({out['check']['paid']:,} trades)"
          + "".join(f"\n  PROBLEM: {p}" for p in out["check"]["problems"]))
    if out["exhausted"]:
        b.log("  NOTE: the prepared trades ran out during the measured run: lower bound")
    return out


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


def _environment() -> dict[str, Any]:
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
            else None, "load_before": " ".join(f"{x:.2f}" for x in os.getloadavg())}


def main() -> int:
    parser = argparse.ArgumentParser(description="anfu benchmark (issue 2, section 10)")
    parser.add_argument("--quick", action="store_true", help="3 s per run instead of 10 s")
    parser.add_argument("--seconds", type=int, default=0, help="seconds per measured run")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--profile", action="store_true",
                        help="also sample the pay paths with py-spy (pip install py-spy)")
    parser.add_argument("--pg-url", default=PG_URL,
                        help="PostgreSQL for phase (d); its public schema is dropped"
                        " (default: database anfu_bench on 127.0.0.1:5432, created if missing;"
                        " env ANFU_BENCH_PG_URL)")
    parser.add_argument("--no-postgres", action="store_true", help="skip phase (d)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    if harness.wrk_path() is None:
        print(harness.WRK_HINT, file=sys.stderr)
        return 2
    if args.profile and not profiling.available():
        print(profiling.PY_SPY_HINT, file=sys.stderr)
        return 2
    b = Bench(args)
    results: dict[str, Any] = {
        "started_at": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "seconds": b.seconds,
        "connections": b.connections, "wrk_threads": b.threads,
        "environment": _environment(), "targets": report.TARGETS, "phases": {}}
    phases = results["phases"]
    b.log(f"work folder: {b.work}")
    started = time.perf_counter()
    try:
        phases["ceiling"] = phase_ceiling(b)
        bound = phases["ceiling"]["best_rps"]
        b.log("(b) pay path on SQLite through the mobile zone")
        home = b.work / "sqlite"
        phases["pay_sqlite"] = phase_pay(b, "sqlite", f"sqlite:///{home / 'anfu.db'}", home,
                                         max(bound, report.TARGETS["pay_sqlite_per_s"]),
                                         args.profile)
        phases["ledger"] = phase_ledger(b)
        phases["ledger_batched"] = phase_ledger_batched(b)
        b.log("(d) pay path on PostgreSQL")
        reason = "--no-postgres" if args.no_postgres else _pg_ready(args.pg_url)
        if reason is None:
            prepare.reset_postgres(args.pg_url)
            phases["pay_postgres"] = phase_pay(
                b, "postgresql", args.pg_url, b.work / "postgres",
                max(bound, report.TARGETS["pay_postgres_per_s"]), args.profile)
        else:
            b.log(f"  skipped: {reason}")
            phases["pay_postgres"] = {"skipped": reason}
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
        print("profiles: bench/results/pay-profile*.svg and pay-profile*.summary.txt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
