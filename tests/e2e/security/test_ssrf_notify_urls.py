"""SSRF through notify_url (issue 16, item 3), through the real listeners: a notify URL may
not name the platform's own listeners, loopback, private, link-local, metadata or other
special addresses, at registration (admin ``POST /v1/merchants``, merchant ``POST
/v1/trades``, ``anfu merchants create``) nor when the worker connects (a URL stored before,
or a name that now points inside); redirects are not followed; the attempt log names an
error class, not the socket error that tells open and closed ports apart."""

from __future__ import annotations

import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from anfu import crypto
from anfu.sdk import ApiError, MerchantClient
from tests.e2e.identity.wire import audit_events
from tests.e2e.security.notify_support import (
    Redirector,
    attempts_after,
    new_trade,
    shop_of,
    store_trade_notify_url,
)
from tests.support import (
    NotifyReceiver,
    RunningPlatform,
    admin_headers,
    free_port,
    new_customer,
    start_platform,
)

FORBIDDEN = "notify_url_forbidden_address"
INVALID = "invalid_notify_url"
PUBLIC_URL = "https://93.184.215.14/anfu/notify?shop=1"  # a public address: no DNS needed


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    """A platform as shipped: no private range allow-listed."""
    running = start_platform(tmp_path_factory.mktemp("ssrf"), ANFU_NOTIFY_ALLOW_NETS="")
    yield running
    running.stop()


def register(platform: RunningPlatform, notify_url: str) -> httpx.Response:
    key = crypto.generate_private_key("ed25519")
    return httpx.post(f"{platform.admin}/v1/merchants", timeout=20,
                      headers=admin_headers(platform.admin), json={
        "name": "Probe", "alg": "ed25519", "public_key_pem": key.public_key().public_pem(),
        "notify_url": notify_url})


def refused_at_registration(platform: RunningPlatform, shop: MerchantClient,
                            notify_url: str) -> str:
    """Both entry points refuse the URL with the same 422 problem; returns its code."""
    reply = register(platform, notify_url)
    assert reply.status_code == 422, reply.text
    assert reply.headers["content-type"] == "application/problem+json"
    with pytest.raises(ApiError) as trade:
        new_trade(shop, notify_url=notify_url)
    assert (trade.value.status, trade.value.code) == (422, reply.json()["code"])
    return str(reply.json()["code"])


def port_of(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None
    return port


def test_own_listeners_are_refused_even_when_loopback_is_allow_listed(
        platform_urls: RunningPlatform, receiver: NotifyReceiver) -> None:
    shop = shop_of(platform_urls)
    for zone in (platform_urls.admin, platform_urls.merchant, platform_urls.mobile):
        port = port_of(zone)
        for host in ("127.0.0.1", "localhost", "[::ffff:127.0.0.1]"):
            url = f"http://{host}:{port}/v1/users/u1/unlock"
            assert refused_at_registration(platform_urls, shop, url) == FORBIDDEN, url
    # The allow-listed loopback receiver itself is fine.
    assert new_trade(shop, notify_url=receiver.url)["trade_no"]
    assert register(platform_urls, receiver.url).status_code == 201


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:9/x", "http://localhost/", "http://[::1]/", "http://0.0.0.0:80/",
    "http://169.254.169.254/latest/meta-data/", "http://[::ffff:169.254.169.254]/",
    "http://[::ffff:7f00:1]/", "http://10.1.2.3/", "http://172.16.0.1/", "http://192.168.1.1/",
    "http://100.64.0.1/", "http://100.100.100.200/", "http://[fd00:ec2::254]/",
    "http://[fe80::1]/", "http://224.0.0.1/", "http://198.18.0.1/", "http://240.0.0.1/",
    "http://255.255.255.255/", "http://[2002:7f00:1::]/", "http://[64:ff9b::7f00:1]/",
])
def test_special_addresses_are_refused(strict: RunningPlatform, url: str) -> None:
    reply = register(strict, url)
    assert (reply.status_code, reply.json()["code"]) == (422, FORBIDDEN), reply.text


@pytest.mark.parametrize("url", [
    "http://2130706433/", "http://0x7f.1/", "http://0x7f000001/", "http://017700000001/",
    "http://127.1/", "http://0177.0.0.1/",
])
def test_numeric_ipv4_tricks_are_refused(strict: RunningPlatform, url: str) -> None:
    shop = shop_of(strict)
    assert refused_at_registration(strict, shop, url) == INVALID


@pytest.mark.parametrize("url", [
    "http://93.184.215.14/a\r\nX-Injected: 1", "http://93.184.215.14/a\nb",
    "http://93.184.215.14/a b", "http://93.184.215.14/\tx", "http://93.184.215.14/\x00",
    "http://user:pw@93.184.215.14/", "http://@93.184.215.14/", "http://93.184.215.14:0/",
    "http://93.184.215.14:65536/", "http:///x", "http://", "ftp://93.184.215.14/",
    "javascript:alert(1)", "/relative", "http://exa mple.com/", "http://exa%6dple.com/",
    "http://ex_ample.com/", "http://例え.jp/", "http://[fe80::1%25eth0]/",
])
def test_malformed_urls_are_refused(strict: RunningPlatform, url: str) -> None:
    reply = register(strict, url)
    assert (reply.status_code, reply.json()["code"]) == (422, INVALID), reply.text


