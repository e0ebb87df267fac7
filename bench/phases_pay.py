"""Phases (a) ceiling, (b) pay on SQLite, (c) ledger and (d) pay on PostgreSQL, and the
checks after the pay runs on a database."""

from __future__ import annotations

import base64
import math
import secrets
from typing import Any

import harness
import ledger
import prepare
import report
from context import (
    PROFILE_SLACK_S,
    WARMUP_S,
    Bench,
    Target,
    batch_counters,
    batch_figures,
    describe_run,
    hash_pool_now,
    stored_figures,
)
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from traffic import pay_lines, pay_run, pay_wrk, preflight_pay, profile_under_load

from anfu.config import Settings

PER_CALL = 1000  # transfers per create_transfers call in phase (c), batch API


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
            b.log(f"  {mode}: {describe_run(run)}")
            out[mode] = stored_figures(run)
    finally:
        service.stop()
    out["best_rps"] = max(out["serial"]["rps"], out["batched"]["rps"])
    return out


def phase_pay(b: Bench, t: Target, rate: float, profile_it: bool) -> dict[str, Any]:
    """DPoP-bound sessions, then Bearer sessions, each warmed up and then measured."""
    out: dict[str, Any] = {"database": t.name}
    for variant in ("dpop", "bearer"):
        preflight_pay(t, variant)
        pay_run(t, variant, WARMUP_S, rate, f"pay-{variant}-warmup")
        lines = pay_lines(t, variant, b.seconds, rate, f"pay-{variant}")
        before = batch_counters(t.admin, t.admin_headers)
        run = pay_wrk(t, lines, variant, b.seconds)
        run.update(batch_figures(before, batch_counters(t.admin, t.admin_headers), b.seconds))
        b.log(f"  {variant}: {describe_run(run)}")
        if run["exhausted_threads"]:
            b.log("  NOTE: the prepared trades ran out during the measured run: lower bound")
        out[variant] = stored_figures(run)
    out["dpop_over_bearer"] = (out["dpop"]["rps"] / out["bearer"]["rps"]
                               if out["bearer"]["rps"] else 0.0)
    if profile_it:
        tag = "pay-profile" if t.name == "sqlite" else f"pay-profile-{t.name}"
        out["profile"] = profile_under_load(b, t, tag, max(1.5 * out["dpop"]["rps"], 100.0))
    return out


def pay_checks(b: Bench, t: Target) -> dict[str, Any]:
    out = {"ledger_checks": t.ledger_checks, "check": t.check_paid(),
           "errors": sum(r["errors"] for r in t.pay_runs)}
    out["ledger_ok"] = bool(t.ledger_checks) and all(c.get("ok") for c in t.ledger_checks)
    b.log(f"  ledger check ok: {out['ledger_ok']}; paid exactly once:"
          f" {out['check']['ok']} ({out['check']['paid']:,} trades)"
          + "".join(f"\n  PROBLEM: {p}" for p in out["check"]["problems"]))
    return out


def postgres_group(b: Bench, phases: dict[str, Any], bound: float) -> None:
    b.log("(d) pay path on PostgreSQL")
    reason = "--no-postgres" if b.args.no_postgres else pg_ready(b.args.pg_url)
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
    phases["postgres_checks"] = pay_checks(b, t)


def pg_ready(url: str) -> str | None:
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
