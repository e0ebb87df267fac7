"""The table the benchmark prints (Markdown, so it can be pasted into docs) and the verdicts
against the targets: issue 2, section 10 (pay path, ledger), and the identity issue (logins,
pay under a login flood, the cost of DPoP and device signatures)."""

from __future__ import annotations

from typing import Any

TARGETS = {
    "pay_sqlite_per_s": 2500.0,
    "pay_sqlite_ratio": 0.50,
    "pay_sqlite_p99_ms": 50.0,
    "ledger_per_s": 40000.0,
    "pay_postgres_per_s": 1200.0,
    "flood_p99_ratio": 2.0,  # pay p99 under a login flood / pay p99 alone
    "dpop_check_us": 150.0,  # DPoP + device-signature checks, per request
    "signing_ratio": 0.80,  # pay with transaction signing / pay without
    "issue_per_s": 500.0,  # device certificates
    "ocsp_per_s": 5000.0,
    "log_append_per_s": 100_000.0,  # transparency-log leaves, in batches
    "inclusion_proof_us": 1000.0,  # at 1,000,000 leaves
}
LEDGER_ROWS = (("ledger", "(c) ledger alone, SQLite: one transfer per job"),
               ("ledger_batched", "(c) ledger alone, SQLite: batch API"))
AUTH_ROWS = (("verify_dpop_es256", "verify_dpop, ES256 (bound device, key cached)"),
             ("verify_dpop_eddsa", "verify_dpop, EdDSA"),
             ("device_sig_es256", "device challenge signature, ES256"),
             ("device_sig_eddsa", "device challenge signature, EdDSA"))
INDENT = "&nbsp;&nbsp;"


def _rate(value: float) -> str:
    return f"{value:,.0f}"


def _ms(us: float) -> str:
    return f"{us / 1000:,.1f}"


def _pct(ratio: float) -> str:
    return f"{100 * ratio:.1f}%"


def _cpu(run: dict[str, Any]) -> str:
    return (f"CPU: server {run.get('server_cpu_pct', 0):.0f}%,"
            f" wrk {run.get('wrk_cpu_pct', 0):.0f}%")


def _at_least(value: float, target: float) -> str:
    if value >= target:
        return "met"
    return f"MISSED by {target - value:,.0f} ({100 * (1 - value / target):.0f}% short)"


def _at_most(value: float, limit: float, unit: str) -> str:
    if value <= limit:
        return "met"
    return f"MISSED: {value:,.1f} {unit}, {value / limit:.1f}x the {limit:g} {unit} limit"


def _pay_verdicts(pay: dict[str, Any], ceiling: float, out: dict[str, Any],
                  prefix: str, per_s: float) -> None:
    run = pay.get("dpop")
    if not run:
        return
    pay["ratio_to_ceiling"] = run["rps"] / ceiling if ceiling else 0.0
    bearer = pay.get("bearer", {})
    if bearer:
        pay["bearer_ratio_to_ceiling"] = bearer["rps"] / ceiling if ceiling else 0.0
    out[f"{prefix}_per_s"] = _at_least(run["rps"], per_s)


def verdicts(results: dict[str, Any]) -> dict[str, Any]:
    phases = results["phases"]
    out: dict[str, Any] = {}
    ceiling = phases.get("ceiling", {}).get("best_rps", 0.0)
    pay = phases.get("pay_sqlite", {})
    _pay_verdicts(pay, ceiling, out, "pay_sqlite", TARGETS["pay_sqlite_per_s"])
    if "dpop" in pay:
        ratio = pay["ratio_to_ceiling"]
        if ceiling:
            out["pay_sqlite_ratio"] = ("met" if ratio >= TARGETS["pay_sqlite_ratio"] else
                                       f"MISSED: {100 * ratio:.0f}% of the ceiling, target"
                                       " 50%")
        out["pay_sqlite_p99_ms"] = _at_most(pay["dpop"]["p99_us"] / 1000,
                                            TARGETS["pay_sqlite_p99_ms"], "ms")
    for key, _label in LEDGER_ROWS:
        if "tps" in phases.get(key, {}):
            out[f"{key}_per_s"] = _at_least(phases[key]["tps"], TARGETS["ledger_per_s"])
    _pay_verdicts(phases.get("pay_postgres", {}), ceiling, out, "pay_postgres",
                  TARGETS["pay_postgres_per_s"])
    for label, flood in phases.get("flood", {}).items():
        ratio = flood["p99_ratio"]
        limit = TARGETS["flood_p99_ratio"]
        out[f"flood_{label}"] = ("met" if ratio <= limit else
                                 f"MISSED: {ratio:.1f}x the unloaded p99, limit {limit:g}x")
    figures = phases.get("auth_crypto", {}).get("median_us", {})
    for key, _label in AUTH_ROWS:
        if key in figures:
            out[f"auth_{key}"] = _at_most(figures[key], TARGETS["dpop_check_us"], "µs")
    extra = phases.get("wallet", {}).get("dpop_extra_cpu_us")
    if extra is not None:
        out["wallet_dpop_extra"] = _at_most(extra, TARGETS["dpop_check_us"], "µs")
    return out


