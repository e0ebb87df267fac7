"""All X.509 work of the platform CA, on pyca/cryptography: CA and leaf certificates,
PKCS#10 requests, CRLs, OCSP requests and responses, chain verification.

Every signature goes through a platform ``Signer``. A signer that holds its key in memory
(the file keystore) signs through the builder directly; one that does not (PKCS#11) gets a
builder run with a throw-away key of the same type, whose to-be-signed bytes are then
signed by the token and reassembled into the DER (``_resign``): the TBS bytes do not
depend on the signing key, only the signature does."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
)
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from anfu.crypto import _der
from anfu.crypto.keystore.files import new_private_key
from anfu.crypto.keystore.platform import Signer

UTC = dt.UTC

# RFC 5280 §5.3.1 reason names (as in the API) → cryptography's flags.
REASONS: dict[str, x509.ReasonFlags] = {
    "unspecified": x509.ReasonFlags.unspecified,
    "key_compromise": x509.ReasonFlags.key_compromise,
    "ca_compromise": x509.ReasonFlags.ca_compromise,
    "affiliation_changed": x509.ReasonFlags.affiliation_changed,
    "superseded": x509.ReasonFlags.superseded,
    "cessation_of_operation": x509.ReasonFlags.cessation_of_operation,
    "certificate_hold": x509.ReasonFlags.certificate_hold,
    "remove_from_crl": x509.ReasonFlags.remove_from_crl,
    "privilege_withdrawn": x509.ReasonFlags.privilege_withdrawn,
    "aa_compromise": x509.ReasonFlags.aa_compromise,
}


class X509Invalid(ValueError):
    """Bytes that are not the certificate, request or structure expected; ``check`` names
    what failed."""

    def __init__(self, check: str, detail: str) -> None:
        super().__init__(detail)
        self.check = check


def when(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, UTC)


def ts_of(moment: dt.datetime) -> float:
    return moment.replace(tzinfo=UTC).timestamp() if moment.tzinfo is None \
        else moment.timestamp()


# --- signing with a platform Signer --------------------------------------------------------

def _hash_for(signer: Signer) -> hashes.HashAlgorithm | None:
    if signer.alg == "ed25519":
        return None
    if signer.alg == "ecdsa-p384-sha384":
        return hashes.SHA384()
    return hashes.SHA256()


@lru_cache(maxsize=8)
def _throwaway(alg: str) -> CertificateIssuerPrivateKeyTypes:
    return new_private_key(alg)


def _resign(der: bytes, path: Sequence[int], signer: Signer, tail: bytes | None = None
            ) -> bytes:
    """Replace the signature of the SIGNED{…} structure found by following ``path``
    (indexes of SEQUENCE children; OCTET STRINGs and explicit tags are entered) and
    rebuild every enclosing length. ``tail`` replaces what follows the signature."""
    tag, value = _der.elements(der)[0]
    if not path:
        children = _der.elements(value)
        tbs = _der.tlv(*children[0])
        sig = _der.tlv(_der.BIT_STRING, b"\x00" + signer.sign(tbs))
        rest = tail if tail is not None else b"".join(_der.tlv(t, v) for t, v in children[3:])
        return _der.tlv(tag, tbs + _der.tlv(*children[1]) + sig + rest)
    children = _der.elements(value)
    index = path[0]
    child_tag, child_value = children[index]
    inner = _der.tlv(child_tag, child_value)
    if child_tag in (_der.OCTET_STRING, _der.CTX0):
        rebuilt = _der.tlv(child_tag, _resign(child_value, path[1:], signer, tail))
    else:
        rebuilt = _resign(inner, path[1:], signer, tail)
    parts = [_der.tlv(t, v) for t, v in children]
    parts[index] = rebuilt
    return _der.tlv(tag, b"".join(parts))


def _sign_builder(builder: Any, signer: Signer) -> bytes:
    """DER of a certificate / CRL built by ``builder`` and signed by ``signer``."""
    key = signer.private_key()
    if key is not None:
        return bytes(builder.sign(key, _hash_for(signer)).public_bytes(
            serialization.Encoding.DER))
    built = builder.sign(_throwaway(signer.alg), _hash_for(signer))
    return _resign(built.public_bytes(serialization.Encoding.DER), (), signer)


# --- certificates --------------------------------------------------------------------------

def _name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def load_cert(data: bytes | str) -> x509.Certificate:
    raw = data.encode() if isinstance(data, str) else data
    try:
        if raw.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(raw)
        return x509.load_der_x509_certificate(raw)
    except ValueError as exc:
        raise X509Invalid("certificate_malformed", f"not an X.509 certificate: {exc}") \
            from None


def der_of(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def pem_of_der(der: bytes, label: str = "CERTIFICATE") -> str:
    import base64
    import textwrap

    body = "\n".join(textwrap.wrap(base64.b64encode(der).decode("ascii"), 64))
    return f"-----BEGIN {label}-----\n{body}\n-----END {label}-----\n"


@lru_cache(maxsize=64)
def _aki(issuer: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    return x509.AuthorityKeyIdentifier.from_issuer_public_key(
        issuer.public_key())  # type: ignore[arg-type]


def spki_der(key: CertificatePublicKeyTypes) -> bytes:
    return key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def build_ca_certificate(*, signer: Signer, common_name: str, organization: str,
                         serial: int, not_before: float, not_after: float,
                         issuer: x509.Certificate | None = None,
                         issuer_signer: Signer | None = None,
                         path_length: int | None = None) -> bytes:
    """A root (``issuer`` None: self-signed) or an intermediate CA certificate."""
    public = signer.public_key()
    subject = _name(common_name, organization)
    builder = (x509.CertificateBuilder()
               .subject_name(subject)
               .issuer_name(issuer.subject if issuer is not None else subject)
               .public_key(public)
               .serial_number(serial)
               .not_valid_before(when(not_before))
               .not_valid_after(when(not_after))
               .add_extension(x509.BasicConstraints(ca=True, path_length=path_length),
                              critical=True)
               .add_extension(x509.KeyUsage(
                   digital_signature=True, content_commitment=False, key_encipherment=False,
                   data_encipherment=False, key_agreement=False, key_cert_sign=True,
                   crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(public),
                              critical=False))
    if issuer is not None:
        assert issuer_signer is not None
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(
                issuer.public_key()),  # type: ignore[arg-type]
            critical=False)
        return _sign_builder(builder, issuer_signer)
    builder = builder.add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
    return _sign_builder(builder, signer)


@dataclass(frozen=True)
class LeafSpec:
    """What a profile puts in an end-entity certificate."""

    common_name: str
    uris: tuple[str, ...] = ()
    dns_names: tuple[str, ...] = ()
    ip_addresses: tuple[str, ...] = ()
    eku: tuple[str, ...] = ()            # "client_auth" | "server_auth" | "ocsp_signing"
    key_encipherment: bool = False
    ocsp_url: str | None = None
    crl_url: str | None = None
    ocsp_nocheck: bool = False
    subject_key_id: bool = False


_EKU = {"client_auth": ExtendedKeyUsageOID.CLIENT_AUTH,
        "server_auth": ExtendedKeyUsageOID.SERVER_AUTH,
        "ocsp_signing": ExtendedKeyUsageOID.OCSP_SIGNING}


def build_leaf_certificate(*, spec: LeafSpec, public_key: CertificatePublicKeyTypes,
                           serial: int, not_before: float, not_after: float,
                           issuer: x509.Certificate, issuer_signer: Signer) -> bytes:
    builder = (x509.CertificateBuilder()
               .subject_name(_name(spec.common_name))
               .issuer_name(issuer.subject)
               .public_key(public_key)
               .serial_number(serial)
               .not_valid_before(when(not_before))
               .not_valid_after(when(not_after))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None),
                              critical=True)
               .add_extension(x509.KeyUsage(
                   digital_signature=True, content_commitment=False,
                   key_encipherment=spec.key_encipherment, data_encipherment=False,
                   key_agreement=False, key_cert_sign=False, crl_sign=False,
                   encipher_only=False, decipher_only=False), critical=True)
               .add_extension(_aki(issuer), critical=False))
    if spec.subject_key_id:
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(u) for u in spec.uris]
    names += [x509.DNSName(d) for d in spec.dns_names]
    names += [x509.IPAddress(ipaddress.ip_address(a)) for a in spec.ip_addresses]
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    if spec.eku:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([_EKU[e] for e in spec.eku]), critical=False)
    if spec.ocsp_url:
        builder = builder.add_extension(x509.AuthorityInformationAccess([
            x509.AccessDescription(x509.oid.AuthorityInformationAccessOID.OCSP,
                                   x509.UniformResourceIdentifier(spec.ocsp_url))]),
            critical=False)
    if spec.crl_url:
        builder = builder.add_extension(x509.CRLDistributionPoints([x509.DistributionPoint(
            full_name=[x509.UniformResourceIdentifier(spec.crl_url)], relative_name=None,
            reasons=None, crl_issuer=None)]), critical=False)
    if spec.ocsp_nocheck:
        builder = builder.add_extension(x509.OCSPNoCheck(), critical=False)
    return _sign_builder(builder, issuer_signer)


@dataclass(frozen=True)
class CertInfo:
    serial: str                 # lower-case hex, no leading zeros
    not_before: float
    not_after: float
    public_key_der: bytes
    sha256: str
    uris: tuple[str, ...]
    issuer_der: bytes           # the issuer Name, DER


def issued_info(der: bytes, *, serial: int, not_before: float, not_after: float,
                public_key: CertificatePublicKeyTypes, uris: tuple[str, ...],
                issuer: x509.Certificate) -> CertInfo:
    """The CertInfo of a certificate we just built, from what we built it with (DER
    timestamps are whole seconds)."""
    return CertInfo(serial=format(serial, "x"), not_before=float(int(not_before)),
                    not_after=float(int(not_after)), public_key_der=spki_der(public_key),
                    sha256=hashlib.sha256(der).hexdigest(), uris=uris,
                    issuer_der=issuer.subject.public_bytes())


def cert_info(cert: x509.Certificate) -> CertInfo:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = tuple(san.get_values_for_type(x509.UniformResourceIdentifier))
    except x509.ExtensionNotFound:
        uris = ()
    return CertInfo(serial=format(cert.serial_number, "x"),
                    not_before=cert.not_valid_before_utc.timestamp(),
                    not_after=cert.not_valid_after_utc.timestamp(),
                    public_key_der=spki_der(cert.public_key()),
                    sha256=hashlib.sha256(der_of(cert)).hexdigest(), uris=uris,
                    issuer_der=cert.issuer.public_bytes())


# --- certificate requests ------------------------------------------------------------------

@dataclass(frozen=True)
class CsrKey:
    public_key: CertificatePublicKeyTypes
    kind: str                    # "ec-p256" | "ec-p384" | "ed25519" | "rsa"

    @property
    def spki_der(self) -> bytes:
        return spki_der(self.public_key)

    def jwk(self) -> dict[str, str]:
        """The RFC 7517 JWK of an EC P-256 or Ed25519 key (to compare with a device's)."""
        key = self.public_key
        if isinstance(key, ed25519.Ed25519PublicKey):
            raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            return {"kty": "OKP", "crv": "Ed25519", "x": _b64u(raw)}
        if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
            nums = key.public_numbers()
            return {"kty": "EC", "crv": "P-256", "x": _b64u(nums.x.to_bytes(32, "big")),
                    "y": _b64u(nums.y.to_bytes(32, "big"))}
        raise X509Invalid("csr_key_unsupported", "only EC P-256 and Ed25519 keys have a JWK"
                          " here")


def _b64u(raw: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def parse_csr(data: str | bytes) -> CsrKey:
    """The public key of a PKCS#10 request whose self-signature verifies (proof of
    possession). Nothing else of the request is used: the platform names the subject."""
    raw = data.encode() if isinstance(data, str) else data
    try:
        if raw.lstrip().startswith(b"-----BEGIN"):
            csr = x509.load_pem_x509_csr(raw)
        else:
            csr = x509.load_der_x509_csr(raw)
    except ValueError as exc:
        raise X509Invalid("csr_malformed", f"not a PKCS#10 certificate request: {exc}") \
            from None
    try:
        ok = csr.is_signature_valid
        key = csr.public_key()
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise X509Invalid("csr_key_unsupported", f"the request's key cannot be used: {exc}") \
            from None
    if not ok:
        raise X509Invalid("csr_signature_invalid", "the request is not signed by its own key")
    if isinstance(key, ed25519.Ed25519PublicKey):
        return CsrKey(key, "ed25519")
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return CsrKey(key, "ec-p256")
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP384R1):
        return CsrKey(key, "ec-p384")
    if isinstance(key, rsa.RSAPublicKey) and key.key_size >= 2048:
        return CsrKey(key, "rsa")
    raise X509Invalid("csr_key_unsupported", "keys must be EC P-256/P-384, Ed25519 or RSA"
                      " of at least 2048 bits")


# --- CRL -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Revoked:
    serial: int
    revoked_at: float
    reason: str


def build_crl(*, issuer: x509.Certificate, signer: Signer, revoked: Iterable[Revoked],
              this_update: float, next_update: float, number: int) -> bytes:
    builder = (x509.CertificateRevocationListBuilder()
               .issuer_name(issuer.subject)
               .last_update(when(this_update))
               .next_update(when(next_update))
               .add_extension(x509.CRLNumber(number), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                   issuer.public_key()), critical=False))  # type: ignore[arg-type]
    for r in revoked:
        entry = (x509.RevokedCertificateBuilder().serial_number(r.serial)
                 .revocation_date(when(r.revoked_at)))
        if r.reason != "unspecified":
            entry = entry.add_extension(x509.CRLReason(REASONS[r.reason]), critical=False)
        builder = builder.add_revoked_certificate(entry.build())
    return _sign_builder(builder, signer)


