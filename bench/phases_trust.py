"""Phases (i) pki, (j) log and (k) tls: the trust issue's own benchmark scripts, each run as
a subprocess (its own platform and databases) and read back from its ``BENCH-JSON`` line, so
``bench/pki.py``, ``bench/transparency.py`` and ``bench/tls.py`` stay runnable alone."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import harness
from context import Bench
from phases_pay import pg_ready


def _script(b: Bench, name: str, *args: str) -> dict[str, Any]:
    command = [sys.executable, str(harness.BENCH / name), *args]
    b.log(" ".join(["python", f"bench/{name}", *args]))
    done = subprocess.run(command, capture_output=True, text=True, cwd=harness.ROOT,
                          check=False)
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("BENCH-JSON "):
            figures: dict[str, Any] = json.loads(line[len("BENCH-JSON "):])
            return figures
    tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
    return {"error": f"bench/{name} exited {done.returncode} without figures: "
                     + " / ".join(tail)}


def phase_pki(b: Bench) -> dict[str, Any]:
    """Device-certificate issuance/s (SQLite and PostgreSQL) and cached OCSP answers/s
    against the platform's own GET /healthz."""
    args = ["--seconds", str(b.seconds), "--connections", str(b.connections),
            "--threads", str(b.threads)]
    if not b.args.no_postgres:
        reason = pg_ready(b.args.pg_url)
        if reason is None:
            args += ["--pg-url", b.args.pg_url]
        else:
            b.log(f"  issuance on PostgreSQL left out: {reason}")
    return _script(b, "pki.py", *args)


def phase_log(b: Bench) -> dict[str, Any]:
    """Transparency log: sequencer appends/s against a bare-insert ceiling, proofs at
    1,000,000 leaves."""
    return _script(b, "transparency.py")


def phase_tls(b: Bench) -> dict[str, Any]:
    """TLS keep-alive req/s and handshake time against plain HTTP; a signed merchant call
    over mutual TLS against the same call in the clear."""
    return _script(b, "tls.py", "--seconds", str(b.seconds))
