"""Test support: start the real platform as a subprocess, a notification receiver, helpers."""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import ssl
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from tests.softattest import shared_keystore

ROOT = Path(__file__).resolve().parents[1]
# Public known-answer data, carried in the repository (sources in tests/vectors/README.md)
VECTORS = ROOT / "tests" / "vectors"


# The operator token of each platform a test started, by its admin URL: the admin zone
# refuses calls without it (tests/e2e/security/test_edge_admin.py).
ADMIN_TOKENS: dict[str, str] = {}
BOOTSTRAP_TOKEN = re.compile(r"^admin token: (anfu_op_\S+)", re.MULTILINE)


def admin_headers(admin_url: str) -> dict[str, str]:
    """``Authorization`` for the admin zone of the platform at ``admin_url``."""
    return {"Authorization": f"Bearer {ADMIN_TOKENS[admin_url.rstrip('/')]}"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_database_url(home: Path) -> str:
    """For in-process harnesses: the test database itself (or a SQLite file in ``home``)."""
    return os.environ.get("ANFU_TEST_DATABASE_URL") or f"sqlite:///{home / 'anfu.db'}"


def platform_database_url(home: Path) -> str:
    """For a platform process: on PostgreSQL a database of its own, named after its home
    folder, so that starting (and emptying the database of) one platform never pulls the
    tables from under another one that is still running."""
    url = os.environ.get("ANFU_TEST_DATABASE_URL")
    if not url:
        return f"sqlite:///{home / 'anfu.db'}"
    from sqlalchemy import create_engine, text

    base, _, rest = url.rpartition("/")
    name, sep, query = rest.partition("?")
    own = f"{name}_{re.sub(r'[^a-z0-9_]', '_', home.name.lower())}"[:60]
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        if conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"),
                        {"n": own}).first() is None:
            conn.execute(text(f'CREATE DATABASE "{own}"'))
    engine.dispose()
    return f"{base}/{own}{sep}{query}"


def reset_database(url: str) -> None:
    """Empty a PostgreSQL test database (SQLite files are new per test platform)."""
    if url.startswith("sqlite"):
        return
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()


@dataclass
class RunningPlatform:
    mobile: str
    merchant: str
    admin: str
    home: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes]
    log_path: Path
    tls: bool = False  # the listeners serve HTTPS (ANFU_TLS=1)
    seed_demo: bool = False  # `anfu run` seeds the demo merchant and customer

    @property
    def admin_token(self) -> str:
        return ADMIN_TOKENS[self.admin]

    @property
    def admin_headers(self) -> dict[str, str]:
        """Send with every admin-zone call: ``httpx.get(..., headers=p.admin_headers)``."""
        return admin_headers(self.admin)

    @property
    def ca_bundle(self) -> Path:
        """TLS: the platform's CA certificates (issuing + root), to trust its listeners."""
        return self.home / "tls" / "client-ca.pem"

    @property
    def verify(self) -> bool | ssl.SSLContext:
        """TLS: httpx's ``verify=`` for this platform (True for plain HTTP)."""
        if not self.tls:
            return True
        return ssl.create_default_context(cafile=str(self.ca_bundle))

    def stop(self, sig: int | None = None) -> None:
        if self.process.poll() is None:
            if sig is None:
                self.process.terminate()
            else:
                self.process.send_signal(sig)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def restart(self) -> None:
        self.stop()
        self.process = _spawn(self.env, self.log_path, seed_demo=self.seed_demo)
        wait_healthy(self)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def sms_messages(self, phone: str) -> list[dict[str, Any]]:
        """What the sandbox SMS gateway sent to ``phone``, newest first (the admin API)."""
        reply = httpx.get(f"{self.admin}/v1/sms/outbox", params={"phone": phone, "limit": 50},
                          headers=self.admin_headers, verify=self.verify)
        reply.raise_for_status()
        return list(reply.json()["messages"])

    def sms_code(self, phone: str) -> str:
        """The one-time code in the newest SMS to ``phone``."""
        messages = self.sms_messages(phone)
        if not messages:
            raise AssertionError(f"no SMS was sent to {phone}")
        found = re.search(r"\b(\d{6})\b", messages[0]["text"])
        assert found, messages[0]["text"]
        return found.group(1)


def _spawn(env: dict[str, str], log_path: Path, *,
           seed_demo: bool = False) -> subprocess.Popen[bytes]:
    log = open(log_path, "ab")  # noqa: SIM115 - handed to the child
    seeding = "--seed-demo" if seed_demo else "--no-seed-demo"
    return subprocess.Popen([sys.executable, "-m", "anfu.cli", "run", seeding],
                            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)