# --- OCSP ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class OcspQuery:
    serial: int
    issuer_name_hash: bytes
    issuer_key_hash: bytes
    hash_alg: str                # "sha1" | "sha256" | …
    nonce: bytes | None


def parse_ocsp_request(der: bytes) -> OcspQuery:
    try:
        req = ocsp.load_der_ocsp_request(der)
        nonce: bytes | None = None
        with contextlib.suppress(x509.ExtensionNotFound):
            nonce = req.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
        return OcspQuery(req.serial_number, req.issuer_name_hash, req.issuer_key_hash,
                         req.hash_algorithm.name, nonce)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise X509Invalid("ocsp_malformed", f"not an OCSP request: {exc}") from None


def issuer_hashes(issuer: x509.Certificate, hash_alg: str) -> tuple[bytes, bytes]:
    """(issuerNameHash, issuerKeyHash) of RFC 6960 §4.1.1 for ``issuer``."""
    h = hashlib.new(hash_alg)
    h.update(issuer.subject.public_bytes())
    spki = spki_der(issuer.public_key())
    bits = _der.read_bits(_der.fields(spki, _der.SEQUENCE, _der.BIT_STRING)[1])
    return h.digest(), hashlib.new(hash_alg, bits).digest()


_OCSP_HASHES: dict[str, hashes.HashAlgorithm] = {
    "sha1": hashes.SHA1(),  # noqa: S303 - the CertID hash RFC 6960 clients send
    "sha256": hashes.SHA256(), "sha384": hashes.SHA384(),
    "sha512": hashes.SHA512()}


