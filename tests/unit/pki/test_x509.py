"""X.509 building blocks of the platform CA: certificates, CSRs, CRLs and OCSP answers, both
with an in-memory key and with a signer that has none (a PKCS#11 key: the builder runs with
a throw-away key and the TBS bytes are re-signed), and chain verification."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID

from anfu.crypto import x509 as X
from anfu.crypto.keystore.files import FileKeyStore, FileSigner
from anfu.pki.model import Profile, check_reason, needs_renewal, new_serial, subject_uris

NOW = time.time()


class TokenSigner:
    """A Signer whose private key never leaves the store (as with PKCS#11)."""

    backend = "pkcs11"

    def __init__(self, inner: FileSigner) -> None:
        self._inner = inner

    @property
    def key_id(self) -> str:
        return self._inner.key_id

    @property
    def alg(self) -> str:
        return self._inner.alg

    def public_key(self) -> Any:
        return self._inner.public_key()

    def sign(self, data: bytes) -> bytes:
        return self._inner.sign(data)

    def private_key(self) -> None:
        return None


@pytest.fixture(params=["file", "token"])
def ca(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    store = FileKeyStore(tmp_path / "keys", b"passphrase")
    wrap = (lambda s: s) if request.param == "file" else TokenSigner
    root_key = wrap(store.create("ca-root-1", "ecdsa-p384-sha384"))
    issuing_key = wrap(store.create("ca-issuing-1", "ecdsa-p256-sha256"))
    root = X.load_cert(X.build_ca_certificate(
        signer=root_key, common_name="Root", organization="anfu", serial=new_serial(),
        not_before=NOW - 60, not_after=NOW + 86400 * 3650))
    issuing = X.load_cert(X.build_ca_certificate(
        signer=issuing_key, common_name="Issuing", organization="anfu", serial=new_serial(),
        not_before=NOW - 60, not_after=NOW + 86400 * 365, issuer=root,
        issuer_signer=root_key, path_length=0))
    return {"root": root, "issuing": issuing, "issuing_key": issuing_key}


def leaf(ca: dict[str, Any], key: Any, *, not_after: float = NOW + 3600,
         serial: int = 0) -> x509.Certificate:
    spec = X.LeafSpec("dev-1", uris=subject_uris(Profile.DEVICE, "dev-1", "u-1"),
                      ocsp_url="http://127.0.0.1/pki/ocsp")
    return X.load_cert(X.build_leaf_certificate(
        spec=spec, public_key=key.public_key(), serial=serial or new_serial(),
        not_before=NOW - 60, not_after=not_after, issuer=ca["issuing"],
        issuer_signer=ca["issuing_key"]))


@pytest.mark.parametrize("make_key", [lambda: ec.generate_private_key(ec.SECP256R1()),
                                      ed25519.Ed25519PrivateKey.generate])
def test_leaf_chains_to_the_root(ca: dict[str, Any], make_key: Any) -> None:
    cert = leaf(ca, make_key())
    chain = X.verify_chain(cert, intermediates=[ca["issuing"]], roots=[ca["root"]], now=NOW)
    assert [c.subject for c in chain] == [cert.subject, ca["issuing"].subject,
                                          ca["root"].subject]
    cert.verify_directly_issued_by(ca["issuing"])
    ca["issuing"].verify_directly_issued_by(ca["root"])


def test_chain_refusals(ca: dict[str, Any], tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = leaf(ca, key)
    with pytest.raises(X.X509Invalid) as late:
        X.verify_chain(cert, intermediates=[ca["issuing"]], roots=[ca["root"]],
                       now=NOW + 7200)
    assert late.value.check == "certificate_expired"
    other = FileKeyStore(tmp_path / "other", b"pw").create("r", "ecdsa-p256-sha256")
    foreign = X.load_cert(X.build_ca_certificate(
        signer=other, common_name="Root", organization="anfu", serial=1,
        not_before=NOW - 60, not_after=NOW + 86400))
    with pytest.raises(X.X509Invalid) as stranger:
        X.verify_chain(cert, intermediates=[ca["issuing"]], roots=[foreign], now=NOW)
    assert stranger.value.check == "certificate_invalid"
    with pytest.raises(X.X509Invalid):
        X.verify_chain(cert, intermediates=[], roots=[ca["root"]], now=NOW)


def test_crl_lists_revoked_serials_with_reason(ca: dict[str, Any]) -> None:
    der = X.build_crl(issuer=ca["issuing"], signer=ca["issuing_key"],
                      revoked=[X.Revoked(77, NOW, "key_compromise"),
                               X.Revoked(78, NOW, "unspecified")],
                      this_update=NOW, next_update=NOW + 3600, number=5)
    crl = x509.load_der_x509_crl(der)
    assert crl.is_signature_valid(ca["issuing"].public_key())
    entry = crl.get_revoked_certificate_by_serial_number(77)
    assert entry is not None
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason == \
        x509.ReasonFlags.key_compromise
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 5
    assert crl.next_update_utc is not None


@pytest.mark.parametrize("status", ["good", "revoked", "unknown"])
def test_ocsp_response_is_signed_by_the_delegated_responder(ca: dict[str, Any],
                                                            tmp_path: Path,
                                                            status: str) -> None:
    store = FileKeyStore(tmp_path / "ocsp", b"pw")
    signer_key = store.create("ocsp-1", "ecdsa-p256-sha256")
    signer: Any = signer_key if ca["issuing_key"].private_key() else TokenSigner(signer_key)
    responder = X.load_cert(X.build_leaf_certificate(
        spec=X.LeafSpec("OCSP", eku=("ocsp_signing",), ocsp_nocheck=True,
                        subject_key_id=True),
        public_key=signer.public_key(), serial=new_serial(), not_before=NOW - 60,
        not_after=NOW + 86400, issuer=ca["issuing"], issuer_signer=ca["issuing_key"]))
    cert = leaf(ca, ec.generate_private_key(ec.SECP256R1()))
    query = X.parse_ocsp_request(X.ocsp_request(cert, ca["issuing"], nonce=b"n" * 16))
    assert (query.issuer_name_hash, query.issuer_key_hash) == X.issuer_hashes(
        ca["issuing"], "sha1")
    der = X.build_ocsp_response(query=query, status=status,
                                revoked_at=NOW if status == "revoked" else None,
                                reason="superseded", this_update=NOW,
                                next_update=NOW + 3600, responder=responder, signer=signer)
    answer = ocsp.load_der_ocsp_response(der)
    assert answer.certificate_status.name.lower() == status
    assert answer.serial_number == cert.serial_number
    assert answer.certificates == [responder]
    assert answer.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == b"n" * 16
    responder.public_key().verify(  # type: ignore[call-arg, union-attr]
        answer.signature, answer.tbs_response_bytes,
        ec.ECDSA(answer.signature_hash_algorithm))  # type: ignore[arg-type]
    if status == "revoked":
        assert answer.revocation_reason == x509.ReasonFlags.superseded


def test_ocsp_errors_and_malformed_requests() -> None:
    with pytest.raises(X.X509Invalid) as bad:
        X.parse_ocsp_request(b"\x30\x00")
    assert bad.value.check == "ocsp_malformed"
    for kind in ("malformed", "unauthorized", "internal", "try_later"):
        assert ocsp.load_der_ocsp_response(X.ocsp_error(kind)).response_status.name \
            .lower().startswith(kind.split("_")[0][:5])


def _csr(key: Any, algorithm: Any = None) -> str:
    built = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")])).sign(key, algorithm)
    return built.public_bytes(serialization.Encoding.PEM).decode()


def test_csr_parsing() -> None:
    p256 = ec.generate_private_key(ec.SECP256R1())
    parsed = X.parse_csr(_csr(p256, hashes.SHA256()))
    assert parsed.kind == "ec-p256" and parsed.jwk()["crv"] == "P-256"
    assert X.parse_csr(_csr(ed25519.Ed25519PrivateKey.generate())).jwk()["kty"] == "OKP"
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(X.X509Invalid) as weak:
        X.parse_csr(_csr(small, hashes.SHA256()))
    assert weak.value.check == "csr_key_unsupported"
    with pytest.raises(X.X509Invalid) as junk:
        X.parse_csr("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE"
                    " REQUEST-----\n")
    assert junk.value.check == "csr_malformed"
    # A request whose signature does not verify: flip a byte of the signature.
    der = bytearray(x509.load_pem_x509_csr(_csr(p256, hashes.SHA256()).encode())
                    .public_bytes(serialization.Encoding.DER))
    der[-3] ^= 0x01
    with pytest.raises(X.X509Invalid) as forged:
        X.parse_csr(bytes(der))
    assert forged.value.check in ("csr_signature_invalid", "csr_malformed")


def test_model_rules() -> None:
    serials = {new_serial() for _ in range(1000)}
    assert len(serials) == 1000
    assert all(2**127 <= s < 2**128 < 2**159 for s in serials)
    assert check_reason("superseded") == "superseded"
    with pytest.raises(ValueError):
        check_reason("certificate_hold")
    assert not needs_renewal(0, 90, 59) and needs_renewal(0, 90, 61)
    assert subject_uris(Profile.MERCHANT, "m1", None) == ("anfu:merchant:m1",)
