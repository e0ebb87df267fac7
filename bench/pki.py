"""Platform CA benchmark (issue 4): device-certificate issuance per second in-process
through the service, writer and database (target ≥ 500/s), and OCSP answers per second over
HTTP with wrk (target ≥ 5,000/s) against the platform's own ``GET /healthz`` measured in the
same run as the ceiling.

    python bench/pki.py [--seconds 5] [--issue 2000] [--connections 64] [--threads 2]
                        [--pg-url postgresql+psycopg://…]   # issuance on PostgreSQL too

Prints a table and a final ``BENCH-JSON {...}`` line."""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness

from anfu.config import Settings

BENCH = Path(__file__).resolve().parent
ISSUE_TARGET = 500.0
OCSP_TARGET = 5000.0


def _devices(n: int) -> list[tuple[Any, str]]:
    """(DeviceFacts, CSR PEM) for ``n`` devices: made before the clock starts (the phones'
    work, not the CA's)."""
    from anfu.crypto.csr import device_csr_pem
    from anfu.crypto.jose import DeviceKey
    from anfu.crypto.jwk import parse_public_jwk
    from anfu.pki.service import DeviceFacts

    out = []
    for i in range(n):
        key = DeviceKey.generate("ES256")
        jwk = dict(key.public.jwk)
        device_id = f"dbench{i:08d}"
        out.append((DeviceFacts(device_id, f"ubench{i:08d}", parse_public_jwk(jwk).jkt, jwk,
                                True), device_csr_pem(key, device_id)))
    return out


def issuance(home: Path, database_url: str, count: int) -> dict[str, Any]:
    """``count`` device certificates, all submitted at once to the writer (group commit);
    each job: CSR check, key match, build + sign, insert, supersede check, log entry."""
    from anfu.bootstrap import build
    from anfu.db.migrate import upgrade
    from anfu.pki import service as pki

    if database_url.startswith("postgresql"):  # a clean schema: CA rows need their keys
        from sqlalchemy import create_engine, text

        engine = create_engine(database_url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        engine.dispose()
    settings = Settings(home=home, database_url=database_url, env="test")
    upgrade(settings.resolved_database_url)
    platform = build(settings)
    try:
        pki.ensure_ca(platform)
        auth = pki.authority(platform)
        devices = _devices(count)

        async def one(device: Any, csr: str) -> None:
            # As the mobile route does: one writer job checks, signs and stores.
            await platform.write(lambda uow: pki.issue_device_certificate(
                uow, auth, device=device, csr_pem=csr))

        async def run() -> float:
            started = time.perf_counter()
            await asyncio.gather(*(one(d, csr) for d, csr in devices))
            return time.perf_counter() - started

        elapsed = asyncio.run(run())
        from sqlalchemy import text

        issued = platform.read(lambda conn: conn.execute(text(
            "SELECT COUNT(*) FROM pki_certificates WHERE profile = 'device'")).scalar())
        if issued != count:
            raise RuntimeError(f"{count} issued, {issued} stored")
        return {"db": "postgresql" if "postgresql" in database_url else "sqlite",
                "count": count, "seconds": round(elapsed, 3),
                "per_s": round(count / elapsed, 1), "stored": issued}
    finally:
        platform.close()


def ocsp_request_file(service: harness.Service, folder: Path) -> Path:
    """Issue one device certificate through the admin-free path (in-process on the same
    database is not possible while it runs): a merchant-profile certificate through the
    admin zone, then its OCSP request."""
    import httpx
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509 import ocsp
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, "bench")])).sign(key, hashes.SHA256())
    reply = httpx.post(f"{service.urls['admin']}/v1/pki/certificates",
                       headers=service.admin_headers, json={
        "profile": "server", "subject_id": "bench.example.test",
        "csr": csr.public_bytes(serialization.Encoding.PEM).decode()}, timeout=30)
    reply.raise_for_status()
    issued = reply.json()
    leaf = x509.load_pem_x509_certificate(issued["certificate"].encode())
    issuer = x509.load_pem_x509_certificate(issued["chain"][0].encode())
    der = ocsp.OCSPRequestBuilder().add_certificate(
        leaf, issuer, hashes.SHA1()).build().public_bytes(serialization.Encoding.DER)
    answer = httpx.post(f"{service.urls['mobile']}/pki/ocsp", content=der, timeout=30)
    status = ocsp.load_der_ocsp_response(answer.content).certificate_status
    if status != ocsp.OCSPCertStatus.GOOD:
        raise RuntimeError(f"OCSP preflight answered {status}")
    path = folder / "ocsp-request.der"
    path.write_bytes(der)
    return path