def build_ocsp_response(*, query: OcspQuery, status: str, revoked_at: float | None,
                        reason: str | None, this_update: float, next_update: float,
                        responder: x509.Certificate, signer: Signer) -> bytes:
    """A signed successful response for one serial: ``status`` good | revoked | unknown."""
    cert_status = {"good": ocsp.OCSPCertStatus.GOOD, "revoked": ocsp.OCSPCertStatus.REVOKED,
                   "unknown": ocsp.OCSPCertStatus.UNKNOWN}[status]
    algorithm = _OCSP_HASHES.get(query.hash_alg)
    if algorithm is None:
        raise X509Invalid("ocsp_hash_unsupported", f"hash {query.hash_alg} not supported")
    builder = ocsp.OCSPResponseBuilder().add_response_by_hash(
        issuer_name_hash=query.issuer_name_hash, issuer_key_hash=query.issuer_key_hash,
        serial_number=query.serial, algorithm=algorithm, cert_status=cert_status,
        this_update=when(this_update), next_update=when(next_update),
        revocation_time=when(revoked_at) if revoked_at is not None else None,
        revocation_reason=(REASONS[reason] if reason and reason != "unspecified"
                           else None) if status == "revoked" else None,
    )
    if query.nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(query.nonce), critical=False)
    key = signer.private_key()
    if key is not None:
        built = builder.responder_id(ocsp.OCSPResponderEncoding.HASH, responder).certificates(
            [responder]).sign(key, _hash_for(signer))
        return built.public_bytes(serialization.Encoding.DER)
    # A token key: the builder insists on a certificate matching the key it signs with, so
    # it gets a stand-in certificate of the same name (responder named byName, so the TBS
    # bytes are the real ones); then the real signature and the real certificate go in.
    stand_in = _stand_in(responder, signer.alg)
    built = builder.responder_id(ocsp.OCSPResponderEncoding.NAME, stand_in).certificates(
        [stand_in]).sign(_throwaway(signer.alg), _hash_for(signer))
    certs = _der.tlv(_der.CTX0, _der.tlv(_der.SEQUENCE, der_of(responder)))
    # OCSPResponse → responseBytes [0] ResponseBytes → response OCTET STRING → BasicOCSPResponse
    return _resign(built.public_bytes(serialization.Encoding.DER), (1, 1), signer, certs)


