"""The table the benchmark prints (Markdown, so it can be pasted into docs) and the verdicts
against the targets of issue 2, section 10."""

from __future__ import annotations

from typing import Any

TARGETS = {
    "pay_sqlite_per_s": 2500.0,
    "pay_sqlite_ratio": 0.50,
    "pay_sqlite_p99_ms": 50.0,
    "ledger_per_s": 40000.0,
    "pay_postgres_per_s": 1200.0,
}
LEDGER_ROWS = (("ledger", "(c) ledger alone, SQLite: one transfer per job"),
               ("ledger_batched", "(c) ledger alone, SQLite: batch API"))


def _rate(value: float) -> str:
    return f"{value:,.0f}"


def _ms(us: float) -> str:
    return f"{us / 1000:,.1f}"


def _cpu(run: dict[str, Any]) -> str:
    return (f"CPU: server {run.get('server_cpu_pct', 0):.0f}%,"
            f" wrk {run.get('wrk_cpu_pct', 0):.0f}%")


def _at_least(value: float, target: float) -> str:
    if value >= target:
        return "met"
    return f"MISSED by {target - value:,.0f} ({100 * (1 - value / target):.0f}% short)"


def verdicts(results: dict[str, Any]) -> dict[str, Any]:
    phases = results["phases"]
    out: dict[str, Any] = {}
    ceiling = phases.get("ceiling", {}).get("best_rps", 0.0)
    pay = phases.get("pay_sqlite", {})
    if "rps" in pay:
        ratio = pay["rps"] / ceiling if ceiling else 0.0
        pay["ratio_to_ceiling"] = ratio
        out["pay_sqlite_per_s"] = _at_least(pay["rps"], TARGETS["pay_sqlite_per_s"])
        out["pay_sqlite_ratio"] = ("met" if ratio >= TARGETS["pay_sqlite_ratio"] else
                                   f"MISSED: {100 * ratio:.0f}% of the ceiling, target 50%")
        p99 = pay["p99_us"] / 1000
        out["pay_sqlite_p99_ms"] = ("met" if p99 <= TARGETS["pay_sqlite_p99_ms"] else
                                    f"MISSED: {p99:,.0f} ms, {p99 / 50:.1f}x the 50 ms limit")
    for key, _label in LEDGER_ROWS:
        if "tps" in phases.get(key, {}):
            out[f"{key}_per_s"] = _at_least(phases[key]["tps"], TARGETS["ledger_per_s"])
    pg = phases.get("pay_postgres", {})
    if "rps" in pg:
        pg["ratio_to_ceiling"] = pg["rps"] / ceiling if ceiling else 0.0
        out["pay_postgres_per_s"] = _at_least(pg["rps"], TARGETS["pay_postgres_per_s"])
    return out


def _pay_rows(label: str, pay: dict[str, Any], target: str, verdict: str,
              ratio_target: str, ratio_verdict: str) -> list[str]:
    if "rps" not in pay:
        return [f"| {label} | skipped: {pay.get('skipped', 'not run')} | | | | |"]
    note = " (trades ran out: lower bound)" if pay.get("exhausted") else ""
    check = pay.get("check", {})
    ledger_ok = pay.get("ledger_check", {}).get("ok")
    return [f"| {label} | {_rate(pay['rps'])} payments/s{note} | {_ms(pay['p50_us'])} |"
            f" {_ms(pay['p99_us'])} | {target} | {verdict} |",
            f"| &nbsp;&nbsp;pay / ceiling | {100 * pay.get('ratio_to_ceiling', 0):.1f}% |"
            f" | | {ratio_target} | {ratio_verdict} |",
            f"| &nbsp;&nbsp;checks | ledger check {'ok' if ledger_ok else 'FAILED'};"
            f" {check.get('paid', 0):,} trades paid exactly once:"
            f" {'yes' if check.get('ok') else 'NO'}; errors {pay.get('errors', 0)};"
            f" mean commit batch {pay.get('mean_batch', 0):.0f}; {_cpu(pay)} | | | | |"]


def _ledger_row(label: str, led: dict[str, Any], verdict: str) -> str:
    if "tps" not in led:
        return f"| {label} | skipped: {led.get('skipped', 'not run')} | | | | |"
    invariants = "ok" if led["invariants_ok"] else "FAILED"
    how = f"{led['per_call']:,} per create_transfers call, " if led.get("per_call") else ""
    return (f"| {label} | {_rate(led['tps'])} transfers/s ({how}{led['transfers']:,} in"
            f" {led['seconds']:.1f} s, mean {led['mean_batch']:.0f} jobs per commit,"
            f" invariants {invariants}) | | | ≥ 40,000/s | {verdict} |")


def table(results: dict[str, Any]) -> str:
    phases = results["phases"]
    v = results.get("verdicts", {})
    env = results["environment"]
    head = (f"anfu benchmark, {results['started_at']} — {env['cpus']} CPUs, Python"
            f" {env['python']}, load {env['load_before']}, {results['seconds']} s per run,"
            f" {results['connections']} connections, wrk {results['wrk_threads']} threads")
    rows = ["| phase | figure | p50 ms | p99 ms | target | verdict |",
            "|---|---|---|---|---|---|"]
    ceiling = phases.get("ceiling", {})
    for key, label in (("serial", "(a) ceiling: Ed25519 + 1 SQLite commit per request"),
                       ("batched", "(a) ceiling: Ed25519 + 1 INSERT, group commit")):
        run = ceiling.get(key)
        if run:
            rows.append(f"| {label} | {_rate(run['rps'])} req/s ({_cpu(run)}) |"
                        f" {_ms(run['p50_us'])} | {_ms(run['p99_us'])} | | |")
    verdict = "; ".join(x for x in (v.get("pay_sqlite_per_s"), v.get("pay_sqlite_p99_ms"))
                        if x)
    workers = env.get("platform_workers", 1)
    procs = f" ({workers} platform processes)" if workers > 1 else ""
    rows += _pay_rows(f"(b) pay path, SQLite{procs}", phases.get("pay_sqlite", {}),
                      "≥ 2,500/s, p99 ≤ 50 ms", verdict, "≥ 50%",
                      v.get("pay_sqlite_ratio", ""))
    for key, label in LEDGER_ROWS:
        if key in phases:
            rows.append(_ledger_row(label, phases[key], v.get(f"{key}_per_s", "")))
    rows += _pay_rows(f"(d) pay path, PostgreSQL{procs}", phases.get("pay_postgres", {}),
                      "≥ 1,200/s", v.get("pay_postgres_per_s", ""), "", "")
    foot = ("CPU: share of one core used during the measured run (the machine has"
            f" {env['cpus']}); wrk runs on the same machine.")
    return head + "\n\n" + "\n".join(rows) + "\n\n" + foot
