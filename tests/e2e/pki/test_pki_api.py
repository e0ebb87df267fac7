"""The platform CA through the real listeners: device certificates on the mobile zone
(bound key, renewal, revocation with the device), merchant certificates on the merchant
zone, admin issuance and revocation, the CRL and the OCSP responder, checked by the real
``openssl`` binary (``verify -crl_check`` and ``ocsp``)."""

from __future__ import annotations

import base64
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID

from anfu.crypto.csr import device_csr_pem
from anfu.crypto.jose import DeviceKey
from anfu.sdk.errors import ApiError
from tests.support import RunningPlatform, create_merchant, new_customer, start_platform

OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"
Json = dict[str, Any]


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    running = start_platform(tmp_path_factory.mktemp("pki"))
    yield running
    running.stop()


def csr_of(key: ec.EllipticCurvePrivateKey, cn: str = "whatever") -> str:
    csr = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def cas(platform: RunningPlatform) -> list[Json]:
    reply = httpx.get(f"{platform.admin}/v1/pki/cas", headers=platform.admin_headers)
    assert reply.status_code == 200, reply.text
    return list(reply.json()["cas"])


def write_chain(folder: Path, issued: Json) -> tuple[Path, Path, Path]:
    """(leaf, issuing, root) PEM files of an issued certificate."""
    leaf, issuing, root = folder / "leaf.pem", folder / "issuing.pem", folder / "root.pem"
    leaf.write_text(issued["certificate"])
    issuing.write_text(issued["chain"][0])
    root.write_text(issued["chain"][1])
    return leaf, issuing, root


def openssl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([OPENSSL, *args], capture_output=True, text=True, timeout=30,
                          check=False)


def fetch_crl(platform: RunningPlatform, folder: Path, ca_id: str) -> Path:
    reply = httpx.get(f"{platform.mobile}/pki/crl/{ca_id}.crl")
    assert reply.status_code == 200 and reply.headers["content-type"] == "application/pkix-crl"
    path = folder / f"{ca_id}.crl"
    path.write_bytes(reply.content)
    return path


def openssl_verify(platform: RunningPlatform, folder: Path, issued: Json) -> str:
    leaf, issuing, root = write_chain(folder, issued)
    crl = fetch_crl(platform, folder, issued["ca_id"])
    done = openssl("verify", "-CAfile", str(root), "-untrusted", str(issuing), "-crl_check",
                   "-CRLfile", str(crl), str(leaf))
    return done.stdout + done.stderr


def openssl_ocsp(platform: RunningPlatform, folder: Path, issued: Json, url: str) -> str:
    leaf, issuing, root = write_chain(folder, issued)
    done = openssl("ocsp", "-issuer", str(issuing), "-cert", str(leaf), "-url",
                   f"{url}/pki/ocsp", "-CAfile", str(root), "-resp_text")
    return done.stdout + done.stderr


# --- device certificates (mobile zone) -----------------------------------------------------

@pytest.mark.parametrize("alg", ["ES256", "EdDSA"])
def test_device_certificate_issued_for_the_bound_key(platform: RunningPlatform,
                                                     tmp_path: Path, alg: str) -> None:
    client = new_customer(platform, bind_device=False)
    client.bind_device("pki phone", alg=alg, key_storage="hardware")
    issued = client.request_certificate()
    assert issued["profile"] == "device" and issued["subject_id"] == client.device_id
    assert issued["ocsp_url"].endswith("/pki/ocsp") and len(issued["chain"]) == 2
    cert = x509.load_pem_x509_certificate(issued["certificate"].encode())
    assert cert.subject.rfc4514_string() == f"CN={client.device_id}"
    uris = cert.extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value.get_values_for_type(x509.UniformResourceIdentifier)
    assert uris == [f"anfu:device:{client.device_id}", f"anfu:user:{client.user_id}"]
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert lifetime.total_seconds() <= 7 * 86400 + 60
    assert 0 < cert.serial_number < 2**159 and cert.serial_number.bit_length() >= 100
    with pytest.raises(x509.ExtensionNotFound):  # compact: no CRL distribution point
        cert.extensions.get_extension_for_class(x509.CRLDistributionPoints)
    current = client._authed("GET", "/v1/devices/current/certificate")
    assert current["serial"] == issued["serial"]
    # openssl agrees: a good chain and a good OCSP status.
    assert ": OK" in openssl_verify(platform, tmp_path, issued)
    text = openssl_ocsp(platform, tmp_path, issued, platform.mobile)
    assert "Response verify OK" in text and "leaf.pem: good" in text, text