def _stand_in(responder: x509.Certificate, alg: str) -> x509.Certificate:
    key = _throwaway(alg)
    return (x509.CertificateBuilder().subject_name(responder.subject)
            .issuer_name(responder.subject).public_key(key.public_key())
            .serial_number(1).not_valid_before(responder.not_valid_before_utc)
            .not_valid_after(responder.not_valid_after_utc)
            .sign(key, hashes.SHA256() if alg != "ed25519" else None))


def ocsp_error(kind: str) -> bytes:
    status = {"malformed": ocsp.OCSPResponseStatus.MALFORMED_REQUEST,
              "unauthorized": ocsp.OCSPResponseStatus.UNAUTHORIZED,
              "internal": ocsp.OCSPResponseStatus.INTERNAL_ERROR,
              "try_later": ocsp.OCSPResponseStatus.TRY_LATER}[kind]
    return ocsp.OCSPResponseBuilder.build_unsuccessful(status).public_bytes(
        serialization.Encoding.DER)


def ocsp_request(cert: x509.Certificate, issuer: x509.Certificate, *,
                 nonce: bytes | None = None) -> bytes:
    """A client's OCSP request (SHA-1 CertID, as openssl sends); for tests and tools."""
    builder = ocsp.OCSPRequestBuilder().add_certificate(
        cert, issuer, hashes.SHA1())  # noqa: S303 - the CertID hash openssl sends
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(serialization.Encoding.DER)