def _run_cells(run: dict[str, Any], unit: str) -> str:
    note = " (ran out of prepared requests: lower bound)" if run.get("exhausted_threads") \
        else ""
    return (f"{_rate(run['rps'])} {unit}{note} | {_ms(run['p50_us'])} |"
            f" {_ms(run['p99_us'])}")


def _errors(run: dict[str, Any]) -> str:
    return f"errors {run.get('errors', 0)}"


def _pay_rows(label: str, pay: dict[str, Any], checked: dict[str, Any], target: str,
              verdict: str, ratio_target: str, ratio_verdict: str) -> list[str]:
    if "dpop" not in pay:
        return [f"| {label} | skipped: {pay.get('skipped', 'not run')} | | | | |"]
    dpop, bearer = pay["dpop"], pay.get("bearer", {})
    rows = [f"| {label}: DPoP-bound session (device key, level 3) |"
            f" {_run_cells(dpop, 'payments/s')} | {target} | {verdict} |",
            f"| {INDENT}pay (DPoP) / ceiling | {_pct(pay.get('ratio_to_ceiling', 0))} | | |"
            f" {ratio_target} | {ratio_verdict} |"]
    if bearer:
        rows += [f"| {INDENT}Bearer session (unbound, passkey login, level 3) |"
                 f" {_run_cells(bearer, 'payments/s')} | | |",
                 f"| {INDENT}DPoP / Bearer | {_pct(pay.get('dpop_over_bearer', 0))} of the"
                 f" payments/s; p99 {dpop['p99_us'] / max(bearer['p99_us'], 1):.2f}x | | |"
                 " | |"]
    rows.append(f"| {INDENT}details | mean commit batch {dpop.get('mean_batch', 0):.0f} (DPoP),"
                f" {bearer.get('mean_batch', 0):.0f} (Bearer); {_cpu(dpop)} (DPoP);"
                f" session proofs at most {dpop.get('level3_age_at_end_s', 0):.0f} s old"
                " at the end | | | | |")
    if checked:
        check = checked.get("check", {})
        rows.append(f"| {INDENT}checks (all pay runs on this database) | ledger check"
                    f" {'ok' if checked.get('ledger_ok') else 'FAILED'};"
                    f" {check.get('paid', 0):,} trades paid exactly once:"
                    f" {'yes' if check.get('ok') else 'NO'}; errors {checked.get('errors', 0)}"
                    " | | | | |")
    return rows


def _ledger_row(label: str, led: dict[str, Any], verdict: str) -> str:
    if "tps" not in led:
        return f"| {label} | skipped: {led.get('skipped', 'not run')} | | | | |"
    invariants = "ok" if led["invariants_ok"] else "FAILED"
    how = f"{led['per_call']:,} per create_transfers call, " if led.get("per_call") else ""
    return (f"| {label} | {_rate(led['tps'])} transfers/s ({how}{led['transfers']:,} in"
            f" {led['seconds']:.1f} s, mean {led['mean_batch']:.0f} jobs per commit,"
            f" invariants {invariants}) | | | ≥ 40,000/s | {verdict} |")


def _pool(env: dict[str, str]) -> str:
    workers = env.get("ANFU_HASH_WORKERS", "?")
    nice = env.get("ANFU_HASH_NICE", "?")
    return f"{workers} Argon2 thread(s) per process, nice {nice}"


