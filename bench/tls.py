"""What TLS costs on the real listeners: one platform serving plain HTTP and one serving
TLS (merchant mTLS required), measured in the same run.

- ``keepalive_rps``: ``wrk`` (50 connections, keep-alive) on ``GET /healthz`` of the mobile
  zone, plain vs TLS 1.3: the steady per-request cost of encryption.
- ``handshake_ms``: median time of a new connection + one request (Python client,
  sequential), plain vs TLS 1.3 with a P-256 server certificate: the handshake cost.
- ``merchant_signed_ms``: median latency of a signed ``GET /v1/balance`` on one keep-alive
  connection, plain vs TLS with a client certificate (its status check cached ≤ 5 s).

Run: ``python bench/tls.py [--seconds 5]`` (needs ``wrk`` and ``openssl``).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.tls.conftest import TlsPlatform, root_certificate  # noqa: E402
from tests.support import RunningPlatform, create_merchant, start_platform  # noqa: E402

from anfu.sdk import MerchantClient  # noqa: E402


def wrk_rps(url: str, seconds: float) -> float:
    out = subprocess.run(["wrk", "-t", "2", "-c", "50", "-d", f"{seconds:.0f}s", url],
                         capture_output=True, text=True, check=True).stdout
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert found, out
    return float(found.group(1))


def _interleaved_ms(calls: dict[str, Any], n: int) -> dict[str, float]:
    """Median ms per call of each operation, alternating between them so that drift (disk,
    other processes) hits both alike."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(n):
        for name, call in calls.items():
            started = time.perf_counter()
            call()
            times[name].append((time.perf_counter() - started) * 1000)
    return {name: round(statistics.median(t), 3) for name, t in times.items()}


def new_connection(url: str, verify: ssl.SSLContext) -> Any:
    def call() -> None:
        with httpx.Client(verify=verify, timeout=10) as client:  # same context for both
            assert client.get(url).status_code == 200

    return call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    work = Path(tempfile.mkdtemp(prefix="anfu-bench-tls-"))
    plain: RunningPlatform = start_platform(work / "plain")
    secure = start_platform(work / "tls", ANFU_TLS="1", ANFU_MERCHANT_MTLS="required")
    results: dict[str, Any] = {}
    try:
        tls = TlsPlatform(secure, root_certificate(secure, work / "tls"))
        ctx = ssl.create_default_context(cafile=str(tls.root))
        results["keepalive_rps"] = {
            "plain": wrk_rps(f"{plain.mobile}/healthz", args.seconds),
            "tls": wrk_rps(f"{secure.mobile}/healthz", args.seconds)}
        results["handshake_ms"] = _interleaved_ms({
            "plain": new_connection(f"{plain.mobile}/healthz", ctx),
            "tls": new_connection(f"{secure.mobile}/healthz", ctx)}, 300)
        shop = create_merchant(plain.admin)
        plain_client = MerchantClient(plain.merchant, shop.merchant_id, shop.key_id, shop.alg,
                                      shop.private_key_pem)
        shop2 = tls.merchant()
        cert = tls.certify(shop2, work)
        tls_client = MerchantClient(secure.merchant, shop2.merchant_id, shop2.key_id,
                                    shop2.alg, shop2.private_key_pem, verify=tls.root,
                                    cert=(cert.cert, cert.key))
        plain_client.balance()
        tls_client.balance()
        results["merchant_signed_ms"] = _interleaved_ms({"plain": plain_client.balance,
                                                         "tls_mtls": tls_client.balance}, 300)
    finally:
        plain.stop()
        secure.stop()
    for figures in results.values():
        values = list(figures.values())
        figures["ratio_tls_to_plain"] = round(values[1] / values[0], 3)
    print(json.dumps(results, indent=2))
    print("BENCH-JSON " + json.dumps(results))


if __name__ == "__main__":
    main()
