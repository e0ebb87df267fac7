"""The listeners' edges (issue 16, item 10): a deadline for request heads (slowloris),
X-Forwarded-For believed only from configured proxies, sandbox routes only when enabled,
and no password or full notify URL in the run's log."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.support import (
    PASSWORD,
    ROOT,
    MerchantIdentity,
    NotifyReceiver,
    RunningPlatform,
    eventually,
    start_platform,
)

HEAD_TIMEOUT_S = 1.0


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    """Sandbox routes off (the default outside tests), a short head deadline, the proxy
    at 127.0.0.1 trusted, and the demo merchant and customer seeded as by `make run`."""
    running = start_platform(tmp_path_factory.mktemp("edge"), seed_demo=True,
                             ANFU_SANDBOX_ROUTES="false",
                             ANFU_HEADER_TIMEOUT_S=str(HEAD_TIMEOUT_S),
                             ANFU_TRUSTED_PROXIES="127.0.0.1")
    yield running
    running.stop()


def address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname and parts.port
    return parts.hostname, parts.port


def closed_after(sock: socket.socket, limit_s: float) -> tuple[float, bytes]:
    """Seconds until the server closed ``sock``, and what it sent before."""
    started, got = time.monotonic(), b""
    sock.settimeout(limit_s)
    while chunk := sock.recv(4096):
        got += chunk
    return time.monotonic() - started, got


# --- request head deadline ------------------------------------------------------------------

@pytest.mark.parametrize("zone", ["mobile", "merchant", "admin"])
def test_a_half_sent_request_line_is_closed_within_the_timeout(edge: RunningPlatform,
                                                               zone: str) -> None:
    url = getattr(edge, zone)
    with socket.create_connection(address(url)) as slow:
        slow.sendall(b"GET /healthz HT")
        # Meanwhile, normal requests go on.
        assert httpx.get(f"{edge.mobile}/healthz", timeout=5).status_code == 200
        waited, got = closed_after(slow, HEAD_TIMEOUT_S + 5)
    assert waited < HEAD_TIMEOUT_S + 1.5
    assert got.startswith(b"HTTP/1.1 408 ")


def test_a_head_sent_drop_by_drop_is_closed_too(edge: RunningPlatform) -> None:
    with socket.create_connection(address(edge.mobile)) as slow:
        started = time.monotonic()
        slow.sendall(b"GET /healthz HTTP/1.1\r\n")
        try:
            for _ in range(20):  # one header byte every 0.2 s: never idle, never complete
                slow.sendall(b"X")
                time.sleep(0.2)
        except OSError:
            pass  # closed under us: what we want
        waited, _ = closed_after(slow, 5)
    assert time.monotonic() - started < HEAD_TIMEOUT_S + 1.5 + waited


def test_a_connection_that_sends_nothing_is_closed(edge: RunningPlatform) -> None:
    with socket.create_connection(address(edge.merchant)) as idle:
        waited, _ = closed_after(idle, HEAD_TIMEOUT_S + 5)
    assert waited < HEAD_TIMEOUT_S + 1.5


def test_keep_alive_outlives_the_head_deadline(edge: RunningPlatform) -> None:
    host, port = address(edge.mobile)
    request = f"GET /healthz HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    with socket.create_connection((host, port)) as conn:
        conn.settimeout(5)
        for _ in range(2):
            conn.sendall(request)
            answer = b""
            while not answer.endswith(b'"zone":"mobile"}'):  # head and body may come apart
                answer += conn.recv(4096)
            assert answer.startswith(b"HTTP/1.1 200 ")
            time.sleep(HEAD_TIMEOUT_S * 1.5)  # idle between requests: keep-alive's 30 s


# --- X-Forwarded-For --------------------------------------------------------------------------

def failed_login_address(p: RunningPlatform, forwarded_for: str) -> str:
    phone = "1" + str(secrets.randbelow(10**10)).zfill(10)
    made = httpx.post(f"{p.mobile}/v1/users", json={"phone": phone, "password": PASSWORD})
    assert made.status_code == 201, made.text
    user_id = made.json()["user_id"]
    refused = httpx.post(f"{p.mobile}/v1/sessions", json={"phone": phone, "password": "no"},
                         headers={"X-Forwarded-For": forwarded_for})
    assert refused.status_code == 401
    events = httpx.get(f"{p.admin}/v1/audit", headers=p.admin_headers, params={
        "user_id": user_id, "name": "identity:session:login_failed"}).json()["events"]
    assert len(events) == 1, events
    return str(events[0]["client_address"])


def test_forwarded_for_is_not_believed_by_default(platform_urls: RunningPlatform) -> None:
    assert failed_login_address(platform_urls, "1.2.3.4") == "127.0.0.1"


def test_forwarded_for_is_believed_from_a_configured_proxy(edge: RunningPlatform) -> None:
    assert failed_login_address(edge, "1.2.3.4") == "1.2.3.4"


# --- sandbox routes ---------------------------------------------------------------------------

def test_sandbox_routes_are_served_only_when_enabled(edge: RunningPlatform,
                                                     platform_urls: RunningPlatform) -> None:
    token = {"phone": "13800138001"}
    off = httpx.post(f"{edge.mobile}/sandbox/carrier/network-token", json=token)
    assert (off.status_code, off.json()["code"]) == (404, "route_not_found")
    outbox = httpx.get(f"{edge.admin}/v1/sms/outbox", headers=edge.admin_headers)
    assert (outbox.status_code, outbox.json()["code"]) == (404, "route_not_found")
    paths = httpx.get(f"{edge.mobile}/openapi.json").json()["paths"]
    assert not [p for p in paths if p.startswith("/sandbox")]
    # The test platforms switch them on (ANFU_SANDBOX_ROUTES=true in tests/support.py).
    on = httpx.post(f"{platform_urls.mobile}/sandbox/carrier/network-token", json=token)
    assert on.status_code == 200, on.text


def test_production_refuses_sandbox_routes(tmp_path: Path) -> None:
    env = {**os.environ, "ANFU_HOME": str(tmp_path),
           "ANFU_ENV": "production", "ANFU_SANDBOX_ROUTES": "true",
           "ANFU_TOKEN_SECRET": "t" * 40, "ANFU_KEY_PASSPHRASE": "k" * 40,
           "ANFU_DATA_KEY": "d" * 40}
    done = subprocess.run([sys.executable, "-m", "anfu.cli", "run", "--no-seed-demo"],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "ANFU_SANDBOX_ROUTES" in done.stderr and "production" in done.stderr


# --- what the run's log holds -------------------------------------------------------------------

def test_the_run_log_holds_no_demo_password(edge: RunningPlatform) -> None:
    creds = json.loads((edge.home / "demo" / "credentials.json").read_text())
    logs = edge.logs()
    assert f"demo customer: phone {creds['customer_phone']}" in logs
    assert creds["customer_password"] not in logs
    assert creds["private_key_pem"].splitlines()[1] not in logs


def test_the_log_names_notify_urls_by_scheme_and_host_only(
        platform_urls: RunningPlatform, receiver: NotifyReceiver,
        make_merchant: Callable[..., MerchantIdentity],
        funded_customer: Callable[..., Any]) -> None:
    from anfu.sdk import MerchantClient

    m = make_merchant(notify_url=receiver.url)
    shop = MerchantClient(platform_urls.merchant, m.merchant_id, m.key_id, m.alg,
                          m.private_key_pem)
    trade = shop.create_trade(out_trade_no="log-" + secrets.token_hex(4), amount=100,
                              currency="CNY", subject="x", mode="direct")
    funded_customer(1_000).pay(trade["trade_no"])
    eventually(lambda: receiver.received)
    origin = f"http://127.0.0.1:{urlsplit(receiver.url).port}"
    eventually(lambda: origin in platform_urls.logs())
    logs = platform_urls.logs()
    assert urlsplit(receiver.url).path not in logs and "shop=1" not in logs