def _login_rows(logins: dict[str, Any], env: dict[str, Any]) -> list[str]:
    rows: list[str] = []
    cpus = env.get("cpus") or 1
    workers = env.get("platform_workers") or 1
    for key, run in logins.items():
        argon2 = run.get("argon2")
        ceiling = ""
        if argon2:
            threads = min(cpus, workers * int(run["hash_pool"].get("ANFU_HASH_WORKERS", 1)))
            best = threads / (argon2["single_ms"] / 1000)
            run["ceiling_per_s"] = best
            ceiling = (f"; {_pct(run['rps'] / best)} of {threads} thread(s) / one verify"
                       f" = {best:,.0f}/s")
            cpu = run.get("server_cpu_pct", 0) / 100
            if cpu:
                # On a shared machine the platform gets only part of the cores: how much of
                # the CPU it did get went into Argon2id.
                run["argon2_share_of_server_cpu"] = run["rps"] * argon2["single_ms"] / 1000 / cpu
                ceiling += (f"; logins/s x verify / server CPU ="
                            f" {_pct(run['argon2_share_of_server_cpu'])} of the CPU the"
                            " platform got went into Argon2id")
        rows.append(f"| (e) logins, password step, hash pool {key} ({_pool(run['hash_pool'])})"
                    f" | {_run_cells(run, 'logins/s')} | | |")
        rows.append(f"| {INDENT}answers | 401 step_up_required {run['ok']:,};"
                    f" {_errors(run)}; {_cpu(run)}{ceiling} | | | | |")
        if argon2:
            cost = argon2["cost"]
            rows.append(f"| {INDENT}one Argon2id verify in-process, before and after"
                        f" (m={cost['argon2_memory_kib']} KiB, t={cost['argon2_time_cost']},"
                        f" p={cost['argon2_parallelism']}) | {argon2['single_ms']:.1f} ms"
                        f" alone, {argon2['two_threads_ms']:.1f} ms each with two at once |"
                        " | | | |")
    return rows


def _flood_rows(flood: dict[str, Any], v: dict[str, Any]) -> list[str]:
    rows: list[str] = []
    for label, f in flood.items():
        alone, flooded, logins = f["alone"], f["flooded"], f["logins"]
        n = len(f.get("pairs", [])) or 1
        of = f" (median of {n})" if n > 1 else ""
        each = (f"; each pair: {', '.join(f'{r:.2f}x' for r in f['p99_ratios'])}"
                if n > 1 else "")
        rows += [f"| (f) pay alone{of}, hash pool {label} ({_pool(f['hash_pool'])}) |"
                 f" {_run_cells(alone, 'payments/s')} | | |",
                 f"| {INDENT}pay under a 50-connection login flood{of} |"
                 f" {_run_cells(flooded, 'payments/s')} | | |",
                 f"| {INDENT}p99 flooded / alone | {f['p99_ratio']:.2f}x{each} (payments/s"
                 f" {_pct(f['rps_ratio'])}; logins meanwhile {_rate(logins['rps'])}/s, p99"
                 f" {_ms(logins['p99_us'])} ms; errors {f.get('errors', 0)}, login errors"
                 f" {f.get('login_errors', 0)}) | | | ≤ 2x | {v.get(f'flood_{label}', '')} |"]
        if "loops_on_cpu_pct" in alone:
            rows.append(f"| {INDENT}the event loops, per second: on a CPU / waiting for one |"
                        f" alone {alone['loops_on_cpu_pct']:.0f}% /"
                        f" {alone['loops_waiting_pct']:.0f}%; flooded"
                        f" {flooded['loops_on_cpu_pct']:.0f}% /"
                        f" {flooded['loops_waiting_pct']:.0f}% (of one core, both"
                        " processes' loops summed; /proc schedstat) | | | | |")
    if flood:
        rows.append(f"| {INDENT}hash pool now = ANFU_HASH_WORKERS / ANFU_HASH_NICE defaults;"
                    " before = 2 threads per process at normal priority, as the platform had"
                    " them | | | | |")
    return rows