# --- chain verification --------------------------------------------------------------------

def verify_chain(leaf: x509.Certificate, *, intermediates: Sequence[x509.Certificate],
                 roots: Sequence[x509.Certificate], now: float, server_name: str | None = None
                 ) -> list[x509.Certificate]:
    """The validated chain (leaf first) of ``leaf`` up to one of ``roots`` at ``now``, by
    cryptography's RFC 5280 path builder. End-entity extension rules are relaxed to what our
    profiles issue (device certificates carry no EKU); signature algorithms are webpki's.
    Raises X509Invalid("certificate_invalid"| "certificate_expired", …)."""
    try:
        return _verify_chain(leaf, intermediates, roots, now, server_name)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        if isinstance(exc, X509Invalid):
            raise
        raise X509Invalid("certificate_invalid", f"the certificate cannot be read: {exc}") \
            from None


def _verify_chain(leaf: x509.Certificate, intermediates: Sequence[x509.Certificate],
                  roots: Sequence[x509.Certificate], now: float, server_name: str | None
                  ) -> list[x509.Certificate]:
    moment = when(now)
    if not leaf.not_valid_before_utc <= moment <= leaf.not_valid_after_utc:
        raise X509Invalid("certificate_expired", "the certificate is outside its validity"
                          " period")
    ee_policy = ExtensionPolicy.permit_all()
    if server_name is not None:  # the server verifier matches names in the SAN
        ee_policy = ee_policy.require_present(x509.SubjectAlternativeName,
                                              Criticality.AGNOSTIC, None)
    builder = (PolicyBuilder().store(Store(list(roots))).time(moment)
               .extension_policies(ca_policy=ExtensionPolicy.webpki_defaults_ca(),
                                   ee_policy=ee_policy))
    try:
        if server_name is not None:
            subject: x509.GeneralName
            try:
                subject = x509.IPAddress(ipaddress.ip_address(server_name))
            except ValueError:
                subject = x509.DNSName(server_name)
            chain = builder.build_server_verifier(subject).verify(leaf, list(intermediates))
        else:
            chain = builder.build_client_verifier().verify(leaf, list(intermediates)).chain
    except VerificationError as exc:
        if isinstance(leaf.public_key(), ed25519.Ed25519PublicKey) and "algorithm" in str(exc):
            return _verify_by_hand(leaf, intermediates, roots, now)
        raise X509Invalid("certificate_invalid", f"the certificate does not chain to the"
                          f" platform CA: {exc}") from None
    return list(chain)


