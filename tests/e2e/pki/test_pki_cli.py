"""``anfu pki`` against a running platform: the root key goes offline (exported, removed)
and the platform keeps issuing and answering OCSP; a new issuing CA needs the root key back,
and the running platform picks it up without a restart."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import RunningPlatform, new_customer, start_platform

PASSPHRASE = "correct horse battery staple"


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    running = start_platform(tmp_path_factory.mktemp("pki_cli"))
    yield running
    running.stop()


def anfu(platform: RunningPlatform, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**platform.env, "ANFU_PKI_EXPORT_PASSPHRASE": PASSPHRASE}
    return subprocess.run([sys.executable, "-m", "anfu.cli", "pki", *args], env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def cas(platform: RunningPlatform) -> list[dict[str, Any]]:
    return list(httpx.get(f"{platform.admin}/v1/pki/cas",
                          headers=platform.admin_headers).json()["cas"])


def test_offline_root_and_issuing_rotation(platform: RunningPlatform, tmp_path: Path) -> None:
    refused = anfu(platform, "init")
    assert refused.returncode == 1 and "ca_exists" in refused.stderr  # created at first start
    exported = tmp_path / "root.pem"
    done = anfu(platform, "export-root", "--out", str(exported))
    assert done.returncode == 0, done.stderr
    text = exported.read_text()
    assert "ENCRYPTED PRIVATE KEY" in text and "CERTIFICATE" in text
    done = anfu(platform, "remove-root-key", "--exported", str(exported))
    assert done.returncode == 0, done.stderr
    listed = json.loads(anfu(platform, "cas").stdout)["cas"]
    assert {c["kind"]: c["key_present"] for c in listed if c["kind"] == "root"} == \
        {"root": False}
    # The platform goes on without the root key.
    client = new_customer(platform)
    before = client.request_certificate()
    assert before["ca_id"] == "issuing-1"
    # A new issuing CA needs it back.
    offline = anfu(platform, "rotate-issuing")
    assert offline.returncode == 1 and "root_key_offline" in offline.stderr
    done = anfu(platform, "rotate-issuing", "--root-key", str(exported))
    assert done.returncode == 0, done.stderr
    states = {c["ca_id"]: c["status"] for c in cas(platform)}
    assert states["issuing-1"] == "retired" and states["issuing-2"] == "active"
    after = client.request_certificate()  # renewal under the new issuing CA
    assert after["ca_id"] == "issuing-2" and after["chain"][1] == before["chain"][1]
    # The retired CA still answers for its certificates (the old one is now superseded).
    crl = httpx.get(f"{platform.mobile}/pki/crl/issuing-1.crl")
    assert crl.status_code == 200
    from cryptography import x509

    revoked = x509.load_der_x509_crl(crl.content).get_revoked_certificate_by_serial_number(
        int(before["serial"], 16))
    assert revoked is not None


def test_idempotent_device_issuance(platform: RunningPlatform) -> None:
    from anfu.crypto.csr import device_csr_pem

    client = new_customer(platform)
    csr = device_csr_pem(client.device_key, client.device_id)
    first = client._authed("POST", "/v1/devices/current/certificate", {"csr": csr},
                           key="cert-1")
    again = client._authed("POST", "/v1/devices/current/certificate", {"csr": csr},
                           key="cert-1")
    assert first["serial"] == again["serial"]