def _auth_rows(auth: dict[str, Any], wallet: dict[str, Any], v: dict[str, Any]) -> list[str]:
    rows: list[str] = []
    figures = auth.get("median_us", {})
    if figures:
        floor = figures.get("ceiling", 0.0)
        for key, label in AUTH_ROWS:
            if key in figures:
                ratio = f" ({figures[key] / floor:.0f}x the floor)" if floor else ""
                rows.append(f"| (g) {label}, in-process | {figures[key]:.1f} µs{ratio} | | |"
                            f" ≤ 150 µs | {v.get(f'auth_{key}', '')} |")
        if floor:
            rows.append(f"| {INDENT}floor: sha256 of 200 bytes + orjson.loads of the claims |"
                        f" {floor:.1f} µs | | | | |")
    if wallet.get("bearer") and wallet.get("dpop"):
        bearer, dpop = wallet["bearer"], wallet["dpop"]
        for name, run in (("Bearer", bearer), ("DPoP, one-time proofs", dpop)):
            rows.append(f"| (g) GET /v1/wallet, {name} | {_run_cells(run, 'req/s')} | | |")
            rows.append(f"| {INDENT}server CPU per request | "
                        f"{run.get('server_cpu_us_per_req') or 0:,.0f} µs ({_cpu(run)};"
                        f" {_errors(run)}) | | | | |")
        rows.append(f"| {INDENT}DPoP / Bearer | {_pct(wallet['dpop_over_bearer'])} of the"
                    f" req/s; p99 {dpop['p99_us'] / max(bearer['p99_us'], 1):.2f}x; DPoP adds"
                    f" {wallet.get('dpop_extra_cpu_us', 0):,.0f} µs of server CPU per request"
                    f" (proof check + jti write) | | | ≤ 150 µs |"
                    f" {v.get('wallet_dpop_extra', '')} |")
    return rows


def _signing_rows(signing: dict[str, Any] | None) -> list[str]:
    if not signing:
        return []
    rows = []
    for name in ("unsigned", "signed"):
        for i, run in enumerate(signing[name]):
            rows.append(f"| (h) pay, DPoP, {name} (run {i + 1}) | {_run_cells(run, 'req/s')}"
                        " | | |")
    ratio = signing["signed_over_unsigned"]
    verdict = "met" if ratio >= TARGETS["signing_ratio"] else "missed"
    rows.append(f"| {INDENT}signed / unsigned | {_pct(ratio)} | | | ≥ 80% | {verdict} |")
    return rows


def _trust_rows(phases: dict[str, Any]) -> list[str]:
    rows = []
    for key, label in (("pki", "(i) PKI"), ("log", "(j) transparency log"), ("tls", "(k) TLS")):
        if "error" in phases.get(key, {}):
            rows.append(f"| {label} | {phases[key]['error']} | | | | not measured |")
    pki = phases.get("pki", {})
    for run in pki.get("issuance", []):
        rows.append(f"| (i) device certificates issued, {run['db']} ({run['count']:,} at once)"
                    f" | {_rate(run['per_s'])}/s | | | ≥ 500/s |"
                    f" {_at_least(run['per_s'], TARGETS['issue_per_s'])} |")
    http = pki.get("http")
    if http:
        ceiling, ocsp = http["healthz"]["rps"], http["ocsp"]
        rows.append(f"| (i) ceiling: GET /healthz | {_rate(ceiling)} req/s | | | | |")
        rows.append(f"| (i) OCSP, cached answers | {_rate(ocsp['rps'])}/s"
                    f" ({_pct(ocsp['rps'] / ceiling)} of /healthz) | | {_ms(ocsp['p99_us'])}"
                    f" | ≥ 5,000/s | {_at_least(ocsp['rps'], TARGETS['ocsp_per_s'])} |")
    log = phases.get("log", {})
    if "append_leaves_per_s" in log:
        rows.append(f"| (j) ceiling: bare INSERTs of leaves, SQLite |"
                    f" {_rate(log['sqlite_insert_ceiling_rows_per_s'])} rows/s | | | | |")
        rows.append(f"| (j) log appends through the sequencer | {_rate(log['append_leaves_per_s'])}"
                    f" leaves/s ({_pct(log['append_vs_ceiling'])} of the ceiling) | | |"
                    f" ≥ 100,000/s |"
                    f" {_at_least(log['append_leaves_per_s'], TARGETS['log_append_per_s'])} |")
        inclusion = log["inclusion_proof_us"]
        verdict = _at_most(inclusion["p99_us"], TARGETS["inclusion_proof_us"], "µs")
        rows.append(f"| (j) inclusion proof at {log['tree_size']:,} leaves |"
                    f" mean {inclusion['mean_us']:.0f} µs | | {inclusion['p99_us'] / 1000:.3f}"
                    f" | < 1 ms | {verdict} |")
        rows.append(f"| {INDENT}consistency proof; cold rebuild of the tree |"
                    f" mean {log['consistency_proof_us']['mean_us']:.0f} µs;"
                    f" {log['cold_tree_rebuild_s']:.1f} s | | | | |")
    tls = phases.get("tls", {})
    if "keepalive_rps" in tls:
        keep, shake = tls["keepalive_rps"], tls["handshake_ms"]
        signed = tls["merchant_signed_ms"]
        rows.append(f"| (k) GET /healthz keep-alive, TLS vs plain | {_rate(keep['tls'])} vs"
                    f" {_rate(keep['plain'])} req/s ({_pct(keep['ratio_tls_to_plain'])}) | | | | |")
        rows.append(f"| (k) new connection + request, TLS vs plain | {shake['tls']:.1f} vs"
                    f" {shake['plain']:.1f} ms | | | | |")
        rows.append(f"| (k) signed merchant call, mTLS vs plain | {signed['tls_mtls']:.1f} vs"
                    f" {signed['plain']:.1f} ms ({signed['ratio_tls_to_plain']:.2f}x) | | | | |")
    return rows


