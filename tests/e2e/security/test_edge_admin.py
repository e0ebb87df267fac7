"""The admin zone denies by default: every route but /healthz needs the operator token, and
only its own Host names are answered (issue 16, item 3). Before this, a request without
any token to 127.0.0.1:<admin port> (an SSRF from the notification worker, a local
process, a page rebinding its DNS name) was an operator."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.support import ADMIN_TOKENS, ROOT, RunningPlatform, start_platform

PROBLEM = "application/problem+json"


def assert_problem(reply: httpx.Response, status: int, code: str) -> None:
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"] == PROBLEM
    assert reply.json()["code"] == code


def security_failures(platform: RunningPlatform, code: str) -> float:
    text = httpx.get(f"{platform.admin}/metrics", headers=platform.admin_headers).text
    found = re.search(rf'^anfu_security_failures_total\{{(?=[^}}]*code="{code}")'
                      rf'(?=[^}}]*zone="admin")[^}}]*\}} ([0-9.e+]+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def test_no_token_is_refused_for_reads_and_writes(platform_urls: RunningPlatform) -> None:
    admin = platform_urls.admin
    before = security_failures(platform_urls, "operator_token_missing")
    reads = [httpx.get(f"{admin}{path}") for path in (
        "/v1/merchants", "/v1/ledger/check", "/metrics", "/v1/audit", "/openapi.json",
        "/docs", "/v1/pki/cas")]
    write = httpx.post(f"{admin}/v1/merchants", json={"name": "x", "alg": "ed25519",
                                                      "public_key_pem": "x"})
    for reply in [*reads, write]:
        assert_problem(reply, 401, "operator_token_missing")
        assert reply.headers["www-authenticate"].startswith("Bearer")
    assert security_failures(platform_urls, "operator_token_missing") - before == 8
    assert '"code":"operator_token_missing"' in platform_urls.logs()  # and logged
    listed = httpx.get(f"{admin}/v1/merchants", headers=platform_urls.admin_headers).json()
    assert "x" not in [m["name"] for m in listed["merchants"]]  # nothing was written
    assert httpx.get(f"{admin}/healthz").json() == {"status": "ok", "zone": "admin"}


@pytest.mark.parametrize("authorization", [
    "Bearer wrong-token-of-some-length", "Bearer", "bearer x", "Basic YWRtaW46YWRtaW4=",
    "Bearer {token}x", "Bearer {token} {token}", "{token}"])
def test_a_wrong_token_is_refused(platform_urls: RunningPlatform, authorization: str) -> None:
    header = authorization.format(token=platform_urls.admin_token)
    for reply in (httpx.get(f"{platform_urls.admin}/v1/merchants",
                            headers={"Authorization": header}),
                  httpx.post(f"{platform_urls.admin}/v1/users/u1/unlock",
                             headers={"Authorization": header})):
        assert_problem(reply, 401, "operator_token_invalid")
    assert httpx.get(f"{platform_urls.admin}/v1/merchants",
                     headers={"Authorization": f"bearer {platform_urls.admin_token}"}
                     ).status_code == 200  # the scheme is case-insensitive (RFC 9110)


@pytest.mark.parametrize("host", ["evil.example", "evil.example:{port}", "localhost",
                                  "127.0.0.1", "127.0.0.2:{port}", "0.0.0.0:{port}",
                                  "localhost.:{port}"])
def test_another_host_is_refused_even_with_the_token(platform_urls: RunningPlatform,
                                                      host: str) -> None:
    port = urlsplit(platform_urls.admin).port
    headers = {**platform_urls.admin_headers, "Host": host.format(port=port)}
    for reply in (httpx.get(f"{platform_urls.admin}/v1/merchants", headers=headers),
                  httpx.post(f"{platform_urls.admin}/v1/users/u1/unlock", headers=headers),
                  httpx.get(f"{platform_urls.admin}/healthz", headers=headers)):
        assert_problem(reply, 421, "admin_host_refused")


def test_the_listeners_own_names_are_answered(platform_urls: RunningPlatform) -> None:
    port = urlsplit(platform_urls.admin).port
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LOCALHOST:{port}"):
        reply = httpx.get(f"{platform_urls.admin}/v1/merchants",
                          headers={**platform_urls.admin_headers, "Host": host})
        assert reply.status_code == 200, (host, reply.text)


def anfu(platform: RunningPlatform, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in platform.env.items() if k != "ANFU_ADMIN_TOKEN"}
    return subprocess.run([sys.executable, "-m", "anfu.cli", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=True)


@pytest.fixture
def bootstrapped(tmp_path: Path) -> Iterator[RunningPlatform]:
    running = start_platform(tmp_path / "bootstrap", ANFU_ADMIN_TOKEN="")  # no token set
    yield running
    running.stop()


def test_first_start_prints_a_bootstrap_token_once_and_keeps_only_its_hash(
        bootstrapped: RunningPlatform) -> None:
    printed = re.findall(r"^admin token: (anfu_op_\S+)", bootstrapped.logs(), re.M)
    assert len(printed) == 1
    token = printed[0]
    assert bootstrapped.logs().count(token) == 1  # not in the JSON log lines either
    ok = httpx.get(f"{bootstrapped.admin}/v1/merchants",
                   headers={"Authorization": f"Bearer {token}"})
    assert ok.status_code == 200, ok.text
    assert_problem(httpx.get(f"{bootstrapped.admin}/v1/merchants"), 401,
                   "operator_token_missing")
    digest_file = bootstrapped.home / "admin-token.sha256"
    assert stat.S_IMODE(digest_file.stat().st_mode) == 0o600
    kept = digest_file.read_text()
    assert token not in kept and re.fullmatch(r"[0-9a-f]{64}\n", kept)
    assert token not in "".join(p.read_text(errors="replace") for p in
                                bootstrapped.home.rglob("*") if p.is_file()
                                and p.name != "platform.log" and p.stat().st_size < 10**6)

    bootstrapped.restart()
    assert "admin token: set earlier" in bootstrapped.logs()
    assert bootstrapped.logs().count(token) == 1  # the second start did not print it
    assert len(re.findall(r"anfu_op_", bootstrapped.logs())) == 1
    assert httpx.get(f"{bootstrapped.admin}/v1/merchants",
                     headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_rotation_prints_a_new_token_and_the_old_one_dies_at_once(
        bootstrapped: RunningPlatform) -> None:
    old = ADMIN_TOKENS[bootstrapped.admin]
    assert old.startswith("anfu_op_")
    out = anfu(bootstrapped, "admin", "token", "--rotate").stdout
    new = re.findall(r"^admin token: (anfu_op_\S+)", out, re.M)
    assert len(new) == 1 and new[0] != old
    assert_problem(httpx.get(f"{bootstrapped.admin}/v1/merchants",
                             headers={"Authorization": f"Bearer {old}"}),
                   401, "operator_token_invalid")  # the running platform took the new file
    assert httpx.get(f"{bootstrapped.admin}/v1/merchants",
                     headers={"Authorization": f"Bearer {new[0]}"}).status_code == 200
    assert "anfu_op_" not in anfu(bootstrapped, "admin", "token").stdout  # says, not shows
    assert os.stat(bootstrapped.home / "admin-token.sha256").st_mode & 0o077 == 0