def test_renewal_supersedes_and_revoked_device_revokes(platform: RunningPlatform,
                                                       tmp_path: Path) -> None:
    client = new_customer(platform)
    first = client.request_certificate()
    second = client.request_certificate()
    assert first["serial"] != second["serial"]
    text = openssl_ocsp(platform, tmp_path, first, platform.mobile)
    assert "leaf.pem: revoked" in text and "Reason: superseded" in text, text
    verdict = openssl_verify(platform, tmp_path, first)
    assert "certificate revoked" in verdict, verdict
    assert ": OK" in openssl_verify(platform, tmp_path, second)
    # Revoking the device revokes its certificate in the same transaction.
    device_id = client.device_id
    other = new_customer(platform, bind_device=False)
    assert other is not None
    client.revoke_device(device_id)
    text = openssl_ocsp(platform, tmp_path, second, platform.merchant)
    assert "leaf.pem: revoked" in text and "Reason: cessationOfOperation" in text, text
    listed = httpx.get(f"{platform.admin}/v1/pki/certificates", headers=platform.admin_headers,
                       params={"profile": "device", "subject_id": device_id}).json()
    assert {c["revocation_reason"] for c in listed["certificates"]} == {
        "superseded", "cessation_of_operation"}


def test_csr_must_carry_the_bound_key(platform: RunningPlatform) -> None:
    client = new_customer(platform)
    stranger = DeviceKey.generate("ES256")
    with pytest.raises(ApiError) as refused:
        client._authed("POST", "/v1/devices/current/certificate",
                       {"csr": device_csr_pem(stranger, client.device_id)})
    assert (refused.value.status, refused.value.code) == (403, "csr_key_mismatch")
    with pytest.raises(ApiError) as bad:
        client._authed("POST", "/v1/devices/current/certificate", {"csr": "not a csr"})
    assert (bad.value.status, bad.value.code) == (400, "csr_malformed")
    unbound = new_customer(platform, bind_device=False)
    with pytest.raises(ApiError) as nobind:
        unbound._authed("POST", "/v1/devices/current/certificate",
                        {"csr": device_csr_pem(stranger, "x")})
    assert nobind.value.code == "device_binding_required"
    with pytest.raises(ApiError) as none:
        client._authed("GET", "/v1/devices/current/certificate")
    assert none.value.status == 404


# --- merchant and admin --------------------------------------------------------------------

def test_merchant_certificates_and_openssl(platform: RunningPlatform, tmp_path: Path) -> None:
    from anfu.sdk import MerchantClient

    m = create_merchant(platform.admin, name="PKI Shop")
    shop = MerchantClient(platform.merchant, m.merchant_id, m.key_id, m.alg,
                          m.private_key_pem)
    key = ec.generate_private_key(ec.SECP256R1())
    issued = shop._call("POST", "/v1/certificates", body={"csr": csr_of(key, "evil")})
    cert = x509.load_pem_x509_certificate(issued["certificate"].encode())
    assert cert.subject.rfc4514_string() == f"CN={m.merchant_id}"  # never the CSR's name
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH in eku
    listed = shop._call("GET", "/v1/certificates")
    assert [c["serial"] for c in listed["certificates"]] == [issued["serial"]]
    assert ": OK" in openssl_verify(platform, tmp_path, issued)
    assert "leaf.pem: good" in openssl_ocsp(platform, tmp_path, issued, platform.merchant)
    done = shop._call("POST", f"/v1/certificates/{issued['serial']}/revoke",
                      body={"reason": "key_compromise"})
    assert done["status"] == "revoked" and done["revocation_reason"] == "key_compromise"
    assert "certificate revoked" in openssl_verify(platform, tmp_path, issued)
    text = openssl_ocsp(platform, tmp_path, issued, platform.mobile)
    assert "leaf.pem: revoked" in text and "Reason: keyCompromise" in text, text