def table(results: dict[str, Any]) -> str:
    phases = results["phases"]
    v = results.get("verdicts", {})
    env = results["environment"]
    head = (f"anfu benchmark, {results['started_at']} — {env['cpus']} CPUs, Python"
            f" {env['python']}, load {env['load_before']}, {results['seconds']} s per run,"
            f" {results['connections']} connections (logins"
            f" {results.get('login_connections', 50)}), wrk {results['wrk_threads']} threads")
    rows = ["| phase | figure | p50 ms | p99 ms | target | verdict |",
            "|---|---|---|---|---|---|"]
    ceiling = phases.get("ceiling", {})
    for key, label in (("serial", "(a) ceiling: Ed25519 + 1 SQLite commit per request"),
                       ("batched", "(a) ceiling: Ed25519 + 1 INSERT, group commit")):
        run = ceiling.get(key)
        if run:
            rows.append(f"| {label} | {_rate(run['rps'])} req/s ({_cpu(run)}) |"
                        f" {_ms(run['p50_us'])} | {_ms(run['p99_us'])} | | |")
    workers = env.get("platform_workers", 1)
    procs = f" ({workers} platform processes)" if workers > 1 else ""
    if "pay_sqlite" in phases:
        verdict = "; ".join(x for x in (v.get("pay_sqlite_per_s"), v.get("pay_sqlite_p99_ms"))
                            if x)
        rows += _pay_rows(f"(b) pay path, SQLite{procs}", phases["pay_sqlite"],
                          phases.get("sqlite_checks", {}), "≥ 2,500/s, p99 ≤ 50 ms", verdict,
                          "≥ 50%", v.get("pay_sqlite_ratio", ""))
    for key, label in LEDGER_ROWS:
        if key in phases:
            rows.append(_ledger_row(label, phases[key], v.get(f"{key}_per_s", "")))
    if "pay_postgres" in phases:
        rows += _pay_rows(f"(d) pay path, PostgreSQL{procs}", phases["pay_postgres"],
                          phases.get("postgres_checks", {}), "≥ 1,200/s",
                          v.get("pay_postgres_per_s", ""), "", "")
    rows += _login_rows(phases.get("logins", {}), env)
    rows += _flood_rows(phases.get("flood", {}), v)
    if "flood" in phases and "pay_sqlite" not in phases and phases.get("sqlite_checks"):
        check = phases["sqlite_checks"].get("check", {})
        rows.append(f"| {INDENT}checks | {check.get('paid', 0):,} trades paid exactly once:"
                    f" {'yes' if check.get('ok') else 'NO'} | | | | |")
    rows += _auth_rows(phases.get("auth_crypto", {}), phases.get("wallet", {}), v)
    rows += _signing_rows(phases.get("signing"))
    rows += _trust_rows(phases)
    foot = ("CPU: share of one core used during the measured run (the machine has"
            f" {env['cpus']}); wrk runs on the same machine. Argon2id at the platform's"
            f" default cost; DPoP proofs accepted up to {env.get('dpop_max_age_s', 60)} s old"
            " (ANFU_DPOP_MAX_AGE_S).")
    return head + "\n\n" + "\n".join(rows) + "\n\n" + foot
