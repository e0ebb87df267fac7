"""``anfu.tls`` on its own, on a real uvicorn server with certificates from a throw-away CA
made by openssl: the ASGI TLS extension in the scope (server cert, client chain and name,
version, cipher suite), which zone asks for a client certificate, and a certificate
reload without a restart."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import uvicorn

from anfu.tls import ZoneTls, pem_certificates, server_context
from tests.e2e.tls.conftest import needs_openssl, openssl

pytestmark = needs_openssl
PASSWORD = b"throw-away"


@dataclass(frozen=True)
class Creds:
    cert_chain_pem: Path
    key_pem: Path
    key_password: bytes
    client_ca_pem: Path


def _run(*args: str) -> None:
    done = openssl(*args)
    assert done.returncode == 0, done.stderr.decode()


def _leaf(folder: Path, ca: tuple[Path, Path], name: str, ext: str) -> tuple[Path, Path]:
    key, csr, cert, extfile = (folder / f"{name}.key", folder / f"{name}.csr",
                               folder / f"{name}.pem", folder / f"{name}.ext")
    extfile.write_text(ext)
    _run("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", str(key), "-subj", f"/CN={name}", "-out", str(csr))
    _run("x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]),
         "-set_serial", str(time.time_ns()), "-days", "1", "-out", str(cert),
         "-extfile", str(extfile))
    return cert, key


def _server_credentials(folder: Path, ca: tuple[Path, Path], creds: Creds) -> None:
    cert, key = _leaf(folder, ca, "localhost", "basicConstraints=CA:FALSE\n"
                      "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                      "extendedKeyUsage=serverAuth\n")
    _run("pkcs8", "-topk8", "-in", str(key), "-out", str(creds.key_pem), "-v2", "aes-256-cbc",
         "-passout", f"pass:{PASSWORD.decode()}")
    creds.cert_chain_pem.write_text(cert.read_text() + ca[0].read_text())


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("throwaway_ca")
    ca = (folder / "ca.pem", folder / "ca.key")
    _run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", str(ca[1]), "-out", str(ca[0]), "-days", "2", "-subj", "/CN=Throwaway CA",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    creds = Creds(folder / "chain.pem", folder / "server.key.pem", PASSWORD, ca[0])
    _server_credentials(folder, ca, creds)
    client = _leaf(folder, ca, "m_test", "basicConstraints=CA:FALSE\n"
                   "extendedKeyUsage=clientAuth\n")
    return {"folder": folder, "ca": ca, "creds": creds, "client": client}


async def echo_scope(scope: dict[str, Any], receive: Any, send: Any) -> None:
    assert scope["type"] == "http"
    body = orjson.dumps({"scheme": scope["scheme"],
                         "tls": (scope.get("extensions") or {}).get("tls")})
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture(scope="module")
def served(pki: dict[str, Any]) -> Iterator[tuple[ZoneTls, dict[str, str]]]:
    zone_tls = ZoneTls(pki["creds"], merchant_client_certificates="optional")
    servers: list[uvicorn.Server] = []
    urls: dict[str, str] = {}
    for zone in ("mobile", "merchant"):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        urls[zone] = f"https://127.0.0.1:{sock.getsockname()[1]}"
        server = uvicorn.Server(uvicorn.Config(echo_scope, log_config=None, lifespan="off",
                                               **zone_tls.uvicorn_options(zone)))
        servers.append(server)
        threading.Thread(target=lambda s=server, k=sock: asyncio.run(s.serve(sockets=[k])),
                         daemon=True).start()
    deadline = time.time() + 10
    while not all(s.started for s in servers) and time.time() < deadline:
        time.sleep(0.02)
    yield zone_tls, urls
    for server in servers:
        server.should_exit = True


def _get(url: str, pki: dict[str, Any], *, cert: bool = False,
         max_version: ssl.TLSVersion | None = None) -> dict[str, Any]:
    ctx = ssl.create_default_context(cafile=str(pki["ca"][0]))
    if max_version is not None:
        ctx.maximum_version = max_version
    if cert:
        ctx.load_cert_chain(str(pki["client"][0]), str(pki["client"][1]))
    with httpx.Client(verify=ctx, timeout=10) as client:
        reply = client.get(url)
    assert reply.status_code == 200
    body: dict[str, Any] = reply.json()
    return body


def _same_cert(a: str, b: str) -> bool:
    return ssl.PEM_cert_to_DER_cert(a) == ssl.PEM_cert_to_DER_cert(b)


def test_the_scope_carries_the_asgi_tls_extension(served: tuple[ZoneTls, dict[str, str]],
                                                  pki: dict[str, Any]) -> None:
    _, urls = served
    body = _get(urls["merchant"], pki, cert=True)
    tls = body["tls"]
    assert body["scheme"] == "https"
    assert tls["tls_version"] == 0x0304
    assert tls["cipher_suite"] in (0x1301, 0x1302, 0x1303)
    assert len(tls["client_cert_chain"]) == 1
    assert _same_cert(tls["client_cert_chain"][0], pki["client"][0].read_text())
    assert tls["client_cert_name"] == "CN=m_test"
    assert tls["client_cert_error"] is None
    assert _same_cert(tls["server_cert"],
                      pem_certificates(pki["creds"].cert_chain_pem.read_text())[0])


def test_without_a_client_certificate_the_chain_is_empty(
        served: tuple[ZoneTls, dict[str, str]], pki: dict[str, Any]) -> None:
    tls = _get(served[1]["merchant"], pki)["tls"]
    assert tls["client_cert_chain"] == [] and tls["client_cert_name"] is None


def test_only_the_merchant_zone_asks_for_a_client_certificate(
        served: tuple[ZoneTls, dict[str, str]], pki: dict[str, Any]) -> None:
    tls = _get(served[1]["mobile"], pki, cert=True)["tls"]
    assert tls["client_cert_chain"] == []
    assert served[0].contexts["mobile"].verify_mode == ssl.CERT_NONE
    assert served[0].contexts["merchant"].verify_mode == ssl.CERT_OPTIONAL


def test_tls12_is_reported_with_its_iana_suite(served: tuple[ZoneTls, dict[str, str]],
                                               pki: dict[str, Any]) -> None:
    tls = _get(served[1]["mobile"], pki, max_version=ssl.TLSVersion.TLSv1_2)["tls"]
    assert tls["tls_version"] == 0x0303
    assert tls["cipher_suite"] in (0xC02B, 0xC02C, 0xCCA9)  # ECDHE-ECDSA AEAD suites


def test_contexts_refuse_everything_below_tls12(pki: dict[str, Any]) -> None:
    for mode in ("off", "optional", "required"):
        ctx = server_context(pki["creds"], client_certificates=mode)
        assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
        assert ctx.options & ssl.OP_NO_COMPRESSION
        assert all(c["protocol"] in ("TLSv1.2", "TLSv1.3") and
                   ("ECDHE" in c["name"] or c["name"].startswith("TLS_"))
                   for c in ctx.get_ciphers())
    with pytest.raises(ValueError):
        server_context(pki["creds"], client_certificates="sometimes")


def test_a_renewed_certificate_is_served_without_a_restart(
        served: tuple[ZoneTls, dict[str, str]], pki: dict[str, Any]) -> None:
    zone_tls, urls = served
    before = _get(urls["mobile"], pki)["tls"]["server_cert"]
    assert not zone_tls.reload(pki["creds"])  # nothing changed
    time.sleep(0.01)
    _server_credentials(pki["folder"], pki["ca"], pki["creds"])
    assert zone_tls.reload(pki["creds"])
    after = _get(urls["mobile"], pki)["tls"]["server_cert"]
    assert not _same_cert(before, after)
    assert _same_cert(after, pem_certificates(pki["creds"].cert_chain_pem.read_text())[0])
