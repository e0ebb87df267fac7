"""A software FIDO2 authenticator plus browser, for API tests of passkeys.

``SoftAuthenticator.create`` and ``.get`` take the options JSON the server sends and return
what a browser's ``PublicKeyCredential.toJSON()`` would post back. Keys live in memory. Keyword
parameters produce the mistakes and attacks tests need: a wrong origin (just pass one), a
wrong rp id or challenge, no user verification, or a counter set to any value.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import struct
from dataclasses import dataclass
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

ES256 = -7
EDDSA = -8
FLAG_UP = 0x01  # user present
FLAG_UV = 0x04  # user verified
FLAG_BE = 0x08  # backup eligible
FLAG_BS = 0x10  # backed up
FLAG_AT = 0x40  # attested credential data included


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class AuthenticatorRefused(Exception):
    """What a browser would reject with a DOMException (InvalidStateError, NotAllowedError)."""


@dataclass
class StoredCredential:
    credential_id: bytes
    rp_id: str
    user_handle: bytes
    algorithm: int
    private_key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
    sign_count: int = 0

    def cose_public_key(self) -> bytes:
        if isinstance(self.private_key, ed25519.Ed25519PrivateKey):
            raw = self.private_key.public_key().public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            return cbor2.dumps({1: 1, 3: EDDSA, -1: 6, -2: raw}, canonical=True)
        numbers = self.private_key.public_key().public_numbers()
        return cbor2.dumps({1: 2, 3: ES256, -1: 1, -2: numbers.x.to_bytes(32, "big"),
                            -3: numbers.y.to_bytes(32, "big")}, canonical=True)

    def spki_public_key(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)

    def sign(self, data: bytes) -> bytes:
        if isinstance(self.private_key, ed25519.Ed25519PrivateKey):
            return self.private_key.sign(data)
        return self.private_key.sign(data, ec.ECDSA(hashes.SHA256()))


class SoftAuthenticator:
    """A platform authenticator with resident keys and user verification.

    ``counts_signatures=False`` behaves like synced passkeys, whose counter stays 0.
    """

    def __init__(self, *, aaguid: bytes = bytes(16), counts_signatures: bool = True,
                 backed_up: bool = False) -> None:
        if len(aaguid) != 16:
            raise ValueError("an AAGUID is 16 bytes")
        self.aaguid = aaguid
        self.counts_signatures = counts_signatures
        self.backed_up = backed_up
        self.credentials: dict[bytes, StoredCredential] = {}

    # -- registration: navigator.credentials.create ------------------------------------------

    def create(self, options: dict[str, Any], origin: str, *, user_verified: bool = True,
               rp_id: str | None = None, challenge: bytes | None = None,
               algorithm: int | None = None) -> dict[str, Any]:
        """The registration credential JSON for creation ``options`` (the server's JSON)."""
        rp_id = rp_id if rp_id is not None else options["rp"]["id"]
        excluded = {unb64url(item["id"]) for item in options.get("excludeCredentials", [])}
        if excluded & self.credentials.keys():
            raise AuthenticatorRefused("InvalidStateError: this device is already registered")
        offered = [param["alg"] for param in options["pubKeyCredParams"]]
        algorithm = algorithm if algorithm is not None else _first_supported(offered)
        stored = StoredCredential(
            credential_id=secrets.token_bytes(32),
            rp_id=rp_id,
            user_handle=unb64url(options["user"]["id"]),
            algorithm=algorithm,
            private_key=(ed25519.Ed25519PrivateKey.generate() if algorithm == EDDSA
                         else ec.generate_private_key(ec.SECP256R1())),
        )
        self.credentials[stored.credential_id] = stored

        client_data = _client_data("webauthn.create", options, origin, challenge)
        attested = (self.aaguid + struct.pack(">H", len(stored.credential_id))
                    + stored.credential_id + stored.cose_public_key())
        auth_data = self._auth_data(rp_id, user_verified, FLAG_AT, 0) + attested
        attestation_object = cbor2.dumps(
            {"fmt": "none", "attStmt": {}, "authData": auth_data}, canonical=True)
        return {
            "id": b64url(stored.credential_id),
            "rawId": b64url(stored.credential_id),
            "type": "public-key",
            "authenticatorAttachment": "platform",
            "clientExtensionResults": {},
            "response": {
                "clientDataJSON": b64url(client_data),
                "attestationObject": b64url(attestation_object),
                "authenticatorData": b64url(auth_data),
                "publicKey": b64url(stored.spki_public_key()),
                "publicKeyAlgorithm": algorithm,
                "transports": ["internal"],
            },
        }

    # -- authentication: navigator.credentials.get -------------------------------------------

    def get(self, options: dict[str, Any], origin: str, *, user_verified: bool = True,
            credential_id: bytes | None = None, rp_id: str | None = None,
            challenge: bytes | None = None, sign_count: int | None = None) -> dict[str, Any]:
        """The assertion JSON for request ``options``; ``sign_count`` forces the counter."""
        stored = self._choose(options, credential_id)
        rp_id = rp_id if rp_id is not None else options.get("rpId", stored.rp_id)
        if sign_count is not None:
            stored.sign_count = sign_count
        elif self.counts_signatures:
            stored.sign_count += 1
        client_data = _client_data("webauthn.get", options, origin, challenge)
        auth_data = self._auth_data(rp_id, user_verified, 0, stored.sign_count)
        signature = stored.sign(auth_data + hashlib.sha256(client_data).digest())
        return {
            "id": b64url(stored.credential_id),
            "rawId": b64url(stored.credential_id),
            "type": "public-key",
            "authenticatorAttachment": "platform",
            "clientExtensionResults": {},
            "response": {
                "clientDataJSON": b64url(client_data),
                "authenticatorData": b64url(auth_data),
                "signature": b64url(signature),
                "userHandle": b64url(stored.user_handle),
            },
        }

    # -- internals ---------------------------------------------------------------------------

    def _auth_data(self, rp_id: str, user_verified: bool, extra_flags: int,
                   sign_count: int) -> bytes:
        flags = FLAG_UP | extra_flags
        if user_verified:
            flags |= FLAG_UV
        if self.backed_up:
            flags |= FLAG_BE | FLAG_BS
        rp_id_hash = hashlib.sha256(rp_id.encode()).digest()
        return rp_id_hash + bytes([flags]) + struct.pack(">I", sign_count)

    def _choose(self, options: dict[str, Any], credential_id: bytes | None) -> StoredCredential:
        if credential_id is not None:
            return self.credentials[credential_id]
        allowed = [unb64url(item["id"]) for item in options.get("allowCredentials", [])]
        rp_id = options.get("rpId")
        for stored in self.credentials.values():
            if (stored.credential_id in allowed if allowed else stored.rp_id == rp_id):
                return stored
        raise AuthenticatorRefused("NotAllowedError: no passkey on this device fits")


def _first_supported(offered: list[int]) -> int:
    for algorithm in offered:
        if algorithm in (ES256, EDDSA):
            return algorithm
    raise AuthenticatorRefused("NotSupportedError: no offered algorithm is supported")


def _client_data(kind: str, options: dict[str, Any], origin: str,
                 challenge: bytes | None) -> bytes:
    """clientDataJSON serialised the way browsers do: fixed key order, no spaces."""
    raw = challenge if challenge is not None else unb64url(options["challenge"])
    encoded = b64url(raw)
    return json.dumps({"type": kind, "challenge": encoded, "origin": origin,
                       "crossOrigin": False}, separators=(",", ":")).encode()
