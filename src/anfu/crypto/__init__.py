"""All of anfu's cryptography. Nothing outside this package imports a crypto library.

Verification raises (``InvalidSignature``, ``InvalidPassword``, ``TokenInvalid``); it never
returns a bool.
"""

from anfu.crypto._base import InvalidSignature, KeyFormatError, PrivateKey, PublicKey
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
    "InvalidPassword",
    "InvalidSignature",
    "KeyFormatError",
    "PasswordHasher",
    "PrivateKey",
    "PublicKey",
    "PublicKeyCache",
    "TokenExpired",
    "TokenInvalid",
    "TokenSigner",
    "generate_private_key",
    "load_private_key",
    "load_public_key",
    "random_token",
    "sha256_hex",
    "sm3_hex",
]
