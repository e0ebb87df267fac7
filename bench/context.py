"""What every phase of bench/run.py works with: ``Bench`` (this run's settings and its wrk
runs), ``Target`` (one prepared database and the platform serving it), the shared sizes and
hash pool settings, and the helpers that turn wrk's figures into log lines and stored
figures."""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import checks
import harness
import httpx
import prepare

from anfu.config import Settings
from anfu.identity.assurance import load_policy

RESULTS = harness.BENCH / "results"
WARMUP_S = 1
PROFILE_SLACK_S = 10  # the load under py-spy outlasts the recordings by this much
LOGIN_CONNECTIONS = 50
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

    @property
    def admin_headers(self) -> dict[str, str]:
        return self.svc.admin_headers

    def stop(self) -> None:
        if self.service is None:
            return
        try:
            time.sleep(1)  # let requests cut off at the end of a run finish their commit
            reply = httpx.get(f"{self.admin}/v1/ledger/check", headers=self.admin_headers,
                              timeout=120)
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


def describe_run(run: dict[str, Any]) -> str:
    return (f"{run['rps']:,.0f}/s, p50 {run['p50_us'] / 1000:.1f} ms, p99"
            f" {run['p99_us'] / 1000:.1f} ms, non-2xx {run['status_errors']},"
            f" socket errors {run['errors'] - run['status_errors']}; CPU: server"
            f" {run.get('server_cpu_pct', 0):.0f}%, wrk {run['wrk_cpu_pct']:.0f}%")


def stored_figures(run: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in run.items() if k != "wrk_output"}


def lines_needed(rate: float, seconds: float, connections: int) -> int:
    return math.ceil(rate * seconds * 1.3) + connections


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def batch_counters(admin: str, headers: dict[str, str]) -> tuple[float, float]:
    text = httpx.get(f"{admin}/metrics", headers=headers, timeout=10).text
    return (_metric(text, "anfu_write_batch_size_sum"),
            _metric(text, "anfu_write_batch_size_count"))



def batch_figures(before: tuple[float, float], after: tuple[float, float],
                seconds: float) -> dict[str, float]:
    commits = after[1] - before[1]
    return {"mean_batch": (after[0] - before[0]) / commits if commits else 0.0,
            "commits_per_s": commits / seconds}
