"""``anfu run --workers 2`` with TLS and ``ANFU_MERCHANT_MTLS=optional``: every process
serves TLS 1.3 on the shared sockets; on the merchant zone a client certificate may be left
out, but one that is presented must belong to the signing merchant."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from anfu.sdk import ApiError, MerchantClient
from tests.e2e.tls.conftest import TlsPlatform, needs_openssl, root_certificate
from tests.support import start_platform

pytestmark = needs_openssl


@pytest.fixture(scope="module")
def optional_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsPlatform]:
    home = tmp_path_factory.mktemp("tls_workers")
    running = start_platform(home, ANFU_TLS="1", ANFU_MERCHANT_MTLS="optional",
                             ANFU_WORKERS="2")
    try:
        yield TlsPlatform(running, root_certificate(running, home))
    finally:
        running.stop()


def test_every_worker_process_serves_tls13(optional_platform: TlsPlatform) -> None:
    ctx = ssl.create_default_context(cafile=str(optional_platform.root))
    for url in (optional_platform.running.mobile, optional_platform.running.merchant):
        versions = set()
        for _ in range(20):  # new connections: the kernel spreads them over both processes
            with httpx.Client(verify=ctx, timeout=10) as client:
                reply = client.get(f"{url}/healthz")
                assert reply.status_code == 200
                versions.add(reply.extensions["network_stream"].get_extra_info(
                    "ssl_object").version())
        assert versions == {"TLSv1.3"}
    logs = optional_platform.running.logs()
    assert logs.count("Started server process") >= 4  # two processes, two or three zones


def test_optional_mode_serves_without_a_certificate_and_checks_one_that_is_sent(
        optional_platform: TlsPlatform, tmp_path: Path) -> None:
    p = optional_platform
    shop, other = p.merchant(), p.merchant()
    plain = MerchantClient(p.running.merchant, shop.merchant_id, shop.key_id, shop.alg,
                           shop.private_key_pem, verify=p.root)
    assert plain.balance()["merchant_id"] == shop.merchant_id
    mine = p.certify(shop, tmp_path)
    with_cert = MerchantClient(p.running.merchant, shop.merchant_id, shop.key_id, shop.alg,
                               shop.private_key_pem, verify=p.root, cert=(mine.cert, mine.key))
    assert with_cert.balance()["merchant_id"] == shop.merchant_id
    wrong = MerchantClient(p.running.merchant, other.merchant_id, other.key_id, other.alg,
                           other.private_key_pem, verify=p.root, cert=(mine.cert, mine.key))
    with pytest.raises(ApiError) as caught:
        wrong.balance()
    assert (caught.value.status, caught.value.code) == (403, "client_certificate_mismatch")
