"""Passkeys (WebAuthn Level 2 / FIDO2) on ``py_webauthn``: ceremony options and verification.

Options come back as JSON-ready dicts (binary fields in unpadded base64url), ready to send to
the browser. Verification raises ``PasskeyInvalid``, whose ``check`` names what failed; no
``py_webauthn`` or ``cryptography`` exception escapes this module.

Policy, the same for every caller: user verification is required in both ceremonies (a
passkey is a whole second factor only when the device checked the user's PIN or biometric),
attestation is ``none`` (we trust the key, not the device model), and a signature counter
that fails to move forward is refused as a possible cloned authenticator.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import webauthn
from cryptography.exceptions import InvalidSignature as _CryptographyInvalidSignature
from webauthn.helpers import options_to_json_dict
from webauthn.helpers.cose import COSEAlgorithmIdentifier
from webauthn.helpers.exceptions import (
    UnsupportedAlgorithm,
    UnsupportedEC2Curve,
    UnsupportedPublicKey,
    UnsupportedPublicKeyType,
)
from webauthn.helpers.structs import (
    AttestationConveyancePreference,
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

Check = Literal[
    "malformed",
    "challenge",
    "origin",
    "rp_id",
    "user_verification",
    "signature",
    "sign_count",
    "unsupported",
]

TIMEOUT_MS = 120_000
MIN_CHALLENGE_BYTES = 16  # WebAuthn section 13.4.3: at least 16 random bytes
MAX_USER_HANDLE_BYTES = 64  # WebAuthn section 5.4.3
MAX_CREDENTIAL_ID_BYTES = 1023  # WebAuthn section 4, "Credential ID"

# Preference order: ES256 is what nearly every authenticator makes; EdDSA is smaller and
# faster where offered; RS256 last, for Windows Hello on older TPMs.
_ALGORITHMS = (
    COSEAlgorithmIdentifier.ECDSA_SHA_256,
    COSEAlgorithmIdentifier.EDDSA,
    COSEAlgorithmIdentifier.RSASSA_PKCS1_v1_5_SHA_256,
)
_KNOWN_TRANSPORTS = frozenset(transport.value for transport in AuthenticatorTransport)
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")

_EXPLANATIONS: dict[Check, str] = {
    "malformed": "The passkey response is malformed or incomplete; try again.",
    "challenge": "The passkey answered another request (challenge mismatch); start again.",
    "origin": "The passkey was used on a site this service does not trust.",
    "rp_id": "The passkey belongs to another site (relying party id mismatch).",
    "user_verification": (
        "The device did not verify you (PIN, fingerprint or face); "
        "try again and confirm on the device."
    ),
    "signature": "The passkey signature is not valid.",
    "sign_count": (
        "The passkey's signature counter went backwards, which suggests a cloned "
        "authenticator; this passkey is refused, sign in another way and review your passkeys."
    ),
    "unsupported": "This passkey uses a key type or format this service does not support.",
}

# py_webauthn raises one exception type per ceremony and tells the checks apart only by
# message, so we match the messages of the installed version (3.x); an unknown message
# becomes "malformed", which still refuses the credential.
_MESSAGE_CHECKS: tuple[tuple[str, Check], ...] = (
    ("challenge was not expected challenge", "challenge"),
    ("unexpected client data origin", "origin"),
    ("unexpected rp id hash", "rp_id"),
    ("user verification is required", "user_verification"),
    ("user presence was required", "user_verification"),
    ("user was not present", "user_verification"),
    ("could not verify authentication signature", "signature"),
    ("attestation statement could not be verified", "signature"),
    ("sign count", "sign_count"),
    ("unsupported", "unsupported"),
)
_UNSUPPORTED_TYPES = (
    UnsupportedAlgorithm,
    UnsupportedEC2Curve,
    UnsupportedPublicKey,
    UnsupportedPublicKeyType,
)


class PasskeyInvalid(Exception):
    """A passkey registration or assertion failed verification; ``check`` names the check."""

    def __init__(self, check: Check, detail: str = "") -> None:
        message = _EXPLANATIONS[check] + (f" ({detail})" if detail else "")
        super().__init__(message)
        self.check: Check = check


@dataclass(frozen=True)
class RegisteredPasskey:
    """What to store about a newly registered passkey."""

    credential_id: bytes
    public_key: bytes  # the COSE_Key, as the authenticator sent it
    sign_count: int
    aaguid: str  # the authenticator model, "00000000-0000-0000-0000-000000000000" if withheld
    backed_up: bool  # synced to a cloud keychain, so it survives losing the device
    user_verified: bool
    transports: tuple[str, ...]


@dataclass(frozen=True)
class VerifiedAssertion:
    """A good passkey sign-in; store ``new_sign_count`` against the credential."""

    credential_id: bytes
    new_sign_count: int
    user_verified: bool
    backed_up: bool
    user_handle: bytes | None  # the account the authenticator says it signed for, if it said


# ---------------------------------------------------------------------------------------------
# Options
# ---------------------------------------------------------------------------------------------


def registration_options(
    *,
    rp_id: str,
    rp_name: str,
    user_handle: bytes,
    user_name: str,
    display_name: str,
    challenge: bytes,
    exclude_credential_ids: Sequence[bytes],
) -> dict[str, Any]:
    """PublicKeyCredentialCreationOptions as JSON for ``navigator.credentials.create``."""
    _require_challenge(challenge)
    if not isinstance(user_handle, bytes) or not 1 <= len(user_handle) <= MAX_USER_HANDLE_BYTES:
        # py_webauthn would silently substitute a random handle for an empty one.
        raise ValueError(f"user_handle must be 1 to {MAX_USER_HANDLE_BYTES} bytes")
    options = webauthn.generate_registration_options(
        rp_id=rp_id,
        rp_name=rp_name,
        user_id=user_handle,
        user_name=user_name,
        user_display_name=display_name or user_name,
        challenge=challenge,
        timeout=TIMEOUT_MS,
        attestation=AttestationConveyancePreference.NONE,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.PREFERRED,
            user_verification=UserVerificationRequirement.REQUIRED,
        ),
        exclude_credentials=_descriptors(exclude_credential_ids),
        supported_pub_key_algs=list(_ALGORITHMS),
    )
    return options_to_json_dict(options)


def authentication_options(
    *, rp_id: str, challenge: bytes, allow_credential_ids: Sequence[bytes]
) -> dict[str, Any]:
    """PublicKeyCredentialRequestOptions as JSON for ``navigator.credentials.get``.

    An empty ``allow_credential_ids`` lets the user pick any discoverable passkey for the site.
    """
    _require_challenge(challenge)
    options = webauthn.generate_authentication_options(
        rp_id=rp_id,
        challenge=challenge,
        timeout=TIMEOUT_MS,
        allow_credentials=_descriptors(allow_credential_ids),
        user_verification=UserVerificationRequirement.REQUIRED,
    )
    return options_to_json_dict(options)


# ---------------------------------------------------------------------------------------------
# Verification
# ---------------------------------------------------------------------------------------------


def verify_registration(
    credential: Mapping[str, Any], *, challenge: bytes, rp_id: str, origins: Sequence[str]
) -> RegisteredPasskey:
    """Check a ``navigator.credentials.create`` result (its ``toJSON()`` form)."""
    expected_origins = _expected_origins(origins)
    plain = _plain_credential(credential)
    with _library_errors():
        verified = webauthn.verify_registration_response(
            credential=plain,
            expected_challenge=challenge,
            expected_rp_id=rp_id,
            expected_origin=expected_origins,
            require_user_verification=True,
            supported_pub_key_algs=list(_ALGORITHMS),
        )
    _refuse_cross_origin(plain)
    return RegisteredPasskey(
        credential_id=verified.credential_id,
        public_key=verified.credential_public_key,
        sign_count=verified.sign_count,
        aaguid=verified.aaguid,
        backed_up=verified.credential_backed_up,
        user_verified=verified.user_verified,
        transports=_transports(plain["response"].get("transports")),
    )


def verify_authentication(
    credential: Mapping[str, Any],
    *,
    challenge: bytes,
    rp_id: str,
    origins: Sequence[str],
    public_key: bytes,
    sign_count: int,
) -> VerifiedAssertion:
    """Check a ``navigator.credentials.get`` result against the stored key and counter."""
    if sign_count < 0:
        raise ValueError("the stored sign count must not be negative")
    expected_origins = _expected_origins(origins)
    plain = _plain_credential(credential)
    with _library_errors():
        # The counter is checked below, after the signature: only a genuinely signed
        # assertion may raise "sign_count", so that check can be trusted as a clone signal.
        verified = webauthn.verify_authentication_response(
            credential=plain,
            expected_challenge=challenge,
            expected_rp_id=rp_id,
            expected_origin=expected_origins,
            credential_public_key=public_key,
            credential_current_sign_count=0,
            require_user_verification=True,
        )
    _refuse_cross_origin(plain)
    new_count = verified.new_sign_count
    # Authenticators that keep no counter report 0 forever (most synced passkeys); once
    # either side is non-zero the counter must strictly increase (WebAuthn section 6.1.1).
    if (sign_count or new_count) and new_count <= sign_count:
        raise PasskeyInvalid(
            "sign_count", f"the authenticator counted {new_count}, we last saw {sign_count}"
        )
    return VerifiedAssertion(
        credential_id=verified.credential_id,
        new_sign_count=new_count,
        user_verified=verified.user_verified,
        backed_up=verified.credential_backed_up,
        user_handle=_user_handle(plain["response"].get("userHandle")),
    )


def credential_id_of(credential: Mapping[str, Any]) -> bytes:
    """The credential id a browser response names (``rawId``, else ``id``), to look up its key."""
    if not isinstance(credential, Mapping):
        raise PasskeyInvalid("malformed", "the credential is not a JSON object")
    raw_id, text_id = credential.get("rawId"), credential.get("id")
    if raw_id is not None and text_id is not None and raw_id != text_id:
        raise PasskeyInvalid("malformed", "id and rawId differ")
    encoded = raw_id if raw_id is not None else text_id
    decoded = _strict_base64url(encoded, "the credential id")
    if not 1 <= len(decoded) <= MAX_CREDENTIAL_ID_BYTES:
        raise PasskeyInvalid("malformed", "the credential id has an impossible length")
    return decoded


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def _require_challenge(challenge: bytes) -> None:
    # py_webauthn would silently substitute a random challenge for an empty one, which the
    # caller would then never find in its store.
    if not isinstance(challenge, bytes) or len(challenge) < MIN_CHALLENGE_BYTES:
        raise ValueError(f"the challenge must be at least {MIN_CHALLENGE_BYTES} random bytes")


def _descriptors(credential_ids: Sequence[bytes]) -> list[PublicKeyCredentialDescriptor]:
    return [PublicKeyCredentialDescriptor(id=bytes(credential_id))
            for credential_id in credential_ids]


def _expected_origins(origins: Sequence[str]) -> list[str]:
    # A bare string is a Sequence[str] too, and would be split into one-letter "origins".
    if isinstance(origins, str) or not origins:
        raise ValueError("origins must be a non-empty list of origins")
    for origin in origins:
        # Browsers report "scheme://host[:port]" with no path and no trailing slash, and the
        # comparison is exact, so "http://localhost:8000/" could never match.
        if not isinstance(origin, str) or not origin or origin.endswith("/"):
            raise ValueError(f"{origin!r} is not an origin like 'https://pay.example'")
    return list(origins)


def _plain_credential(credential: Mapping[str, Any]) -> dict[str, Any]:
    """A plain-dict copy: py_webauthn accepts only ``str`` or ``dict``, not other Mappings."""
    if not isinstance(credential, Mapping):
        raise PasskeyInvalid("malformed", "the credential is not a JSON object")
    response = credential.get("response")
    if not isinstance(response, Mapping):
        raise PasskeyInvalid("malformed", "the credential has no response object")
    return {**credential, "response": dict(response)}


def _refuse_cross_origin(plain: dict[str, Any]) -> None:
    """Refuse a ceremony run inside a frame embedded by another site (clickjacking)."""
    client_data = json.loads(_strict_base64url(plain["response"]["clientDataJSON"],
                                               "clientDataJSON"))
    if client_data.get("crossOrigin") is True:
        raise PasskeyInvalid("origin", "the passkey was used inside a frame of another site")


def _transports(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    known = (item for item in value if isinstance(item, str) and item in _KNOWN_TRANSPORTS)
    return tuple(dict.fromkeys(known))


def _user_handle(value: Any) -> bytes | None:
    if value is None or value == "":
        return None
    return _strict_base64url(value, "userHandle")


def _strict_base64url(value: Any, what: str) -> bytes:
    # The stdlib decoder skips characters outside the alphabet; we refuse them instead.
    if not isinstance(value, str) or not value or not _BASE64URL.fullmatch(value):
        raise PasskeyInvalid("malformed", f"{what} is not base64url")
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raise PasskeyInvalid("malformed", f"{what} is not base64url") from None


@contextmanager
def _library_errors() -> Iterator[None]:
    """Turn whatever py_webauthn (or cryptography under it) raises into ``PasskeyInvalid``."""
    try:
        yield
    except PasskeyInvalid:
        raise
    except Exception as exc:  # the library also leaks ValueError, KeyError, cbor2 errors
        raise PasskeyInvalid(_check_of(exc), str(exc) or type(exc).__name__) from exc


def _check_of(exc: Exception) -> Check:
    if isinstance(exc, _CryptographyInvalidSignature):
        return "signature"
    if isinstance(exc, _UNSUPPORTED_TYPES):
        return "unsupported"
    message = str(exc).lower()
    for fragment, check in _MESSAGE_CHECKS:
        if fragment in message:
            return check
    return "malformed"