def test_admin_issue_list_revoke(platform: RunningPlatform, tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    reply = httpx.post(f"{platform.admin}/v1/pki/certificates", headers=platform.admin_headers,
                       json={"profile": "server", "subject_id": "pay.example.test",
                             "csr": csr_of(key)})
    assert reply.status_code == 201, reply.text
    issued = reply.json()
    cert = x509.load_pem_x509_certificate(issued["certificate"].encode())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["pay.example.test"]
    bad = httpx.post(f"{platform.admin}/v1/pki/certificates/{issued['serial']}/revoke",
                     headers=platform.admin_headers,
                     json={"reason": "because"})
    assert bad.status_code == 400 and bad.json()["code"] == "reason_invalid"
    gone = httpx.post(f"{platform.admin}/v1/pki/certificates/{issued['serial']}/revoke",
                      headers=platform.admin_headers,
                      json={"reason": "cessation_of_operation"})
    assert gone.status_code == 200 and gone.json()["status"] == "revoked"
    missing = httpx.post(f"{platform.admin}/v1/pki/certificates/abc123/revoke",
                         headers=platform.admin_headers, json={})
    assert missing.status_code == 404
    listed = httpx.get(f"{platform.admin}/v1/pki/certificates",
                       headers=platform.admin_headers, params={"profile": "server"})
    assert issued["serial"] in [c["serial"] for c in listed.json()["certificates"]]
    kinds = {c["kind"] for c in cas(platform)}
    assert kinds == {"root", "issuing", "ocsp"}


# --- revocation status endpoints -----------------------------------------------------------

def test_ocsp_get_nonce_unknown_and_garbage(platform: RunningPlatform) -> None:
    client = new_customer(platform)
    issued = client.request_certificate()
    leaf = x509.load_pem_x509_certificate(issued["certificate"].encode())
    issuing = x509.load_pem_x509_certificate(issued["chain"][0].encode())
    nonce = secrets.token_bytes(16)
    request = ocsp.OCSPRequestBuilder().add_certificate(leaf, issuing, hashes.SHA256()) \
        .add_extension(x509.OCSPNonce(nonce), critical=False).build()
    der = request.public_bytes(serialization.Encoding.DER)
    reply = httpx.get(f"{platform.mobile}/pki/ocsp/"
                      + base64.b64encode(der).decode().replace("/", "%2F"))
    assert reply.headers["content-type"] == "application/ocsp-response"
    answer = ocsp.load_der_ocsp_response(reply.content)
    assert answer.certificate_status == ocsp.OCSPCertStatus.GOOD
    assert answer.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == nonce
    # An unknown serial of our issuer: unknown. Garbage: malformedRequest. Other CA:
    # unauthorized. None of them is an HTTP error.
    fake = ocsp.OCSPRequestBuilder().add_certificate_by_hash(
        answer.issuer_name_hash, answer.issuer_key_hash, 12345, hashes.SHA256()).build()
    reply = httpx.post(f"{platform.merchant}/pki/ocsp",
                       content=fake.public_bytes(serialization.Encoding.DER),
                       headers={"content-type": "application/ocsp-request"})
    assert ocsp.load_der_ocsp_response(reply.content).certificate_status == \
        ocsp.OCSPCertStatus.UNKNOWN
    reply = httpx.post(f"{platform.mobile}/pki/ocsp", content=b"\x30\x03junk")
    assert reply.status_code == 200
    assert ocsp.load_der_ocsp_response(reply.content).response_status == \
        ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    stranger = ocsp.OCSPRequestBuilder().add_certificate_by_hash(
        b"\x00" * 32, b"\x01" * 32, 7, hashes.SHA256()).build()
    reply = httpx.post(f"{platform.mobile}/pki/ocsp",
                       content=stranger.public_bytes(serialization.Encoding.DER))
    assert ocsp.load_der_ocsp_response(reply.content).response_status == \
        ocsp.OCSPResponseStatus.UNAUTHORIZED
    assert httpx.post(f"{platform.mobile}/pki/ocsp", content=b"x" * 10000).status_code == 200


def test_ca_certificates_crl_and_pins(platform: RunningPlatform) -> None:
    listed = cas(platform)
    issuing = next(c for c in listed if c.get("kind") == "issuing")
    root = next(c for c in listed if c.get("kind") == "root")
    for url in (platform.mobile, platform.merchant):
        reply = httpx.get(f"{url}/pki/ca/{root['ca_id']}.crt")
        assert reply.status_code == 200
        assert reply.headers["content-type"] == "application/pkix-cert"
        cert = x509.load_der_x509_certificate(reply.content)
        assert cert.subject == cert.issuer
        assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
        assert cert.public_key().curve.name == "secp384r1"  # type: ignore[union-attr]
    crl = x509.load_der_x509_crl(httpx.get(
        f"{platform.mobile}/pki/crl/{issuing['ca_id']}.crl").content)
    issuing_cert = x509.load_pem_x509_certificate(issuing["certificate"].encode())
    assert crl.is_signature_valid(issuing_cert.public_key())  # type: ignore[arg-type]
    assert crl.next_update_utc is not None
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number > 0
    assert httpx.get(f"{platform.mobile}/pki/crl/nope.crl").status_code == 404
    pins = httpx.get(f"{platform.mobile}/pki/pins").json()["pins"]
    assert {p["name"] for p in pins} >= {"root", "issuing"}