def _verify_by_hand(leaf: x509.Certificate, intermediates: Sequence[x509.Certificate],
                    roots: Sequence[x509.Certificate], now: float) -> list[x509.Certificate]:
    """Ed25519 subject keys are outside webpki's list; the chain is still checked: each
    signature, each validity period, CA flags, and the root being one of ours."""
    moment = when(now)
    chain = [leaf]
    current = leaf
    pool = list(intermediates) + list(roots)
    for _ in range(4):
        issuer = next((c for c in pool if c.subject == current.issuer
                       and _signed_by(current, c)), None)
        if issuer is None:
            break
        bc = issuer.extensions.get_extension_for_class(x509.BasicConstraints).value
        if not bc.ca or not issuer.not_valid_before_utc <= moment <= \
                issuer.not_valid_after_utc:
            break
        chain.append(issuer)
        if der_of(issuer) in {der_of(r) for r in roots}:
            return chain
        current = issuer
    raise X509Invalid("certificate_invalid", "the certificate does not chain to the platform"
                      " CA")


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def pin_sha256(cert: x509.Certificate) -> str:
    """RFC 7469 pin-sha256: base64 of SHA-256 over the SPKI."""
    import base64

    return base64.b64encode(hashlib.sha256(spki_der(cert.public_key())).digest()).decode()


def encrypted_key_pem(key: CertificateIssuerPrivateKeyTypes, password: bytes) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.BestAvailableEncryption(password))


def new_server_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())
