"""What the platform asks of the CA, in-process on a real platform (SQLite, or PostgreSQL with
ANFU_TEST_DATABASE_URL), with a movable clock: verify_certificate's error codes,
current_device_certificate, revoke_device_certificates, ensure_server_certificate, and the
OCSP cache following a revocation."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp

from anfu.crypto import x509 as X
from anfu.crypto.csr import device_csr_pem
from anfu.crypto.jose import DeviceKey
from anfu.crypto.jwk import parse_public_jwk
from anfu.errors import AuthenticationFailed
from anfu.pki import service as pki
from anfu.pki.ocsp import responder
from tests.clock import Clock
from tests.support import reset_database
from tests.support import test_database_url as database_url


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Any]:
    from anfu.bootstrap import build
    from anfu.config import Settings
    from anfu.db.migrate import upgrade

    url = database_url(tmp_path)
    reset_database(url)
    upgrade(url)
    settings = Settings(home=tmp_path, database_url=url, env="test",
                        tls_hostnames="localhost,127.0.0.1")
    running = build(settings, clock=Clock(time.time()))
    pki.ensure_ca(running)
    yield running
    running.close()


def device_cert(platform: Any, device_id: str = "dev1", alg: str = "ES256") -> Any:
    key = DeviceKey.generate(alg)  # type: ignore[arg-type]
    jwk = dict(key.public.jwk)
    facts = pki.DeviceFacts(device_id, "user1", parse_public_jwk(jwk).jkt, jwk, True)
    auth = pki.authority(platform)
    return platform.write_sync(lambda uow: pki.issue_device_certificate(
        uow, auth, device=facts, csr_pem=device_csr_pem(key, device_id)))


def der(issued: Any) -> bytes:
    return X.der_of(X.load_cert(issued.certificate_pem))


def verify(platform: Any, data: bytes, profile: str = "device",
           now: float | None = None) -> Any:
    when = platform.clock() if now is None else now
    return platform.read(lambda conn: pki.verify_certificate(conn, data, profile=profile,
                                                             now=when))


def refused(platform: Any, data: bytes, **kw: Any) -> str:
    with pytest.raises(AuthenticationFailed) as exc:
        verify(platform, data, **kw)
    return exc.value.code


@pytest.mark.parametrize("alg", ["ES256", "EdDSA"])
def test_verify_certificate_and_its_refusals(platform: Any, alg: str) -> None:
    issued = device_cert(platform, alg=alg)
    ok = verify(platform, der(issued))
    assert (ok.profile, ok.subject_id, ok.user_id, ok.serial) == (
        "device", "dev1", "user1", issued.serial)
    assert ok.sha256 == issued.sha256 and ok.public_key_der
    assert refused(platform, der(issued), profile="merchant") == "certificate_wrong_profile"
    assert refused(platform, der(issued), now=issued.not_after + 10) == "certificate_expired"
    assert refused(platform, b"junk") == "certificate_invalid"
    # Signed by our issuing CA but never recorded: unknown.
    auth = pki.authority(platform)
    issuing = auth.active_issuing()
    stray = X.build_leaf_certificate(
        spec=X.LeafSpec("dev1"), public_key=ec.generate_private_key(ec.SECP256R1())
        .public_key(), serial=12345, not_before=platform.clock() - 60,
        not_after=platform.clock() + 3600, issuer=X.load_cert(issuing.cert_pem),
        issuer_signer=auth.signer(issuing.key_id))
    assert refused(platform, stray) == "certificate_unknown"
    # Self-signed look-alike: does not chain.
    key = ec.generate_private_key(ec.SECP256R1())
    name = X.load_cert(issuing.cert_pem).subject
    fake = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(int(issued.serial, 16))
            .not_valid_before(X.when(platform.clock() - 60))
            .not_valid_after(X.when(platform.clock() + 60)).sign(key, hashes.SHA256()))
    assert refused(platform, fake.public_bytes(serialization.Encoding.DER)) == \
        "certificate_invalid"


def test_device_certificate_lifecycle_and_ocsp_cache(platform: Any) -> None:
    first = device_cert(platform)
    current = platform.read(lambda c: pki.current_device_certificate(c, "dev1",
                                                                     platform.clock()))
    assert current is not None and current.serial == first.serial
    # OCSP: good, cached; then the device is revoked and the cache follows.
    leaf, issuer = X.load_cert(first.certificate_pem), X.load_cert(first.chain_pem[0])
    request = X.ocsp_request(leaf, issuer)
    answers = responder(platform)
    good = ocsp.load_der_ocsp_response(answers.answer(request, platform.clock()))
    assert good.certificate_status == ocsp.OCSPCertStatus.GOOD
    assert answers.answer(request, platform.clock()) == answers.answer(request,
                                                                       platform.clock())
    count = platform.write_sync(lambda uow: pki.revoke_device_certificates(
        uow.conn, "dev1", reason="key_compromise", now=uow.now))
    assert count == 1
    assert platform.read(lambda c: pki.current_device_certificate(
        c, "dev1", platform.clock())) is None
    assert refused(platform, der(first)) == "certificate_revoked"
    time.sleep(0.25)  # another process would see the generation move within 0.2 s
    revoked = ocsp.load_der_ocsp_response(answers.answer(request, platform.clock()))
    assert revoked.certificate_status == ocsp.OCSPCertStatus.REVOKED
    assert revoked.revocation_reason == x509.ReasonFlags.key_compromise
    crl = x509.load_der_x509_crl(pki.authority(platform).crl(first.ca_id, platform.clock()))
    assert crl.get_revoked_certificate_by_serial_number(int(first.serial, 16)) is not None


def test_ocsp_signer_is_renewed(platform: Any) -> None:
    auth = pki.authority(platform)
    before = [c.ca_id for c in auth.cas() if c.kind == "ocsp"]
    platform.clock.advance(5 * 86400)  # past two thirds of the 7-day signer
    auth.ensure_ocsp_signers(now=platform.clock())
    after = [c.ca_id for c in auth.cas() if c.kind == "ocsp"]
    assert len(after) == len(before) + 1


def test_ensure_server_certificate(platform: Any) -> None:
    creds = pki.ensure_server_certificate(platform)
    chain = creds.cert_chain_pem.read_text()
    assert chain.count("BEGIN CERTIFICATE") == 2
    assert creds.key_pem.stat().st_mode & 0o777 == 0o600
    key = serialization.load_pem_private_key(creds.key_pem.read_bytes(),
                                             password=creds.key_password)
    leaf = x509.load_pem_x509_certificate(chain.encode())
    assert X.spki_der(leaf.public_key()) == X.spki_der(key.public_key())  # type: ignore[arg-type]
    assert creds.client_ca_pem.read_text().count("BEGIN CERTIFICATE") == 2
    bundle = x509.load_pem_x509_certificates(creds.client_ca_pem.read_bytes())
    issuing = next(c for c in bundle if c.subject != c.issuer)
    X.verify_chain(leaf, intermediates=[issuing], roots=[
        X.load_cert(c.cert_pem) for c in pki.authority(platform).cas() if c.kind == "root"],
        now=platform.clock(), server_name="localhost")
    assert verify(platform, X.der_of(leaf), profile="server").subject_id == "localhost"
    # The same certificate while fresh; a new one when a third of its life is left.
    again = pki.ensure_server_certificate(platform)
    assert again.cert_chain_pem.read_text() == chain
    platform.clock.advance(61 * 86400)
    renewed = pki.ensure_server_certificate(platform)
    assert renewed.cert_chain_pem.read_text() != chain
