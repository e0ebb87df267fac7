"""TLS tests: a platform serving every listener over TLS with merchant mTLS required, its
root CA certificate, and merchant certificates made from CSRs by the real openssl binary."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import MerchantIdentity, RunningPlatform, create_merchant, start_platform

OPENSSL = shutil.which("openssl")
needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="the openssl binary is not installed")


def openssl(*args: str, stdin: bytes = b"",
            timeout: float = 20) -> subprocess.CompletedProcess[bytes]:
    assert OPENSSL is not None
    return subprocess.run([OPENSSL, *args], input=stdin, capture_output=True, timeout=timeout,
                          check=False)


def new_key_and_csr(folder: Path, name: str) -> tuple[Path, str]:
    """A P-256 key (PEM, unencrypted) and a PKCS#10 request for it, by openssl."""
    key, csr = folder / f"{name}.key.pem", folder / f"{name}.csr.pem"
    done = openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                   "-nodes", "-keyout", str(key), "-subj", f"/CN={name}", "-out", str(csr))
    assert done.returncode == 0, done.stderr.decode()
    return key, csr.read_text()


@dataclass
class MerchantTls:
    identity: MerchantIdentity
    cert: Path         # the merchant's certificate (then its chain), PEM
    key: Path
    serial: str


@dataclass
class TlsPlatform:
    running: RunningPlatform
    root: Path         # the platform's root CA certificate alone

    def admin(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return httpx.request(method, f"{self.running.admin}{path}",
                             headers=self.running.admin_headers, verify=self.running.verify,
                             timeout=10, **kw)

    def merchant(self) -> MerchantIdentity:
        return create_merchant(self.running.admin, verify=self.running.verify)

    def certify(self, merchant: MerchantIdentity, folder: Path, tag: str = "") -> MerchantTls:
        """A merchant TLS client certificate issued by the admin zone from an openssl CSR."""
        key, csr = new_key_and_csr(folder, f"{merchant.merchant_id}{tag}")
        reply = self.admin("POST", "/v1/pki/certificates", json={
            "profile": "merchant", "subject_id": merchant.merchant_id, "csr": csr})
        assert reply.status_code == 201, reply.text
        issued = reply.json()
        cert = folder / f"{merchant.merchant_id}{tag}.crt.pem"
        cert.write_text(issued["certificate"] + "".join(issued["chain"][:1]))
        return MerchantTls(merchant, cert, key, issued["serial"])

    def revoke(self, serial: str) -> None:
        reply = self.admin("POST", f"/v1/pki/certificates/{serial}/revoke",
                           json={"reason": "key_compromise"})
        assert reply.status_code == 200, reply.text


def root_certificate(platform: RunningPlatform, folder: Path) -> Path:
    reply = httpx.get(f"{platform.admin}/v1/pki/cas",
                      headers=platform.admin_headers, verify=platform.verify, timeout=10)
    assert reply.status_code == 200, reply.text
    roots = [c for c in reply.json()["cas"] if c["kind"] == "root" and c["status"] == "active"]
    path = folder / "root.pem"
    path.write_text(roots[-1]["certificate"])
    return path


@pytest.fixture(scope="module")
def tls_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsPlatform]:
    home = tmp_path_factory.mktemp("tls")
    running = start_platform(home, ANFU_TLS="1", ANFU_MERCHANT_MTLS="required")
    try:
        yield TlsPlatform(running, root_certificate(running, home))
    finally:
        running.stop()


@pytest.fixture
def certified(tls_platform: TlsPlatform, tmp_path: Path) -> Callable[..., MerchantTls]:
    def make(merchant: MerchantIdentity | None = None, tag: str = "") -> MerchantTls:
        return tls_platform.certify(merchant or tls_platform.merchant(), tmp_path, tag)

    return make