def test_public_addresses_are_accepted(strict: RunningPlatform) -> None:
    shop = shop_of(strict)
    for url in (PUBLIC_URL, "http://[2606:4700:4700::1111]:8080/n", "HTTP://93.184.215.14"):
        assert register(strict, url).status_code == 201, url
        assert new_trade(shop, notify_url=url)["trade_no"]


def test_the_cli_refuses_like_the_api(strict: RunningPlatform, tmp_path: Path) -> None:
    pem = tmp_path / "key.pem"
    pem.write_text(crypto.generate_private_key("ed25519").public_key().public_pem())
    done = subprocess.run(
        [sys.executable, "-m", "anfu.cli", "merchants", "create", "--name", "Probe", "--alg",
         "ed25519", "--public-key", str(pem), "--notify-url",
         "http://169.254.169.254/latest/meta-data/"],
        capture_output=True, text=True, env=strict.env, timeout=120, check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    assert FORBIDDEN in done.stderr


def test_the_worker_refuses_a_stored_url_that_points_inside(
        strict: RunningPlatform, receiver: NotifyReceiver) -> None:
    """A URL that passed registration but now leads inside (a DNS answer that changed, a row
    written before this check existed) is refused when the worker connects, and again on
    redeliver: nothing reaches the loopback receiver."""
    shop, buyer = shop_of(strict), new_customer(strict, amount=1_000)
    trade = new_trade(shop, notify_url=PUBLIC_URL)
    inside = receiver.url.replace("127.0.0.1", "localhost")
    store_trade_notify_url(strict, trade["trade_no"], inside)
    buyer.pay(trade["trade_no"])
    log = attempts_after(shop, trade["trade_no"], 1)
    assert (log[0]["error"], log[0]["status_code"]) == ("address_forbidden", None)
    event = shop.events(trade_no=trade["trade_no"])["events"][0]
    shop.redeliver(event["id"])
    log = attempts_after(shop, trade["trade_no"], len(log) + 1)
    assert {a["error"] for a in log} == {"address_forbidden"}
    assert receiver.received == []


def test_redeliver_cannot_reach_the_admin_zone(platform_urls: RunningPlatform,
                                               funded_customer: Callable[..., Any],
                                               receiver: NotifyReceiver) -> None:
    """The reported attack: a trade's notify URL aimed at the admin zone's unlock route,
    fired again and again through redeliver. Loopback is allow-listed on this platform
    (the test receivers live there): the own-listener rule alone refuses it."""
    shop, buyer = shop_of(platform_urls), funded_customer(1_000)
    trade = new_trade(shop, notify_url=receiver.url)
    victim = "u" + secrets.token_hex(8)
    store_trade_notify_url(platform_urls, trade["trade_no"],
                           f"{platform_urls.admin}/v1/users/{victim}/unlock")
    buyer.pay(trade["trade_no"])
    log = attempts_after(shop, trade["trade_no"], 1)
    event = shop.events(trade_no=trade["trade_no"])["events"][0]
    for n in range(2):
        shop.redeliver(event["id"])
        log = attempts_after(shop, trade["trade_no"], len(log) + 1)
    assert audit_events(platform_urls, victim, "identity:account:unlocked") == []
    assert {a["error"] for a in log} == {"address_forbidden"}


def test_a_redirect_is_a_failed_attempt_and_is_not_followed(
        platform_urls: RunningPlatform, funded_customer: Callable[..., Any],
        receiver: NotifyReceiver) -> None:
    redirector = Redirector(lambda: receiver.url)
    try:
        shop, buyer = shop_of(platform_urls), funded_customer(1_000)
        trade = new_trade(shop, notify_url=redirector.url)
        buyer.pay(trade["trade_no"])
        log = attempts_after(shop, trade["trade_no"], 2)
        assert [(a["status_code"], a["outcome"]) for a in log[:2]] == [(302, "retry")] * 2
        assert redirector.posts >= 2 and receiver.received == []
    finally:
        redirector.stop()


def test_the_attempt_log_names_an_error_class_not_the_socket_error(
        platform_urls: RunningPlatform, funded_customer: Callable[..., Any]) -> None:
    shop, buyer = shop_of(platform_urls), funded_customer(1_000)
    closed = f"http://127.0.0.1:{free_port()}/anfu/notify"  # allow-listed, nobody listens
    trade = new_trade(shop, notify_url=closed)
    buyer.pay(trade["trade_no"])
    log = attempts_after(shop, trade["trade_no"], 1)
    assert (log[0]["error"], log[0]["status_code"], log[0]["outcome"]) == (
        "connect_failed", None, "retry")
