"""The worker's HTTP client is pinned: it resolves a notify URL's host once, refuses if any
answer is refused, and connects to exactly those answers while the request keeps the
original name (Host header, TLS SNI, certificate check). In-process, against real sockets:
a resolver stands in for DNS, so a name can change its answer between the registration
check and the connection (rebinding), and names that exist nowhere else (``*.test``) prove
there is no second, system lookup."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from anfu.notify.network import AddressRefused, pinned_client, vet_notify_url
from anfu.notify.urls import AddressPolicy, IPAddress, Listener
from tests.support import NotifyReceiver

LOOPBACK_ALLOWED = AddressPolicy(allow_nets=(ipaddress.ip_network("127.0.0.0/8"),))
STRICT = AddressPolicy()
PUBLIC = ipaddress.ip_address("93.184.215.14")
LOOPBACK = ipaddress.ip_address("127.0.0.1")


class FakeDns:
    """Answers from a script, one list per lookup (the last one repeats); counts lookups."""

    def __init__(self, *answers: list[IPAddress]) -> None:
        self.answers = list(answers)
        self.lookups: list[str] = []

    async def __call__(self, host: str, port: int) -> list[IPAddress]:
        self.lookups.append(host)
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


def post(policy: AddressPolicy, dns: FakeDns, url: str,
         verify: bool | ssl.SSLContext = True) -> httpx.Response:
    async def send() -> httpx.Response:
        async with pinned_client(policy, timeout_s=5, resolve=dns, verify=verify) as client:
            return await client.post(url, content=b"{}")

    return asyncio.run(send())


def port_of(receiver: NotifyReceiver) -> int:
    return int(receiver.url.split(":")[2].split("/")[0])


def test_the_connection_goes_to_the_checked_answer_under_the_original_name(
        receiver: NotifyReceiver) -> None:
    dns = FakeDns([LOOPBACK])
    reply = post(LOOPBACK_ALLOWED, dns, f"http://shop.rebind.test:{port_of(receiver)}/n?a=1")
    assert reply.status_code == 200
    assert dns.lookups == ["shop.rebind.test"]  # one lookup, ours: the system knows no .test
    assert receiver.received[0].headers["Host"] == f"shop.rebind.test:{port_of(receiver)}"
    assert receiver.received[0].path == "/n?a=1"


def test_a_name_that_rebinds_after_registration_is_refused_at_connect(
        receiver: NotifyReceiver) -> None:
    dns = FakeDns([PUBLIC], [LOOPBACK])
    url = f"http://shop.rebind.test:{port_of(receiver)}/n"
    assert asyncio.run(vet_notify_url(url, STRICT, timeout_s=5, resolve=dns)) == url
    with pytest.raises(AddressRefused):
        post(STRICT, dns, url)
    assert dns.lookups == ["shop.rebind.test"] * 2 and receiver.received == []


def test_one_forbidden_answer_among_several_refuses_the_name(receiver: NotifyReceiver) -> None:
    dns = FakeDns([PUBLIC, LOOPBACK])
    with pytest.raises(AddressRefused):
        post(STRICT, dns, f"http://two.rebind.test:{port_of(receiver)}/n")
    assert receiver.received == []


def test_own_listeners_are_refused_inside_an_allow_listed_range(
        receiver: NotifyReceiver) -> None:
    policy = AddressPolicy(allow_nets=LOOPBACK_ALLOWED.allow_nets,
                           own_listeners=(Listener(None, port_of(receiver)),))
    for host in ("127.0.0.1", "127.0.0.2", "[::ffff:127.0.0.1]"):
        with pytest.raises(AddressRefused):
            post(policy, FakeDns([LOOPBACK]), f"http://{host}:{port_of(receiver)}/n")
    assert receiver.received == []


def test_numeric_hosts_are_judged_by_what_they_resolve_to(receiver: NotifyReceiver) -> None:
    """Even a URL the parser would refuse (say, a row older than the parser rule) is refused
    by the real resolver's answer: 2130706433 and 0x7f.1 are 127.0.0.1."""
    from anfu.notify.network import resolve_host

    for host in ("2130706433", "0x7f.1"):
        async def send(host: str = host) -> None:
            async with pinned_client(STRICT, timeout_s=5, resolve=resolve_host) as client:
                await client.post(f"http://{host}:{port_of(receiver)}/n", content=b"{}")

        with pytest.raises(AddressRefused):
            asyncio.run(send())
    assert receiver.received == []


@pytest.fixture
def tls_receiver(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """An HTTPS receiver on 127.0.0.1 whose certificate names only ``shop.rebind.test``;
    records the SNI each handshake asked for."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "shop.rebind.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("shop.rebind.test")]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    seen: dict[str, Any] = {"sni": [], "hosts": []}
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    server_ctx.sni_callback = lambda sock, sni, ctx: seen["sni"].append(sni)  # type: ignore[assignment,misc]

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", "0")))
            seen["hosts"].append(self.headers["Host"])
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = server_ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    seen["port"] = server.server_address[1]
    seen["client_ctx"] = ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))
    yield seen
    server.shutdown()


def test_tls_keeps_the_name_for_sni_and_the_certificate_check(
        tls_receiver: dict[str, Any]) -> None:
    port = tls_receiver["port"]
    reply = post(LOOPBACK_ALLOWED, FakeDns([LOOPBACK]), f"https://shop.rebind.test:{port}/n",
                 verify=tls_receiver["client_ctx"])
    assert reply.status_code == 204
    assert tls_receiver["sni"] == ["shop.rebind.test"]
    assert tls_receiver["hosts"] == [f"shop.rebind.test:{port}"]
    # The same address under another name fails the certificate check: the check is on
    # the name, not on where the pinned connection went.
    with pytest.raises(httpx.ConnectError):
        post(LOOPBACK_ALLOWED, FakeDns([LOOPBACK]), f"https://other.rebind.test:{port}/n",
             verify=tls_receiver["client_ctx"])
