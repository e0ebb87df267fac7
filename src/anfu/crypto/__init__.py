"""All of anfu's cryptography. Nothing outside this package imports a crypto library.

Verification raises (``InvalidSignature``, ``InvalidPassword``, ``TokenInvalid``,
``DpopInvalid``); it never returns a bool.
"""

from anfu.crypto import blind_rsa
from anfu.crypto._base import InvalidSignature, KeyFormatError, PrivateKey, PublicKey
from anfu.crypto.blind_rsa import (
    BlindingResult,
    BlindRsaError,
    BlindRsaPrivateKey,
    BlindRsaPublicKey,
)
from anfu.crypto.jose import (
    DeviceKey,
    DevicePublicKey,
    DpopInvalid,
    DpopProof,
    JwkInvalid,
    device_message,
    parse_public_jwk,
    verify_dpop,
)
from anfu.crypto.keystore import KeystoreError, load_device_keystore, save_device_keystore
from anfu.crypto.passkeys import (
    PasskeyInvalid,
    RegisteredPasskey,
    VerifiedAssertion,
    authentication_options,
    credential_id_of,
    registration_options,
    verify_authentication,
    verify_registration,
)
from anfu.crypto.passwords import InvalidPassword, PasswordHasher
from anfu.crypto.signatures import (
    ALGORITHMS,
    PublicKeyCache,
    generate_private_key,
    load_private_key,
    load_public_key,
    sm3_hex,
)
from anfu.crypto.tokens import (
    TokenExpired,
    TokenInvalid,
    TokenSigner,
    random_token,
    sha256_hex,
)

__all__ = [
    "ALGORITHMS",
    "BlindRsaError",
    "BlindRsaPrivateKey",
    "BlindRsaPublicKey",
    "BlindingResult",
    "DeviceKey",
    "DevicePublicKey",
    "DpopInvalid",
    "DpopProof",
    "InvalidPassword",
    "InvalidSignature",
    "JwkInvalid",
    "KeyFormatError",
    "KeystoreError",
    "PasskeyInvalid",
    "PasswordHasher",
    "PrivateKey",
    "PublicKey",
    "PublicKeyCache",
    "RegisteredPasskey",
    "TokenExpired",
    "TokenInvalid",
    "TokenSigner",
    "VerifiedAssertion",
    "authentication_options",
    "blind_rsa",
    "credential_id_of",
    "device_message",
    "generate_private_key",
    "load_device_keystore",
    "load_private_key",
    "load_public_key",
    "parse_public_jwk",
    "random_token",
    "registration_options",
    "save_device_keystore",
    "sha256_hex",
    "sm3_hex",
    "verify_authentication",
    "verify_dpop",
    "verify_registration",
]