def wait_healthy(p: RunningPlatform, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if p.process.poll() is not None:
            raise RuntimeError("platform exited:\n" + p.logs()[-4000:])
        try:
            if all(httpx.get(f"{u}/healthz", timeout=1, verify=not p.tls).status_code == 200
                   for u in (p.mobile, p.merchant, p.admin)):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError("platform did not become healthy:\n" + p.logs()[-4000:])


def start_platform(home: Path, *, seed_demo: bool = False, **overrides: str
                   ) -> RunningPlatform:
    home.mkdir(parents=True, exist_ok=True)
    ports = [free_port() for _ in range(3)]
    env = {**os.environ, "ANFU_HOME": str(home), "ANFU_ENV": "test",
           "ANFU_DATABASE_URL": platform_database_url(home),
           "ANFU_MOBILE_ADDR": f"127.0.0.1:{ports[0]}",
           "ANFU_MERCHANT_ADDR": f"127.0.0.1:{ports[1]}",
           "ANFU_ADMIN_ADDR": f"127.0.0.1:{ports[2]}",
           "ANFU_WORKER_POLL_S": "0.1", "ANFU_NOTIFY_SCHEDULE": "1,1,1,1,1",
           "ANFU_BANK_LATENCY_MS": "2", "ANFU_LOG_JSON": "true",
           # Test-only cost: OWASP's minimum Argon2id would make hundreds of sign-ups slow.
           "ANFU_ARGON2_MEMORY_KIB": "8192", "ANFU_ARGON2_TIME_COST": "1",
           # Every test customer signs in from 127.0.0.1: lift the per-address SMS limit
           # (tests of that limit set their own).
           "ANFU_SMS_ADDRESS_LIMITS": "100000/60", "ANFU_SMS_LATENCY_MS": "5",
           "ANFU_NOTIFY_ALLOW_NETS": "127.0.0.0/8",  # the test receivers listen on loopback
           # The sandbox SMS outbox and carrier routes the identity tests read codes from.
           "ANFU_SANDBOX_ROUTES": "true",
           # A token of its own per platform; ANFU_ADMIN_TOKEN="" tests the bootstrap token.
           "ANFU_ADMIN_TOKEN": "test_op_" + secrets.token_urlsafe(24),
           # The test Keystore's root: the phones of new_customer() attest their keys.
           "ANFU_ATTESTATION_ROOTS": str(shared_keystore().write_root(
               home / "attestation-root.pem")),
           **overrides}
    env.pop("ANFU_TEST_DATABASE_URL", None)
    reset_database(env["ANFU_DATABASE_URL"])
    log_path = home / "platform.log"
    tls = env.get("ANFU_TLS", "").lower() in ("1", "true", "yes", "on")
    scheme = "https" if tls else "http"
    p = RunningPlatform(f"{scheme}://127.0.0.1:{ports[0]}", f"{scheme}://127.0.0.1:{ports[1]}",
                        f"{scheme}://127.0.0.1:{ports[2]}", home, env,
                        _spawn(env, log_path, seed_demo=seed_demo), log_path, tls,
                        seed_demo)
    wait_healthy(p)
    printed = BOOTSTRAP_TOKEN.search(p.logs())  # no ANFU_ADMIN_TOKEN: the first start's
    ADMIN_TOKENS[p.admin] = env["ANFU_ADMIN_TOKEN"] or (printed.group(1) if printed else "")
    return p


@dataclass
class MerchantIdentity:
    merchant_id: str
    key_id: str
    alg: str
    private_key_pem: str
    notify_url: str | None = None


def create_merchant(admin_url: str, *, alg: str = "ed25519", notify_url: str | None = None,
                    fee_bps: int | None = 60, name: str = "Test Shop",
                    verify: bool | ssl.SSLContext = True) -> MerchantIdentity:
    """Through the admin zone, with the operator token of the platform at ``admin_url``."""
    from anfu import crypto

    key = crypto.generate_private_key(alg)
    body: dict[str, Any] = {"name": name, "alg": alg,
                            "public_key_pem": key.public_key().public_pem(),
                            "notify_url": notify_url}
    if fee_bps is not None:
        body["fee_bps"] = fee_bps
    reply = httpx.post(f"{admin_url}/v1/merchants", json=body, timeout=10, verify=verify,
                       headers=admin_headers(admin_url))
    assert reply.status_code == 201, reply.text
    data = reply.json()
    return MerchantIdentity(data["merchant_id"], data["key_id"], alg, key.private_pem(None),
                            notify_url)


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class NotifyReceiver:
    """A merchant's notification endpoint: records every POST; fails the first
    ``fail_first`` deliveries of each event with 500."""

    fail_first: int = 0
    received: list[Received] = field(default_factory=list)
    url: str = ""

    def start(self) -> NotifyReceiver:
        receiver = self
        failures: dict[str, int] = {}

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                receiver.received.append(Received(self.path, dict(self.headers.items()), body,
                                                  time.time()))
                event_id = json.loads(body).get("id", "")
                failures[event_id] = failures.get(event_id, 0) + 1
                code = 500 if failures[event_id] <= receiver.fail_first else 200
                self.send_response(code)
                self.send_header("content-length", "7" if code == 200 else "4")
                self.end_headers()
                self.wfile.write(b"success" if code == 200 else b"fail")

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/anfu/notify?shop=1"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(r.body) for r in self.received]


def eventually(check: Any, timeout: float = 20, interval: float = 0.1) -> Any:
    deadline = time.time() + timeout
    last: Any = None
    while time.time() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"condition not met in {timeout}s (last: {last!r})")


PASSWORD = "correct horse battery staple"


def new_customer(platform: RunningPlatform, *, amount: int = 0, currency: str = "CNY",
                 bind_device: bool = True, key_storage: str = "hardware") -> Any:
    """A customer signed up and logged in the way a phone does: password and SMS code (read
    from the sandbox gateway's outbox), then the phone's key bound (hardware-backed by
    default and attested by the test Keystore, so step-ups to level 3 are answered by the
    key), then topped up."""
    import secrets

    from anfu.sdk import WalletClient

    phone = "1" + str(secrets.randbelow(10**10)).zfill(10)
    client = WalletClient(platform.mobile, sms_code=lambda challenge: platform.sms_code(phone),
                          password=lambda challenge: PASSWORD, verify=platform.verify)
    client.register(phone, PASSWORD)
    client.login(phone, PASSWORD)
    if bind_device:
        client.bind_device("test phone", key_storage=key_storage,  # type: ignore[arg-type]
                           attest=shared_keystore().attest if key_storage == "hardware"
                           else None)
    if amount:
        client.topup(amount, currency)
    return client