HEALTH_LUA = """
dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "report.lua")
function request() return wrk.format("GET", "/healthz") end
function done(summary, latency, _r)
   bench_json(summary, latency, '"exhausted_threads": 0, "prepared": 0')
end
"""


def http_phase(folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    (folder / "http").mkdir(parents=True, exist_ok=True)
    service = harness.start_platform(folder / "http", f"sqlite:///{folder / 'http.db'}")
    try:
        service.wait_healthy()
        request = ocsp_request_file(service, folder)
        health = BENCH / "_pki_health.lua"
        health.write_text(HEALTH_LUA)
        try:
            common = {"seconds": args.seconds, "connections": args.connections,
                      "threads": args.threads, "server_pid": service.pid}
            ceiling = harness.run_wrk(service.urls["mobile"], health, [], **common)
            answered = harness.run_wrk(service.urls["mobile"], BENCH / "ocsp.lua",
                                       [str(request)], **common)
        finally:
            health.unlink(missing_ok=True)
        keep = ("rps", "p50_us", "p99_us", "errors", "server_cpu_pct", "wrk_cpu_pct")
        return {"healthz": {k: ceiling[k] for k in keep},
                "ocsp": {k: answered[k] for k in keep},
                "workers": harness.platform_workers()}
    finally:
        service.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--issue", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--pg-url", default="")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="anfu-bench-pki-"))
    try:
        issue = [issuance(folder / "issue", f"sqlite:///{folder / 'issue.db'}", args.issue)]
        if args.pg_url:
            issue.append(issuance(folder / "issue-pg", args.pg_url, args.issue))
        http = http_phase(folder, args) if harness.wrk_path() else None
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    rows = [("| what | figure | target | ratio |"), ("|---|---:|---:|---:|")]
    for run in issue:
        rows.append(f"| device certificates issued/s ({run['db']}, {run['count']} at once)"
                    f" | {run['per_s']:,.0f} | ≥ {ISSUE_TARGET:,.0f} |"
                    f" {run['per_s'] / ISSUE_TARGET:.2f}x target |")
    if http is not None:
        ceiling, ocsp = http["healthz"]["rps"], http["ocsp"]["rps"]
        rows.append(f"| GET /healthz (ceiling, {http['workers']} workers) | {ceiling:,.0f}/s"
                    f" | | |")
        rows.append(f"| OCSP POST /pki/ocsp, cached | {ocsp:,.0f}/s (p99"
                    f" {http['ocsp']['p99_us'] / 1000:.1f} ms) | ≥ {OCSP_TARGET:,.0f} |"
                    f" {ocsp / ceiling:.2f}x ceiling, {ocsp / OCSP_TARGET:.2f}x target |")
    else:
        rows.append("| OCSP over HTTP | not run: " + harness.WRK_HINT.splitlines()[0] + " | |")
    print("\n".join(rows))
    result = {"issuance": issue, "http": http,
              "targets": {"issue_per_s": ISSUE_TARGET, "ocsp_per_s": OCSP_TARGET},
              "met": {"issue": all(r["per_s"] >= ISSUE_TARGET for r in issue),
                      "ocsp": None if http is None else http["ocsp"]["rps"] >= OCSP_TARGET}}
    print("BENCH-JSON " + json.dumps(result))


if __name__ == "__main__":
    main()
