"""PKCS#10 certificate requests made on the phone for its device key (SDK side)."""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

from anfu.crypto.jose import DeviceKey


def device_csr_pem(key: DeviceKey, device_id: str) -> str:
    """A CSR signed by the device key. The platform takes only the key from it (the subject
    it puts in the certificate is its own), but names the device for the operator's eyes."""
    private = serialization.load_der_private_key(key.to_pkcs8_der(), password=None)
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, device_id)]))
    if isinstance(private, ed25519.Ed25519PrivateKey):
        csr = builder.sign(private, None)
    elif isinstance(private, ec.EllipticCurvePrivateKey):
        csr = builder.sign(private, hashes.SHA256())
    else:  # pragma: no cover - DeviceKey holds only these two
        raise TypeError("a device key is EC P-256 or Ed25519")
    return csr.public_bytes(serialization.Encoding.PEM).decode("ascii")
